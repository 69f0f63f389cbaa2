"""The quality metrics on small synthetic cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from backend.library import quality as Q


def _clusters(n_per: int = 12, k: int = 4, dim: int = 8, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 5
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(size=(len(y), dim)) * spread, y


def test_separable_features_score_perfectly() -> None:
    x, y = _clusters()
    assert Q.cv_accuracy(x, y) == 1.0
    assert Q.precision_at_k(x, y, 10) == 1.0
    assert Q.precision_at_k(x, y, 1) == 1.0
    tags = [[f"c{v}"] + (["even"] if v % 2 == 0 else []) for v in y]
    t = Q.tag_map(x, tags)
    assert t["tags"] == 5 and t["map"] == pytest.approx(1.0)


def test_random_features_score_about_chance() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 50)
    x = rng.normal(size=(len(y), 16))
    assert abs(Q.cv_accuracy(x, y) - 0.25) < 0.12
    assert abs(Q.precision_at_k(x, y, 10) - 0.25) < 0.06
    tags = [[f"c{v}"] for v in y]
    t = Q.tag_map(x, tags)
    assert abs(t["map"] - t["chance_map"]) < 0.12 and t["chance_map"] == pytest.approx(0.25)


def test_average_precision_by_hand() -> None:
    # Ranking: + - + - -  -> hits at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    positive = np.array([True, False, True, False, False])
    assert Q.average_precision(scores, positive) == pytest.approx((1 + 2 / 3) / 2)
    # Input order does not matter, only the ranking.
    perm = np.array([3, 0, 4, 2, 1])
    assert Q.average_precision(scores[perm], positive[perm]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError):
        Q.average_precision(scores, np.zeros(5, bool))


def test_precision_at_k_by_hand() -> None:
    # Points on a line: a a b b; nearest other of each: 0->1 (a), 1->0 (a), 2->3 (b), 3->2 (b); k=2 adds one miss each.
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    y = np.array(["a", "a", "b", "b"])
    assert Q.precision_at_k(x, y, 1) == 1.0
    assert Q.precision_at_k(x, y, 2) == 0.5
    assert Q.precision_at_k(x, y, 50) == pytest.approx(1 / 3)  # capped at the 3 others


def test_adapted_precision_finds_the_labelled_direction_out_of_fold() -> None:
    # The label lives in one dimension among 20 louder noise dimensions: plain neighbours are near chance, an
    # LDA space learnt on the other folds finds the label's direction.
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(4), 30)
    x = rng.normal(size=(len(y), 20)) * 5
    x[:, 0] = y * 3 + rng.normal(size=len(y)) * 0.2
    assert Q.precision_at_k(x, y, 10) < 0.5
    assert Q.adapted_precision_at_k(x, y, 10) > 0.9
    # Labels unrelated to the features: adapting cannot help, since each query's label is held out of the fit.
    shuffled = rng.permutation(y)
    assert abs(Q.adapted_precision_at_k(x, shuffled, 10) - 0.25) < 0.1


def test_probes_separate_what_each_half_encodes() -> None:
    rng = np.random.default_rng(2)
    n = 60
    shape_attr = rng.integers(0, 2, n)
    colour = rng.integers(0, 3, n)
    shape_half = np.eye(2)[shape_attr] * 3 + rng.normal(size=(n, 2)) * 0.1
    texture_half = np.eye(3)[colour] * 3 + rng.normal(size=(n, 3)) * 0.1
    labels_with_gap = [None if i % 10 == 0 else v for i, v in enumerate(shape_attr)]
    out = Q.probe_attributes({"shape": shape_half, "texture": texture_half},
                             {"legs": labels_with_gap, "colour": colour, "constant": [1] * n})
    assert "constant" not in out  # one class: nothing to probe
    assert out["legs"]["n"] == n - 6 and out["legs"]["shape"] == 1.0 and out["legs"]["texture"] < 0.8
    assert out["colour"]["texture"] == 1.0 and out["colour"]["shape"] < 0.6


def test_blocks_weigh_blocks_equally_and_standardise() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(30, 64)) * np.linspace(0.1, 10, 64)
    s = rng.normal(size=(30, 3))
    f = Q.blocks([a, s], [1.0, 1.0])
    assert f.shape == (30, 67)
    rms = lambda b: np.sqrt((b ** 2).sum(1).mean())  # noqa: E731
    assert rms(f[:, :64]) == pytest.approx(1.0) and rms(f[:, 64:]) == pytest.approx(1.0)
    assert np.allclose(f[:, :64].std(0), f[:, 0].std())  # every dimension on the same scale
    assert Q.usable_labels(["a", "a", "b", None, ""]).tolist() == [True, True, False, False, False]


def test_whiten_decorrelates_to_unit_variance() -> None:
    rng = np.random.default_rng(4)
    rot, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    x = rng.normal(size=(200, 5)) * np.array([0.5, 1, 2, 3, 4]) @ rot + 3.0  # correlated, well-conditioned
    w = Q.whiten(x)
    assert np.allclose(np.cov(w, rowvar=False), np.eye(5), atol=1e-6)


def test_score_adds_visual_class_metrics_on_the_classed_assets_only() -> None:
    x, y = _clusters(n_per=12, k=4)
    visual: list[str | None] = [f"v{v}" if v < 3 else None for v in y]  # cluster 3 has no visual class
    s = Q.score(x, y, [[f"c{v}"] for v in y], visual=visual, adapted=False)
    assert s["visual_accuracy"] == 1.0 and s["visual_precision_at_10"] == 1.0
    assert s["visual_assets"] == 36 and s["visual_classes"] == 3
    assert "precision_at_10_adapted" not in s
    # labels that disagree with the features: the visual metrics drop, the category metrics do not
    mixed: list[str | None] = [f"v{i % 3}" for i in range(len(y))]
    s2 = Q.score(x, y, visual=mixed, adapted=False)
    assert s2["category_accuracy"] == 1.0 and s2["visual_precision_at_10"] < 0.6
    assert "visual_accuracy" not in Q.score(x, y, visual=[None] * len(y), adapted=False)
