"""Tags an artist can trust (issue 17): calibrated write thresholds, exclusive groups, one decision function,
and tag model files that hold only data (issue 18: a planted pickle never runs)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from backend.library import review as R
from backend.library.catalogue import Catalogue
from backend.library.errors import LibraryError
from backend.library.tag_decisions import decide, learn_exclusive_groups, write_threshold
from backend.library.tag_lists import read_exclusive_groups
from backend.library.tags import TagModel
from shared.bundle import AssetInfo


def easy_and_noise(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[set[str]]]:
    """'easy' = shape[0] > 0 (with a margin); 'noise' = a coin flip no code carries; 3-legs / 4-legs exclusive."""
    rng = np.random.default_rng(seed)
    shape, texture = rng.normal(size=(n, 16)), rng.normal(size=(n, 16))
    size = np.exp(rng.normal(size=(n, 3)) * 0.3)
    shape[:, 0] += np.sign(shape[:, 0]) * 0.8
    texture[:, 2] += np.sign(texture[:, 2]) * 0.8
    tags = []
    for i in range(n):
        t = {"noise"} if rng.random() < 0.5 else set()
        if shape[i, 0] > 0:
            t.add("easy")
        t.add("3-legs" if texture[i, 2] > 0 else "4-legs")  # never both, each common
        tags.append(t)
    return shape, texture, size, tags


class _Payload:
    """Unpickling this creates a marker file: what a planted tag model would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def tagged_assets(cat: Catalogue, size: np.ndarray, tags: list[set[str]], tagged: int | None = None) -> dict[int, int]:
    """Catalogue assets ``a00``.. of ``size``; the first ``tagged`` (default all) carry their ``tags``; ``{i: id}``."""
    ids = {i: cat.upsert_asset(AssetInfo(name=f"a{i:02d}", size=tuple(float(s) for s in size[i])))
           for i in range(len(size))}
    for i in range(len(size) if tagged is None else tagged):
        cat.add_artist_tags(ids[i], sorted(tags[i]))
    return ids


def test_thresholds_reach_the_target_out_of_fold_and_noise_is_suggest_only() -> None:
    shape, texture, size, tags = easy_and_noise(400)
    model = TagModel("m1")
    report = model.fit(shape[:300], texture[:300], tags[:300], size[:300])
    easy, noise = report["easy"], report["noise"]
    assert model.thresholds["easy"] is not None and easy["write_precision"] >= 0.9 and easy["write_recall"] > 0.5
    assert model.thresholds["noise"] is None and noise["write_threshold"] is None  # suggest only
    # held out: what would be written for 'easy' is right at least 9 times in 10, 'noise' is never written
    probs = model.predict(shape[300:], texture[300:], size[300:])
    written = [model.decide(p, set()).write for p in probs]
    hits = [("easy" in tags[300 + i]) for i, w in enumerate(written) if "easy" in w]
    assert len(hits) > 20 and np.mean(hits) >= 0.9
    assert not any("noise" in w for w in written)
    assert any("noise" in model.decide(p, set()).suggest for p in probs)


def test_a_stricter_target_writes_less() -> None:
    shape, texture, size, tags = easy_and_noise(300, seed=3)
    loose, strict = TagModel("m"), TagModel("m")
    loose.fit(shape, texture, tags, size, target_precision=0.6)
    strict.fit(shape, texture, tags, size, target_precision=0.99)
    assert loose.target_precision == 0.6 and strict.target_precision == 0.99
    assert loose.thresholds["easy"] is not None
    assert strict.thresholds["easy"] is None or strict.thresholds["easy"] >= loose.thresholds["easy"]
    with pytest.raises(LibraryError, match="target precision"):
        TagModel("m").fit(shape, texture, tags, size, target_precision=1.5)


def test_write_threshold_needs_support_and_ignores_a_lucky_top_prediction() -> None:
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    p = np.array([0.99, 0.9, 0.8, 0.7, 0.6, 0.55, 0.52, 0.51])
    assert write_threshold(y, p)["threshold"] is None  # only the top one is right: not evidence
    y2 = np.r_[np.ones(20, int), np.zeros(20, int)]
    p2 = np.r_[np.linspace(0.99, 0.7, 20), np.linspace(0.6, 0.01, 20)]
    w = write_threshold(y2, p2)
    assert w["threshold"] == pytest.approx(0.6) and w["precision"] >= 0.9 and w["recall"] == 1.0
    assert write_threshold(np.zeros(5, int), np.full(5, 0.9))["threshold"] is None


