"""The view bundle: 18 RGBA PNG views + ``transforms.json`` + asset metadata.

Layout of a bundle folder (or the same files at the root of a ``.zip`` archive)::

    transforms.json        NeRF-style: camera_angle_x, fl_x, fl_y, cx, cy, w, h, frames[...]
    views/00.png ...       18 RGBA 8-bit PNGs, transparent background, square

``transforms.json`` is what instant-ngp / nerfstudio / the original NeRF loaders read: every
frame has a ``file_path`` and a 4x4 camera-to-world ``transform_matrix`` (OpenGL convention,
see :mod:`shared.rig`). Asset2Vec adds ``rig`` (name and per-view ring/elevation/azimuth),
``asset`` (:class:`AssetInfo`) and ``bundle_version``. The matrices are in *normalised* asset
space (bounding sphere at the origin, radius 1); ``asset.center`` and ``asset.radius`` map it
back to Blender world space.

Reading validates everything and raises :class:`BundleError` with a message that says what is
wrong; this module needs neither numpy nor Pillow, so Blender and the backend share it.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import rig
from .atomic import atomic_write

BUNDLE_VERSION = 1
TRANSFORMS = "transforms.json"
VIEWS_DIR = "views"
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Largest transforms.json accepted (it is a few kB; anything bigger is not a bundle).
MAX_TRANSFORMS_BYTES = 1024 * 1024
#: Errors the zip reader raises for damaged, encrypted, truncated or exotic archives (half an archive:
#: ValueError "negative seek value"; a damaged header: struct.error).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError, ValueError,
               struct.error)
#: Bytes decompressed per read: a member is never inflated past its limit, whatever its header declares.
_CHUNK = 64 * 1024


class BundleError(ValueError):
    """A view bundle is missing, incomplete or malformed; the message says what and where."""


@dataclass
class AssetInfo:
    """What a bundle says about the asset it shows.

    ``size`` is the world-space bounding-box size in metres (x, y, z): codes are scale-free, but
    real size is one of the strongest signals of what an asset is.
    """

    name: str
    source_blend: str = ""
    asset_name: str = ""
    content_hash: str = ""
    family: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    category: str = ""
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 1.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AssetInfo:
        if not isinstance(data, dict) or not data.get("name"):
            raise BundleError("transforms.json: 'asset' must be an object with a non-empty 'name'")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("size", "center"):
            if key in kwargs:
                kwargs[key] = _vector(kwargs[key], 3, f"asset.{key}")
        for key in ("name", "source_blend", "asset_name", "content_hash", "family", "category"):
            if key in kwargs and not isinstance(kwargs[key], str):
                raise BundleError(f"transforms.json: asset.{key} must be a string")
        if not isinstance(kwargs.get("parameters", {}), dict):
            raise BundleError("transforms.json: asset.parameters must be an object of name -> value")
        tags = kwargs.get("tags", [])
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise BundleError("transforms.json: asset.tags must be a list of strings")
        info = cls(**kwargs)
        radius_ok = isinstance(info.radius, (int, float)) and not isinstance(info.radius, bool)
        if not (radius_ok and math.isfinite(info.radius) and info.radius > 0):
            raise BundleError(f"transforms.json: asset.radius must be a positive number, got {info.radius!r}")
        return info


@dataclass
class Frame:
    """One view: its PNG (relative path) and camera-to-world matrix."""

    file_path: str
    transform_matrix: list[list[float]]
    ring: int
    elevation_deg: float
    azimuth_deg: float


@dataclass
class Bundle:
    """A validated bundle. ``root`` is the folder (or archive) it was read from, if any."""

    image_size: int
    frames: list[Frame]
    asset: AssetInfo
    root: Path | None = None
    rig_name: str = rig.RIG_NAME

    def image_bytes(self, index: int) -> bytes:
        """The PNG bytes of view ``index`` (from the folder or archive the bundle was read from)."""
        if self.root is None:
            raise BundleError("this bundle was not read from disk; it has no images to load")
        rel = self.frames[index].file_path
        if self.root.is_dir():
            return (self.root / rel).read_bytes()
        with zipfile.ZipFile(self.root) as zf:
            return zf.read(rel)

    def transforms(self) -> dict[str, Any]:
        """The ``transforms.json`` content of this bundle."""
        return {
            "bundle_version": BUNDLE_VERSION,
            **rig.intrinsics(self.image_size),
            "rig": {"name": self.rig_name, "num_views": rig.NUM_VIEWS, "fov_deg": rig.FOV_DEG},
            "asset": _jsonable(asdict(self.asset)),
            "frames": [asdict(f) for f in self.frames],
        }


def rig_frames() -> list[Frame]:
    """The 18 frames of the standard rig, with their canonical file names."""
    return [
        Frame(
            file_path=f"{VIEWS_DIR}/{v.index:02d}.png",
            transform_matrix=v.camera_to_world(),
            ring=v.ring,
            elevation_deg=v.elevation_deg,
            azimuth_deg=v.azimuth_deg,
        )
        for v in rig.views()
    ]


def write_transforms(folder: str | os.PathLike[str], image_size: int, asset: AssetInfo) -> Path:
    """Write ``transforms.json`` for images already rendered into ``folder/views/NN.png``.

    Written atomically (temp file + rename) so a crash never leaves half a file. Returns the
    path; call :func:`read_bundle` afterwards to validate the images too.
    """
    folder = Path(folder)
    bundle = Bundle(image_size=image_size, frames=rig_frames(), asset=asset)
    atomic_write(folder / TRANSFORMS, json.dumps(bundle.transforms(), indent=1).encode())
    return folder / TRANSFORMS


def archive_bytes(bundle: Bundle | str | os.PathLike[str]) -> bytes:
    """The upload ``.zip`` of a bundle, built in memory (no copy on disk): ``transforms.json`` and the views in
    the protocol's layout. ``bundle``: a :class:`Bundle` read from disk, or its folder (read and validated here)."""
    if not isinstance(bundle, Bundle):
        bundle = read_bundle(bundle)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # PNGs are already compressed
        zf.writestr(TRANSFORMS, json.dumps(bundle.transforms(), indent=1))
        for i, fr in enumerate(bundle.frames):
            zf.writestr(fr.file_path, bundle.image_bytes(i))
    return buf.getvalue()


