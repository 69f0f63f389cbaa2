"""Camera/ray conventions, ray-sphere bounds, visual hull carving and hull-bounded sampling."""

from __future__ import annotations

import numpy as np
import torch

from backend.model import rays as R
from shared import rig
from tests.backend import synthetic


def test_ray_through_projected_point_passes_through_it() -> None:
    gen = np.random.default_rng(0)
    size = 32
    for view in rig.views():
        c2w = view.camera_to_world()
        for p in gen.uniform(-0.7, 0.7, size=(5, 3)):
            u, v, depth = rig.project(tuple(p), c2w, size)
            assert depth > 0
            cam = R.pixel_directions(torch.tensor(float(u)), torch.tensor(float(v)), size)
            o, d = R.world_rays(torch.tensor(c2w, dtype=torch.float32), cam)
            # distance from p to the ray o + t d
            rel = torch.tensor(p, dtype=torch.float32) - o
            t = (rel * d).sum()
            dist = (rel - t * d).norm()
            assert float(dist) < 1e-5, (view.index, p, float(dist))
            assert abs(float(t) - np.linalg.norm(np.asarray(p) - np.asarray(c2w)[:3, 3])) < 1e-4


def test_pixel_grid_matches_continuous_pixel_directions() -> None:
    size = 8
    grid = R.camera_directions(size)  # row-major: v then u
    u, v = torch.tensor(2.5), torch.tensor(5.5)
    assert torch.allclose(grid[5 * size + 2], R.pixel_directions(u, v, size))
    # the image centre looks straight down -Z
    assert torch.allclose(R.pixel_directions(torch.tensor(4.0), torch.tensor(4.0), size), torch.tensor([0.0, 0.0, -1.0]))


def test_sphere_bounds_land_on_the_unit_sphere() -> None:
    c2w = torch.tensor([v.camera_to_world() for v in rig.views()], dtype=torch.float32)
    o, d = R.world_rays(c2w[:, None], R.camera_directions(16)[None])
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    near, far, hit = R.sphere_bounds(o, d)
    assert hit.float().mean() > 0.5  # the sphere fills most of the frame by design
    for t in (near[hit], far[hit]):
        r = (o[hit] + t[:, None] * d[hit]).norm(dim=-1)
        assert torch.allclose(r, torch.ones_like(r), atol=1e-4)
    assert bool((far[hit] > near[hit]).all())


def _ball_views(size: int = 32, radius: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    prims = [synthetic.Primitive("sphere", (0.2, 0.0, 0.0), (radius, 0, 0), (1.0, 0.0, 0.0))]
    views = rig.views()
    alpha = np.stack([synthetic.render_view(prims, v.camera_to_world(), size)[..., 3] / 255.0 for v in views])
    c2w = torch.tensor([v.camera_to_world() for v in views], dtype=torch.float32)
    return torch.tensor(alpha, dtype=torch.float32), c2w


def test_visual_hull_contains_the_object_and_carves_empty_space() -> None:
    alpha, c2w = _ball_views()
    hull = R.carve_hull(alpha, c2w, resolution=32, threshold=0.05, dilation=1)
    gen = np.random.default_rng(1)
    dirs = gen.normal(size=(500, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    surface = torch.tensor(np.array([0.2, 0.0, 0.0]) + 0.5 * dirs, dtype=torch.float32)
    assert bool(R.grid_lookup(hull, surface).all()), "every surface point of the ball is inside its hull"
    far_pts = torch.tensor([[-0.8, 0.0, 0.0], [0.2, 0.0, 0.85], [0.2, -0.8, -0.3]])
    assert not bool(R.grid_lookup(hull, far_pts).any()), "space away from the ball is carved"
    frac = hull.float().mean().item()
    ball_frac = (4 / 3 * np.pi * 0.5**3) / 8
    assert ball_frac < frac < 4 * ball_frac


def test_grid_bounds_bracket_the_surface_and_drop_missing_rays() -> None:
    alpha, c2w = _ball_views()
    hull = R.carve_hull(alpha, c2w, resolution=32)
    view = rig.views()[0]
    m = torch.tensor(view.camera_to_world(), dtype=torch.float32)
    o, d = R.world_rays(m[None], R.camera_directions(32))
    near, far, _ = R.sphere_bounds(o, d)
    t0, t1, hit = R.grid_bounds(hull, o, d, near, far)
    # rays that hit the ball: first surface distance lies inside [t0, t1]
    centre = torch.tensor([0.2, 0.0, 0.0])
    b = ((o - centre) * d).sum(-1)
    disc = b * b - ((o - centre) ** 2).sum(-1) + 0.25
    on_ball = disc > 0
    t_surf = -b - disc.clamp_min(0).sqrt()
    assert bool(hit[on_ball].all())
    assert bool((t0[on_ball] <= t_surf[on_ball]).all()) and bool((t1[on_ball] >= t_surf[on_ball]).all())
    # target alpha 0 almost everywhere on the rays the hull drops
    dropped_alpha = alpha[0].reshape(-1)[~hit]
    assert float(dropped_alpha.max()) == 0.0
    assert 0.2 < hit.float().mean().item() < 0.8  # most empty rays never reach the network
