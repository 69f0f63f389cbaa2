"""Codes predicted from the pretrained multi-view feature (``TrainConfig.code_head``): wiring, offsets, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.model.errors import ModelError
from backend.training import checkpoint as C
from backend.training.latent_codes import CodeTable
from backend.training.run import load_run
from backend.training.trainer import train

pytestmark = pytest.mark.slow  # loads the pretrained backbone and trains

# Each test switches on the terms it checks (the presets distil into both halves by default).
FAST = {"image_size": 16, "rays_per_batch": 128, "empty_points": 128, "checkpoint_every": 1000,
        "distill_weight": 0.0, "texture_distill_weight": 0.0}


@pytest.fixture(scope="module")
def twins(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic library plus an exact copy of one asset under another name (same views, same feature)."""
    root = tmp_path_factory.mktemp("twins")
    for b in sorted(library.iterdir()):
        shutil.copytree(b, root / b.name)
    twin = root / "ball_red_copy"
    shutil.copytree(library / "ball_red", twin)
    meta = (twin / "transforms.json").read_text().replace('"ball_red"', '"ball_red_copy"')
    (twin / "transforms.json").write_text(meta)
    return root


def test_a_held_shape_offset_makes_same_looking_assets_share_their_shape_code(twins: Path, tmp_path: Path) -> None:
    overrides = {**FAST, "code_head": "shape", "offset_reg": 1e4}
    train(twins, tmp_path / "run", steps=20, show_progress=False, overrides=overrides)
    run = load_run(tmp_path / "run")
    a, b = run.names.index("ball_red"), run.names.index("ball_red_copy")
    other = run.names.index("crate_blue")
    shape, texture = run.shape_codes, run.texture_codes
    # the head sees the same feature for the twins: their shape codes agree; the texture half stays free per asset
    assert np.abs(shape[a] - shape[b]).max() < 0.05 * np.abs(shape[a] - shape[other]).max()
    assert np.abs(texture[a] - texture[b]).max() > 1e-4
    state = torch.load(tmp_path / "run" / C.CHECKPOINT, map_location="cpu", weights_only=True)
    assert "head.0.weight" in state["code_table"] and state["codes"].shape == (len(run.names), 64)


def test_free_codes_of_twins_differ(twins: Path, tmp_path: Path) -> None:
    train(twins, tmp_path / "run", steps=20, show_progress=False, overrides=FAST)
    run = load_run(tmp_path / "run")
    a, b = run.names.index("ball_red"), run.names.index("ball_red_copy")
    other = run.names.index("crate_blue")
    gap = np.abs(run.shape_codes[a] - run.shape_codes[other]).max()
    assert np.abs(run.shape_codes[a] - run.shape_codes[b]).max() > 0.05 * gap  # the test above could fail


@pytest.mark.parametrize("extra", [{"code_head": "both", "offset_reg": 0.1}, {"distill_weight": 1.0},
                                   {"texture_distill_weight": 1.0, "distill_target": "weighted"}],
                         ids=["code-head", "distillation", "texture-distillation"])
def test_a_run_with_feature_terms_resumes_exactly(library: Path, tmp_path: Path, extra: dict) -> None:
    overrides = {**FAST, **extra}
    whole = train(library, tmp_path / "whole", steps=12, show_progress=False, overrides=overrides)
    train(library, tmp_path / "split", steps=12, session_steps=6, show_progress=False, overrides=overrides)
    split = train(library, tmp_path / "split", resume=True, steps=12, show_progress=False)
    assert split.step == whole.step == 12
    a, b = load_run(tmp_path / "whole"), load_run(tmp_path / "split")
    np.testing.assert_allclose(a.shape_codes, b.shape_codes, atol=1e-5)
    np.testing.assert_allclose(a.texture_codes, b.texture_codes, atol=1e-5)


def _read_out_fit(state: dict, part: str, code_slice: slice, width: int) -> tuple[float, float, torch.Tensor]:
    """(fitted MSE, MSE of a read-out carrying nothing, target) of one saved distillation part."""
    from backend.training.latent_codes import FeatureDistillation

    saved = {k.removeprefix(f"parts.{part}."): v for k, v in state["distill"].items() if k.startswith(f"parts.{part}.")}
    target = saved["target"]
    read = FeatureDistillation(np.random.rand(len(target), 40), target.shape[1], code_slice, width)
    read.load_state_dict(saved)
    with torch.no_grad():
        fitted = float(read(state["codes"]))
    return fitted, float(((target - target.mean(0)) ** 2).mean()), target


def test_distillation_makes_a_linear_read_out_of_the_shape_half_predict_the_feature(library: Path,
                                                                                   tmp_path: Path) -> None:
    overrides = {**FAST, "distill_weight": 10.0, "distill_target": "whitened"}
    train(library, tmp_path / "run", steps=40, show_progress=False, overrides=overrides)
    state = torch.load(tmp_path / "run" / C.CHECKPOINT, map_location="cpu", weights_only=True)
    fitted, untrained, target = _read_out_fit(state, "shape", slice(0, 32), 32)
    # 6 assets, 3 silhouettes (each shape in two colours): 2 directions spanned, not 5 (no rounding noise as target)
    k = target.shape[1]
    assert target.shape == (6, 2) and torch.allclose(target.pow(2).mean(0), torch.ones(k), atol=1e-4)  # whitened
    assert fitted < 0.3 * untrained, (fitted, untrained)
    with pytest.raises(ModelError, match="distill_half"):
        train(library, tmp_path / "bad", steps=1, show_progress=False,
              overrides={**FAST, "distill_weight": 1.0, "distill_half": "colour"})