def write_archive(bundle: Bundle, path: str | os.PathLike[str]) -> Path:
    """Pack a bundle read from disk into a single ``.zip`` (for upload), atomically."""
    atomic_write(Path(path), archive_bytes(bundle))
    return Path(path)


def read_bundle(path: str | os.PathLike[str], expected_size: int | None = None) -> Bundle:
    """Read and validate a bundle folder or ``.zip``.

    Checks: ``transforms.json`` parses; 18 frames from this rig; every matrix is a finite rigid
    4x4 transform; every PNG exists, is RGBA 8-bit, square, of the declared size (and of
    ``expected_size`` if given). Raises :class:`BundleError` naming the first problem.
    """
    root = Path(path)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle (expected a folder or .zip with {TRANSFORMS})")
    if root.is_dir():
        if not (root / TRANSFORMS).is_file():
            raise BundleError(f"{root}: not a view bundle, it has no {TRANSFORMS}")
        raw = (root / TRANSFORMS).read_bytes()

        def read(rel: str) -> bytes | None:
            p = root / rel
            return p.read_bytes() if p.is_file() else None

        return _parse(raw, read, root, expected_size)
    try:
        zf = zipfile.ZipFile(root)
    except _ZIP_ERRORS as e:
        raise BundleError(f"{root}: not a bundle folder or a readable .zip archive ({e})") from None
    with zf:
        return parse_archive_bytes_from(zf, root, expected_size)


