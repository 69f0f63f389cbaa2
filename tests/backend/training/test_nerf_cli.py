"""The train/embed/render/codes subcommands, run in-process through ``backend.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import backend.cli as cli
from tests.backend.training.nerf_support import IMAGE_SIZE

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)


@pytest.fixture
def a2v(monkeypatch: pytest.MonkeyPatch):
    # only this area's commands, so the test does not depend on the other areas' modules
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("nerf",))
    return cli.main


def test_codes_render_embed(a2v, trained, library: Path, tmp_path: Path, capsys) -> None:
    run_dir, summary = trained
    assert a2v(["codes", "--run", str(run_dir), "--out", str(tmp_path / "c.npz")]) == 0
    codes = np.load(tmp_path / "c.npz")
    assert codes["shape"].shape == (6, 32) and str(codes["model_id"]) == summary.model_id

    png = tmp_path / "mix.png"
    argv = ["render", "--run", str(run_dir), "--shape", "table_red", "--texture", "ball_blue", "--out", str(png)]
    assert a2v([*argv, "--orbit", "4", "--size", "16"]) == 0
    im = Image.open(png)
    assert im.mode == "RGBA" and im.size == (4 * 16, 16)
    assert np.asarray(im)[..., 3].max() > 200, "something opaque was rendered"

    out = tmp_path / "codes.json"
    assert a2v(["embed", str(library / "ball_blue"), "--run", str(run_dir), "--out", str(out), "--steps", "20"]) == 0
    data = json.loads(out.read_text())
    assert data["model_id"] == summary.model_id
    (asset,) = data["assets"]
    assert asset["name"] == "ball_blue" and len(asset["shape"]) == 32 and len(asset["texture"]) == 32
    assert "ball_blue:" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(a2v, trained, library: Path, tmp_path: Path, capsys) -> None:
    run_dir, _ = trained
    cases = [
        (["render", "--run", str(run_dir), "--shape", "sofa", "--out", str(tmp_path / "x.png")], "no asset named 'sofa'"),
        (["train", str(library), "--out", str(run_dir)], "already holds a trained run"),
        (["train", str(tmp_path), "--out", str(tmp_path / "r")], "library is empty"),
        (["codes", "--run", str(tmp_path), "--out", str(tmp_path / "c.npz")], "no checkpoint.pt"),
        (["embed", str(tmp_path / "nope"), "--run", str(run_dir)], "no such bundle"),
        (["render", "--run", str(run_dir), "--shape", "ball_red", "--out", "x.png", "--orbit", "0"], "--orbit"),
    ]
    for argv, message in cases:
        assert a2v(argv) == 2, argv
        err = capsys.readouterr().err
        assert "asset2vec: error:" in err and message in err and "Traceback" not in err, err
    assert IMAGE_SIZE == 24
