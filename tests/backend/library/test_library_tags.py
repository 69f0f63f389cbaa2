"""Tag classifiers recover linear tags from codes, skip tags with too few examples, save/load per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.library.errors import LibraryError
from backend.library.tags import TagModel


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[set[str]]]:
    """Codes where 'armrests' = shape[0] + shape[3] > 0, 'red' = texture[1] > 0, 'tall' = height > 1 m.

    Each deciding quantity is pushed a little away from its threshold (a margin, as real attributes
    have), the other 61 code dimensions are pure noise.
    """
    rng = np.random.default_rng(seed)
    shape = rng.normal(size=(n, 32))
    texture = rng.normal(size=(n, 32))
    size = np.exp(rng.normal(size=(n, 3)) * 0.5)
    m = np.sign(shape[:, 0] + shape[:, 3]) * 0.6
    shape[:, 0] += m
    shape[:, 3] += m
    texture[:, 1] += np.sign(texture[:, 1]) * 0.6
    size[:, 2] *= np.exp(np.sign(np.log(size[:, 2])) * 0.3)
    tags = []
    for i in range(n):
        t = set()
        if shape[i, 0] + shape[i, 3] > 0:
            t.add("armrests")
        if texture[i, 1] > 0:
            t.add("red")
        if size[i, 2] > 1.0:
            t.add("tall")
        t.add("furniture")  # on every asset: no negatives -> must be skipped
        tags.append(t)
    tags[0].add("rare")
    tags[1].add("rare")  # 2 positives < 3 -> skipped
    return shape, texture, size, tags


def test_recovers_linear_tags_on_held_out() -> None:
    shape, texture, size, tags = synthetic(300)
    train, test = slice(0, 200), slice(200, 300)
    model = TagModel("m1", use_size=True)
    report = model.fit(shape[train], texture[train], tags[train], size[train])
    assert report["furniture"]["status"] == "skipped" and report["rare"]["status"] == "skipped"
    assert "rare" not in model.tags and "furniture" not in model.tags
    for tag in ("armrests", "red", "tall"):
        assert report[tag]["status"] == "trained"
        assert report[tag]["calibrated"] is True
        assert report[tag]["precision"] > 0.8 and report[tag]["recall"] > 0.8
    probs = model.predict(shape[test], texture[test], size[test])
    assert len(probs) == 100
    for tag in ("armrests", "red", "tall"):
        p = np.array([d[tag] for d in probs])
        assert np.all((p >= 0) & (p <= 1))
        truth = np.array([tag in t for t in tags[test]])
        assert ((p >= 0.5) == truth).mean() >= 0.9, tag


def test_unlabelled_assets_are_not_negatives() -> None:
    shape, texture, size, tags = synthetic(120, seed=3)
    with_none: list[set[str] | None] = list(tags)
    for i in range(0, 120, 2):
        with_none[i] = None
    report = TagModel("m1").fit(shape, texture, with_none, size)
    assert report["armrests"]["positives"] + report["armrests"]["negatives"] == 60


def test_proposals_never_remove_artist_tags() -> None:
    props = TagModel.proposals({"armrests": 0.9, "red": 0.2, "swivel": 0.55}, {"red", "legs"})
    assert props == {"armrests": 0.9, "swivel": 0.55}


def test_save_load_refuses_other_model(tmp_path: Path) -> None:
    shape, texture, size, tags = synthetic(80, seed=1)
    model = TagModel("m1", use_size=False)
    model.fit(shape, texture, tags)
    path = model.save(tmp_path / "tags.joblib")
    again = TagModel.load(path, expect_model="m1")
    np.testing.assert_allclose(
        [d["red"] for d in again.predict(shape[:5], texture[:5])], [d["red"] for d in model.predict(shape[:5], texture[:5])]
    )
    with pytest.raises(LibraryError, match="model m1, not m2"):
        TagModel.load(path, expect_model="m2")
    (tmp_path / "junk.joblib").write_bytes(b"garbage")
    with pytest.raises(LibraryError, match="not a readable tag model"):
        TagModel.load(tmp_path / "junk.joblib")


def test_no_tags_at_all() -> None:
    shape, texture, size, _ = synthetic(10)
    with pytest.raises(LibraryError, match="No asset has tags yet.*asset2vec tags import"):
        TagModel("m1").fit(shape, texture, [None] * 10, size)


def test_a_descriptor_model_learns_what_only_the_appearance_feature_carries(tmp_path: Path) -> None:
    """Tags that only a pretrained feature carries (codes are noise) are learnt through the descriptor."""
    from backend.features.descriptor import Descriptor, log_size

    rng = np.random.default_rng(5)
    n = 80
    shape, texture = rng.normal(size=(n, 32)), rng.normal(size=(n, 32))
    size = np.exp(rng.normal(size=(n, 3)) * 0.3)
    appearance = rng.normal(size=(n, 20))
    is_lamp = appearance[:, 4] > 0
    appearance[:, 4] += np.where(is_lamp, 0.8, -0.8)
    tag_sets: list[set[str] | None] = [{"lamp"} if lamp else {"other"} for lamp in is_lamp]
    codes_only = TagModel("m").fit(shape, texture, tag_sets, size=size)
    desc = Descriptor().fit({"appearance": appearance, "shape": shape, "texture": texture, "size": log_size(size)})
    model = TagModel("m", descriptor=desc.to_json())
    report = model.fit(shape, texture, tag_sets, size=size, appearance=appearance)
    assert report["lamp"]["average_precision"] > 0.9 > codes_only["lamp"]["average_precision"] + 0.2
    with pytest.raises(LibraryError, match="appearance feature"):
        model.predict(shape[:2], texture[:2], size[:2])
    again = TagModel.load(model.save(tmp_path / "tags.joblib"))
    assert again.descriptor == model.descriptor
    p = again.predict(shape, texture, size, appearance=appearance)
    assert np.mean([(q["lamp"] > 0.5) == lamp for q, lamp in zip(p, is_lamp, strict=True)]) > 0.9
