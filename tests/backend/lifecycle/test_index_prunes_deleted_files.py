"""``asset2vec index`` after a .blend was deleted: its assets leave the catalogue and every neighbour list (issue 19).

Works on a copy of the session's indexed home and library (the copy's bundles and rows are pointed at the
copied library, as if the library had always lived there), so the other lifecycle tests see the original.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from backend.library.catalogue import Catalogue
from backend.lifecycle.home import LibraryHome
from tests.backend.lifecycle.conftest import FAST, run_index

pytestmark = pytest.mark.slow  # runs `asset2vec index` (Blender opens the library) in a subprocess


def _copy(indexed: dict[str, Any], library: Path, tmp_path: Path) -> tuple[Path, LibraryHome]:
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    home = LibraryHome.at(tmp_path / "home")
    shutil.copytree(indexed["home"].root, home.root)
    old, new = str(library.resolve()), str(lib.resolve())
    for transforms in home.bundles.glob("*/transforms.json"):
        data = json.loads(transforms.read_text())
        data["asset"]["source_blend"] = data["asset"]["source_blend"].replace(old, new)
        transforms.write_text(json.dumps(data))
    with Catalogue(home.catalogue) as cat, cat.transaction() as db:
        db.execute("UPDATE assets SET source_blend = replace(source_blend, ?, ?)", (old, new))
    return lib, home


def test_a_deleted_blend_disappears_from_the_catalogue_and_neighbours(indexed: dict[str, Any], library: Path,
                                                                     tmp_path: Path) -> None:
    lib, home = _copy(indexed, library, tmp_path)
    model_id = indexed["model_id"]
    with Catalogue(home.catalogue) as cat:
        tables = [n for n in cat.asset_names() if n.startswith("tables/")]
    assert len(tables) == 18
    (lib / "tables.blend").unlink()
    _, events = run_index([str(lib), "--home", str(home.root), *FAST])
    summary = events[-1]
    assert summary["event"] == "summary" and sorted(summary["pruned"]) == sorted(tables)
    assert summary["assets"] == 18 and not summary["trained"]
    assert not [p for p in home.bundles.iterdir() if p.name.startswith("tables")]
    with Catalogue(home.catalogue) as cat:
        assert not [n for n in cat.asset_names() if n.startswith("tables/")]
        for name in cat.asset_names():
            for space in ("shape", "texture", "both"):
                found = [n["name"] for n in cat.neighbours_of(name, model_id, space)]
                assert found and not [n for n in found if n.startswith("tables/")]
        assert cat.integrity_ok()
