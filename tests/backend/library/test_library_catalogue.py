"""Catalogue: a real SQLite file in WAL mode, transactions, model separation, tags, crash safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backend.library.catalogue import MIGRATIONS, SCHEMA_VERSION, Catalogue, _statements, import_run
from backend.library.errors import LibraryError
from shared.bundle import AssetInfo

ROOT = Path(__file__).resolve().parents[3]


def fake_run(model_id: str = "model-a", n: int = 6) -> SimpleNamespace:
    """A TrainedRun-shaped object (only the fields import_run reads)."""
    rng = np.random.default_rng(0)
    names = [f"chair_{i}" for i in range(n)]
    assets = [AssetInfo(name=nm, family="chairs", category="chair", size=(0.5, 0.5, 0.9 + i * 0.01),
                        tags=["seat"] + (["armrests"] if i % 2 else []), parameters={"legs": 4 + i})
              for i, nm in enumerate(names)]
    return SimpleNamespace(run_dir=Path("/nowhere"), model_id=model_id, preset="cpu-small", names=names,
                           shape_codes=rng.normal(size=(n, 32)).astype(np.float32),
                           texture_codes=rng.normal(size=(n, 32)).astype(np.float32), assets=assets)


def test_schema_wal_and_version(tmp_path: Path) -> None:
    path = tmp_path / "cat.sqlite"
    Catalogue(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"assets", "codes", "tags", "neighbours", "models"} <= tables
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(LibraryError, match="newer than this Asset2Vec"):
        Catalogue(path)


def test_migration_applied_meanwhile_by_another_process_is_skipped(tmp_path: Path) -> None:
    """Two processes opening a new catalogue at once: the second must not run the migrations again."""
    path = tmp_path / "c.sqlite"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("BEGIN IMMEDIATE")  # "the other process" holds the write lock while migrating
    opened: list[object] = []
    worker = threading.Thread(target=lambda: opened.append(_open_or_error(path)))
    worker.start()
    time.sleep(0.5)  # let the catalogue read user_version 0 and wait for the write lock
    for script in MIGRATIONS:
        for statement in _statements(script):
            other.execute(statement)
    other.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    other.execute("COMMIT")
    other.close()
    worker.join(timeout=60)
    assert len(opened) == 1 and isinstance(opened[0], Catalogue), opened
    assert opened[0].schema_version == SCHEMA_VERSION
    opened[0].close()


def _open_or_error(path: Path) -> object:
    try:
        return Catalogue(path)
    except Exception as e:  # noqa: BLE001 - reported by the assertion
        return e


def test_artist_tags_replaced_on_reembed_predictions_untouched(tmp_path: Path) -> None:
    with Catalogue(tmp_path / "c.sqlite") as cat:
        import_run(cat, fake_run())
        cat.set_predicted_tags("model-a", {"chair_1": {"swivel": 0.9}})
        assert cat.tags_of("chair_1")["artist"] == ["armrests", "seat"]
        cat.set_artist_tags("chair_1", ["seat", "wood"])  # the artist deleted "armrests" and added "wood"
        tags = cat.tags_of("chair_1")
        assert tags["artist"] == ["seat", "wood"] and tags["predicted"] == {"swivel": pytest.approx(0.9)}
        assert cat.tags_of("chair_3")["artist"] == ["armrests", "seat"]  # other assets untouched
        cat.set_artist_tags("chair_1", [])
        assert cat.tags_of("chair_1")["artist"] == [] and cat.tags_of("chair_1")["predicted"]


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match="not a readable Asset2Vec catalogue"):
        Catalogue(bad)


def test_import_run_roundtrip(tmp_path: Path) -> None:
    run = fake_run()
    with Catalogue(tmp_path / "c.sqlite") as cat:
        table = import_run(cat, run)
        assert table.names == sorted(run.names)
        row = run.names.index("chair_3")
        np.testing.assert_array_equal(table.shape[table.index_of("chair_3")], run.shape_codes[row])
        np.testing.assert_array_equal(table.texture[table.index_of("chair_3")], run.texture_codes[row])
        assert table.size[table.index_of("chair_3")][2] == pytest.approx(0.93)
        asset = cat.asset_by_name("chair_3")
        assert asset.family == "chairs" and asset.parameters == {"legs": 7}
        assert cat.tags_of("chair_3")["artist"] == ["armrests", "seat"]
        assert cat.active_model() == "model-a"
        # Importing again is idempotent (upserts, no duplicates).
        import_run(cat, run)
        assert cat.count("assets") == 6 and cat.count("codes") == 6


def test_artist_tags_survive_predictions(tmp_path: Path) -> None:
    with Catalogue(tmp_path / "c.sqlite") as cat:
        import_run(cat, fake_run())
        cat.set_predicted_tags("model-a", {"chair_0": {"armrests": 0.9, "seat": 0.1, "swivel": 0.3}})
        tags = cat.tags_of("chair_0")
        assert tags["artist"] == ["seat"]  # a low prediction never removes the artist's tag
        assert tags["predicted"] == {"armrests": pytest.approx(0.9)}
        # New predictions replace the old ones of that model, artist tags untouched.
        cat.set_predicted_tags("model-a", {"chair_0": {"swivel": 0.8}})
        tags = cat.tags_of("chair_0")
        assert tags["artist"] == ["seat"] and tags["predicted"] == {"swivel": pytest.approx(0.8)}
        assert "armrests" not in tags["probabilities"]
        # An artist tag that a model also predicts is not "proposed" again.
        cat.set_predicted_tags("model-a", {"chair_1": {"armrests": 0.99}})
        assert cat.tags_of("chair_1")["predicted"] == {}
        assert cat.revert_predicted_tag("chair_0", "swivel") == 1
        assert cat.revert_predicted_tag("chair_0", "seat") == 0  # never reverts an artist tag
        assert cat.tags_of("chair_0")["artist"] == ["seat"]
        with pytest.raises(LibraryError, match=r"in \[0, 1\]"):
            cat.set_predicted_tags("model-a", {"chair_0": {"x": 1.5}})


def test_neighbours_roundtrip(tmp_path: Path) -> None:
    with Catalogue(tmp_path / "c.sqlite") as cat:
        import_run(cat, fake_run())
        a, b, c = (cat.asset_by_name(n).id for n in ("chair_0", "chair_1", "chair_2"))
        cat.set_neighbours("model-a", "shape", {a: [(b, 0.5), (c, 0.7)]})
        got = cat.neighbours_of("chair_0", "model-a", "shape")
        assert [g["name"] for g in got] == ["chair_1", "chair_2"]
        assert got[1]["distance"] == pytest.approx(0.7)
        assert cat.neighbours_of("chair_0", "model-a", "texture") == []


def test_other_model_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalogue(path) as cat:
        import_run(cat, fake_run("model-a"))
    with pytest.raises(LibraryError, match="not from model model-b.*[Rr]e-embed"):
        Catalogue(path, expect_model="model-b")
    with Catalogue(path) as cat, pytest.raises(LibraryError, match="model-a"):
        cat.codes("model-b")
    Catalogue(path, expect_model="model-a").close()  # the right model opens fine
    Catalogue(tmp_path / "fresh.sqlite", expect_model="model-b").close()  # an empty one too


def test_unknown_and_empty(tmp_path: Path) -> None:
    with Catalogue(tmp_path / "empty.sqlite") as cat:
        with pytest.raises(LibraryError, match="empty"):
            cat.asset_by_name("chair_1")
        with pytest.raises(LibraryError, match="no codes for model"):
            cat.codes("model-a")
    with Catalogue(tmp_path / "c.sqlite") as cat:
        table = import_run(cat, fake_run())
        with pytest.raises(LibraryError, match="did you mean 'chair_1'"):
            cat.asset_by_name("chiar_1")
        with pytest.raises(LibraryError, match="no asset named"):
            table.index_of("sofa")
    with pytest.raises(LibraryError, match="no catalogue here"):
        Catalogue(tmp_path / "missing.sqlite", create=False)


def test_failed_batch_rolls_back(tmp_path: Path) -> None:
    with Catalogue(tmp_path / "c.sqlite") as cat:
        import_run(cat, fake_run())
        ids = [cat.asset_by_name(f"chair_{i}").id for i in range(3)]
        before = cat.codes("model-a").shape.copy()
        bad = {ids[0]: (np.zeros(32), np.zeros(32), 20.0), ids[1]: (np.zeros(16), np.zeros(32), 20.0)}
        with pytest.raises(LibraryError, match="code size"):
            cat.set_codes("model-a", bad)
        np.testing.assert_array_equal(cat.codes("model-a").shape, before)  # not even the first row landed
        with pytest.raises(LibraryError, match="finite"):
            cat.set_codes("model-a", {ids[2]: (np.full(32, np.nan), np.zeros(32), None)})


CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from backend.library.catalogue import Catalogue
    from shared.bundle import AssetInfo
    path, batch = sys.argv[1], int(sys.argv[2])
    cat = Catalogue(path)
    rng = np.random.default_rng(batch)
    with cat.transaction():
        ids = {}
        for i in range(400):
            ids[cat.upsert_asset(AssetInfo(name=f"b{batch}_{i}", family=f"batch{batch}"))] = i
            if i == 5:
                print("started", flush=True)  # the parent kills us from here on
        cat.set_codes("m", {a: (rng.normal(size=32), rng.normal(size=32), 20.0) for a in ids})
    print("committed", flush=True)
    """
)


