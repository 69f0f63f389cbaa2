"""How good are a set of per-asset features? Plain metric functions on arrays (no I/O besides view loading).

Used by ``bench/quality.py`` (codes vs baselines) and ``bench/library.py``. Every metric takes
features ``x [N, D]`` in asset order and labels for the same assets:

* :func:`cv_accuracy`: stratified k-fold accuracy of a (standardised) logistic regression.
* :func:`precision_at_k`: mean fraction of each asset's k nearest others (Euclidean) sharing its label.
* :func:`adapted_precision_at_k`: the same in a space adapted to the labels out of fold (LDA learnt without the query).
* :func:`oof_precision_at_k`: the same in any space learnt from labels (e.g. tags) out of fold.
* :func:`average_precision` / :func:`tag_map`: per-tag AP of out-of-fold linear scores, averaged.
* :func:`probe_attributes`: disentanglement probes (accuracy of each ground-truth attribute from a feature set).
* :func:`blocks`: concatenation of normalised feature blocks (codes halves, log size) for retrieval.
* :func:`view_arrays` / :func:`pca_features`: the raw-pixel and silhouette baselines.
* :func:`score`: all of the above for one feature set (with visual classes: accuracy and precision@10 on them).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FOLDS = 5


def _logistic(standardise: bool, c: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(max_iter=5000, C=c)
    return make_pipeline(StandardScaler(), clf) if standardise else clf


def _folds(y: np.ndarray, folds: int) -> int:
    """At most ``folds``, at least 2, and no more than the smallest class has members."""
    _, counts = np.unique(y, return_counts=True)
    return int(max(2, min(folds, counts.min())))


def usable_labels(labels: Sequence[Any], min_count: int = 2) -> np.ndarray:
    """Boolean mask ``[N]`` of assets whose label is set and shared by at least ``min_count`` assets."""
    y = np.array(["" if v is None else str(v) for v in labels])
    values, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, values[counts >= min_count]) & (y != "")
    return keep


def chance(y: Sequence[Any]) -> float:
    """Majority-class rate: the accuracy of always answering the most common label."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return float(counts.max() / counts.sum())


def cv_accuracy(x: np.ndarray, y: Sequence[Any], folds: int = FOLDS, seed: int = 0, standardise: bool = True) -> float:
    """Stratified ``folds``-fold CV accuracy of logistic regression on ``x [N, D]`` (standardised per fold)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise ValueError("cv_accuracy needs at least two classes")
    with threadpool_limits(1):  # tiny problems: BLAS threads only add contention on a shared CPU
        scores = cross_val_score(_logistic(standardise), np.asarray(x, np.float64), y,
                                 cv=StratifiedKFold(_folds(y, folds), shuffle=True, random_state=seed))
    return float(scores.mean())


def precision_at_k(x: np.ndarray, y: Sequence[Any], k: int = 10) -> float:
    """Mean over assets of the fraction of its ``k`` nearest other assets (Euclidean on ``x [N, D]``) sharing its label.

    With fewer than ``k`` other assets, all others are used.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    n = len(x)
    k = min(k, n - 1)
    nn = _nearest(x, k)  # an asset is not its own neighbour
    return float((y[nn] == y[:, None]).mean())


