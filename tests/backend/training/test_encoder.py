"""The instant encoder on a tiny real run, both kinds (the CNN on the views; ridge on the pretrained appearance
feature): it learns its training assets' codes, is fast, and its codes are usable."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from backend.library.catalogue import Catalogue
from backend.model.errors import ModelError
from backend.training.data import find_bundles, read_bundles
from backend.training.encoder import ENCODER_FILE, encode_bundles, load_encoder, train_encoder
from backend.training.run import load_run

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)


@pytest.fixture(scope="module")
def encoded(trained, library, tmp_path_factory):
    """A copy of the shared run (so its folder stays as other tests expect) with a trained encoder."""
    run_dir = tmp_path_factory.mktemp("encoder-run") / "run"
    shutil.copytree(trained[0], run_dir)
    summary = train_encoder(run_dir, library, minutes=1.0, steps=300, show_progress=False, kind="views")
    return run_dir, summary


@pytest.fixture(scope="module")
def feature_encoded(trained, library, tmp_path_factory):
    """Another copy of the run with the default encoder: the feature kind (the backbone runs here)."""
    run_dir = tmp_path_factory.mktemp("feature-encoder-run") / "run"
    shutil.copytree(trained[0], run_dir)
    return run_dir, train_encoder(run_dir, library, show_progress=False)


def test_encoder_codes_land_nearest_their_own_asset(encoded, library) -> None:
    run_dir, summary = encoded
    assert summary.path == run_dir / ENCODER_FILE and summary.path.is_file()
    assert summary.steps == 300 and np.isfinite(summary.loss)
    run = load_run(run_dir)
    bundles = read_bundles(find_bundles(library))
    shape, texture = encode_bundles(run, bundles)
    assert shape.shape == (len(bundles), 32) and texture.shape == (len(bundles), 32)
    learned = np.concatenate([run.shape_codes, run.texture_codes], axis=1)
    got = np.concatenate([shape, texture], axis=1)
    order = [run.index(b.asset.name) for b in bundles]
    d = ((got[:, None, :] - learned[None, order, :]) ** 2).sum(-1)  # [bundle, asset in bundle order]
    own = np.diag(d)
    others = np.where(np.eye(len(d), dtype=bool), np.inf, d).min(1)
    assert (own < others).all(), f"own-code distances {own} vs nearest other {others}"
    assert summary.nearest_own == 1.0


def test_encode_time_for_one_bundle(encoded, library) -> None:
    run_dir, _ = encoded
    path = find_bundles(library)[0]
    encode_bundles(run_dir, [path])  # loads and caches the encoder
    t0 = time.perf_counter()
    shape, _ = encode_bundles(run_dir, [path])
    seconds = time.perf_counter() - t0
    print(f"\nencode one bundle (read + decode 18 views + forward): {seconds * 1000:.0f} ms")
    assert shape.shape == (1, 32)


def test_encoder_codes_go_into_the_catalogue_and_seed_inversion(encoded, library, tmp_path) -> None:
    run_dir, _ = encoded
    run = load_run(run_dir)
    bundles = read_bundles(find_bundles(library))[:2]
    shape, texture = encode_bundles(run, bundles)
    with Catalogue(tmp_path / "c.sqlite") as cat:
        ids = [cat.upsert_asset(b.asset) for b in bundles]
        cat.set_codes(run.model_id, {i: (s, t, None) for i, s, t in zip(ids, shape, texture, strict=True)},
                      source="encoder")
        table = cat.codes(run.model_id)
        assert np.allclose(table.shape[table.index_of(bundles[0].asset.name)], shape[0], atol=1e-6)
    init = np.concatenate([shape, texture], axis=1)
    refined = run.invert(bundles, steps=5, init=init)
    assert len(refined) == 2 and all(np.isfinite(r.psnr) for r in refined)
    # Five small steps from the encoder's code stay near it; from the default start they would start at the mean.
    moved = np.abs(np.concatenate([refined[0].shape, refined[0].texture]) - init[0]).max()
    mean_gap = np.abs(init[0] - np.concatenate([run.shape_codes, run.texture_codes], axis=1).mean(0)).max()
    assert moved < mean_gap
    with pytest.raises(ModelError, match="init codes must be"):
        run.invert(bundles, steps=1, init=init[:1])


def test_missing_encoder_is_a_clear_error(trained, tmp_path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    (run_dir / ENCODER_FILE).unlink(missing_ok=True)
    with pytest.raises(ModelError, match="no instant encoder"):
        load_encoder(run_dir)


def test_cli_train_encoder_then_instant_and_refined_embed(trained, library, tmp_path, capsys) -> None:
    from backend.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    (run_dir / ENCODER_FILE).unlink(missing_ok=True)
    bundle_dirs = [str(p) for p in find_bundles(library)[:2]]
    assert main(["embed", *bundle_dirs, "--run", str(run_dir), "--encoder"]) == 2
    assert "no instant encoder" in capsys.readouterr().err
    assert main(["train-encoder", str(library), "--run", str(run_dir), "--steps", "40"]) == 0
    assert (run_dir / ENCODER_FILE).is_file()
    assert "feature encoder fitted in" in capsys.readouterr().out  # the default kind; --steps is the CNN's
    out_json = tmp_path / "codes.json"
    assert main(["embed", *bundle_dirs, "--run", str(run_dir), "--encoder", "--out", str(out_json)]) == 0
    assert "instant encoder code" in capsys.readouterr().out
    instant_assets = json.loads(out_json.read_text())["assets"]  # strict JSON: no NaN for the missing PSNR
    assert all(a["psnr"] is None for a in instant_assets)
    instant = [a["shape"] + a["texture"] for a in instant_assets]
    assert main(["embed", *bundle_dirs, "--run", str(run_dir), "--encoder", "--refine", "--steps", "3",
                 "--out", str(out_json)]) == 0
    refined = json.loads(out_json.read_text())["assets"]
    assert all(a["psnr"] is not None and np.isfinite(a["psnr"]) for a in refined)
    assert np.abs(np.array([a["shape"] + a["texture"] for a in refined]) - np.array(instant)).max() > 0
    assert main(["embed", *bundle_dirs, "--run", str(run_dir), "--refine"]) == 2
    assert "pass --encoder too" in capsys.readouterr().err


def test_the_default_encoder_reads_the_appearance_feature(feature_encoded, encoded, library) -> None:
    """The feature kind: fitted on the backbone's cached per-view activations (none left to compute for the index's
    feature step), no training steps, its codes land nearest their own; the CNN's file of the same run still loads;
    an encoder fitted on other activations (a new preprocessing version) is refused, not misread."""
    from backend.features.multiview import DEFAULT_SPEC, cache_path
    from backend.training.encoder import ENCODER_LAYERS, FeatureEncoder, input_name

    run_dir, summary = feature_encoded
    assert summary.kind == "feature" and summary.steps == 0 and summary.path == run_dir / ENCODER_FILE
    assert summary.nearest_own == 1.0 and np.isfinite(summary.loss)
    bundles = read_bundles(find_bundles(library))
    assert all(cache_path(b, DEFAULT_SPEC).is_file() for b in bundles)  # computed once, cached with the bundle
    run = load_run(run_dir)
    enc = load_encoder(run_dir, run.model_id)
    assert isinstance(enc, FeatureEncoder) and enc.feature == input_name() and enc.layers == ENCODER_LAYERS
    shape, texture = encode_bundles(run, bundles)
    learned = np.concatenate([run.shape_codes, run.texture_codes], axis=1)[[run.index(b.asset.name) for b in bundles]]
    got = np.concatenate([shape, texture], axis=1)
    d = ((got[:, None, :] - learned[None, :, :]) ** 2).sum(-1)
    assert (d.argmin(1) == np.arange(len(d))).all()
    assert load_encoder(encoded[0]).kind == "views"
    with pytest.raises(ModelError, match="unknown encoder kind"):
        train_encoder(run_dir, library, kind="pixels")
    stale = FeatureEncoder("efficientnet-lite1-160px-white-bilinear-v0/x/per-view", enc.layers, enc.mean, enc.scale,
                           enc.weight, enc.bias, enc.shape_dim)
    with pytest.raises(ModelError, match="train the encoder again"):
        stale.encode_views([])


def test_feature_encoder_fit_and_out_of_fold_check() -> None:
    """Ridge on standardised features recovers a linear map; the out-of-fold check is what new assets get."""
    from backend.training.encoder import feature_encoder_check, fit_feature_encoder

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 40)).astype(np.float32)
    codes = feats[:, :8] @ rng.normal(size=(8, 6)).astype(np.float32)  # a code that is a function of the feature
    enc = fit_feature_encoder(feats, codes, "f", shape_dim=3, alpha=1.0)  # primal: more assets than inputs
    assert np.abs(enc.encode_features(feats) - codes).max() < 0.1 * np.abs(codes).max()
    assert feature_encoder_check(feats, codes, alpha=1.0) > 0.9
    noise = rng.normal(size=codes.shape).astype(np.float32)  # codes unrelated to the feature: no better than chance
    assert feature_encoder_check(feats, noise, alpha=1.0) < 0.2
    assert feature_encoder_check(feats[:6], codes[:6]) is None  # too few assets for five folds
    # The dual (N x N) system, for fewer assets than inputs, gives the primal's answer: 30 assets, 20 inputs, and the
    # same 20 inputs padded with 20 silent ones.
    narrow, wide = feats[:30, :20], np.concatenate([feats[:30, :20], np.zeros((30, 20), np.float32)], axis=1)
    assert np.allclose(fit_feature_encoder(narrow, codes[:30], "f", alpha=1.0).encode_features(narrow),
                       fit_feature_encoder(wide, codes[:30], "f", alpha=1.0).encode_features(wide), atol=1e-3)
    with pytest.raises(ModelError, match="reads 40 numbers per asset"):
        enc.encode_features(feats[:, :10])
