"""The decoder's shape/texture split, the presets and emission-absorption marching."""

from __future__ import annotations

import pytest
import torch

from backend.model.config import PRESETS, ModelConfig, get_preset
from backend.model.errors import ModelError
from backend.model.field import LatentField
from backend.model.renderer import density_grid, march, render_images
from shared import rig


def _field(**kw) -> LatentField:
    torch.manual_seed(0)
    return LatentField(ModelConfig(hidden=32, layers=3, color_hidden=16, **kw)).eval()


def test_alpha_depends_only_on_the_shape_code() -> None:
    f = _field()
    g = torch.Generator().manual_seed(1)
    shape = torch.randn(32, generator=g)
    tex_a, tex_b = torch.randn(32, generator=g), torch.randn(32, generator=g) * 3
    c2w = torch.tensor([v.camera_to_world() for v in rig.views()[:4]], dtype=torch.float32)
    rgb_a, alpha_a = render_images(f, shape, tex_a, c2w, 16, None, 8)
    rgb_b, alpha_b = render_images(f, shape, tex_b, c2w, 16, None, 8)
    assert torch.equal(alpha_a, alpha_b), "alpha must be exactly independent of the texture code"
    assert not torch.allclose(rgb_a, rgb_b), "the texture code must change colour"
    _, alpha_c = render_images(f, torch.randn(32, generator=g), tex_a, c2w, 16, None, 8)
    assert not torch.allclose(alpha_a, alpha_c), "the shape code must change alpha"


def test_density_entry_point_matches_the_full_forward() -> None:
    f = _field(skip_at=2)
    pts = torch.rand(5, 7, 3) * 2 - 1
    dirs = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    shape, tex = torch.randn(5, 32), torch.randn(5, 32)
    sigma, rgb = f(pts, dirs, shape, tex)
    assert sigma.shape == (5, 7) and rgb.shape == (5, 7, 3)
    assert torch.allclose(f.density(pts, shape), sigma)
    assert bool((sigma >= 0).all()) and bool(((rgb >= 0) & (rgb <= 1)).all())


def test_view_direction_moves_colour_only_when_view_dependent() -> None:
    pts = torch.rand(4, 6, 3) * 2 - 1
    dir_a = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    shape, tex = torch.randn(4, 32), torch.randn(4, 32)
    for view_dependent in (True, False):
        f = _field(view_dependent=view_dependent)
        sigma_a, rgb_a = f(pts, dir_a, shape, tex)
        sigma_b, rgb_b = f(pts, -dir_a, shape, tex)
        assert torch.equal(sigma_a, sigma_b)
        assert torch.allclose(rgb_a, rgb_b) != view_dependent


def test_presets() -> None:
    full = get_preset("full")
    assert (full.model.layers, full.model.hidden, full.model.skip_at) == (8, 256, 4)
    assert full.train.image_size == 128 and full.train.mixed_precision
    small = get_preset("cpu-small")
    assert small.train.image_size == 32 and small.model.hidden <= 128 and small.model.layers <= 4
    net = LatentField(full.model)
    assert len(net.trunk) == 8 and net.trunk[4].in_features == 256 + net.pos_enc.output_dim
    get_preset("full").train.steps = 1
    assert PRESETS["full"].train.steps != 1, "get_preset hands out copies"
    with pytest.raises(ModelError, match="unknown preset"):
        get_preset("huge")


def test_marching_opaque_and_empty() -> None:
    sigma = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1e4, 0.0]])
    rgb = torch.tensor([[[1.0, 0, 0]] * 3, [[0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]]])
    col, alpha = march(sigma, rgb, torch.tensor([0.1, 0.1]))
    assert alpha[0].item() < 1e-6 and col[0].abs().max().item() < 1e-6
    assert alpha[1].item() > 0.999
    assert torch.allclose(col[1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)  # the first opaque sample's colour


def test_density_grid_follows_the_model() -> None:
    f = _field()
    with torch.no_grad():  # a strongly negative density bias: softplus gives ~0 everywhere
        f.density_head.bias.fill_(-50.0)
    grid = density_grid(f, torch.zeros(32), resolution=16, dilation=0)
    assert not bool(grid.any()), "no density, no occupied cell"
