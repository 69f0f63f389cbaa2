"""The tag review queue on a real catalogue with real classifiers: order, stored answers, rejections as
negatives, answers surviving a re-embed, and an answer changing the next prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.library import review as R
from backend.library.catalogue import Catalogue
from backend.library.errors import LibraryError
from backend.library.tags import TagModel, tag_labels
from shared.bundle import AssetInfo
from tests.backend.library.test_library_tags import synthetic

LEARNT = ("armrests", "red", "tall")
TAGGED = 12  # assets the artist tagged in Blender; the rest start untagged


@pytest.fixture
def cat(tmp_path: Path) -> Catalogue:
    c = Catalogue(tmp_path / "catalogue.sqlite")
    c.register_model("m1")
    yield c
    c.close()


def _library(cat: Catalogue, n: int = 80, tagged: int = TAGGED, seed: int = 5) -> list[set[str]]:
    """``n`` assets with synthetic codes whose tags are linear in the codes; the first ``tagged`` carry them."""
    shape, texture, size, tags = synthetic(n, seed=seed)
    truth = [set(t) & set(LEARNT) for t in tags]
    ids = {}
    for i in range(n):
        ids[i] = cat.upsert_asset(AssetInfo(name=f"a{i:02d}", size=tuple(float(s) for s in size[i]),
                                            source_blend=f"//lib{i % 3}.blend", asset_name=f"A{i}"))
        if i < tagged:
            cat.add_artist_tags(ids[i], sorted(truth[i]) + ["furniture"])
    cat.set_codes("m1", {ids[i]: (shape[i], texture[i], None) for i in range(n)}, source="training")
    return truth


def test_queue_is_least_sure_first_without_answered_or_artist_pairs(cat: Catalogue) -> None:
    for name, tags in (("chair", ["seat"]), ("lamp", []), ("sofa", [])):
        cat.add_artist_tags(cat.upsert_asset(AssetInfo(name=name, source_blend="//f.blend", asset_name=name.title())),
                            tags)
    cat.set_predicted_tags("m1", {
        "chair": {"seat": 0.52, "red": 0.9, "wood": 0.45},
        "lamp": {"seat": 0.05, "red": 0.55, "wood": 0.3},
        "sofa": {"seat": 0.48, "red": 0.01},
    })
    cat.set_predicted_tags("m2", {"lamp": {"seat": 0.5}})  # another model's predictions never show up
    q = R.review_queue(cat, "m1", limit=10)
    # |p - 0.5|: sofa/seat .02, chair/wood .05, lamp/red .05, lamp/wood .2, chair/red .4, lamp/seat .45, sofa/red .49;
    # chair/seat is an artist tag already.
    assert [(i["name"], i["tag"]) for i in q] == [
        ("sofa", "seat"), ("chair", "wood"), ("lamp", "red"), ("lamp", "wood"), ("chair", "red"), ("lamp", "seat"),
        ("sofa", "red")]
    assert q[0] == {"name": "sofa", "asset_id": cat.asset_by_name("sofa").id, "tag": "seat", "probability": 0.48,
                    "source_file": "//f.blend", "asset_name": "Sofa", "learnt": True, "boundary": 0.5}
    R.record_answer(cat, "sofa", "seat", True)
    R.record_answer(cat, "chair", "wood", False)
    q = R.review_queue(cat, "m1", limit=2, exclude=[(cat.asset_by_name("lamp").id, "red")])
    assert [(i["name"], i["tag"]) for i in q] == [("lamp", "wood"), ("chair", "red")]
    with pytest.raises(LibraryError, match="at least 1"):
        R.review_queue(cat, "m1", limit=0)


def test_answers_are_stored_and_accepted_ones_are_artist_tags(cat: Catalogue) -> None:
    aid = cat.upsert_asset(AssetInfo(name="chair"))
    cat.add_artist_tags(aid, ["seat"])
    R.record_answer(cat, "chair", "wood", True)
    R.record_answer(cat, "chair", "red", False)
    R.record_answer(cat, "chair", "seat", False)  # rejecting an artist tag never removes it
    assert cat.tags_of("chair")["artist"] == ["seat", "wood"]
    answers = {(r["tag"], r["accepted"]) for r in cat.reviews()}
    assert answers == {("wood", True), ("red", False), ("seat", False)}
    assert cat.rejected_tag_sets([aid]) == [{"red", "seat"}]
    R.record_answer(cat, "chair", "red", True)  # a changed mind replaces the answer
    assert cat.review_answers([aid])[0]["red"] is True and "red" in cat.tags_of("chair")["artist"]
    with pytest.raises(LibraryError, match="no asset named 'chiar'.*'chair'"):
        R.record_answer(cat, "chiar", "red", True)
    with pytest.raises(LibraryError, match="non-empty"):
        R.record_answer(cat, "chair", "  ", True)


def test_re_embedding_keeps_accepted_answers(cat: Catalogue) -> None:
    aid = cat.upsert_asset(AssetInfo(name="chair"))
    cat.set_artist_tags(aid, ["seat", "old"])
    R.record_answer(cat, "chair", "wood", True)
    R.record_answer(cat, "chair", "red", False)
    cat.set_artist_tags(aid, ["seat", "new"])  # Blender sends the asset again with its current tags
    assert cat.tags_of("chair")["artist"] == ["new", "seat", "wood"]
    assert {r["tag"] for r in cat.reviews()} == {"wood", "red"}


def test_tag_labels_rejections_and_partial_assets() -> None:
    tag_sets = [{"red"}, {"wood"}, None, None, {"red"}, {"red"}]
    rejected = [set(), set(), {"red"}, set(), {"red"}, set()]
    partial = [False, False, False, False, False, True]
    rows, y = tag_labels("red", tag_sets, rejected, partial)
    # 0 artist tag; 1 fully tagged without red; 2 untagged but rejected; 3 unlabelled; 4 artist tag wins over a
    # rejection; 5 only accepted answers (partial) with red.
    assert rows.tolist() == [0, 1, 2, 4, 5] and y.tolist() == [1, 0, 0, 1, 1]
    rows, y = tag_labels("wood", tag_sets, rejected, partial)
    assert rows.tolist() == [0, 1, 4] and y.tolist() == [0, 1, 0]  # a partial asset is no negative for wood


def test_rejections_are_negatives_when_training(cat: Catalogue) -> None:
    _library(cat, n=40, tagged=10)
    table = cat.codes("m1")
    before = R.fit_tag_model(cat, "m1", cross_validate=False)[1]["red"]
    untagged = [n for n in table.names if not cat.tags_of(n)["artist"]][:3]
    for name in untagged:
        R.record_answer(cat, name, "red", False)
    R.record_answer(cat, untagged[0], "tall", True)  # a partial asset: positive for tall, no negative for red/armrests
    after = R.fit_tag_model(cat, "m1", cross_validate=False)[1]
    assert after["red"]["negatives"] == before["negatives"] + 3
    assert after["red"]["positives"] == before["positives"]
    assert after["armrests"]["positives"] + after["armrests"]["negatives"] == 10
    labels = R.training_labels(cat, table.ids)
    i = table.index_of(untagged[0])
    assert labels.tag_sets[i] == {"tall"} and labels.partial[i] and labels.rejected[i] == {"red"}
    assert after["red"]["cross_validated"] is False and "precision" not in after["red"]
    full = R.fit_tag_model(cat, "m1")[1]["red"]
    assert full["cross_validated"] is True and 0.0 <= full["precision"] <= 1.0


def test_an_answer_changes_the_next_prediction(cat: Catalogue) -> None:
    truth = _library(cat)
    model, report = R.fit_tag_model(cat, "m1", cross_validate=False)
    assert set(model.tags) == set(LEARNT) and report["furniture"]["status"] == "skipped"
    assert R.ensure_predictions(cat, model) == 80 and R.ensure_predictions(cat, model) == 0
    first = R.review_queue(cat, "m1", limit=5)
    assert len(first) == 5 and all(it["tag"] in LEARNT for it in first)
    assert all(abs(a["probability"] - 0.5) <= abs(b["probability"] - 0.5) for a, b in zip(first, first[1:], strict=False))
    for _ in range(6):  # the artist answers the head of the queue, from the truth
        item = R.review_queue(cat, "m1", limit=1)[0]
        has = item["tag"] in truth[int(item["name"][1:])]
        model, s = R.answer_and_retrain(cat, "m1", item["name"], item["tag"], has)
        assert model is not None and s["retrained"] and s["previous_probability"] == pytest.approx(item["probability"])
        # the new classifiers agree with the answer, and the stored prediction is theirs
        assert (s["probability"] > item["probability"]) if has else (s["probability"] < item["probability"])
        assert (s["probability"] >= 0.5) == has, s["message"]
        assert R.probability_of(cat, "m1", item["name"], item["tag"]) == s["probability"]
        assert (item["name"], item["tag"]) not in {(i["name"], i["tag"]) for i in R.review_queue(cat, "m1", 50)}
        assert ("accepted" if has else "rejected") in s["message"]
    assert len(cat.reviews()) == 6


def test_queue_never_asks_about_tags_too_rare_to_learn(cat: Catalogue) -> None:
    """Issue 17: a tag seen on one asset ("mine-wood") is never asked about; it is asked about once learnt."""
    _library(cat, n=40, tagged=10)
    cat.add_artist_tags("a00", ["mine-wood"])  # one example: no classifier can learn it
    model, report = R.fit_tag_model(cat, "m1")
    R.predict_catalogue(cat, model)
    assert report["mine-wood"]["status"] == "skipped"
    for queue in (R.review_queue(cat, "m1", limit=500), R.review_queue(cat, "m1", limit=500, model=model)):
        assert queue and {q["tag"] for q in queue} <= set(model.tags) and all(q["learnt"] for q in queue)


def test_queue_ranks_by_distance_to_the_write_threshold(cat: Catalogue) -> None:
    _library(cat, n=60, tagged=40)
    model, _ = R.fit_tag_model(cat, "m1")
    R.predict_catalogue(cat, model)
    model.thresholds = {t: (0.8 if t == "red" else None) for t in model.tags}
    queue = R.review_queue(cat, "m1", limit=30, model=model)
    assert all(q["boundary"] == (0.8 if q["tag"] == "red" else 0.5) for q in queue)
    gaps = [abs(q["probability"] - q["boundary"]) for q in queue]
    assert gaps == sorted(gaps)


def test_new_tag_questions_until_the_tag_is_learnt(cat: Catalogue) -> None:
    _library(cat, n=40, tagged=10)
    cat.add_artist_tags("a00", ["special"])  # one example: no classifier can learn it
    model, report = R.fit_tag_model(cat, "m1", cross_validate=False)
    R.predict_catalogue(cat, model)
    assert report["special"]["status"] == "skipped" and report["furniture"]["status"] == "skipped"
    new = R.new_tag_questions(cat, "m1")
    special = [q for q in new if q["tag"] == "special"]
    assert len(special) == 2 and all(not q["learnt"] and not cat.tags_of(q["name"])["artist"] for q in special)
    assert all(0.0 < q["probability"] < 1.0 for q in new)
    # 'furniture' is on every tagged asset (no negatives): the questions go to the least likely assets.
    assert len([q for q in new if q["tag"] == "furniture"]) == 2
    queue = R.review_queue(cat, "m1", limit=200, new_tags=True)  # only when asked for (off by default)
    assert {(q["name"], q["tag"]) for q in new} <= {(q["name"], q["tag"]) for q in queue}
    assert not any(q["tag"] == "special" for q in R.review_queue(cat, "m1", limit=200))
    skipped = [(special[0]["asset_id"], "special")]
    assert special[0]["name"] not in {q["name"] for q in R.new_tag_questions(cat, "m1", exclude=skipped)
                                      if q["tag"] == "special"}
    for _ in range(2):  # the artist says yes twice: 3 examples, and the tag is learnt
        q = next(q for q in R.new_tag_questions(cat, "m1") if q["tag"] == "special")
        model, s = R.answer_and_retrain(cat, "m1", q["name"], "special", True)
    assert "special" in model.tags and s["probability"] is not None
    assert not any(q["tag"] == "special" for q in R.new_tag_questions(cat, "m1"))
    assert all(q["learnt"] for q in R.review_queue(cat, "m1", limit=200) if q["tag"] == "special")


def test_answer_before_anything_can_be_trained(cat: Catalogue) -> None:
    _library(cat, n=10, tagged=0)
    model, s = R.answer_and_retrain(cat, "m1", "a00", "red", False)
    assert model is None and not s["retrained"] and "answer stored" in s["message"]
    assert cat.reviews()[0]["tag"] == "red"
    with pytest.raises(LibraryError, match="no asset named"):
        R.answer_and_retrain(cat, "m1", "nope", "red", True)
    assert R.ensure_predictions(cat, None) == 0
    assert R.predict_catalogue(cat, TagModel("m1")) == 0


def test_fit_keeps_old_callers_working() -> None:
    shape, texture, size, tags = synthetic(60, seed=2)
    report = TagModel("m1").fit(shape, texture, tags, size)
    assert report["red"]["status"] == "trained" and report["red"]["cross_validated"] is True
    with pytest.raises(LibraryError, match="rejection sets"):
        TagModel("m1").fit(shape, texture, tags, size, rejected=[set()])
    assert np.isfinite(report["red"]["average_precision"])


def test_knn_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    q, pts = rng.normal(size=(37, 5)), rng.normal(size=(23, 5))
    dist, idx = R._knn(q, pts, 4, chunk=10)
    full = np.linalg.norm(q[:, None] - pts[None], axis=-1)
    assert np.array_equal(idx, np.argsort(full, axis=1)[:, :4])
    assert np.allclose(dist, np.sort(full, axis=1)[:, :4], atol=1e-6)
    dist, idx = R._knn(q, pts[:3], 5)  # fewer points than k: all of them, nearest first
    assert idx.shape == (37, 3) and np.all(np.diff(dist, axis=1) >= 0)
