"""Retraining keeps the tag policy (issue 17): a new model built by ``asset2vec index`` (or the service's build)
keeps the previous model's target precision and declared exclusive groups; ``index --target-precision`` sets it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.cli import main
from backend.library.catalogue import Catalogue
from backend.library.tags import TAG_MODEL_FILE, TagModel
from backend.lifecycle.home import LibraryHome
from backend.lifecycle.index import IndexSummary, _tags
from tests.backend.library.test_tag_decisions import easy_and_noise, tagged_assets


def test_a_new_model_keeps_the_previous_models_tag_policy(tmp_path: Path) -> None:
    home = LibraryHome.at(tmp_path / "home")
    shape, texture, size, tags = easy_and_noise(60, seed=8)
    with Catalogue(tmp_path / "c.sqlite") as cat:
        ids = tagged_assets(cat, size, tags)
        for model_id, sign in (("m1", 1.0), ("m2", -1.0)):
            cat.register_model(model_id)
            cat.set_codes(model_id, {ids[i]: (sign * shape[i], texture[i], None) for i in range(60)},
                          source="training")
        old = TagModel("m1")
        old.fit(shape, texture, tags, size, target_precision=0.8, declared_groups=[["easy", "noise"]])
        old.save(home.run_dir("m1") / TAG_MODEL_FILE)

        # index --retrain: the new model m2 has no tag model yet; the previously active m1's policy carries over.
        new_run = SimpleNamespace(run_dir=home.run_dir("m2"), model_id="m2")
        _tags(new_run, cat, home, IndexSummary(home=str(home.root), previous_model="m1"))
        new = TagModel.load(home.run_dir("m2") / TAG_MODEL_FILE, expect_model="m2")
        assert new.target_precision == 0.8 and new.declared_groups == [["easy", "noise"]]
        assert ["easy", "noise"] in new.exclusive_groups and "easy" in new.tags
        # Only the policy: m2's thresholds are calibrated on m2's codes (the tag model of m1 is never reused).
        assert new.report["easy"]["cross_validated"] and new.classifiers["easy"] is not old.classifiers["easy"]

        # index --target-precision P replaces it (and is kept from then on), groups stay.
        _tags(new_run, cat, home, IndexSummary(home=str(home.root), previous_model="m1"), target_precision=0.6)
        again = TagModel.load(home.run_dir("m2") / TAG_MODEL_FILE, expect_model="m2")
        assert again.target_precision == 0.6 and again.declared_groups == [["easy", "noise"]]
        _tags(new_run, cat, home, IndexSummary(home=str(home.root), previous_model="m1"))
        assert TagModel.load(home.run_dir("m2") / TAG_MODEL_FILE).target_precision == 0.6


@pytest.mark.parametrize("value", ["0", "1.5", "90", "nan"])
def test_index_refuses_a_target_precision_out_of_range(value: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    code = main(["index", str(tmp_path), "--home", str(tmp_path / "home"), "--target-precision", value])
    err = capsys.readouterr().err
    assert code != 0 and "--target-precision must be in (0, 1]" in err
    assert not (tmp_path / "home").exists()  # refused before any work starts


def test_the_services_tag_retraining_keeps_the_served_policy(tmp_path: Path) -> None:
    """``POST /v1/train {"what": "tags"}`` (``tagging.fit_tags``): the served tag model's target and declared groups
    stay unless the server was started with its own ``--target-precision``."""
    from backend.service.tagging import fit_tags

    shape, texture, size, tags = easy_and_noise(60, seed=9)
    with Catalogue(tmp_path / "c.sqlite") as cat:
        cat.register_model("m1")
        ids = tagged_assets(cat, size, tags)
        cat.set_codes("m1", {ids[i]: (shape[i], texture[i], None) for i in range(60)}, source="training")
        served = TagModel("m1")
        served.fit(shape, texture, tags, size, target_precision=0.8, declared_groups=[["easy", "noise"]])
        state = SimpleNamespace(model_id="m1", tag_model=served, tag_model_path=tmp_path / TAG_MODEL_FILE)
        model, _ = fit_tags(cat, state)
        assert model.target_precision == 0.8 and model.declared_groups == [["easy", "noise"]]
        assert TagModel.load(tmp_path / TAG_MODEL_FILE, expect_model="m1").target_precision == 0.8
        model, _ = fit_tags(cat, state, target_precision=0.6)  # serve --target-precision 0.6
        assert model.target_precision == 0.6 and model.declared_groups == [["easy", "noise"]]