def _nearest(z: np.ndarray, k: int) -> np.ndarray:
    """Indices ``[N, k]`` of each row's ``k`` nearest other rows of ``z [N, D]`` (Euclidean, ties by position)."""
    sq = (z * z).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * z @ z.T
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def adapted_precision_at_k(x: np.ndarray, y: Sequence[Any], k: int = 10, folds: int = FOLDS, seed: int = 0) -> float:
    """Precision@k after adapting the metric to the labels, out of fold: for each fold, a shrinkage LDA learnt on the
    other folds (standardised ``x [N, D]``) projects every asset, and the fold's assets are the queries (their
    neighbours are all other assets). This is what "similar" could be if the library's own labels shaped it;
    no query's label is used to build the space it is scored in.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    k = min(k, len(x) - 1)
    hits = np.zeros(len(x))
    for tr, te in StratifiedKFold(_folds(y, folds), shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[tr])
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(scaler.transform(x[tr]), y[tr])
        nn = _nearest(lda.transform(scaler.transform(x)), k)
        hits[te] = (y[nn[te]] == y[te, None]).mean(1)
    return float(hits.mean())


def oof_precision_at_k(embed: Callable[[np.ndarray], np.ndarray], labels: Sequence[Any], k: int = 10,
                       folds: int = FOLDS, seed: int = 0) -> float:
    """Precision@k of a space learnt from labels out of fold: for each fold, ``embed(train_rows)`` returns every
    asset's embedding ``[N, D]`` learnt with only ``train_rows``' labels (e.g. a metric fit on the library's tags),
    and the fold's assets are the queries (their neighbours are all other assets, None-labelled ones excluded from
    the search). No query's labels shape the space it is scored in.
    """
    from sklearn.model_selection import KFold

    y = np.array(["" if v is None else str(v) for v in labels], dtype=object)
    rows = np.flatnonzero(y != "")
    k = min(k, len(rows) - 1)
    hits = np.zeros(len(y))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(y))):
        z = np.asarray(embed(tr), np.float64)[rows]
        nn = rows[_nearest(z, k)]  # [len(rows), k] in asset indices
        where = {r: i for i, r in enumerate(rows)}
        for t in te:
            if t in where:
                hits[t] = (y[nn[where[t]]] == y[t]).mean()
    return float(hits[rows].mean())


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of ranking by ``scores [N]`` (high first) against boolean ``positive [N]``: mean precision at each hit.

    Ties are broken by position (stable), so the value is deterministic.
    """
    positive = np.asarray(positive, bool)
    if not positive.any():
        raise ValueError("average precision needs at least one positive")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = positive[order]
    ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the positives
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def tag_map(
    x: np.ndarray, tags: Sequence[Sequence[str]], min_positives: int = 3, folds: int = FOLDS, seed: int = 0,
    standardise: bool = True,
) -> dict[str, Any]:
    """Tag mean average precision: per tag with ``>= min_positives`` positives (and as many negatives), the AP of
    out-of-fold logistic-regression scores on ``x [N, D]``, averaged over tags.

    Returns ``{"map", "tags", "per_tag", "chance_map"}``; ``chance_map`` is the mean positive rate (the AP of a
    random ranking in expectation).
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, np.float64)
    vocab = sorted({t for ts in tags for t in ts})
    per_tag: dict[str, float] = {}
    rates = []
    with threadpool_limits(1):
        for tag in vocab:
            y = np.array([tag in ts for ts in tags])
            if y.sum() < min_positives or (~y).sum() < min_positives:
                continue
            cv = StratifiedKFold(_folds(y, folds), shuffle=True, random_state=seed)
            s = cross_val_predict(_logistic(standardise), x, y, cv=cv, method="decision_function")
            per_tag[tag] = average_precision(s, y)
            rates.append(y.mean())
    if not per_tag:
        return {"map": float("nan"), "tags": 0, "per_tag": {}, "chance_map": float("nan")}
    return {"map": float(np.mean(list(per_tag.values()))), "tags": len(per_tag), "per_tag": per_tag,
            "chance_map": float(np.mean(rates))}


def probe_attributes(features: dict[str, np.ndarray], attributes: dict[str, Sequence[Any]]) -> dict[str, Any]:
    """Disentanglement probes: CV accuracy of each attribute (labels ``[N]``, None = not applicable) from each
    feature set ``[N, D]``; ``{attribute: {"n", "classes", "chance", <feature name>: accuracy}}``.

    Attributes with fewer than two classes of two assets are skipped.
    """
    out: dict[str, Any] = {}
    for attr, labels in attributes.items():
        keep = usable_labels(labels)
        y = np.array([str(v) for v in labels])[keep]
        if len(np.unique(y)) < 2:
            continue
        row: dict[str, Any] = {"n": int(keep.sum()), "classes": int(len(np.unique(y))), "chance": chance(y)}
        for name, x in features.items():
            row[name] = cv_accuracy(np.asarray(x)[keep], y)
        out[attr] = row
    return out


def standardise(x: np.ndarray) -> np.ndarray:
    """Per-dimension z-scores of ``x [N, D]`` (constant dimensions become 0)."""
    x = np.asarray(x, np.float64)
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 1e-12, sd, 1.0)


def whiten(x: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """PCA-whitened ``x [N, D]``: decorrelated directions, each of unit variance (``eps`` relative floor on the
    eigenvalues so near-empty directions are not blown up into noise)."""
    x = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0)
    cov = x.T @ x / max(len(x) - 1, 1)
    w, v = np.linalg.eigh(cov)
    w = np.maximum(w, eps * w.max())
    return x @ v / np.sqrt(w)


def log_size(size: np.ndarray) -> np.ndarray:
    """log of bounding-box sizes ``[N, 3]`` in metres; a missing size (0) counts as 1 cm."""
    return np.log(np.maximum(np.asarray(size, np.float64), 0.01))


def blocks(parts: Sequence[np.ndarray], weights: Sequence[float] | None = None, per_dim: bool = True) -> np.ndarray:
    """Retrieval features: each block ``[N, D_i]`` centred and scaled to unit RMS norm (``per_dim``: z-scored per
    dimension first, so no single dimension dominates), times its weight, concatenated ``[N, sum D_i]``.

    Unit-norm blocks make a 3-number size block weigh as much as a 64-number code block at weight 1.
    """
    weights = weights or [1.0] * len(parts)
    out = []
    for p, w in zip(parts, weights, strict=True):
        p = standardise(p) if per_dim else np.asarray(p, np.float64) - np.asarray(p, np.float64).mean(0)
        rms = float(np.sqrt((p ** 2).sum(1).mean()))
        out.append(p * (w / rms if rms > 1e-12 else 0.0))
    return np.concatenate(out, axis=1)


def view_arrays(bundles: Sequence[Any], size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Raw views of ``shared.bundle.Bundle`` s: colour on white ``[N, V*size*size*3]`` and alpha ``[N, V*size*size]``
    (float32, box-downsized to ``size`` px), rows in ``bundles`` order."""
    from PIL import Image

    colour, alpha = [], []
    for b in bundles:
        cs, al = [], []
        for i in range(len(b.frames)):
            im = Image.open(io.BytesIO(b.image_bytes(i))).convert("RGBA").resize((size, size), Image.Resampling.BOX)
            a = np.asarray(im, np.float32) / 255.0
            cs.append(a[..., :3] * a[..., 3:] + (1 - a[..., 3:]))
            al.append(a[..., 3])
        colour.append(np.concatenate([c.reshape(-1) for c in cs]))
        alpha.append(np.concatenate([c.reshape(-1) for c in al]))
    return np.stack(colour), np.stack(alpha)


