"""Projecting a training run before it starts (``asset2vec index`` prints it): steps, duration, peak memory.

:func:`plan_training` times a handful of real optimisation steps of the preset's model on synthetic rays and the
building of one synthetic asset's rays, then scales them to the library by the steps rule
(:func:`backend.model.config.steps_for_library`) and the chunk schedule of :mod:`.data`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from backend.model.config import STEPS_RULE, Preset, get_preset, steps_for_library
from backend.model.errors import ModelError
from shared import rig

from .data import TRAIN_VIEWS, AssetRecord, ChunkSchedule, assemble, asset_rays, record_views
from .trainer import build_model, loss_step, pick_device


@dataclass
class TrainingPlan:
    """What a training run over ``n_assets`` will take, projected before it starts (see :func:`plan_training`).

    Times are in seconds on ``device``: ``seconds_per_step`` is measured, ``load_seconds`` (decoding each asset's
    views and finding its rays, once per asset) and ``training_seconds`` (``steps * seconds_per_step``) are
    projections; ``expected_seconds`` is their sum (a chunked run overlaps much of the loading with training, so
    this errs long). ``peak_memory_mb`` estimates the process's peak resident memory (CPU) or device memory
    (CUDA) as this process's peak so far (after building the model and timing it) plus twice the resident assets'
    data (a chunk is assembled from its assets' records); ``resident_data_mb`` is the resident assets' views, rays
    and grids alone. Called in a fresh process it is close to a run's measured peak; called late in a busy one it
    errs high.
    """

    n_assets: int
    preset: str
    device: str
    steps: int
    steps_rule: str
    resident_assets: int
    chunk_assets: int  # 0: the whole library in memory at once
    chunks: int
    rounds: int
    seconds_per_step: float
    load_seconds_per_asset: float
    load_seconds: float
    training_seconds: float
    expected_seconds: float
    resident_data_mb: float
    peak_memory_mb: float
    measured_rays_per_step: int  # the batch timed (the preset's batch, or a smaller one scaled up linearly)
    measured_steps: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a log: steps, time, memory."""
        mins = self.expected_seconds / 60.0
        mem = "in memory at once" if not self.chunk_assets else f"in chunks of {self.chunk_assets}"
        return (f"plan: {self.n_assets} assets ({mem}), {self.steps} steps x {self.seconds_per_step:.3f} s on "
                f"{self.device} + {self.load_seconds:.0f} s loading views = about {mins:.1f} min; "
                f"peak memory about {self.peak_memory_mb:.0f} MB")


#: Decoding one asset's 18 PNG views and resizing them (measured: ~6 ms at 64 -> 32 px on a 2-core CPU); the
#: plan times ray building (the larger part, ~0.2 s an asset at 32 px) on a synthetic asset and adds this.
DECODE_SECONDS = 0.01


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (0 where the platform does not say, e.g. Windows)."""
    try:
        import resource
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, kilobytes on Linux


def _synthetic_record(cfg: Preset) -> AssetRecord:
    """An asset of the preset's image size for timing: a ball of radius 0.6 seen by the rig's 18 cameras."""
    s = cfg.train.image_size
    c2w = torch.tensor([v.camera_to_world() for v in rig.views()], dtype=torch.float32)  # [V, 4, 4]
    from backend.model import rays as R

    o, d = R.world_rays(c2w[:, None], R.camera_directions(s)[None])  # [V, P, 3]
    b = (o * d).sum(-1)
    hit = (b * b - ((o * o).sum(-1) - 0.36)) > 0  # [V, P]: the ray meets the ball
    images = torch.zeros(len(c2w), s, s, 4, dtype=torch.uint8)
    images[..., 3] = (hit.reshape(-1, s, s) * 255).to(torch.uint8)
    images[..., 0] = images[..., 3] // 2
    return asset_rays(images, c2w, TRAIN_VIEWS, cfg.train)


def plan_training(
    n_assets: int,
    preset: str | Preset | None = "cpu-small",
    device: str | None = None,
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    budget_seconds: float = 2.0,
) -> TrainingPlan:
    """Project a training run over ``n_assets`` assets before it starts: its steps, memory and duration.

    ``preset`` is a preset name (None: ``cpu-small``, as :func:`train`) or a :class:`Preset`, ``device`` as for
    :func:`train` (None: CUDA when present), ``steps`` an explicit step count (None:
    :func:`backend.model.config.steps_for_library`), ``overrides`` as for :func:`train`. Runs a handful of real optimisation steps of the preset's model on synthetic rays (about
    ``budget_seconds``; a batch too slow for that, e.g. the full preset on a CPU, is timed smaller and scaled up)
    and times building one asset's rays. Leaves the caller's random state as it was.
    """
    if n_assets < 1:
        raise ModelError(f"n_assets must be at least 1, got {n_assets}")
    cfg = Preset.from_json(preset.to_json()) if isinstance(preset, Preset) else get_preset(preset or "cpu-small")
    for k, v in (overrides or {}).items():
        target, name = (cfg.model, k[len("model."):]) if k.startswith("model.") else (cfg.train, k)
        if not hasattr(target, name):
            raise ModelError(f"unknown {'model' if target is cfg.model else 'training'} option {name!r}")
        setattr(target, name, v)
    tc = cfg.train
    if steps is not None or "steps" in (overrides or {}):
        tc.steps = steps if steps is not None else tc.steps
        rule = "explicit"
    else:
        tc.steps = steps_for_library(tc, n_assets)
        rule = STEPS_RULE
    dev = pick_device(device)
    schedule = ChunkSchedule.plan(n_assets, tc)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        t0 = time.perf_counter()
        record = _synthetic_record(cfg)
        load_per_asset = time.perf_counter() - t0
        if load_per_asset < budget_seconds / 4:  # cheap enough to time again without first-call costs
            t0 = time.perf_counter()
            record = _synthetic_record(cfg)
            load_per_asset = time.perf_counter() - t0
        load_per_asset += DECODE_SECONDS
        per_asset_bytes = sum(t.numel() * t.element_size() for t in (
            record.images, record.c2w, record.grid, record.view, record.pixel, record.t_min, record.t_max))
        per_asset_bytes += 4 * record.view.numel()  # the chunk's int32 asset column
        pool = 4
        views = record_views([record] * pool, [f"a{i}" for i in range(pool)], [None] * pool)  # type: ignore[list-item]
        rays = assemble([record] * pool, views).to(dev)
        field_, codes = build_model(cfg, pool, dev)
        opt = torch.optim.Adam([{"params": field_.parameters(), "lr": tc.lr}, {"params": [codes.free], "lr": tc.code_lr}])
        gen = torch.Generator(device=dev)
        gen.manual_seed(tc.seed)

        def timed(n_rays: int, reps: int) -> float:
            run = Preset.from_json(cfg.to_json())
            run.train.rays_per_batch = n_rays
            times = []
            for _ in range(reps):
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t = time.perf_counter()
                loss, _ = loss_step(field_, codes(), rays, run, gen, dev)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                times.append(time.perf_counter() - t)
            return float(np.median(times))

        full = tc.rays_per_batch
        probe = min(full, 128)
        timed(probe, 1)  # warm-up: first-call costs (thread pools, allocator) are never the measure
        t_probe = timed(probe, 1)
        warm = t_probe
        guess = t_probe * full / probe
        n_rays = full
        if guess * 4 > budget_seconds:  # a full batch is too slow to time a few of: time a smaller one, scale up
            n_rays = max(probe, min(full, int(full * budget_seconds / (4 * guess))))
        if n_rays == probe and warm >= budget_seconds / 4:  # even the probe is slow: its one step is the measure
            reps, sec = 1, t_probe * full / probe
        else:
            reps = int(max(2, min(8, budget_seconds / max(guess * n_rays / full, 1e-4) - 1)))
            sec = timed(n_rays, reps) * full / n_rays
        if dev.type == "cuda":
            base_mb = torch.cuda.max_memory_allocated(dev) / 2**20
        else:
            base_mb = peak_rss_mb()
    resident = min(n_assets, tc.resident_assets)
    resident_mb = resident * per_asset_bytes / 2**20
    training_s = tc.steps * sec
    load_s = n_assets * load_per_asset
    return TrainingPlan(
        n_assets=n_assets, preset=cfg.name, device=str(dev), steps=tc.steps, steps_rule=rule,
        resident_assets=tc.resident_assets, chunk_assets=0 if schedule is None else schedule.chunk_assets,
        chunks=1 if schedule is None else schedule.chunks, rounds=1 if schedule is None else (schedule.rounds or 0),
        seconds_per_step=sec, load_seconds_per_asset=load_per_asset, load_seconds=load_s,
        training_seconds=training_s, expected_seconds=training_s + load_s,
        resident_data_mb=resident_mb, peak_memory_mb=base_mb + 2 * resident_mb,
        measured_rays_per_step=n_rays, measured_steps=reps,
    )
