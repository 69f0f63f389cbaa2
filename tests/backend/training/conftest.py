"""Fixtures for the training tests: a small synthetic library and one tiny real run, trained once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The repository root first: with tests/ on sys.path (a rootdir conftest), tests/backend would otherwise
# shadow the real `backend` package as a namespace package (the editable install's finder comes later).
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/backend, for synthetic.py

import synthetic  # noqa: E402
from nerf_support import IMAGE_SIZE, ITEMS, OVERRIDES, STEPS  # noqa: E402


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nerf-library")
    synthetic.make_library(root, ITEMS, size=IMAGE_SIZE)
    return root


@pytest.fixture(scope="session")
def trained(library: Path, tmp_path_factory: pytest.TempPathFactory):
    """``(run_dir, TrainSummary)`` of a tiny cpu-small run on :func:`library`."""
    from backend.training.trainer import train

    out = tmp_path_factory.mktemp("nerf-run") / "run"
    summary = train(library, out, preset="cpu-small", steps=STEPS, show_progress=False, overrides=OVERRIDES)
    return out, summary


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Run torch on one thread in these tests: on a shared, loaded 2-core machine OpenMP's spinning threads
    make two threads several times slower than one (measured 75k vs 8k samples/s under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
