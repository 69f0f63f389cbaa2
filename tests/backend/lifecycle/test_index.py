"""``asset2vec index``: end to end on a small generated library, killed (SIGKILL) in every stage
(the ``indexed`` fixture in conftest.py does the killing; these tests check what it left)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from backend.cli import main
from backend.library.catalogue import Catalogue
from backend.lifecycle.home import LibraryHome

pytestmark = pytest.mark.slow  # captures with Cycles and trains in `asset2vec index` subprocesses


def test_index_survives_kills_and_fills_the_catalogue(indexed: dict[str, Any]) -> None:
    home, model_id = indexed["home"], indexed["model_id"]
    with Catalogue(home.catalogue) as cat:
        assert cat.active_model() == model_id
        table = cat.codes(model_id)
        assert len(table) == 36 and cat.integrity_ok()
        # Neighbours stored for every asset in every space.
        for name in table.names:
            for space in ("shape", "texture", "both"):
                assert len(cat.neighbours_of(name, model_id, space)) == 10
        # Tags learnt from the sample library's artist tags, predicted for every asset and marked predicted.
        assert indexed["summary"]["tags"]
        tags = cat.tags_of(table.names[0], model_id)
        assert tags["probabilities"] and set(tags["predicted"]).isdisjoint(tags["artist"])
        assert cat.thumbnail(table.names[-1])  # the stored view, for the panel
    # The lamps are what the model trained on; the tables came later, by inversion started from the instant
    # encoder's code (the model has one).
    assert indexed["first"]["assets"] == 18 and indexed["summary"]["assets"] == 36
    assert indexed["summary"]["from_encoder"] == indexed["summary"]["inverted"] > 0
    # The training's plan came before its first step (a resumed run keeps its checkpoint's steps: no new plan).
    (plan,) = indexed["plans"]
    assert plan["steps"] == 40 and plan["steps_rule"] == "explicit" and plan["expected_seconds"] > 0
    assert indexed["first"]["training_plan"] is None
    # The catalogue's size is reported: thumbnails and codes are part of every asset's share.
    size = indexed["summary"]["catalogue"]
    assert size["db_bytes"] > size["bytes_per_asset"] * 36 * 0.9 > 0
    assert size["parts_per_asset"]["thumbnails"] > 0 and size["parts_per_asset"]["codes"] > 0


def test_models_cli_lists_uses_and_restores(indexed: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    home = LibraryHome.at(tmp_path / "copy")
    shutil.copytree(indexed["home"].root, home.root)
    assert main(["models", "--home", str(home.root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["active"] == indexed["model_id"] and len(listed["models"]) == 1
    assert main(["models", "restore", "--home", str(home.root)]) == 2  # nothing to restore yet
    assert "no previous model" in capsys.readouterr().err
    assert main(["models", "use", "nope", "--home", str(home.root)]) == 2
    assert "no files" in capsys.readouterr().err


def test_index_refuses_what_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path / "missing"), "--home", str(tmp_path / "h")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["index", str(tmp_path / "empty"), "--home", str(tmp_path / "h")]) == 2
    assert "no .blend files" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "empty"), "--home", str(tmp_path / "empty" / "inside")]) == 2
    assert "inside the library" in capsys.readouterr().err
    assert main(["index", "--home", str(tmp_path / "h")]) == 2
    assert "which library" in capsys.readouterr().err


def test_a_retrain_killed_after_training_does_not_train_again(indexed: dict[str, Any], tmp_path: Path,
                                                                run_index: Any) -> None:
    home = LibraryHome.at(tmp_path / "home")
    shutil.copytree(indexed["home"].root, home.root)
    args = ["--retrain", "--home", str(home.root), "--steps", "10", "--no-explore", "--progress-json"]
    code, _ = run_index(args, lambda ev, h: ev["stage"] in ("embed", "tags", "neighbours"), home)
    assert code != 0
    built = home.read_state()["built"]
    assert built != indexed["model_id"] and built in home.model_ids()
    code, events = run_index(args)
    assert not [e for e in events if e.get("stage") == "train" and e.get("done")]  # no training step again
    assert events[-1]["model_id"] == built and events[-1]["activated"]
    assert "built" not in home.read_state()