def test_colour_statistics_distil_into_the_texture_half_with_weighted_directions(library: Path,
                                                                                tmp_path: Path) -> None:
    overrides = {**FAST, "texture_distill_weight": 10.0, "distill_target": "weighted"}
    train(library, tmp_path / "run", steps=40, show_progress=False, overrides=overrides)
    state = torch.load(tmp_path / "run" / C.CHECKPOINT, map_location="cpu", weights_only=True)
    assert set(state["distill"]) == {"parts.texture.target", "parts.texture.read.weight", "parts.texture.read.bias"}
    fitted, untrained, target = _read_out_fit(state, "texture", slice(32, 64), 32)
    var = target.pow(2).mean(0)
    assert target.shape == (6, 5) and abs(float(var.mean()) - 1.0) < 1e-4  # weighted: unit variance on average
    assert bool((var[:-1] >= var[1:] - 1e-5).all()) and float(var[0]) > float(var[-1])  # the main direction first
    assert fitted < 0.3 * untrained, (fitted, untrained)


def test_a_run_distilled_before_the_parts_existed_loads_its_saved_loss() -> None:
    from backend.training.latent_codes import Distillations, FeatureDistillation

    old = FeatureDistillation(np.random.rand(6, 8), 4, slice(0, 32), 32)
    new = Distillations({"shape": (0.1, FeatureDistillation(np.random.rand(6, 8), 4, slice(0, 32), 32))})
    new.load_state_dict(old.state_dict())  # bare names, as such runs saved them
    assert torch.equal(new.parts["shape"].target, old.target)
    codes = torch.randn(6, 64)
    assert torch.allclose(new(codes), 0.1 * old(codes))
    with pytest.raises(ModelError, match="unknown distillation target"):
        FeatureDistillation(np.random.rand(6, 8), 4, slice(0, 32), 32, target="raw")


def test_unknown_head_and_missing_features_are_clear_errors() -> None:
    with pytest.raises(ModelError, match="unknown code head"):
        CodeTable(3, 32, 32, 0.01, head="texture")
    with pytest.raises(ModelError, match="one feature vector per asset"):
        CodeTable(3, 32, 32, 0.01, head="shape", features=np.zeros((2, 8), np.float32))
    free = CodeTable(3, 32, 32, 0.01)
    assert free().shape == (3, 64) and float(free.offset_penalty()) == 0.0


def test_a_run_trains_without_the_feature_distillation_when_the_backbone_cannot_run(library: Path, tmp_path: Path,
                                                                                   monkeypatch, capsys) -> None:
    from backend.features import FeatureError
    from backend.training import trainer

    def broken(*_args, **_kw):
        raise FeatureError("the network code for the pretrained feature is not installed")

    monkeypatch.setattr(trainer, "code_features", broken)
    overrides = {**FAST, "distill_weight": 0.1, "texture_distill_weight": 0.1}
    train(library, tmp_path / "run", steps=4, show_progress=False, overrides=overrides)
    assert "training without the pretrained feature's distillation (the network code" in capsys.readouterr().err
    state = torch.load(tmp_path / "run" / C.CHECKPOINT, map_location="cpu", weights_only=True)
    assert state["config"]["train"]["distill_weight"] == 0.0  # the saved configuration says what ran
    assert set(state["distill"]) == {"parts.texture.target", "parts.texture.read.weight", "parts.texture.read.bias"}


def test_a_distilled_run_is_not_resumed_without_its_feature(library: Path, tmp_path: Path, monkeypatch) -> None:
    from backend.features import FeatureError
    from backend.training import trainer

    overrides = {**FAST, "distill_weight": 0.1}
    train(library, tmp_path / "run", steps=4, session_steps=2, show_progress=False, overrides=overrides)

    def broken(*_args, **_kw):
        raise FeatureError("the network code for the pretrained feature is not installed")

    monkeypatch.setattr(trainer, "code_features", broken)
    with pytest.raises(ModelError, match="trained with the pretrained feature's distillation"):
        train(library, tmp_path / "run", resume=True, steps=4, show_progress=False)


def test_distillation_targets_of_a_large_library_match_the_svd_and_skip_directions_the_data_does_not_span() -> None:
    from backend.training.latent_codes import FeatureDistillation

    rng = np.random.default_rng(0)
    f = (rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))).astype(np.float32)  # more assets than numbers
    f[:, 3] = 1.0  # a constant entry: no direction in it
    z = (f - f.mean(0)) / (f.std(0) + 1e-6)
    u, s, _ = np.linalg.svd(z.astype(np.float64), full_matrices=False)
    for target in ("whitened", "weighted"):
        d = FeatureDistillation(f, 32, slice(0, 32), 32, target)
        t = d.target.numpy()
        assert t.shape == (400, 11) and d.read.out_features == 11  # 12 numbers, one of them constant
        want = u[:, :11] * np.sqrt(400) * (s[:11] / np.sqrt((s[:11] ** 2).mean()) if target == "weighted" else 1.0)
        np.testing.assert_allclose(np.abs(t), np.abs(want), atol=1e-3)  # up to each direction's sign
