"""Colour statistics of an asset's captured views: what its surface looks like, with its shape left out.

A small, hand-made appearance vector (no backbone) that says which colours an asset has, how they spread, how
much of it catches a highlight and how busy its surface is, read only from the pixels the asset covers. The
silhouette decides which pixels count, never how they are summarised, so two assets of one material and colour
but different shapes get nearly the same vector. That is what the texture half of the codes is asked to carry
(``TrainConfig.texture_distill_weight``, :class:`backend.training.latent_codes.FeatureDistillation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from backend.training.data import straight_rgba

#: Names of the vector's entries, in order.
COLOUR_STAT_NAMES = (
    *(f"mean_{c}" for c in "rgb"), *(f"std_{c}" for c in "rgb"),
    *(f"q{q}_{c}" for q in (10, 50, 90) for c in "rgb"),
    "highlight_fraction", "local_contrast", "luminance_std_in_view", "luminance_spread_over_views",
)
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_COVERED = 0.5  # alpha above which a pixel belongs to the asset


def colour_statistics_of(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha views ``[V, H, W, 4]`` in [0, 1] -> the statistics ``[len(COLOUR_STAT_NAMES)]`` (float32).

    Views where the asset covers no pixel are ignored; an asset invisible in every view gives zeros."""
    rgba = np.asarray(rgba, np.float32)
    mask = rgba[..., 3] > _COVERED  # [V, H, W]
    if not mask.any():
        return np.zeros(len(COLOUR_STAT_NAMES), np.float32)
    rgb = rgba[..., :3]
    px = rgb[mask]  # [P, 3] every covered pixel of every view
    luma = rgb @ _LUMA  # [V, H, W]
    # busy surfaces (grain, pattern, edges between parts) differ from their neighbours; pairs inside the asset only
    both_x, both_y = mask[:, :, 1:] & mask[:, :, :-1], mask[:, 1:, :] & mask[:, :-1, :]
    diffs = np.concatenate([np.abs(np.diff(luma, axis=2))[both_x], np.abs(np.diff(luma, axis=1))[both_y]])
    seen = [v for v in range(len(mask)) if mask[v].any()]
    per_view_mean = np.array([luma[v][mask[v]].mean() for v in seen])
    per_view_std = np.array([luma[v][mask[v]].std() for v in seen])
    out = [px.mean(0), px.std(0), *np.quantile(px, [0.1, 0.5, 0.9], axis=0),
           [(px @ _LUMA > 0.9).mean(), diffs.mean() if len(diffs) else 0.0, per_view_std.mean(), per_view_mean.std()]]
    return np.concatenate([np.ravel(o) for o in out]).astype(np.float32)


def colour_statistics(bundles: Sequence, progress: Callable[[int], object] | None = None) -> np.ndarray:
    """The statistics ``[A, len(COLOUR_STAT_NAMES)]`` of each bundle's views (an undecodable view raises
    :class:`backend.model.errors.ModelError` saying to capture the asset again, as training does)."""
    out = []
    for b in bundles:
        out.append(colour_statistics_of(straight_rgba(b).numpy()))
        if progress is not None:
            progress(1)  # one asset done
    return np.stack(out)
