"""The product descriptor: block normalisation and weights, stored and restored."""

from __future__ import annotations

import numpy as np
import pytest

from backend.features import FeatureError
from backend.features.descriptor import Descriptor


def _blocks(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"appearance": rng.normal(size=(n, 50)) * 7 + 3, "shape": rng.normal(size=(n, 32)),
            "texture": rng.normal(size=(n, 32)) * 0.1, "size": rng.normal(size=(n, 3))}


def test_each_block_weighs_its_weight_whatever_its_scale() -> None:
    b = _blocks()
    d = Descriptor({"appearance": 1.0, "shape": 0.5, "texture": 0.25, "size": 1.0})
    x = d.fit_transform(b)
    assert x.shape == (40, 50 + 32 + 32 + 3)
    spans = {"appearance": slice(0, 50), "shape": slice(50, 82), "texture": slice(82, 114), "size": slice(114, 117)}
    for name, sl in spans.items():
        rms = np.sqrt((x[:, sl] ** 2).sum(1).mean())
        assert rms == pytest.approx(d.weights[name], rel=1e-4)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)


def test_zero_weight_blocks_are_left_out_and_missing_ones_named() -> None:
    b = _blocks()
    d = Descriptor({"appearance": 1.0, "shape": 0.0, "size": 1.0})
    assert d.fit_transform(b).shape == (40, 53)
    with pytest.raises(FeatureError, match="size"):
        d.transform({"appearance": b["appearance"]})
    with pytest.raises(FeatureError, match="not fitted"):
        Descriptor().transform(b)


def test_round_trip_transforms_new_assets_like_the_original() -> None:
    d = Descriptor().fit(_blocks())
    new = _blocks(5, seed=1)
    again = Descriptor.from_json(d.to_json())
    np.testing.assert_allclose(again.transform(new), d.transform(new), rtol=1e-6)
    stale = {**d.to_json(), "feature_key": "efficientnet-lite1-160px-old"}
    with pytest.raises(FeatureError, match="refit"):
        Descriptor.from_json(stale)


def test_a_tag_metric_pulls_same_tag_assets_together_out_of_fold() -> None:
    from backend.library import quality as Q

    rng = np.random.default_rng(3)
    n = 90
    label = np.repeat(np.arange(3), n // 3)
    # the tagged signal hides in 2 of 60 noisy dimensions: plain distances barely see it, a tag metric does
    app = rng.normal(size=(n, 60))
    app[:, :2] += np.eye(3)[label][:, :2] * 2.5 + (label == 2)[:, None] * -2.0
    blocks = {"appearance": app, "size": rng.normal(size=(n, 3)) * 0.01}
    tags = [[f"t{v}"] for v in label]
    plain = Descriptor({"appearance": 1.0, "size": 0.0}).fit_transform(blocks)
    w = {"appearance": 1.0, "size": 0.0, "tags": 3.0}

    def embed(train: np.ndarray) -> np.ndarray:
        known = set(train.tolist())
        return Descriptor(w).fit_transform(blocks, [t if i in known else None for i, t in enumerate(tags)])

    before = Q.precision_at_k(plain, label, 10)
    after = Q.oof_precision_at_k(embed, list(label), 10)
    assert after > before + 0.15
    d = Descriptor(w).fit(blocks, tags)
    assert d.tag_names == ["t0", "t1", "t2"]
    assert d.transform(blocks).shape == (n, 60 + 3) and d.transform(blocks, with_tags=False).shape == (n, 60)
    again = Descriptor.from_json(d.to_json())
    np.testing.assert_allclose(again.transform(blocks), d.transform(blocks), rtol=1e-5, atol=1e-6)