def parse_archive(data: bytes, expected_size: int | None = None) -> tuple[Bundle, dict[str, bytes]]:
    """Validate an in-memory ``.zip`` bundle (an upload). Returns the bundle and its PNG bytes."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS:
        raise BundleError("upload is not a .zip archive of a view bundle") from None
    with zf:
        bundle = parse_archive_bytes_from(zf, None, expected_size)
        images = {f.file_path: _read_member(zf, f.file_path, _max_png_bytes(bundle.image_size), "archive")
                  for f in bundle.frames}
    return bundle, images


def protocol_members() -> tuple[str, ...]:
    """The archive members a bundle consists of: ``transforms.json`` and ``views/00.png`` .. ``views/17.png``.
    Nothing else in an archive is ever read (extra members are ignored, never unpacked)."""
    return (TRANSFORMS, *(f"{VIEWS_DIR}/{i:02d}.png" for i in range(rig.NUM_VIEWS)))


def _check_declared_total(zf: zipfile.ZipFile, size: int | None, where: str) -> None:
    """Refuse an archive whose protocol members declare more uncompressed bytes than a bundle of its image size
    can hold, before any view is decompressed (the reads also stop at each member's limit)."""
    limit = MAX_TRANSFORMS_BYTES + rig.NUM_VIEWS * _max_png_bytes(size)
    total = 0
    for name in protocol_members():
        try:
            declared = zf.getinfo(name).file_size
        except KeyError:
            continue
        most = MAX_TRANSFORMS_BYTES if name == TRANSFORMS else _max_png_bytes(size)
        if declared > most:
            raise BundleError(f"{where}: {name} is {declared} bytes uncompressed, more than the {most} allowed")
        total += declared
    if total > limit:
        raise BundleError(f"{where}: the bundle's files declare {total} bytes uncompressed, more than the {limit} "
                          f"a bundle of its image size can hold")


def parse_archive_bytes_from(zf: zipfile.ZipFile, root: Path | None, expected_size: int | None) -> Bundle:
    try:
        names = set(zf.namelist()) & set(protocol_members())  # only the members the protocol names
    except _ZIP_ERRORS as e:
        raise BundleError(f"{where_of(root)}: damaged archive ({type(e).__name__})") from None
    where = where_of(root)
    if TRANSFORMS not in names:
        raise BundleError(f"{where}: not a view bundle, it has no {TRANSFORMS} at its root")

    raw = _read_member(zf, TRANSFORMS, MAX_TRANSFORMS_BYTES, where)
    size = _declared_size(raw)
    _check_declared_total(zf, size, where)

    def read(rel: str) -> bytes | None:
        if rel not in names:
            if rel in protocol_members():
                return None
            raise BundleError(f"{where}: {rel!r} is not a view of the bundle protocol (views/00.png .. "
                              f"views/{rig.NUM_VIEWS - 1:02d}.png)")
        return _read_member(zf, rel, _max_png_bytes(size), where)

    return _parse(raw, read, root, expected_size)


def where_of(root: Path | None) -> str:
    """How messages name a bundle: its path, or "archive" for an upload."""
    return str(root) if root else "archive"


def _max_png_bytes(size: int | None) -> int:
    """Upper bound for one view's PNG: raw RGBA plus generous overhead (PNGs never grow much beyond raw)."""
    side = size if isinstance(size, int) and MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE else MAX_IMAGE_SIZE
    return side * side * 4 + 64 * 1024


def _declared_size(raw: bytes) -> int | None:
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, too deep, an integer of thousands of digits
        return None
    return meta.get("w") if isinstance(meta, dict) else None


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, where: str) -> bytes:
    """Read one archive member, refusing one that declares more than ``limit`` bytes before decompressing it,
    and one that inflates past ``limit`` while reading (a header that lies): at most ``limit + _CHUNK`` bytes are
    ever held. A zip bomb is refused without writing or allocating it."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise BundleError(f"{where}: {name} is missing") from None
    if info.file_size > limit:
        raise BundleError(f"{where}: {name} is {info.file_size} bytes uncompressed, more than the {limit} allowed")
    chunks: list[bytes] = []
    got = 0
    try:
        with zf.open(info) as member:
            while chunk := member.read(_CHUNK):
                got += len(chunk)
                if got > limit:
                    raise BundleError(f"{where}: {name} inflates past the {limit} bytes allowed")
                chunks.append(chunk)
    except _ZIP_ERRORS as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"{where}: {name} cannot be read from the archive ({type(e).__name__}: "
                          f"{str(e)[:120]})") from None
    return b"".join(chunks)


def png_info(data: bytes) -> tuple[int, int, int, int]:
    """``(width, height, bit_depth, colour_type)`` from a PNG's IHDR chunk."""
    if len(data) < 33 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise BundleError("not a PNG image")
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    return w, h, depth, ctype


