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

The schema version is ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files in place.
"""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shared.bundle import AssetInfo

from .errors import LibraryError

CODE_SOURCES = ("inversion", "training", "encoder")
TAG_SOURCES = ("artist", "predicted")
SPACES = ("shape", "texture", "both")

#: Schema migrations: entry ``i`` upgrades ``user_version`` ``i`` to ``i + 1``. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE assets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        source_blend TEXT NOT NULL DEFAULT '',
        asset_name TEXT NOT NULL DEFAULT '',
        content_hash TEXT NOT NULL DEFAULT '',
        family TEXT NOT NULL DEFAULT '',
        parameters TEXT NOT NULL DEFAULT '{}',
        category TEXT NOT NULL DEFAULT '',
        size_x REAL NOT NULL DEFAULT 0, size_y REAL NOT NULL DEFAULT 0, size_z REAL NOT NULL DEFAULT 0,
        thumbnail BLOB,
        updated TEXT NOT NULL
    );
    CREATE TABLE models (
        model_id TEXT PRIMARY KEY,
        preset TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
    );
    CREATE TABLE codes (
        asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL REFERENCES models(model_id) ON DELETE CASCADE,
        shape BLOB NOT NULL,
        texture BLOB NOT NULL,
        psnr REAL,
        source TEXT NOT NULL CHECK (source IN ('inversion', 'training', 'encoder')),
        updated TEXT NOT NULL,
        PRIMARY KEY (asset_id, model_id)
    );
    CREATE TABLE tags (
        asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('artist', 'predicted')),
        probability REAL,
        model_id TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (asset_id, tag, source, model_id)
    );
    CREATE INDEX tags_by_tag ON tags(tag);
    CREATE TABLE neighbours (
        asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        space TEXT NOT NULL CHECK (space IN ('shape', 'texture', 'both')),
        rank INTEGER NOT NULL,
        neighbour_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
        distance REAL NOT NULL,
        PRIMARY KEY (asset_id, model_id, space, rank)
    );
    """,
    # 2: the tag review queue's answers (kept apart from the artist rows that re-embedding replaces),
    # and the history of active models (what "restore the previous model" goes back to).
    """
    CREATE TABLE reviews (
        asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
        answered TEXT NOT NULL,
        PRIMARY KEY (asset_id, tag)
    );
    CREATE TABLE activations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        model_id TEXT NOT NULL,
        at TEXT NOT NULL
    );
    ALTER TABLE models ADD COLUMN info TEXT NOT NULL DEFAULT '{}';
    """,
    # 3: where an artist tag came from: '' (Blender: replaced when the asset is embedded again) or
    # 'import' (a tag list: kept, since Blender never had it).
    """
    ALTER TABLE tags ADD COLUMN origin TEXT NOT NULL DEFAULT '';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (for running inside an open transaction)."""
    out, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out


