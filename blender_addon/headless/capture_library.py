"""Capture every marked asset of a .blend file, or of every .blend under a folder, into bundle folders.

The headless side of ``asset2vec capture`` and of the library index's capture stage
(:mod:`backend.lifecycle.index`): both call :func:`capture_library`. It reads the artist's files and
writes only bundles (views + ``transforms.json``); the backend never opens a .blend itself.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from ..capture import capture_asset
from ..content_hash import hash_parts
from ..errors import BlendFileError, CaptureError
from ..family import FamilyError, capture_family
from ..parts import evaluated_parts
from ..protocol import bundle, library_files, naming, tempfolders
from .blend_files import marked_assets, open_blend
from .sample_library import read_catalog_file


@dataclass
class CaptureSummary:
    """What :func:`capture_library` did: counts and one message per failed file or asset.

    ``opened``: the .blend files that opened (resolved paths); ``names``: the catalogue name of every marked
    asset in them, captured or not; ``present``: the catalogue name of every object and collection in them,
    marked or not. An index prunes assets of an opened file that are not in ``present``: an object the artist
    embedded from the panel without marking it still exists, so it stays.
    """

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def asset_category(target: Any, blend: Path) -> str:
    """The asset's catalogue path from the blender_assets.cats.txt of its library, if any."""
    data = getattr(target, "asset_data", None)
    if data is None:
        return ""
    return read_catalog_file(blend.resolve().parent).get(data.catalog_id, "")


def library_blends(src: Path) -> list[Path]:
    """The .blend files under ``src`` (hidden folders skipped, e.g. a home in ``src/.asset2vec``), sorted."""
    blends, _ = library_files.scan(src)
    if not blends:
        raise CaptureError(f"no .blend files under {src}")
    return blends


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
    files: Collection[str] | None = None,
    known: Mapping[str, str] | None = None,
) -> CaptureSummary:
    """Capture every marked asset of a .blend file, or of every .blend under a folder, into ``out``.

    Assets whose bundle is up to date (same content hash and name) are skipped, so a second call
    continues an interrupted one. ``on_file(path)`` is called before a file is opened (a pipeline
    records it to notice a file that crashes Blender); ``on_asset(done, total)`` after each asset.
    ``skip_files`` are paths not to open (reported as failed). A single file that cannot be opened
    or has no marked assets raises :class:`BlendFileError` / :class:`CaptureError` (message with its
    path); in a folder such files are reported in the summary instead.

    ``files``: with ``src`` a folder, only these .blend files of it (names still relative to ``src``; every
    failure reported, never raised): one Ray task's share of an index. ``known``: catalogue name -> content
    hash of a complete bundle kept elsewhere (the head's home); an asset whose hash matches is up to date
    whatever ``out`` holds.
    """
    blends = [Path(f) for f in files] if files is not None else library_blends(src) if src.is_dir() else [src]
    single = len(blends) == 1 and files is None
    summary = CaptureSummary()
    count = total = 0
    first_file: dict[str, Path] = {}  # catalogue name -> the file it was first found in (this run)
    for blend in blends:
        if str(blend) in skip_files:
            summary.failed.append(f"{blend}: skipped, Blender crashed on it before")
            continue
        if on_file is not None:
            on_file(blend)
        try:
            open_blend(blend)
        except BlendFileError as e:
            if single:
                raise BlendFileError(f"{blend}: {e}") from None
            summary.failed.append(f"{blend}: {e}")
            continue
        summary.opened.append(str(blend.resolve()))
        root = str(src) if src.is_dir() else None
        summary.present += sorted({naming.catalogue_name(str(blend), d.name, default_root=root)
                                   for d in (*bpy.data.objects, *bpy.data.collections)})
        targets = marked_assets(asset)
        if not targets and single:
            raise CaptureError(f"{blend} has no marked assets: mark some (Mark as Asset) or pass --asset NAME")
        total += len(targets)
        for target in targets:
            # The asset's one identity (as the panel and bulk-tag name it: library root + file + asset; `src` is
            # the root only when no marked root is above the file). In a folder the bundle folder is named after
            # it (as a backend storing uploads names it), so two files called alike never collide.
            name = naming.catalogue_name(str(blend), target.name, default_root=root)
            if first_file.setdefault(name, blend) != blend:
                summary.failed.append(naming.name_collision(name, blend, first_file[name]))
                count += 1
                if on_asset is not None:
                    on_asset(count, total)
                continue
            summary.names.append(name)
            folder = out / (naming.safe_folder_name(name) if src.is_dir() else naming.safe_folder_name(target.name))
            try:
                if not force and (_known_up_to_date(target, name, known) if known is not None
                                  else _up_to_date(target, folder, name, size)):
                    summary.skipped += 1
                else:
                    capture_asset(target, folder, size=size, samples=samples, device=device,
                                  category=asset_category(target, blend), source_blend=str(blend.resolve()),
                                  name=name)
                    summary.done += 1
            except CaptureError as e:
                summary.failed.append(f"{blend.name}: {e}")
            count += 1
            if on_asset is not None:
                on_asset(count, total)
    return summary


