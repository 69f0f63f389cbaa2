"""Style grids and PCA strips rendered through a renderer, written as PNGs of exact pixel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.library import explore, style
from backend.library.errors import LibraryError
from tests.backend.library.library_support import make_table


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    shape = rng.normal(size=(5, 32)).astype(np.float32)
    texture = rng.normal(size=(5, 32)).astype(np.float32)
    shape[:, 0] = [-3, -1, 0, 1, 3]  # the renderer's disk radius
    texture[:, :3] = [[3, -3, -3], [-3, 3, -3], [-3, -3, 3], [3, 3, -3], [-3, 3, 3]]  # distinct colours
    return make_table(shape, texture, ["a", "b", "c", "d", "e"])


def test_style_grid_mixes_shape_rows_and_texture_columns(table, disk_renderer, tmp_path: Path) -> None:
    grid = style.style_grid(disk_renderer, table, ["a", "e"], ["b", "c", "d"], image_size=32)
    assert grid.shape == (2, 3, 32, 32, 4)
    assert disk_renderer.calls == [6]  # one batched decoder call
    # Rows share a shape (same silhouette), columns share a texture (same colour).
    np.testing.assert_array_equal(grid[0, 0, ..., 3], grid[0, 2, ..., 3])
    assert grid[1, 0, ..., 3].sum() > grid[0, 0, ..., 3].sum()  # 'e' has the bigger disk
    np.testing.assert_allclose(grid[0, 1, 16, 16, :3], grid[1, 1, 16, 16, :3])
    assert grid[0, 1, 16, 16, 2] > 0.9 and grid[0, 1, 16, 16, 0] < 0.1  # texture of 'c' is blue
    path = style.save_grid(grid, tmp_path / "grid.png", pad=2, col_labels=["b", "c", "d"], row_labels=["a", "e"],
                           row_label_px=40)
    with Image.open(path) as im:
        assert im.size == style.grid_size(2, 3, 32, 32, pad=2, labels=True, left=40) == (3 * 34 + 2 + 40, 2 * 34 + 2 + 14)
        px = np.asarray(im.convert("RGB"))
    # Cell (1, 1) centre: pixel is the blue of texture 'c' composited on white.
    y, x = 14 + 2 + 34 + 16, 40 + 2 + 34 + 16
    assert px[y, x, 2] > 220 and px[y, x, 0] < 40
    with pytest.raises(LibraryError, match="no asset named 'zz'"):
        style.style_grid(disk_renderer, table, ["a", "zz"])


def test_pca_strips_follow_the_direction(table, disk_renderer, tmp_path: Path) -> None:
    summary = explore.pca_summary(table.shape, 2)
    strips = style.pca_strips(disk_renderer, table, "shape", summary, n_dirs=2, image_size=24)
    assert strips.shape == (2, 5, 24, 24, 4)
    # shape[0] dominates the variance, so direction 1 sweeps the disk radius monotonically.
    areas = strips[0, :, ..., 3].sum(axis=(1, 2))
    assert np.all(np.diff(areas) >= 0) or np.all(np.diff(areas) <= 0)
    assert areas.max() > areas.min()
    path = style.save_grid(strips, tmp_path / "strips.png", pad=3)
    with Image.open(path) as im:
        assert im.size == (5 * 27 + 3, 2 * 27 + 3)


def test_renderer_output_checked(table) -> None:
    class Broken:
        def render(self, shape, texture, views=None, image_size=64):
            return np.zeros((len(shape), 64, 64, 3))

    with pytest.raises(LibraryError, match="expected"):
        style.style_grid(Broken(), table, ["a"])


def test_png_roundtrip() -> None:
    img = np.random.default_rng(0).uniform(size=(8, 8, 4)).astype(np.float32)
    back = style.decode_png(style.png_bytes(img))
    assert back.shape == (8, 8, 4) and np.abs(back - img).max() <= 1 / 255 + 1e-6
