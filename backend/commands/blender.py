"""Blender-side subcommands: capture, capture-family, sample-library, import-folder.

Thin wrappers over :mod:`blender_addon.family` and the headless workers (:mod:`blender_addon.headless`).
``bpy`` is imported inside each command, so ``asset2vec --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
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


def cmd_capture(args: argparse.Namespace) -> int:
    src, out = Path(args.blend), Path(args.out)
    bar = None  # created after the first file opens, so an early error prints alone

    def on_asset(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or _progress(0, "capture", "asset")
        bar.total = total
        bar.n = done
        bar.refresh()

    from blender_addon.headless import AddonError
    from blender_addon.headless.capture_library import capture_library

    try:
        summary = capture_library(src, out, size=args.size, samples=args.samples, device=args.device,
                                  force=args.force, asset=args.asset, on_asset=on_asset)
    except AddonError as e:
        raise CommandError(str(e)) from None
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
    from blender_addon.headless import AddonError
    from blender_addon.headless.capture_library import capture_family_file

    bar = _progress(args.n, "capture-family", "variant")
    try:
        bundles = capture_family_file(Path(args.blend), args.asset, args.n, Path(args.out), mode=args.mode,
                                      seed=args.seed, size=args.size, samples=args.samples, device=args.device,
                                      progress=lambda done, total: bar.update(1))
    except AddonError as e:
        raise CommandError(str(e)) from None
    finally:
        bar.close()
    print(f"captured {len(bundles)} variant(s) of {bundles[0].asset.family!r} -> {args.out}")
    return 0


def cmd_sample_library(args: argparse.Namespace) -> int:
    from blender_addon.headless.sample_library import SampleLibraryError, build_sample_library

    try:
        truth = build_sample_library(args.out_dir, seed=args.seed)
    except SampleLibraryError as e:
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

