"""Issue 19's add-on side, with real bpy: the asset's Blender preview from its captured views (kept through
save/reopen, never replacing the artist's own), Append/Link at the 3D cursor, the Similar list's filter, one
view-size setting, and no temporary folder left behind."""

from __future__ import annotations

import array
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_addon import asset_preview, embed_job, preferences, session, similar, tempdirs, writeback
from blender_addon.headless.bulk import safe_save
from shared import api
from tests.blender_addon.addon_support import configure, run_embed
from tests.blender_addon.blender_helpers import box

ROOT = Path(__file__).resolve().parents[2]


def _pixels(preview) -> array.array:
    w, h = preview.image_size
    px = array.array("f", bytes(16 * w * h))
    preview.image_pixels_float.foreach_get(px)
    return px


def _png(bpy, path: Path, size: int = 16, colour=(0.2, 0.6, 0.9, 1.0)) -> Path:
    """A real PNG written by Blender: a coloured square with a dark corner (so its pixels differ)."""
    image = bpy.data.images.new("png", size, size, alpha=True)
    px = [c for i in range(size * size) for c in ((0.0, 0.0, 0.0, 1.0) if i < size else colour)]
    image.pixels.foreach_set(px)
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


# -- the asset's preview --------------------------------------------------------------------------------------


@pytest.mark.slow  # renders with Cycles; serves the tiny trained run
def test_embed_sets_the_asset_preview_which_survives_save_and_reopen(addon, backend, tmp_path):
    bpy = addon
    configure(backend.url)
    crate = box("Crate", size=(0.6, 0.4, 0.4), color=(0.1, 0.3, 0.9))
    crate.asset_mark()
    lib = tmp_path / "lib.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(lib))
    bpy.context.view_layer.objects.active = crate

    job = run_embed(bpy, save_after=True)
    assert job.state == embed_job.DONE, job.message
    assert job.report is not None and job.report.preview is True and "saved lib.blend" in job.message
    preview = crate.preview
    assert preview is not None and tuple(preview.image_size) == (32, 32)  # the captured view (32 px here)
    assert len(set(_pixels(preview))) > 2  # an image (the crate on a transparent ground), not a flat colour
    assert tuple(preview.icon_size) == (32, 32)
    stored = writeback.read_metadata(crate)[writeback.PREVIEW_FINGERPRINT]
    assert stored == asset_preview.fingerprint(preview)

    # Saved by Blender's own save (atomic: written aside, then renamed) and reopened: the preview is still there.
    pixels = _pixels(preview)
    bpy.ops.wm.open_mainfile(filepath=str(lib))
    crate = bpy.data.objects["Crate"]
    assert crate.preview is not None and tuple(crate.preview.image_size) == (32, 32)
    assert _pixels(crate.preview) == pixels
    assert asset_preview.replaceable(crate)  # still recognised as Asset2Vec's own: a new embed may replace it
    # The atomic save of bulk-tag (a copy written aside, fsynced and renamed over the file) keeps it too.
    safe_save(lib, lib.stat())
    bpy.ops.wm.open_mainfile(filepath=str(lib))
    crate = bpy.data.objects["Crate"]
    assert _pixels(crate.preview) == pixels and asset_preview.replaceable(crate)

    # The artist picks a preview by hand (Load Custom Preview): the next embed keeps it.
    custom = crate.preview
    custom.image_size = (8, 8)
    custom.image_pixels_float.foreach_set([0.5] * (8 * 8 * 4))
    mine = _pixels(custom)  # stored as 8 bits: 0.5 reads back as 128/255
    assert not asset_preview.replaceable(crate)
    bpy.context.view_layer.objects.active = crate
    configure(backend.url)
    job = run_embed(bpy)
    assert job.state == embed_job.DONE, job.message
    assert job.report.preview is False and "kept its own preview" in job.message
    assert tuple(crate.preview.image_size) == (8, 8) and _pixels(crate.preview) == mine


