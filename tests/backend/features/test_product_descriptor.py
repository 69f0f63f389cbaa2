"""The product uses issue 15's descriptor: ``asset2vec index`` stores each asset's appearance feature once, learns
the tags on the descriptor and builds the "both" space on it; one asset whose feature fails falls back to the codes.

A tiny home of 8 synthetic 16 px bundles (balls and crates in 4 colours) with random codes: what the tags and the
"both" neighbours know about kind comes from the pretrained feature only.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from backend.features import library as FL
from backend.library.catalogue import Catalogue
from backend.library.review import answer_and_retrain
from backend.library.tags import TAG_MODEL_FILE, TagModel
from backend.lifecycle.home import LibraryHome
from backend.lifecycle.index import IndexSummary, _appearance_features, _neighbours, _tags
from backend.training.data import find_bundles, read_bundles
from tests.backend import synthetic

ITEMS = [(k, c) for k in ("ball", "crate") for c in ("red", "green", "blue", "yellow")]


class Events:
    """Stands in for the pipeline's progress (``update(done, total, message)``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float, str]] = []

    def update(self, done: float, total: float, message: str = "", eta_s: float | None = None) -> None:
        self.seen.append((done, total, message))


def tiny_home(root: Path) -> tuple[LibraryHome, SimpleNamespace]:
    """A home with 8 bundles, catalogued with random codes of model m1 and their artist tags (kind, colour)."""
    home = LibraryHome.at(root / "home")
    home.create()
    synthetic.make_library(home.bundles, ITEMS, size=16)
    rng = np.random.default_rng(0)
    with Catalogue(home.catalogue) as cat:
        cat.register_model("m1")
        codes = {}
        for b in read_bundles(find_bundles(home.bundles)):
            aid = cat.upsert_asset(b.asset)
            cat.set_artist_tags(aid, b.asset.tags)
            codes[aid] = (rng.normal(size=8), rng.normal(size=8), None)
        cat.set_codes("m1", codes, source="training")
    return home, SimpleNamespace(run_dir=home.run_dir("m1"), model_id="m1")


def test_index_stores_features_once_and_learns_tags_and_neighbours_on_the_descriptor(tmp_path: Path) -> None:
    home, run = tiny_home(tmp_path)
    events = Events()
    with Catalogue(home.catalogue) as cat:
        summary = IndexSummary(home=str(home.root))
        _appearance_features(cat, home, summary, events)  # type: ignore[arg-type]
        _tags(run, cat, home, summary, progress=events)  # type: ignore[arg-type]
        assert not summary.failures and "features" in summary.seconds
        assert cat.count("appearance") == 8
        assert any("appearance feature" in m for _, _, m in events.seen)  # the step shows progress
        # cached next to each bundle too
        assert len(list(home.bundles.glob("*/features/*.npz"))) == 8

        model = TagModel.load(run.run_dir / TAG_MODEL_FILE, expect_model="m1")
        assert model.descriptor is not None and FL.descriptor_feature(model.descriptor) == FL.FEATURE
        assert set(summary.tags) == {"ball", "crate"}
        table = cat.codes("m1")
        probs = {n: cat.tags_of(n, "m1")["probabilities"] for n in table.names}
        assert all(set(p) == {"ball", "crate"} for p in probs.values())  # predictions stored for every asset
        # random codes know nothing of kind: the appearance feature does
        assert all((p["ball"] > p["crate"]) == n.startswith("ball") for n, p in probs.items())

        # Stored once: a second index reads nothing again.
        again = FL.store_library_features(cat, read_bundles(find_bundles(home.bundles)))
        assert again.up_to_date == 8 and again.computed == 0

        # "both" on the descriptor: a ball's nearest assets are balls; shape space (random codes) is unchanged.
        _neighbours(cat, "m1", events)  # type: ignore[arg-type]
        for name in table.names:
            near = [n["name"] for n in cat.neighbours_of(name, "m1", "both")[:3]]
            assert all(n.split("_")[0] == name.split("_")[0] for n in near), (name, near)

        # A review answer refits only its tag of the descriptor model, from the stored features.
        new, info = answer_and_retrain(cat, "m1", "ball_red", "ball", True, previous=model)
        assert new is not None and info["retrained"] and new.descriptor == model.descriptor
        assert new.report["ball"]["cross_validated"] and new.classifiers["crate"] is model.classifiers["crate"]


def test_a_failed_feature_falls_back_to_the_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, run = tiny_home(tmp_path)
    real = FL.bundle_feature

    def flaky(bundle: Any, use_cache: bool = True) -> Any:
        if bundle.asset.name == "crate_blue":
            raise RuntimeError("backbone exploded")
        return real(bundle, use_cache)

    monkeypatch.setattr(FL, "bundle_feature", flaky)
    with Catalogue(home.catalogue) as cat:
        summary = IndexSummary(home=str(home.root))
        _appearance_features(cat, home, summary, Events())  # type: ignore[arg-type]
        _tags(run, cat, home, summary)
        assert cat.count("appearance") == 7
        assert any("crate_blue" in f and "backbone exploded" in f for f in summary.failures)
        model = TagModel.load(run.run_dir / TAG_MODEL_FILE, expect_model="m1")
        assert model.descriptor is None and model.tags  # the codes-only model, as before
        assert all(cat.tags_of(n, "m1")["probabilities"] for n in cat.codes("m1").names)
        _neighbours(cat, "m1", Events())  # type: ignore[arg-type]
        assert len(cat.neighbours_of("ball_red", "m1", "both")) == 7  # codes-only "both" space


def test_each_tag_keeps_the_inputs_that_carry_it_and_the_file_round_trips(tmp_path: Path) -> None:
    """A descriptor tag model tries each tag on the descriptor and on the codes (out of fold) and keeps the better:
    a tag only the codes carry keeps the codes; the saved file (tags of different widths) predicts the same."""
    from backend.features.descriptor import Descriptor, log_size

    rng = np.random.default_rng(3)
    n = 60
    shape, texture = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
    size = np.exp(rng.normal(size=(n, 3)) * 0.1)
    appearance = np.abs(rng.normal(size=(n, 2560))).astype(np.float32)
    kind = rng.random(n) > 0.5
    appearance[kind, :40] += 3.0  # "b": seen in the views only
    tags = [{t for t, on in (("a", shape[i, 0] > 0), ("b", kind[i])) if on} | {"any"} for i in range(n)]
    desc = Descriptor().fit({"appearance": appearance, "shape": shape, "texture": texture, "size": log_size(size)})
    model = TagModel("m1", descriptor=desc.to_json())
    report = model.fit(shape, texture, tags, size, appearance=appearance)
    assert model.source("a") == "codes" and model.source("b") == "descriptor"
    assert report["a"]["features"] == "codes" and report["a"]["average_precision"] >= report["a"]["average_precision_other"]
    model.save(tmp_path / TAG_MODEL_FILE)
    again = TagModel.load(tmp_path / TAG_MODEL_FILE, expect_model="m1")
    assert again.sources == {"a": "codes", "b": "descriptor"}
    p0 = model.predict(shape, texture, size, appearance=appearance)
    p1 = again.predict(shape, texture, size, appearance=appearance)
    assert all(abs(x[t] - y[t]) < 1e-9 for x, y in zip(p0, p1, strict=True) for t in x)
