"""Auto-decoder training: one learned 64-number code per asset, jointly with the decoder.

Loss per batch of rays drawn across all assets (rays that miss the asset's visual hull are
dropped: their predicted alpha is 0 by construction and their target alpha ~0):

* RGB: MSE on premultiplied colour (so background pixels ask for black *and* transparency),
* alpha: MSE between rendered opacity and the view's alpha (silhouette supervision),
* empty space: random points outside the hull are pushed to zero density, so the model's own
  density grid (used to render codes of no asset) has no floaters,
* code regularisation: L2 on the batch's codes (keeps the latent space compact, as in DeepSDF).

Two views per asset (``shared.rig.HELD_OUT_VIEWS``) never enter training; the run reports
PSNR on them. Training resumes exactly from ``checkpoint.pt`` (see :mod:`.checkpoint`).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from backend.model.config import Preset, get_preset
from backend.model.errors import ModelError
from backend.model.field import LatentField
from backend.model.renderer import render_rays
from shared import rig

from . import checkpoint as C
from .data import TRAIN_VIEWS, RaySet, build_rays, find_bundles, load_views, read_bundles
from .latent_codes import CodeTable, FeatureDistillation
from .metrics import evaluate, on_white, psnr_from_mse

#: Training views used to report training PSNR (cheap: two views, one per outer ring).
TRAIN_EVAL_VIEWS = (0, 13)


@dataclass
class TrainSummary:
    """What a training session achieved (also written to ``RUN_DIR/metrics.json``)."""

    run_dir: str
    model_id: str
    preset: str
    assets: int
    image_size: int
    step: int
    seconds: float
    loss: float
    heldout_psnr: float
    heldout_psnr_silhouette: float
    train_psnr: float
    samples_per_second: float
    rays_kept_fraction: float
    dropped_alpha_fraction: float
    history: list[list[float]] = field(default_factory=list)


class TrainingStopped(Exception):  # noqa: N818 - a request, not an error
    """Raised by an ``on_step`` callback to stop training; the run is checkpointed first (resumable)."""


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given (``cpu``, ``cuda``, ``cuda:1``), else CUDA when available, else CPU."""
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model(
    preset: Preset, num_assets: int, device: torch.device, features: np.ndarray | None = None
) -> tuple[LatentField, CodeTable]:
    """A fresh decoder and a code table ``[A, 64]`` (small Gaussian init, as auto-decoders do; with
    ``preset.train.code_head`` the codes are predicted from ``features [A, F]``, see :mod:`.latent_codes`)."""
    torch.manual_seed(preset.train.seed)
    field_ = LatentField(preset.model).to(device)
    tc, mc = preset.train, preset.model
    codes = CodeTable(num_assets, mc.shape_dim, mc.texture_dim, tc.code_init_std, tc.code_head, features,
                      tc.head_width).to(device)
    return field_, codes


def build_distillation(cfg: Preset, features: np.ndarray | None, device: torch.device) -> FeatureDistillation | None:
    """The feature-distillation loss of ``cfg.train`` (None when its weight is 0)."""
    tc, sd = cfg.train, cfg.model.shape_dim
    if tc.distill_weight <= 0:
        return None
    halves = {"shape": slice(0, sd), "texture": slice(sd, None), "both": slice(0, None)}
    if tc.distill_half not in halves or features is None:
        raise ModelError(f"distill_half must be one of {', '.join(halves)} (got {tc.distill_half!r})")
    # (features is None only when a caller passes none: train() always computes them for a distilled run)
    width = {"shape": sd, "texture": cfg.model.texture_dim, "both": sd + cfg.model.texture_dim}[tc.distill_half]
    return FeatureDistillation(features, tc.distill_dims, halves[tc.distill_half], width).to(device)