def _up_to_date(target: Any, folder: Path, name: str, size: int) -> bool:
    """Whether ``folder`` holds a complete bundle of exactly this content and name."""
    if not (folder / bundle.TRANSFORMS).is_file():
        return False
    with evaluated_parts(target) as parts:
        current = hash_parts(parts)
    try:
        old = bundle.read_bundle(folder, expected_size=size).asset
    except bundle.BundleError:
        return False  # incomplete or stale: render again
    return old.content_hash == current and old.name == name


def _known_up_to_date(target: Any, name: str, known: Mapping[str, str]) -> bool:
    """Whether the head already holds a complete bundle of exactly this content under this name."""
    if name not in known:
        return False
    with evaluated_parts(target) as parts:
        return hash_parts(parts) == known[name]


def capture_archives(src: Path, blend: Path, *, size: int, samples: int, device: str, known: Mapping[str, str],
                     on_asset: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Capture one .blend of the library ``src`` into a temporary folder; return the bundles as upload archives.

    The body of an index's Ray task (:mod:`backend.lifecycle.ray_capture`): the worker writes nothing that
    outlives the task, the head validates and stores the archives. ``known``: see :func:`capture_library`.
    """
    # A temporary folder that names its owner: a worker killed mid-file leaves one that the next start removes.
    with tempfolders.folder(f"{tempfolders.PREFIX}capture-") as tmp:
        summary = capture_library(src, Path(tmp), size=size, samples=samples, device=device, files=[str(blend)],
                                  known=known, on_asset=on_asset)
        archives = [bundle.archive_bytes(t.parent) for t in sorted(Path(tmp).glob(f"*/{bundle.TRANSFORMS}"))]
    return {"status": "done", "done": summary.done, "skipped": summary.skipped, "failed": summary.failed,
            "opened": summary.opened, "names": summary.names, "present": summary.present, "archives": archives}


def capture_family_file(blend: Path, asset: str, n: int, out: Path, *, mode: str = "grid", seed: int = 0,
                        size: int = 128, samples: int = 16, device: str = "AUTO",
                        progress: Callable[[int, int], None] | None = None) -> list[bundle.Bundle]:
    """Open ``blend`` and capture ``n`` variants of its parametric family object ``asset`` (``asset2vec capture-family``).

    Raises :class:`BlendFileError` or :class:`CaptureError` (a family that cannot be sampled included).
    """
    try:
        open_blend(blend)
    except BlendFileError as e:
        raise BlendFileError(f"{blend}: {e}") from None
    (target,) = marked_assets(asset)
    if not isinstance(target, bpy.types.Object):
        raise CaptureError(f"{asset!r} is a collection; a parametric family is an object")
    try:
        return capture_family(target, n, out, mode=mode, seed=seed, size=size, samples=samples, device=device,
                              source_blend=str(blend.resolve()), category=asset_category(target, blend),
                              progress=progress)
    except FamilyError as e:
        raise CaptureError(str(e)) from None
