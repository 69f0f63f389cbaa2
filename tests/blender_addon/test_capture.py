"""Capture: 18 real Cycles views, framing that matches the stored cameras, clean errors, no side effects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared import bundle, rig
from tests.blender_addon.blender_helpers import alpha, box, rgba

pytestmark = pytest.mark.slow  # renders with Cycles

SIZE, SAMPLES = 48, 4


def _capture(target, out, **kw):
    from blender_addon.capture import capture_asset

    return capture_asset(target, out, size=SIZE, samples=SAMPLES, device="CPU", **kw)


def test_capture_writes_a_valid_bundle_with_sensible_views(blender, tmp_path):
    obj = box("Crate", size=(2.0, 1.0, 0.5), location=(5.0, -3.0, 1.0))
    result = _capture(obj, tmp_path / "crate")

    assert len(result.frames) == rig.NUM_VIEWS == 18
    assert result.image_size == SIZE
    assert result.asset.name == "Crate"
    assert result.asset.size == pytest.approx((2.0, 1.0, 0.5), abs=1e-5)
    assert result.asset.center == pytest.approx((5.0, -3.0, 1.0), abs=1e-5)
    assert result.asset.radius == pytest.approx(0.5 * math.sqrt(4 + 1 + 0.25), abs=1e-5)
    assert len(result.asset.content_hash) == 64
    again = bundle.read_bundle(tmp_path / "crate", expected_size=SIZE)
    assert again.asset == result.asset
    for i, frame in enumerate(result.frames):
        a = alpha(tmp_path / "crate" / frame.file_path)
        assert a.shape == (SIZE, SIZE)
        coverage = float((a > 0.5).mean())
        assert 0.05 < coverage < 0.7, f"view {i}: {coverage:.2%} of pixels opaque"
        # Transparent film: the border is background.
        assert a[0].max() == 0 and a[-1].max() == 0 and a[:, 0].max() == 0 and a[:, -1].max() == 0
    # The material's red survives the Standard view transform: opaque pixels are clearly red.
    px = rgba(tmp_path / "crate" / result.frames[0].file_path)
    mean = px[px[..., 3] == 255][:, :3].mean(axis=0)
    assert mean[0] > 2 * mean[1] and mean[0] > 2 * mean[2]


def test_projected_bbox_matches_the_silhouette(blender, tmp_path):
    """The stored matrices are the cameras that rendered: the box's corners frame its silhouette."""
    obj = box("Slab", size=(1.5, 0.6, 0.9), location=(-2.0, 1.0, 0.45))
    result = _capture(obj, tmp_path / "slab")
    c, r = result.asset.center, result.asset.radius
    lo = [ci - si / 2 for ci, si in zip(c, result.asset.size, strict=True)]
    hi = [ci + si / 2 for ci, si in zip(c, result.asset.size, strict=True)]
    corners = [((x - c[0]) / r, (y - c[1]) / r, (z - c[2]) / r)
               for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    for i, frame in enumerate(result.frames):
        uvd = [rig.project(p, frame.transform_matrix, SIZE) for p in corners]
        us, vs = [u for u, _, _ in uvd], [v for _, v, _ in uvd]
        assert all(d > 0 for _, _, d in uvd)
        assert 0 <= min(us) and max(us) <= SIZE and 0 <= min(vs) and max(vs) <= SIZE, f"view {i} leaves the image"
        a = alpha(tmp_path / "slab" / frame.file_path) > 0.5
        rows, cols = np.nonzero(a)
        # Silhouette extent in pixel-edge coordinates vs the projected corners' extent (1.5 px of slack).
        assert cols.min() == pytest.approx(min(us), abs=1.5), f"view {i} left edge"
        assert cols.max() + 1 == pytest.approx(max(us), abs=1.5), f"view {i} right edge"
        assert rows.min() == pytest.approx(min(vs), abs=1.5), f"view {i} top edge"
        assert rows.max() + 1 == pytest.approx(max(vs), abs=1.5), f"view {i} bottom edge"


def test_capture_is_deterministic(blender, tmp_path):
    obj = box("Cube", size=(1.0, 1.0, 1.0))
    first = _capture(obj, tmp_path / "a")
    second = _capture(obj, tmp_path / "b")
    assert first.asset.content_hash == second.asset.content_hash
    for i in (0, 9, 17):
        assert np.array_equal(rgba(tmp_path / "a" / first.frames[i].file_path),
                              rgba(tmp_path / "b" / second.frames[i].file_path))


def test_user_scene_is_untouched(blender, tmp_path):
    bpy = blender
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    scene.render.film_transparent = False
    other = bpy.data.scenes.new("Other")
    target = box("Target", size=(1.0, 2.0, 1.0))
    bystander = box("Bystander", location=(3.0, 0.0, 0.0))
    bystander.select_set(True)
    target.select_set(False)
    bpy.context.view_layer.objects.active = bystander
    counts = {name: len(getattr(bpy.data, name)) for name in
              ("scenes", "objects", "meshes", "materials", "cameras", "lights", "worlds", "collections", "images")}

    _capture(target, tmp_path / "t")

    assert bpy.context.scene == scene and bpy.context.window.scene == scene
    assert {name: len(getattr(bpy.data, name)) for name in counts} == counts
    assert scene.render.engine == "BLENDER_WORKBENCH"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1920, 1080)
    assert scene.render.film_transparent is False
    assert bpy.context.view_layer.objects.active == bystander
    assert bystander.select_get() and not target.select_get()
    assert sorted(s.name for s in bpy.data.scenes) == sorted([scene.name, other.name])
    assert target.users_scene == (scene,)


