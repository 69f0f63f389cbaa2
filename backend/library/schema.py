"""The catalogue's SQLite schema: its migrations and how an open file is brought up to date.

The schema version is ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files in place
(each step and its version bump in one transaction, safe when two processes open a new file at once).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import LibraryError

CODE_SOURCES = ("inversion", "training", "encoder")
TAG_SOURCES = ("artist", "predicted")

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
    # 4: one identity per asset (issue 19). The panel used to name an asset without its library root
    # (`seats.v2/Chair`) while bulk-tag and index named it with one (`props/seats.v2/Chair`): rows of one
    # asset (same content hash and asset name, one name a path suffix of the other, i.e. the same .blend
    # file stem) merge into the one with the longest (rooted) name, keeping every tag, review answer,
    # code (the kept row's code of a model wins) and the thumbnail. Neighbour lists of merged rows go
    # (rebuilt by the next index). Then an index to recognise an asset by content hash.
    """
    CREATE TEMP TABLE merge_map AS
        SELECT d.id AS dup, (SELECT k.id FROM assets k WHERE k.content_hash = d.content_hash
                             AND k.asset_name = d.asset_name AND length(k.name) > length(d.name)
                             AND substr(k.name, -length(d.name) - 1) = '/' || d.name
                             ORDER BY length(k.name) DESC, k.id LIMIT 1) AS keep
        FROM assets d WHERE d.content_hash != '' AND d.asset_name != '';
    DELETE FROM merge_map WHERE keep IS NULL;
    INSERT OR IGNORE INTO tags(asset_id, tag, source, probability, model_id, origin)
        SELECT m.keep, t.tag, t.source, t.probability, t.model_id, t.origin
        FROM tags t JOIN merge_map m ON t.asset_id = m.dup;
    UPDATE tags SET origin = 'import' WHERE source = 'artist' AND EXISTS (
        SELECT 1 FROM tags t JOIN merge_map m ON t.asset_id = m.dup
        WHERE m.keep = tags.asset_id AND t.tag = tags.tag AND t.source = 'artist' AND t.origin = 'import');
    INSERT INTO reviews(asset_id, tag, accepted, answered)
        SELECT m.keep, r.tag, r.accepted, r.answered FROM reviews r JOIN merge_map m ON r.asset_id = m.dup
        WHERE 1 ORDER BY r.answered
        ON CONFLICT(asset_id, tag) DO UPDATE SET accepted = excluded.accepted, answered = excluded.answered
        WHERE excluded.answered > reviews.answered;
    INSERT OR IGNORE INTO tags(asset_id, tag, source, probability, model_id, origin)
        SELECT asset_id, tag, 'artist', NULL, '', '' FROM reviews
        WHERE accepted = 1 AND asset_id IN (SELECT keep FROM merge_map);
    INSERT OR IGNORE INTO codes(asset_id, model_id, shape, texture, psnr, source, updated)
        SELECT m.keep, c.model_id, c.shape, c.texture, c.psnr, c.source, c.updated
        FROM codes c JOIN merge_map m ON c.asset_id = m.dup;
    UPDATE assets SET thumbnail = (SELECT d.thumbnail FROM assets d JOIN merge_map m ON d.id = m.dup
                                   WHERE m.keep = assets.id AND d.thumbnail IS NOT NULL LIMIT 1)
        WHERE thumbnail IS NULL AND id IN (SELECT keep FROM merge_map);
    DELETE FROM neighbours WHERE asset_id IN (SELECT dup FROM merge_map)
        OR neighbour_id IN (SELECT dup FROM merge_map);
    DELETE FROM tags WHERE asset_id IN (SELECT dup FROM merge_map);
    DELETE FROM reviews WHERE asset_id IN (SELECT dup FROM merge_map);
    DELETE FROM codes WHERE asset_id IN (SELECT dup FROM merge_map);
    DELETE FROM assets WHERE id IN (SELECT dup FROM merge_map);
    DROP TABLE merge_map;
    CREATE INDEX IF NOT EXISTS assets_by_hash ON assets(content_hash);
    """,
    # 5: each asset's pretrained appearance feature (issue 15's descriptor; :mod:`backend.features.library`), once
    # per feature key (backbone, input size, preprocessing, layers, view pooling), with the digest of the views
    # it was computed from. Independent of the decoder model: every model's tags and "both" space share it.
    """
    CREATE TABLE appearance (
        asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
        feature TEXT NOT NULL,
        vector BLOB NOT NULL,
        views_digest TEXT NOT NULL DEFAULT '',
        updated TEXT NOT NULL,
        PRIMARY KEY (asset_id, feature)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)



def statements(script: str) -> list[str]:
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


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Apply the missing migrations to ``db`` (the file at ``path``, for messages); refuse a newer schema."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LibraryError(
            f"{path}: catalogue schema version {version} is newer than this Asset2Vec ({SCHEMA_VERSION}); "
            "update Asset2Vec"
        )
    for v in range(version, SCHEMA_VERSION):
        # The whole migration + version bump is one transaction. The version is read again once
        # the write lock is held: another process opening the same new catalogue may have
        # applied this step in between (executescript would commit first, so statements run
        # one by one).
        try:
            db.execute("BEGIN IMMEDIATE")
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > v:
                db.execute("COMMIT")
                continue
            for statement in statements(MIGRATIONS[v]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {v + 1}")
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