def test_which_previews_asset2vec_replaces(blender, tmp_path):
    bpy = blender
    png = _png(bpy, tmp_path / "view.png")
    obj = box("Lamp")
    # No preview yet: set (also on an object that is not an asset, and before any metadata exists).
    assert obj.preview is None and asset_preview.set_from_png(obj, png)
    assert tuple(obj.preview.image_size) == (16, 16) and obj.preview.is_image_custom
    # Without the metadata group the fingerprint could not be kept: from now on it counts as a custom preview.
    assert not asset_preview.replaceable(obj)

    writeback.write_result(obj, api.EmbedResult(name="unsaved/Lamp", model_id="m", shape=[0.0] * 32,
                                                texture=[0.0] * 32))
    obj.preview.is_image_custom = False  # what Blender generates (a render of the object): replaced
    assert asset_preview.set_from_png(obj, _png(bpy, tmp_path / "other.png", colour=(0.9, 0.1, 0.1, 1.0)))
    ours = asset_preview.fingerprint(obj.preview)
    assert writeback.read_metadata(obj)[writeback.PREVIEW_FINGERPRINT] == ours
    # A new embed rewrites the metadata group: the fingerprint stays, so Asset2Vec's preview stays replaceable.
    writeback.write_result(obj, api.EmbedResult(name="unsaved/Lamp", model_id="m2", shape=[0.0] * 32,
                                                texture=[0.0] * 32))
    assert writeback.read_metadata(obj)[writeback.PREVIEW_FINGERPRINT] == ours and asset_preview.replaceable(obj)
    # An empty preview (size 0) is replaced too.
    empty = box("Empty").preview_ensure()
    assert tuple(empty.image_size) == (0, 0) and asset_preview.replaceable(bpy.data.objects["Empty"])


def test_downscale_keeps_corners():
    w = h = 4
    px = array.array("f", [float(i) for i in range(w * h) for _ in range(4)])
    small = asset_preview.downscale(px, w, h, 2)
    assert list(small[0::4]) == [0.0, 2.0, 8.0, 10.0]


# -- Append / Link at the 3D cursor -----------------------------------------------------------------------


def test_append_and_link_land_at_the_3d_cursor_selected_and_active(addon, tmp_path):
    bpy = addon
    chair = box("Chair", location=(10.0, 0.0, 0.0), link=False)
    coll = bpy.data.collections.new("DiningSet")
    table = box("Table", location=(5.0, 5.0, 0.7), link=False)
    leg = box("Leg", location=(0.0, 0.0, -0.5), link=False)
    leg.parent = table  # 0.5 m below the table top
    coll.objects.link(table)
    coll.objects.link(leg)
    coll.instance_offset = (5.0, 5.0, 0.0)
    lib = tmp_path / "furniture.blend"
    bpy.data.libraries.write(str(lib), {chair, coll})

    bpy.ops.wm.read_homefile(use_empty=True)
    scene, layer = bpy.context.scene, bpy.context.view_layer
    scene.cursor.location = (1.0, 2.0, 3.0)
    other = box("Other")
    other.select_set(True)
    layer.objects.active = other

    def selected() -> set[str]:
        return {o.name for o in layer.objects if o.select_get()}

    # Appended object: at the cursor, the only selected object, active.
    assert bpy.ops.asset2vec.append_neighbour(filepath=str(lib), asset_name="Chair") == {"FINISHED"}
    new = layer.objects.active
    assert new.name == "Chair" and new.library is None
    assert tuple(new.matrix_world.translation) == pytest.approx((1.0, 2.0, 3.0))
    assert selected() == {"Chair"}

    # Linked object: an override of it (its data stays linked), at the cursor, selected.
    scene.cursor.location = (-2.0, 0.0, 0.0)
    assert bpy.ops.asset2vec.append_neighbour(filepath=str(lib), asset_name="Chair", link=True) == {"FINISHED"}
    linked = layer.objects.active
    assert linked.override_library is not None and linked.data.library is not None
    assert tuple(linked.matrix_world.translation) == pytest.approx((-2.0, 0.0, 0.0))
    assert selected() == {linked.name}

    # Appended collection: moved as a whole (its origin on the cursor; the child follows its parent), all selected.
    scene.cursor.location = (0.0, 0.0, 1.0)
    assert bpy.ops.asset2vec.append_neighbour(filepath=str(lib), asset_name="DiningSet") == {"FINISHED"}
    appended = bpy.data.collections["DiningSet"]
    names = {o.name for o in appended.all_objects}
    assert selected() == names and layer.objects.active.name == "Table"
    bpy.context.view_layer.update()
    t, g = appended.all_objects["Table"], appended.all_objects["Leg"]
    assert tuple(t.matrix_world.translation) == pytest.approx((0.0, 0.0, 1.7))
    assert tuple(g.matrix_world.translation) == pytest.approx((0.0, 0.0, 1.2), abs=1e-5)

    # Linked collection: an instance empty at the cursor, selected and active.
    scene.cursor.location = (3.0, 3.0, 0.0)
    assert bpy.ops.asset2vec.append_neighbour(filepath=str(lib), asset_name="DiningSet", link=True) == {"FINISHED"}
    empty = layer.objects.active
    assert empty.instance_collection is not None and empty.instance_collection.library is not None
    assert tuple(empty.location) == pytest.approx((3.0, 3.0, 0.0)) and selected() == {empty.name}


