"""``asset2vec catalogue query-image`` on the pretrained appearance feature (issue 15), end to end on real parts.

A tiny run (a few training steps: the decoder only has to exist for the fallback) over 8 synthetic 16 px bundles
(balls and crates in 4 colours), its catalogue, and the EfficientNet-Lite1 feature of every bundle stored in the
catalogue as ``asset2vec index`` stores it. A picture is one of an asset's own views re-saved as a PNG.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.features import library as FL
from backend.library.catalogue import Catalogue
from backend.library.errors import LibraryError
from backend.library.image_query import query_image
from backend.training.data import find_bundles, read_bundles
from shared.bundle import read_bundle
from tests.backend import synthetic

pytestmark = pytest.mark.slow  # trains a (tiny) model and runs the pretrained backbone

SIZE = 16
ITEMS = [(k, c) for k in ("ball", "crate") for c in ("red", "green", "blue", "yellow")]


@pytest.fixture(scope="module")
def lib_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(bundles folder, run folder)``; the run's catalogue is created by the first CLI call."""
    from backend.training.trainer import train

    lib = tmp_path_factory.mktemp("iqf-library")
    synthetic.make_library(lib, ITEMS, size=SIZE)
    out = tmp_path_factory.mktemp("iqf-run") / "run"
    train(lib, out, preset="cpu-small", steps=4, show_progress=False,
          overrides={"image_size": SIZE, "rays_per_batch": 128, "checkpoint_every": 1000})
    return lib, out


def cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def picture(lib: Path, name: str, view: int, path: Path, background: tuple[float, float, float] | None = None) -> Path:
    """One captured view of ``name`` as a PNG: RGBA, or flattened on a plain ``background`` (and upscaled)."""
    b = read_bundle(lib / name)
    rgba = np.asarray(Image.open(io.BytesIO(b.image_bytes(view))).convert("RGBA"), np.float32) / 255
    if background is None:
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(path)
    else:
        rgb = rgba[..., :3] * rgba[..., 3:] + np.array(background, np.float32) * (1 - rgba[..., 3:])
        Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).resize((64, 64), Image.Resampling.BILINEAR).save(path)
    return path


def store_features(lib: Path, run: Path, skip: str | None = None) -> None:
    if not (run / "catalogue.sqlite").exists():
        assert main(["catalogue", "info", "--run", str(run)]) == 0  # creates it from the run's training codes
    with Catalogue(run / "catalogue.sqlite") as cat:
        bundles = [b for b in read_bundles(find_bundles(lib)) if b.asset.name != skip]
        report = FL.store_library_features(cat, bundles)
        assert not report.failed and report.computed + report.up_to_date == len(bundles)


