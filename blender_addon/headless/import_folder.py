"""Import a folder of OBJ / glTF models into marked assets in new .blend files.

Each model file under the source folder becomes one object (its parts joined), standing on the
ground plane (Z up, metres, bottom centre at the origin), marked as an asset with tags and a
catalogue from an optional Sweet Home 3D style ``catalog.json``. Assets are saved into one .blend
per category (split every ``per_file`` assets), written atomically; sources are only read.

Sweet Home 3D models are Y-up in arbitrary units that the catalogue resizes to its
width/depth/height (cm); with a catalogue record the model is scaled to exactly those sizes
(width along X, depth along Y, height along Z), otherwise OBJ units are taken as ``obj_scale``
metres (default: centimetres) and glTF as metres (its specification's unit).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
from mathutils import Matrix, Vector

from ..capture import quiet_stdout
from ..errors import AddonError
from ..protocol import library_files
from .sample_library import catalog_id, mark_asset, save_blend_atomic, write_catalog_file

REPORT = "import_report.json"
UNCATEGORISED = "Uncategorised"


class FolderImportError(AddonError, ValueError):
    """The folder or catalogue cannot be imported; the message says what to fix."""


def find_models(src_dir: Path) -> list[Path]:
    """Model files under ``src_dir`` (recursive, sorted for a stable order)."""
    return sorted(p for p in src_dir.rglob("*") if p.is_file() and p.suffix.lower() in library_files.MODEL_SUFFIXES)


def load_catalogue(path: Path, src_dir: Path) -> dict[Path, dict[str, Any]]:
    """``{model path: record}`` from a Sweet Home 3D style catalog.json (records with key, obj, ...)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FolderImportError(f"cannot read the catalogue {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise FolderImportError(f"the catalogue {path} is not valid JSON ({e})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and r.get("obj") for r in records):
        raise FolderImportError(f"the catalogue {path} must be a JSON list of records with at least an 'obj' field")
    out = {}
    for r in records:
        rel = Path(str(r.get("key", ""))) / str(r["obj"]) if r.get("key") else Path(str(r["obj"]))
        out[(src_dir / rel).resolve()] = r
    return out


def _cm(record: dict[str, Any], key: str) -> float | None:
    try:
        v = float(record.get(key))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v / 100.0 if v > 0 else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "assets"


def _import_file(path: Path) -> list[Any]:
    """Import one model into the current scene; returns the new objects."""
    before = set(bpy.data.objects)
    with quiet_stdout(True):
        if path.suffix.lower() == ".obj":
            # OBJ files are Y-up by convention (Sweet Home 3D's are): convert to Blender's Z-up.
            bpy.ops.wm.obj_import(filepath=str(path), forward_axis="NEGATIVE_Z", up_axis="Y")
        else:
            bpy.ops.import_scene.gltf(filepath=str(path))
    return [ob for ob in bpy.data.objects if ob not in before]


def _join(objects: list[Any], name: str) -> Any:
    """Join the mesh objects into one, with world transforms baked into the mesh; drop the rest."""
    meshes = [ob for ob in objects if ob.type == "MESH" and len(ob.data.vertices) > 0]
    for ob in meshes:  # unparent keeping the world transform, so the join sees final positions
        mw = ob.matrix_world.copy()
        ob.parent = None
        ob.matrix_world = mw
    for ob in objects:
        if ob not in meshes:
            bpy.data.objects.remove(ob)
    if not meshes:
        return None
    target = meshes[0]
    if len(meshes) > 1:
        with bpy.context.temp_override(active_object=target, object=target, selected_objects=meshes,
                                       selected_editable_objects=meshes):
            bpy.ops.object.join()
    target.data.transform(target.matrix_world)
    target.matrix_world = Matrix.Identity(4)
    target.name = name
    target.data.name = name
    return target


def _fit(ob: Any, dims: tuple[float | None, float | None, float | None] | None, scale: float) -> tuple[float, ...]:
    """Scale to ``dims`` (metres per axis, None = keep proportion) or by ``scale``; put the bottom centre at
    the origin. Returns the final size."""
    co = [ob.matrix_world @ v.co for v in ob.data.vertices]
    lo = Vector([min(c[i] for c in co) for i in range(3)])
    hi = Vector([max(c[i] for c in co) for i in range(3)])
    size = hi - lo
    factors = [scale] * 3
    if dims is not None:
        known = [d / s for d, s in zip(dims, size, strict=True) if d is not None and s > 1e-9]
        uniform = sum(known) / len(known) if known else scale
        factors = [d / s if d is not None and s > 1e-9 else uniform for d, s in zip(dims, size, strict=True)]
    centre = Vector(((lo.x + hi.x) / 2, (lo.y + hi.y) / 2, lo.z))
    ob.data.transform(Matrix.Diagonal((*factors, 1.0)) @ Matrix.Translation(-centre))
    return tuple(round(f * s, 4) for f, s in zip(factors, size, strict=True))


