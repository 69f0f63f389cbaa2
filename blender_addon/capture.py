"""Cycles capture of one asset into an 18-view bundle (:mod:`shared.bundle`).

The asset (an Object, a Collection, or anything producing instances such as Geometry Nodes) is
evaluated in a temporary scene, copied as plain meshes, normalised to its bounding sphere (centre
to the origin, radius to 1) and rendered from the rig's cameras (:func:`shared.rig.views`), so the
matrices written to ``transforms.json`` are exactly the cameras that rendered the pixels.

The user's scenes, render settings, selection and active object are never touched: everything
lives in temporary scenes and datablocks removed in ``finally`` blocks, even on error.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy
from mathutils import Matrix

from .content_hash import hash_parts
from .errors import CaptureError
from .parts import Bounds, Part, describe, evaluated_parts, temp_scene, world_bounds
from .protocol import bundle, metadata, rig

#: Below this radius (metres) the geometry is treated as a point: nothing to frame.
MIN_RADIUS = 1e-6
#: Neutral lighting: a white world for even ambient light plus a weak sun for shape cues. Both
#: are fixed in world space, so every view of an asset sees the same lighting (a NeRF needs that).
WORLD_STRENGTH = 0.8
SUN_STRENGTH = 1.5
SUN_ROTATION = (math.radians(35.0), 0.0, math.radians(30.0))


def cycles_device() -> str:
    """``"GPU"`` when Cycles has an enabled GPU compute device, else ``"CPU"``.

    Inside Blender's UI the user's preferences decide. Headless (bulk runs, CLI), a GPU backend is
    probed and enabled for this session only (preferences are not saved in background mode).
    """
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except KeyError:
        return "CPU"
    if prefs.compute_device_type != "NONE" and any(d.use and d.type != "CPU" for d in prefs.devices):
        return "GPU"
    if not bpy.app.background:
        return "CPU"
    for backend in ("OPTIX", "CUDA", "HIP", "METAL", "ONEAPI"):
        try:
            with quiet_stdout(True, fds=(1, 2)):  # missing GPU drivers only log warnings
                gpus = [d for d in prefs.get_devices_for_type(backend) if d.type != "CPU"]
        except (TypeError, ValueError):
            continue
        if gpus:
            prefs.compute_device_type = backend
            for d in gpus:
                d.use = True
            return "GPU"
    return "CPU"


def _configure(scene: Any, size: int, samples: int, device: str) -> None:
    """Small, deterministic Cycles settings and a Standard (colour-preserving) view transform."""
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x = r.resolution_y = size
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.film_transparent = True
    r.use_persistent_data = True  # keep the BVH between the 18 renders
    r.use_file_extension = False
    r.use_compositing = False  # no post-processing: the views are the raw render
    r.use_sequencer = False
    im = r.image_settings
    im.file_format = "PNG"
    im.color_mode = "RGBA"
    im.color_depth = "8"
    im.compression = 15
    c = scene.cycles
    c.device = device
    c.samples = samples
    c.use_adaptive_sampling = False
    c.use_denoising = False
    c.seed = 0
    c.use_animated_seed = False
    c.max_bounces = 4
    c.diffuse_bounces = 2
    c.glossy_bounces = 2
    c.transmission_bounces = 4
    c.volume_bounces = 0
    c.transparent_max_bounces = 8
    c.caustics_reflective = c.caustics_refractive = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C runtime handle (Windows): nothing to flush
        pass


@contextlib.contextmanager
def quiet_stdout(enabled: bool, fds: tuple[int, ...] = (1,)) -> Iterator[None]:
    """Silence Blender's C-level log ("Fra:", "Saved:", "Read blend:") on file descriptors ``fds``."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _flush_c_stdio()  # C's stdio buffer would otherwise print after the descriptor is restored
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def asset_tags(target: Any) -> list[str]:
    """The artist's asset tags of a marked asset (empty when not marked).

    Tags Asset2Vec added itself (recorded under ``metadata.ADDED_TAGS``) are left out, so
    predictions never come back to the backend as the artist's own tags, unless the artist accepted
    them (``metadata.ACCEPTED_TAGS``): those are the artist's, and block their exclusive rivals.
    """
    data = getattr(target, "asset_data", None)
    if data is None:
        return []
    group = target.get(metadata.NAMESPACE) if hasattr(target, "get") else None
    added = set()
    if group is not None and hasattr(group, "get"):
        added = {str(t) for t in (group.get(metadata.ADDED_TAGS) or [])}
        added -= {str(t) for t in (group.get(metadata.ACCEPTED_TAGS) or [])}
    return [t.name for t in data.tags if t.name not in added]


