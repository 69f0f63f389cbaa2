"""One identity per asset and a clean catalogue (issue 19), on real SQLite files.

- schema 4 merges the rows one asset got under two names (the panel's root-less ``seats.v2/Chair`` and
  bulk/index's ``props/seats.v2/Chair``) keeping tags, review answers, codes and the thumbnail;
- ``remove_assets`` / ``missing_assets`` / ``unsaved_assets`` and ``codes(include_unsaved=False)``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backend.library.catalogue import MIGRATIONS, SCHEMA_VERSION, Catalogue, _statements
from backend.library.errors import LibraryError
from shared.bundle import AssetInfo


def _v3_catalogue(path: Path) -> sqlite3.Connection:
    """A catalogue file as schema 3 left it (before one identity per asset)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for script in MIGRATIONS[:3]:
        for statement in _statements(script):
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    return db


def _asset(db: sqlite3.Connection, name: str, asset_name: str, content_hash: str, thumb: bytes | None = None) -> int:
    db.execute("INSERT INTO assets(name, source_blend, asset_name, content_hash, thumbnail, updated) "
               "VALUES (?, ?, ?, ?, ?, '2026-01-01')", (name, f"/lib/{name.rsplit('/', 1)[0]}.blend", asset_name,
                                                          content_hash, thumb))
    return int(db.execute("SELECT id FROM assets WHERE name = ?", (name,)).fetchone()[0])


def _code(db: sqlite3.Connection, aid: int, model: str, value: float) -> None:
    vec = bytes(__import__("numpy").full(4, value, dtype="<f4").tobytes())
    db.execute("INSERT INTO codes(asset_id, model_id, shape, texture, psnr, source, updated) "
               "VALUES (?, ?, ?, ?, NULL, 'inversion', '2026-01-01')", (aid, model, vec, vec))


