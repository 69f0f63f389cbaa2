"""Bad libraries get clear errors; a library of mixed view sizes is resized on load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backend.model.errors import ModelError
from backend.training.data import find_bundles, load_views, read_bundles
from backend.training.trainer import train
from tests.backend import synthetic

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

FAST = {"image_size": 16, "rays_per_batch": 128, "empty_points": 128}


def test_mixed_sizes_are_resized_to_the_preset(tmp_path: Path) -> None:
    synthetic.write_bundle(tmp_path / "lib" / "a", "small_ball", synthetic.scene("ball", "red"), 16)
    synthetic.write_bundle(tmp_path / "lib" / "deep" / "b", "big_crate", synthetic.scene("crate", "blue"), 32)
    views = load_views(read_bundles(find_bundles(tmp_path / "lib")), 16)
    assert views.images.shape == (2, 18, 16, 16, 4) and views.names == ["small_ball", "big_crate"]
    # resizing keeps the silhouette's coverage (area-weighted, premultiplied)
    big = read_bundles([tmp_path / "lib" / "deep" / "b"])
    full = load_views(big, 32).images[0, ..., 3].float().mean()
    assert abs(float(views.images[1, ..., 3].float().mean()) - float(full)) < 3.0
    s = train(tmp_path / "lib", tmp_path / "run", steps=2, show_progress=False, overrides=FAST)
    assert s.assets == 2 and s.image_size == 16


def test_empty_and_missing_libraries(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="library is empty"):
        train(tmp_path / "empty", tmp_path / "run", show_progress=False)
    with pytest.raises(ModelError, match="not a folder of view bundles"):
        train(tmp_path / "missing", tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_foreign_rig_and_duplicate_names(tmp_path: Path, library: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(library / "ball_red", lib / "ball_red")
    shutil.copytree(library / "crate_blue", lib / "crate_blue")
    meta_path = lib / "crate_blue" / "transforms.json"
    meta = json.loads(meta_path.read_text())
    meta["rig"]["name"] = "someone-elses-rig"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"crate_blue.*rig 'someone-elses-rig'"):
        train(lib, tmp_path / "run", show_progress=False)
    meta["rig"]["name"] = "asset2vec-3x6-v1"
    meta["asset"]["name"] = "ball_red"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="both named 'ball_red'"):
        train(lib, tmp_path / "run", show_progress=False)


def test_resume_on_a_changed_library(tmp_path: Path, library: Path) -> None:
    lib = tmp_path / "lib"
    for name in ("ball_red", "crate_blue"):
        shutil.copytree(library / name, lib / name)
    train(lib, tmp_path / "run", steps=2, show_progress=False, overrides=FAST)
    shutil.copytree(library / "table_red", lib / "table_red")
    with pytest.raises(ModelError, match="library changed"):
        train(lib, tmp_path / "run", resume=True, steps=4, show_progress=False)


def test_full_preset_trains_on_cpu(tmp_path: Path, library: Path) -> None:
    """The 8 x 256 decoder with its skip connection runs end to end (tiny sizes; mixed precision is CUDA-only)."""
    lib = tmp_path / "lib"
    shutil.copytree(library / "ball_red", lib / "ball_red")
    small = {"image_size": 16, "rays_per_batch": 64, "samples_per_ray": 8, "hull_resolution": 16, "empty_points": 64}
    s = train(lib, tmp_path / "run", preset="full", steps=2, show_progress=False, overrides=small)
    assert s.preset == "full" and s.step == 2 and s.loss == s.loss


def test_model_options_override_the_preset(tmp_path: Path, library: Path) -> None:
    """Ablations set ModelConfig fields as "model.NAME"; the run keeps them, so loading it rebuilds that model."""
    from backend.training.run import load_run

    lib = tmp_path / "lib"
    for name in ("ball_red", "crate_blue"):
        shutil.copytree(library / name, lib / name)
    over = {**FAST, "model.shape_dim": 16, "model.texture_dim": 48, "model.view_dependent": False}
    train(lib, tmp_path / "run", steps=2, show_progress=False, overrides=over)
    run = load_run(tmp_path / "run", device="cpu")
    assert run.shape_codes.shape == (2, 16) and run.texture_codes.shape == (2, 48)
    assert run.config.model.view_dependent is False
    with pytest.raises(ModelError, match="unknown model option 'depth'"):
        train(lib, tmp_path / "other", steps=2, show_progress=False, overrides={"model.depth": 3})
