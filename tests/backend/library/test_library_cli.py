"""The library CLI end to end on a tiny real run (trained once per module on synthetic bundles)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.library.catalogue import SCHEMA_VERSION, Catalogue
from shared.bundle import AssetInfo
from tests.backend import synthetic

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

ROOT = Path(__file__).resolve().parents[3]

IMAGE_SIZE = 24
ITEMS = [(k, c) for k in ("ball", "crate", "table") for c in ("red", "blue")] + [("ball", "green"), ("table", "green")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backend.training.trainer import train

    lib = tmp_path_factory.mktemp("lib-library")
    synthetic.make_library(lib, ITEMS, size=IMAGE_SIZE)
    out = tmp_path_factory.mktemp("lib-run") / "run"
    train(lib, out, preset="cpu-small", steps=120, show_progress=False,
          overrides={"image_size": IMAGE_SIZE, "rays_per_batch": 512, "checkpoint_every": 1000, "lr": 5e-3})
    return out


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_catalogue_similar_tags(run_dir: Path, capsys) -> None:
    code, out, err = cli(capsys, "catalogue", "info", "--run", run_dir, "--json")
    assert code == 0 and "importing the run's 8 training codes" in err
    info = json.loads(out)
    assert info["assets"] == 8 and info["models"][0]["codes"] == 8 and info["schema_version"] == SCHEMA_VERSION

    code, out, _ = cli(capsys, "similar", "ball_red", "--run", run_dir, "--space", "texture", "-k", "3", "--json")
    got = json.loads(out)
    assert code == 0 and len(got) == 3 and "ball_red" not in [g["name"] for g in got]
    assert [g["distance"] for g in got] == sorted(g["distance"] for g in got)

    code, out, _ = cli(capsys, "similar", "--all", "--run", run_dir, "-k", "2")
    assert code == 0 and "8 assets" in out
    with Catalogue(run_dir / "catalogue.sqlite") as cat:
        model = cat.active_model()
        assert len(cat.neighbours_of("crate_blue", model, "both")) == 2

    code, out, _ = cli(capsys, "tags", "train", "--run", run_dir, "--json")
    report = json.loads(out)["report"]
    assert report["red"]["status"] == "trained" and report["ball"]["status"] == "trained"
    assert report["table"]["status"] == "trained" and report["crate"]["status"] == "skipped"
    assert report["green"]["status"] == "skipped"  # 2 assets only
    code, out, _ = cli(capsys, "tags", "predict", "--run", run_dir, "--json")
    pred = json.loads(out)
    assert code == 0 and set(pred) == {f"{k}_{c}" for k, c in ITEMS}
    assert pred["ball_red"]["artist"] == ["ball", "red"]
    code, out, _ = cli(capsys, "tags", "report", "--run", run_dir)
    assert code == 0 and "skipped" in out


def test_explore_and_renders(run_dir: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "explore"
    code, out, _ = cli(capsys, "explore", "--run", run_dir, "--out", out_dir, "--image-size", "16", "--json")
    summary = json.loads(out)
    assert code == 0
    for name in summary["files"]:
        assert (out_dir / name).is_file(), name
    html = (out_dir / "index.html").read_text()
    assert "map_shape.png" in html and "style_grid.png" in html
    with Image.open(out_dir / "pca_shape_strips.png") as im:
        assert im.size == (30 + 5 * 18 + 2, 14 + 4 * 18 + 2)

    png = tmp_path / "grid.png"
    code, out, _ = cli(capsys, "style-grid", "ball_red", "crate_blue", "--textures", "table_green", "ball_blue",
                       "table_red", "--run", run_dir, "--out", png, "--image-size", "20")
    assert code == 0
    with Image.open(png) as im:
        assert im.size == (90 + 3 * 22 + 2, 14 + 2 * 22 + 2)

    code, out, _ = cli(capsys, "duplicates", "--run", run_dir, "--json")
    assert code == 0 and isinstance(json.loads(out), list)
    code, out, _ = cli(capsys, "sparse", "--run", run_dir, "--json")
    assert code == 0 and isinstance(json.loads(out), list)


def test_weak_spots_cli(run_dir: Path, tmp_path: Path, capsys) -> None:
    scores = tmp_path / "s.csv"
    scores.write_text("asset,error\n" + "\n".join(f"{k}_{c},{5.0 if k == 'table' else 1.0}" for k, c in ITEMS))
    code, out, _ = cli(capsys, "weak-spots", scores, "--run", run_dir, "-k", "2", "--json", "--out", tmp_path / "w.png")
    result = json.loads(out)
    assert code == 0 and result["spots"][0]["smoothed_score"] >= 3.0
    assert (tmp_path / "w.png").is_file()
    scores.write_text("asset,error\nball_red,1\ncrate_red,oops\n")
    code, _, err = cli(capsys, "weak-spots", scores, "--run", run_dir)
    assert code == 2 and "s.csv:3: score 'oops'" in err


def test_clear_errors(run_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, err = cli(capsys, "similar", "bal_red", "--run", run_dir)
    assert code == 2 and "did you mean 'ball_red'" in err
    code, _, err = cli(capsys, "similar", "ball_red", "--run", tmp_path / "nope")
    assert code == 2 and "no such run folder" in err
    code, _, err = cli(capsys, "similar", "ball_red", "--run", run_dir, "--catalogue", tmp_path / "none.sqlite")
    assert code == 2 and "no catalogue here" in err
    Catalogue(tmp_path / "empty.sqlite").close()
    code, _, err = cli(capsys, "similar", "ball_red", "--run", run_dir, "--catalogue", tmp_path / "empty.sqlite")
    assert code == 2 and "no codes for model" in err
    with Catalogue(tmp_path / "other.sqlite") as cat:
        aid = cat.upsert_asset(AssetInfo(name="ball_red"))
        cat.set_codes("someone-elses-model", {aid: (np.zeros(32), np.zeros(32), None)})
    code, _, err = cli(capsys, "tags", "train", "--run", run_dir, "--catalogue", tmp_path / "other.sqlite")
    assert code == 2 and "someone-elses-model" in err and "Re-embed" in err
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noise)
    code, _, err = cli(capsys, "query-image", noise, "--run", run_dir)
    assert code == 2 and "background is not plain" in err
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code, _, err = cli(capsys, "query-image", text, "--run", run_dir)
    assert code == 2 and "not an image" in err
    # The installed entry point: one line on stderr, exit status 2, no traceback.
    exe = Path(sys.executable).parent / "asset2vec"
    proc = subprocess.run([str(exe), "similar", "zzz", "--run", str(run_dir)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("asset2vec: error: no asset named 'zzz'")
    assert "Traceback" not in proc.stderr


def test_query_image_finds_the_colour(run_dir: Path, tmp_path: Path, capsys) -> None:
    """A rig view of an asset on a plain grey background (no alpha): the fitted code finds its texture.

    The tiny test decoder reproduces one view only roughly, so the check is on the texture half (the
    colour); shape from a single view is left to the integration benchmark on a real run.
    """
    import io

    from shared.bundle import read_bundle

    lib = next(run_dir.parent.parent.glob("lib-library*"))
    b = read_bundle(lib / "table_green")
    rgba = np.asarray(Image.open(io.BytesIO(b.image_bytes(7))).convert("RGBA"), np.float32) / 255
    grey = np.array([0.6, 0.6, 0.6])
    rgb = rgba[..., :3] * rgba[..., 3:] + grey * (1 - rgba[..., 3:])
    photo = tmp_path / "photo.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).resize((96, 96)).save(photo)
    code, out, _ = cli(capsys, "query-image", photo, "--run", run_dir, "-k", "2", "--steps", "24", "--space",
                       "texture", "--json")
    result = json.loads(out)
    assert code == 0 and len(result["poses"]) == 18 and len(result["neighbours"]) == 2
    assert result["neighbours"][0]["name"].endswith("_green"), result["neighbours"]
