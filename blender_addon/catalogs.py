"""Optional catalog assignment: put an embedded asset into a catalog of its library's ``blender_assets.cats.txt``.

Off by default (the add-on preference *Assign Catalog*). When on, writing an Embed answer
(:func:`blender_addon.embed_target.write_answers`) also:

1. picks the asset's **category**: the backend predicts tags, not categories, so the category is one of the
   preference *Category Tags* (``chair, table, sofa, lamp...``) that the asset now carries: an artist's own tag
   first, else the most probable tag Asset2Vec wrote (:func:`category_of`);
2. finds the catalog for it in the library's ``blender_assets.cats.txt`` (the one that makes the .blend's folder a
   library root, :func:`shared.naming.find_library_root`): a catalog whose last path part names the tag (``chair``
   matches ``Furniture/Chairs``), else a new top-level catalog line in Blender's format
   ``UUID:path:simple name``, appended with every other line kept as it was, written atomically (temporary file,
   fsync, rename) after a backup ``blender_assets.cats.txt~`` (the name Blender's own backup has);
3. sets ``asset_data.catalog_id`` -- only when the asset has no catalog, or the one Asset2Vec itself set before
   (recorded under the asset's ``asset2vec`` property): a catalog the artist chose is never replaced.

A .blend in no asset library gets no catalog (and no new cats file: that file would make its folder a library
root and rename every asset in it, see :mod:`shared.naming`). No bpy at module level beyond what the callers pass.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import api, atomic, naming
from .protocol import metadata as M

#: An asset without a catalog has this catalog id.
NIL = "00000000-0000-0000-0000-000000000000"
#: Key (under the asset's ``asset2vec`` property) of the catalog id Asset2Vec set, so a later answer may change it.
ASSIGNED = "catalog_assigned"
BACKUP_SUFFIX = "~"
#: Category tags when the preference is empty (the starter model's furniture kinds and common others).
DEFAULT_CATEGORY_TAGS = (
    "chair",
    "table",
    "sofa",
    "lamp",
    "bed",
    "cabinet",
    "shelf",
    "desk",
    "stool",
    "bench",
    "wardrobe",
    "plant",
    "door",
    "window",
)
#: New catalogs get uuid5 ids in this namespace: the same tag gets the same id in every library and every Blender
#: (two Blenders adding "Lamp" at once write one catalog, not two).
_NAMESPACE = uuid.UUID("2b1f7c3e-5a8d-4c61-9e0f-a2e0c0ffee19")
#: The header Blender writes into a new catalog definition file.
HEADER = (
    "# This is an Asset Catalog Definition file for Blender.\n#\n"
    "# Empty lines and lines starting with `#` will be ignored.\n"
    "# The first non-ignored line should be the version indicator.\n"
    '# Other lines are of the format "UUID:catalog/path/for/assets:simple catalog name"\n\nVERSION 1\n\n'
)


@dataclass(frozen=True)
class Catalog:
    """One line of a catalog definition file."""

    id: str
    path: str
    simple_name: str


def parse_tags(text: str) -> tuple[str, ...]:
    """The preference's category tags: comma- or space-separated, lower case (empty: the defaults)."""
    tags = tuple(dict.fromkeys(t.strip().lower() for t in text.replace(",", " ").split() if t.strip()))
    return tags or DEFAULT_CATEGORY_TAGS


def read_catalogs(path: Path) -> list[Catalog]:
    """The catalogs of a ``blender_assets.cats.txt`` (comments, blank lines and the VERSION line skipped)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("VERSION"):
            continue
        parts = line.split(":", 2)
        if len(parts) >= 2 and parts[1].strip():
            out.append(Catalog(parts[0].strip(), parts[1].strip(), parts[2].strip() if len(parts) > 2 else ""))
    return out


def _singular(word: str) -> str:
    word = word.strip().lower()
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def matching(catalogs: list[Catalog], tag: str) -> Catalog | None:
    """The first catalog whose last path part names ``tag`` (case and plural aside), or None."""
    want = _singular(tag)
    return next((c for c in catalogs if _singular(c.path.rsplit("/", 1)[-1]) == want), None)


def category_of(
    result: api.EmbedResult, tags: list[str], artist_tags: set[str], category_tags: tuple[str, ...]
) -> str | None:
    """The asset's category: a category tag among its ``tags`` now (after the answer was written), the artist's own
    before Asset2Vec's, then the most probable by ``result``. None when it carries none."""
    wanted = set(category_tags)
    have = [t for t in tags if t.lower() in wanted]
    if not have:
        return None
    return max(have, key=lambda t: (t in artist_tags, result.predicted_tags.get(t, 0.0)))