def test_kill_during_batch_is_all_or_nothing(tmp_path: Path) -> None:
    """SIGKILL while a batch is being written: afterwards the file is intact and each batch is whole or absent."""
    path = tmp_path / "c.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    said_committed = {}
    for batch, delay in enumerate((0.0, 0.01, 0.05, None)):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(batch)], stdout=subprocess.PIPE,
                                 text=True, env=env, cwd=ROOT)
        assert child.stdout.readline().strip() == "started"
        if delay is None:
            assert child.wait(timeout=60) == 0  # the last batch completes normally
        else:
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        said_committed[f"batch{batch}"] = "committed" in child.stdout.read()
    with Catalogue(path) as cat:
        assert cat.integrity_ok()
        by_family: dict[str, int] = {}
        for name in cat.asset_names():
            fam = cat.asset_by_name(name).family
            by_family[fam] = by_family.get(fam, 0) + 1
        for fam, committed in said_committed.items():
            # All or nothing: 0 or 400 assets, and 400 whenever the child reported its commit.
            assert by_family.get(fam, 0) in ((400,) if committed else (0, 400)), (fam, by_family)
        assert by_family.get("batch0", 0) == 0, "the first child should have died mid-batch"
        assert by_family["batch3"] == 400
        table = cat.codes("m")
        assert len(table) == sum(by_family.values()) and np.all(np.isfinite(table.shape))


