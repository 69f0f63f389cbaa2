"""Shared fixtures for the library tests: synthetic codes with known structure and a tiny real renderer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# The repository root first, so tests/backend never shadows the real `backend` package (as in the other suites).
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from backend.library.catalogue import CodeTable  # noqa: E402


def make_table(shape: np.ndarray, texture: np.ndarray, names: list[str] | None = None,
               families: list[str] | None = None, size: np.ndarray | None = None,
               categories: list[str] | None = None) -> CodeTable:
    n = len(shape)
    names = names or [f"asset_{i:04d}" for i in range(n)]
    return CodeTable(
        model_id="m-test",
        ids=np.arange(1, n + 1, dtype=np.int64),
        names=names,
        shape=np.asarray(shape, np.float32),
        texture=np.asarray(texture, np.float32),
        size=np.ones((n, 3), np.float32) if size is None else np.asarray(size, np.float32),
        families=families or [""] * n,
        categories=categories or [""] * n,
    )


@pytest.fixture
def shape_x_colour() -> tuple[CodeTable, list[int], list[int]]:
    """4 shape clusters x 4 colour clusters, 3 assets per cell: codes near their cluster centres."""
    rng = np.random.default_rng(1)
    shape_centres = rng.normal(size=(4, 32)) * 3
    colour_centres = rng.normal(size=(4, 32)) * 3
    shapes, textures, s_lab, c_lab, names = [], [], [], [], []
    for s in range(4):
        for c in range(4):
            for r in range(3):
                shapes.append(shape_centres[s] + rng.normal(size=32) * 0.3)
                textures.append(colour_centres[c] + rng.normal(size=32) * 0.3)
                s_lab.append(s)
                c_lab.append(c)
                names.append(f"s{s}_c{c}_{r}")
    fams = [f"fam_s{s}_c{c}" for s, c in zip(s_lab, c_lab, strict=True)]
    return make_table(np.array(shapes), np.array(textures), names, fams), s_lab, c_lab


class DiskRenderer:
    """A real (if simple) renderer: a disk whose radius follows shape[0] and colour follows texture[:3]."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def render(self, shape: np.ndarray, texture: np.ndarray, views=None, image_size: int = 64) -> np.ndarray:
        shape, texture = np.asarray(shape), np.asarray(texture)
        assert shape.shape[0] == texture.shape[0]
        v = len(views) if views is not None else 18
        self.calls.append(len(shape))
        yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size - 0.5
        out = np.zeros((len(shape), v, image_size, image_size, 4), np.float32)
        for i in range(len(shape)):
            radius = 0.15 + 0.3 / (1 + np.exp(-shape[i, 0]))
            alpha = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float32)
            rgb = 1 / (1 + np.exp(-texture[i, :3]))
            out[i, :, :, :, :3] = rgb
            out[i, :, :, :, 3] = alpha
        return out


@pytest.fixture
def disk_renderer() -> DiskRenderer:
    return DiskRenderer()
