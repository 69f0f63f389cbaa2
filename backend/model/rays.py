"""Rays from bundle cameras, ray/unit-sphere intersection, and the occupancy grid (visual hull).

Camera convention (see :mod:`shared.rig`): OpenGL, the camera looks down its local -Z, +Y is up
in the image, +X right; ``c2w`` maps camera to normalised world coordinates. Pixel ``(u, v)``
counts from the top-left corner with ``v`` downwards, pixel centres at ``i + 0.5``. The camera
direction of pixel ``(u, v)`` is ``((u - cx) / f, -(v - cy) / f, -1)``: the exact inverse of
:func:`shared.rig.project`. We compute rays directly from the c2w matrices rather than through
``pytorch3d.renderer.PerspectiveCameras`` (whose view space is +Z forward, +X left) to keep one
convention end to end; the conversion would be a 180-degree turn about Y.

Occupancy grids cover the cube ``[-1, 1]^3`` with ``G^3`` cells indexed ``grid[ix, iy, iz]``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from shared import rig


def camera_directions(image_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Un-normalised camera-space directions ``[H*W, 3]`` of the pixel centres, row-major (v, then u)."""
    f = rig.focal_length_px(image_size)
    c = image_size / 2.0
    idx = torch.arange(image_size, dtype=torch.float32, device=device) + 0.5
    v, u = torch.meshgrid(idx, idx, indexing="ij")
    d = torch.stack([(u - c) / f, -(v - c) / f, -torch.ones_like(u)], dim=-1)
    return d.reshape(-1, 3)


def pixel_directions(u: torch.Tensor, v: torch.Tensor, image_size: int) -> torch.Tensor:
    """Camera-space directions ``[..., 3]`` through continuous pixel coordinates ``u, v [...]``."""
    f = rig.focal_length_px(image_size)
    c = image_size / 2.0
    return torch.stack([(u - c) / f, -(v - c) / f, -torch.ones_like(u)], dim=-1)


def world_rays(c2w: torch.Tensor, cam_dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions in world space.

    ``c2w [..., 4, 4]`` and ``cam_dirs [..., 3]`` (broadcastable batch dims) -> ``([..., 3], [..., 3])``.
    """
    d = torch.einsum("...ij,...j->...i", c2w[..., :3, :3], cam_dirs)
    d = d / d.norm(dim=-1, keepdim=True)
    o = c2w[..., :3, 3].expand_as(d)
    return o, d


def sphere_bounds(
    origins: torch.Tensor, dirs: torch.Tensor, radius: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Near/far distances ``[N]`` where unit rays ``[N, 3]`` cross the sphere, and a hit mask ``[N]``.

    Solves ``|o + t d|^2 = r^2``: ``t = -b -+ sqrt(b^2 - c)`` with ``b = o.d``, ``c = |o|^2 - r^2``.
    """
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius * radius
    disc = b * b - c
    hit = disc > 0
    s = disc.clamp_min(0).sqrt()
    near = (-b - s).clamp_min(0)
    far = (-b + s).clamp_min(0)
    return near, far, hit & (far > near)


def grid_lookup(grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Occupancy of ``points [..., 3]`` in a boolean ``grid [G, G, G]`` (outside the cube: empty)."""
    g = grid.shape[0]
    idx = torch.floor((points + 1.0) * 0.5 * g).long()
    inside = ((idx >= 0) & (idx < g)).all(-1)
    idx = idx.clamp(0, g - 1)
    return grid[idx[..., 0], idx[..., 1], idx[..., 2]] & inside


def grid_centres(resolution: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Cell centres ``[G, G, G, 3]`` of the grid over ``[-1, 1]^3``."""
    c = (torch.arange(resolution, dtype=torch.float32, device=device) + 0.5) / resolution * 2.0 - 1.0
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)


def dilate(grid: torch.Tensor, cells: int) -> torch.Tensor:
    """Grow a boolean grid ``[G, G, G]`` by ``cells`` in every direction (3D max filter)."""
    if cells <= 0:
        return grid
    k = 2 * cells + 1
    return F.max_pool3d(grid[None, None].float(), k, stride=1, padding=cells)[0, 0] > 0


def carve_hull(
    alpha: torch.Tensor, c2w: torch.Tensor, resolution: int = 32, threshold: float = 0.05, dilation: int = 1
) -> torch.Tensor:
    """Visual hull ``[G, G, G]`` (bool) from silhouettes ``alpha [V, H, W]`` seen by cameras ``c2w [V, 4, 4]``.

    A cell stays if its centre projects inside the (1-pixel dilated) silhouette in every view and
    lies in the unit sphere; the result is dilated by ``dilation`` cells so thin parts between
    cell centres survive.
    """
    v_count, size, _ = alpha.shape
    mask = F.max_pool2d(alpha[:, None].float(), 3, stride=1, padding=1)[:, 0] > threshold  # [V, H, W]
    pts = grid_centres(resolution, alpha.device).reshape(-1, 3)  # [P, 3]
    keep = pts.norm(dim=-1) <= 1.0 + 2.0 / resolution
    f = rig.focal_length_px(size)
    for i in range(v_count):
        rot, t = c2w[i, :3, :3], c2w[i, :3, 3]
        pc = (pts - t) @ rot  # world -> camera: R^T (p - t), as row vectors
        depth = -pc[:, 2]
        u = size / 2.0 + f * pc[:, 0] / depth
        v = size / 2.0 - f * pc[:, 1] / depth
        ui, vi = torch.floor(u).long(), torch.floor(v).long()
        inside = (ui >= 0) & (ui < size) & (vi >= 0) & (vi < size) & (depth > 0)
        seen = mask[i, vi.clamp(0, size - 1), ui.clamp(0, size - 1)] & inside
        keep &= seen
    return dilate(keep.reshape(resolution, resolution, resolution), dilation)


def grid_bounds(
    grid: torch.Tensor,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    chunk: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where rays ``[N, 3]`` enter and leave the occupied cells of ``grid``: ``(t_min, t_max, hit)``, each ``[N]``.

    The segment ``[near, far]`` is probed at half-cell steps; the bounds are the first and last
    occupied probes, widened by one step so surfaces between probes are kept. Rays that meet no
    occupied cell have ``hit = False`` and are never sent through the network.
    """
    g = grid.shape[0]
    n_probe = 4 * g  # the longest chord (2) at half-cell (1/g) steps
    steps = torch.linspace(0.0, 1.0, n_probe, device=origins.device)
    t = near[:, None] + (far - near)[:, None] * steps[None, :]  # [N, P]
    occ = grid_lookup(grid, origins[:, None, :] + t[..., None] * dirs[:, None, :])  # [N, P]
    hit = occ.any(-1)
    ar = torch.arange(n_probe, device=origins.device)
    first = torch.where(occ, ar, n_probe).amin(-1).clamp(max=n_probe - 1)
    last = torch.where(occ, ar, -1).amax(-1).clamp(min=0)
    step = (far - near) / (n_probe - 1)
    t_min = torch.maximum(t.gather(1, first[:, None])[:, 0] - step, near)
    t_max = torch.minimum(t.gather(1, last[:, None])[:, 0] + step, far)
    return t_min, t_max, hit