def test_activation_history_and_restore(tmp_path: Path) -> None:
    """Switching models is recorded; the previous model is what a restore goes back to."""
    cat = Catalogue(tmp_path / "c.sqlite")
    cat.register_model("m1", "cpu-small", info={"generic": True})
    cat.register_model("m2", "cpu-small", active=False, info={"trained_on": 3})
    assert cat.active_model() == "m1" and cat.previous_model() is None
    cat.activate_model("m2")
    assert cat.active_model() == "m2" and cat.previous_model() == "m1"
    assert [h["model_id"] for h in cat.activation_history()] == ["m1", "m2"]
    assert {m["model_id"]: m["info"] for m in cat.models()} == {"m1": {"generic": True}, "m2": {"trained_on": 3}}
    with pytest.raises(LibraryError, match="no model 'm3'"):
        cat.activate_model("m3")
    assert cat.active_model() == "m2"


def test_imported_tags_survive_re_embedding(tmp_path: Path) -> None:
    """Blender's tags replace Blender's tags; a tag list's tags and accepted review answers stay."""
    cat = Catalogue(tmp_path / "c.sqlite")
    aid = cat.upsert_asset(AssetInfo(name="chairs/Chair_00"))
    cat.set_artist_tags(aid, ["chair", "old"])
    cat.import_artist_tags(aid, ["oak", "chair"])
    cat.record_review(aid, "dining", True)
    cat.set_artist_tags(aid, ["chair", "red"])  # embedded again: "old" was removed in Blender
    assert cat.tags_of(aid)["artist"] == ["chair", "dining", "oak", "red"]
    cat.set_artist_tags(aid, [])
    assert cat.tags_of(aid)["artist"] == ["chair", "dining", "oak"]  # "chair" was in the tag list too
