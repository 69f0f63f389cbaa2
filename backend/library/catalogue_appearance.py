"""The catalogue's per-asset appearance features (issue 15's descriptor; :mod:`backend.features.library`): one
float16 vector per asset and feature name, with the digest of the views it came from (schema v5 ``appearance``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .catalogue_tags import now_iso
from .errors import LibraryError


class AppearanceQueries:
    """Appearance vectors of the catalogue's assets (mixed into :class:`~backend.library.catalogue.Catalogue`)."""

    def set_appearance(self, feature: str, vectors: Mapping[int, tuple[Any, str]]) -> None:
        """Store ``{asset_id: (vector [D], views_digest)}`` of the appearance feature ``feature`` (as float16), in
        one transaction, replacing the assets' older vectors of that feature."""
        rows = []
        for aid, (vec, digest) in vectors.items():
            arr = np.asarray(vec, np.float32).reshape(-1)
            if arr.size == 0 or not np.all(np.isfinite(arr)):
                raise LibraryError(f"the appearance feature of asset {aid} must be a non-empty finite vector")
            rows.append((int(aid), feature, arr.astype("<f2").tobytes(), str(digest or ""), now_iso()))
        with self.transaction() as db:
            try:
                db.executemany(
                    "INSERT INTO appearance(asset_id, feature, vector, views_digest, updated) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(asset_id, feature) DO UPDATE SET vector=excluded.vector, "
                    "views_digest=excluded.views_digest, updated=excluded.updated", rows)
            except sqlite3.IntegrityError:
                raise LibraryError("set_appearance: some asset ids are not in the catalogue") from None

    def appearance(self, feature: str, asset_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of ``feature`` for ``asset_ids``: ``(vectors [M, D] float32, has [N] bool)``, the vectors
        of the assets that have one (``has``), in the order asked."""
        ids = [int(a) for a in asset_ids]
        found: dict[int, bytes] = {}
        for start in range(0, len(ids), 900):  # SQLite's parameter limit
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            found.update(self._query(f"SELECT asset_id, vector FROM appearance WHERE feature = ? "
                                     f"AND asset_id IN ({marks})", (feature, *chunk)))
        if found and len({len(v) for v in found.values()}) != 1:
            raise LibraryError(f"{self.path}: stored appearance features {feature!r} differ in size; "
                               "run asset2vec index again")
        has = np.array([a in found for a in ids], dtype=bool)
        if not has.any():
            return np.zeros((0, 0), np.float32), has
        return np.stack([np.frombuffer(found[a], dtype="<f2") for a in ids if a in found]).astype(np.float32), has

    def appearance_coverage(self, model_id: str, feature: str) -> tuple[int, int]:
        """``(assets with a code of model_id and a stored vector of feature, assets with a code of model_id)``."""
        row = self._query("SELECT COUNT(f.asset_id), COUNT(*) FROM codes c LEFT JOIN appearance f "
                          "ON f.asset_id = c.asset_id AND f.feature = ? WHERE c.model_id = ?", (feature, model_id))
        return int(row[0][0]), int(row[0][1])

    def appearance_digests(self, feature: str) -> dict[int, str]:
        """``{asset_id: views digest}`` of every stored vector of ``feature``."""
        return {int(a): str(d) for a, d in self._query("SELECT asset_id, views_digest FROM appearance "
                                                       "WHERE feature = ?", (feature,))}
