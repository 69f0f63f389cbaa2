"""The bulk-tag journal: what was captured, embedded and written, per file and asset (SQLite, WAL).

Kept in its own SQLite file (default ``FOLDER/.asset2vec/bulk-journal.sqlite``), not in the
backend's catalogue: the journal describes the artist's files on *this* machine, the catalogue
describes codes on the backend (which may be a studio GPU box that never sees the files).

Tables:

- ``files``: one row per .blend: ``size``, ``mtime_ns``, ``sha256`` of the file right after our
  last write (or check), the ``model_id`` it was tagged with and its ``status``. A later run skips
  a file whose size, mtime and sha256 still match without opening it.
- ``assets``: one row per (file, asset): ``content_hash`` and ``state`` (``captured`` →
  ``embedded`` → ``written``), the backend's ``result`` (JSON) so a run killed between embedding
  and saving resumes without embedding again, and the last per-asset ``report`` (JSON).
- ``imports``: loose OBJ/glTF models already imported (``sha256``) and the .blend they went to.

Every change is its own transaction; a kill at any moment leaves the journal consistent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.errors import Asset2VecError

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT, model_id TEXT,
    status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (
    path TEXT NOT NULL, asset TEXT NOT NULL, content_hash TEXT NOT NULL DEFAULT '', state TEXT NOT NULL,
    result TEXT, thumb TEXT, report TEXT, updated TEXT NOT NULL, PRIMARY KEY (path, asset));
CREATE TABLE IF NOT EXISTS imports (
    model TEXT PRIMARY KEY, sha256 TEXT NOT NULL, blend TEXT NOT NULL DEFAULT '', updated TEXT NOT NULL);
"""
#: Asset states, in order.
CAPTURED, EMBEDDED, WRITTEN = "captured", "embedded", "written"
#: File states after a run that count as "done, as we left it".
DONE_STATES = ("written", "unchanged")


class JournalError(Asset2VecError):
    """The journal cannot be opened or written; the message says what to do."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Journal:
    """Thread-safe access to the journal database (one connection, one lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"cannot open the bulk journal {self.path} ({e}); pass --journal PATH to put it "
                               f"somewhere writable") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # -- files ------------------------------------------------------------------------------

    def file(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, sha256, model_id, status, error FROM files WHERE path=?",
                                   (path,)).fetchone()
        if row is None:
            return None
        return dict(zip(("size", "mtime_ns", "sha256", "model_id", "status", "error"), row, strict=True))

    def set_file(self, path: str, status: str, stat: dict[str, Any] | None = None, model_id: str = "",
                 error: str = "") -> None:
        """Record a file's outcome; for written/unchanged files also the assets' ``written`` state, atomically."""
        s = stat or {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO files(path, size, mtime_ns, sha256, model_id, status, error, updated) "
                    "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
                    "mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, model_id=excluded.model_id, "
                    "status=excluded.status, error=excluded.error, updated=excluded.updated",
                    (path, s.get("size"), s.get("mtime_ns"), s.get("sha256"), model_id, status, error, _now()))
                if status in DONE_STATES:
                    self._db.execute("UPDATE assets SET state=?, updated=? WHERE path=? AND state=?",
                                     (WRITTEN, _now(), path, EMBEDDED))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- assets -----------------------------------------------------------------------------

    def set_asset(self, path: str, asset: str, content_hash: str, state: str, result: dict[str, Any] | None = None,
                  thumb: str | None = None) -> None:
        self._write(
            "INSERT INTO assets(path, asset, content_hash, state, result, thumb, updated) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(path, asset) DO UPDATE SET content_hash=excluded.content_hash, state=excluded.state, "
            "result=COALESCE(excluded.result, CASE WHEN assets.content_hash=excluded.content_hash THEN assets.result "
            "END), thumb=COALESCE(excluded.thumb, assets.thumb), updated=excluded.updated",
            (path, asset, content_hash, state, json.dumps(result) if result is not None else None, thumb, _now()))

    def set_report(self, path: str, asset: str, report: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO assets(path, asset, content_hash, state, report, updated) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(path, asset) DO UPDATE SET report=excluded.report, updated=excluded.updated",
            (path, asset, report.get("hash", ""), report.get("status", ""), json.dumps(report), _now()))

    def known(self, path: str) -> dict[str, dict[str, Any]]:
        """Results embedded before for this file: ``{asset: {"hash", "result", "thumb"}}``."""
        with self._lock:
            rows = self._db.execute("SELECT asset, content_hash, result, thumb FROM assets WHERE path=? AND "
                                    "result IS NOT NULL", (path,)).fetchall()
        return {a: {"hash": h, "result": json.loads(r), "thumb": t} for a, h, r, t in rows}

    def reports(self, path: str) -> list[dict[str, Any]]:
        """The last per-asset reports of a file (for files skipped in this run)."""
        with self._lock:
            rows = self._db.execute("SELECT report FROM assets WHERE path=? AND report IS NOT NULL ORDER BY asset",
                                    (path,)).fetchall()
        return [json.loads(r) for (r,) in rows]

    def states(self) -> dict[str, int]:
        """How many assets are in each state (for summaries and tests)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM assets GROUP BY state").fetchall()
        return dict(rows)

    # -- imports ----------------------------------------------------------------------------

    def imported(self, model: str) -> str | None:
        """The sha256 the model had when it was imported, or None."""
        with self._lock:
            row = self._db.execute("SELECT sha256 FROM imports WHERE model=?", (model,)).fetchone()
        return row[0] if row else None

    def set_imported(self, model: str, sha256: str, blend: str) -> None:
        self._write("INSERT INTO imports(model, sha256, blend, updated) VALUES (?,?,?,?) ON CONFLICT(model) DO UPDATE "
                    "SET sha256=excluded.sha256, blend=excluded.blend, updated=excluded.updated",
                    (model, sha256, blend, _now()))