# -- the Similar list's filter ----------------------------------------------------------------------------

NEIGHBOURS = [
    {"name": "seats/Chair_Oak", "asset_name": "Chair_Oak", "file": "/lib/seats.blend", "category": "chair",
     "distance": 0.1, "space": "both"},
    {"name": "tables/Table_Round", "asset_name": "Table_Round", "file": "/lib/tables.blend", "category": "table",
     "family": "round_table", "distance": 0.2, "space": "both"},
    {"name": "misc/Thing", "asset_name": "Thing", "file": "/lib/misc.blend", "tags": ["wood", "outdoor"],
     "distance": 0.3, "space": "both"},
]


def test_the_similar_filter_matches_every_word_in_tags_names_categories_or_files():
    def names(text: str) -> list[str]:
        return [n["asset_name"] for n in similar.filter_neighbours(NEIGHBOURS, text)]

    assert names("") == names("  ") == ["Chair_Oak", "Table_Round", "Thing"]  # no filter: all, nearest first
    assert names("chair") == names("CHAIR") == ["Chair_Oak"]
    assert names("table") == ["Table_Round"]  # name and category
    assert names("round_table") == ["Table_Round"]  # family
    assert names("seats") == ["Chair_Oak"]  # the .blend's name
    assert names("wood") == ["Thing"] and names("outdoor, wood") == ["Thing"]  # tags, when the backend sent them
    assert names("chair wood") == [] and names("sofa") == []  # every word must match


def test_the_similar_panel_filters_and_says_how_many_match(addon):
    from bench import panel_preview

    bpy = addon
    obj = box("Chair")
    bpy.context.view_layer.objects.active = obj
    nbs = [{"name": n["name"], "source_file": n["file"], "asset_name": n["asset_name"], "distance": n["distance"],
            "category": n.get("category", ""), "family": n.get("family", "")} for n in NEIGHBOURS]
    writeback.write_result(obj, api.EmbedResult.from_json({
        "name": "Chair", "model_id": "m", "shape": [0.0] * 32, "texture": [0.0] * 32, "neighbours": {"both": nbs}}))
    assert writeback.neighbours(obj, "both")[1]["family"] == "round_table"  # stored for the filter
    settings = bpy.context.scene.asset2vec
    tip = settings.bl_rna.properties["similar_filter"].description
    assert all(w in tip for w in ("tags", "name", "category", "family"))  # the tooltip says what is matched

    def panel():
        return dict(panel_preview.draw_panels(bpy.context))["Similar Assets"]

    texts = panel().texts()
    assert {"seats/Chair_Oak", "tables/Table_Round", "misc/Thing"} <= set(texts)
    settings.similar_filter = "table"
    texts = panel().texts()
    assert "tables/Table_Round" in texts and "seats/Chair_Oak" not in texts and "1 of 3 match the filter" in texts
    settings.similar_filter = "sofa"
    assert "None of 3 matches the filter" in panel().texts()