def import_folder(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    catalogue_json: str | os.PathLike[str] | None = None,
    per_file: int = 50,
    obj_scale: float = 0.01,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Import every OBJ/glTF under ``src_dir`` into marked assets saved as .blend files in ``out_dir``.

    Returns (and writes as ``out_dir/import_report.json``) ``{"assets": [...], "failed": [...],
    "blends": [...]}``; a model that fails to import is reported in ``failed`` and skipped.
    Resets the Blender session (headless use only).
    """
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if not src.is_dir():
        raise FolderImportError(f"{src} is not a folder: give the folder that holds the .obj/.gltf/.glb files")
    if per_file < 1:
        raise FolderImportError(f"assets per .blend file must be at least 1, got {per_file}")
    models = find_models(src)
    if not models:
        raise FolderImportError(f"no .obj, .gltf or .glb files under {src}")
    catalogue = load_catalogue(Path(catalogue_json), src) if catalogue_json else {}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FolderImportError(f"cannot create the output folder {out}: {e.strerror or e}") from None

    groups: dict[str, list[Path]] = {}
    for m in models:
        groups.setdefault(str(catalogue.get(m.resolve(), {}).get("category") or UNCATEGORISED), []).append(m)
    assets: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    blends: list[str] = []
    used_names: set[str] = set()
    done = 0
    for category, paths in sorted(groups.items()):
        for chunk_start in range(0, len(paths), per_file):
            chunk = paths[chunk_start : chunk_start + per_file]
            suffix = f"_{chunk_start // per_file + 1}" if len(paths) > per_file else ""
            blend = f"{_safe(category)}{suffix}.blend"
            bpy.ops.wm.read_factory_settings(use_empty=True)
            count = 0
            for path in chunk:
                record = catalogue.get(path.resolve(), {})
                try:
                    asset = _import_one(path, record, category, obj_scale, used_names, x=count * 3.0)
                except (RuntimeError, ValueError) as e:
                    failed.append({"source": str(path), "error": str(e).strip().splitlines()[-1] if str(e) else "failed"})
                    asset = None
                if asset is not None:
                    asset["blend"] = blend
                    asset["source"] = str(path.relative_to(src))
                    assets.append(asset)
                    count += 1
                done += 1
                if progress is not None:
                    progress(done, len(models))
            if count:
                with quiet_stdout(True):
                    try:
                        bpy.ops.file.pack_all()  # textures travel with the .blend
                    except RuntimeError:
                        pass
                save_blend_atomic(out / blend)
                blends.append(blend)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if blends:
        write_catalog_file(out, sorted({a["category"] for a in assets}))
    report = {"source": str(src), "assets": assets, "failed": failed, "blends": blends}
    tmp = out / f".{REPORT}.tmp"
    tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    os.replace(tmp, out / REPORT)
    return report


def _import_one(path: Path, record: dict[str, Any], category: str, obj_scale: float, used: set[str],
                x: float) -> dict[str, Any] | None:
    before = set(bpy.data.objects)
    try:
        new = _import_file(path)
    except RuntimeError:
        for ob in set(bpy.data.objects) - before:  # drop whatever a failed import left behind
            bpy.data.objects.remove(ob)
        raise
    base = str(record.get("name") or path.stem)
    name, k = base, 2
    while name in used:
        name, k = f"{base} {k}", k + 1
    ob = _join(new, name)
    if ob is None:
        raise ValueError(f"{path.name} contains no mesh geometry")
    used.add(name)
    dims = (_cm(record, "width"), _cm(record, "depth"), _cm(record, "height")) if record else None
    scale = obj_scale if path.suffix.lower() == ".obj" else 1.0
    size = _fit(ob, dims, scale)
    ob.location.x = x  # side by side in the file; capture normalises position anyway
    tags = [str(t) for t in record.get("tags", [])]
    mark_asset(ob, tags, category, str(record.get("name", "")))
    return {"name": name, "category": category, "tags": tags, "size": list(size),
            "catalog_id": catalog_id(category)}
