"""Whole-library writes in bounded batches (issue 20, studio scale): every asset's stored neighbours and predicted
tags, computed and written a batch of assets at a time inside one transaction (all or nothing, as before), so the
Python-side memory is one batch's, not the library's.

``asset2vec index`` stores the same rows with :meth:`SimilarityIndex.all_neighbours` + ``set_neighbours`` and
``predict_table`` + ``set_predicted_tags``; these helpers give the same rows at 100,000 assets without holding a
dict (or a list of dicts) of every asset at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .catalogue import NEIGHBOUR_BATCH, Catalogue, CodeTable
from .similarity import SimilarityIndex

#: Assets per batch of tag predictions.
PREDICT_BATCH = 5000


def store_neighbours(cat: Catalogue, model_id: str, space: str, index: SimilarityIndex, k: int = 10,
                     exclude_family: bool = False, batch: int = NEIGHBOUR_BATCH,
                     progress: Callable[[int, int], None] | None = None) -> int:
    """Replace the stored ``space`` suggestions of every asset of ``index`` (what
    ``cat.set_neighbours(model_id, space, index.all_neighbours(k, exclude_family))`` stores), ``batch`` assets at a
    time in one transaction. Returns the number of assets written."""
    t = index.table
    n = len(t)
    with cat.transaction():
        for s in range(0, n, batch):
            rows = np.arange(s, min(s + batch, n))
            nb, dist = index.neighbour_arrays(k, exclude_family, rows=rows)
            chunk: dict[int, list[tuple[int, float]]] = {}
            for j, r in enumerate(rows):
                ok = nb[j] >= 0
                chunk[int(t.ids[r])] = [(int(t.ids[c]), float(d)) for c, d in zip(nb[j][ok], dist[j][ok], strict=True)]
            cat.set_neighbours(model_id, space, chunk)
            if progress is not None:
                progress(int(rows[-1]) + 1, n)
    return n


def store_predicted_tags(cat: Catalogue, model: Any, table: CodeTable, batch: int = PREDICT_BATCH,
                         progress: Callable[[int, int], None] | None = None) -> int:
    """Predict ``model``'s tags (a :class:`backend.library.tags.TagModel`) for every asset of ``table`` and store
    them (``review.predict_table`` + ``set_predicted_tags``), ``batch`` assets at a time in one transaction.
    Returns the number of assets predicted (those a descriptor model has inputs for)."""
    from .review import predict_table

    done = 0
    with cat.transaction():
        for s in range(0, len(table), batch):
            part, probs = predict_table(cat, model, table.subset(np.arange(s, min(s + batch, len(table)))))
            if len(part):
                cat.set_predicted_tags(model.model_id, {int(a): p for a, p in zip(part.ids, probs, strict=True)})
            done += len(part)
            if progress is not None:
                progress(min(s + batch, len(table)), len(table))
    return done