@dataclass
class CodeTable:
    """All codes of one model, row-aligned: ``shape [N, D]``, ``texture [N, D]``, ``size [N, 3]`` (metres)."""

    model_id: str
    ids: np.ndarray  # [N] int64 asset ids
    names: list[str]
    shape: np.ndarray  # [N, D] float32
    texture: np.ndarray  # [N, D] float32
    size: np.ndarray  # [N, 3] float32
    families: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    psnr: np.ndarray | None = None  # [N] float32, NaN where unknown

    def __len__(self) -> int:
        return len(self.names)

    def index_of(self, name: str) -> int:
        """Row of asset ``name``; unknown names raise :class:`LibraryError` with close matches."""
        try:
            return self.names.index(name)
        except ValueError:
            raise LibraryError(_unknown_asset_message(name, self.names)) from None

    def subset(self, rows: np.ndarray | list[int]) -> CodeTable:
        """The table restricted to ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return CodeTable(
            model_id=self.model_id,
            ids=self.ids[rows],
            names=[self.names[i] for i in rows],
            shape=self.shape[rows],
            texture=self.texture[rows],
            size=self.size[rows],
            families=[self.families[i] for i in rows] if self.families else [],
            categories=[self.categories[i] for i in rows] if self.categories else [],
            psnr=None if self.psnr is None else self.psnr[rows],
        )


@dataclass
class AssetRow:
    """One asset as stored in the catalogue."""

    id: int
    name: str
    source_blend: str
    asset_name: str
    content_hash: str
    family: str
    parameters: dict[str, Any]
    category: str
    size: tuple[float, float, float]
    has_thumbnail: bool


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _blob(vec: Any, what: str) -> bytes:
    arr = np.asarray(vec, dtype="<f4").reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise LibraryError(f"{what} must be a non-empty vector of finite numbers")
    return arr.tobytes()


def _unknown_asset_message(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"no asset named {name!r} in the catalogue{hint}"


class Catalogue:
    """The asset catalogue in one SQLite file. Safe to share between threads (one connection + lock).

    ``expect_model``: the model id the caller is about to query; if the file already holds codes
    but none of that model, :class:`LibraryError` is raised instead of silently mixing spaces.
    """

    def __init__(self, path: str | os.PathLike[str], expect_model: str | None = None, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise LibraryError(f"{self.path}: no catalogue here; embed or import a library first")
        if self.path.exists() and self.path.is_dir():
            raise LibraryError(f"{self.path} is a folder; give the path of a catalogue file (e.g. catalogue.sqlite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so batches are explicit transactions.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA foreign_keys = ON")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # NORMAL is crash-safe in WAL mode (a kill never corrupts; only an OS crash may lose the last commit).
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise LibraryError(f"{self.path}: not a readable Asset2Vec catalogue ({e})") from None
        if mode.lower() != "wal":
            raise LibraryError(f"{self.path}: cannot switch the catalogue to WAL mode (got {mode!r}); is it read-only?")
        if expect_model is not None:
            self.check_model(expect_model)

    # -- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing transaction; nested uses join the outermost one."""
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LibraryError(
                f"{self.path}: catalogue schema version {version} is newer than this Asset2Vec ({SCHEMA_VERSION}); "
                "update Asset2Vec"
            )
        for v in range(version, SCHEMA_VERSION):
            # The whole migration + version bump is one transaction. The version is read again once
            # the write lock is held: another process opening the same new catalogue may have
            # applied this step in between (executescript would commit first, so statements run
            # one by one).
            try:
                self._db.execute("BEGIN IMMEDIATE")
                current = self._db.execute("PRAGMA user_version").fetchone()[0]
                if current > v:
                    self._db.execute("COMMIT")
                    continue
                for statement in _statements(MIGRATIONS[v]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {v + 1}")
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

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
                (model_id, preset, _now()),
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
            db.execute("INSERT INTO activations(model_id, at) VALUES (?, ?)", (model_id, _now()))

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
                 info.category, *size, thumbnail, _now()),
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
            raise LibraryError(_unknown_asset_message(name, self.asset_names()))
        r = rows[0]
        return AssetRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], (r[8], r[9], r[10]), bool(r[11]))

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
            rows.append((int(aid), model_id, s, t, None if psnr is None else float(psnr), source, _now()))
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

    def codes(self, model_id: str) -> CodeTable:
        """Every code of ``model_id`` (ordered by asset name). Raises if there are none."""
        rows = self._query(
            "SELECT a.id, a.name, c.shape, c.texture, a.size_x, a.size_y, a.size_z, a.family, a.category, c.psnr "
            "FROM codes c JOIN assets a ON a.id = c.asset_id WHERE c.model_id = ? ORDER BY a.name",
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
        if table not in ("assets", "codes", "tags", "neighbours", "models", "reviews"):
            raise ValueError(table)
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    # -- tags ---------------------------------------------------------------------------------

    def add_artist_tags(self, asset: int | str, tags: Iterable[str]) -> None:
        """Add the artist's tags (existing ones are kept; nothing is removed)."""
        aid = self._asset_id(asset)
        clean = sorted({t.strip() for t in tags if t and t.strip()})
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO tags(asset_id, tag, source, probability, model_id) VALUES (?, ?, 'artist', NULL, '')",
                [(aid, t) for t in clean],
            )

    def set_artist_tags(self, asset: int | str, tags: Iterable[str]) -> None:
        """Replace the artist's tags of ``asset`` with ``tags`` (a re-embedded asset's current tags).

        Only artist rows of that asset that came from Blender change, so a tag the artist deleted in
        Blender goes away; predicted rows are untouched. Tags from an imported tag list stay, and so do
        tags the artist accepted in the review queue (the answers live in ``reviews``, so they are
        never lost when Blender sends the asset again).
        """
        aid = self._asset_id(asset)
        clean = sorted({t.strip() for t in tags if t and t.strip()})
        with self.transaction() as db:
            db.execute("DELETE FROM tags WHERE asset_id = ? AND source = 'artist' AND origin != 'import'", (aid,))
            db.executemany(
                "INSERT OR IGNORE INTO tags(asset_id, tag, source, probability, model_id) VALUES (?, ?, 'artist', NULL, '')",
                [(aid, t) for t in clean],
            )
            db.execute(
                "INSERT OR IGNORE INTO tags(asset_id, tag, source, probability, model_id) "
                "SELECT asset_id, tag, 'artist', NULL, '' FROM reviews WHERE asset_id = ? AND accepted = 1",
                (aid,),
            )

    def import_artist_tags(self, asset: int | str, tags: Iterable[str]) -> None:
        """Add artist tags from a tag list (kept when the asset is embedded again from Blender)."""
        aid = self._asset_id(asset)
        clean = sorted({t.strip() for t in tags if t and t.strip()})
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO tags(asset_id, tag, source, probability, model_id, origin) VALUES (?, ?, 'artist', NULL, "
                "'', 'import') ON CONFLICT(asset_id, tag, source, model_id) DO UPDATE SET origin = 'import'",
                [(aid, t) for t in clean],
            )

    def set_predicted_tags(self, model_id: str, predictions: Mapping[int | str, Mapping[str, float]]) -> None:
        """Replace model ``model_id``'s predictions for the given assets: ``{asset: {tag: probability}}``.

        Artist tags are separate rows and are never touched; a prediction equal to an artist tag is
        still stored (it is evidence the classifier agrees) but never shown as an addition.
        """
        rows, aids = [], []
        for asset, probs in predictions.items():
            aid = self._asset_id(asset)
            aids.append(aid)
            for tag, p in probs.items():
                if not 0.0 <= float(p) <= 1.0:
                    raise LibraryError(f"probability of tag {tag!r} must be in [0, 1], got {p}")
                rows.append((aid, tag, float(p), model_id))
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM tags WHERE asset_id = ? AND source = 'predicted' AND model_id = ?",
                [(a, model_id) for a in aids],
            )
            db.executemany(
                "INSERT INTO tags(asset_id, tag, source, probability, model_id) VALUES (?, ?, 'predicted', ?, ?)", rows
            )

    def revert_predicted_tag(self, asset: int | str, tag: str, model_id: str | None = None) -> int:
        """Remove a predicted tag (all models unless ``model_id``); returns rows removed. Artist tags stay."""
        aid = self._asset_id(asset)
        sql = "DELETE FROM tags WHERE asset_id = ? AND tag = ? AND source = 'predicted'"
        params: tuple = (aid, tag)
        if model_id is not None:
            sql, params = sql + " AND model_id = ?", (*params, model_id)
        with self.transaction() as db:
            return db.execute(sql, params).rowcount

    def tags_of(self, asset: int | str, model_id: str | None = None, threshold: float = 0.5) -> dict[str, Any]:
        """``{"artist": [tags], "predicted": {tag: p >= threshold, not an artist tag}, "probabilities": {all}}``."""
        aid = self._asset_id(asset)
        artist = [r[0] for r in self._query(
            "SELECT tag FROM tags WHERE asset_id = ? AND source = 'artist' ORDER BY tag", (aid,))]
        sql = "SELECT tag, probability FROM tags WHERE asset_id = ? AND source = 'predicted'"
        params: tuple = (aid,)
        if model_id is not None:
            sql, params = sql + " AND model_id = ?", (aid, model_id)
        probs = {t: float(p) for t, p in self._query(sql + " ORDER BY probability DESC", params)}
        proposed = {t: p for t, p in probs.items() if p >= threshold and t not in artist}
        return {"artist": artist, "predicted": proposed, "probabilities": probs}

    def artist_tag_sets(self, asset_ids: Iterable[int]) -> list[set[str] | None]:
        """Artist tags per asset id; ``None`` for assets the artists never tagged (unlabelled)."""
        by_id: dict[int, set[str]] = {}
        for aid, tag in self._query("SELECT asset_id, tag FROM tags WHERE source = 'artist'"):
            by_id.setdefault(aid, set()).add(tag)
        return [by_id.get(int(a)) for a in asset_ids]

    def artist_tags(self) -> dict[int, set[str]]:
        """Every tagged asset's artist tags: ``{asset_id: {tags}}`` (untagged assets are absent)."""
        by_id: dict[int, set[str]] = {}
        for aid, tag in self._query("SELECT asset_id, tag FROM tags WHERE source = 'artist'"):
            by_id.setdefault(int(aid), set()).add(tag)
        return by_id

    # -- tag review answers -------------------------------------------------------------------

    def record_review(self, asset: int | str, tag: str, accepted: bool) -> None:
        """Store the artist's answer to "does ``asset`` have ``tag``?" (a new answer replaces an older one).

        An accepted tag is also added as an artist tag (one transaction). A rejection never removes
        an artist tag: it only makes the asset a known negative for ``tag`` when training.
        """
        aid = self._asset_id(asset)
        tag = (tag or "").strip()
        if not tag:
            raise LibraryError("a reviewed tag must be a non-empty string")
        with self.transaction() as db:
            db.execute(
                "INSERT INTO reviews(asset_id, tag, accepted, answered) VALUES (?, ?, ?, ?) ON CONFLICT(asset_id, tag) "
                "DO UPDATE SET accepted = excluded.accepted, answered = excluded.answered",
                (aid, tag, int(bool(accepted)), _now()),
            )
            if accepted:
                db.execute(
                    "INSERT OR IGNORE INTO tags(asset_id, tag, source, probability, model_id) "
                    "VALUES (?, ?, 'artist', NULL, '')",
                    (aid, tag),
                )

    def reviews(self) -> list[dict[str, Any]]:
        """Every review answer, oldest first: ``[{"name", "asset_id", "tag", "accepted", "answered"}]``."""
        rows = self._query(
            "SELECT a.name, r.asset_id, r.tag, r.accepted, r.answered FROM reviews r JOIN assets a ON a.id = r.asset_id "
            "ORDER BY r.answered, a.name, r.tag"
        )
        return [dict(name=r[0], asset_id=r[1], tag=r[2], accepted=bool(r[3]), answered=r[4]) for r in rows]

    def review_answers(self, asset_ids: Iterable[int]) -> list[dict[str, bool]]:
        """Review answers per asset id, row-aligned: ``{tag: accepted}`` (empty when never asked)."""
        by_id: dict[int, dict[str, bool]] = {}
        for aid, tag, accepted in self._query("SELECT asset_id, tag, accepted FROM reviews"):
            by_id.setdefault(int(aid), {})[tag] = bool(accepted)
        return [dict(by_id.get(int(a), {})) for a in asset_ids]

    def rejected_tag_sets(self, asset_ids: Iterable[int]) -> list[set[str]]:
        """Tags the artist rejected in the review queue, per asset id (empty sets where none)."""
        return [{t for t, ok in answers.items() if not ok} for answers in self.review_answers(asset_ids)]

    def uncertain_predictions(self, model_id: str, limit: int = 10, exclude: Iterable[tuple[int, str]] = ()
                              ) -> list[dict[str, Any]]:
        """Predicted ``(asset, tag)`` pairs of ``model_id``, least sure first (probability closest to 0.5).

        Leaves out pairs the artist already answered, tags the asset already has as artist tags, and
        ``exclude`` (``(asset_id, tag)`` pairs, e.g. skipped in this session). Items: ``name``,
        ``asset_id``, ``tag``, ``probability``, ``source_file``, ``asset_name``.
        """
        skip = {(int(a), t) for a, t in exclude}
        rows = self._query(
            "SELECT a.name, t.asset_id, t.tag, t.probability, a.source_blend, a.asset_name FROM tags t "
            "JOIN assets a ON a.id = t.asset_id WHERE t.source = 'predicted' AND t.model_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.asset_id = t.asset_id AND r.tag = t.tag) "
            "AND NOT EXISTS (SELECT 1 FROM tags x WHERE x.asset_id = t.asset_id AND x.tag = t.tag "
            "AND x.source = 'artist') ORDER BY ABS(t.probability - 0.5), a.name, t.tag LIMIT ?",
            (model_id, max(0, int(limit)) + len(skip)),
        )
        out = [dict(name=r[0], asset_id=r[1], tag=r[2], probability=float(r[3]), source_file=r[4], asset_name=r[5])
               for r in rows if (r[1], r[2]) not in skip]
        return out[: max(0, int(limit))]

    def predicted_tag_names(self, model_id: str) -> set[str]:
        """The tags ``model_id``'s tag classifiers have predicted for at least one asset."""
        return {r[0] for r in self._query(
            "SELECT DISTINCT tag FROM tags WHERE source = 'predicted' AND model_id = ?", (model_id,))}

    def unpredicted_ids(self, model_id: str) -> list[int]:
        """Assets with a code of ``model_id`` but no tag prediction of that model yet."""
        return [int(r[0]) for r in self._query(
            "SELECT c.asset_id FROM codes c WHERE c.model_id = ? AND NOT EXISTS (SELECT 1 FROM tags t "
            "WHERE t.asset_id = c.asset_id AND t.source = 'predicted' AND t.model_id = c.model_id) ORDER BY c.asset_id",
            (model_id,),
        )]

    # -- neighbours ---------------------------------------------------------------------------

    def set_neighbours(
        self, model_id: str, space: str, neighbours: Mapping[int, list[tuple[int, float]]]
    ) -> None:
        """Replace stored suggestions: ``{asset_id: [(neighbour_id, distance), ...]}`` in rank order."""
        if space not in SPACES:
            raise LibraryError(f"space must be one of {SPACES}, got {space!r}")
        with self.transaction() as db:
            for aid, lst in neighbours.items():
                db.execute("DELETE FROM neighbours WHERE asset_id = ? AND model_id = ? AND space = ?",
                           (int(aid), model_id, space))
                db.executemany(
                    "INSERT INTO neighbours(asset_id, model_id, space, rank, neighbour_id, distance) VALUES (?,?,?,?,?,?)",
                    [(int(aid), model_id, space, r, int(n), float(d)) for r, (n, d) in enumerate(lst)],
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
    switches later).
    """
    names = list(run.names)
    if not names:
        raise LibraryError(f"run {getattr(run, 'run_dir', '')} has no assets to import")
    infos = {a.name: a for a in run.assets}
    thumbnails = thumbnails or {}
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
