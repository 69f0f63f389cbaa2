"""Exploration: planted duplicates, holes and bad clusters are found; CSV errors name the line; PNGs are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.library import explore
from backend.library.errors import LibraryError
from tests.backend.library.library_support import make_table


def test_near_duplicates_found_when_planted(shape_x_colour) -> None:
    table, _, _ = shape_x_colour
    assert explore.near_duplicates(table) == []  # same-cell assets are similar, not duplicates
    rng = np.random.default_rng(5)
    r = table.index_of("s2_c3_1")
    o = table.index_of("s0_c1_0")
    shapes = np.vstack([table.shape, table.shape[r] + rng.normal(size=32) * 1e-3, table.shape[o]])
    textures = np.vstack([table.texture, table.texture[r] + rng.normal(size=32) * 1e-3, table.texture[r]])
    names = [*table.names, "s2_c3_1_copy", "s0_shape_with_s2c3_texture"]
    dup = explore.near_duplicates(make_table(shapes, textures, names))
    assert len(dup) == 1
    assert sorted(dup[0]["assets"]) == ["s2_c3_1", "s2_c3_1_copy"]  # same texture but other shape: not a dup
    assert dup[0]["pairs"][0]["shape_distance"] < 0.1


def test_sparse_region_at_planted_hole() -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, size=(1500, 2))
    hole = np.array([0.3, 0.2])
    pts = pts[np.linalg.norm(pts - hole, axis=1) > 0.4][:450]
    x = np.hstack([pts, rng.normal(size=(len(pts), 30)) * 0.005])
    names = [f"a{i}" for i in range(len(x))]
    regions = explore.sparse_regions(x, names, n_regions=3)
    assert regions, "no sparse region found"
    top = regions[0]
    centre = sum(w * x[names.index(n)] for n, w in top["weights"].items())
    assert np.linalg.norm(centre[:2] - hole) < 0.15, centre[:2]
    assert top["score"] > 3  # much emptier than a typical neighbourhood
    assert len(top["nearest"]) == 5
    # Every region is inside the data, never out at the rim of the square.
    for r in regions:
        c = sum(w * x[names.index(n)] for n, w in r["weights"].items())
        assert np.all(np.abs(c[:2]) < 0.95)


def test_weak_spots_point_at_bad_cluster(shape_x_colour, tmp_path: Path) -> None:
    table, s_lab, c_lab = shape_x_colour
    rng = np.random.default_rng(2)
    lines = ["asset,error"]
    for i, name in enumerate(table.names):
        bad = s_lab[i] == 2 and c_lab[i] == 1
        lines.append(f"{name},{(5.0 if bad else 1.0) + rng.normal() * 0.3:.4f}")
    lines.append("not_in_catalogue,3.0")
    csv = tmp_path / "scores.csv"
    csv.write_text("\n".join(lines) + "\n")
    scores = explore.read_scores_csv(csv)
    assert len(scores) == len(table) + 1
    cl = explore.clusters(explore.space_features(table, "both"), table.names, k_max=20)
    result = explore.weak_spots(table, scores, k=3, cluster_labels=cl["labels"],
                                cluster_names=[c["name"] for c in cl["clusters"]])
    worst = result["spots"][0]
    assert worst["centre"].startswith("s2_c1_")
    assert sorted(worst["assets"]) == ["s2_c1_0", "s2_c1_1", "s2_c1_2"]
    assert result["ignored_unknown_assets"] == ["not_in_catalogue"]
    assert result["clusters"][0]["name"].startswith("s2_c1_")
    # Lower-is-worse flips the ranking.
    best_is_worst = explore.weak_spots(table, scores, k=3, higher_is_worse=False)
    assert not best_is_worst["spots"][0]["centre"].startswith("s2_c1_")


@pytest.mark.parametrize(
    "text, message",
    [
        ("asset,score\nchair,1.0\nsofa\n", r"scores.csv:3: expected 'asset,score'"),
        ("chair,1.0\nsofa,abc\n", r"scores.csv:2: score 'abc' of asset 'sofa' is not a number"),
        ("chair,1.0\nchair,2.0\n", r"scores.csv:2: asset 'chair' is listed twice"),
        ("chair,nan\n", r"scores.csv:1: score of asset 'chair' must be finite"),
        ("asset,score\n", r"no 'asset,score' rows"),
    ],
)
def test_malformed_scores_csv(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(text)
    with pytest.raises(LibraryError, match=message):
        explore.read_scores_csv(path)


def test_unknown_scored_assets(shape_x_colour, tmp_path: Path) -> None:
    table, _, _ = shape_x_colour
    with pytest.raises(LibraryError, match="only 0 of the 2 scored assets"):
        explore.weak_spots(table, {"x": 1.0, "y": 2.0})


def test_clusters_map_and_pca_pngs(shape_x_colour, tmp_path: Path) -> None:
    table, s_lab, _ = shape_x_colour
    feats = explore.space_features(table, "shape")
    cl = explore.clusters(feats, table.names)
    assert cl["k"] == 4
    for c in cl["clusters"]:
        assert len({s_lab[table.index_of(m)] for m in c["members"]}) == 1
        assert c["name"] in c["members"]
    coords = explore.embed_2d(feats, "pca")
    assert coords.shape == (len(table), 2)
    thumbs = [np.ones((16, 16, 4), np.float32) * 0.5 for _ in range(len(table))]
    png = explore.plot_map(coords, table.names, tmp_path / "map.png", cl["labels"],
                           [c["name"] for c in cl["clusters"]], thumbs)
    with Image.open(png) as im:
        assert im.size == (1000, 1000)
    summary = explore.pca_summary(table.shape, 6)
    assert len(summary["directions"]) == 6 and summary["explained_variance_ratio"][0] > 0.2
    assert np.allclose(np.linalg.norm(summary["directions"], axis=1), 1, atol=1e-5)
    with Image.open(explore.plot_explained_variance({"shape": summary}, tmp_path / "pca.png")) as im:
        assert im.size == (400, 300)
