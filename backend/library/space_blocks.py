"""The blocks of the "both" space that are learnt from the library: the appearance feature's principal directions
(:func:`pca_basis`, reused across the service's rebuilds after an Embed) and the tag metric (:func:`tag_metric`),
plus the chunked block statistics. Used by :class:`backend.library.similarity.Featurizer`."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence

import numpy as np

from .errors import LibraryError

#: :func:`pca_basis`: the principal directions are fitted on at most this many (evenly spread) rows; below
#: :data:`_PCA_EXACT_ROWS` rows exact (Gram matrix), above it a seeded randomized range finder.
PCA_FIT_ROWS = 4096
_PCA_EXACT_ROWS = 512
_PCA_OVERSAMPLE = 32
_PCA_POWER_ITERS = 1

#: Bases fitted lately, newest last: ``(sorted asset ids, dims, mean, scale, basis)``. The service rebuilds its
#: indexes after every Embed (one more asset): refitting the basis would cost about a second at 10,000 assets.
_BASES: OrderedDict[int, tuple[np.ndarray, int, np.ndarray, float, np.ndarray]] = OrderedDict()
_BASES_LOCK = threading.Lock()
_BASES_KEPT = 4
#: A library whose assets differ from a lately fitted one's by at most this share (added + removed) reuses its basis.
PCA_REUSE_CHANGE = 0.02


def reused_basis(row_ids: np.ndarray | None, dims: int, mean: np.ndarray, scale: float) -> np.ndarray | None:
    """A lately fitted basis (:data:`_BASES`) for this library: same ``dims`` and feature width, at most
    :data:`PCA_REUSE_CHANGE` of the assets added or removed, and a feature mean within 5 % of the block's RMS of
    the one it was fitted with (the same features, not a new backbone's). The principal directions of a library
    barely move when 2 % of it changes; the block's centring and scale are always the library's own."""
    if row_ids is None:
        return None
    ids = np.unique(np.asarray(row_ids, np.int64))
    with _BASES_LOCK:
        cached = list(_BASES.items())
    for key, (old, d, old_mean, _, basis) in reversed(cached):
        if d != dims or basis.shape[0] != len(mean):
            continue
        common = len(np.intersect1d(ids, old, assume_unique=True))
        if (len(ids) - common) + (len(old) - common) > PCA_REUSE_CHANGE * len(old):
            continue
        if float(np.linalg.norm(mean.astype(np.float64) - old_mean)) > 0.05 * scale:
            continue
        with _BASES_LOCK:
            if key in _BASES:
                _BASES.move_to_end(key)
        return basis
    return None


def remember_basis(row_ids: np.ndarray | None, dims: int, mean: np.ndarray, scale: float, basis: np.ndarray) -> None:
    if row_ids is None:
        return
    ids = np.unique(np.asarray(row_ids, np.int64))
    with _BASES_LOCK:
        _BASES[id(basis)] = (ids, dims, mean.astype(np.float64), scale, basis)
        while len(_BASES) > _BASES_KEPT:
            _BASES.popitem(last=False)


#: :func:`tag_metric`: a tag is learnt when this many tagged assets have it and this many tagged assets lack it.
TAG_MIN_POSITIVES = 3
#: :func:`tag_metric`: the ridge penalty, relative to the mean squared norm of the features (as the descriptor's).
TAG_RIDGE = 1.0
#: :func:`tag_metric` learns at most this many tags (the most frequent): the tag block is at most this wide.
TAG_METRIC_MAX_TAGS = 256


def tag_metric(x: np.ndarray, tags: Sequence[Collection[str] | None], ridge: float = TAG_RIDGE,
               min_positives: int = TAG_MIN_POSITIVES) -> tuple[np.ndarray | None, list[str], float]:
    """A metric learnt from the library's own tags (issue 15; as :class:`backend.features.descriptor.Descriptor`'s):
    a ridge regression from the features ``x [N, F]`` of the tagged rows (``tags[i]`` None: untagged, not a
    negative) to their centred tag indicators. Returns ``(map [F, T] float32, tag names, RMS of the centred
    scores)``, or ``(None, [], 1.0)`` when no tag has ``min_positives`` positives and negatives.

    The penalty is ``ridge`` x the mean squared row norm; solved in the dual (``N x N``) when there are fewer tagged
    rows than features, else in the primal (``F x F``): memory bounded at 100,000 tagged assets."""
    rows = np.array([t is not None for t in tags], bool)
    labelled = [set(t) for t in tags if t is not None]
    counts: dict[str, int] = {}
    for ts in labelled:
        for t in ts:
            counts[t] = counts.get(t, 0) + 1
    usable = [t for t, c in counts.items() if min_positives <= c <= len(labelled) - min_positives]
    # The most frequent TAG_METRIC_MAX_TAGS: the block's width (and the indicator matrix) stay bounded whatever the
    # library's vocabulary; every tag still gets its classifier in the tag model, this is only the metric.
    vocab = sorted(sorted(usable, key=lambda t: (-counts[t], t))[:TAG_METRIC_MAX_TAGS])
    if not vocab:
        return None, [], 1.0
    col = {t: j for j, t in enumerate(vocab)}
    y = np.zeros((len(labelled), len(vocab)), np.float64)
    for i, ts in enumerate(labelled):
        for t in ts:
            if t in col:
                y[i, col[t]] = 1.0
    y -= y.mean(0)
    xr = np.asarray(x, np.float64)[rows]
    n, f = xr.shape
    lam = ridge * float(np.einsum("ij,ij->", xr, xr)) / n
    if n <= f:
        tag_map = xr.T @ np.linalg.solve(xr @ xr.T + lam * np.eye(n), y)  # dual: [F, T]
    else:
        tag_map = np.linalg.solve(xr.T @ xr + lam * np.eye(f), xr.T @ y)  # primal, the same map
    z = np.asarray(x, np.float32) @ tag_map.astype(np.float32)
    zs = np.sqrt(float(((z - z.mean(0)) ** 2).sum(1).mean()))
    return tag_map.astype(np.float32), vocab, zs if zs > 1e-12 else 1.0


_STATS_ROWS = 4096


def block_stats(x: np.ndarray) -> tuple[np.ndarray, float]:
    """A block's mean ``[D]`` float32 and RMS norm of its centred rows (1.0 when it has none), in float64 over
    chunks of rows: no float64 copy of a whole 100,000 x 2,560 block (2 GB, 20 s of the index build before)."""
    x = np.asarray(x)
    mean = x.mean(axis=0, dtype=np.float64)
    total = 0.0
    for s in range(0, len(x), _STATS_ROWS):
        c = x[s:s + _STATS_ROWS].astype(np.float64) - mean
        total += float(np.einsum("ij,ij->", c, c))
    rms = float(np.sqrt(total / max(len(x), 1)))
    return mean.astype(np.float32), rms if rms > 1e-12 else 1.0


def pca_basis(x: np.ndarray, k: int, max_rows: int = PCA_FIT_ROWS, seed: int = 0) -> np.ndarray:
    """The first ``k`` principal directions ``[D, k']`` float32 (orthonormal columns, most varying first;
    ``k' <= min(k, rows, D)``: directions without variance are left out) of the centred rows ``x [N, D]``, fitted
    on at most ``max_rows`` evenly spread rows.

    Up to :data:`_PCA_EXACT_ROWS` rows exact (eigenvectors of the rows' Gram matrix: 0.05 s at 400 x 2,560); above,
    a seeded randomized range finder with :data:`_PCA_POWER_ITERS` power iterations (Halko et al.; deterministic:
    the same library gives the same basis), about 1.4 s at 4,096 x 2,560 on a 2-core CPU (it keeps 98-99 % of the
    variance the exact top directions keep)."""
    x = np.asarray(x, np.float32)
    n, d = x.shape
    if k < 1:
        raise LibraryError(f"k must be at least 1, got {k}")
    if n > max_rows:
        x = x[np.linspace(0, n - 1, max_rows).astype(np.int64)]
    k = min(k, len(x), d)
    if len(x) <= _PCA_EXACT_ROWS or k + _PCA_OVERSAMPLE >= min(len(x), d):
        x64 = x.astype(np.float64)
        if len(x) <= d:  # x = U S V^T: the rows' Gram matrix x x^T = U S^2 U^T is the smaller one
            ev, u = np.linalg.eigh(x64 @ x64.T)  # ascending
            ev, u = ev[::-1][:k], u[:, ::-1][:, :k]
            ok = ev > max(float(ev[0]), 1e-30) * 1e-10  # no variance: no direction
            v = (x64.T @ u[:, ok]) / np.sqrt(ev[ok])
        else:  # the covariance x^T x = V S^2 V^T
            ev, v = np.linalg.eigh(x64.T @ x64)
            ev, v = ev[::-1][:k], v[:, ::-1][:, :k]
            v = v[:, ev > max(float(ev[0]), 1e-30) * 1e-10]
        return np.ascontiguousarray(v, dtype=np.float32)
    rng = np.random.default_rng(seed)
    q = x.T @ rng.standard_normal((len(x), k + _PCA_OVERSAMPLE)).astype(np.float32)  # [D, k + p] in the row space
    q, _ = np.linalg.qr(q)
    for _ in range(_PCA_POWER_ITERS):
        q, _ = np.linalg.qr(x @ q)  # [rows, k + p]
        q, _ = np.linalg.qr(x.T @ q)  # [D, k + p]
    b = x @ q  # [rows, k + p]: the rows in that subspace
    _, sv, vt = np.linalg.svd(b.astype(np.float64), full_matrices=False)
    ok = sv[:k] > max(float(sv[0]), 1e-30) * 1e-5
    return np.ascontiguousarray(q.astype(np.float64) @ vt[:k][ok].T, dtype=np.float32)
