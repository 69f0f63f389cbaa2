"""The asset catalogue: one SQLite file (WAL mode) with assets, codes per model, tags and neighbours.

Safety rules the schema and API enforce:

* Every write is one transaction: a batch (``set_codes``, ``import_run``, ``transaction()``)
  is all-or-nothing even if the process is killed half-way (WAL + atomic commit).
* Codes are stored **per model id** and every query names the model: codes of two different
  decoders live in different spaces and must never be mixed. ``Catalogue(path, expect_model=M)``
  refuses a catalogue that only holds codes of other models.
* Artist tags (``source='artist'``) are never removed or overwritten by predictions; predicted
  tags are separate rows (``source='predicted'``, with probability and model id) that can be
  replaced or reverted on their own.

The schema and its migrations are in :mod:`.schema`, the rows read back in :mod:`.code_table`, the tag
queries in :mod:`.catalogue_tags`; all are importable from here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from shared.api import SPACES  # the catalogue stores neighbours per wire space
from shared.bundle import AssetInfo
from shared.naming import is_unsaved

from .catalogue_appearance import AppearanceQueries
from .catalogue_tags import TagQueries, now_iso
from .code_table import AssetRow, CodeTable, unknown_asset_message
from .errors import CatalogueBusy, LibraryError
from .run_thumbnails import read_thumbnails
from .schema import CODE_SOURCES, MIGRATIONS, SCHEMA_VERSION, TAG_SOURCES, migrate, statements

#: Older names, still imported by callers and tests.
_statements = statements
_unknown_asset_message = unknown_asset_message
__all__ = ["AssetRow", "BUSY_TIMEOUT_S", "CODE_SOURCES", "Catalogue", "CatalogueBusy", "CodeTable", "MIGRATIONS", "SCHEMA_VERSION", "SPACES",
           "TAG_SOURCES", "import_run"]


#: Seconds a write waits for another connection's write lock before :class:`CatalogueBusy` (a service stays
#: responsive; batch tools pass a longer ``busy_timeout``).
BUSY_TIMEOUT_S = 1.0
#: ``busy_timeout`` of batch tools (the index pipeline) that would rather wait for a service's short writes.
BATCH_TIMEOUT_S = 30.0
#: Assets per batch of :meth:`Catalogue.set_neighbours` rows handed to SQLite at once.
NEIGHBOUR_BATCH = 5000
#: Seconds opening a catalogue waits for another process that is migrating the same file.
MIGRATION_TIMEOUT_S = 30.0


def _blob(vec: Any, what: str) -> bytes:
    arr = np.asarray(vec, dtype="<f4").reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise LibraryError(f"{what} must be a non-empty vector of finite numbers")
    return arr.tobytes()


class Catalogue(TagQueries, AppearanceQueries):
    """The asset catalogue in one SQLite file. Safe to share between threads: each thread gets its own connection.

    No Python lock is ever held across an SQLite call: in WAL mode readers never wait for a writer, and a
    write that cannot get SQLite's write lock within ``busy_timeout`` seconds (another process, or another
    thread, is writing) raises :class:`CatalogueBusy` instead of stalling its caller (a service answers 503).
    Batch tools that would rather wait (the index pipeline) pass a longer ``busy_timeout``.

    ``expect_model``: the model id the caller is about to query; if the file already holds codes
    but none of that model, :class:`LibraryError` is raised instead of silently mixing spaces.
    """

    def __init__(self, path: str | os.PathLike[str], expect_model: str | None = None, create: bool = True,
                 busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise LibraryError(f"{self.path}: no catalogue here; embed or import a library first")
        if self.path.exists() and self.path.is_dir():
            raise LibraryError(f"{self.path} is a folder; give the path of a catalogue file (e.g. catalogue.sqlite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()  # .db (this thread's connection), .depth (nested transactions)
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._conns_lock = threading.Lock()  # guards _conns only; never held across an SQLite call
        self._closed = False
        try:
            db = self._conn()
            # WAL is a property of the file (set once): readers then never wait for a writer.
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._migrate()
        except CatalogueBusy:
            self.close()
            raise
        except sqlite3.DatabaseError as e:
            self.close()
            raise LibraryError(f"{self.path}: not a readable Asset2Vec catalogue ({e})") from None
        if mode.lower() != "wal":
            self.close()
            raise LibraryError(f"{self.path}: cannot switch the catalogue to WAL mode (got {mode!r}); is it read-only?")
        if expect_model is not None:
            self.check_model(expect_model)

    # -- plumbing -----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; connections of finished threads are closed)."""
        if self._closed:
            raise LibraryError(f"{self.path}: the catalogue was closed")
        db = getattr(self._local, "db", None)
        if db is not None:
            return db
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so batches are explicit transactions.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout)
        db.execute("PRAGMA foreign_keys = ON")
        # NORMAL is crash-safe in WAL mode (a kill never corrupts; only an OS crash may lose the last commit).
        db.execute("PRAGMA synchronous = NORMAL")
        self._local.db, self._local.depth = db, 0
        with self._conns_lock:
            for thread in [t for t in self._conns if not t.is_alive()]:
                self._conns.pop(thread).close()
            self._conns[threading.current_thread()] = db
        return db

    def close(self) -> None:
        with self._conns_lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for db in conns:
            db.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _busy(self, e: sqlite3.OperationalError) -> CatalogueBusy | None:
        """The typed error for SQLite's "database is locked" (None for any other error)."""
        code = getattr(e, "sqlite_errorcode", None)
        if (code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)) or "locked" in str(e):
            return CatalogueBusy(f"{self.path.name}: the catalogue is busy (another program is writing to it, "
                                 f"e.g. an index run); nothing was changed, try again in a moment")
        return None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing transaction; nested uses (in one thread) join the outermost one.

        Raises :class:`CatalogueBusy` when the write lock is not free within ``busy_timeout`` seconds.
        """
        db = self._conn()
        local = self._local
        if local.depth == 0:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise (self._busy(e) or e) from None
        local.depth += 1
        try:
            yield db
        except BaseException:
            local.depth -= 1
            if local.depth == 0 and db.in_transaction:
                db.execute("ROLLBACK")
            raise
        local.depth -= 1
        if local.depth == 0:
            try:
                db.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise (self._busy(e) or e) from None

    def _migrate(self) -> None:
        # Opening waits longer than a query: two processes creating one catalogue take turns migrating.
        db = self._conn()
        db.execute(f"PRAGMA busy_timeout = {int(max(self.busy_timeout, MIGRATION_TIMEOUT_S) * 1000)}")
        try:
            migrate(db, self.path)
        except sqlite3.OperationalError as e:
            raise (self._busy(e) or e) from None
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as e:
            raise (self._busy(e) or e) from None

    @property
    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    # -- models -------------------------------------------------------------------------------

    def register_model(self, model_id: str, preset: str = "", active: bool = True,
                       info: Mapping[str, Any] | None = None) -> None:
        """Record a model; ``active`` makes it the (only) active one; ``info`` is stored as JSON (merged)."""
        if not model_id:
            raise LibraryError("a model id must be a non-empty string")
        with self.transaction() as db:
            db.execute(
                "INSERT INTO models(model_id, preset, created, active) VALUES (?, ?, ?, 0) "
                "ON CONFLICT(model_id) DO UPDATE SET preset = CASE WHEN excluded.preset != '' "
                "THEN excluded.preset ELSE models.preset END",
                (model_id, preset, now_iso()),
            )
            if info:
                old = json.loads(db.execute("SELECT info FROM models WHERE model_id = ?", (model_id,)).fetchone()[0])
                db.execute("UPDATE models SET info = ? WHERE model_id = ?", (json.dumps({**old, **info}), model_id))
            if active:
                self._activate(db, model_id)

    def activate_model(self, model_id: str) -> None:
        """Make a registered model the active one (one transaction: readers see the old or the new one)."""
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM models WHERE model_id = ?", (model_id,)).fetchone():
                known = ", ".join(m["model_id"] for m in self.models()) or "none"
                raise LibraryError(f"no model {model_id!r} in {self.path} (known: {known})")
            self._activate(db, model_id)

    @staticmethod
    def _activate(db: sqlite3.Connection, model_id: str) -> None:
        current = db.execute("SELECT model_id FROM models WHERE active = 1").fetchone()
        db.execute("UPDATE models SET active = (model_id = ?)", (model_id,))
        if current is None or current[0] != model_id:
            db.execute("INSERT INTO activations(model_id, at) VALUES (?, ?)", (model_id, now_iso()))

    def activation_history(self) -> list[dict[str, str]]:
        """Every switch of the active model, oldest first: ``[{"model_id", "at"}]``."""
        return [dict(model_id=r[0], at=r[1]) for r in self._query("SELECT model_id, at FROM activations ORDER BY seq")]

    def previous_model(self) -> str | None:
        """The model that was active before the current one (still registered), or None."""
        current = self.active_model()
        known = {m["model_id"] for m in self.models()}
        for entry in reversed(self.activation_history()):
            if entry["model_id"] != current and entry["model_id"] in known:
                return entry["model_id"]
        return None

    def models(self) -> list[dict[str, Any]]:
        """All models with their number of codes and stored ``info``."""
        rows = self._query(
            "SELECT m.model_id, m.preset, m.created, m.active, COUNT(c.asset_id), m.info FROM models m "
            "LEFT JOIN codes c ON c.model_id = m.model_id GROUP BY m.model_id ORDER BY m.created"
        )
        return [dict(model_id=r[0], preset=r[1], created=r[2], active=bool(r[3]), codes=r[4], info=json.loads(r[5]))
                for r in rows]

    def active_model(self) -> str | None:
        rows = self._query("SELECT model_id FROM models WHERE active = 1")
        return rows[0][0] if rows else None

    def check_model(self, model_id: str) -> None:
        """Raise if the catalogue has codes, but none from ``model_id`` (a catalogue of another model)."""
        rows = self._query("SELECT model_id, COUNT(*) FROM codes GROUP BY model_id")
        have = {m: n for m, n in rows}
        if have and model_id not in have:
            others = ", ".join(f"{m} ({n} codes)" for m, n in have.items())
            raise LibraryError(
                f"{self.path} holds codes from model {others}, not from model {model_id}: codes of different "
                "models live in different spaces and are never mixed. Re-embed the library with this run "
                "(asset2vec catalogue import --run RUN_DIR --catalogue NEW.sqlite) or pass the run that built it."
            )

    # -- assets -------------------------------------------------------------------------------

    def upsert_asset(self, info: AssetInfo, thumbnail: bytes | None = None) -> int:
        """Insert or update an asset by name; returns its id. A ``None`` thumbnail keeps the stored one."""
        if not info.name:
            raise LibraryError("an asset needs a non-empty name")
        size = tuple(float(s) for s in info.size)
        params = json.dumps(info.parameters or {}, sort_keys=True)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO assets(name, source_blend, asset_name, content_hash, family, parameters, category, "
                "size_x, size_y, size_z, thumbnail, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET source_blend=excluded.source_blend, asset_name=excluded.asset_name, "
                "content_hash=excluded.content_hash, family=excluded.family, parameters=excluded.parameters, "
                "category=excluded.category, size_x=excluded.size_x, size_y=excluded.size_y, size_z=excluded.size_z, "
                "thumbnail=COALESCE(excluded.thumbnail, assets.thumbnail), updated=excluded.updated",
                (info.name, info.source_blend, info.asset_name, info.content_hash, info.family, params,
                 info.category, *size, thumbnail, now_iso()),
            )
            return int(db.execute("SELECT id FROM assets WHERE name = ?", (info.name,)).fetchone()[0])

    def set_thumbnail(self, asset: int | str, png: bytes) -> None:
        aid = self._asset_id(asset)
        with self.transaction() as db:
            db.execute("UPDATE assets SET thumbnail = ? WHERE id = ?", (png, aid))

    def thumbnail(self, asset: int | str) -> bytes | None:
        aid = self._asset_id(asset)
        return self._query("SELECT thumbnail FROM assets WHERE id = ?", (aid,))[0][0]

    def asset_names(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM assets ORDER BY name")]

    def asset_by_name(self, name: str) -> AssetRow:
        """The stored asset; an unknown name raises :class:`LibraryError` listing close matches."""
        rows = self._query(
            "SELECT id, name, source_blend, asset_name, content_hash, family, parameters, category, size_x, size_y, "
            "size_z, thumbnail IS NOT NULL FROM assets WHERE name = ?",
            (name,),
        )
        if not rows:
            if not self._query("SELECT 1 FROM assets LIMIT 1"):
                raise LibraryError(f"{self.path}: the catalogue is empty; embed or import a library first")
            raise LibraryError(unknown_asset_message(name, self.asset_names()))
        r = rows[0]
        return AssetRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], (r[8], r[9], r[10]), bool(r[11]))

    def remove_assets(self, assets: Iterable[int | str]) -> list[str]:
        """Forget assets: their rows, codes of every model, tags, review answers and neighbour lists naming them.

        One transaction. Any unknown name or id raises :class:`LibraryError` (with close matches) before
        anything is removed. Returns the removed names. A model folder's ``codes.npz`` still holds the
        training codes of the assets it was trained on; embedding or indexing the file again brings one back.
        """
        wanted = list(dict.fromkeys(assets))
        with self.transaction() as db:
            known = self.asset_names()
            found: dict[int, str] = {}
            unknown: list[str] = []
            for a in wanted:
                if isinstance(a, (int, np.integer)):
                    row = db.execute("SELECT id, name FROM assets WHERE id = ?", (int(a),)).fetchone()
                else:
                    row = db.execute("SELECT id, name FROM assets WHERE name = ?", (str(a),)).fetchone()
                if row is None:
                    unknown.append(f"no asset with id {int(a)} in the catalogue" if isinstance(a, (int, np.integer))
                                   else unknown_asset_message(str(a), known))
                else:
                    found[int(row[0])] = str(row[1])
            if unknown:
                raise LibraryError("; ".join(unknown) + ". Nothing was removed")
            ids = [(i,) for i in found]
            db.executemany("DELETE FROM neighbours WHERE neighbour_id = ?", ids)
            db.executemany("DELETE FROM assets WHERE id = ?", ids)  # codes, tags, reviews, neighbours: cascade
        return sorted(found.values())

    def missing_assets(self) -> list[str]:
        """Assets whose .blend (``source_blend``, as this machine sees it) is gone; unsaved and imported ones aside."""
        rows = self._query("SELECT name, source_blend FROM assets WHERE source_blend != '' ORDER BY name")
        return [n for n, src in rows if not is_unsaved(n) and not Path(src).is_file()]

    def unsaved_assets(self) -> list[str]:
        """Embeds of files never saved (``unsaved/...``): answered once, never another asset's neighbour."""
        return [r[0] for r in self._query("SELECT name FROM assets WHERE substr(name, 1, 8) = 'unsaved/' "
                                          "ORDER BY name")]

    def asset_sources(self) -> dict[str, tuple[str, str, str, str]]:
        """``{name: (source_blend, family, content_hash, asset_name)}`` of every asset (``''`` where unknown)."""
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self._query(
            "SELECT name, source_blend, family, content_hash, asset_name FROM assets ORDER BY name")}

    def rename_asset(self, old: str, new: str, source_blend: str | None = None) -> None:
        """Give an asset a new name (a .blend moved or renamed: same content); codes, tags and answers stay."""
        with self.transaction() as db:
            aid = self._asset_id(old)
            if db.execute("SELECT 1 FROM assets WHERE name = ?", (new,)).fetchone():
                raise LibraryError(f"cannot rename {old!r}: an asset named {new!r} is already in the catalogue")
            db.execute("UPDATE assets SET name = ?, source_blend = COALESCE(?, source_blend), updated = ? WHERE id = ?",
                       (new, source_blend, now_iso(), aid))

    def _asset_id(self, asset: int | str) -> int:
        if isinstance(asset, (int, np.integer)):
            if not self._query("SELECT 1 FROM assets WHERE id = ?", (int(asset),)):
                raise LibraryError(f"no asset with id {int(asset)} in the catalogue")
            return int(asset)
        return self.asset_by_name(asset).id

    # -- codes --------------------------------------------------------------------------------

    def set_codes(
        self,
        model_id: str,
        codes: Mapping[int, tuple[Any, Any, float | None]],
        source: str = "inversion",
    ) -> None:
        """Store ``{asset_id: (shape [D], texture [D], psnr)}`` for a model, in one transaction."""
        if source not in CODE_SOURCES:
            raise LibraryError(f"code source must be one of {CODE_SOURCES}, got {source!r}")
        rows = []
        for aid, (shape, texture, psnr) in codes.items():
            s, t = _blob(shape, f"shape code of asset {aid}"), _blob(texture, f"texture code of asset {aid}")
            rows.append((int(aid), model_id, s, t, None if psnr is None else float(psnr), source, now_iso()))
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM models WHERE model_id = ?", (model_id,)).fetchone():
                self.register_model(model_id, active=self.active_model() is None)
            dims = db.execute(
                "SELECT length(shape), length(texture) FROM codes WHERE model_id = ? LIMIT 1", (model_id,)
            ).fetchone()
            for r in rows:
                if dims is None:
                    dims = (len(r[2]), len(r[3]))
                if (len(r[2]), len(r[3])) != tuple(dims):
                    raise LibraryError(
                        f"asset {r[0]}: code size {len(r[2]) // 4}+{len(r[3]) // 4} differs from model {model_id}'s "
                        f"{dims[0] // 4}+{dims[1] // 4}"
                    )
            try:
                db.executemany(
                    "INSERT INTO codes(asset_id, model_id, shape, texture, psnr, source, updated) "
                    "VALUES (?,?,?,?,?,?,?) ON CONFLICT(asset_id, model_id) DO UPDATE SET shape=excluded.shape, "
                    "texture=excluded.texture, psnr=excluded.psnr, source=excluded.source, updated=excluded.updated",
                    rows,
                )
            except sqlite3.IntegrityError:
                raise LibraryError("set_codes: some asset ids are not in the catalogue; upsert the assets first") from None

    def codes(self, model_id: str, include_unsaved: bool = True) -> CodeTable:
        """Every code of ``model_id`` (ordered by asset name). Raises if there are none.

        ``include_unsaved=False`` leaves out embeds of files never saved (``unsaved/...``): the table a
        library's neighbour index is built from, so such an embed is never another asset's neighbour.
        """
        unsaved = "" if include_unsaved else " AND substr(a.name, 1, 8) != 'unsaved/'"
        rows = self._query(
            "SELECT a.id, a.name, c.shape, c.texture, a.size_x, a.size_y, a.size_z, a.family, a.category, c.psnr "
            f"FROM codes c JOIN assets a ON a.id = c.asset_id WHERE c.model_id = ?{unsaved} ORDER BY a.name",
            (model_id,),
        )
        if not rows:
            self.check_model(model_id)
            raise LibraryError(
                f"{self.path}: the catalogue has no codes for model {model_id}; embed or import the library first"
            )
        return CodeTable(
            model_id=model_id,
            ids=np.array([r[0] for r in rows], dtype=np.int64),
            names=[r[1] for r in rows],
            shape=np.stack([np.frombuffer(r[2], dtype="<f4") for r in rows]).astype(np.float32),
            texture=np.stack([np.frombuffer(r[3], dtype="<f4") for r in rows]).astype(np.float32),
            size=np.array([r[4:7] for r in rows], dtype=np.float32),
            families=[r[7] for r in rows],
            categories=[r[8] for r in rows],
            psnr=np.array([np.nan if r[9] is None else r[9] for r in rows], dtype=np.float32),
        )

    def code_info(self, asset: int | str, model_id: str) -> dict[str, Any] | None:
        """How the asset's code of ``model_id`` was made: ``{"source", "psnr", "updated"}``; None without one."""
        aid = self._asset_id(asset)
        rows = self._query("SELECT source, psnr, updated FROM codes WHERE asset_id = ? AND model_id = ?",
                           (aid, model_id))
        return {"source": rows[0][0], "psnr": rows[0][1], "updated": rows[0][2]} if rows else None

    def inversion_psnrs(self, model_id: str, limit: int = 50) -> list[float]:
        """PSNRs of the assets that got codes of ``model_id`` by inversion, most recent first."""
        rows = self._query(
            "SELECT psnr FROM codes WHERE model_id = ? AND source = 'inversion' AND psnr IS NOT NULL "
            "ORDER BY updated DESC LIMIT ?", (model_id, int(limit)))
        return [float(r[0]) for r in rows]

    def count(self, table: str = "assets") -> int:
        if table not in ("assets", "codes", "tags", "neighbours", "models", "reviews", "appearance"):
            raise ValueError(table)
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    # -- neighbours ---------------------------------------------------------------------------

    def set_neighbours(
        self, model_id: str, space: str, neighbours: Mapping[int, list[tuple[int, float]]]
    ) -> None:
        """Replace stored suggestions: ``{asset_id: [(neighbour_id, distance), ...]}`` in rank order."""
        if space not in SPACES:
            raise LibraryError(f"space must be one of {SPACES}, got {space!r}")
        # One transaction; rows go to SQLite in batches (one executemany per NEIGHBOUR_BATCH assets), not per asset.
        items = list(neighbours.items())
        with self.transaction() as db:
            for s in range(0, len(items), NEIGHBOUR_BATCH):
                chunk = items[s:s + NEIGHBOUR_BATCH]
                db.executemany("DELETE FROM neighbours WHERE asset_id = ? AND model_id = ? AND space = ?",
                               [(int(aid), model_id, space) for aid, _ in chunk])
                db.executemany(
                    "INSERT INTO neighbours(asset_id, model_id, space, rank, neighbour_id, distance) VALUES (?,?,?,?,?,?)",
                    [(int(aid), model_id, space, r, int(n), float(d)) for aid, lst in chunk
                     for r, (n, d) in enumerate(lst)],
                )

    def neighbours_of(self, asset: int | str, model_id: str, space: str = "both") -> list[dict[str, Any]]:
        """Stored suggestions for an asset, best first: ``[{"name", "asset_id", "distance", "rank"}]``."""
        aid = self._asset_id(asset)
        rows = self._query(
            "SELECT n.rank, n.neighbour_id, a.name, n.distance FROM neighbours n JOIN assets a ON a.id = n.neighbour_id "
            "WHERE n.asset_id = ? AND n.model_id = ? AND n.space = ? ORDER BY n.rank",
            (aid, model_id, space),
        )
        return [dict(rank=r[0], asset_id=r[1], name=r[2], distance=r[3]) for r in rows]

    def size_report(self) -> dict[str, Any]:
        """How many bytes the catalogue takes and what in: ``{"db_bytes", "file_bytes", "wal_bytes", "assets",
        "bytes_per_asset", "tables": {table: bytes}, "parts": {part: bytes}, "parts_per_asset": {...}}``.

        ``tables``: pages per table and its indexes (SQLite's ``dbstat`` where the build has it, else ``{}``);
        ``parts`` (always): thumbnails and codes as the sum of their blob lengths, neighbour and tag rows as their
        table's share of the pages (or 32 / 40 bytes a row without ``dbstat``), and the appearance features' pages
        where stored. Reads only (0.65 s on a 1 GB catalogue of 100,000 assets)."""
        file_bytes = self.path.stat().st_size if self.path.is_file() else 0
        wal = self.path.with_name(self.path.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.is_file() else 0
        assets = self.count("assets")
        tables: dict[str, int] = {}
        try:
            for name, size in self._query("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                tables[name] = int(size or 0)
        except sqlite3.OperationalError:  # a SQLite built without the dbstat table
            tables = {}
        index_of = {r[0]: r[1] for r in self._query("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")}
        per_table: dict[str, int] = {}
        for name, size in tables.items():
            per_table[index_of.get(name, name)] = per_table.get(index_of.get(name, name), 0) + size
        thumbs = int(self._query("SELECT COALESCE(SUM(length(thumbnail)), 0) FROM assets")[0][0])
        codes = int(self._query("SELECT COALESCE(SUM(length(shape) + length(texture)), 0) FROM codes")[0][0])
        n_nb, n_tags = self.count("neighbours"), self.count("tags")
        parts = {"thumbnails": thumbs, "codes": codes,
                 "neighbours": per_table.get("neighbours", 32 * n_nb), "tags": per_table.get("tags", 40 * n_tags)}
        if per_table.get("appearance", 0) > 8192:  # more than the empty table's pages
            parts["appearance"] = per_table["appearance"]
        # The database's own size as this connection sees it (committed pages still in the WAL included).
        db_bytes = int(self._query("PRAGMA page_count")[0][0]) * int(self._query("PRAGMA page_size")[0][0])
        return {
            "db_bytes": db_bytes, "file_bytes": file_bytes, "wal_bytes": wal_bytes, "assets": assets,
            "bytes_per_asset": round(db_bytes / assets, 1) if assets else None,
            "neighbour_rows": n_nb, "tag_rows": n_tags, "tables": per_table, "parts": parts,
            "parts_per_asset": {k: round(v / assets, 1) for k, v in parts.items()} if assets else {},
        }

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check plus foreign keys."""
        ok = self._query("PRAGMA integrity_check")[0][0] == "ok"
        return ok and not self._query("PRAGMA foreign_key_check")


def import_run(
    catalogue: Catalogue,
    run: Any,
    thumbnails: Mapping[str, bytes] | None = None,
    source: str = "training",
    activate: bool = True,
) -> CodeTable:
    """Fill the catalogue from a trained run: assets, their training codes and the artists' tags.

    ``run`` is a :class:`backend.training.run.TrainedRun` (fields ``model_id``, ``preset``, ``names``,
    ``shape_codes [N, D]``, ``texture_codes [N, D]``, ``assets``). One transaction: all or nothing.
    ``activate=False`` stores the codes without making the model the active one (a retrain that
    switches later). ``thumbnails`` (PNG bytes by asset name) default to those stored in the run's folder
    (:mod:`backend.library.run_thumbnails`).
    """
    names = list(run.names)
    if not names:
        raise LibraryError(f"run {getattr(run, 'run_dir', '')} has no assets to import")
    infos = {a.name: a for a in run.assets}
    if not thumbnails:  # the captured views a run carries (the starter model's thumbnails.npz), if any
        thumbnails = read_thumbnails(getattr(run, "run_dir", None))
    with catalogue.transaction():
        catalogue.register_model(run.model_id, preset=getattr(run, "preset", ""), active=activate)
        ids = {}
        for name in names:
            info = infos.get(name) or AssetInfo(name=name)
            ids[name] = catalogue.upsert_asset(info, thumbnails.get(name))
            if info.tags:
                catalogue.add_artist_tags(ids[name], info.tags)
        catalogue.set_codes(
            run.model_id,
            {ids[n]: (run.shape_codes[i], run.texture_codes[i], None) for i, n in enumerate(names)},
            source=source,
        )
    return catalogue.codes(run.model_id)
