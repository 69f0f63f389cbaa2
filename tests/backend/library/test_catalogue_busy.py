"""A locked catalogue never stalls its readers, and a blocked write fails fast (issue 18).

Another connection (as another process would) holds SQLite's write lock with ``BEGIN IMMEDIATE``:
reads (what ``/v1/info`` does: models, counts) still answer at once, and a write raises the typed
:class:`CatalogueBusy` within about the busy timeout instead of waiting 30 s behind it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from backend.errors import Asset2VecError
from backend.library.catalogue import Catalogue
from backend.library.errors import CatalogueBusy, LibraryError
from shared.bundle import AssetInfo


def _filled(path: Path) -> None:
    with Catalogue(path) as cat:
        cat.register_model("model-a", preset="cpu-small")
        aid = cat.upsert_asset(AssetInfo(name="props/chair/Chair"))
        cat.set_codes("model-a", {aid: ([1.0, 0.0], [0.0, 1.0], None)})


def test_catalogue_busy_is_a_library_error() -> None:
    assert issubclass(CatalogueBusy, LibraryError) and issubclass(CatalogueBusy, Asset2VecError)
    assert CatalogueBusy.retry_after_s >= 1


def test_reads_answer_and_writes_fail_fast_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    _filled(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sqlite3, sys, time
            db = sqlite3.connect({str(path)!r}, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE models SET preset = 'changing'")
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        cat = Catalogue(path)  # opening an up-to-date catalogue needs no write lock
        models = cat.models()
        counts = (cat.count("assets"), cat.count("codes"))
        assert time.monotonic() - t0 < 1.0
        assert models[0]["model_id"] == "model-a" and models[0]["preset"] == "cpu-small"  # the committed state
        assert counts == (1, 1)
        t0 = time.monotonic()
        with pytest.raises(CatalogueBusy, match="busy"):
            cat.upsert_asset(AssetInfo(name="props/table/Table"))
        assert time.monotonic() - t0 < 3.0
        assert cat.asset_names() == ["props/chair/Chair"]  # nothing half-written
        cat.close()
    finally:
        holder.kill()
        holder.wait()
    with Catalogue(path) as cat:  # the lock is gone with its process: writes work again
        cat.upsert_asset(AssetInfo(name="props/table/Table"))
        assert cat.count("assets") == 2


def test_readers_in_other_threads_do_not_queue_behind_a_writer(tmp_path: Path) -> None:
    """One shared Catalogue (as the service holds it): a long write in one thread blocks no reader."""
    path = tmp_path / "catalogue.sqlite"
    _filled(path)
    cat = Catalogue(path)
    in_write, release = threading.Event(), threading.Event()

    def writer() -> None:
        with cat.transaction():
            cat.upsert_asset(AssetInfo(name="props/lamp/Lamp"))
            in_write.set()
            release.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert in_write.wait(10)
        answers: list[object] = []

        def reader() -> None:
            t0 = time.monotonic()
            answers.append((cat.models()[0]["codes"], cat.count("assets"), cat.asset_names()))
            answers.append(time.monotonic() - t0)
            try:
                cat.register_model("model-b")
            except CatalogueBusy as e:
                answers.append(e)

        r = threading.Thread(target=reader)
        r.start()
        r.join(10)
        assert not r.is_alive()
        assert answers[0] == (1, 1, ["props/chair/Chair"])  # committed state only
        assert answers[1] < 1.0
        assert isinstance(answers[2], CatalogueBusy)
    finally:
        release.set()
        t.join(10)
    assert cat.asset_names() == ["props/chair/Chair", "props/lamp/Lamp"]
    cat.register_model("model-b", active=False)  # free again
    cat.close()


def test_nested_transactions_join_per_thread_and_roll_back_together(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    with Catalogue(path) as cat:
        with pytest.raises(RuntimeError):
            with cat.transaction():
                cat.upsert_asset(AssetInfo(name="a/A"))
                with cat.transaction():
                    cat.upsert_asset(AssetInfo(name="b/B"))
                raise RuntimeError("stop")
        assert cat.asset_names() == []


def test_closed_catalogue_refuses(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path / "catalogue.sqlite")
    cat.models()
    cat.close()
    with pytest.raises(LibraryError, match="closed"):
        cat.models()
    raw = sqlite3.connect(tmp_path / "catalogue.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
