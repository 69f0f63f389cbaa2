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

Training grows with the library: a new run's step count follows :func:`backend.model.config.steps_for_library`
(an explicit ``steps`` wins), and a library of more than ``resident_assets`` assets trains in chunks streamed from
disk (:class:`.data.ChunkSchedule`, :class:`.data.ChunkStream`), so memory does not grow with the library.
:func:`plan_training` measures the step time and projects a run's duration before it starts.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from backend.model.config import STEPS_RULE, Preset, get_preset, steps_for_library
from backend.model.errors import ModelError
from backend.model.field import LatentField
from backend.model.renderer import render_rays
from shared import rig

from . import checkpoint as C
from .data import (
    TRAIN_VIEWS,
    AssetCache,
    ChunkSchedule,
    ChunkStream,
    RaySet,
    ViewSet,
    build_rays,
    find_bundles,
    library_names,
    load_views,
    read_bundles,
    record_views,
)
from .latent_codes import CodeTable, Distillations, FeatureDistillation
from .metrics import evaluate, on_white, psnr_from_mse

#: Training views used to report training PSNR (cheap: two views, one per outer ring).
TRAIN_EVAL_VIEWS = (0, 13)
#: Per-asset records of a chunked run (see :class:`.data.AssetCache`), inside the run folder; deleted when it ends.
CACHE_DIR = ".train_cache"


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
    steps_rule: str = ""  # how the run's step count was chosen (STEPS_RULE, or "explicit")
    resident_assets: int = 0  # the limit: assets whose views and rays may be in memory at once
    resident_peak: int = 0  # the most that were (all of them for a library within the limit)
    chunk_assets: int = 0  # assets per chunk (0: the whole library at once)
    chunks: int = 0  # chunks per round
    rounds: int = 0  # rounds over the library (0: whole library, or an open-ended run)
    chunk_wait_seconds: float = 0.0  # time training waited for a chunk to be ready


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


def build_distillation(cfg: Preset, features: np.ndarray | None, device: torch.device,
                       colour_stats: np.ndarray | None = None) -> Distillations | None:
    """The distillation losses of ``cfg.train`` (None when every weight is 0): the pretrained ``features [A, F]``
    into ``distill_half``, and the ``colour_stats [A, C]`` into the texture half."""
    tc, sd, td = cfg.train, cfg.model.shape_dim, cfg.model.texture_dim
    parts: dict[str, tuple[float, FeatureDistillation]] = {}
    if tc.distill_weight > 0:
        halves = {"shape": slice(0, sd), "texture": slice(sd, None), "both": slice(0, None)}
        if tc.distill_half not in halves or features is None:
            raise ModelError(f"distill_half must be one of {', '.join(halves)} (got {tc.distill_half!r})")
        # (features is None only when a caller passes none: train() always computes them for a distilled run)
        width = {"shape": sd, "texture": td, "both": sd + td}[tc.distill_half]
        parts["shape"] = (tc.distill_weight, FeatureDistillation(features, tc.distill_dims, halves[tc.distill_half],
                                                                 width, tc.distill_target))
    if tc.texture_distill_weight > 0:
        if colour_stats is None:
            raise ModelError("texture_distill_weight needs the colour statistics of the run's assets")
        parts["texture"] = (tc.texture_distill_weight, FeatureDistillation(colour_stats, tc.distill_dims,
                                                                           slice(sd, None), td, tc.distill_target))
    return Distillations(parts).to(device) if parts else None


#: Assets whose per-view features :func:`code_features` holds at once (only the pooled ``[A, F]`` is kept).
FEATURE_BATCH = 256


def code_features(bundles: list[Any], names: list[str], views: str = "colour", show_progress: bool = True) -> np.ndarray:
    """The pretrained multi-view feature ``[A, F]`` of the run's assets in ``names`` order (cached per bundle), of
    their ``views`` (``"colour"`` or ``"silhouette"``, see :class:`backend.features.multiview.FeatureSpec`)."""
    # heavy (the backbone): imported only by runs that use the feature
    from backend.features.multiview import FeatureSpec, pool_views, view_features

    by_name = {b.asset.name: b for b in bundles}
    spec = FeatureSpec(views=views)
    pooled = []
    with tqdm(total=len(names), desc=f"features ({views})", unit="asset", file=sys.stderr,
              disable=not show_progress) as bar:
        for lo in range(0, len(names), FEATURE_BATCH):  # per-view features of a batch at a time: memory bounded
            per_view = view_features([by_name[n] for n in names[lo:lo + FEATURE_BATCH]], spec,
                                     progress=lambda done, _total: bar.update(1))
            # pooled from the cache's float16 values even when just computed: a run is the same with or without one
            pooled += [pool_views({k: v.astype(np.float16).astype(np.float32) for k, v in p.items()})
                       for p in per_view]
    return np.stack(pooled)


