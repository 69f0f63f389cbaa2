"""A tiny real training run: loss, held-out PSNR, run files, rendering any code, inversion."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from backend.training.data import find_bundles, load_views, read_bundles
from backend.training.metrics import psnr_from_mse
from backend.training.run import Cancelled, load_run
from shared import rig
from tests.backend.training.nerf_support import IMAGE_SIZE, ITEMS, STEPS

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)


def _constant_colour_psnr(library, views_ids) -> float:
    """PSNR of the best constant image (the mean on-white colour of each asset's views), averaged over assets."""
    views = load_views(read_bundles(find_bundles(library)), IMAGE_SIZE)
    out = []
    for a in range(len(views.names)):
        x = views.rgba(a)[list(views_ids)]
        white = x[..., :3] + (1 - x[..., 3:])
        out.append(psnr_from_mse(float(((white - white.mean(dim=(0, 1, 2))) ** 2).mean())))
    return float(np.mean(out))


def test_training_lowers_the_loss_and_beats_a_constant_colour(trained, library) -> None:
    run_dir, s = trained
    assert s.step == STEPS and s.assets == len(ITEMS)
    first, last = s.history[0], s.history[-1]
    assert last[1] < 0.5 * first[1], f"loss should drop: {first} -> {last}"
    baseline = _constant_colour_psnr(library, rig.HELD_OUT_VIEWS)
    assert s.heldout_psnr > baseline + 3.0, (s.heldout_psnr, baseline)
    assert np.isfinite(s.heldout_psnr_silhouette) and s.train_psnr > baseline
    assert 0.1 < s.rays_kept_fraction < 0.9, "the visual hull drops the empty rays"
    assert s.dropped_alpha_fraction < 0.01, "and (almost) none of the silhouette"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["heldout_psnr"] == pytest.approx(s.heldout_psnr)


def test_run_files_and_load_run(trained) -> None:
    run_dir, s = trained
    codes = np.load(run_dir / "codes.npz")
    names = sorted(f"{k}_{c}" for k, c in ITEMS)
    assert list(codes["names"]) == names
    assert codes["shape"].shape == (6, 32) and codes["texture"].shape == (6, 32)
    assert str(codes["model_id"]) == s.model_id
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["preset"] == "cpu-small" and cfg["train"]["image_size"] == IMAGE_SIZE
    run = load_run(run_dir, "cpu")
    assert run.names == names and run.model_id == s.model_id and run.preset == "cpu-small"
    assert np.allclose(run.shape_codes, codes["shape"]) and np.allclose(run.texture_codes, codes["texture"])
    assert run.heldout_psnr == pytest.approx(s.heldout_psnr)
    assert [a.name for a in run.assets] == names and run.assets[0].tags


def test_render_any_code_and_mix_shape_with_texture(trained, library) -> None:
    run = load_run(trained[0], "cpu")
    a, b = run.index("table_red"), run.index("ball_blue")
    img = run.render(run.shape_codes[[a, a, b]], run.texture_codes[[a, b, b]], image_size=IMAGE_SIZE)
    assert img.shape == (3, 18, IMAGE_SIZE, IMAGE_SIZE, 4) and img.dtype == np.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    # the shape of A keeps its silhouette whatever the texture
    assert np.array_equal(img[0, ..., 3], img[1, ..., 3])
    assert not np.array_equal(img[0, ..., 3], img[2, ..., 3])
    # and the texture of B brings its colour: the mixed table is bluer than the red one
    def mean_rgb(x):
        w = x[..., 3:] > 0.5
        return (x[..., :3] * w).sum(axis=(0, 1, 2)) / w.sum()

    red, mixed = mean_rgb(img[0]), mean_rgb(img[1])
    assert red[0] > red[2] and mixed[2] > mixed[0]
    # the model's own density grid renders a training asset close to its captured views
    views = load_views(read_bundles(find_bundles(library)), IMAGE_SIZE)
    target = views.rgba(views.names.index("table_red"))
    pred = torch.tensor(img[0])
    err = ((pred[..., :3] * pred[..., 3:] + 1 - pred[..., 3:]) - (target[..., :3] + 1 - target[..., 3:])) ** 2
    assert psnr_from_mse(float(err.mean())) > _constant_colour_psnr(library, range(18)) + 3.0
    orbit = run.render(run.shape_codes[a], run.texture_codes[a], rig.orbit(3), image_size=16)
    assert orbit.shape == (1, 3, 16, 16, 4)


def test_inversion_finds_the_assets_own_code(trained, library) -> None:
    run = load_run(trained[0], "cpu")
    picks = ["crate_blue", "table_red"]
    bundles = read_bundles([library / n for n in picks])
    seen = []
    results = run.invert(bundles, steps=60, progress=lambda f, m: seen.append(f))
    train_codes = np.concatenate([run.shape_codes, run.texture_codes], axis=1)
    for name, r in zip(picks, results, strict=True):
        z = np.concatenate([r.shape, r.texture])
        nearest = run.names[int(np.argmin(((train_codes - z) ** 2).sum(1)))]
        assert nearest == name
        assert np.isfinite(r.psnr) and r.psnr > 15 and r.seconds > 0
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)


def test_inversion_can_be_cancelled(trained, library) -> None:
    run = load_run(trained[0], "cpu")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run.invert(read_bundles([library / "ball_red"]), steps=50, cancel=cancel)
    assert all(p.requires_grad for p in run.decoder.parameters()), "a cancelled inversion unfreezes the decoder"