def code_features(bundles: list[Any], names: list[str], views: str = "colour", show_progress: bool = True) -> np.ndarray:
    """The pretrained multi-view feature ``[A, F]`` of the run's assets in ``names`` order (cached per bundle), of
    their ``views`` (``"colour"`` or ``"silhouette"``, see :class:`backend.features.multiview.FeatureSpec`)."""
    # heavy (the backbone): imported only by runs that use the feature
    from backend.features.multiview import FeatureSpec, pool_views, view_features

    by_name = {b.asset.name: b for b in bundles}
    spec = FeatureSpec(views=views)
    with tqdm(total=len(names), desc=f"features ({views})", unit="asset", file=sys.stderr,
              disable=not show_progress) as bar:
        per_view = view_features([by_name[n] for n in names], spec, progress=lambda done, _total: bar.update(1))
    # pooled from the cache's float16 values even when just computed: a run is the same with or without a cache
    return np.stack([pool_views({k: v.astype(np.float16).astype(np.float32) for k, v in p.items()}) for p in per_view])


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def loss_step(
    field_: LatentField, codes: torch.Tensor, rays: RaySet, preset: Preset, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, float]:
    """One batch's total loss and its PSNR on white (``codes [A, 64]`` is the full code table)."""
    cfg, sd = preset.train, preset.model.shape_dim
    b = rays.sample(cfg.rays_per_batch, gen)
    z = codes[b.asset]  # [N, 64]
    with _autocast(device, cfg.mixed_precision):
        rgb, alpha = render_rays(
            field_, b.origins, b.dirs, b.t_min, b.t_max, z[:, :sd], z[:, sd:], cfg.samples_per_ray, gen
        )
    rgb, alpha = rgb.float(), alpha.float()
    loss_rgb = ((rgb - b.rgba[:, :3]) ** 2).mean()
    loss_alpha = ((alpha - b.rgba[:, 3]) ** 2).mean()
    loss = loss_rgb + cfg.alpha_weight * loss_alpha + cfg.code_reg * (z**2).sum(-1).mean()
    if cfg.sampling == "hull" and cfg.empty_points > 0:
        n = cfg.empty_points
        a = torch.randint(0, rays.grids.shape[0], (n,), generator=gen, device=device)
        pts = torch.rand((n, 3), generator=gen, device=device) * 2.0 - 1.0
        empty = ~_lookup_per_point(rays.grids, a, pts)
        with _autocast(device, cfg.mixed_precision):
            sigma = field_.density(pts[:, None, :], codes[a, :sd])[:, 0]
        cell_alpha = 1.0 - torch.exp(-sigma.float() * (2.0 / cfg.samples_per_ray))
        loss = loss + cfg.empty_weight * (cell_alpha * empty).mean()
    with torch.no_grad():
        mse = ((on_white(rgb, alpha) - on_white(b.rgba[:, :3], b.rgba[:, 3])) ** 2).mean()
    return loss, psnr_from_mse(float(mse))


