"""Studio scale (issue 20): the exploration page samples above a cap, says so, and stays the same size; the
catalogue reports its size per asset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from backend.library import explore
from backend.library.catalogue import Catalogue
from backend.library.report import explore_library
from backend.library.similarity import SimilarityIndex
from shared.bundle import AssetInfo
from tests.backend.library.library_support import make_table


def _table(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 64)) * 3
    lab = rng.integers(0, 6, size=n)
    x = (centres[lab] + rng.normal(size=(n, 64))).astype(np.float32)
    cats = [f"cat{c}" for c in lab]
    cats[7] = "rare"  # one asset of its own category: the sample must still show it
    return make_table(x[:, :32], x[:, 32:], [f"lib/A{i:05d}" for i in range(n)], categories=cats)


def test_stratified_sample_is_capped_deterministic_and_keeps_small_groups() -> None:
    rng = np.random.default_rng(1)
    coords = np.vstack([rng.normal(size=(5000, 2)), [[40.0, 40.0]]])  # one far outlier
    groups = ["big"] * 4990 + ["small"] * 10 + ["big"]
    rows = explore.stratified_sample(coords, 300, groups)
    assert len(rows) <= 300 and len(rows) >= 250
    assert np.array_equal(rows, explore.stratified_sample(coords, 300, groups))  # deterministic
    assert 5000 in rows  # the outlier's cell
    assert any(groups[r] == "small" for r in rows)
    assert np.array_equal(explore.stratified_sample(coords[:200], 300), np.arange(200))  # under the cap: all


def test_explore_page_over_the_cap_shows_at_most_the_cap_and_says_so(tmp_path: Path, disk_renderer) -> None:
    sizes = {}
    for n in (400, 800):
        out = tmp_path / f"explore{n}"
        disk_renderer.calls.clear()
        data = explore_library(disk_renderer, None, _table(n), out, image_size=16, max_shown=60)
        assert data["shown"]["sampled"] and data["shown"]["of"] == n
        assert data["shown"]["assets"] <= 60 and all(v <= 60 for v in data["shown"]["per_map"].values())
        page = (out / "index.html").read_text()
        assert f"The maps show {data['shown']['assets']:,} of {n:,} assets" in page
        assert "map_points.csv" in page
        with open(out / "map_points.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert len(rows) == n + 1 and rows[0][:4] == ["name", "category", "shape_x", "shape_y"]
        saved = json.loads((out / "explore.json").read_text())
        assert all("members" not in c for c in saved["clusters_shape"]["clusters"])
        # Only the shown assets' thumbnails (plus the fixed renders) were made, not one per asset.
        assert sum(disk_renderer.calls) < 2 * 60 + 100
        sizes[n] = {"html": (out / "index.html").stat().st_size, "json": (out / "explore.json").stat().st_size}
    # Twice the assets, (about) the same page: its size does not grow with the library.
    assert sizes[800]["html"] < 1.2 * sizes[400]["html"] and sizes[800]["json"] < 1.5 * sizes[400]["json"]


def test_explore_under_the_cap_shows_everything(tmp_path: Path, disk_renderer) -> None:
    data = explore_library(disk_renderer, None, _table(50), tmp_path / "ex", image_size=16, max_shown=60)
    assert data["shown"] == {"assets": 50, "of": 50, "cap": 60, "sampled": False, "sampling": "all assets",
                             "per_map": {"shape": 50, "texture": 50}}
    assert "The maps show" not in (tmp_path / "ex" / "index.html").read_text()
    assert all(c["members"] for c in data["clusters_shape"]["clusters"])


def test_catalogue_size_report_per_asset(tmp_path: Path) -> None:
    table = _table(300)
    png = b"\x89PNG" + bytes(5000)  # a 5 KB thumbnail
    with Catalogue(tmp_path / "catalogue.sqlite") as cat:
        ids = [cat.upsert_asset(AssetInfo(name=n), thumbnail=png) for n in table.names]
        cat.set_codes("m", {a: (table.shape[i], table.texture[i], None) for i, a in enumerate(ids)})
        table.ids = np.asarray(ids, np.int64)
        for space in ("shape", "texture", "both"):
            cat.set_neighbours("m", space, SimilarityIndex(table, space).all_neighbours(10))
        rep = cat.size_report()
    assert rep["assets"] == 300 and rep["neighbour_rows"] == 300 * 30
    assert rep["parts"]["thumbnails"] == 300 * len(png)
    assert rep["parts"]["codes"] == 300 * 64 * 4
    assert rep["parts_per_asset"]["thumbnails"] == len(png) and rep["parts_per_asset"]["codes"] == 256
    assert 20 * 30 < rep["parts_per_asset"]["neighbours"] < 200 * 30  # 30 rows of a few dozen bytes each
    assert rep["db_bytes"] >= sum(rep["parts"].values()) - rep["parts"]["tags"]
    assert rep["file_bytes"] + rep["wal_bytes"] >= rep["db_bytes"] // 2
    assert rep["bytes_per_asset"] == round(rep["db_bytes"] / 300, 1)
    assert sum(rep["tables"].values()) > 0 and "assets" in rep["tables"]


def test_explore_page_states_the_catalogue_size(tmp_path: Path, disk_renderer) -> None:
    table = _table(30)
    with Catalogue(tmp_path / "catalogue.sqlite") as cat:
        ids = [cat.upsert_asset(AssetInfo(name=n), thumbnail=None) for n in table.names]
        cat.set_codes("m", {a: (table.shape[i], table.texture[i], None) for i, a in enumerate(ids)})
        table.ids = np.asarray(ids, np.int64)
        data = explore_library(disk_renderer, cat, table, tmp_path / "ex", image_size=16)
        assert cat.thumbnail(int(ids[0])) is not None  # a shown asset's render is cached as its thumbnail
    assert data["catalogue_size"]["assets"] == 30
    assert "KiB per asset" in (tmp_path / "ex" / "index.html").read_text()


def test_near_duplicates_above_the_fit_cap_find_the_same_groups(shape_x_colour) -> None:
    table, _, _ = shape_x_colour
    rng = np.random.default_rng(5)
    r, o = table.index_of("s2_c3_1"), table.index_of("s0_c1_0")
    shapes = np.vstack([table.shape, table.shape[r] + rng.normal(size=32) * 1e-3, table.shape[o],
                        table.shape[o] + rng.normal(size=32) * 1e-3])
    textures = np.vstack([table.texture, table.texture[r] + rng.normal(size=32) * 1e-3, table.texture[r],
                          table.texture[o]])
    names = [*table.names, "s2_c3_1_copy", "s0_shape_with_s2c3_texture", "s0_c1_0_copy"]
    big = make_table(shapes, textures, names)
    exact = explore.near_duplicates(big)
    ranged = explore.near_duplicates(big, max_fit=10)  # sampled medians + one blocked range query
    assert sorted(sorted(g["assets"]) for g in exact) == sorted(sorted(g["assets"]) for g in ranged) == [
        ["s0_c1_0", "s0_c1_0_copy"], ["s2_c3_1", "s2_c3_1_copy"]]
    assert all(len(g["pairs"]) == 1 and g["pairs"][0]["shape_distance"] < 0.1 for g in ranged)


def test_tsne_over_the_cap_maps_the_sample_only(tmp_path: Path, disk_renderer) -> None:
    data = explore_library(disk_renderer, None, _table(200), tmp_path / "ts", method="tsne", image_size=16,
                           max_shown=60)
    assert data["shown"]["assets"] <= 60 and data["shown"]["sampled"]
    with open(tmp_path / "ts" / "map_points.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["name", "category", "shape_cluster", "texture_cluster"]  # no t-SNE of every asset
