"""Cycles capture of one asset into an 18-view bundle (:mod:`shared.bundle`).

The asset (an Object, a Collection, or anything producing instances such as Geometry Nodes) is
evaluated in a temporary scene, copied as plain meshes, normalised to its bounding sphere (centre
to the origin, radius to 1) and rendered from the rig's cameras (:func:`shared.rig.views`), so the
matrices written to ``transforms.json`` are exactly the cameras that rendered the pixels.

The user's scenes, render settings, selection and active object are never touched: everything
lives in temporary scenes and datablocks removed in ``finally`` blocks, even on error.

:class:`Capture` does it in slices (set up, one view or one band of a view per step, transforms.json) so that the
add-on's timer keeps Blender responsive; :func:`capture_asset` runs the same slices in one go, whole views only.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from . import capture_guard
from .content_hash import hash_parts
from .errors import CaptureError
from .parts import Bounds, Part, describe, evaluated_parts, world_bounds
from .protocol import bundle, metadata, rig

#: Below this radius (metres) the geometry is treated as a point: nothing to frame.
MIN_RADIUS = 1e-6
#: Neutral lighting: a white world for even ambient light plus a weak sun for shape cues. Both
#: are fixed in world space, so every view of an asset sees the same lighting (a NeRF needs that).
WORLD_STRENGTH = 0.8
SUN_STRENGTH = 1.5
SUN_ROTATION = (math.radians(35.0), 0.0, math.radians(30.0))
#: Pixel-samples one CPU render step may take (64 x 64 px at 16 samples: 0.02-0.05 s on a 2-core CPU, so a step
#: stays under 0.2 s with other work competing for the cores) before :class:`Capture` renders a view in bands. Not
#: timing-dependent, so the same settings always cut the same bands; not that it would show in the pixels, which
#: are the same whatever the bands (Cycles seeds each pixel by its position in the full frame).
BAND_PIXEL_SAMPLES = 64 * 64 * 16
#: The thinnest band in rows (each band writes and reads a full-frame file: thin bands at large sizes cost more in
#: files than they save in render time).
MIN_BAND_ROWS = 8


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


def view_bands(size: int, samples: int, device: str) -> int:
    """How many horizontal bands (one render step each) :class:`Capture` cuts a ``size`` px view into.

    1 on a GPU (a whole view renders fast there; each band adds a render's fixed cost) and for small views; on a CPU,
    enough bands that none renders more than :data:`BAND_PIXEL_SAMPLES` (128 px at 16 samples: 4 bands), down
    to bands of :data:`MIN_BAND_ROWS` (beyond that, at sizes and samples far above the defaults, steps grow).
    """
    if device == "GPU":
        return 1
    return max(1, min(math.ceil(size * size * samples / BAND_PIXEL_SAMPLES), size // MIN_BAND_ROWS))


def _write_png(path: Path, rgba: np.ndarray) -> None:
    """An 8-bit RGBA PNG of ``rgba`` (rows top to bottom), written atomically (no half-written view)."""
    h, w, _ = rgba.shape
    rows = rgba.reshape(h, w * 4).astype(np.int16)
    filtered = np.empty((h, w * 4 + 1), np.uint8)
    filtered[:, 0] = 1  # PNG's "Sub" filter: each byte minus the one a pixel to its left
    filtered[:, 1:5] = rows[:, :4]
    filtered[:, 5:] = (rows[:, 4:] - rows[:, :-4]) % 256

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)) + chunk(b"IEND", b""))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(png)
    os.replace(tmp, path)


def _read_tga(path: Path, size: int) -> np.ndarray:
    """The RGBA pixels (rows top to bottom) of a ``size`` px uncompressed 32-bit Targa Blender wrote.

    Read here, not through ``bpy.data.images``: adding and removing an Image makes the next render sync the whole
    scene again (0.1 s at 130k faces), where a band should only cost its pixels.
    """
    data = path.read_bytes()
    id_len, kind, (w, h), bpp, descriptor = data[0], data[2], struct.unpack_from("<HH", data, 12), data[16], data[17]
    if kind != 2 or bpp != 32 or (w, h) != (size, size):
        raise CaptureError(f"unexpected band file {path.name}: type {kind}, {bpp} bits, {w}x{h}")
    bgra = np.frombuffer(data, np.uint8, count=w * h * 4, offset=18 + id_len).reshape(h, w, 4)
    rgba = bgra[:, :, [2, 1, 0, 3]]
    return rgba if descriptor & 0x20 else rgba[::-1]  # bit 5: rows stored top first


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

    The one-shot form of :class:`Capture` (headless and bulk callers): the same slices, in a loop.
    """
    # Whole views (no bands): nothing waits on a one-shot capture, and the pixels are the same either way.
    return Capture(target, out_dir, size, samples, name=name, category=category, family=family,
                   parameters=parameters, source_blend=source_blend, device=device, quiet=quiet,
                   progress=progress, bands=1).run()


class Capture:
    """One asset's capture in slices short enough for Blender's UI: each :meth:`step` does one piece.

    The first step evaluates the asset (inside ``around_setup()``, e.g. a family variant's inputs applied only
    while it is evaluated) and builds a temporary render scene from static copies of its meshes; each next step
    renders one view, or one horizontal band of it when a view would take too long (``bands``, by default
    :func:`view_bands`; the view's PNG is written, the same pixels as a whole render, with its last band); the
    last step writes ``transforms.json`` and sets :attr:`bundle`. Between steps the user's data
    is untouched: the asset is in no extra scene, and the render scene holds only copies. Before a save, a file
    load or an undo (Blender's handlers) the temporary datablocks are removed, so none is ever saved or left
    dangling; the next step builds them again (from view 0 if the asset changed meanwhile, or raises
    :class:`CaptureError` when it is gone). :meth:`close` removes them (finish, cancel, error: always call it).

    The asset is never held between steps (an undo or a file load may free it: a stale ID pointer can crash
    Blender): each set-up finds it again with ``resolve()`` (by default by its kind and name), and
    ``around_setup(asset)`` gets the object found. Every datablock a capture creates carries :data:`~blender_addon.capture_guard.TMP_PROP`,
    so one an undo step or a recovered autosave brings back is removed (:func:`remove_stale`).
    """

    def __init__(
        self,
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
        around_setup: Callable[[Any], contextlib.AbstractContextManager[Any]] | None = None,
        bands: int | None = None,
        resolve: Callable[[], Any | None] | None = None,
    ) -> None:
        if not bundle.MIN_IMAGE_SIZE <= size <= bundle.MAX_IMAGE_SIZE:
            raise CaptureError(f"image size {size} px is outside {bundle.MIN_IMAGE_SIZE}..{bundle.MAX_IMAGE_SIZE}")
        if samples < 1:
            raise CaptureError(f"samples must be at least 1, got {samples}")
        if device not in ("AUTO", "CPU", "GPU"):
            raise CaptureError(f"device must be AUTO, CPU or GPU, got {device!r}")
        if bands is not None and not 1 <= bands <= size // 2:
            raise CaptureError(f"bands must be 1..{size // 2} for {size} px views, got {bands}")
        self.out = Path(out_dir)
        try:
            (self.out / bundle.VIEWS_DIR).mkdir(parents=True, exist_ok=True)
            # An old transforms.json must not vouch for a half-rendered set of new views.
            (self.out / bundle.TRANSFORMS).unlink(missing_ok=True)
        except OSError as e:
            raise CaptureError(f"cannot write the bundle folder {self.out}: {e.strerror or e}") from None
        self.size, self.samples, self.quiet, self.progress = size, samples, quiet, progress
        # The asset by name, never by ID pointer: an undo or a load between steps may free the ID.
        self.target_name: str = target.name
        self._resolve = resolve if resolve is not None else _by_name(target)
        self._file_changed = False  # set before another file loads: the asset by that name is another one
        self._device = device
        # The file as it was when the capture began (a save midway must not change what the bundle says).
        self._describe = dict(name=name, category=category, family=family, parameters=dict(parameters or {}),
                              source_blend=bpy.data.filepath if source_blend is None else source_blend)
        self._around_setup = around_setup
        self.views = rig.views()
        self.done = 0  # views rendered
        self._bands_asked = bands
        self.bands = 1  # bands per view (set with the device at set-up)
        self._band = 0  # bands of view ``done`` rendered
        self._pixels: np.ndarray | None = None  # view ``done`` so far (rows top to bottom) while in bands
        self.info: bundle.AssetInfo | None = None
        self.bundle: bundle.Bundle | None = None
        self._scene: Any = None  # the temporary render scene (None: not set up, or torn down before a save/load)
        self._camera: Any = None
        self._created: list[tuple[Any, Any]] = []  # (bpy.data collection, datablock) to remove
        capture_guard.watch(self)

    @property
    def total(self) -> int:
        return len(self.views)

    def step(self) -> bool:
        """Do the next slice of the capture; True while more remain (then :attr:`bundle` is set)."""
        if self.bundle is not None:
            return False
        try:
            if self._scene is None and self.done < self.total:
                self._set_up()
            elif self.done < self.total:
                if not self._render(self.views[self.done]):
                    return True  # more bands of this view to come
                self.done += 1
                if self.progress is not None:
                    self.progress(self.done, self.total)
            else:
                self.close()
                assert self.info is not None
                bundle.write_transforms(self.out, self.size, self.info)
                self.bundle = bundle.read_bundle(self.out, expected_size=self.size)
                return False
        except RuntimeError as e:  # a render failure reported by the operator
            self.close()
            raise CaptureError(f"rendering failed: {e}") from None
        except BaseException:
            self.close()
            raise
        return True

    def run(self) -> bundle.Bundle:
        """Every remaining slice at once; the bundle."""
        try:
            while self.step():
                pass
        finally:
            self.close()
        assert self.bundle is not None
        return self.bundle

    def close(self) -> None:
        """Remove the temporary datablocks (idempotent; the rendered views stay on disk)."""
        self._tear_down()
        self._band_file.unlink(missing_ok=True)
        capture_guard.unwatch(self)  # the last capture to close removes the Render Result rendering made

    # -- slices --------------------------------------------------------------------------------------

    def _set_up(self) -> None:
        """Evaluate the asset and build the render scene from copies of its meshes."""
        target = None
        if not self._file_changed:
            with contextlib.suppress(ReferenceError):
                target = self._resolve()
        if target is None:
            raise CaptureError(f"{self.target_name!r} was deleted or renamed, or another file was opened, while "
                               f"capturing: nothing was captured")
        capture_guard.remove_stale()  # an undo step or a recovered autosave may hold an old capture's datablocks
        target_name = target.name
        d = self._describe
        with self._around_setup(target) if self._around_setup is not None else contextlib.nullcontext():
            with evaluated_parts(target) as parts:
                if not parts:
                    t = target
                    hidden = (" (it is hidden from render or in viewports)"
                              if getattr(t, "hide_render", False) or getattr(t, "hide_viewport", False) else "")
                    raise CaptureError(f"{describe(t)} has no renderable geometry{hidden}: nothing to capture")
                bounds = world_bounds(parts)
                if not math.isfinite(bounds.radius) or bounds.radius < MIN_RADIUS:
                    raise CaptureError(f"{describe(target)} has zero size (all its vertices are at one point): "
                                       f"nothing to frame")
                info = bundle.AssetInfo(
                    name=d["name"] or target_name,
                    source_blend=d["source_blend"],
                    asset_name=target_name,
                    content_hash=hash_parts(parts),
                    family=d["family"],
                    parameters=d["parameters"],
                    tags=asset_tags(target),
                    category=d["category"],
                    size=bounds.size,
                    center=bounds.center,
                    radius=bounds.radius,
                )
                if self.info is not None and info.content_hash != self.info.content_hash:
                    self.done = 0  # set up again after a save or undo, and the asset changed: start over
                self.info = info
                self._band, self._pixels = 0, None  # a view cut short by a save or undo starts again
                try:
                    self._build_scene(parts, bounds)
                except BaseException:
                    self._tear_down()
                    raise

    def _build_scene(self, parts: list[Part], bounds: Bounds) -> None:
        """A temporary scene with normalised copies of ``parts``, neutral lighting and the rig's camera."""
        def new(coll: Any, *args: Any) -> Any:
            block = coll.new(*args)
            block[capture_guard.TMP_PROP] = True
            self._created.append((coll, block))
            return block

        device = cycles_device() if self._device == "AUTO" else self._device
        scene = new(bpy.data.scenes, "Asset2Vec Capture")
        self._scene = scene
        _configure(scene, self.size, self.samples, device)
        self.bands = self._bands_asked or view_bands(self.size, self.samples, device)
        if self.bands > 1:
            r = scene.render
            r.use_border, r.use_crop_to_border = True, False  # full-frame files: dither noise keyed to the frame
            r.border_min_x, r.border_max_x = 0.0, 1.0
            r.image_settings.file_format = "TARGA_RAW"  # band files: the same 8-bit pixels as the PNG, no decoder
        world = new(bpy.data.worlds, "Asset2Vec Capture World")
        background = world.node_tree.nodes.get("Background")
        background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        background.inputs["Strength"].default_value = WORLD_STRENGTH
        # A uniform background gains nothing from light sampling (BSDF sampling already matches
        # it) and skipping it saves a shadow ray per bounce.
        world.cycles.sampling_method = "NONE"
        scene.world = world
        # Unit-sphere normalisation: translate the sphere's centre to the origin, scale radius to 1.
        normalise = Matrix.Scale(1.0 / bounds.radius, 4) @ Matrix.Translation([-v for v in bounds.center])
        copies: dict[int, Any] = {}
        for part in parts:
            # The evaluated meshes go with the evaluation (which links the asset into a scene): the render
            # scene keeps its own static copies, so nothing of the user's is held between steps.
            mesh = copies.get(id(part.mesh))
            if mesh is None:
                mesh = copies[id(part.mesh)] = part.mesh.copy()
                mesh[capture_guard.TMP_PROP] = True
                self._created.append((bpy.data.meshes, mesh))
            ob = new(bpy.data.objects, f"a2v:{part.key}", mesh)
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
        scene.camera = self._camera = cam

    @property
    def _band_file(self) -> Path:
        return self.out / ".a2v-band.tga"

    def _render(self, view: rig.RigView) -> bool:
        """Render the next band of ``view`` (the whole view when :attr:`bands` is 1); True once its PNG is written."""
        scene, h, n = self._scene, self.size, self.bands
        path = self.out / bundle.VIEWS_DIR / f"{view.index:02d}.png"
        if self._band == 0:
            self._camera.matrix_world = Matrix(view.camera_to_world())
        if n == 1:
            scene.render.filepath = str(path)
            with quiet_stdout(self.quiet):
                bpy.ops.render.render(write_still=True, scene=scene.name)
            return True
        # Band b holds rows [lo, hi) counted from the bottom (the border's origin). Blender truncates border * size
        # to whole rows (lo / size can land a row short), so each inner edge sits half a row above its row's bottom.
        lo, hi = self._band * h // n, (self._band + 1) * h // n
        r = scene.render
        r.border_min_y = (lo + 0.5) / h if lo else 0.0
        r.border_max_y = (hi + 0.5) / h if hi < h else 1.0
        r.filepath = str(self._band_file)
        with quiet_stdout(self.quiet):
            bpy.ops.render.render(write_still=True, scene=scene.name)
        # The band's rows of the full-frame file are byte for byte those of a whole render (same per-pixel seeds,
        # same dither noise); the rows outside it are blank.
        rows = _read_tga(self._band_file, h)
        if self._pixels is None:
            self._pixels = np.zeros((h, h, 4), np.uint8)
        self._pixels[h - hi:h - lo] = rows[h - hi:h - lo]
        self._band += 1
        if self._band < n:
            return False
        _write_png(path, self._pixels)
        self._band, self._pixels = 0, None
        self._band_file.unlink(missing_ok=True)
        return True

    def _tear_down(self) -> None:
        """Remove the render scene and its datablocks: objects first (they use the others), the scene last."""
        for coll, block in sorted(self._created, key=lambda cb: capture_guard.removal_order(cb[0])):
            with contextlib.suppress(ReferenceError):  # already freed with its file
                coll.remove(block)
        self._created.clear()
        self._scene = self._camera = None


def _by_name(target: Any) -> Callable[[], Any | None]:
    """Finds ``target`` again by its kind and name (None once it is deleted or renamed).

    What its name does not find (not an Object or a Collection, a scene's own collection, a linked ID whose name a
    local one shadows) is handed on as it is: set-up reports what cannot be captured.
    """
    collection, name = isinstance(target, bpy.types.Collection), target.name
    if not isinstance(target, bpy.types.Object | bpy.types.Collection) or \
            (bpy.data.collections if collection else bpy.data.objects).get(name) != target:
        return lambda: target
    return lambda: (bpy.data.collections if collection else bpy.data.objects).get(name)