def _lookup_per_point(grids: torch.Tensor, asset: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Occupancy ``[N]`` of points ``[N, 3]`` in their own asset's grid (``grids [A, G, G, G]``, ``asset [N]``)."""
    g = grids.shape[1]
    idx = torch.floor((pts + 1.0) * 0.5 * g).long().clamp(0, g - 1)
    return grids[asset, idx[:, 0], idx[:, 1], idx[:, 2]]


def train(
    bundles_dir: str | Path,
    out: str | Path,
    preset: str | None = None,
    resume: bool = False,
    steps: int | None = None,
    minutes: float | None = None,
    device: str | None = None,
    show_progress: bool = True,
    overrides: dict[str, Any] | None = None,
    session_steps: int | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainSummary:
    """Train (or, with ``resume``, continue) a run on every bundle under ``bundles_dir``; writes ``out``.

    ``steps`` is the total step count of the run; ``minutes`` a budget of total training time
    (earlier sessions of a resumed run count). Whichever comes first ends training; the
    learning rate decays over that horizon. ``overrides`` sets :class:`TrainConfig` fields of a
    new run, or :class:`ModelConfig` fields as ``"model.NAME"`` (benchmarks). ``session_steps`` stops
    this call after that many steps while the schedule still spans ``steps`` (train in chunks; ``resume``
    continues). ``on_step(step, total,
    seconds_per_step)`` is called every 10 steps (progress/ETA for pipelines). Returns a :class:`TrainSummary`.
    """
    out = Path(out)
    ckpt_path = out / C.CHECKPOINT
    dev = pick_device(device)
    state: dict[str, Any] | None = None
    if ckpt_path.exists():
        if not resume:
            raise ModelError(
                f"{out} already holds a trained run; pass --resume to continue it or choose another --out folder"
            )
        state = C.load_checkpoint(ckpt_path, expected_preset=preset, map_location=dev)
        cfg = Preset.from_json(state["config"])
    else:
        if resume and show_progress:
            tqdm.write(f"no checkpoint in {out} yet: starting a new run", file=sys.stderr)
        cfg = get_preset(preset or "cpu-small")
        for k, v in (overrides or {}).items():
            # "model.NAME" sets a ModelConfig field (ablations: code halves, view-direction input), else TrainConfig
            target, name = (cfg.model, k[len("model."):]) if k.startswith("model.") else (cfg.train, k)
            if not hasattr(target, name):
                raise ModelError(f"unknown {'model' if target is cfg.model else 'training'} option {name!r}")
            setattr(target, name, v)
    if steps is not None:
        if steps < 1:
            raise ModelError(f"--steps must be at least 1, got {steps}")
        cfg.train.steps = steps
    tc = cfg.train

    paths = find_bundles(bundles_dir)
    bundles = read_bundles(paths)
    with tqdm(total=len(bundles), desc="loading views", unit="asset", file=sys.stderr, disable=not show_progress) as bar:
        views = load_views(bundles, tc.image_size, progress=bar.update).to(dev)
    if state is not None and list(state["names"]) != views.names:
        raise ModelError(
            f"{bundles_dir}: the library changed since {ckpt_path} was written "
            f"({len(views.names)} assets now, {len(state['names'])} in the run); resume with the same library "
            f"or train a new run in another --out folder"
        )
    rays = build_rays(views, TRAIN_VIEWS, tc)
    features = code_features(bundles, views.names, "colour", show_progress) if tc.code_head != "none" else None
    distilled = None
    if tc.distill_weight > 0:
        distilled = code_features(bundles, views.names, tc.distill_views, show_progress)
    field_, codes = build_model(cfg, len(views.names), dev, features)
    distill = build_distillation(cfg, distilled, dev)
    groups = [{"params": field_.parameters(), "lr": tc.lr}, {"params": [codes.free], "lr": tc.code_lr}]
    extra = [*(codes.head.parameters() if codes.head is not None else []),
             *(distill.parameters() if distill is not None else [])]
    if extra:  # the head and the read-out learn at the decoder's rate, the codes (or offsets) at the codes'
        groups.append({"params": extra, "lr": tc.lr})
    opt = torch.optim.Adam(groups)
    gen = torch.Generator(device=dev)
    gen.manual_seed(tc.seed)
    model_id, step, elapsed, history = str(uuid.uuid4()), 0, 0.0, []
    if state is not None:
        field_.load_state_dict(state["field"])
        if "code_table" in state:
            codes.load_state_dict(state["code_table"])
        else:  # a run of free codes (older checkpoints hold only the table)
            codes.free.data.copy_(state["codes"].to(dev))
        if distill is not None:
            distill.load_state_dict(state["distill"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"]["generator"].cpu())  # generator states are CPU byte tensors, even for CUDA
        torch.set_rng_state(state["rng"]["torch"].cpu())
        model_id, step, elapsed, history = state["model_id"], int(state["step"]), float(state["elapsed"]), state["history"]

    def snapshot(metrics: dict[str, Any] | None = None) -> None:
        st = {
            "model_id": model_id,
            "preset": cfg.name,
            "config": cfg.to_json(),
            "names": views.names,
            "assets": [asdict(a) for a in views.assets],
            "field": field_.state_dict(),
            "codes": codes().detach().cpu(),
            "code_table": {k: v.detach().cpu() for k, v in codes.state_dict().items()},
            **({"distill": {k: v.detach().cpu() for k, v in distill.state_dict().items()}} if distill is not None else {}),
            "optimizer": opt.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state()},
            "history": history,
            "metrics": metrics or {},
        }
        C.save_checkpoint(ckpt_path, st)
        write_run_files(out, cfg, model_id, views.names, codes().detach().cpu().numpy(), cfg.model.shape_dim)

    budget = minutes * 60.0 if minutes else None
    samples_per_step = tc.rays_per_batch * tc.samples_per_ray + (tc.empty_points if tc.sampling == "hull" else 0)
    run_samples, run_seconds, loss_v, psnr_v = 0, 0.0, float("nan"), float("nan")
    bar = tqdm(  # a time-budgeted run with an open-ended step count shows a plain counter
        total=tc.steps if tc.steps < 10**7 else None,
        initial=step, desc="training", unit="step", file=sys.stderr, disable=not show_progress
    )
    field_.train()
    stop = tc.steps if session_steps is None else min(tc.steps, step + session_steps)
    try:
        while step < stop and (budget is None or elapsed < budget):
            t0 = time.perf_counter()
            progress = max(step / tc.steps, elapsed / budget if budget else 0.0)
            decay = tc.lr_final ** min(progress, 1.0)
            for g, base in zip(opt.param_groups, (tc.lr, tc.code_lr, tc.lr), strict=False):
                g["lr"] = base * decay
            loss, psnr = loss_step(field_, codes(), rays, cfg, gen, dev)
            if codes.head is not None:
                loss = loss + tc.offset_reg * codes.offset_penalty()
            if distill is not None:
                loss = loss + tc.distill_weight * distill(codes())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_v, psnr_v = float(loss.detach()), psnr
            if not np.isfinite(loss_v):
                raise ModelError(f"training diverged at step {step} (loss {loss_v}); lower the learning rate")
            dt = time.perf_counter() - t0
            elapsed += dt
            run_seconds += dt
            run_samples += samples_per_step
            if step % 10 == 0 or step == 1 or step == stop:  # the last step of a session too
                history.append([step, loss_v, psnr_v])
                bar.set_postfix(loss=f"{loss_v:.4f}", psnr=f"{psnr_v:.1f}dB")
                if on_step is not None:
                    on_step(step, tc.steps, run_seconds / max(run_samples / samples_per_step, 1))
            bar.update(1)
            if step % tc.checkpoint_every == 0:
                snapshot()
    except (KeyboardInterrupt, TrainingStopped):  # Ctrl-C / a pipeline's cancel: keep every finished step
        bar.close()
        snapshot()
        raise
    bar.close()

    field_.eval()
    sd = cfg.model.shape_dim
    z = codes().detach()
    held = evaluate(field_, z[:, :sd], z[:, sd:], views, rays.grids, rig.HELD_OUT_VIEWS, tc.samples_per_ray)
    trained = evaluate(field_, z[:, :sd], z[:, sd:], views, rays.grids, TRAIN_EVAL_VIEWS, tc.samples_per_ray)
    summary = TrainSummary(
        run_dir=str(out),
        model_id=model_id,
        preset=cfg.name,
        assets=len(views.names),
        image_size=tc.image_size,
        step=step,
        seconds=elapsed,
        loss=loss_v,
        heldout_psnr=float(held["psnr"]),
        heldout_psnr_silhouette=float(held["psnr_silhouette"]),
        train_psnr=float(trained["psnr"]),
        samples_per_second=run_samples / run_seconds if run_seconds > 0 else 0.0,
        rays_kept_fraction=rays.count / max(rays.total, 1),
        dropped_alpha_fraction=rays.missed_alpha,
        history=history,
    )
    metrics = {k: v for k, v in asdict(summary).items() if k != "history"}
    metrics["heldout_per_asset"] = dict(zip(views.names, held["per_asset"], strict=True))
    snapshot(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return summary


def write_run_files(out: Path, cfg: Preset, model_id: str, names: list[str], codes: np.ndarray, sd: int) -> None:
    """``config.json`` and ``codes.npz`` (``names``, ``shape``, ``texture``, ``model_id``) beside the checkpoint."""
    (out / "config.json").write_text(json.dumps({**cfg.to_json(), "model_id": model_id}, indent=1))
    tmp = out / ".codes.tmp.npz"
    np.savez(tmp, names=np.array(names), shape=codes[:, :sd], texture=codes[:, sd:], model_id=np.array(model_id))
    tmp.replace(out / "codes.npz")
