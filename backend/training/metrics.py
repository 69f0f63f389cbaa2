"""Image metrics as the brief defines them: PSNR on full images composited on white, and inside the silhouette."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from backend.model.field import LatentField
from backend.model.renderer import render_images

from .data import ViewSet


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for images in [0, 1] (capped at 100 dB for a perfect match)."""
    return 100.0 if mse <= 1e-10 else -10.0 * math.log10(mse)


def on_white(rgb_premult: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Composite premultiplied colour ``[..., 3]`` with alpha ``[...]`` over a white background."""
    return rgb_premult + (1.0 - alpha)[..., None]


@torch.no_grad()
def evaluate(
    field: LatentField,
    shape: torch.Tensor,
    texture: torch.Tensor,
    views: ViewSet,
    grids: torch.Tensor,
    view_ids: Sequence[int],
    n_samples: int,
) -> dict[str, float | list[float]]:
    """Render ``view_ids`` of every asset with its codes (``[A, 32]`` each) and grid ``[A, G, G, G]``.

    Returns ``psnr`` (full image on white, per-asset PSNR averaged over assets),
    ``psnr_silhouette`` (pixels whose target alpha > 0.5) and ``per_asset`` (full-image PSNRs).
    """
    vi = list(view_ids)
    full, sil = [], []
    for a in range(len(views.names)):
        rgb, alpha = render_images(
            field, shape[a], texture[a], views.c2w[a, vi], views.image_size, grids[a], n_samples
        )
        target = views.rgba(a)[vi]
        pred_w, tgt_w = on_white(rgb, alpha), on_white(target[..., :3], target[..., 3])
        err = ((pred_w - tgt_w) ** 2).mean(-1)  # [V, H, W]
        full.append(psnr_from_mse(float(err.mean())))
        inside = target[..., 3] > 0.5
        if inside.any():
            sil.append(psnr_from_mse(float(err[inside].mean())))
    return {
        "psnr": sum(full) / len(full),
        "psnr_silhouette": sum(sil) / len(sil) if sil else float("nan"),
        "per_asset": full,
    }
