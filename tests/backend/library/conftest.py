"""Shared fixtures for the library tests: synthetic codes with known structure and a tiny real renderer."""

from __future__ import annotations

import numpy as np
import pytest

from backend.library.catalogue import CodeTable
from tests.backend.library.library_support import make_table


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
