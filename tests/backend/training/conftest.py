"""Fixtures for the training tests: a small synthetic library and one tiny real run, trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backend import synthetic
from tests.backend.training.nerf_support import IMAGE_SIZE, ITEMS, OVERRIDES, STEPS


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