# -- one view-size setting --------------------------------------------------------------------------------


def test_one_view_size_setting_in_the_preferences(addon, tmp_path):
    bpy = addon
    prefs, settings = preferences.get(), bpy.context.scene.asset2vec
    assert (prefs.capture_size, prefs.capture_samples) == (128, 16) and not prefs.is_property_set("capture_size")
    # The scene's properties are the preferences' setting (scripts that set them keep working).
    settings.capture_size, settings.capture_samples = 48, 3
    assert (prefs.capture_size, prefs.capture_samples) == (48, 3) == preferences.view_settings()
    prefs.capture_size = 64
    assert settings.capture_size == 64
    prefs.property_unset("capture_size")
    prefs.property_unset("capture_samples")

    # An older file stored its own view size in the scene: taken over once, then gone from the scene.
    bpy.context.scene.asset2vec["capture_size"] = 96  # the raw value, as an older add-on saved it
    bpy.context.scene.asset2vec["capture_samples"] = 5
    old = tmp_path / "old.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(old))
    bpy.ops.wm.open_mainfile(filepath=str(old))
    assert (prefs.capture_size, prefs.capture_samples) == (96, 5)
    assert bpy.context.scene.asset2vec.get("capture_size") is None
    # ... but never over a value the artist set in the preferences.
    prefs.capture_size = 40
    bpy.context.scene.asset2vec["capture_size"] = 200
    bpy.ops.wm.save_as_mainfile(filepath=str(old))
    bpy.ops.wm.open_mainfile(filepath=str(old))
    assert prefs.capture_size == 40 and bpy.context.scene.asset2vec.get("capture_size") is None


# -- temporary folders ----------------------------------------------------------------------------------


@pytest.mark.slow  # one Cycles capture
def test_unregister_leaves_no_temporary_folder(blender):
    import blender_addon

    bpy = blender
    blender_addon.register()
    try:
        with socket.socket() as silent:  # a backend that never answers: the embed is still running at unregister
            silent.bind(("127.0.0.1", 0))
            silent.listen(4)
            configure(f"http://127.0.0.1:{silent.getsockname()[1]}")
            obj = box("Chair")
            bpy.context.view_layer.objects.active = obj
            assert bpy.ops.asset2vec.embed() == {"FINISHED"}  # starts capturing; the worker waits for the backend
            job = embed_job.current()
            deadline = time.monotonic() + 120
            while not job.preview.is_file():  # the capture's slices, until the captured view is kept for the preview
                assert job.running and time.monotonic() < deadline, job.message
                time.sleep(session.get().tick() or 0.0)
            assert job.running  # still waiting for the silent backend
            folders = [session.get().thumbnails.folder, job.preview.parent]
            assert all(f.is_dir() and f.name.startswith(tempdirs.PREFIX) for f in folders)
            assert set(folders) <= set(tempdirs.live())
            blender_addon.unregister()  # while the embed runs
    finally:
        if hasattr(bpy.types.Scene, "asset2vec"):
            blender_addon.unregister()
    assert not any(f.exists() for f in folders) and tempdirs.live() == []


def test_quitting_without_unregister_leaves_no_temporary_folder():
    # Blender does not unregister add-ons when it quits; the atexit handler removes the folders.
    code = ("import bpy, blender_addon; from blender_addon import session; blender_addon.register(); "
            "print(session.get().thumbnails.folder, flush=True)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert folder.name.startswith("asset2vec-thumbs-") and not folder.exists()
