"""Inversion: fit the codes of new assets with the decoder frozen.

All assets of a call are fitted together: one Adam optimiser over a ``[B, 64]`` code tensor,
batches of rays drawn across the B assets' own 18 views, samples placed in each asset's visual
hull (carved from all its views), codes initialised at the mean training code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from backend.errors import Cancelled  # re-exported: the one "stopped on request" error
from backend.model.config import Preset
from backend.model.field import LatentField

from .data import ALL_VIEWS, ViewSet, build_rays
from .metrics import evaluate
from .trainer import loss_step

Progress = Callable[[float, str], None]

#: A refinement starts from the instant encoder's code, so it takes this share of the inversion steps (6 held-out
#: assets of the starter model: 50 steps from the encoder's code reached 29.2 dB, the full 150 from the mean code
#: 28.9 dB). The service's refinement and ``index``'s codes of new assets use it.
REFINE_SHARE = 1 / 3


@dataclass
class InversionResult:
    """The fitted code of one asset and how well it reproduces the asset's views.

    ``psnr``: full images on white over all 18 views. ``seconds``: the batch's wall time divided by
    its number of assets.
    """

    shape: np.ndarray  # [32]
    texture: np.ndarray  # [32]
    psnr: float
    seconds: float


def invert_views(
    field: LatentField,
    preset: Preset,
    views: ViewSet,
    init: torch.Tensor,
    steps: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[InversionResult]:
    """Fit one code per asset of ``views`` (on ``init``'s device) starting from ``init [64]`` (shared) or
    ``init [B, 64]`` (one start per asset, e.g. the instant encoder's codes)."""
    t0 = time.perf_counter()
    dev = init.device
    cfg = Preset.from_json(preset.to_json())
    n_assets = len(views.names)
    steps = cfg.train.inversion_steps if steps is None else steps
    cfg.train.rays_per_batch = cfg.train.inversion_rays * n_assets
    cfg.train.empty_points = 0  # the decoder is frozen; empty space is already learned
    rays = build_rays(views, ALL_VIEWS, cfg.train)
    start = init.detach().reshape(1, -1).repeat(n_assets, 1) if init.ndim == 1 else init.detach()
    codes = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([codes], lr=cfg.train.inversion_lr)
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.train.seed)
    was_training = field.training
    flags = [p.requires_grad for p in field.parameters()]
    field.eval()
    for p in field.parameters():
        p.requires_grad_(False)
    try:
        for step in range(steps):
            if cancel is not None and cancel.is_set():
                raise Cancelled("inversion cancelled")
            for g in opt.param_groups:  # decay to a tenth: large steps first, then settle
                g["lr"] = cfg.train.inversion_lr * 0.1 ** (step / max(steps, 1))
            loss, psnr = loss_step(field, codes, rays, cfg, gen, dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None and (step % 10 == 0 or step == steps - 1):
                progress((step + 1) / (steps + 1), f"fitting codes: step {step + 1}/{steps}, {psnr:.1f} dB")
        z = codes.detach()
        sd = cfg.model.shape_dim
        metrics = evaluate(field, z[:, :sd], z[:, sd:], views, rays.grids, ALL_VIEWS, cfg.train.samples_per_ray)
    finally:
        for p, f in zip(field.parameters(), flags, strict=True):
            p.requires_grad_(f)
        field.train(was_training)
    if progress is not None:
        progress(1.0, "codes fitted")
    per = (time.perf_counter() - t0) / max(n_assets, 1)
    zc = z.cpu().numpy()
    return [
        InversionResult(shape=zc[i, :sd].copy(), texture=zc[i, sd:].copy(), psnr=float(metrics["per_asset"][i]), seconds=per)
        for i in range(n_assets)
    ]
