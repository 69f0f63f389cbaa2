"""The service on a library whose assets have their appearance feature (issue 15's descriptor): the tag model learns
on the descriptor, and an Embed over real loopback HTTP computes the upload's feature, predicts its tags from it and
places it in the "both" space with it. (Models without a descriptor: every other service test.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.features.library import FEATURE, store_library_features
from backend.library.catalogue import Catalogue, import_run
from backend.service.engine import Engine
from backend.service.server import Service
from backend.training.data import find_bundles, read_bundles
from backend.training.run import load_run
from shared.client import Client
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # serves the tiny trained run


def test_embed_predicts_tags_from_the_uploads_appearance(tmp_path: Path) -> None:
    run = support.fresh_run_copy(tmp_path / "run")
    library = tmp_path / "library"
    shutil.copytree(support.workspace() / "library", library)
    with Catalogue(run / "catalogue.sqlite") as cat:
        import_run(cat, load_run(run))
        assert store_library_features(cat, read_bundles(find_bundles(library))).computed == 8
    engine = Engine.open(run, invert_steps=support.INVERT_STEPS, tag_target=support.TAG_TARGET)
    try:
        model = engine.served.state.tag_model
        assert model is not None and model.descriptor is not None  # learnt on the descriptor at start
        with Service(engine, host="127.0.0.1", port=0, advertise=False) as svc:
            res = Client(svc.url).embed(support.upload_bundle("ball", "red", name="desc_ball"))
        assert set(res.predicted_tags) == set(model.tags) and "ball" in res.predicted_tags
        assert res.predicted_tags["ball"] > res.predicted_tags["crate"]  # the views of a red ball
        assert res.neighbours["both"] and res.neighbours["both"][0].name.startswith("ball")
        cat = engine.served.catalogue
        vectors, has = cat.appearance(FEATURE, [cat.asset_by_name("desc_ball").id])
        assert has.all() and vectors.shape == (1, 2560)  # stored: the next index does not compute it again
        assert engine.served.uses_appearance()
    finally:
        engine.close()


def test_a_fresh_home_gets_the_starter_models_shipped_features(tmp_path: Path) -> None:
    """The starter model ships its assets' features (``appearance.npz``): a fresh home's "both" space uses them."""
    from backend.lifecycle.home import LibraryHome
    from backend.lifecycle.starter import starter_run_dir

    if not (starter_run_dir() / "appearance.npz").is_file():
        pytest.skip("the starter model was built without appearance.npz (asset2vec starter-model adds it)")
    engine = Engine.open_home(LibraryHome.at(tmp_path / "home"))
    try:
        assert engine.catalogue.count("appearance") == len(engine.served.codes())
        assert engine.served.uses_appearance() and engine.served.index("both").featurizer.appearance_weight > 0
    finally:
        engine.close()
