"""The appearance feature in the product: one vector per catalogued asset, tag descriptors and the "both" space.

Where the vectors live: the catalogue's ``appearance`` table (asset id, feature name, float16 vector, digest of
the views it was computed from). The per-view activations stay cached next to each bundle
(:mod:`.multiview`, ``<bundle>/features/<spec.key>.npz``), so a recomputation after a change of pooling is free;
the catalogue holds what tags and similarity read: one row per asset, read in one query with the codes, shared
by every decoder model (the feature does not depend on the decoder), also for assets whose bundle is not on
this machine. :func:`store_library_features` fills it (``asset2vec index``), :func:`bundle_feature` computes one
upload's (the service's Embed).

The feature name (:data:`FEATURE`) is the cache key (backbone, input size, preprocessing) plus the layers and the
view pooling the descriptor uses; a new backbone or pooling is a new name, never mixed with the old vectors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.bundle import Bundle

from .backbone import FeatureError, load_backbone
from .descriptor import DEFAULT_LAYERS, DEFAULT_VIEW_POOL, DEFAULT_WEIGHTS, Descriptor, log_size
from .multiview import (
    DEFAULT_SPEC,
    FeatureSpec,
    _read_cache,
    _write_cache,
    cache_path,
    compute_view_features,
    pool_views,
    views_digest,
)

log = logging.getLogger(__name__)

#: Vectors committed to the catalogue at once while a library's features are computed (a kill loses at most these).
COMMIT_EVERY = 16


def feature_name(spec: FeatureSpec = DEFAULT_SPEC, layers: Sequence[str] = DEFAULT_LAYERS,
                 view_pool: str = DEFAULT_VIEW_POOL) -> str:
    """The catalogue's name of a pooled appearance feature."""
    return f"{spec.key}/{'+'.join(layers)}/{view_pool}"


#: The feature the product's descriptor uses (EfficientNet-Lite1 at 160 px, head average, mean+max over views).
FEATURE = feature_name()


def descriptor_feature(descriptor: Mapping[str, Any]) -> str:
    """The catalogue feature name a stored descriptor (``Descriptor.to_json()``) reads."""
    spec = FeatureSpec(str(descriptor["backbone"]), int(descriptor["input_size"]))
    return feature_name(spec, tuple(descriptor["layers"]), str(descriptor["view_pool"]))


def bundle_view_features(bundle: Bundle, use_cache: bool = True) -> tuple[dict[str, np.ndarray], str]:
    """``(per-view activations {layer: [V, C]}, views digest)`` of one bundle: from its cache when current, else
    computed (and cached when the bundle is a folder). Raises :class:`FeatureError` (or the reading error)."""
    digest = views_digest(bundle)
    path = cache_path(bundle, DEFAULT_SPEC) if use_cache else None
    per = _read_cache(path, digest) if path is not None else None
    if per is None:
        per = compute_view_features(bundle, DEFAULT_SPEC)
        if path is not None:
            _write_cache(path, digest, per)
    return per, digest


def pooled_feature(per_view: Mapping[str, np.ndarray]) -> np.ndarray:
    """The product's :data:`FEATURE` ``[2560]`` float32 of one asset's per-view activations."""
    return pool_views(dict(per_view), DEFAULT_LAYERS, DEFAULT_VIEW_POOL)


def bundle_feature(bundle: Bundle, use_cache: bool = True) -> tuple[np.ndarray, str]:
    """``(vector [2560] float32, views digest)`` of one bundle (:func:`bundle_view_features`, pooled)."""
    per, digest = bundle_view_features(bundle, use_cache)
    return pooled_feature(per), digest


@dataclass
class FeatureReport:
    """What :func:`store_library_features` did."""

    assets: int = 0
    up_to_date: int = 0  # the catalogue's vector was made from the same views
    computed: int = 0  # read from the bundle's cache or computed by the backbone, then stored
    failed: dict[str, str] = field(default_factory=dict)  # asset name -> why
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"feature": FEATURE, "assets": self.assets, "up_to_date": self.up_to_date, "computed": self.computed,
                "failed": dict(self.failed), "seconds": round(self.seconds, 1)}


def store_library_features(catalogue: Any, bundles: Sequence[Bundle],
                           progress: Callable[[int, int, str], None] | None = None) -> FeatureReport:
    """Store the appearance feature of every bundle whose asset is catalogued and whose views changed since its
    vector was stored (or that has none). One asset that fails is reported in ``failed``, never raised; a backbone
    that cannot load fails them all with its message. ``progress(done, total, message)``; an exception it raises
    (a cancel) stops the step, keeping the vectors committed so far."""
    t0 = time.perf_counter()
    report = FeatureReport()
    stored = catalogue.appearance_digests(FEATURE)
    ids = {}
    for b in bundles:
        try:
            ids[b.asset.name] = catalogue.asset_by_name(b.asset.name).id
        except Exception:  # noqa: BLE001 - not catalogued (no code yet): nothing reads its feature
            continue
    todo = [b for b in bundles if b.asset.name in ids]
    report.assets = len(todo)
    pending: dict[int, tuple[np.ndarray, str]] = {}
    backbone_error: str | None = None
    for n, b in enumerate(todo):
        name = b.asset.name
        try:
            digest = views_digest(b)
        except Exception as e:  # noqa: BLE001 - unreadable views: this asset only
            report.failed[name] = f"cannot read its views ({e})"
            continue
        if stored.get(ids[name]) == digest:
            report.up_to_date += 1
            continue
        if backbone_error is None:
            try:
                load_backbone(DEFAULT_SPEC.backbone, DEFAULT_SPEC.input_size)
            except FeatureError as e:
                backbone_error = str(e)
        if backbone_error is not None:
            report.failed[name] = backbone_error
            continue
        if progress is not None:
            progress(n, len(todo), f"appearance feature of {name} ({n + 1}/{len(todo)})")
        try:
            vec, digest = bundle_feature(b)
        except Exception as e:  # noqa: BLE001 - one asset's failure never fails the library
            report.failed[name] = f"{type(e).__name__}: {e}"
            log.warning("no appearance feature for %s: %s", name, e)
            continue
        pending[ids[name]] = (vec, digest)
        report.computed += 1
        if len(pending) >= COMMIT_EVERY:
            catalogue.set_appearance(FEATURE, pending)
            pending = {}
    if pending:
        catalogue.set_appearance(FEATURE, pending)
    if progress is not None:
        progress(len(todo), len(todo), f"appearance features: {report.computed} computed, {report.up_to_date} "
                                       f"up to date, {len(report.failed)} failed")
    report.seconds = time.perf_counter() - t0
    return report


