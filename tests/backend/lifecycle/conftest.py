"""Fixtures for the lifecycle tests: a small library indexed by ``asset2vec index``, killed in every stage.

The library is the sample library's lamps (18 assets), later extended by its tables (18 more, which
get codes by inversion without retraining). Captured at 32 px with 4 samples, 40 training steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backend.library.catalogue import Catalogue
from backend.lifecycle.home import LibraryHome

ROOT = Path(__file__).resolve().parents[3]
FAST = ["--size", "32", "--samples", "4", "--steps", "40", "--checkpoint-every", "10", "--invert-steps", "5",
        "--no-explore", "--progress-json"]


@pytest.fixture(name="run_index")
def run_index_fixture() -> Callable[..., tuple[int, list[dict[str, Any]]]]:
    """:func:`run_index` for tests."""
    return run_index


def run_index(args: list[str], kill_when: Callable[[dict[str, Any], LibraryHome], bool] | None = None,
              home: LibraryHome | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run ``asset2vec index`` in a child process; SIGKILL it at the first event where ``kill_when`` is true."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "index", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)  # --progress-json: stdout carries only JSON lines
        events.append(event)
        if kill_when is not None and home is not None and event.get("event") == "progress" and kill_when(event, home):
            proc.send_signal(signal.SIGKILL)
            break
    code = proc.wait(timeout=600)
    if kill_when is None:
        assert code == 0, proc.stderr.read() if proc.stderr else ""
    return code, events


def codes_of(home: LibraryHome, model_id: str) -> set[str]:
    with Catalogue(home.catalogue) as cat:
        return set(cat.codes(model_id).names)


@pytest.fixture(scope="session")
def library(sample_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("index_library")
    for name in ("lamps.blend", "blender_assets.cats.txt"):
        shutil.copy2(sample_library / name, lib / name)
    return lib


@pytest.fixture(scope="session")
def indexed(library: Path, sample_library: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The library indexed with a kill in capture, training and embedding along the way."""
    home = LibraryHome.at(tmp_path_factory.mktemp("home"))
    args = [str(library), "--home", str(home.root), *FAST]

    # 1. Killed while capturing: the bundles written so far stay and are not rendered again.
    code, _ = run_index(args, lambda ev, h: ev["stage"] == "capture" and ev["done"] >= 4, home)
    assert code == -signal.SIGKILL
    captured_first = {p.parent.name for p in home.bundles.glob("*/transforms.json")}
    assert 4 <= len(captured_first) < 18 and not home.model_ids()

    # 2. Killed while training, once a checkpoint exists.
    code, events = run_index(args, lambda ev, h: ev["stage"] == "train" and (h.training / "checkpoint.pt").is_file()
                             and ev["done"] >= 20, home)
    assert code == -signal.SIGKILL
    plans = [e["plan"] for e in events if e.get("plan")]  # projected before the new run's training started
    capture = [e for e in events if e.get("stage") == "capture" and e["total"]]
    assert capture[-1]["done"] == 18
    assert (home.training / "checkpoint.pt").is_file() and not home.model_ids()

    # 3. Runs to the end: nothing captured again, training resumed from its checkpoint (not from step 1).
    code, events = run_index(args)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["trained"] and summary["activated"]
    assert summary["captured"] == 0 and summary["capture_up_to_date"] == 18
    train_steps = [e["done"] for e in events if e.get("stage") == "train" and e["total"]]
    assert train_steps and min(train_steps) >= 10, train_steps
    model_id = summary["model_id"]
    assert home.model_ids() == [model_id] and not home.training.exists()

    # 4. New assets: codes by inversion without retraining, in committed batches; killed after the first batch.
    for name in ("tables.blend",):
        shutil.copy2(sample_library / name, library / name)
    code, _ = run_index(args, lambda ev, h: ev["stage"] == "embed" and ev["total"] and ev["done"] >= 8, home)
    assert code == -signal.SIGKILL
    after_kill = codes_of(home, model_id)
    assert 18 + 8 <= len(after_kill) < 36
    code, events = run_index(args)
    final = events[-1]
    assert final["model_id"] == model_id and not final["trained"]
    assert final["inverted"] == 36 - len(after_kill)
    return {"home": home, "model_id": model_id, "summary": final, "first": summary, "plans": plans}


