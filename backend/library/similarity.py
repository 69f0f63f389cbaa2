"""Exact k-nearest-neighbour search in shape space, texture space or both.

Features: each half is centred and scaled to unit mean squared norm over the library (so neither
half dominates "both" just because its codes are larger), then weighted and concatenated;
optionally the log of the metric bounding-box size is appended (codes are scale-free, size is
not). In "both" space a pretrained appearance feature (:mod:`backend.features`) can be appended as one more
block (``appearance_weight > 0``): issue 15's measurements show it carries what an asset *is* far better than
the codes. Distances are Euclidean in that feature space.

The appearance block can be projected onto its first ``appearance_dims`` principal directions (:func:`~.space_blocks.pca_basis`,
fitted on the library when the index is built; an upload's feature is projected with the same basis): the block
keeps the whole feature's centring and scale, so distances approximate the full feature's, and search and
all-neighbours work on a few hundred numbers instead of 2,560 (the "both" space: 2,627 -> 323 at 256). An index
rebuilt on a library that differs by a few assets from one fitted lately (the service after an Embed) reuses that
basis. With the library's own tags, "both" can also carry a tag-metric block (:func:`~.space_blocks.tag_metric`): a ridge from
the other blocks to the tags, whose predicted tag scores pull together assets that would get the same tags.

Search is exact: one float32 matrix-vector product against precomputed squared norms, then a
threshold taken from a strided sample of the distances selects a few thousand candidates that
provably contain the top k (``np.argpartition`` over all rows would dominate the time at 1M).

What is *listed* (issue 19): an embed of a file never saved and a sampled variant of a parametric family are
answered (they get their own neighbours) but never suggested as another asset's neighbour (:func:`is_listed`);
there is no file or object to append them from. Near-identical codes (one object saved in two files) can be
collapsed into one suggestion that counts its copies (``similar(..., copies=True)``, :data:`COPY_DISTANCE`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.naming import is_unsaved

from .catalogue import SPACES, CodeTable
from .errors import LibraryError
from .space_blocks import block_stats, pca_basis, remember_basis, reused_basis, tag_metric

#: Below this many rows a plain argpartition is as fast as the sampled threshold.
_DIRECT_ROWS = 50_000
_SAMPLE_ROWS = 20_000
_SAMPLE_RANK = 40  # expected candidates = _SAMPLE_RANK / _SAMPLE_ROWS * N  (2,000 at 1M)
#: All-neighbours blocks: each block's [B, N] float32 distance matrix stays under this many bytes.
NEIGHBOUR_BLOCK_BYTES = 64 << 20
#: :func:`topk_rows`: rows wider than this take the sampled threshold (about (k + 1) / 4096 of the row stays).
_BLOCK_DIRECT_COLS = 8192
_BLOCK_SAMPLE_COLS = 4096
#: Two assets whose whole codes are closer than this are copies of one object. Measured in the "both" features
#: (each half centred and scaled to unit RMS over the library, so the scale is the same for every library: two
#: assets are ~2.0 apart on average). One object saved in two files gives the same views (deterministic capture)
#: and so the same code (deterministic encoder, seeded inversion): distance ~0. The closest two *different* assets
#: of the starter library are 0.235 apart (median nearest neighbour 0.78): 0.02 is 10x below that.
COPY_DISTANCE = 0.02
#: A family variant's catalogue name ends in ``<family>__v<index>`` (blender_addon.family / embed_job name them).
_VARIANT_SUFFIX = re.compile(r"__v\d+")


def is_family_variant(name: str, family: str) -> bool:
    """Whether a catalogued asset is a sampled variant of its parametric family (no object in any file)."""
    if not family:
        return False
    leaf = name.rsplit("/", 1)[-1]
    return leaf.startswith(family) and _VARIANT_SUFFIX.fullmatch(leaf[len(family) :]) is not None


def is_listed(name: str, family: str = "") -> bool:
    """Whether an asset may be suggested as another asset's neighbour: not an embed of a file never saved
    (``unsaved/...``) and not a family variant. Saving the file (or marking a variant as an asset of its own)
    and embedding it again gives it a listed name."""
    return not is_unsaved(name) and not is_family_variant(name, family)


@dataclass
class Featurizer:
    """Maps ``(shape [N, D], texture [N, D], size [N, 3])`` to search features, with library statistics."""

    space: str
    shape_mean: np.ndarray
    shape_scale: float
    texture_mean: np.ndarray
    texture_scale: float
    size_mean: np.ndarray
    size_scale: float
    shape_weight: float = 1.0
    texture_weight: float = 1.0
    size_weight: float = 0.0
    appearance_mean: np.ndarray | None = None
    appearance_scale: float = 1.0
    appearance_weight: float = 0.0
    #: ``[D, k]`` float32: the appearance block is projected onto these principal directions (None: all D numbers).
    appearance_basis: np.ndarray | None = None
    #: The tag metric (:func:`~.space_blocks.tag_metric`): ``[F, T]`` from the other blocks' features to the library's own tags'
    #: centred indicators; its predicted tag scores are one more block (None: off).
    tag_map: np.ndarray | None = None
    tag_scale: float = 1.0
    tag_weight: float = 0.0
    tag_names: tuple[str, ...] = ()

    @classmethod
    def fit(
        cls,
        shape: np.ndarray,
        texture: np.ndarray,
        size: np.ndarray | None = None,
        space: str = "both",
        shape_weight: float = 1.0,
        texture_weight: float = 1.0,
        size_weight: float = 0.0,
        appearance: np.ndarray | None = None,
        appearance_weight: float = 0.0,
        appearance_dims: int = 0,
        tags: Sequence[Collection[str] | None] | None = None,
        tag_weight: float = 0.0,
        row_ids: np.ndarray | None = None,
    ) -> Featurizer:
        """Library statistics of each block. ``appearance_dims > 0`` (below the feature's width and the library's
        asset count): the appearance block is its projection onto the library's first ``appearance_dims`` principal
        directions (:func:`~.space_blocks.pca_basis`), scaled as the whole block is (the projection only drops the least varying
        directions, so distances stay close to the whole feature's). ``tag_weight > 0`` with ``tags`` (the
        library's own tags per row, None = untagged): in "both" space, a tag-metric block (:func:`~.space_blocks.tag_metric`).
        ``row_ids`` (the rows' asset ids): the PCA basis of a library that differs from one fitted lately by at
        most :data:`~.space_blocks.PCA_REUSE_CHANGE` of its assets is reused (:func:`~.space_blocks.reused_basis`)."""
        if space not in SPACES:
            raise LibraryError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        if len(shape) == 0:
            raise LibraryError("no codes to search: the catalogue is empty")

        stats = block_stats
        sm, ss = stats(shape)
        tm, ts = stats(texture)
        logsize = _log_size(size if size is not None else np.ones((len(shape), 3), np.float32))
        zm, zs = stats(logsize)
        am, ascale, basis = None, 1.0, None
        if appearance_weight > 0 and space == "both":
            if appearance is None:
                raise LibraryError("the appearance feature is on but no appearance features were given")
            am, ascale = stats(appearance)
            if appearance_dims < 0:
                raise LibraryError(f"appearance_dims must be 0 (the whole feature) or more, got {appearance_dims}")
            # Only with more assets than directions: below, the projection changes no distance between assets.
            if 0 < appearance_dims < min(np.shape(appearance)[1], len(appearance) - 1):
                basis = reused_basis(row_ids, appearance_dims, am, ascale)
                if basis is None:
                    basis = pca_basis(np.asarray(appearance, np.float32) - am, appearance_dims)
                    remember_basis(row_ids, appearance_dims, am, ascale, basis)
        f = cls(space, sm, ss, tm, ts, zm, zs, shape_weight, texture_weight, size_weight, am, ascale,
                appearance_weight if am is not None else 0.0, basis)
        if tag_weight > 0 and space == "both" and tags is not None:
            if len(tags) != len(shape):
                raise LibraryError(f"{len(tags)} tag sets for {len(shape)} assets")
            base = f.transform(shape, texture, size, appearance)
            tag_map, names, scale = tag_metric(base, tags)
            if tag_map is not None:
                f.tag_map, f.tag_names, f.tag_scale, f.tag_weight = tag_map, tuple(names), scale, float(tag_weight)
                f._library = (base, f._tag_block(base))  # the library's features: no second projection
        return f

    def library_features(self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None = None,
                         appearance: np.ndarray | None = None) -> np.ndarray:
        """:meth:`transform` of the library this was fitted on (the rows given to :meth:`fit`), reusing what the fit
        already computed (the projected features the tag metric was learnt from)."""
        done = self.__dict__.pop("_library", None)
        if done is None:
            return self.transform(shape, texture, size, appearance)
        return np.ascontiguousarray(np.concatenate(done, axis=1), dtype=np.float32)

    def _tag_block(self, base: np.ndarray) -> np.ndarray:
        return (base @ self.tag_map) * np.float32(self.tag_weight / self.tag_scale)

    def transform(self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None = None,
                  appearance: np.ndarray | None = None) -> np.ndarray:
        """Features ``[N, F]`` float32 (C-contiguous, ready for :class:`ExactIndex`)."""
        parts = []
        if self.appearance_weight > 0:
            if appearance is None:
                raise LibraryError("this search space uses the appearance feature; pass it with the codes")
            a = np.asarray(appearance, np.float32) - self.appearance_mean
            if self.appearance_basis is not None:
                a = a @ self.appearance_basis
            parts.append(a * np.float32(self.appearance_weight / self.appearance_scale))
        if self.space in ("shape", "both"):
            parts.append((np.asarray(shape, np.float32) - self.shape_mean) * (self.shape_weight / self.shape_scale))
        if self.space in ("texture", "both"):
            parts.append(
                (np.asarray(texture, np.float32) - self.texture_mean) * (self.texture_weight / self.texture_scale)
            )
        if self.size_weight > 0:
            if size is None:
                raise LibraryError("the size feature is on but no sizes were given")
            parts.append((_log_size(size) - self.size_mean) * (self.size_weight / self.size_scale))
        if self.tag_map is not None:
            parts.append(self._tag_block(np.concatenate(parts, axis=1)))
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def _log_size(size: np.ndarray) -> np.ndarray:
    """log of the bounding-box size in metres; a missing size (0) counts as 1 cm, not -inf."""
    return np.log(np.maximum(np.asarray(size, np.float32), 0.01)).astype(np.float32)


class ExactIndex:
    """Exact Euclidean top-k over ``X [N, F]`` float32."""

    def __init__(self, features: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float32)
        # Zero columns up to a multiple of 8 change no distance but keep the BLAS kernel on its fast path
        # (67 -> 72 columns: about 25% faster at 1M rows).
        self.dim = x.shape[1]
        self.x = np.zeros((len(x), -(-self.dim // 8) * 8), dtype=np.float32)
        self.x[:, : self.dim] = x
        self.sqnorm = np.einsum("ij,ij->i", self.x, self.x)
        self._buf = np.empty(len(self.x), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.x)

    def search(self, q: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and distances of the ``k`` nearest to ``q [F]``, closest first; ``exclude``: bool mask [N]."""
        q0 = np.asarray(q, dtype=np.float32).reshape(-1)
        if q0.shape[0] != self.dim:
            raise LibraryError(f"query has {q0.shape[0]} features, the index {self.dim}")
        q = np.zeros(self.x.shape[1], dtype=np.float32)
        q[: self.dim] = q0
        buf = self._buf
        # ||x - q||^2 = ||x||^2 - 2 x.q + ||q||^2; the last term does not change the ranking.
        np.dot(self.x, q, out=buf)
        buf *= -2.0
        buf += self.sqnorm
        if exclude is not None:
            buf[exclude] = np.inf
        n = len(buf)
        k = min(k, n)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        cand = None
        if n > _DIRECT_ROWS:
            sample = buf[:: n // _SAMPLE_ROWS]
            t = np.partition(sample, _SAMPLE_RANK)[_SAMPLE_RANK]
            if np.isfinite(t):
                c = np.flatnonzero(buf <= t)
                # At least k values <= t exist, so the true k nearest are all among them: still exact.
                if len(c) >= k:
                    cand = c
        if cand is None:
            cand = np.arange(n)
        sub = buf[cand]
        part = np.argpartition(sub, k - 1)[:k] if len(sub) > k else np.arange(len(sub))
        order = part[np.argsort(sub[part], kind="stable")]
        rows, d2 = cand[order], sub[order]
        keep = np.isfinite(d2)
        d = np.sqrt(np.maximum(d2[keep] + float(q @ q), 0.0))
        return rows[keep].astype(np.int64), d.astype(np.float32)


@dataclass
class Neighbour:
    name: str
    asset_id: int
    distance: float
    rank: int
    family: str = ""
    category: str = ""
    #: How many near-identical assets this suggestion stands for, itself included (``similar(..., copies=True)``).
    copies: int = 1


class SimilarityIndex:
    """k-NN over a :class:`CodeTable` in one space (``shape``, ``texture`` or ``both``).

    ``listed_only`` (default): rows that are not :func:`is_listed` (unsaved embeds, family variants) are never
    returned as neighbours; they can still be queried.
    """

    def __init__(
        self,
        table: CodeTable,
        space: str = "both",
        size_weight: float = 0.0,
        shape_weight: float = 1.0,
        texture_weight: float = 1.0,
        listed_only: bool = True,
        appearance: np.ndarray | None = None,
        appearance_weight: float = 0.0,
        appearance_dims: int = 0,
        tags: Sequence[Collection[str] | None] | None = None,
        tag_weight: float = 0.0,
    ) -> None:
        self.table = table
        self.featurizer = Featurizer.fit(
            table.shape, table.texture, table.size, space, shape_weight, texture_weight, size_weight,
            appearance, appearance_weight, appearance_dims, tags, tag_weight, table.ids,
        )
        self.features = self.featurizer.library_features(table.shape, table.texture, table.size, appearance)
        self.index = ExactIndex(self.features)
        fams = table.families or [""] * len(table)
        self._family_names, self._family_ids = np.unique(np.asarray(fams, dtype=object).astype(str),
                                                         return_inverse=True)
        hidden = np.array([not is_listed(n, f) for n, f in zip(table.names, fams, strict=True)], bool)
        self.hidden: np.ndarray | None = hidden if listed_only and hidden.any() else None
        self._copy_featurizer: Featurizer | None = None
        self._rows: dict[str, int] | None = None

    def _mask(self, row: int | None, exclude_self: bool, exclude_family: str | None) -> np.ndarray | None:
        mask = None if self.hidden is None else self.hidden.copy()
        if exclude_family:
            hit = np.flatnonzero(self._family_names == exclude_family)
            if len(hit):
                fam = self._family_ids == hit[0]
                mask = fam if mask is None else mask | fam
        if exclude_self and row is not None:
            if mask is None:
                mask = np.zeros(len(self.table), bool)
            mask[row] = True
        return mask

    def _neighbours(self, rows: np.ndarray, dists: np.ndarray) -> list[Neighbour]:
        t = self.table
        return [
            Neighbour(
                name=t.names[r], asset_id=int(t.ids[r]), distance=float(d), rank=i,
                family=t.families[r] if t.families else "", category=t.categories[r] if t.categories else "",
            )
            for i, (r, d) in enumerate(zip(rows, dists, strict=True))
        ]

    def similar(self, name: str, k: int = 10, exclude_self: bool = True, exclude_family: bool = False,
                copies: bool = False) -> list[Neighbour]:
        """The ``k`` assets nearest to asset ``name``; optionally without itself / its own family. ``copies``:
        near-identical neighbours count as one suggestion, the closest, with ``copies`` set (see
        :meth:`collapse_copies`); still ``k`` suggestions when the library has them."""
        if k < 1:
            raise LibraryError(f"k must be at least 1, got {k}")
        row = self.row_of(name)
        fam = self.table.families[row] if (exclude_family and self.table.families) else None
        mask = self._mask(row, exclude_self, fam or None)
        fetch = k
        while True:
            rows, d = self.index.search(self.features[row], fetch, mask)
            found = self._neighbours(rows, d)
            if not copies:
                return found
            distinct = self.collapse_copies(found)
            # Copies used up some of the k places: look further, until k distinct or every row was seen.
            if len(distinct) >= k or len(rows) < fetch or fetch >= len(self.table):
                return distinct[:k]
            fetch = min(fetch * 2 + k, len(self.table))

    def row_of(self, name: str) -> int:
        """The table row of asset ``name`` (a dict built once: ``list.index`` is slow at a million rows)."""
        if self._rows is None:
            self._rows = {n: i for i, n in enumerate(self.table.names)}
        row = self._rows.get(name)
        return self.table.index_of(name) if row is None else row  # unknown: the error with close matches

    def collapse_copies(self, found: list[Neighbour], tolerance: float = COPY_DISTANCE) -> list[Neighbour]:
        """``found`` (nearest first) with each group of copies (whole codes within ``tolerance`` of the group's
        closest member, in the "both" features whatever this index's space) folded into that closest one, whose
        ``copies`` counts the group. Ranks are renumbered."""
        if len(found) < 2:
            return found
        if self._copy_featurizer is None:  # the whole code, each half at unit RMS over the library ("both")
            t = self.table
            self._copy_featurizer = Featurizer.fit(t.shape, t.texture, space="both")
        rows = np.array([self.row_of(n.name) for n in found])
        x = self._copy_featurizer.transform(self.table.shape[rows], self.table.texture[rows]).astype(np.float64)
        kept: list[int] = []
        out: list[Neighbour] = []
        for i, n in enumerate(found):
            near = [j for j, k in enumerate(kept) if np.linalg.norm(x[i] - x[k]) < tolerance]
            if near:
                out[near[0]].copies += n.copies
                continue
            kept.append(i)
            out.append(Neighbour(n.name, n.asset_id, n.distance, len(out), n.family, n.category, n.copies))
        return out

    def similar_to_code(
        self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None = None, k: int = 10,
        exclude_family: str | None = None, appearance: np.ndarray | None = None,
    ) -> list[Neighbour]:
        """The ``k`` assets nearest to a code that is not (necessarily) in the library (with its appearance feature
        when this index's space uses one)."""
        size_arr = None if size is None else np.asarray(size, np.float32).reshape(1, 3)
        if size_arr is None and self.featurizer.size_weight > 0:
            size_arr = np.exp(self.featurizer.size_mean).reshape(1, 3)  # unknown size: library's typical size
        app = None if appearance is None else np.reshape(appearance, (1, -1))
        q = self.featurizer.transform(np.reshape(shape, (1, -1)), np.reshape(texture, (1, -1)), size_arr, app)[0]
        rows, d = self.index.search(q, k, self._mask(None, False, exclude_family))
        return self._neighbours(rows, d)

    def all_neighbours(self, k: int = 10, exclude_family: bool = False,
                       block_bytes: int = NEIGHBOUR_BLOCK_BYTES) -> dict[int, list[tuple[int, float]]]:
        """``{asset_id: [(neighbour_id, distance)] * k}`` for every asset (for stored suggestions).

        The same answer as :meth:`similar` row by row (itself, unlisted rows and, with ``exclude_family``, its own
        family excluded; ties in rank order by row), computed block-wise by :meth:`neighbour_arrays`."""
        rows, dist = self.neighbour_arrays(k, exclude_family, block_bytes)
        ids = self.table.ids
        out = {}
        for r in range(len(rows)):
            ok = rows[r] >= 0
            out[int(ids[r])] = [(int(ids[c]), float(d)) for c, d in zip(rows[r][ok], dist[r][ok], strict=True)]
        return out

    def all_neighbours_rowwise(self, k: int = 10, exclude_family: bool = False) -> dict[int, list[tuple[int, float]]]:
        """The former :meth:`all_neighbours`: one :meth:`similar` query per row (reference for tests and benches)."""
        out = {}
        for row, name in enumerate(self.table.names):
            out[int(self.table.ids[row])] = [(n.asset_id, n.distance) for n in self.similar(name, k, True,
                                                                                          exclude_family)]
        return out

    def neighbour_arrays(self, k: int = 10, exclude_family: bool = False, block_bytes: int = NEIGHBOUR_BLOCK_BYTES,
                         rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every row's (or ``rows``') ``k`` nearest: ``(neighbour rows [M, k] int64, distances [M, k] float32)``,
        closest first, padded with row ``-1`` / distance NaN where fewer than ``k`` may be suggested.

        Block-wise: one float32 matrix product per block of queries against the whole table (blocks sized so the
        block's distance matrix stays under ``block_bytes``: memory bounded whatever N), exclusions applied as
        infinities (unlisted columns through their squared norms, the diagonal, same-family blocks), then
        :func:`topk_rows`. Time O(N^2 F) in BLAS instead of N Python-level queries."""
        if k < 1:
            raise LibraryError(f"k must be at least 1, got {k}")
        n = len(self.table)
        queries = np.arange(n) if rows is None else np.asarray(rows, np.int64).reshape(-1)
        kk = min(k, n)
        x, sq = self.index.x, self.index.sqnorm
        col_sq = sq.copy()
        if self.hidden is not None:
            col_sq[self.hidden] = np.inf  # never a neighbour: its distance to everything is infinite
        fam_cols: dict[int, np.ndarray] = {}
        if exclude_family and self.table.families:
            empty = np.flatnonzero(self._family_names == "")
            order = np.argsort(self._family_ids, kind="stable")
            bounds = np.flatnonzero(np.diff(self._family_ids[order])) + 1
            for group in np.split(order, bounds):
                fid = int(self._family_ids[group[0]])
                if len(group) > 1 and not (len(empty) and fid == int(empty[0])):
                    fam_cols[fid] = group
        out_rows = np.full((len(queries), kk), -1, np.int64)
        out_dist = np.full((len(queries), kk), np.nan, np.float32)
        step = int(max(1, min(len(queries) or 1, block_bytes // max(4 * n, 1))))
        for s in range(0, len(queries), step):
            q = queries[s:s + step]
            d = (x[q] * np.float32(-2.0)) @ x.T  # [B, N] float32; scaling by -2 is exact: the same as -2 (x.q)
            d += col_sq  # ||x||^2 - 2 x.q (+ ||q||^2 below): the ranking of ExactIndex.search
            d[np.arange(len(q)), q] = np.inf  # not its own neighbour
            if fam_cols:
                qf = self._family_ids[q]
                for fid in np.unique(qf):
                    cols = fam_cols.get(int(fid))
                    if cols is not None:
                        d[np.ix_(np.flatnonzero(qf == fid), cols)] = np.inf
            idx, d2 = topk_rows(d, kk)
            keep = idx >= 0
            dist = np.sqrt(np.maximum(d2 + sq[q][:, None], 0.0))
            out_rows[s:s + step] = np.where(keep, idx, -1)
            out_dist[s:s + step] = np.where(keep, dist, np.nan)
        return out_rows, out_dist


def topk_rows(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest finite values of each row of ``d [B, N]``: ``(columns [B, k], values [B, k])``, ascending,
    ties by column; padded with column ``-1`` / ``inf`` where a row has fewer than ``k`` finite values.

    For wide rows a per-row threshold from a strided sample of columns (its ``k``-th smallest: at least ``k + 1``
    values of the row are <= it, so the true top k are all among them, still exact) leaves a few hundred
    candidates per row; only rows whose sample has no such finite threshold fall back to a full partition."""
    b, n = d.shape
    k = min(k, n)
    cols = np.full((b, k), -1, np.int64)
    vals = np.full((b, k), np.inf, np.float32 if d.dtype == np.float32 else np.float64)
    if b == 0 or k == 0:
        return cols, vals
    direct = np.arange(b)
    if n > _BLOCK_DIRECT_COLS and k < _BLOCK_SAMPLE_COLS // 4:
        stride = n // _BLOCK_SAMPLE_COLS
        sample = d[:, ::stride]
        t = np.partition(sample, k, axis=1)[:, k]
        ok = np.isfinite(t)
        direct = np.flatnonzero(~ok)
        if ok.any():
            okr = np.flatnonzero(ok)
            r, c = _nonzero_rows((d if len(okr) == b else d[okr]) <= t[okr, None])
            v = d[okr[r], c]
            order = np.lexsort((v, r))  # stable: ties stay in column order
            r, c, v = r[order], c[order], v[order]
            starts = np.searchsorted(r, np.arange(len(okr)))
            pos = starts[:, None] + np.arange(k)[None, :]  # every such row has >= k + 1 candidates
            cols[okr], vals[okr] = c[pos], v[pos]
    if len(direct):
        sub = d[direct]
        part = np.argpartition(sub, k - 1, axis=1)[:, :k] if k < n else np.broadcast_to(np.arange(n), sub.shape)
        pv = np.take_along_axis(sub, part, 1)
        o = np.lexsort((part, pv), axis=1)
        c, v = np.take_along_axis(part, o, 1), np.take_along_axis(pv, o, 1)
        fin = np.isfinite(v)
        cols[direct] = np.where(fin, c, -1)
        vals[direct] = np.where(fin, v, np.inf)
    return cols, vals


def _nonzero_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a sparse C-contiguous bool matrix ``[B, N]`` (row-major order), several times faster:
    the 8-byte words holding a True are found first, then only those bytes are looked at."""
    b, n = mask.shape
    flat = np.ascontiguousarray(mask).reshape(-1)
    whole = len(flat) // 8 * 8
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    wj, bj = np.nonzero(flat[:whole].reshape(-1, 8)[words])
    pos = words[wj] * 8 + bj
    if whole < len(flat):
        pos = np.concatenate([pos, whole + np.flatnonzero(flat[whole:])])
    return pos // n, pos % n


def both_space_args(catalogue: Any, table: CodeTable) -> dict[str, Any]:
    """:class:`SimilarityIndex` keyword arguments of the "both" space: issue 15's descriptor blocks (appearance as
    its first 256 principal directions + codes + size + the tag metric of the library's artist tags,
    :func:`backend.features.library.both_space`) when every asset of ``table`` has its stored appearance feature,
    else ``{}`` (the codes only). A catalogue without any feature never imports torch."""
    if catalogue.count("appearance") == 0:
        return {}
    from backend.features.library import both_space

    return both_space(catalogue, table)


def brute_force(features: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference k-NN by full sort in float64 (tests and benchmarks)."""
    d = np.sqrt(((np.asarray(features, np.float64) - np.asarray(q, np.float64)) ** 2).sum(axis=1))
    rows = np.argsort(d, kind="stable")[:k]
    return rows, d[rows]
