"""The multi-view appearance feature: a pretrained backbone over an asset's captured views, pooled per view and
over the views, computed once per bundle and cached next to it.

    spec = FeatureSpec("efficientnet-lite1", 160)
    per_view = view_features(bundles, spec)             # [{"head_avg": [V, 1280], ...}] (cached)
    x = asset_features(bundles, spec)                   # [N, 1280]: head average-pooled, mean over views

Views are composited on white (the benchmark's and the renders' convention), upsampled to the backbone's
input size and normalised to [-1, 1] as EfficientNet-Lite was trained. The cache
(``<bundle>/features/<spec.key>.npz``) stores the per-view pooled activations of every recorded layer, so any
pooling over layers and views is free once computed; it is keyed by backbone, input size and preprocessing
version, and holds a digest of the views so a re-captured asset is recomputed.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from backend.training.data import straight_rgba
from shared.atomic import atomic_file
from shared.bundle import Bundle

from .backbone import FeatureError, load_backbone

PREPROCESSING = "white-bilinear-v1"  # bump when the image preparation changes: old caches are then ignored
CACHE_DIR = "features"
VIEW_POOLS = ("mean", "max", "meanmax")
VIEW_MODES = ("colour", "silhouette")


@dataclass(frozen=True)
class FeatureSpec:
    """Which backbone at which input size; ``key`` names the cache file (version included)."""

    backbone: str = "efficientnet-lite1"
    input_size: int = 160
    #: "colour": the views as captured; "silhouette": only their alpha, a black shape on white (geometry alone, for
    #: the shape half of the codes: no colour or material reaches it).
    views: str = "colour"

    @property
    def key(self) -> str:
        mode = "" if self.views == "colour" else f"-{self.views}"
        return f"{self.backbone}-{self.input_size}px-{PREPROCESSING}{mode}"


DEFAULT_SPEC = FeatureSpec()


def views_digest(bundle: Bundle) -> str:
    """SHA-1 of the bundle's view PNGs in order: changes whenever the asset is captured differently."""
    h = hashlib.sha1()
    for i in range(len(bundle.frames)):
        h.update(bundle.image_bytes(i))
    return h.hexdigest()


def views_on_white(bundle: Bundle, input_size: int, views: str = "colour") -> torch.Tensor:
    """The bundle's views ``[V, 3, S, S]`` on white (``views="silhouette"``: black where the asset is), resized to
    ``input_size``, normalised to [-1, 1]."""
    if views not in VIEW_MODES:
        raise FeatureError(f"unknown view mode {views!r}; use one of {', '.join(VIEW_MODES)}")
    return images_on_white(straight_rgba(bundle, FeatureError), input_size, silhouette=views == "silhouette")


def images_on_white(rgba: torch.Tensor, input_size: int, silhouette: bool = False) -> torch.Tensor:
    """Straight-alpha images ``[V, H, W, 4]`` in [0, 1] -> the backbone's input ``[V, 3, S, S]``: composited on white
    (``silhouette``: black where the object is), resized bilinearly to ``input_size``, normalised to [-1, 1]. Every
    picture the backbone sees goes through here (captured views, the image query's picture)."""
    a = rgba.permute(0, 3, 1, 2)  # [V, 4, H, W]
    rgb = torch.zeros_like(a[:, :3]) if silhouette else a[:, :3]
    x = rgb * a[:, 3:] + (1 - a[:, 3:])
    if x.shape[-1] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > input_size).clamp(0, 1)
    return (x - 0.5) / 0.5


def cache_path(bundle: Bundle, spec: FeatureSpec) -> Path | None:
    """Where the bundle's features are cached (None: a bundle not read from a folder is not cached)."""
    if bundle.root is None or not bundle.root.is_dir():
        return None
    return bundle.root / CACHE_DIR / f"{spec.key}.npz"


def _read_cache(path: Path, digest: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["views_digest"]) != digest:
                return None
            return {k: z[k].astype(np.float32) for k in z.files if k != "views_digest"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # missing, partial or foreign: recompute


def _write_cache(path: Path, digest: str, feats: dict[str, np.ndarray]) -> None:
    """Atomic write (temp file + rename): a killed run never leaves a half-written cache."""
    try:
        with atomic_file(path) as f:  # mode 0644 under umask 022, like every file of a home
            np.savez(f, views_digest=np.array(digest), **{k: v.astype(np.float16) for k, v in feats.items()})
    except OSError:
        pass  # a read-only library still works, only slower


def compute_view_features(bundle: Bundle, spec: FeatureSpec = DEFAULT_SPEC) -> dict[str, np.ndarray]:
    """Per-view pooled activations ``{layer: [V, C]}`` of one bundle (no cache)."""
    net = load_backbone(spec.backbone, spec.input_size)
    pooled = net(views_on_white(bundle, spec.input_size, spec.views))
    return {k: v.numpy() for k, v in pooled.features.items()}


def view_features(bundles: Sequence[Bundle], spec: FeatureSpec = DEFAULT_SPEC, use_cache: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> list[dict[str, np.ndarray]]:
    """Per-view pooled activations of every bundle, read from the cache or computed (and cached)."""
    out = []
    for n, b in enumerate(bundles):
        path = cache_path(b, spec) if use_cache else None
        digest = views_digest(b) if path is not None else ""
        feats = _read_cache(path, digest) if path is not None else None
        if feats is None:
            feats = compute_view_features(b, spec)
            if path is not None:
                _write_cache(path, digest, feats)
        out.append(feats)
        if progress is not None:
            progress(n + 1, len(bundles))
    return out


def pool_views(per_view: dict[str, np.ndarray], layers: Sequence[str] = ("head_avg",),
               view_pool: str = "mean") -> np.ndarray:
    """One vector from per-view features: the chosen layers concatenated, pooled over views (mean, max or both)."""
    if view_pool not in VIEW_POOLS:
        raise FeatureError(f"unknown view pooling {view_pool!r}; use one of {', '.join(VIEW_POOLS)}")
    missing = [layer for layer in layers if layer not in per_view]
    if missing:
        raise FeatureError(f"layers {missing} are not recorded; recorded: {', '.join(per_view)}")
    x = np.concatenate([per_view[layer] for layer in layers], axis=1)
    parts = {"mean": [x.mean(0)], "max": [x.max(0)], "meanmax": [x.mean(0), x.max(0)]}[view_pool]
    return np.concatenate(parts).astype(np.float32)


def asset_features(bundles: Sequence[Bundle], spec: FeatureSpec = DEFAULT_SPEC,
                   layers: Sequence[str] = ("head_avg",), view_pool: str = "mean", use_cache: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """One feature vector per asset ``[N, D]`` float32 (see :func:`pool_views`)."""
    per = view_features(bundles, spec, use_cache=use_cache, progress=progress)
    return np.stack([pool_views(p, layers, view_pool) for p in per])