def test_exclusive_groups_are_learnt_and_never_both_written() -> None:
    shape, texture, size, tags = easy_and_noise(200, seed=1)
    assert ["3-legs", "4-legs"] in learn_exclusive_groups(tags)
    assert not any({"easy", "noise"} <= set(g) for g in learn_exclusive_groups(tags))  # they co-occur
    model = TagModel("m")
    model.fit(shape, texture, tags, size)
    assert ["3-legs", "4-legs"] in model.exclusive_groups
    for p in model.predict(shape, texture, size):
        d = model.decide(p, set())
        assert not {"3-legs", "4-legs"} <= set(d.write)
    # even when both pass their thresholds, only the more probable is written; an existing member blocks both
    model.thresholds.update({"3-legs": 0.5, "4-legs": 0.5})
    d = model.decide({"3-legs": 0.8, "4-legs": 0.9, "easy": 0.2}, set())
    assert d.write == {"4-legs": 0.9} and d.suggest == {"3-legs": 0.8} and "more probable" in d.reasons["3-legs"]
    d = model.decide({"3-legs": 0.8, "4-legs": 0.9}, {"3-legs"})
    assert d.write == {} and d.suggest == {} and "exclusive" in d.reasons["4-legs"]


def test_rare_or_never_disjoint_tags_are_not_groups() -> None:
    tags: list[set[str] | None] = [{"a"}] * 4 + [{"b"}] * 4 + [{"c"}] * 30 + [None] * 10
    assert learn_exclusive_groups(tags) == []  # a, b: fewer than 5 examples each
    many = [{"x"}] * 6 + [{"y"}] * 6 + [{"z"}] * 200
    groups = learn_exclusive_groups(many)  # x, y expected together on 6*6/212 < 2 assets: no evidence
    assert groups == [["x", "z"], ["y", "z"]]  # but 6*200/212 > 2 for x, z and y, z


def test_decide_writes_only_at_thresholds_and_suggests_the_rest() -> None:
    d = decide({"red": 0.95, "blue": 0.6, "tall": 0.7, "old": 0.2}, {"tall"},
               {"red": 0.9, "blue": 0.8, "tall": 0.5, "old": None})
    assert d.write == {"red": 0.95} and d.suggest == {"blue": 0.6}
    assert "tall" not in d.reasons and "below" in d.reasons["old"]
    assert TagModel.proposals({"red": 0.95, "blue": 0.6}, {"red"}) == {"blue": 0.6}  # the old helper still works


def test_declared_groups_from_a_tag_list(tmp_path: Path) -> None:
    js = tmp_path / "groups.json"
    js.write_text(json.dumps({"exclusive": [["round-shade", "square-shade", "round-shade"], ["wood", "metal"]]}))
    assert read_exclusive_groups(js) == [["round-shade", "square-shade"], ["metal", "wood"]]
    csv = tmp_path / "groups.csv"
    csv.write_text("# one group per row\n3-legs,4-legs\nsmall;large\n")
    assert read_exclusive_groups(csv) == [["3-legs", "4-legs"], ["large", "small"]]
    (tmp_path / "bad.json").write_text(json.dumps({"exclusive": [["alone"]]}))
    with pytest.raises(LibraryError, match="two different tags"):
        read_exclusive_groups(tmp_path / "bad.json")
    shape, texture, size, tags = easy_and_noise(120, seed=2)
    model = TagModel("m")
    model.fit(shape, texture, tags, size, declared_groups=read_exclusive_groups(js) + [["easy", "noise"]])
    assert ["easy", "noise"] in model.exclusive_groups and ["easy", "noise"] in model.declared_groups


