"""Keeping a library home in step with its folder: the root asset names use, and assets that left the folder.

Used by ``asset2vec index`` (:mod:`backend.lifecycle.index`) right after its capture stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .home import LibraryHome


def mark_library_root(src: Path) -> Path | None:
    """Make ``src`` a library root unless one is marked already at or above it; the root the names use.

    Asset names are relative to the nearest marked root above each .blend (:func:`shared.naming.catalogue_name`),
    the same rule the add-on's panel follows without being told any folder. A library with no
    ``blender_assets.cats.txt`` and no ``.asset2vec/`` gets an empty ``src/.asset2vec/`` (as bulk-tag's journal
    makes), so the panel finds the same root. A read-only library stays unmarked (its names then use ``src``).
    """
    from shared import naming

    found = naming.find_library_root(src / "x.blend")
    if found is not None:
        return found
    try:
        (src / naming.STATE_DIR).mkdir(exist_ok=True)
    except OSError:
        return None
    return src


def prune_library(src: Path, home: LibraryHome, captured: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Forget the assets of this library whose .blend is gone, or whose file opened without them.

    Their bundle folders (the next model's training data) and catalogue rows (codes, tags, neighbours) go.
    A catalogue row whose content (hash and object name) was just captured under a new name (a .blend moved
    or renamed within the library) is renamed instead, keeping its codes, tags and review answers. Files
    that could not be opened keep their assets. A model folder's ``codes.npz`` keeps the training codes of
    the assets it was trained on (re-indexing the file brings a forgotten asset back).

    ``captured``: the capture worker's result (``opened`` files, ``present``: the names of every object and
    collection in them, marked as an asset or not). An object the artist embedded from the panel without
    marking it is still in its file, so it stays; only a gone file or object is pruned.
    Returns ``(pruned names, {old name: new name} of moved assets)``.
    """
    from backend.library.catalogue import BATCH_TIMEOUT_S, Catalogue
    from shared.bundle import TRANSFORMS

    opened = set(captured.get("opened") or ())
    # A worker of an older release reports only marked assets (``names``).
    names = set(captured["present"] if "present" in captured else captured.get("names") or ())

    def gone(name: str, source_blend: str, family: str) -> bool:
        if not source_blend:
            return False
        blend = Path(source_blend).expanduser().resolve()
        if not blend.is_relative_to(src):
            return False  # another library's asset, or one embedded from elsewhere
        if not blend.is_file():
            return True
        # A family variant is no object of its file: it goes only with the file.
        return not family and str(blend) in opened and name not in names

    pruned: set[str] = set()
    moved: dict[str, str] = {}
    kept: dict[str, dict[str, Any]] = {}
    for transforms in sorted(home.bundles.glob(f"*/{TRANSFORMS}")):
        try:
            asset = json.loads(transforms.read_text()).get("asset") or {}
        except (OSError, ValueError):
            continue
        name, source = str(asset.get("name") or ""), str(asset.get("source_blend") or "")
        if name and gone(name, source, str(asset.get("family") or "")):
            shutil.rmtree(transforms.parent, ignore_errors=True)
            pruned.add(name)
        elif name:
            kept[name] = asset
    with Catalogue(home.catalogue, busy_timeout=BATCH_TIMEOUT_S) as cat:
        origins = cat.asset_sources()
        rows = [n for n, (source, family, _, _) in origins.items() if gone(n, source, family)]
        # Captured content the catalogue does not know under its new name yet: (hash, object name) -> bundle.
        fresh = {(str(a.get("content_hash")), str(a.get("asset_name"))): (n, str(a.get("source_blend") or ""))
                 for n, a in kept.items() if n not in origins and a.get("content_hash")}
        for old in rows:
            _, _, content_hash, asset_name = origins[old]
            new = fresh.pop((content_hash, asset_name), None) if content_hash else None
            if new is not None:
                cat.rename_asset(old, new[0], new[1] or None)
                moved[old] = new[0]
        gone_rows = [n for n in rows if n not in moved]
        if gone_rows:
            cat.remove_assets(gone_rows)
    return sorted((pruned - set(moved)) | set(gone_rows)), moved