def test_feature_query_finds_the_pictured_asset_and_falls_back_without_features(
        lib_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    lib, run = lib_run
    photo = picture(lib, "crate_blue", 4, tmp_path / "crate.png")

    # A catalogue without stored features: auto falls back to the decoder fit and says why; feature refuses.
    code, out, _ = cli(capsys, "query-image", photo, "--run", run, "-k", "3", "--steps", "3", "--json")
    result = json.loads(out)
    assert code == 0 and result["method"] == "decoder" and "asset2vec index" in result["fallback"]
    assert len(result["poses"]) == 18 and len(result["neighbours"]) == 3
    code, _, err = cli(capsys, "query-image", photo, "--run", run, "--method", "feature")
    assert code == 2 and "appearance feature" in err and "Traceback" not in err

    # One asset still without a feature: auto still falls back (every asset must have one).
    store_features(lib, run, skip="ball_red")
    code, out, _ = cli(capsys, "query-image", photo, "--run", run, "-k", "3", "--steps", "3", "--json")
    assert code == 0 and json.loads(out)["method"] == "decoder"

    # Every asset has its feature: auto answers with it, the pictured asset first.
    store_features(lib, run)
    code, out, _ = cli(capsys, "query-image", photo, "--run", run, "-k", "4", "--json")
    result = json.loads(out)
    assert code == 0 and result["method"] == "feature" and result["feature"] == FL.FEATURE
    names = [n["name"] for n in result["neighbours"]]
    assert names[0] == "crate_blue", names
    assert [n["rank"] for n in result["neighbours"]] == [0, 1, 2, 3]
    dists = [n["distance"] for n in result["neighbours"]]
    assert dists == sorted(dists) and "poses" not in result
    code, out, _ = cli(capsys, "query-image", photo, "--run", run, "-k", "2")
    assert code == 0 and out.startswith("answered by the appearance feature") and "crate_blue" in out

    # A photo of another asset on a plain grey backdrop (keyed, re-framed): found as well.
    grey = picture(lib, "ball_yellow", 9, tmp_path / "ball.png", background=(0.6, 0.6, 0.6))
    code, out, _ = cli(capsys, "query-image", grey, "--run", run, "-k", "1", "--json")
    result = json.loads(out)
    assert code == 0 and result["method"] == "feature" and result["neighbours"][0]["name"] == "ball_yellow"

    # The shape/texture spaces are halves of the codes: auto uses the decoder there, feature refuses.
    code, out, _ = cli(capsys, "query-image", photo, "--run", run, "--space", "texture", "-k", "2", "--steps", "3",
                       "--json")
    assert code == 0 and json.loads(out)["method"] == "decoder"
    code, _, err = cli(capsys, "query-image", photo, "--run", run, "--space", "shape", "--method", "feature")
    assert code == 2 and "shape/texture split" in err
    # The decoder on request, features or not.
    code, out, _ = cli(capsys, "query-image", photo, "--run", run, "--method", "decoder", "--steps", "3", "--json")
    result = json.loads(out)
    assert code == 0 and result["method"] == "decoder" and "fallback" not in result


def test_feature_query_errors(lib_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    lib, run = lib_run
    store_features(lib, run)
    photo = picture(lib, "ball_red", 2, tmp_path / "ball.png")
    with Catalogue(run / "catalogue.sqlite") as cat:
        table = cat.codes(cat.active_model())
        with pytest.raises(LibraryError, match="unknown method"):
            query_image(None, table, photo, method="nerf", catalogue=cat)
        with pytest.raises(LibraryError, match="no catalogue"):
            query_image(None, table, photo, method="feature")
        with pytest.raises(LibraryError, match="no such image"):
            query_image(None, table, tmp_path / "missing.png", method="feature", catalogue=cat)
        empty = tmp_path / "empty.png"
        Image.fromarray(np.zeros((32, 32, 4), np.uint8), "RGBA").save(empty)
        with pytest.raises(LibraryError, match="no object found"):
            query_image(None, table, empty, method="feature", catalogue=cat)
        # Features of another size than the picture's (a foreign feature under the product's name): a clear error.
        cat.set_appearance(FL.FEATURE, {int(a): (np.ones(7), "") for a in table.ids})
        with pytest.raises(LibraryError, match="asset2vec index"):
            query_image(None, table, photo, method="feature", catalogue=cat)


def test_feature_neighbours_rank_by_cosine_and_skip_unlisted() -> None:
    """Ranking on the stored mean+max: an unsaved embed is never suggested, a mean-only vector is compared as is."""
    from backend.library.image_query import feature_neighbours
    from tests.backend.library.library_support import make_table

    rng = np.random.default_rng(0)
    query = rng.random(6).astype(np.float32)
    names = ["near", "unsaved/near_copy", "far", "mid"]
    table = make_table(np.zeros((4, 2)), np.zeros((4, 2)), names)
    stored = np.stack([np.concatenate([query, query]), np.concatenate([query, query]),
                       np.concatenate([-query, query]), np.concatenate([query + 0.3, query])])
    got = feature_neighbours(table, stored, query, k=4)
    assert [n.name for n in got] == ["near", "mid", "far"] and abs(got[0].distance) < 1e-6
    assert got[1].distance < got[2].distance
    assert [n.rank for n in got] == [0, 1, 2]
    assert [n.name for n in feature_neighbours(table, stored[:, :6], query, k=1)] == ["near"]