def distillation_inputs(cfg: Preset, bundles: list[Any], names: list[str], show_progress: bool = True,
                        resuming: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(pretrained feature [A, F], colour statistics [A, C])`` the run's distillation needs (None where off).

    When the pretrained backbone cannot run here (its package missing or broken) the run trains without the
    feature's distillation rather than not at all: it says so, and ``cfg.train.distill_weight`` becomes 0, so the
    saved configuration tells what the run did."""
    tc = cfg.train
    distilled = stats = None
    if tc.distill_weight > 0:
        from backend.features import FeatureError

        try:
            distilled = code_features(bundles, names, tc.distill_views, show_progress)
        except FeatureError as e:  # the backbone cannot run here (its package missing or broken)
            if resuming:  # its saved distillation and optimizer state need the feature: no silent change mid-run
                raise ModelError(f"this run was trained with the pretrained feature's distillation, which cannot "
                                 f"run here ({e}); fix that and resume") from None
            tqdm.write(f"note: training without the pretrained feature's distillation ({e})", file=sys.stderr)
            tc.distill_weight = 0.0
    if tc.texture_distill_weight > 0:
        from backend.features.colour_stats import colour_statistics

        by_name = {b.asset.name: b for b in bundles}
        with tqdm(total=len(names), desc="colour statistics", unit="asset", file=sys.stderr,
                  disable=not show_progress) as bar:
            stats = colour_statistics([by_name[n] for n in names], progress=bar.update)
    return distilled, stats


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
            sigma = field_.density(pts[:, None, :], codes[rays.code_index(a), :sd])[:, 0]
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


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Bit-reproducible training on a CPU: PyTorch's deterministic algorithms while inside (restored after). Without
    them two runs of one library and seed differ (the code lookup's backward accumulates in a thread-dependent
    order: 3e-5 after 60 steps, up to 0.14 in a code after 1500), so an index on Ray and one without could not give
    the same codes. No measurable cost at cpu-small (150 steps: 25-31 s either way). CUDA is left as it is (its
    deterministic mode needs a cuBLAS setting and is slower)."""
    if device.type != "cpu":
        yield
        return
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without a deterministic kernel warns, never fails
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def reproducible(fn: Callable[..., TrainSummary]) -> Callable[..., TrainSummary]:
    """Run ``fn`` (a function with a ``device`` argument) inside :func:`deterministic` for its device."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> TrainSummary:
        bound = signature.bind(*args, **kwargs)
        with deterministic(pick_device(bound.arguments.get("device"))):
            return fn(*args, **kwargs)

    return wrapper


@reproducible
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

    A new run without an explicit ``steps`` (argument or ``overrides["steps"]``) takes
    :func:`~backend.model.config.steps_for_library` steps; the count and the rule are in ``metrics.json``
    (``steps``, ``steps_rule``). A library of more than ``resident_assets`` assets trains in chunks
    (:class:`.data.ChunkSchedule`) with per-asset records cached in ``out/.train_cache`` (removed at the end).
    :func:`.plan.plan_training` projects a run before it starts (``asset2vec train`` and ``index`` print it).
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
    names = library_names(bundles)
    assets = [b.asset for b in bundles]
    if state is not None and list(state["names"]) != names:
        raise ModelError(
            f"{bundles_dir}: the library changed since {ckpt_path} was written "
            f"({len(names)} assets now, {len(state['names'])} in the run); resume with the same library "
            f"or train a new run in another --out folder"
        )
    if state is not None:  # the run's own step count (chosen when it started) unless one is given now
        steps_rule = "explicit" if steps is not None else str(state.get("steps_rule", "explicit"))
    elif steps is not None or "steps" in (overrides or {}):
        steps_rule = "explicit"
    else:
        preset_steps = tc.steps
        tc.steps = steps_for_library(tc, len(names))
        steps_rule = (f"{STEPS_RULE}: {preset_steps} steps up to {tc.reference_assets} assets -> {tc.steps} "
                      f"for {len(names)}")
    schedule = ChunkSchedule.plan(len(names), tc)
    if show_progress:
        tqdm.write(describe_run(len(names), cfg, schedule, steps_rule), file=sys.stderr)
    cache: AssetCache | None = None
    views: ViewSet | None = None
    rays: RaySet | None = None
    if schedule is None:  # the whole library at once, as always
        with tqdm(total=len(bundles), desc="loading views", unit="asset", file=sys.stderr,
                  disable=not show_progress) as bar:
            views = load_views(bundles, tc.image_size, progress=bar.update).to(dev)
        rays = build_rays(views, TRAIN_VIEWS, tc)
    else:  # chunks streamed from the bundles (first round) and the run's per-asset cache (later rounds)
        cache = AssetCache(out / CACHE_DIR, bundles, tc)
    features = code_features(bundles, names, "colour", show_progress) if tc.code_head != "none" else None
    distilled, stats = distillation_inputs(cfg, bundles, names, show_progress, resuming=state is not None)
    field_, codes = build_model(cfg, len(names), dev, features)
    distill = build_distillation(cfg, distilled, dev, stats)
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
            "names": names,
            "assets": [asdict(a) for a in assets],
            "field": field_.state_dict(),
            "codes": codes().detach().cpu(),
            "code_table": {k: v.detach().cpu() for k, v in codes.state_dict().items()},
            **({"distill": {k: v.detach().cpu() for k, v in distill.state_dict().items()}} if distill is not None else {}),
            "optimizer": opt.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state()},
            "history": history,
            "steps_rule": steps_rule,
            "metrics": metrics or {},
        }
        C.save_checkpoint(ckpt_path, st)
        write_run_files(out, cfg, model_id, names, codes().detach().cpu().numpy(), cfg.model.shape_dim)

    budget = minutes * 60.0 if minutes else None
    samples_per_step = tc.rays_per_batch * tc.samples_per_ray + (tc.empty_points if tc.sampling == "hull" else 0)
    run_samples, run_seconds, loss_v, psnr_v = 0, 0.0, float("nan"), float("nan")
    bar = tqdm(  # a time-budgeted run with an open-ended step count shows a plain counter
        total=tc.steps if tc.steps < 10**7 else None,
        initial=step, desc="training", unit="step", file=sys.stderr, disable=not show_progress
    )
    field_.train()
    stop = tc.steps if session_steps is None else min(tc.steps, step + session_steps)
    stream = None if schedule is None or cache is None else ChunkStream(schedule, cache, names, assets, dev, stop)
    try:
        while step < stop and (budget is None or elapsed < budget):
            t0 = time.perf_counter()
            if stream is not None and stream.needs_switch(step):
                rays = None  # let the finished chunk go before the next one comes in
                rays = stream.rays_at(step)
            assert rays is not None
            progress = max(step / tc.steps, elapsed / budget if budget else 0.0)
            decay = tc.lr_final ** min(progress, 1.0)
            for g, base in zip(opt.param_groups, (tc.lr, tc.code_lr, tc.lr), strict=False):
                g["lr"] = base * decay
            loss, psnr = loss_step(field_, codes(), rays, cfg, gen, dev)
            if codes.head is not None:
                loss = loss + tc.offset_reg * codes.offset_penalty()
            if distill is not None:
                loss = loss + distill(codes())
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
    finally:
        if stream is not None:
            stream.close()
    bar.close()
    rays_peak = len(names) if stream is None else stream.peak
    wait_s = 0.0 if stream is None else stream.wait_seconds
    rays_now, rays, stream = rays, None, None

    field_.eval()
    sd = cfg.model.shape_dim
    z = codes().detach()
    if views is not None and rays_now is not None:
        held = evaluate(field_, z[:, :sd], z[:, sd:], views, rays_now.grids, rig.HELD_OUT_VIEWS, tc.samples_per_ray)
        trained = evaluate(field_, z[:, :sd], z[:, sd:], views, rays_now.grids, TRAIN_EVAL_VIEWS, tc.samples_per_ray)
        kept, dropped = rays_now.count / max(rays_now.total, 1), rays_now.missed_alpha
    else:
        assert cache is not None and schedule is not None
        held, trained, kept, dropped = evaluate_library(field_, z, cache, names, assets, schedule.chunk_assets, cfg)
    summary = TrainSummary(
        run_dir=str(out),
        model_id=model_id,
        preset=cfg.name,
        assets=len(names),
        image_size=tc.image_size,
        step=step,
        seconds=elapsed,
        loss=loss_v,
        heldout_psnr=float(held["psnr"]),
        heldout_psnr_silhouette=float(held["psnr_silhouette"]),
        train_psnr=float(trained["psnr"]),
        samples_per_second=run_samples / run_seconds if run_seconds > 0 else 0.0,
        rays_kept_fraction=kept,
        dropped_alpha_fraction=dropped,
        history=history,
        steps_rule=steps_rule,
        resident_assets=tc.resident_assets,
        resident_peak=rays_peak,
        chunk_assets=0 if schedule is None else schedule.chunk_assets,
        chunks=0 if schedule is None else schedule.chunks,
        rounds=0 if schedule is None else (schedule.rounds or 0),
        chunk_wait_seconds=wait_s,
    )
    metrics = {k: v for k, v in asdict(summary).items() if k != "history"}
    metrics["steps"] = tc.steps
    metrics["heldout_per_asset"] = dict(zip(names, held["per_asset"], strict=True))
    snapshot(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if cache is not None and step >= tc.steps:  # finished: a later session (resume) would still read it
        cache.clear()
    return summary


def describe_run(n_assets: int, cfg: Preset, schedule: ChunkSchedule | None, steps_rule: str) -> str:
    """One line on how a run over ``n_assets`` trains: steps and why, and what is in memory."""
    tc = cfg.train
    where = (f"all {n_assets} assets in memory (limit {tc.resident_assets})" if schedule is None else
             f"{schedule.chunks} chunks of <= {schedule.chunk_assets} assets, {schedule.rounds or 'open-ended'} "
             f"round(s), at most {tc.resident_assets} assets in memory")
    return f"training {cfg.name}: {n_assets} assets, {tc.steps} steps ({steps_rule}); {where}"


@torch.no_grad()
def evaluate_library(
    field_: LatentField, z: torch.Tensor, cache: AssetCache, names: list[str], assets: list[Any], group: int,
    cfg: Preset,
) -> tuple[dict[str, Any], dict[str, Any], float, float]:
    """Held-out and training-view metrics (as :func:`.metrics.evaluate`) of every asset of a chunked run, with the
    views of ``group`` assets in memory at a time (read from ``cache``; ``z [A, 64]`` the code table), and the
    kept-ray and dropped-alpha fractions over the library."""
    sd, n, dev = cfg.model.shape_dim, cfg.train.samples_per_ray, z.device
    per: dict[str, list[float]] = {"held": [], "train": []}
    sil: dict[str, list[float]] = {"held": [0.0, 0.0], "train": [0.0, 0.0]}
    kept, total, missed, everything = 0, 0, 0.0, 0.0
    for lo in range(0, len(names), group):
        ids = list(range(lo, min(lo + group, len(names))))
        recs = [cache.get(i) for i in ids]
        views = record_views(recs, [names[i] for i in ids], [assets[i] for i in ids]).to(dev)
        grids = torch.stack([r.grid for r in recs]).to(dev)
        for key, vids in (("held", rig.HELD_OUT_VIEWS), ("train", TRAIN_EVAL_VIEWS)):
            m = evaluate(field_, z[ids, :sd], z[ids, sd:], views, grids, vids, n)
            per[key] += list(m["per_asset"])  # type: ignore[arg-type]
            inside = int(((views.images[:, list(vids), ..., 3].float() / 255.0) > 0.5).flatten(1).any(1).sum())
            if inside:
                sil[key][0] += float(m["psnr_silhouette"]) * inside
                sil[key][1] += inside
        for r in recs:
            kept, total = kept + r.view.numel(), total + r.total
            missed, everything = missed + r.missed_alpha, everything + r.all_alpha
        del recs, views, grids

    def result(key: str) -> dict[str, Any]:
        s, c = sil[key]
        return {"psnr": sum(per[key]) / len(per[key]), "psnr_silhouette": s / c if c else float("nan"),
                "per_asset": per[key]}

    return result("held"), result("train"), kept / max(total, 1), missed / everything if everything > 0 else 0.0


def write_run_files(out: Path, cfg: Preset, model_id: str, names: list[str], codes: np.ndarray, sd: int) -> None:
    """``config.json`` and ``codes.npz`` (``names``, ``shape``, ``texture``, ``model_id``) beside the checkpoint."""
    (out / "config.json").write_text(json.dumps({**cfg.to_json(), "model_id": model_id}, indent=1))
    tmp = out / ".codes.tmp.npz"
    np.savez(tmp, names=np.array(names), shape=codes[:, :sd], texture=codes[:, sd:], model_id=np.array(model_id))
    tmp.replace(out / "codes.npz")