def table_appearance(catalogue: Any, table: Any, feature: str = FEATURE) -> np.ndarray | None:
    """The stored feature of every asset of a code table ``[N, D]``, or None when some asset has none."""
    if catalogue.count("appearance") == 0:
        return None
    vectors, has = catalogue.appearance(feature, table.ids)
    return vectors if len(has) and has.all() else None


def blocks(table: Any, appearance: np.ndarray) -> dict[str, np.ndarray]:
    """The descriptor's blocks of a code table's assets."""
    return {"appearance": appearance, "shape": table.shape, "texture": table.texture, "size": log_size(table.size)}


def fit_descriptor(table: Any, appearance: np.ndarray) -> dict[str, Any]:
    """A :class:`Descriptor` fitted on a library (a code table and its assets' features), as stored with a tag model
    (no tag metric: linear classifiers gain nothing from it)."""
    return Descriptor().fit(blocks(table, appearance)).to_json()


#: The "both" space searches the appearance feature's first 256 principal directions over the library, not its 2,560
#: numbers: 323 numbers a row instead of 2,627 (all-neighbours 4x faster at 10,000 and 100,000 assets, the index 8x
#: smaller), the same precision@10 on Scopia, the default catalogue and the sample library (within 0.3 point;
#: docs/quality_descriptor.md, "The 'both' space at scale").
BOTH_APPEARANCE_DIMS = 256


def both_space(catalogue: Any, table: Any, appearance_dims: int = BOTH_APPEARANCE_DIMS,
               tag_weight: float | None = None) -> dict[str, Any]:
    """Keyword arguments of :class:`~backend.library.similarity.SimilarityIndex` for the "both" space on the
    descriptor's blocks, or ``{}`` (today's codes-only space) when some asset of ``table`` has no stored feature.

    Blocks, at :data:`~.descriptor.DEFAULT_WEIGHTS`: the appearance feature projected on its first
    ``appearance_dims`` principal directions over the library (0 = all of it; an upload's feature, passed whole to
    ``similar_to_code``, is projected with the same basis), shape, texture, log size, and the tag metric
    (:func:`~backend.library.similarity.tag_metric`: a ridge from those blocks to the library's own *artist* tags
    stored in the catalogue, never predicted ones; ``tag_weight`` None = the default weight, 0 = off)."""
    appearance = table_appearance(catalogue, table)
    if appearance is None:
        return {}
    w = DEFAULT_WEIGHTS
    tag_weight = float(w.get("tags", 0.0)) if tag_weight is None else float(tag_weight)
    args = {"appearance": appearance, "appearance_weight": w["appearance"], "shape_weight": w["shape"],
            "texture_weight": w["texture"], "size_weight": w["size"], "appearance_dims": appearance_dims}
    if tag_weight > 0:
        args.update(tags=catalogue.artist_tag_sets(table.ids), tag_weight=tag_weight)
    return args


#: A run folder's shipped appearance features (the starter model's: its training assets have no bundle in a home).
RUN_APPEARANCE_FILE = "appearance.npz"


def write_run_appearance(path: Any, vectors: Mapping[str, np.ndarray]) -> int:
    """Write ``{asset name: vector}`` as a run's :data:`RUN_APPEARANCE_FILE` (float16, data only); returns the count."""
    from shared.atomic import atomic_file

    names = sorted(vectors)
    with atomic_file(path) as f:
        np.savez_compressed(f, feature=np.array(FEATURE), names=np.array(names),
                            vectors=np.stack([np.asarray(vectors[n], np.float32) for n in names]).astype(np.float16)
                            if names else np.zeros((0, 0), np.float16))
    return len(names)


def import_run_appearance(catalogue: Any, run: Any) -> int:
    """Store a run folder's shipped features (:data:`RUN_APPEARANCE_FILE`) for its catalogued assets that have no
    vector of :data:`FEATURE` yet; returns how many (0 without the file, or when it holds another feature)."""
    from pathlib import Path

    path = Path(getattr(run, "run_dir", "") or ".") / RUN_APPEARANCE_FILE
    if not path.is_file():
        return 0
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["feature"]) != FEATURE:
                return 0
            names, vectors = [str(n) for n in z["names"]], z["vectors"].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring %s: %s", path, e)
        return 0
    have = catalogue.appearance_digests(FEATURE)
    rows = {}
    for name, vec in zip(names, vectors, strict=True):
        try:
            aid = catalogue.asset_by_name(name).id
        except Exception:  # noqa: BLE001 - not catalogued: nothing reads it
            continue
        if aid not in have:
            rows[aid] = (vec, "")  # no views digest: an index of this asset's own bundle recomputes it
    if rows:
        catalogue.set_appearance(FEATURE, rows)
    return len(rows)
