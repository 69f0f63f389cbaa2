"""Blender-side subcommands: capture, capture-family, sample-library, import-folder.

Thin wrappers over :mod:`blender_addon.capture`, :mod:`blender_addon.family` and the headless
workers. ``bpy`` is imported inside each command, so ``asset2vec --help`` stays instant.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.cli import CommandError


def register(sub: Any) -> None:
    p = sub.add_parser("capture", help="render the 18 views of the marked assets of a .blend file (or a folder)")
    p.add_argument("blend", help=".blend file, or a folder searched recursively for .blend files")
    p.add_argument("--asset", help="only this asset (object or collection name); default: every marked asset")
    p.add_argument("--out", required=True, help="output folder: one bundle folder per asset")
    _capture_options(p)
    p.add_argument("--force", action="store_true", help="re-render assets whose bundle is up to date")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("capture-family", help="sample and capture N variants of a parametric family")
    p.add_argument("blend", help=".blend file holding the family object")
    p.add_argument("--asset", required=True, help="the family's object name")
    p.add_argument("-n", type=int, default=8, help="number of variants (default 8)")
    p.add_argument("--mode", choices=("grid", "random"), default="grid", help="grid or random sampling")
    p.add_argument("--seed", type=int, default=0, help="seed for random sampling")
    p.add_argument("--out", required=True, help="output folder: one bundle folder per variant")
    _capture_options(p)
    p.set_defaults(func=cmd_capture_family)

    p = sub.add_parser("sample-library", help="build the procedural furniture library with ground truth")
    p.add_argument("out_dir", help="output folder for the .blend files and ground_truth.json")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample_library)

    p = sub.add_parser("import-folder", help="import a folder of OBJ/glTF models into marked assets in .blend files")
    p.add_argument("src_dir", help="folder with .obj/.gltf/.glb files (searched recursively; only read)")
    p.add_argument("out_dir", help="output folder for the new .blend files")
    p.add_argument("--catalogue", help="Sweet Home 3D style catalog.json with names, categories, tags, sizes")
    p.add_argument("--per-file", type=int, default=50, help="assets per .blend file (default 50)")
    p.set_defaults(func=cmd_import_folder)


def _capture_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=128, help="view size in pixels (default 128)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel (default 16)")
    p.add_argument("--device", choices=("AUTO", "CPU", "GPU"), default="AUTO", help="Cycles device (default AUTO)")


def _progress(total: int, desc: str, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def blend_file_version(head: bytes) -> int | None:
    """Blender version that wrote an uncompressed .blend (e.g. 500 for 5.0) from its header, if readable.

    Headers are ``BLENDER-v402`` (pointer size, endianness, 3 digits) or, from 5.0 on,
    ``BLENDER17-01v0500`` (header size, format version, endianness, 4 digits).
    """
    m = re.match(rb"BLENDER(?:[-_][vV](\d{3})|\d\d-\d\d[vV](\d{4}))", head)
    if m is None:
        return None
    return int(m.group(1) or m.group(2))


def open_blend(path: Path) -> None:
    """Open a .blend file headless, turning Blender's failures into a clear :class:`CommandError`."""
    import bpy

    from blender_addon.capture import quiet_stdout

    if not path.is_file():
        raise CommandError(f"{path}: no such .blend file")
    with path.open("rb") as f:
        head = f.read(17)
    if not (head.startswith(b"BLENDER") or head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd"):
        raise CommandError(f"{path}: not a .blend file (or it is corrupt)")
    saved_by = blend_file_version(head)
    mine = bpy.app.version[0] * 100 + bpy.app.version[1]
    if saved_by is not None and saved_by > mine:
        raise CommandError(
            f"{path}: saved by Blender {saved_by // 100}.{saved_by % 100}, newer than this Blender "
            f"{bpy.app.version_string}: re-save it with Blender {bpy.app.version[0]}.{bpy.app.version[1]} or update bpy"
        )
    try:
        with quiet_stdout(True):
            bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    except RuntimeError as e:
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise CommandError(
            f"{path}: Blender {bpy.app.version_string} cannot open it ({detail}); it may be corrupt or saved by a "
            f"newer Blender"
        ) from None


def marked_assets(asset: str | None = None) -> list[Any]:
    """Marked object and collection assets of the open file (or the named object/collection)."""
    import bpy

    if asset:
        found = bpy.data.objects.get(asset) or bpy.data.collections.get(asset)
        if found is None:
            raise CommandError(f"no object or collection named {asset!r} in {bpy.data.filepath}")
        return [found]
    items = [ob for ob in bpy.data.objects if ob.asset_data is not None and ob.library is None]
    items += [c for c in bpy.data.collections if c.asset_data is not None and c.library is None]
    return sorted(items, key=lambda i: i.name)


def asset_category(target: Any, blend: Path) -> str:
    """The asset's catalogue path from the blender_assets.cats.txt of its library, if any."""
    from blender_addon.headless.sample_library import read_catalog_file

    data = getattr(target, "asset_data", None)
    if data is None:
        return ""
    return read_catalog_file(blend.resolve().parent).get(data.catalog_id, "")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass
class CaptureSummary:
    """What :func:`capture_library` did: counts and one message per failed file or asset."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def capture_library(
    src: Path,
    out: Path,
    size: int = 128,
    samples: int = 16,
    device: str = "AUTO",
    force: bool = False,
    asset: str | None = None,
    on_file: Callable[[Path], None] | None = None,
    on_asset: Callable[[int, int], None] | None = None,
    skip_files: Collection[str] = (),
) -> CaptureSummary:
    """Capture every marked asset of a .blend file, or of every .blend under a folder, into ``out``.

    Assets whose bundle is up to date (same content hash and name) are skipped, so a second call
    continues an interrupted one. ``on_file(path)`` is called before a file is opened (a pipeline
    records it to notice a file that crashes Blender); ``on_asset(done, total)`` after each asset.
    ``skip_files`` are paths not to open (reported as failed).
    """
    from backend.lifecycle.home import safe_folder_name
    from blender_addon.capture import CaptureError, capture_asset, evaluated_parts
    from blender_addon.content_hash import hash_parts
    from shared.bundle import BundleError, read_bundle
    from shared.naming import asset_key

    if src.is_dir():
        blends = sorted(p for p in src.rglob("*.blend") if not any(part.startswith(".") for part in
                                                                    p.relative_to(src).parts))
        if not blends:
            raise CommandError(f"no .blend files under {src}")
    else:
        blends = [src]
    summary = CaptureSummary()
    count = total = 0
    for blend in blends:
        if str(blend) in skip_files:
            summary.failed.append(f"{blend}: skipped, Blender crashed on it before")
            continue
        if on_file is not None:
            on_file(blend)
        try:
            open_blend(blend)
        except CommandError as e:
            if len(blends) == 1:
                raise
            summary.failed.append(str(e))
            continue
        targets = marked_assets(asset)
        if not targets and len(blends) == 1:
            raise CommandError(f"{blend} has no marked assets: mark some (Mark as Asset) or pass --asset NAME")
        total += len(targets)
        for target in targets:
            # Names unique across the files of a folder (one file: the bare name); the bundle folder is named
            # after it (as a backend storing uploads names it), so two files called alike never collide.
            name = asset_key(str(blend), target.name, root=str(src)) if src.is_dir() else target.name
            folder = out / (safe_folder_name(name) if src.is_dir() else _safe(target.name))
            try:
                if not force and (folder / "transforms.json").is_file():
                    with evaluated_parts(target) as parts:
                        current = hash_parts(parts)
                    try:
                        old = read_bundle(folder, expected_size=size).asset
                        if old.content_hash == current and old.name == name:
                            summary.skipped += 1
                            count += 1
                            if on_asset is not None:
                                on_asset(count, total)
                            continue
                    except BundleError:
                        pass  # incomplete or stale: render again
                capture_asset(target, folder, size=size, samples=samples, device=device,
                              category=asset_category(target, blend), source_blend=str(blend.resolve()), name=name)
                summary.done += 1
            except CaptureError as e:
                summary.failed.append(f"{blend.name}: {e}")
            count += 1
            if on_asset is not None:
                on_asset(count, total)
    return summary


def cmd_capture(args: argparse.Namespace) -> int:
    src, out = Path(args.blend), Path(args.out)
    bar = None  # created after the first file opens, so an early error prints alone

    def on_asset(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or _progress(0, "capture", "asset")
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        summary = capture_library(src, out, size=args.size, samples=args.samples, device=args.device,
                                  force=args.force, asset=args.asset, on_asset=on_asset)
    finally:
        if bar is not None:
            bar.close()
    done, skipped, failed = summary.done, summary.skipped, summary.failed
    print(f"captured {done} asset(s), {skipped} up to date, {len(failed)} failed -> {out}")
    for msg in failed:
        print(f"  failed: {msg}", file=sys.stderr)
    if failed and not done and not skipped:
        raise CommandError(failed[0] if len(failed) == 1 else f"all {len(failed)} assets failed (see above)")
    return 1 if failed else 0


def cmd_capture_family(args: argparse.Namespace) -> int:
    from blender_addon.capture import CaptureError
    from blender_addon.family import FamilyError, capture_family

    blend = Path(args.blend)
    open_blend(blend)
    (target,) = marked_assets(args.asset)
    import bpy

    if not isinstance(target, bpy.types.Object):
        raise CommandError(f"{args.asset!r} is a collection; a parametric family is an object")
    bar = _progress(args.n, "capture-family", "variant")
    try:
        bundles = capture_family(target, args.n, args.out, mode=args.mode, seed=args.seed, size=args.size,
                                 samples=args.samples, device=args.device, source_blend=str(blend.resolve()),
                                 category=asset_category(target, blend),
                                 progress=lambda done, total: bar.update(1))
    except (FamilyError, CaptureError) as e:
        raise CommandError(str(e)) from None
    finally:
        bar.close()
    print(f"captured {len(bundles)} variant(s) of {bundles[0].asset.family!r} -> {args.out}")
    return 0


def cmd_sample_library(args: argparse.Namespace) -> int:
    from blender_addon.headless.sample_library import LibraryError, build_sample_library

    try:
        truth = build_sample_library(args.out_dir, seed=args.seed)
    except LibraryError as e:
        raise CommandError(str(e)) from None
    files = sorted({a["blend"] for a in truth["assets"]} | {f["blend"] for f in truth["families"]})
    print(f"sample library: {len(truth['assets'])} assets + {len(truth['families'])} parametric family in "
          f"{', '.join(files)} -> {args.out_dir}")
    return 0


def cmd_import_folder(args: argparse.Namespace) -> int:
    from blender_addon.headless.import_folder import REPORT, FolderImportError, find_models, import_folder

    src = Path(args.src_dir)
    bar = _progress(len(find_models(src)) if src.is_dir() else 0, "import", "model")
    try:
        report = import_folder(src, args.out_dir, args.catalogue, per_file=args.per_file,
                               progress=lambda done, total: bar.update(1))
    except FolderImportError as e:
        raise CommandError(str(e)) from None
    finally:
        bar.close()
    print(f"imported {len(report['assets'])} asset(s) into {len(report['blends'])} .blend file(s), "
          f"{len(report['failed'])} failed -> {args.out_dir} (report: {REPORT})")
    for f in report["failed"]:
        print(f"  failed: {f['source']}: {f['error']}", file=sys.stderr)
    return 1 if report["failed"] else 0