def pca_features(x: np.ndarray, n_components: int = 64, seed: int = 0) -> np.ndarray:
    """PCA of ``x [N, F]`` to ``min(n_components, N - 1)`` components ``[N, K]`` (the pixel baselines)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=min(n_components, len(x) - 1), random_state=seed).fit_transform(x)


def score(x: np.ndarray, categories: Sequence[Any], tags: Sequence[Sequence[str]] | None = None,
          standardise_linear: bool = True, visual: Sequence[str | None] | None = None,
          adapted: bool = True) -> dict[str, Any]:
    """The benchmark's scores for one feature set ``x [N, D]``: category accuracy, precision@10 (and @1, and
    @10 in a label-adapted space unless ``adapted`` is False), with ``tags`` tag mAP, and with ``visual`` (a
    visual class per asset, None = unclassed) visual-class accuracy and precision@10 on the classed assets only
    (their neighbours are searched among the classed assets)."""
    out: dict[str, Any] = {
        "category_accuracy": cv_accuracy(x, categories, standardise=standardise_linear),
        "precision_at_10": precision_at_k(x, categories, 10),
        "precision_at_1": precision_at_k(x, categories, 1),
    }
    if adapted:
        out["precision_at_10_adapted"] = adapted_precision_at_k(x, categories, 10)
    if tags is not None:
        t = tag_map(x, tags, standardise=standardise_linear)
        out["tag_map"], out["tags_scored"] = t["map"], t["tags"]
    if visual is not None:
        keep = np.array([v is not None for v in visual])
        v = np.array([str(c) for c in visual], dtype=object)[keep]
        if len(set(v)) >= 2:
            xv = np.asarray(x)[keep]
            out["visual_accuracy"] = cv_accuracy(xv, v, standardise=standardise_linear)
            out["visual_precision_at_10"] = precision_at_k(xv, v, 10)
            out["visual_assets"], out["visual_classes"] = int(keep.sum()), int(len(set(v)))
    return out
