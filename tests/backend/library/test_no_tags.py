"""A library without a single artist tag: neighbours, clusters named by typical assets and the exploration page
still work, every tag surface says how tags start, and importing a tag list is enough to train tag classifiers.

The catalogue holds synthetic codes with known structure (4 shape groups x 4 colour groups) stored under the
model id of a tiny real trained run, so the real CLI and Engine run on it (the run's decoder renders them).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main
from backend.library import explore
from backend.library.catalogue import Catalogue
from backend.library.errors import LibraryError
from backend.library.tag_lists import import_tag_list, read_tag_list
from backend.library.tags import FEW_TAGS_HELP, NO_TAGS_HELP, tag_status
from shared import api
from shared.bundle import AssetInfo
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

SHAPES = ("chair", "table", "lamp", "sofa")
COLOURS = ("red", "green", "blue", "oak")
PER_CELL = 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.fresh_run_copy(tmp_path_factory.mktemp("no-tags") / "run")


@pytest.fixture(scope="module")
def model_id(run_dir: Path) -> str:
    from backend.training.run import load_run

    return load_run(run_dir).model_id


def _name(s: int, c: int, r: int) -> str:
    return f"{SHAPES[s]}s/{SHAPES[s]}_{COLOURS[c]}_{r}"  # catalogue names are <file>/<asset>


@pytest.fixture
def untagged(tmp_path: Path, model_id: str) -> Path:
    """A catalogue of 32 assets with codes of the run's model and no tag at all."""
    rng = np.random.default_rng(3)
    shape_c, colour_c = rng.normal(size=(4, 32)) * 3, rng.normal(size=(4, 32)) * 3
    path = tmp_path / "catalogue.sqlite"
    with Catalogue(path) as cat:
        codes = {}
        for s in range(4):
            for c in range(4):
                for r in range(PER_CELL):
                    aid = cat.upsert_asset(AssetInfo(name=_name(s, c, r), size=(1.0, 1.0, 1.0)))
                    codes[aid] = (shape_c[s] + rng.normal(size=32) * 0.3, colour_c[c] + rng.normal(size=32) * 0.3, None)
        cat.register_model(model_id, preset="cpu-small")
        cat.set_codes(model_id, codes, source="training")
    return path


def cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_neighbours_clusters_and_explore_page_without_tags(run_dir: Path, untagged: Path, tmp_path: Path,
                                                           capsys) -> None:
    code, out, _ = cli(capsys, "similar", "--all", "--run", run_dir, "--catalogue", untagged, "-k", "3")
    assert code == 0 and "32 assets" in out
    with Catalogue(untagged) as cat:
        model = cat.active_model()
        for name in cat.asset_names():
            nb = cat.neighbours_of(name, model, "both")
            assert len(nb) == 3 and name not in [n["name"] for n in nb]
        table = cat.codes(model)
        assert tag_status(cat) == {"tagged_assets": 0, "tags": {}, "message": NO_TAGS_HELP}

    cl = explore.clusters(explore.space_features(table, "shape"), table.names)
    assert cl["k"] == 4
    for c in cl["clusters"]:
        assert c["name"] in table.names and c["typical"][0] == c["name"] and len(c["typical"]) == 3
        assert set(c["typical"]) <= set(c["members"])
        assert len({m.split("/")[0] for m in c["members"]}) == 1  # one shape group per shape cluster

    out_dir = tmp_path / "explore"
    code, out, _ = cli(capsys, "explore", "--run", run_dir, "--catalogue", untagged, "--out", out_dir,
                       "--image-size", "8", "--json")
    assert code == 0
    summary = json.loads((out_dir / "explore.json").read_text())
    assert summary["tags"]["tagged_assets"] == 0 and summary["tags"]["message"] == NO_TAGS_HELP
    page = (out_dir / "index.html").read_text()
    assert "No asset has tags yet" in page and "asset2vec tags import" in page and "Review Tags" in page
    for space in ("shape", "texture"):
        clusters = summary[f"clusters_{space}"]["clusters"]
        assert len(clusters) == 4
        for c in clusters:
            assert c["name"] in table.names and f"<b>{c['name']}</b>" in page
            assert all(n in page for n in c["typical"])
    assert page.count("data:image/png;base64,") >= 4  # typical members shown with their thumbnails


def test_tag_commands_say_how_tags_start(run_dir: Path, untagged: Path, tmp_path: Path, capsys) -> None:
    tag_model = tmp_path / "tags.joblib"
    for action in ("train", "predict", "report"):
        code, out, err = cli(capsys, "tags", action, "--run", run_dir, "--catalogue", untagged,
                             "--tag-model", tag_model)
        assert code == 2, action
        assert "Traceback" not in err and "No asset has tags yet" in err and "asset2vec tags import" in err, action
    assert not tag_model.exists()
    code, out, _ = cli(capsys, "catalogue", "info", "--run", run_dir, "--catalogue", untagged)
    assert code == 0 and "0 assets with artist tags" in out and "No asset has tags yet" in out


