"""A review answer retrains only what it changes (issues 17 and 18): the answered tag's classifier, calibrated
anew; every other classifier (identical coefficients), threshold and stored prediction stays as it was."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from backend.library import review as R
from backend.library.catalogue import Catalogue
from backend.library.tag_store import to_linear
from backend.library.tags import TagModel
from tests.backend.library.test_review import LEARNT
from tests.backend.library.test_review import _library as library


@pytest.fixture
def cat(tmp_path: Path) -> Catalogue:
    c = Catalogue(tmp_path / "catalogue.sqlite")
    c.register_model("m1")
    yield c
    c.close()


def _library(cat: Catalogue) -> list[set[str]]:
    return library(cat, n=60, tagged=40, seed=7)  # 60 assets, the first 40 tagged


def _arrays(model: TagModel, tag: str) -> list[np.ndarray]:
    lin = to_linear(model.classifiers[tag])
    return [lin.mean, lin.scale, lin.coef, lin.intercept, lin.sig_a, lin.sig_b]


def _stored(cat: Catalogue, tag: str) -> dict[str, float]:
    return {f"a{i:02d}": cat.tags_of(f"a{i:02d}", "m1")["probabilities"].get(tag) for i in range(60)}


def test_an_answer_retrains_only_its_tag(cat: Catalogue, tmp_path: Path) -> None:
    truth = _library(cat)
    full, _ = R.fit_tag_model(cat, "m1", target_precision=0.8, declared_groups=[["red", "tall"]])
    R.predict_catalogue(cat, full)
    path = full.save(tmp_path / "tags.joblib")
    previous = TagModel.load(path, expect_model="m1")  # as served: the classifiers are data-only arrays
    before = {t: _stored(cat, t) for t in LEARNT}
    name = "a50"  # untagged: the answer makes it a positive of 'red' only
    red = "red" in truth[50]

    t0 = time.perf_counter()
    model, summary = R.answer_and_retrain(cat, "m1", name, "red", red, previous=previous)
    seconds = time.perf_counter() - t0

    assert model is not None and summary["retrained"] and summary["probability"] is not None
    for tag in ("armrests", "tall"):  # untouched: the very same classifiers, thresholds, report and predictions
        assert model.classifiers[tag] is previous.classifiers[tag]
        for a, b in zip(_arrays(model, tag), _arrays(previous, tag), strict=True):
            np.testing.assert_array_equal(a, b)
        assert model.thresholds[tag] == previous.thresholds[tag] and model.report[tag] == previous.report[tag]
        assert _stored(cat, tag) == before[tag]
    # The answered tag: retrained with the answer as a label, cross-validated, predicted again.
    assert model.classifiers["red"] is not previous.classifiers["red"]
    report = model.report["red"]
    assert report["cross_validated"] and report["positives"] + report["negatives"] == 41
    assert "write_threshold" in report and model.thresholds["red"] == report["write_threshold"]
    assert _stored(cat, "red") != before["red"] and _stored(cat, "red")[name] == summary["probability"]
    assert (summary["probability"] > summary["previous_probability"]) == red
    # The policy is kept; the served model is never changed in place.
    assert model.target_precision == 0.8 and ["red", "tall"] in model.exclusive_groups
    assert previous.report["red"]["positives"] + previous.report["red"]["negatives"] == 40
    # Fast: one tag's classifier, not every tag's (generous bound: a shared, busy CPU).
    assert seconds < 5.0, seconds


def test_an_answer_can_teach_a_new_tag_without_touching_the_others(cat: Catalogue) -> None:
    _library(cat)
    for name in ("a00", "a01"):
        cat.add_artist_tags(name, ["wicker"])
    full, report = R.fit_tag_model(cat, "m1")
    R.predict_catalogue(cat, full)
    assert report["wicker"]["status"] == "skipped"
    model, summary = R.answer_and_retrain(cat, "m1", "a45", "wicker", True, previous=full)
    assert "wicker" in model.classifiers and summary["probability"] is not None  # three examples now: learnt
    assert all(model.classifiers[t] is full.classifiers[t] for t in LEARNT)
    assert R.review_queue(cat, "m1", limit=200, model=model)  # its predictions are stored beside the others'