def test_saved_as_data_with_thresholds_and_groups(tmp_path: Path) -> None:
    shape, texture, size, tags = easy_and_noise(150, seed=4)
    model = TagModel("m1")
    model.fit(shape, texture, tags, size, target_precision=0.85, declared_groups=[["easy", "noise"]])
    path = model.save(tmp_path / "tags.joblib")
    assert path.read_bytes()[:4] == b"PK\x03\x04"  # a zip of arrays + JSON, not a pickle
    again = TagModel.load(path, expect_model="m1")
    assert again.thresholds == model.thresholds and again.exclusive_groups == model.exclusive_groups
    assert again.target_precision == 0.85 and again.declared_groups == [["easy", "noise"]]
    assert again.report == json.loads(json.dumps(model.report))
    a, b = model.predict(shape, texture, size), again.predict(shape, texture, size)
    assert max(abs(x[t] - y[t]) for x, y in zip(a, b, strict=True) for t in x) < 1e-9


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_planted_pickle_never_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "tags.joblib"
    path.write_bytes(pickle.dumps({"format": 1, "model_id": "m1", "x": _Payload(marker)}, protocol=protocol))
    with pytest.raises(LibraryError, match="retrain the tags: asset2vec tags train"):
        TagModel.load(path, expect_model="m1")
    # a zip whose members are pickled object arrays is refused too
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        arr = io.BytesIO()
        np.save(arr, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
        for name in ("meta", "member_tag", "mean", "scale", "coef", "intercept", "sig_a", "sig_b", "calibrated"):
            z.writestr(f"{name}.npy", arr.getvalue())
    path.write_bytes(buf.getvalue())
    with pytest.raises(LibraryError, match="retrain the tags"):
        TagModel.load(path, expect_model="m1")
    assert not marker.exists()


def test_review_retraining_keeps_the_calibration(tmp_path: Path) -> None:
    shape, texture, size, tags = easy_and_noise(60, seed=5)
    with Catalogue(tmp_path / "c.sqlite") as cat:
        cat.register_model("m1")
        ids = tagged_assets(cat, size, tags, tagged=50)
        cat.set_codes("m1", {ids[i]: (shape[i], texture[i], None) for i in range(60)}, source="training")
        full, _ = R.fit_tag_model(cat, "m1", target_precision=0.8, declared_groups=[["easy", "noise"]])
        R.predict_catalogue(cat, full)
        new, _ = R.answer_and_retrain(cat, "m1", "a55", "easy", bool(shape[55, 0] > 0), previous=full)
        # Only the answered tag is retrained (and calibrated anew); the others keep their thresholds.
        assert new is not None and new.target_precision == 0.8 and new.report["easy"]["cross_validated"]
        assert {t: v for t, v in new.thresholds.items() if t != "easy"} == {
            t: v for t, v in full.thresholds.items() if t != "easy"}
        assert ["easy", "noise"] in new.exclusive_groups
        bare, _ = R.answer_and_retrain(cat, "m1", "a56", "easy", bool(shape[56, 0] > 0))
        assert bare is not None and all(t is None for t in bare.thresholds.values())  # suggest only until trained


def test_index_tag_stage_replaces_a_planted_pickle_without_running_it(tmp_path: Path) -> None:
    """``asset2vec index``'s tag stage: an unreadable (old, planted) tag model is retrained, never unpickled;
    a readable one passes its target precision and declared groups on."""
    from types import SimpleNamespace

    from backend.library.tags import TAG_MODEL_FILE
    from backend.lifecycle.index import IndexSummary, _tags

    shape, texture, size, tags = easy_and_noise(60, seed=6)
    marker = tmp_path / "marker"
    run = SimpleNamespace(run_dir=tmp_path, model_id="m1")
    (tmp_path / TAG_MODEL_FILE).write_bytes(pickle.dumps(_Payload(marker)))
    with Catalogue(tmp_path / "c.sqlite") as cat:
        cat.register_model("m1")
        ids = tagged_assets(cat, size, tags)
        cat.set_codes("m1", {ids[i]: (shape[i], texture[i], None) for i in range(60)}, source="training")
        summary = IndexSummary(home=str(tmp_path))
        _tags(run, cat, None, summary)
        assert not marker.exists() and "easy" in summary.tags
        model = TagModel.load(tmp_path / TAG_MODEL_FILE, expect_model="m1")
        model.target_precision, model.declared_groups = 0.8, [["easy", "noise"]]
        model.save(tmp_path / TAG_MODEL_FILE)
        _tags(run, cat, None, summary)
        again = TagModel.load(tmp_path / TAG_MODEL_FILE, expect_model="m1")
        assert again.target_precision == 0.8 and ["easy", "noise"] in again.exclusive_groups