def _parse(raw: bytes, read, root: Path | None, expected_size: int | None) -> Bundle:
    where = str(root) if root else "archive"
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{where}/{TRANSFORMS}: not valid JSON ({e})") from None
    except (ValueError, RecursionError) as e:  # nested too deep, an integer of thousands of digits
        raise BundleError(f"{where}/{TRANSFORMS}: not acceptable JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{where}/{TRANSFORMS}: expected a JSON object")
    version = meta.get("bundle_version")
    if version != BUNDLE_VERSION:
        raise BundleError(
            f"{where}: bundle_version {version!r} is not supported (this Asset2Vec reads version "
            f"{BUNDLE_VERSION}); capture the asset again with this version"
        )
    rig_meta = meta.get("rig")
    rig_name = rig_meta.get("name") if isinstance(rig_meta, dict) else None
    if rig_name != rig.RIG_NAME:
        raise BundleError(f"{where}: captured with rig {rig_name!r}, expected {rig.RIG_NAME!r}")
    size = meta.get("w")
    if not isinstance(size, int) or size != meta.get("h"):
        raise BundleError(f"{where}: image size must be square integers, got w={size!r} h={meta.get('h')!r}")
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise BundleError(f"{where}: image size {size} px is outside {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}")
    if expected_size is not None and size != expected_size:
        raise BundleError(f"{where}: views are {size} px but {expected_size} px are required")
    fov = meta.get("camera_angle_x")
    if not isinstance(fov, (int, float)) or abs(fov - math.radians(rig.FOV_DEG)) > 1e-4:
        raise BundleError(f"{where}: camera_angle_x {fov!r} does not match the rig's {rig.FOV_DEG} degrees")
    asset = AssetInfo.from_json(meta.get("asset"))
    frames_raw = meta.get("frames")
    if not isinstance(frames_raw, list) or len(frames_raw) != rig.NUM_VIEWS:
        n = len(frames_raw) if isinstance(frames_raw, list) else 0
        raise BundleError(f"{where}: {n} frames in {TRANSFORMS}, the rig has {rig.NUM_VIEWS}")
    frames: list[Frame] = []
    seen: set[str] = set()
    for i, fr in enumerate(frames_raw):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise BundleError(f"{where}: frame {i} needs 'file_path' and 'transform_matrix'")
        m = _matrix(fr["transform_matrix"], f"{where}: frame {i}")
        rel = str(fr["file_path"])[:300]
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise BundleError(f"{where}: frame {i} file_path {rel!r} must be relative inside the bundle")
        data = read(rel)
        if data is None:
            raise BundleError(f"{where}: frame {i} image {rel} is missing")
        try:
            w, h, depth, ctype = png_info(data)
        except BundleError:
            raise BundleError(f"{where}: frame {i} image {rel} is not a PNG") from None
        if (w, h) != (size, size):
            raise BundleError(f"{where}: frame {i} image {rel} is {w}x{h}, expected {size}x{size}")
        if depth != 8 or ctype != 6:
            raise BundleError(f"{where}: frame {i} image {rel} must be 8-bit RGBA (PNG colour type 6)")
        if rel in seen:
            raise BundleError(f"{where}: frame {i} reuses image {rel}; every view needs its own image")
        seen.add(rel)
        try:
            ring, el, az = int(fr.get("ring", 0)), float(fr.get("elevation_deg", 0.0)), float(fr.get("azimuth_deg", 0.0))
        except (TypeError, ValueError):
            raise BundleError(f"{where}: frame {i} ring/elevation_deg/azimuth_deg must be numbers") from None
        frames.append(Frame(file_path=rel, transform_matrix=m, ring=ring, elevation_deg=el, azimuth_deg=az))
    return Bundle(image_size=size, frames=frames, asset=asset, root=root, rig_name=rig_name)


def _matrix(m: Any, where: str) -> list[list[float]]:
    ok = isinstance(m, list) and len(m) == 4 and all(isinstance(r, list) and len(r) == 4 for r in m)
    if not ok or not all(isinstance(v, (int, float)) and math.isfinite(v) for r in m for v in r):
        raise BundleError(f"{where}: transform_matrix must be a 4x4 array of finite numbers")
    if [float(v) for v in m[3]] != [0.0, 0.0, 0.0, 1.0]:
        raise BundleError(f"{where}: transform_matrix's last row must be [0, 0, 0, 1]")
    # The rotation part must be orthonormal with determinant +1 (a rigid camera pose).
    for a in range(3):
        for b in range(3):
            dot = sum(m[k][a] * m[k][b] for k in range(3))
            if abs(dot - (1.0 if a == b else 0.0)) > 1e-3:
                raise BundleError(f"{where}: transform_matrix's rotation is not orthonormal")
    det = (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )
    if det < 0:
        raise BundleError(f"{where}: transform_matrix is a reflection (determinant < 0)")
    return [[float(v) for v in r] for r in m]


def _vector(v: Any, n: int, name: str) -> tuple[float, ...]:
    if not (isinstance(v, (list, tuple)) and len(v) == n and all(isinstance(x, (int, float)) for x in v)):
        raise BundleError(f"transforms.json: {name} must be a list of {n} numbers")
    return tuple(float(x) for x in v)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