def test_tags_import_then_train(run_dir: Path, untagged: Path, tmp_path: Path, capsys) -> None:
    with Catalogue(untagged) as cat:
        cat.add_artist_tags(_name(0, 0, 0), ["mine"])  # an artist's own tag, which the import must keep
    rows = ["name,tags"]
    for s in range(4):
        for c in range(4):
            for r in range(PER_CELL):
                rows.append(f"{_name(s, c, r)},{SHAPES[s]};{COLOURS[c]}" if r == 0 else f"{_name(s, c, r)},{SHAPES[s]}")
    rows += [f"{_name(1, 1, 1)},{COLOURS[1]}", "chairs/chair_red_9,chair"]  # name repeated; one unknown name
    csv = tmp_path / "tags.csv"
    csv.write_text("\n".join(rows) + "\n")

    code, _, err = cli(capsys, "tags", "import", csv, "--catalogue", untagged)
    assert code == 2 and "chairs/chair_red_9" in err and "did you mean" in err and "--skip-unknown" in err
    with Catalogue(untagged) as cat:
        assert cat.artist_tags() == {cat.asset_by_name(_name(0, 0, 0)).id: {"mine"}}  # nothing written

    code, out, _ = cli(capsys, "tags", "import", csv, "--catalogue", untagged, "--skip-unknown", "--json")
    result = json.loads(out)
    assert code == 0 and result["assets"] == 32 and result["unknown"] == ["chairs/chair_red_9"]
    assert result["added"] == 32 + 16 + 1 and result["tagged_assets"] == 32
    assert result["tags"]["chair"] == 8 and result["tags"]["green"] == 5
    with Catalogue(untagged) as cat:
        assert cat.tags_of(_name(0, 0, 0))["artist"] == ["chair", "mine", "red"]
        assert cat.tags_of(_name(1, 1, 1))["artist"] == ["green", "table"]
        assert tag_status(cat)["message"] is None

    code, out, _ = cli(capsys, "tags", "import", csv, "--catalogue", untagged, "--skip-unknown")
    assert code == 0 and "added 0 artist tags" in out and "already had" in out  # importing again changes nothing

    tag_model = tmp_path / "tags.joblib"
    code, out, _ = cli(capsys, "tags", "train", "--run", run_dir, "--catalogue", untagged, "--tag-model", tag_model,
                       "--json")
    report = json.loads(out)
    assert code == 0 and set(SHAPES) <= set(report["trained"]) and tag_model.is_file()
    code, out, _ = cli(capsys, "tags", "predict", "--run", run_dir, "--catalogue", untagged, "--tag-model", tag_model,
                       "--json")
    pred = json.loads(out)
    assert code == 0 and len(pred) == 32 and pred[_name(2, 3, 1)]["artist"] == ["lamp"]


def test_train_with_too_few_examples_keeps_no_empty_model(run_dir: Path, untagged: Path, tmp_path: Path,
                                                          capsys) -> None:
    data = tmp_path / "tags.json"
    data.write_text(json.dumps({_name(0, 0, 0): ["chair"], _name(0, 1, 0): "chair; red"}))
    code, out, _ = cli(capsys, "tags", "import", data, "--run", run_dir, "--catalogue", untagged)
    assert code == 0 and "added 3 artist tags to 2 assets" in out
    tag_model = tmp_path / "tags.joblib"
    code, out, err = cli(capsys, "tags", "train", "--run", run_dir, "--catalogue", untagged, "--tag-model", tag_model)
    assert code == 2 and "skipped" in out and "No tag has enough examples" in err and not tag_model.exists()


def test_reading_tag_lists(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("a/x,chair\na/x,red;  wood ;\n\nb/y,lamp,metal\n")
    assert read_tag_list(f) == {"a/x": ["chair", "red", "wood"], "b/y": ["lamp", "metal"]}
    f.write_text("a/x,chair\nb/y\n")
    with pytest.raises(LibraryError, match=r"t.csv:2: expected 'name,tag'"):
        read_tag_list(f)
    j = tmp_path / "t.json"
    j.write_text('{"a/x": [1, 2]}')
    with pytest.raises(LibraryError, match="must be a list of strings"):
        read_tag_list(j)
    j.write_text("[1]")
    with pytest.raises(LibraryError, match="expected a JSON object"):
        read_tag_list(j)
    with pytest.raises(LibraryError, match="no such tag list"):
        read_tag_list(tmp_path / "missing.csv")
    with Catalogue(tmp_path / "empty.sqlite") as cat, pytest.raises(LibraryError, match="catalogue is empty"):
        import_tag_list(cat, {"a/x": ["chair"]})


def test_engine_info_says_how_tags_start(run_dir: Path, untagged: Path, tmp_path: Path) -> None:
    from backend.service.engine import Engine
    from backend.training.run import load_run

    engine = Engine(load_run(run_dir), Catalogue(untagged), tmp_path / "tags.joblib")
    try:
        info = engine.info()
        assert engine.tag_model is None and info.tags == [] and info.tags_help == NO_TAGS_HELP
        assert info.assets == 32  # the untagged catalogue is served as it is (no import of the run's assets)
        assert engine.neighbours(_name(3, 2, 0), "shape", k=3).neighbours

        import_tag_list(engine.catalogue, {_name(0, 0, 0): ["chair"]})
        assert engine.info().tags_help == FEW_TAGS_HELP
        import_tag_list(engine.catalogue, {_name(s, c, r): [SHAPES[s]] for s in range(4) for c in range(4)
                                           for r in range(PER_CELL)})
        result = engine.train(api.TrainRequest(what="tags"), lambda f, m: None, threading.Event())
        assert set(result.trained) == set(SHAPES)
        info = engine.info()
        assert info.tags == sorted(SHAPES) and info.tags_help is None
    finally:
        engine.close()
