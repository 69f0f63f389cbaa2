"""Training that grows with the library: chunked (memory-bounded) training, steps from the library's size, the plan."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.model.config import PRESETS, STEPS_RULE, TrainConfig, get_preset, steps_for_library
from backend.training import data as D
from backend.training.data import ChunkSchedule, build_rays, find_bundles, load_views, read_bundles
from backend.training.plan import plan_training
from backend.training.run import load_run
from backend.training.trainer import CACHE_DIR, build_model, train

#: Six assets (the session library), at most four resident: chunks of two, three per round.
CHUNKED = {"image_size": 16, "rays_per_batch": 128, "empty_points": 128, "checkpoint_every": 5,
           "resident_assets": 4, "chunk_steps": 4}


def test_steps_grow_with_the_library() -> None:
    tc = TrainConfig(steps=1500, reference_assets=400)
    assert steps_for_library(tc, 1) == 1500 and steps_for_library(tc, 400) == 1500
    assert steps_for_library(tc, 800) == 3000 and steps_for_library(tc, 1600) == 6000
    assert steps_for_library(tc, 401) == math.ceil(1500 * 401 / 400)  # never fewer updates per asset
    assert steps_for_library(get_preset("cpu-small").train, 10_000) == 37_500


def test_chunk_schedule_visits_every_asset_equally() -> None:
    tc = TrainConfig(steps=100, resident_assets=4, chunk_steps=10, seed=3)
    sch = ChunkSchedule.plan(10, tc)
    assert sch is not None and ChunkSchedule.plan(4, tc) is None  # within the limit: no chunks
    assert (sch.chunk_assets, sch.chunks, sch.rounds) == (2, 5, 2)
    visits = sch.rounds * sch.chunks
    assert sch.start(0) == 0 and sch.start(visits) == 100
    steps_of = np.zeros(10)
    for v in range(visits):
        ids = sch.members(v)
        assert 1 <= len(ids) <= sch.chunk_assets
        assert np.array_equal(ids, sch.members(v))  # reproducible from the seed: a resumed run finds its chunk
        steps_of[ids] += sch.start(v + 1) - sch.start(v)
        assert all(sch.visit_at(s) == v for s in range(sch.start(v), sch.start(v + 1)))
    for r in range(sch.rounds):  # each round is a permutation of all assets
        seen = np.concatenate([sch.members(r * sch.chunks + k) for k in range(sch.chunks)])
        assert sorted(seen.tolist()) == list(range(10))
    assert steps_of.min() == steps_of.max() == 20
    assert not np.array_equal(sch.members(0), sch.members(sch.chunks))  # rounds are shuffled anew
    open_ended = ChunkSchedule.plan(10, TrainConfig(steps=10**9, resident_assets=4, chunk_steps=10))
    assert open_ended is not None and open_ended.rounds is None and open_ended.visit_at(25) == 2


def test_ray_table_is_compact(library: Path) -> None:
    views = load_views(read_bundles(find_bundles(library))[:2], 16)
    rays = build_rays(views, D.TRAIN_VIEWS, TrainConfig(image_size=16))
    assert rays.asset.dtype == torch.int32 and rays.view.dtype == torch.int16 and rays.pixel.dtype == torch.int32
    batch = rays.sample(64, torch.Generator().manual_seed(0))
    assert batch.asset.dtype == torch.int64 and set(batch.asset.tolist()) <= {0, 1}


@pytest.mark.slow
def test_a_library_larger_than_the_limit_trains_in_chunks(library: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = D.assemble

    def counting(records, views, ids=None):
        sizes.append(len(views.names))
        return real(records, views, ids)

    monkeypatch.setattr(D, "assemble", counting)
    s = train(library, tmp_path / "run", steps=24, show_progress=False, overrides=CHUNKED)
    assert s.step == 24 and s.assets == 6
    assert (s.chunk_assets, s.chunks, s.rounds) == (2, 3, 2)
    assert 0 < s.resident_peak <= 4, "never more than resident_assets assets' views and rays in memory"
    assert sizes and max(sizes) <= 2 and sum(sizes) == 12, "two rounds of three chunks of two"
    assert not (tmp_path / "run" / CACHE_DIR).exists(), "the per-asset cache goes when the run is finished"
    cfg = get_preset("cpu-small")
    for k, v in CHUNKED.items():
        setattr(cfg.train, k, v)
    _, init = build_model(cfg, 6, torch.device("cpu"))
    run = load_run(tmp_path / "run", "cpu")
    final = np.concatenate([run.shape_codes, run.texture_codes], axis=1)
    moved = np.abs(final - init().detach().numpy()).max(axis=1)
    assert (moved > 1e-3).all(), f"every asset's code is trained: {moved}"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["resident_peak"] <= 4 and np.isfinite(metrics["heldout_psnr"])
    assert len(metrics["heldout_per_asset"]) == 6 and 0.1 < metrics["rays_kept_fraction"] < 0.9


@pytest.mark.slow
def test_chunked_resume_is_exact(library: Path, tmp_path: Path) -> None:
    straight = train(library, tmp_path / "a", steps=20, show_progress=False, overrides=CHUNKED)
    train(library, tmp_path / "b", steps=20, session_steps=9, show_progress=False, overrides=CHUNKED)  # mid-chunk
    assert (tmp_path / "b" / CACHE_DIR).is_dir(), "an unfinished run keeps its cache for the next session"
    resumed = train(library, tmp_path / "b", resume=True, steps=20, show_progress=False)
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    assert np.array_equal(a.shape_codes, b.shape_codes) and np.array_equal(a.texture_codes, b.texture_codes)
    assert resumed.loss == pytest.approx(straight.loss, rel=1e-6) and resumed.chunks == 3


@pytest.mark.slow
def test_steps_rule_is_applied_and_recorded(library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PRESETS["cpu-small"].train, "steps", 4)
    fast = {"image_size": 16, "rays_per_batch": 64, "empty_points": 64, "reference_assets": 3}
    s = train(library, tmp_path / "rule", show_progress=False, overrides=fast)
    metrics = json.loads((tmp_path / "rule" / "metrics.json").read_text())
    assert s.step == metrics["steps"] == 8, "6 assets over a reference of 3: twice the preset's 4 steps"
    assert metrics["steps_rule"].startswith(STEPS_RULE)
    s = train(library, tmp_path / "explicit", steps=3, show_progress=False, overrides=fast)
    assert s.step == 3 and s.steps_rule == "explicit"


def test_plan_training_projects_positive_finite_numbers() -> None:
    before = torch.get_rng_state()
    plan = plan_training(1000, "cpu-small", "cpu", budget_seconds=0.5)
    assert torch.equal(before, torch.get_rng_state()), "planning leaves the caller's random state alone"
    assert plan.steps == 3750 and plan.steps_rule == STEPS_RULE and plan.chunk_assets == 256
    for name in ("seconds_per_step", "load_seconds", "training_seconds", "expected_seconds", "resident_data_mb",
                 "peak_memory_mb"):
        value = getattr(plan, name)
        assert math.isfinite(value) and value > 0, (name, value)
    assert plan.expected_seconds == pytest.approx(plan.training_seconds + plan.load_seconds)
    assert plan_training(10, "cpu-small", "cpu", steps=7, budget_seconds=0.2).steps == 7
    assert "assets" in plan.summary()


def test_two_runs_of_one_library_give_the_same_codes_bit_for_bit(library: Path, tmp_path: Path) -> None:
    """On a CPU training is reproducible (deterministic algorithms): an index on Ray and one without, or a rerun,
    store the same codes. Without them two such runs (the preset's 1024-ray batches) differed by ~1e-4 already."""
    codes = []
    for k in range(2):
        train(library, tmp_path / f"run{k}", preset="cpu-small", steps=20, device="cpu", show_progress=False,
              overrides={"image_size": 16})
        with np.load(tmp_path / f"run{k}" / "codes.npz") as z:
            codes.append(np.concatenate([z["shape"], z["texture"]], axis=1))
    assert np.array_equal(codes[0], codes[1])
    assert not torch.are_deterministic_algorithms_enabled()  # the global setting is restored afterwards