def ensure_catalog(cats: Path, tag: str) -> tuple[Catalog, bool]:
    """The catalog for ``tag`` in the file ``cats``: an existing one, or a new top-level line appended (the file is
    created with Blender's header when missing). Returns ``(catalog, created)``."""
    existing = read_catalogs(cats) if cats.is_file() else []
    found = matching(existing, tag)
    if found is not None:
        return found, False
    name = "".join(c if c not in ':/\\"' else " " for c in tag).strip().capitalize() or "Asset2Vec"
    new = Catalog(str(uuid.uuid5(_NAMESPACE, name.lower())), name, name)
    old = cats.read_text(encoding="utf-8") if cats.is_file() else HEADER
    text = old if old.endswith("\n") or not old else old + "\n"
    _write_with_backup(cats, text + f"{new.id}:{new.path}:{new.simple_name}\n")
    return new, True


def _write_with_backup(path: Path, text: str) -> None:
    """Copy ``path`` to ``path~``, then replace it atomically (a kill leaves the old file or the new one)."""
    if path.is_file():
        shutil.copy2(path, path.with_name(path.name + BACKUP_SUFFIX))
    atomic.atomic_write(path, text.encode("utf-8"))


def recorded(id_: Any) -> str:
    """The catalog id Asset2Vec set on ``id_`` before ('' when none)."""
    group = id_.get(M.NAMESPACE) if hasattr(id_, "get") else None
    return str(group.get(ASSIGNED, "")) if group is not None and hasattr(group, "get") else ""


def keep_record(id_: Any, catalog_id: str) -> None:
    """Record (again) the catalog id Asset2Vec set; writing an answer rebuilds the ``asset2vec`` property."""
    group = id_.get(M.NAMESPACE) if hasattr(id_, "get") else None
    if (
        catalog_id
        and group is not None
        and getattr(id_, "asset_data", None) is not None
        and id_.asset_data.catalog_id == catalog_id
    ):
        group[ASSIGNED] = catalog_id


def assign(
    id_: Any,
    result: api.EmbedResult,
    blend_path: str,
    category_tags: tuple[str, ...],
    previous: str = "",
    artist_tags: set[str] | None = None,
) -> str:
    """Put the asset ``id_`` into the catalog of its category (see the module docstring); returns what happened,
    for the Embed report. ``previous``: the catalog id Asset2Vec had set (:func:`recorded`, read before the answer
    was written); ``artist_tags``: the asset's tags that are the artist's (not added by Asset2Vec)."""
    data = getattr(id_, "asset_data", None)
    if data is None:
        return "no catalog: not an asset"
    current = str(data.catalog_id)
    if current not in (NIL, "") and current != previous:
        keep_record(id_, previous)
        return "kept the catalog the artist chose"
    tag = category_of(result, [t.name for t in data.tags], artist_tags or set(), category_tags)
    if tag is None:
        keep_record(id_, previous)
        return "no catalog: none of its tags is a category tag (see the preference Category Tags)"
    root = naming.find_library_root(blend_path) if blend_path else None
    if root is None:
        keep_record(id_, previous)
        return f"no catalog: the .blend is in no asset library (no {naming.CATALOG_FILE} in its folder or above)"
    cats = root / naming.CATALOG_FILE
    try:
        catalog, created = ensure_catalog(cats, tag)
    except OSError as e:
        keep_record(id_, previous)
        return f"no catalog: cannot write {cats.name} ({e.strerror or e})"
    except ValueError as e:  # not UTF-8, or a line Blender would not read either: the file is left as it is
        keep_record(id_, previous)
        return f"no catalog: {cats.name} is not a readable catalog file ({str(e)[:80]})"
    data.catalog_id = catalog.id
    id_[M.NAMESPACE][ASSIGNED] = catalog.id
    return f"catalog {catalog.path!r} (tag {tag!r}" + (f"; added to {cats.name})" if created else ")")