def capture_asset(
    target: Any,
    out_dir: str | os.PathLike[str],
    size: int = 128,
    samples: int = 16,
    *,
    name: str | None = None,
    category: str = "",
    family: str = "",
    parameters: dict[str, Any] | None = None,
    source_blend: str | None = None,
    device: str = "AUTO",
    quiet: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> bundle.Bundle:
    """Render the 18 rig views of ``target`` into ``out_dir`` and return the validated bundle.

    Writes ``out_dir/views/NN.png`` (``size`` x ``size`` RGBA, transparent background) and then
    ``out_dir/transforms.json`` (cameras in normalised unit-sphere space; ``asset.center``,
    ``asset.radius`` and ``asset.size`` in metres). ``device`` is ``"AUTO"``, ``"CPU"`` or ``"GPU"``.
    ``progress(done, total)`` is called after each view. Raises :class:`CaptureError`.
    """
    if not bundle.MIN_IMAGE_SIZE <= size <= bundle.MAX_IMAGE_SIZE:
        raise CaptureError(f"image size {size} px is outside {bundle.MIN_IMAGE_SIZE}..{bundle.MAX_IMAGE_SIZE}")
    if samples < 1:
        raise CaptureError(f"samples must be at least 1, got {samples}")
    if device not in ("AUTO", "CPU", "GPU"):
        raise CaptureError(f"device must be AUTO, CPU or GPU, got {device!r}")
    out = Path(out_dir)
    try:
        (out / bundle.VIEWS_DIR).mkdir(parents=True, exist_ok=True)
        # An old transforms.json must not vouch for a half-rendered set of new views.
        (out / bundle.TRANSFORMS).unlink(missing_ok=True)
    except OSError as e:
        raise CaptureError(f"cannot write the bundle folder {out}: {e.strerror or e}") from None

    with evaluated_parts(target) as parts:
        if not parts:
            hidden = " (it is hidden from render or in viewports)" if getattr(target, "hide_render", False) or getattr(
                target, "hide_viewport", False) else ""
            raise CaptureError(f"{describe(target)} has no renderable geometry{hidden}: nothing to capture")
        bounds = world_bounds(parts)
        if not math.isfinite(bounds.radius) or bounds.radius < MIN_RADIUS:
            raise CaptureError(f"{describe(target)} has zero size (all its vertices are at one point): nothing to frame")
        info = bundle.AssetInfo(
            name=name or target.name,
            source_blend=bpy.data.filepath if source_blend is None else source_blend,
            asset_name=target.name,
            content_hash=hash_parts(parts),
            family=family,
            parameters=dict(parameters or {}),
            tags=asset_tags(target),
            category=category,
            size=bounds.size,
            center=bounds.center,
            radius=bounds.radius,
        )
        _render_views(parts, bounds, out, size, samples, cycles_device() if device == "AUTO" else device, quiet,
                      progress)
    bundle.write_transforms(out, size, info)
    return bundle.read_bundle(out, expected_size=size)


def _render_views(parts: list[Part], bounds: Bounds, out: Path, size: int, samples: int, device: str, quiet: bool,
                  progress: Callable[[int, int], None] | None) -> None:
    """Place normalised copies of ``parts`` in a temporary scene and render every rig view."""
    created: list[tuple[Any, Any]] = []  # (bpy.data collection, datablock) to remove afterwards

    def new(coll: Any, *args: Any) -> Any:
        block = coll.new(*args)
        created.append((coll, block))
        return block

    # Rendering creates the "Render Result" image if the file has none yet: remove it again afterwards.
    had_render_result = any(img.type == "RENDER_RESULT" for img in bpy.data.images)
    # Unit-sphere normalisation: translate the sphere's centre to the origin, scale radius to 1.
    normalise = Matrix.Scale(1.0 / bounds.radius, 4) @ Matrix.Translation([-v for v in bounds.center])
    try:
        with temp_scene("Asset2Vec Capture") as scene:
            _configure(scene, size, samples, device)
            world = new(bpy.data.worlds, "Asset2Vec Capture World")
            background = world.node_tree.nodes.get("Background")
            background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
            background.inputs["Strength"].default_value = WORLD_STRENGTH
            # A uniform background gains nothing from light sampling (BSDF sampling already matches
            # it) and skipping it saves a shadow ray per bounce.
            world.cycles.sampling_method = "NONE"
            scene.world = world
            for part in parts:
                ob = new(bpy.data.objects, f"a2v:{part.key}", part.mesh)
                scene.collection.objects.link(ob)
                ob.matrix_world = normalise @ part.matrix
                # Object-linked materials live on the object, not the mesh copy: re-link them.
                for slot, mat in zip(ob.material_slots, part.materials, strict=False):
                    if slot.material != mat:
                        slot.link = "OBJECT"
                        slot.material = mat
            sun = new(bpy.data.objects, "a2v:sun", new(bpy.data.lights, "a2v:sun", "SUN"))
            sun.data.energy = SUN_STRENGTH
            sun.rotation_euler = SUN_ROTATION
            scene.collection.objects.link(sun)
            cam_data = new(bpy.data.cameras, "a2v:camera")
            cam_data.lens_unit = "FOV"
            cam_data.sensor_fit = "HORIZONTAL"
            cam_data.angle = math.radians(rig.FOV_DEG)
            cam_data.clip_start = 0.01
            cam_data.clip_end = 100.0
            cam = new(bpy.data.objects, "a2v:camera", cam_data)
            scene.collection.objects.link(cam)
            scene.camera = cam
            views = rig.views()
            with quiet_stdout(quiet):
                for view in views:
                    cam.matrix_world = Matrix(view.camera_to_world())
                    scene.render.filepath = str(out / bundle.VIEWS_DIR / f"{view.index:02d}.png")
                    bpy.ops.render.render(write_still=True, scene=scene.name)
                    if progress is not None:
                        progress(view.index + 1, len(views))
    except RuntimeError as e:  # a render failure reported by the operator
        raise CaptureError(f"rendering failed: {e}") from None
    finally:
        # Objects first (they use the other datablocks), then the data they used.
        for coll, block in sorted(created, key=lambda cb: cb[0] != bpy.data.objects):
            with contextlib.suppress(ReferenceError):
                coll.remove(block)
        if not had_render_result:
            for img in [img for img in bpy.data.images if img.type == "RENDER_RESULT"]:
                bpy.data.images.remove(img)