def test_modifiers_instances_children_and_collections_are_evaluated(blender, tmp_path):
    bpy = blender
    # An Array modifier makes 3 cubes of 1 m side by side: the evaluated size is 3 m.
    arr = box("Arrayed")
    mod = arr.modifiers.new("Array", "ARRAY")
    mod.count = 3
    assert _capture(arr, tmp_path / "arr").asset.size == pytest.approx((3.0, 1.0, 1.0), abs=1e-5)
    # A collection of two boxes (not linked to any scene) spans both of them.
    coll = bpy.data.collections.new("Set")
    coll.objects.link(box("A", location=(0.0, 0.0, 0.0), link=False))
    coll.objects.link(box("B", location=(4.0, 0.0, 0.0), link=False))
    result = _capture(coll, tmp_path / "set")
    assert result.asset.size == pytest.approx((5.0, 1.0, 1.0), abs=1e-5)
    assert result.asset.name == "Set"
    # An empty instancing that collection is an asset too (instances are realised).
    empty = bpy.data.objects.new("Instancer", None)
    empty.instance_type = "COLLECTION"
    empty.instance_collection = coll
    empty.location = (0.0, 0.0, 10.0)
    bpy.context.scene.collection.objects.link(empty)
    assert _capture(empty, tmp_path / "inst").asset.center == pytest.approx((2.0, 0.0, 10.0), abs=1e-5)
    # Children come with their parent.
    parent = box("Parent")
    child = box("Child", location=(0.0, 0.0, 3.0))
    child.parent = parent
    assert _capture(parent, tmp_path / "parent").asset.size == pytest.approx((1.0, 1.0, 4.0), abs=1e-5)


def _error(target, tmp_path):
    from blender_addon.capture import CaptureError

    with pytest.raises(CaptureError) as info:
        _capture(target, tmp_path / "bad")
    assert not (tmp_path / "bad" / bundle.TRANSFORMS).exists()
    return str(info.value)


def test_bad_targets_get_clear_errors_and_leave_nothing_behind(blender, tmp_path):
    bpy = blender
    scene = bpy.context.scene
    empty = bpy.data.objects.new("Nothing", None)
    scene.collection.objects.link(empty)
    light = bpy.data.objects.new("Lamp", bpy.data.lights.new("Lamp", "POINT"))
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    no_verts = bpy.data.objects.new("NoVerts", bpy.data.meshes.new("NoVerts"))
    point = bpy.data.meshes.new("Point")
    point.from_pydata([(1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)], [], [(0, 1, 2)])
    collapsed = bpy.data.objects.new("Collapsed", point)
    lights_only = bpy.data.collections.new("LightsOnly")
    lights_only.objects.link(light)
    counts = {name: len(getattr(bpy.data, name)) for name in ("scenes", "objects", "meshes", "cameras", "worlds")}

    assert "empty with no geometry" in _error(empty, tmp_path)
    assert "is a light" in _error(light, tmp_path)
    assert "is a camera" in _error(camera, tmp_path)
    assert "no renderable geometry" in _error(no_verts, tmp_path)
    assert "zero size" in _error(collapsed, tmp_path)
    assert "no renderable geometry" in _error(lights_only, tmp_path)
    assert "select a mesh object" in _error(bpy.data.materials.new("NotAnObject"), tmp_path)
    assert "scene's own collection" in _error(scene.collection, tmp_path)
    assert {name: len(getattr(bpy.data, name)) for name in counts} == counts

    from blender_addon.capture import CaptureError, capture_asset

    ok = box("Ok")
    with pytest.raises(CaptureError, match="outside"):
        capture_asset(ok, tmp_path / "x", size=4)
    with pytest.raises(CaptureError, match="samples"):
        capture_asset(ok, tmp_path / "x", samples=0)
