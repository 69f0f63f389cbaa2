"""``asset2vec index`` trains the new model's instant encoder with the decoder (synthetic bundles, no Blender)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backend.cli import main
from backend.lifecycle.home import LibraryHome
from backend.service.engine import Engine
from backend.training.encoder import ENCODER_FILE, load_encoder
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)


def home_with_bundles(root: Path) -> LibraryHome:
    """A library home holding the captured views of the 8 synthetic assets (as if `index FOLDER` had captured)."""
    support.trained_run()  # writes the synthetic library once per session
    home = LibraryHome.at(root).create()
    shutil.rmtree(home.bundles)
    shutil.copytree(support.workspace() / "library", home.bundles)
    return home


def index(home: LibraryHome, *extra: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["index", "--retrain", "--home", str(home.root), "--steps", "6", "--no-explore", "--json",
                 *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_index_trains_the_instant_encoder_and_the_service_embeds_at_once(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = home_with_bundles(tmp_path / "home")
    summary = index(home, "--encoder-minutes", "0.05", capsys=capsys)
    model_id = summary["model_id"]
    enc = summary["encoder"]
    # The feature kind: no training steps, the views' appearance features (cached for the index's feature step).
    assert enc["kind"] == "feature" and enc["steps"] == 0 and 0 <= enc["nearest_own"] <= 1
    assert load_encoder(home.run_dir(model_id), model_id).model_id == model_id
    engine = Engine.open_home(home, invert_steps=support.INVERT_STEPS)
    try:
        assert engine.model_id == model_id and engine.info().instant_embed is True
    finally:
        engine.close()


def test_no_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = home_with_bundles(tmp_path / "home")
    summary = index(home, "--no-encoder", capsys=capsys)
    assert summary["encoder"] is None
    assert not (home.run_dir(summary["model_id"]) / ENCODER_FILE).exists()
    assert main(["index", "--retrain", "--home", str(home.root), "--encoder-minutes", "0"]) != 0
    assert "--no-encoder" in capsys.readouterr().err
