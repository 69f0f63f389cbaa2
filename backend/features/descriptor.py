"""The product's asset descriptor: the pretrained multi-view feature next to the codes and the metric size.

Tags and the "Both" similarity space rest on it. Each block (appearance feature, shape code, texture
code, log size) is centred and scaled to unit RMS norm over the library, then weighted, and the blocks are
concatenated: a block's weight is its share of a Euclidean distance, whatever its dimension (a 3-number
size block weighs as much as a 1280-number feature block at weight 1). Linear tag classifiers standardise
per dimension anyway, so the weights only shape retrieval.

    d = Descriptor().fit({"appearance": a, "shape": s, "texture": t, "size": log_size(sz)})
    x = d.transform({...})          # [N, sum of block dims]
    d.to_json() / Descriptor.from_json(...)   # stored with a model; new assets are transformed, not refitted

With a ``"tags"`` weight, ``fit(blocks, tags=...)`` also learns a metric from the library's own tags: a ridge
regression from the (weighted) blocks to the tag indicators of the tagged assets, whose predicted tag scores
become one more block. Assets then sit near assets that would get the same tags, whatever their room or
colour. Linear tag classifiers gain nothing from it (it is a linear map of the same features): it shapes
retrieval only, so tag classifiers use the descriptor without it (``transform(..., with_tags=False)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backbone import FeatureError
from .multiview import DEFAULT_SPEC, FeatureSpec

# Block weights chosen on Scopia + the Sweet Home 3D default catalogue (bench/quality.py; docs/quality_features.md).
# Retrieval ("Both" similarity): size counts twice as much as the appearance feature, the tag metric as much.
DEFAULT_WEIGHTS: dict[str, float] = {"appearance": 10.0, "shape": 2.5, "texture": 1.0, "size": 20.0, "tags": 10.0}
# Tag classifiers (logistic regression, C=1, on these features as they are: no per-dimension z-scores, which
# would blow up the many near-silent feature dimensions): the weights set each block's regularisation.
CLASSIFIER_WEIGHTS: dict[str, float] = {"appearance": 10.0, "shape": 2.5, "texture": 1.0, "size": 10.0}
DEFAULT_LAYERS: tuple[str, ...] = ("head_avg",)
DEFAULT_VIEW_POOL = "meanmax"


def log_size(size: np.ndarray) -> np.ndarray:
    """log of bounding-box sizes ``[N, 3]`` in metres; a missing size (0) counts as 1 cm."""
    return np.log(np.maximum(np.asarray(size, np.float64), 0.01))


@dataclass
class Descriptor:
    """Weighted, normalised blocks; ``fit`` learns each block's mean and RMS norm on a library."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    classifier_weights: dict[str, float] = field(default_factory=lambda: dict(CLASSIFIER_WEIGHTS))
    spec: FeatureSpec = DEFAULT_SPEC
    layers: tuple[str, ...] = DEFAULT_LAYERS
    view_pool: str = DEFAULT_VIEW_POOL
    means: dict[str, np.ndarray] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    ridge: float = 1.0  # tag metric: ridge penalty relative to the mean eigenvalue of the blocks' Gram matrix
    tag_names: list[str] = field(default_factory=list)
    tag_map: np.ndarray | None = None  # [D, T]: weighted blocks -> centred tag scores
    tag_scale: float = 1.0

    def _blocks(self, blocks: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> list[str]:
        names = [n for n, w in (weights or self.weights).items() if w > 0 and n != "tags"]
        missing = [n for n in names if n not in blocks]
        if missing:
            raise FeatureError(f"descriptor blocks missing: {', '.join(missing)}")
        return names

    def fit(self, blocks: Mapping[str, np.ndarray], tags: Sequence[Sequence[str] | None] | None = None,
            min_positives: int = 3) -> Descriptor:
        """Learn each block's mean and RMS norm from the library's assets (``{name: [N, D]}``); with a ``"tags"``
        weight and ``tags`` (per asset, None = untagged, not a negative), the tag metric too."""
        extra = [n for n, w in self.classifier_weights.items() if w > 0 and n in blocks]
        for name in dict.fromkeys(self._blocks(blocks) + extra):
            x = np.asarray(blocks[name], np.float64)
            self.means[name] = x.mean(0)
            rms = float(np.sqrt(((x - self.means[name]) ** 2).sum(1).mean()))
            self.scales[name] = rms if rms > 1e-12 else 1.0
        self.tag_map, self.tag_names = None, []
        if self.weights.get("tags", 0) > 0 and tags is not None:
            self._fit_tags(self.transform(blocks, with_tags=False).astype(np.float64), tags, min_positives)
        return self

    def _fit_tags(self, x: np.ndarray, tags: Sequence[Sequence[str] | None], min_positives: int) -> None:
        rows = np.array([t is not None for t in tags])
        labelled = [set(t) for t in tags if t is not None]
        vocab = sorted({t for ts in labelled for t in ts})
        counts = {t: sum(t in ts for ts in labelled) for t in vocab}
        vocab = [t for t in vocab if min_positives <= counts[t] <= len(labelled) - min_positives]
        if not vocab:
            return
        y = np.array([[t in ts for t in vocab] for ts in labelled], np.float64)
        y -= y.mean(0)
        xr = x[rows]
        gram = xr @ xr.T
        lam = self.ridge * float(np.trace(gram)) / len(xr)
        self.tag_map = xr.T @ np.linalg.solve(gram + lam * np.eye(len(xr)), y)  # dual ridge: [D, T]
        self.tag_names = vocab
        z = x @ self.tag_map
        rms = float(np.sqrt(((z - z.mean(0)) ** 2).sum(1).mean()))
        self.tag_scale = rms if rms > 1e-12 else 1.0

    def transform(self, blocks: Mapping[str, np.ndarray], with_tags: bool = True) -> np.ndarray:
        """Descriptors ``[N, D]`` float32 of assets given as ``{name: [N, D_name]}`` (+ the tag block if fitted)."""
        if not self.means:
            raise FeatureError("the descriptor is not fitted to a library yet")
        out = [(np.asarray(blocks[n], np.float64) - self.means[n]) * (self.weights[n] / self.scales[n])
               for n in self._blocks(blocks)]
        if with_tags and self.tag_map is not None:
            base = np.concatenate(out, axis=1)
            out.append(base @ self.tag_map * (self.weights["tags"] / self.tag_scale))
        return np.concatenate(out, axis=1).astype(np.float32)

    def classifier_features(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """What linear tag classifiers should see ``[N, D]``: the blocks at :data:`CLASSIFIER_WEIGHTS`, used as
        they are (no per-dimension standardisation)."""
        if not self.means:
            raise FeatureError("the descriptor is not fitted to a library yet")
        w = self.classifier_weights
        return np.concatenate([(np.asarray(blocks[n], np.float64) - self.means[n]) * (w[n] / self.scales[n])
                               for n in self._blocks(blocks, w)], axis=1).astype(np.float32)

    def fit_transform(self, blocks: Mapping[str, np.ndarray], tags: Sequence[Sequence[str] | None] | None = None,
                      with_tags: bool = True) -> np.ndarray:
        return self.fit(blocks, tags).transform(blocks, with_tags)

    def to_json(self) -> dict[str, Any]:
        return {"weights": self.weights, "classifier_weights": self.classifier_weights, "backbone": self.spec.backbone, "input_size": self.spec.input_size,
                "feature_key": self.spec.key, "layers": list(self.layers), "view_pool": self.view_pool,
                "means": {k: v.tolist() for k, v in self.means.items()}, "scales": self.scales,
                "ridge": self.ridge, "tag_names": self.tag_names,
                "tag_map": None if self.tag_map is None else self.tag_map.tolist(), "tag_scale": self.tag_scale}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        spec = FeatureSpec(data["backbone"], int(data["input_size"]))
        if data.get("feature_key", spec.key) != spec.key:
            raise FeatureError(f"descriptor made with features {data['feature_key']!r}, this version computes "
                               f"{spec.key!r}; refit the descriptor on the library")
        tag_map = data.get("tag_map")
        return cls(dict(data["weights"]), dict(data.get("classifier_weights", CLASSIFIER_WEIGHTS)), spec,
                   tuple(data["layers"]), data["view_pool"],
                   {k: np.asarray(v, np.float64) for k, v in data["means"].items()}, dict(data["scales"]),
                   float(data.get("ridge", 1.0)), list(data.get("tag_names", [])),
                   None if tag_map is None else np.asarray(tag_map, np.float64), float(data.get("tag_scale", 1.0)))
