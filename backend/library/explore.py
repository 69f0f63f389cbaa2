"""Exploring the code space: PCA, a 2D map with clusters, sparse regions, near-duplicates, weak spots.

All analyses take plain arrays or a :class:`CodeTable` and return JSON-ready dicts; the ``plot_*``
functions write PNGs with matplotlib's Agg backend (no display needed). Distances are measured in
:mod:`backend.library.similarity`'s standardised feature space, so "near" means the same thing
everywhere.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402

from .catalogue import CodeTable  # noqa: E402
from .errors import LibraryError, read_text_file  # noqa: E402
from .similarity import ExactIndex, Featurizer, _nonzero_rows, topk_rows  # noqa: E402


def space_features(table: CodeTable, space: str = "both") -> np.ndarray:
    """Standardised features ``[N, F]`` of a table in one space (see :class:`Featurizer`)."""
    return Featurizer.fit(table.shape, table.texture, table.size, space).transform(table.shape, table.texture)


#: Every blocked distance matrix of this module stays under this many bytes (memory bounded whatever N).
BLOCK_BYTES = 64 << 20
#: Above this many assets the analyses that were quadratic in memory or time fit on a deterministic sample
#: (cluster fitting, silhouette, the median nearest-neighbour distance of sparse regions); see each function.
MAX_FIT = 2000


def _pairwise_nn(x: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k nearest other rows of every row (or of ``rows``): ``(rows [M, k], dist [M, k])``. O(N^2 F) in blocks
    of queries whose distance matrix stays under :data:`BLOCK_BYTES`; ties by row."""
    x = np.asarray(x, np.float64)
    n = len(x)
    k = min(k, n - 1)
    queries = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    sq = (x * x).sum(1)
    out_rows, dist = np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k))
    step = int(max(1, min(1024, BLOCK_BYTES // (8 * max(n, 1)))))
    for s in range(0, len(queries), step):
        q = queries[s:s + step]
        d2 = sq[q, None] - 2 * x[q] @ x.T + sq[None, :]
        d2[np.arange(len(q)), q] = np.inf  # not its own neighbour
        cols, dd = topk_rows(d2, k)
        out_rows[s:s + step] = cols
        dist[s:s + step] = np.sqrt(np.maximum(dd, 0))
    return out_rows, dist


def fit_rows(n: int, max_fit: int = MAX_FIT, seed: int = 0) -> np.ndarray:
    """The rows an analysis fits on: all ``n``, or above ``max_fit`` a seeded uniform sample of ``max_fit``
    (sorted; uniform, not stratified, so densities stay as they are in the library)."""
    if n <= max_fit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_fit, replace=False))


def stratified_sample(coords: np.ndarray, cap: int, groups: list[str] | None = None, seed: int = 0,
                      cells: int | None = None) -> np.ndarray:
    """At most ``cap`` rows of a 2-D map (sorted), deterministic for a given ``seed``: all rows when there are
    no more than ``cap``.

    The map is cut into a ``cells x cells`` grid (default about ``cap / 4`` cells); every non-empty (cell,
    group) stratum (``groups``: e.g. the asset categories) gets one row, so sparse regions and small
    categories always appear, and the rest of the ``cap`` is shared out in proportion to stratum size (largest
    remainders first). Within a stratum rows are taken in a seeded random order. O(N log N)."""
    coords = np.asarray(coords, np.float64)
    n = len(coords)
    if n <= cap:
        return np.arange(n)
    if cap <= 0:
        return np.zeros(0, np.int64)
    g = int(cells or max(1, math.ceil(math.sqrt(cap / 4))))
    lo, hi = coords.min(0), coords.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    ij = np.clip(((coords - lo) / span * g).astype(np.int64), 0, g - 1)
    cell = ij[:, 0] * g + ij[:, 1]
    if groups:
        _, gid = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        key = cell * (int(gid.max()) + 1) + gid
    else:
        key = cell
    _, key = np.unique(key, return_inverse=True)
    sizes = np.bincount(key)
    m = len(sizes)
    if m >= cap:  # more strata than places: the largest strata get one each (ties: first stratum)
        quota = np.zeros(m, np.int64)
        quota[np.argsort(-sizes, kind="stable")[:cap]] = 1
    else:
        share = sizes * ((cap - m) / n)
        quota = 1 + np.floor(share).astype(np.int64)
        left = cap - int(quota.sum())
        if left > 0:
            quota[np.argsort(-(share - np.floor(share)), kind="stable")[:left]] += 1
        quota = np.minimum(quota, sizes)
    perm = np.random.default_rng(seed).permutation(n)
    order = perm[np.argsort(key[perm], kind="stable")]  # grouped by stratum, seeded order inside
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(n) - starts[key[order]]
    return np.sort(order[rank < quota[key[order]]])


# -- PCA ----------------------------------------------------------------------------------------

def pca_summary(codes: np.ndarray, n_components: int = 8) -> dict[str, Any]:
    """PCA of one half ``[N, D]``: mean, unit directions, per-direction sigma and explained variance."""
    codes = np.asarray(codes, np.float64)
    n = min(n_components, codes.shape[1], max(len(codes) - 1, 1))
    if len(codes) < 2:
        raise LibraryError("PCA needs at least 2 assets with codes")
    p = PCA(n_components=n).fit(codes)
    return {
        "mean": p.mean_.tolist(),
        "directions": p.components_.tolist(),
        "sigma": np.sqrt(p.explained_variance_).tolist(),
        "explained_variance_ratio": p.explained_variance_ratio_.tolist(),
    }


def plot_explained_variance(summaries: dict[str, dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Bar chart of the explained variance ratio per half (``{"shape": summary, "texture": summary}``)."""
    fig, axes = plt.subplots(1, len(summaries), figsize=(4 * len(summaries), 3), squeeze=False)
    for ax, (half, s) in zip(axes[0], summaries.items(), strict=True):
        r = s["explained_variance_ratio"]
        ax.bar(range(1, len(r) + 1), r, color="#4477aa")
        ax.plot(range(1, len(r) + 1), np.cumsum(r), "k.-", lw=1)
        ax.set_title(f"{half} half: explained variance")
        ax.set_xlabel("principal direction")
        ax.set_ylim(0, 1)
    return _save(fig, path)


# -- 2D map + clusters --------------------------------------------------------------------------

def embed_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2D coordinates ``[N, 2]`` of the library (PCA-2 or t-SNE)."""
    n = len(features)
    if n < 2:
        raise LibraryError("a map needs at least 2 assets with codes")
    if method == "pca":
        out = PCA(n_components=2).fit_transform(features) if features.shape[1] >= 2 else np.c_[features, 0 * features]
    elif method == "tsne":
        from sklearn.manifold import TSNE

        out = TSNE(n_components=2, perplexity=float(min(30, max(2, (n - 1) // 3))), random_state=seed,
                   init="pca").fit_transform(features)
    else:
        raise LibraryError(f"map method must be 'pca' or 'tsne', got {method!r}")
    return np.asarray(out, np.float64)


def clusters(features: np.ndarray, names: list[str], k_max: int = 10, seed: int = 0, n_typical: int = 3,
             max_fit: int = MAX_FIT) -> dict[str, Any]:
    """KMeans with k in 2..k_max chosen by silhouette; each cluster named after its most central asset.

    ``features [N, F]``. Each cluster lists ``typical``: its ``n_typical`` members closest to the
    cluster centre, most typical first (the first is the cluster's ``name``), so a library without
    any tags still gets readable clusters. Above ``max_fit`` assets KMeans and the silhouette (quadratic)
    are fitted on :func:`fit_rows` (a seeded uniform sample) and every asset gets its nearest centre:
    linear in N. ``fitted_on`` says how many assets the fit saw.
    """
    n = len(features)
    if n == 0:
        return {"k": 0, "silhouette": None, "labels": [], "clusters": [], "fitted_on": 0}
    features = np.asarray(features, np.float64)
    fit = features[fit_rows(n, max_fit, seed)] if n > max_fit else features
    best = None
    for k in range(2, min(k_max, len(fit) - 1) + 1):
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(fit)
        if len(set(km.labels_)) < 2:
            continue
        s = float(silhouette_score(fit, km.labels_))
        if best is None or s > best[0]:
            best = (s, k, km)
    if best is None:  # fewer than 3 assets, or no split at all: one cluster around the mean
        labels, centres, k, s = np.zeros(n, int), features.mean(0, keepdims=True), 1, None
    else:
        s, k, km = best
        labels, centres = (km.labels_ if len(fit) == n else km.predict(features)), km.cluster_centers_
    out = []
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        order = rows[np.argsort(((features[rows] - centres[c]) ** 2).sum(1), kind="stable")]
        typical = [names[r] for r in order[:n_typical]]
        out.append({"id": c, "name": typical[0] if typical else "", "size": int(len(rows)),
                    "typical": typical, "members": [names[r] for r in rows]})
    return {"k": k, "silhouette": s, "labels": np.asarray(labels).tolist(), "clusters": out, "fitted_on": len(fit)}


def plot_map(
    coords: np.ndarray,
    names: list[str],
    path: str | os.PathLike[str],
    labels: list[int] | None = None,
    cluster_names: list[str] | None = None,
    thumbnails: list[np.ndarray | None] | None = None,
    values: np.ndarray | None = None,
    title: str = "library map",
    max_thumbnails: int = 400,
    background: np.ndarray | None = None,
) -> Path:
    """Scatter of the library in 2D, coloured by cluster (or by ``values``), with thumbnails [H, W, 3|4] (``None``
    entries: no thumbnail for that point). ``background [M, 2]``: every asset of a library shown by a sample,
    drawn first as small grey dots (rasterised: the PNG's size does not grow with M)."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    fig, ax = plt.subplots(figsize=(10, 10))
    if background is not None and len(background):
        ax.scatter(background[:, 0], background[:, 1], c="#bbbbbb", s=1, linewidths=0, zorder=1, rasterized=True)
    size = float(np.clip(30 * math.sqrt(400 / max(len(coords), 1)), 4, 30))
    if values is not None:
        sc = ax.scatter(coords[:, 0], coords[:, 1], c=values, cmap="magma_r", s=40 if len(coords) <= 400 else size,
                        zorder=2)
        fig.colorbar(sc, ax=ax, shrink=0.7, label="smoothed score")
    else:
        ax.scatter(coords[:, 0], coords[:, 1], c=labels if labels is not None else "#4477aa", cmap="tab10",
                   s=size, zorder=2)
    if thumbnails is not None:
        # Thumbnails shrink as the map fills up so it stays readable (zoom 1 = native pixels).
        drawn = [i for i, img in enumerate(thumbnails) if img is not None][:max_thumbnails]
        zoom = float(np.clip(1.5 * math.sqrt(100 / max(len(coords), 1)), 0.3, 1.5))
        for i in drawn:
            box = AnnotationBbox(OffsetImage(thumbnails[i], zoom=zoom), coords[i], frameon=False, zorder=3)
            ax.add_artist(box)
    if labels is not None and cluster_names:
        for c, cname in enumerate(cluster_names):
            rows = [i for i, lab in enumerate(labels) if lab == c]
            if rows:
                cx, cy = coords[rows].mean(0)
                ax.annotate(cname, (cx, cy), xytext=(0, 28), textcoords="offset points", fontsize=9, weight="bold",
                            ha="center", zorder=4,
                            bbox=dict(boxstyle="round", fc="white", alpha=0.7))
    if len(names) <= 60 and thumbnails is None:
        for i, n in enumerate(names):
            ax.annotate(n, coords[i], fontsize=6, alpha=0.7)
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    return _save(fig, path)


# -- sparse regions -----------------------------------------------------------------------------

def sparse_regions(
    features: np.ndarray,
    names: list[str],
    n_regions: int = 5,
    n_candidates: int = 4000,
    surround: float = 0.5,
    min_score: float = 1.5,
    seed: int = 0,
    max_fit: int = MAX_FIT,
) -> list[dict[str, Any]]:
    """Where the library is thin: points inside the data with no asset nearby.

    Candidates are random convex combinations of 2-3 assets (so they lie inside the data's hull);
    a candidate counts only if its 8 nearest assets *surround* it (their centroid is closer to it
    than ``surround`` times their mean spread), which rules out the outer rim. The score is the
    distance to the nearest asset relative to the library's median nearest-neighbour distance;
    only regions scoring at least ``min_score`` (clearly emptier than usual) are listed.
    Returns regions, emptiest first: ``{"score", "nearest": [names], "weights": {name: w}}`` where
    ``weights`` reproduce the centre as a mix of asset codes (for a decoder render).
    """
    x = np.asarray(features, np.float64)
    n = len(x)
    if n < 4:
        raise LibraryError("sparse regions need at least 4 assets with codes")
    rng = np.random.default_rng(seed)
    m = 3
    idx = rng.integers(0, n, size=(n_candidates, m))
    w = rng.dirichlet(np.ones(m), size=n_candidates)
    cand = np.einsum("cm,cmf->cf", w, x[idx])
    # The typical gap: median nearest-neighbour distance (above max_fit, of a seeded sample of query rows, each
    # against the whole library: an unbiased estimate, linear in N per query).
    _, nn = _pairwise_nn(x, 1, None if n <= max_fit else fit_rows(n, max_fit, seed))
    median_nn = float(np.median(nn[:, 0])) or 1e-9
    kk = min(8, n)
    sqx = (x * x).sum(1)
    near, dist = np.zeros((len(cand), kk), np.int64), np.zeros((len(cand), kk))
    step = int(max(1, BLOCK_BYTES // (8 * n)))
    for s in range(0, len(cand), step):
        c = cand[s:s + step]
        d2 = (c * c).sum(1)[:, None] - 2 * c @ x.T + sqx[None, :]
        cols, dd = topk_rows(d2, kk)
        near[s:s + step], dist[s:s + step] = cols, np.sqrt(np.maximum(dd, 0))
    nbr = x[near]  # [C, kk, F]
    centroid = nbr.mean(1)
    spread = np.linalg.norm(nbr - centroid[:, None], axis=2).mean(1) + 1e-12
    inside = np.linalg.norm(cand - centroid, axis=1) / spread < surround
    score = dist[:, 0] / median_nn
    order = [i for i in np.argsort(-score) if inside[i] and score[i] >= min_score]
    regions: list[dict[str, Any]] = []
    for i in order:
        if len(regions) >= n_regions:
            break
        # Non-maximum suppression: one region per hole.
        if any(np.linalg.norm(cand[i] - r["_centre"]) < r["_radius"] for r in regions):
            continue
        weights: dict[str, float] = {}
        for j, wt in zip(idx[i], w[i], strict=True):
            weights[names[j]] = weights.get(names[j], 0.0) + float(wt)
        regions.append({
            "score": float(score[i]),
            "distance_to_nearest": float(dist[i, 0]),
            "nearest": [names[j] for j in near[i, :5]],
            "weights": weights,
            "_centre": cand[i],
            "_radius": float(dist[i, 0]),
        })
    for r in regions:
        r.pop("_centre")
        r.pop("_radius")
    return regions


def mix_codes(table: CodeTable, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The code ``(shape [D], texture [D])`` that is the weighted mix of the named assets' codes."""
    rows = [table.index_of(n) for n in weights]
    w = np.array(list(weights.values()), np.float64)
    w = w / w.sum()
    return (w @ table.shape[rows]).astype(np.float32), (w @ table.texture[rows]).astype(np.float32)


# -- near-duplicates ----------------------------------------------------------------------------

def near_duplicates(table: CodeTable, ratio: float = 0.2, max_fit: int = MAX_FIT) -> list[dict[str, Any]]:
    """Groups of assets whose codes nearly coincide in **both** halves.

    Two assets are duplicates when, in each half's standardised space, their distance is below
    ``ratio`` x that half's median nearest-neighbour distance (relative, so it adapts to how
    spread a model's codes are). Groups are connected components of that relation.

    Above ``max_fit`` assets the medians come from :func:`fit_rows` query assets (each against the whole library)
    and the pairs from one blocked range query in shape space (every pair under the threshold, not only among
    each asset's 10 nearest), in float32: still exact pairs, memory bounded, no per-row top-k.
    """
    n = len(table)
    if n < 2:
        return []
    halves = [space_features(table, "shape"), space_features(table, "texture")]
    if n > max_fit:
        return _near_duplicates_large(table, halves, ratio, max_fit)
    kk = min(10, n - 1)
    thresholds, neigh = [], []
    for h in halves:
        rows, dist = _pairwise_nn(h, kk)
        thresholds.append(ratio * float(np.median(dist[:, 0])))
        neigh.append((rows, dist))
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    s_rows, s_dist = neigh[0]
    for i in range(n):
        for j, ds in zip(s_rows[i], s_dist[i], strict=True):
            if ds > thresholds[0]:
                break  # neighbours are sorted: the rest are farther
            dt = float(np.linalg.norm(halves[1][i] - halves[1][j]))
            if dt <= thresholds[1]:
                pairs[(min(i, int(j)), max(i, int(j)))] = (float(ds), dt)
    return _duplicate_groups(table, pairs)


def _duplicate_groups(table: CodeTable, pairs: dict[tuple[int, int], tuple[float, float]]) -> list[dict[str, Any]]:
    """The connected groups of near-duplicate ``pairs`` (rows ``(i, j)`` -> (shape, texture) distance), largest
    first; members in row order, each group's pairs in the order found."""
    parent: dict[int, int] = {}

    def find(a: int) -> int:  # union-find with path halving
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in pairs:
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for m in sorted({m for p in pairs for m in p}):
        groups.setdefault(find(m), []).append(m)
    by_group: dict[int, list[dict[str, Any]]] = {}
    for (a, b), (ds, dt) in pairs.items():
        by_group.setdefault(find(a), []).append(
            {"a": table.names[a], "b": table.names[b], "shape_distance": ds, "texture_distance": dt})
    out = [{"assets": [table.names[m] for m in members], "pairs": by_group.get(root, [])}
           for root, members in groups.items()]
    out.sort(key=lambda g: -len(g["assets"]))
    return out


def _near_duplicates_large(table: CodeTable, halves: list[np.ndarray], ratio: float, max_fit: int
                           ) -> list[dict[str, Any]]:
    n = len(table)
    q = fit_rows(n, max_fit)
    thresholds = [ratio * float(np.median(_pairwise_nn(h, 1, q)[1][:, 0])) for h in halves]
    x = np.ascontiguousarray(halves[0], np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    # float32 rounding of |a|^2 - 2ab + |b|^2 is ~1e-6 here (unit-RMS features): far below any threshold.
    t2 = np.float32(thresholds[0] ** 2 + 1e-5)
    found: list[tuple[int, int]] = []
    step = int(max(1, BLOCK_BYTES // (4 * n)))
    for s in range(0, n, step):
        d2 = (x[s:s + step] * np.float32(-2.0)) @ x.T  # -2 a.b (exact scaling)
        d2 += sq  # |a|^2 - 2 a.b + |b|^2 <= t2  <=>  -2 a.b + |b|^2 <= t2 - |a|^2
        r, c = _nonzero_rows(d2 <= (t2 - sq[s:s + step])[:, None])
        keep = c > r + s  # each pair once, never itself
        found += list(zip((r[keep] + s).tolist(), c[keep].tolist(), strict=True))
    h0, h1 = np.asarray(halves[0], np.float64), np.asarray(halves[1], np.float64)
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    for i, j in found:
        ds, dt = float(np.linalg.norm(h0[i] - h0[j])), float(np.linalg.norm(h1[i] - h1[j]))
        if ds <= thresholds[0] and dt <= thresholds[1]:
            pairs[(i, j)] = (ds, dt)
    return _duplicate_groups(table, pairs)


# -- weak spots ---------------------------------------------------------------------------------

def read_scores_csv(path: str | os.PathLike[str]) -> dict[str, float]:
    """``asset,score`` rows (an optional header row is skipped). Malformed lines raise with their number."""
    path, text = read_text_file(path, "scores file", "a CSV of asset,score")
    scores: dict[str, float] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2:
            raise LibraryError(f"{path}:{lineno}: expected 'asset,score', got {','.join(row)!r}")
        name, raw = row[0].strip(), row[1].strip()
        try:
            value = float(raw)
        except ValueError:
            if lineno == 1 and not scores:
                continue  # header
            raise LibraryError(f"{path}:{lineno}: score {raw!r} of asset {name!r} is not a number") from None
        if not math.isfinite(value):
            raise LibraryError(f"{path}:{lineno}: score of asset {name!r} must be finite, got {raw!r}")
        if not name:
            raise LibraryError(f"{path}:{lineno}: empty asset name")
        if name in scores:
            raise LibraryError(f"{path}:{lineno}: asset {name!r} is listed twice")
        scores[name] = value
    if not scores:
        raise LibraryError(f"{path}: no 'asset,score' rows found")
    return scores


def weak_spots(
    table: CodeTable,
    scores: dict[str, float],
    k: int = 8,
    higher_is_worse: bool = True,
    n_spots: int = 5,
    cluster_labels: list[int] | None = None,
    cluster_names: list[str] | None = None,
) -> dict[str, Any]:
    """Where in code space the scores are bad (e.g. a downstream model's error per asset).

    Each asset's score is smoothed over its ``k`` nearest *scored* neighbours (itself included),
    so isolated noise does not make a spot, a bad neighbourhood does. Returns the smoothed score
    per asset, the worst spots (an asset and its neighbourhood, non-overlapping) and, if cluster
    labels are given, the mean score per cluster, worst first.
    """
    known = [n for n in scores if n in set(table.names)]
    unknown = sorted(set(scores) - set(known))
    if len(known) < 2:
        raise LibraryError(
            f"only {len(known)} of the {len(scores)} scored assets are in the catalogue; check the names in the CSV"
            + (f" (e.g. {', '.join(unknown[:3])})" if unknown else "")
        )
    feats = space_features(table, "both")
    scored_rows = np.array([table.index_of(n) for n in known])
    sign = 1.0 if higher_is_worse else -1.0
    s = np.array([scores[n] for n in known]) * sign  # higher = worse from here on
    idx = ExactIndex(feats[scored_rows])
    kk = min(k, len(known))
    smoothed = np.zeros(len(table))
    hoods: list[list[int]] = []
    for r in range(len(table)):
        rows, _ = idx.search(feats[r], kk)
        smoothed[r] = s[rows].mean()
        hoods.append([int(scored_rows[j]) for j in rows])
    spots, used = [], set()
    for r in np.argsort(-smoothed):
        if len(spots) >= n_spots:
            break
        members = hoods[r]
        if used.intersection(members):
            continue  # one spot per neighbourhood
        used.update(members)
        spots.append({
            "centre": table.names[r],
            "smoothed_score": float(smoothed[r] * sign),
            "assets": [table.names[m] for m in members],
            "scores": [scores[table.names[m]] for m in members],
        })
    out: dict[str, Any] = {
        "k": kk,
        "higher_is_worse": higher_is_worse,
        "scored": len(known),
        "ignored_unknown_assets": unknown,
        "smoothed": {table.names[r]: float(smoothed[r] * sign) for r in range(len(table))},
        "spots": spots,
    }
    if cluster_labels is not None:
        per = []
        for c in sorted(set(cluster_labels)):
            members = [table.names[i] for i, lab in enumerate(cluster_labels) if lab == c and table.names[i] in scores]
            if members:
                mean = float(np.mean([scores[m] for m in members]))
                name = cluster_names[c] if cluster_names else str(c)
                per.append({"cluster": c, "name": name, "mean_score": mean, "scored_assets": len(members)})
        per.sort(key=lambda e: -e["mean_score"] * sign)
        out["clusters"] = per
    return out


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
