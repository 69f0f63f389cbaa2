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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from .content_hash import hash_parts
from .protocol import bundle, metadata, rig

#: Object types whose evaluated data converts to a renderable mesh.
GEOMETRY_TYPES = frozenset({"MESH", "CURVE", "SURFACE", "FONT", "META"})
#: Readable names for object types that can never be an asset on their own.
_NOT_GEOMETRY = {
    "LIGHT": "a light",
    "CAMERA": "a camera",
    "SPEAKER": "a speaker",
    "LIGHT_PROBE": "a light probe",
    "ARMATURE": "an armature",
    "LATTICE": "a lattice",
}
#: Below this radius (metres) the geometry is treated as a point: nothing to frame.
MIN_RADIUS = 1e-6
#: Neutral lighting: a white world for even ambient light plus a weak sun for shape cues. Both
#: are fixed in world space, so every view of an asset sees the same lighting (a NeRF needs that).
WORLD_STRENGTH = 0.8
SUN_STRENGTH = 1.5
SUN_ROTATION = (math.radians(35.0), 0.0, math.radians(30.0))


class CaptureError(ValueError):
    """The target cannot be captured; the message says why and what to do."""


@dataclass
class Part:
    """One piece of the evaluated asset: a temporary mesh placed with a world matrix.

    ``key`` names its origin (object name + instance number) for stable hashing; ``materials``
    are the material slots of the evaluated object (object-linked materials included).
    """

    key: str
    mesh: Any  # bpy.types.Mesh
    matrix: Matrix
    materials: list[Any] = field(default_factory=list)


@dataclass
class Bounds:
    """World-space axis-aligned bounding box of the evaluated geometry and its bounding sphere."""

    min: tuple[float, float, float]
    max: tuple[float, float, float]

    @property
    def size(self) -> tuple[float, float, float]:
        return tuple(b - a for a, b in zip(self.min, self.max, strict=True))  # type: ignore[return-value]

    @property
    def center(self) -> tuple[float, float, float]:
        return tuple((a + b) / 2.0 for a, b in zip(self.min, self.max, strict=True))  # type: ignore[return-value]

    @property
    def radius(self) -> float:
        """Half the box diagonal: the sphere around the box centre that contains the box."""
        return 0.5 * math.sqrt(sum(s * s for s in self.size))


def describe(target: Any) -> str:
    kind = "collection" if isinstance(target, bpy.types.Collection) else "object"
    return f"{kind} {target.name!r}"


def _check_target(target: Any) -> None:
    if isinstance(target, bpy.types.Collection):
        if any(target == scene.collection for scene in bpy.data.scenes):
            raise CaptureError("a scene's own collection is not an asset: pick a collection inside it or an object")
        return
    if not isinstance(target, bpy.types.Object):
        raise CaptureError(f"cannot capture {target!r}: select a mesh object or a collection")
    if target.type in _NOT_GEOMETRY:
        raise CaptureError(
            f"{describe(target)} is {_NOT_GEOMETRY[target.type]}, not geometry: select a mesh object or a "
            f"collection to capture"
        )
    if target.type == "EMPTY" and target.instance_type == "NONE" and not target.children:
        raise CaptureError(
            f"{describe(target)} is an empty with no geometry: select a mesh object, or make the empty "
            f"instance a collection"
        )


@contextlib.contextmanager
def _temp_scene(name: str) -> Iterator[Any]:
    """A new scene removed afterwards; the active scene is never changed."""
    scene = bpy.data.scenes.new(name)
    try:
        yield scene
    finally:
        bpy.data.scenes.remove(scene, do_unlink=True)


@contextlib.contextmanager
def evaluated_parts(target: Any) -> Iterator[list[Part]]:
    """Evaluate ``target`` (modifiers, Geometry Nodes, instances) into temporary world-space meshes.

    The target is linked into a temporary scene (so assets that live in no scene work too), its
    depsgraph evaluated, and every visible geometry instance converted with
    ``Mesh.new_from_object``. Instances sharing evaluated data share one temporary mesh. The
    meshes are removed when the context exits.
    """
    _check_target(target)
    meshes: list[Any] = []
    try:
        with _temp_scene("Asset2Vec Evaluate") as scene:
            if isinstance(target, bpy.types.Collection):
                scene.collection.children.link(target)
                members = list(target.all_objects)
            else:
                members = [target, *target.children_recursive]
                for ob in members:
                    scene.collection.objects.link(ob)
            for ob in members:
                if ob.mode == "EDIT":  # edit-mode changes live in the edit mesh until flushed
                    ob.update_from_editmode()
            view_layer = scene.view_layers[0]
            view_layer.update()  # allocates and evaluates the scene's depsgraph
            depsgraph = view_layer.depsgraph
            parts: list[Part] = []
            cache: dict[tuple, Any] = {}
            for i, inst in enumerate(depsgraph.object_instances):
                ob = inst.object
                if ob.type not in GEOMETRY_TYPES or (inst.is_instance is False and ob.original.hide_render):
                    continue
                if not inst.is_instance and not inst.show_self:
                    continue  # an emitter/instancer that hides itself
                # Evaluated materials are copies freed with the depsgraph: keep the originals.
                materials = [slot.material.original if slot.material else None for slot in ob.material_slots]
                key = (ob.data.as_pointer() if ob.data else ob.as_pointer(), tuple(m.name if m else "" for m in materials))
                mesh = cache.get(key)
                if mesh is None:
                    mesh = bpy.data.meshes.new_from_object(ob, preserve_all_data_layers=True, depsgraph=depsgraph)
                    meshes.append(mesh)
                    cache[key] = mesh
                if not mesh.vertices:
                    continue
                parts.append(Part(f"{ob.original.name}#{i}" if inst.is_instance else ob.original.name, mesh,
                                  inst.matrix_world.copy(), materials))
        yield parts
    finally:
        for mesh in meshes:
            bpy.data.meshes.remove(mesh)


def world_bounds(parts: list[Part]) -> Bounds:
    """Exact world-space bounding box of the parts' vertices."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for part in parts:
        n = len(part.mesh.vertices)
        co = np.empty(n * 3, dtype=np.float32)
        part.mesh.vertices.foreach_get("co", co)
        m = np.array(part.matrix, dtype=np.float64)
        world = co.reshape(n, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        lo = np.minimum(lo, world.min(axis=0))
        hi = np.maximum(hi, world.max(axis=0))
    return Bounds(tuple(float(v) for v in lo), tuple(float(v) for v in hi))  # type: ignore[arg-type]


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
    predictions never come back to the backend as the artist's own tags.
    """
    data = getattr(target, "asset_data", None)
    if data is None:
        return []
    group = target.get(metadata.NAMESPACE) if hasattr(target, "get") else None
    added = set()
    if group is not None and hasattr(group, "get"):
        added = {str(t) for t in (group.get(metadata.ADDED_TAGS) or [])}
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
        with _temp_scene("Asset2Vec Capture") as scene:
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
