"""Checkpoints: resume after SIGKILL, exact continuation, and checkpoints that must be refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.model.errors import ModelError
from backend.training import checkpoint as C
from backend.training.run import load_run
from backend.training.trainer import train

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run) in subprocesses

ROOT = Path(__file__).resolve().parents[3]
FAST = {"image_size": 16, "rays_per_batch": 128, "empty_points": 128, "checkpoint_every": 5}


def _step_of(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["step"])
    except Exception:  # noqa: BLE001 - not there yet
        return -1


def test_resume_after_sigkill_continues_from_the_checkpoint(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from backend.training.trainer import train\n"
        f"train(sys.argv[1], sys.argv[2], steps=100000, show_progress=False, overrides={FAST!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(library), str(out)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while _step_of(out / C.CHECKPOINT) < 10:
            assert proc.poll() is None, "the training process died on its own"
            assert time.monotonic() < deadline, "no checkpoint at step >= 10 within 2 minutes"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = torch.load(out / C.CHECKPOINT, map_location="cpu", weights_only=False)
    k = int(saved["step"])
    assert k >= 10 and k % 5 == 0
    summary = train(library, out, resume=True, steps=k + 10, show_progress=False)
    assert summary.step == k + 10 and summary.model_id == saved["model_id"]
    steps_logged = [h[0] for h in summary.history]
    assert summary.history[: len(saved["history"])] == saved["history"], "history before the kill is kept"
    assert steps_logged == sorted(steps_logged) and steps_logged[-1] == k + 10
    losses = [h[1] for h in summary.history]
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < losses[0]


def test_resume_is_exact(library: Path, tmp_path: Path) -> None:
    straight = train(library, tmp_path / "a", steps=12, show_progress=False, overrides=FAST)
    train(library, tmp_path / "b", steps=12, session_steps=6, show_progress=False, overrides=FAST)
    resumed = train(library, tmp_path / "b", resume=True, steps=12, show_progress=False)
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    assert np.array_equal(a.shape_codes, b.shape_codes) and np.array_equal(a.texture_codes, b.texture_codes)
    for (n, p), (_, q) in zip(a.decoder.state_dict().items(), b.decoder.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    assert resumed.loss == pytest.approx(straight.loss, rel=1e-6)


def test_refused_checkpoints(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(library, out, steps=2, show_progress=False, overrides=FAST)
    with pytest.raises(ModelError, match="already holds a trained run"):
        train(library, out, steps=4, show_progress=False)
    with pytest.raises(ModelError, match="preset 'cpu-small', not 'full'"):
        train(library, out, preset="full", resume=True, steps=4, show_progress=False)
    state = torch.load(out / C.CHECKPOINT, map_location="cpu", weights_only=False)
    state["format_version"] = C.FORMAT_VERSION + 1
    torch.save(state, out / C.CHECKPOINT)
    with pytest.raises(ModelError, match="format version"):
        load_run(out)
    (out / C.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable Asset2Vec checkpoint"):
        load_run(out)
    with pytest.raises(ModelError, match="no checkpoint.pt"):
        load_run(tmp_path / "nowhere")
