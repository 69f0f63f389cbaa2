"""Importing a tag list: how a library with no tags at all gets its first artist tags in one step.

Two formats, keyed by the catalogue's asset names (``<file>/<asset>``, see :mod:`shared.naming`):

* CSV (UTF-8, header optional): ``name,tag`` rows (a name may repeat), or ``name,tag1;tag2``; any
  further columns are more tags.
* JSON: ``{"name": ["tag1", "tag2"]}`` (a string value is split on ``;``).

Imported tags are stored as **artist** tags, added to the ones an asset already has (never removing
any), in one transaction. Unknown names stop the import before anything is written, unless asked to
skip them.

Exclusive tag groups (tags an asset has at most one of, e.g. 3-legs / 4-legs; issue 17) are declared in
a separate small file, read by :func:`read_exclusive_groups` (``asset2vec tags train --exclusive FILE``):

* JSON: ``{"exclusive": [["3-legs", "4-legs", "5-legs"], ["round-shade", "square-shade"]]}``;
* CSV: one group per row, its tags in the cells (or ``tag1;tag2`` in one cell); ``#`` starts a comment line.

They are stored with the tag model (kept by later trainings of it) next to the groups learnt from the library.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .catalogue import Catalogue, _unknown_asset_message
from .errors import LibraryError, read_text_file

#: First-row cells that mark a CSV header (compared lower-case).
HEADER_NAMES = {"name", "asset", "asset_name", "asset name", "catalogue name"}
#: Unknown names listed in an error (the rest are counted).
MAX_LISTED = 10


def _split(cell: str) -> list[str]:
    return [t.strip() for t in cell.split(";") if t.strip()]


def read_tag_list(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """``{asset name: [tags]}`` from a CSV or JSON tag list (format by suffix, or JSON if it starts with ``{``).

    Malformed input raises :class:`LibraryError` naming the file (and line for CSV).
    """
    path, text = read_text_file(path, "tag list", "a CSV of name,tag rows or a JSON {name: [tags]}")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _read_json(path, text)
    return _read_csv(path, text)


def _read_json(path: Path, text: str) -> dict[str, list[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LibraryError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise LibraryError(f"{path}: expected a JSON object {{name: [tags]}}, got {type(data).__name__}")
    out: dict[str, list[str]] = {}
    for name, tags in data.items():
        if isinstance(tags, str):
            tags = _split(tags)
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise LibraryError(f"{path}: tags of {name!r} must be a list of strings, got {json.dumps(tags)[:60]}")
        if not name.strip():
            raise LibraryError(f"{path}: an empty asset name")
        out[name.strip()] = [t.strip() for t in tags if t.strip()]
    return out


def _read_csv(path: Path, text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        name = row[0].strip()
        if lineno == 1 and not out and name.lower() in HEADER_NAMES:
            continue  # header
        if len(row) < 2:
            raise LibraryError(f"{path}:{lineno}: expected 'name,tag' (or 'name,tag1;tag2'), got {row[0]!r}")
        if not name:
            raise LibraryError(f"{path}:{lineno}: empty asset name")
        tags = out.setdefault(name, [])
        for cell in row[1:]:
            tags += [t for t in _split(cell) if t not in tags]
    if not out:
        raise LibraryError(f"{path}: no 'name,tag' rows found")
    return out


def import_tag_list(
    catalogue: Catalogue, tags: Mapping[str, list[str]], skip_unknown: bool = False
) -> dict[str, Any]:
    """Add ``{asset name: [tags]}`` to the catalogue as artist tags, in one transaction.

    Unknown names raise :class:`LibraryError` (with close matches) and nothing is written, unless
    ``skip_unknown``. Returns ``{"assets": n named and found, "added": new tag rows, "already": rows
    the assets had, "tags": {tag: assets}, "unknown": [names], "tagged_assets": total tagged now}``.
    """
    known = catalogue.asset_names()
    if not known:
        raise LibraryError(f"{catalogue.path}: the catalogue is empty; embed or import a library first")
    known_set = set(known)
    unknown = [n for n in tags if n not in known_set]
    if unknown and not skip_unknown:
        listed = "\n  ".join(_unknown_asset_message(n, known) for n in unknown[:MAX_LISTED])
        more = f"\n  ... and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
        raise LibraryError(
            f"{len(unknown)} of the {len(tags)} names in the tag list are not in the catalogue (names are "
            f"<file>/<asset>, e.g. {known[0]!r}); nothing was imported. Fix the names, or pass --skip-unknown "
            f"to import the others:\n  {listed}{more}"
        )
    before = catalogue.artist_tags()
    ids = {n: catalogue.asset_by_name(n).id for n in tags if n in known_set}
    added = already = 0
    counts: dict[str, int] = {}
    with catalogue.transaction():
        for name, aid in ids.items():
            new = set(tags[name])
            have = before.get(aid, set())
            added += len(new - have)
            already += len(new & have)
            for t in new:
                counts[t] = counts.get(t, 0) + 1
            catalogue.import_artist_tags(aid, new)  # kept when Blender sends the asset again
    return {"assets": len(ids), "added": added, "already": already, "tags": dict(sorted(counts.items())),
            "unknown": unknown, "tagged_assets": len(catalogue.artist_tags())}


def read_exclusive_groups(path: str | os.PathLike[str]) -> list[list[str]]:
    """Declared exclusive tag groups from a JSON ``{"exclusive": [[tags]]}`` or a CSV of one group per row.

    A group needs at least two distinct tags; malformed input raises :class:`LibraryError` naming the file.
    """
    path, text = read_text_file(path, "exclusive tag groups",
                                'a JSON {"exclusive": [["3-legs", "4-legs"]]} or a CSV of one group per row')
    groups: list[list[str]] = []
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LibraryError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        raw = data.get("exclusive") if isinstance(data, dict) else None
        if not isinstance(raw, list) or not all(isinstance(g, list) and all(isinstance(t, str) for t in g)
                                                for g in raw):
            raise LibraryError(f'{path}: expected {{"exclusive": [["tag", "tag", ...], ...]}}')
        rows = [(i + 1, [t.strip() for t in g if t.strip()]) for i, g in enumerate(raw)]
    else:
        rows = [(n, [t for cell in row for t in _split(cell)]) for n, row in
                enumerate(csv.reader(io.StringIO(text)), start=1) if row and not row[0].lstrip().startswith("#")]
        rows = [(n, g) for n, g in rows if g]
    for n, g in rows:
        unique = sorted(set(g))
        if len(unique) < 2:
            raise LibraryError(f"{path}: group {n} needs at least two different tags, got {g}")
        groups.append(unique)
    if not groups:
        raise LibraryError(f"{path}: no exclusive tag groups found")
    return groups
