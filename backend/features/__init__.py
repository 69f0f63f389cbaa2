"""Pretrained multi-view appearance features of captured assets (see :mod:`backend.features.multiview`)."""

from .backbone import BACKBONES, FeatureError, load_backbone, weights_file
from .multiview import (
    DEFAULT_SPEC,
    FeatureSpec,
    asset_features,
    cache_path,
    pool_views,
    view_features,
    views_on_white,
)

__all__ = ["BACKBONES", "DEFAULT_SPEC", "FeatureError", "FeatureSpec", "asset_features", "cache_path",
           "load_backbone", "pool_views", "view_features", "views_on_white", "weights_file"]