def test_migration_merges_the_two_names_of_one_asset_keeping_everything(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    db = _v3_catalogue(path)
    for m in ("model-a", "model-b"):
        db.execute("INSERT INTO models(model_id, created) VALUES (?, '2026-01-01')", (m,))
    panel = _asset(db, "seats.v2/Chair", "Chair", "h1", thumb=b"PNG-panel")
    rooted = _asset(db, "props/seats.v2/Chair", "Chair", "h1")
    other_file = _asset(db, "props/other/Chair", "Chair", "h1")  # same content, another file: not merged
    changed = _asset(db, "seats.v2/Table", "Table", "h2")
    rooted_table = _asset(db, "props/seats.v2/Table", "Table", "h3")  # the asset changed since: not merged
    db.executemany("INSERT INTO tags(asset_id, tag, source, probability, model_id, origin) VALUES (?,?,?,?,?,?)", [
        (panel, "wood", "artist", None, "", "import"), (panel, "seat", "predicted", 0.8, "model-a", ""),
        (rooted, "chair", "artist", None, "", ""), (rooted, "wood", "artist", None, "", ""),
    ])
    db.executemany("INSERT INTO reviews(asset_id, tag, accepted, answered) VALUES (?,?,?,?)", [
        (panel, "armrests", 1, "2026-02-01"), (rooted, "armrests", 0, "2026-01-15"), (panel, "metal", 0, "2026-01-01"),
    ])
    _code(db, panel, "model-a", 1.0)
    _code(db, panel, "model-b", 2.0)
    _code(db, rooted, "model-a", 3.0)
    db.execute("INSERT INTO neighbours VALUES (?, 'model-a', 'both', 0, ?, 0.1)", (rooted, panel))
    db.execute("INSERT INTO neighbours VALUES (?, 'model-a', 'both', 1, ?, 0.2)", (rooted, changed))
    db.close()

    with Catalogue(path) as cat:
        assert cat.schema_version == SCHEMA_VERSION >= 4
        assert cat.asset_names() == sorted(["props/seats.v2/Chair", "props/other/Chair", "seats.v2/Table",
                                            "props/seats.v2/Table"])
        row = cat.asset_by_name("props/seats.v2/Chair")
        assert row.id == rooted and row.has_thumbnail and cat.thumbnail(rooted) == b"PNG-panel"
        tags = cat.tags_of(rooted, model_id="model-a")
        assert tags["artist"] == ["armrests", "chair", "wood"]  # merged + the accepted review answer's tag
        assert tags["probabilities"] == {"seat": 0.8}
        answers = {r["tag"]: r["accepted"] for r in cat.reviews() if r["asset_id"] == rooted}
        assert answers == {"armrests": True, "metal": False}  # the newest answer wins
        assert cat.codes("model-a").shape[cat.codes("model-a").index_of("props/seats.v2/Chair")][0] == 3.0  # kept's
        assert cat.code_info(rooted, "model-b") is not None  # the merged row's code of another model
        assert [n["name"] for n in cat.neighbours_of(rooted, "model-a")] == ["seats.v2/Table"]
        assert cat.integrity_ok()
        # an imported tag keeps its origin (it survives re-embedding from Blender)
        cat.set_artist_tags(rooted, ["chair"])
        assert cat.tags_of(rooted)["artist"] == ["armrests", "chair", "wood"]
    assert other_file and rooted_table


def test_remove_assets_takes_everything_of_them_and_refuses_unknown_names(tmp_path: Path) -> None:
    with Catalogue(tmp_path / "catalogue.sqlite") as cat:
        ids = {n: cat.upsert_asset(AssetInfo(name=n, source_blend=str(tmp_path / f"{n.split('/')[0]}.blend")))
               for n in ("chairs/Chair", "chairs/Stool", "unsaved/Cube")}
        cat.set_codes("m", {i: ([1.0, 2.0], [3.0, 4.0], None) for i in ids.values()})
        cat.add_artist_tags("chairs/Chair", ["seat"])
        cat.record_review("chairs/Chair", "wood", True)
        cat.set_neighbours("m", "both", {ids["chairs/Stool"]: [(ids["chairs/Chair"], 0.1), (ids["unsaved/Cube"], 0.2)]})
        with pytest.raises(LibraryError, match=r"no asset named 'chairs/Chiar'.*did you mean 'chairs/Chair'.*Nothing"):
            cat.remove_assets(["chairs/Stool", "chairs/Chiar"])
        assert cat.count("assets") == 3  # nothing removed
        assert cat.remove_assets(["chairs/Chair", ids["unsaved/Cube"]]) == ["chairs/Chair", "unsaved/Cube"]
        assert cat.asset_names() == ["chairs/Stool"]
        assert (cat.count("codes"), cat.count("tags"), cat.count("reviews")) == (1, 0, 0)
        assert cat.neighbours_of("chairs/Stool", "m") == []
        assert cat.integrity_ok()


def test_missing_and_unsaved_assets_and_codes_without_unsaved(tmp_path: Path) -> None:
    here = tmp_path / "chairs.blend"
    here.write_bytes(b"BLENDER")
    with Catalogue(tmp_path / "catalogue.sqlite") as cat:
        ids = [cat.upsert_asset(AssetInfo(name="chairs/Chair", source_blend=str(here))),
               cat.upsert_asset(AssetInfo(name="gone/Lamp", source_blend=str(tmp_path / "gone.blend"))),
               cat.upsert_asset(AssetInfo(name="unsaved/Cube")),
               cat.upsert_asset(AssetInfo(name="imported/Crate"))]  # no .blend known: never "missing"
        cat.set_codes("m", {i: ([1.0, 0.0], [0.0, 1.0], None) for i in ids})
        assert cat.missing_assets() == ["gone/Lamp"]
        assert cat.unsaved_assets() == ["unsaved/Cube"]
        assert cat.codes("m").names == ["chairs/Chair", "gone/Lamp", "imported/Crate", "unsaved/Cube"]
        assert cat.codes("m", include_unsaved=False).names == ["chairs/Chair", "gone/Lamp", "imported/Crate"]


def test_rename_asset_keeps_everything_and_refuses_a_taken_name(tmp_path: Path) -> None:
    with Catalogue(tmp_path / "catalogue.sqlite") as cat:
        aid = cat.upsert_asset(AssetInfo(name="old/Chair", source_blend="/lib/old.blend"))
        cat.upsert_asset(AssetInfo(name="other/Chair"))
        cat.set_codes("m", {aid: ([1.0], [2.0], None)})
        cat.add_artist_tags(aid, ["seat"])
        with pytest.raises(LibraryError, match="already in the catalogue"):
            cat.rename_asset("old/Chair", "other/Chair")
        with pytest.raises(LibraryError, match="did you mean"):
            cat.rename_asset("old/Chiar", "new/Chair")
        cat.rename_asset("old/Chair", "new/Chair", "/lib/new.blend")
        row = cat.asset_by_name("new/Chair")
        assert row.id == aid and row.source_blend == "/lib/new.blend"
        assert cat.tags_of(aid)["artist"] == ["seat"] and cat.code_info(aid, "m") is not None
