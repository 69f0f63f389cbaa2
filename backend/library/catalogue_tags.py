"""The catalogue's tag queries: artist tags, predicted tags and the artists' review answers.

A part of :class:`backend.library.catalogue.Catalogue` (its base class), kept apart because tags
are the largest group of queries. It uses the catalogue's ``_query``, ``transaction`` and
``_asset_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import LibraryError


def now_iso() -> str:
    """The time of a write, as stored (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class TagQueries:
    """Tags and review answers of the catalogue's assets (mixed into :class:`~backend.library.catalogue.Catalogue`)."""

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

    def set_tag_predictions(self, model_id: str, tag: str, predictions: Mapping[int, float]) -> None:
        """Replace model ``model_id``'s predictions of one ``tag`` with ``{asset_id: probability}`` (every asset's
        prediction of that tag goes first; other tags' rows stay): a review answer retrains only its tag."""
        rows = []
        for aid, p in predictions.items():
            if not 0.0 <= float(p) <= 1.0:
                raise LibraryError(f"probability of tag {tag!r} must be in [0, 1], got {p}")
            rows.append((int(aid), tag, float(p), model_id))
        with self.transaction() as db:
            db.execute("DELETE FROM tags WHERE tag = ? AND source = 'predicted' AND model_id = ?", (tag, model_id))
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

    def artist_tags(self, asset_ids: Iterable[int] | None = None) -> dict[int, set[str]]:
        """The artist tags of every tagged asset, or of ``asset_ids`` only: ``{asset_id: {tags}}`` (untagged
        assets are absent). Ask for the ids you need: a neighbour list must not read the whole library's tags."""
        by_id: dict[int, set[str]] = {}
        if asset_ids is None:
            rows = self._query("SELECT asset_id, tag FROM tags WHERE source = 'artist'")
        else:
            ids = sorted({int(a) for a in asset_ids})
            if not ids:
                return by_id
            marks = ",".join("?" * len(ids))
            rows = self._query(f"SELECT asset_id, tag FROM tags WHERE source = 'artist' AND asset_id IN ({marks})",
                               ids)
        for aid, tag in rows:
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
                (aid, tag, int(bool(accepted)), now_iso()),
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
