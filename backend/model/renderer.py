"""Sampling along rays and emission-absorption ray marching (PyTorch3D's raymarcher), plus image rendering.

Every ray carries its own segment ``[t_min, t_max]``: the visual hull's occupied span (or the
unit sphere's chord for uniform sampling). ``S`` samples are spread evenly over the segment
(stratified with jitter when training), each sample standing for a bin of length ``delta``, and
``alpha_i = 1 - exp(-sigma_i * delta)`` feeds PyTorch3D's ``EmissionAbsorptionRaymarcher``:
``weights_i = alpha_i * prod_{j<i}(1 - alpha_j)``, premultiplied colour ``sum_i weights_i c_i``,
opacity ``1 - prod_i(1 - alpha_i)``.
"""

from __future__ import annotations

import torch
from pytorch3d.renderer import RayBundle, ray_bundle_to_ray_points
from pytorch3d.renderer.implicit.raymarching import EmissionAbsorptionRaymarcher

from . import rays as R
from .field import LatentField

_MARCHER = EmissionAbsorptionRaymarcher()


def sample_lengths(
    t_min: torch.Tensor, t_max: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample distances ``[N, S]`` in ``[t_min, t_max]`` (``[N]`` each) and the bin length ``[N]``.

    With a ``generator`` each sample is jittered inside its bin (training); without, bin centres.
    """
    delta = (t_max - t_min) / n
    base = torch.arange(n, device=t_min.device, dtype=t_min.dtype)[None, :]
    if generator is None:
        offs = base + 0.5
    else:
        offs = base + torch.rand((t_min.shape[0], n), generator=generator, device=t_min.device)
    return t_min[:, None] + delta[:, None] * offs, delta


def march(sigma: torch.Tensor, rgb: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite densities ``[N, S]`` and colours ``[N, S, 3]`` with bin length ``[N]``.

    Returns premultiplied colour ``[N, 3]`` and opacity (alpha) ``[N]``.
    """
    alpha = 1.0 - torch.exp(-sigma * delta[:, None])
    out = _MARCHER(alpha[..., None], rgb)
    return out[..., :3], out[..., 3]


def render_rays(
    field: LatentField,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    t_min: torch.Tensor,
    t_max: torch.Tensor,
    shape: torch.Tensor,
    texture: torch.Tensor,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render rays ``[N, 3]`` with per-ray codes ``shape, texture [N, 32]``: premultiplied RGB ``[N, 3]``, alpha ``[N]``."""
    lengths, delta = sample_lengths(t_min, t_max, n_samples, generator)
    # xys (the rays' screen coordinates) are not used by ray_bundle_to_ray_points; any [N, 2] tensor fills the slot
    bundle = RayBundle(origins=origins, directions=dirs, lengths=lengths, xys=origins[:, :2])
    points = ray_bundle_to_ray_points(bundle)  # [N, S, 3]
    sigma, rgb = field(points, dirs, shape, texture)
    return march(sigma, rgb, delta)


@torch.no_grad()
def density_grid(
    field: LatentField, shape: torch.Tensor, resolution: int = 32, threshold: float = 0.01, dilation: int = 1
) -> torch.Tensor:
    """Occupancy grid ``[G, G, G]`` (bool) from the model's own density for one shape code ``[32]``.

    Used to render codes that belong to no captured asset (PCA directions, mixes): a cell is
    occupied when a ray crossing it would lose more than ``threshold`` of its light, i.e.
    ``1 - exp(-sigma * cell) > threshold``. The grid is evaluated at cell centres and corners'
    midpoints are covered by dilating one cell.
    """
    pts = R.grid_centres(resolution, shape.device).reshape(resolution, -1, 3)  # [G, G*G, 3]
    codes = shape.reshape(1, -1).expand(resolution, -1)
    sigma = field.density(pts, codes).reshape(resolution, resolution, resolution)
    cell = 2.0 / resolution
    occ = (1.0 - torch.exp(-sigma * cell)) > threshold
    occ &= R.grid_centres(resolution, shape.device).norm(dim=-1) <= 1.0 + cell
    return R.dilate(occ, dilation)


@torch.no_grad()
def render_images(
    field: LatentField,
    shape: torch.Tensor,
    texture: torch.Tensor,
    c2w: torch.Tensor,
    image_size: int,
    grid: torch.Tensor | None,
    n_samples: int,
    chunk: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one code (``shape, texture [32]``) from cameras ``c2w [V, 4, 4]``.

    Samples lie between the first and last occupied cell of ``grid [G, G, G]`` (``None``: the
    unit sphere's chord). Returns premultiplied RGB ``[V, H, W, 3]`` and alpha ``[V, H, W]``;
    rays that miss the grid are transparent.
    """
    dev = c2w.device
    cam = R.camera_directions(image_size, dev)  # [P, 3]
    v_count = c2w.shape[0]
    o, d = R.world_rays(c2w[:, None], cam[None])  # [V, P, 3]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    near, far, hit = R.sphere_bounds(o, d)
    if grid is not None:
        t0, t1, ghit = R.grid_bounds(grid, o, d, near, far)
        hit = hit & ghit
    else:
        t0, t1 = near, far
    rgb = torch.zeros(o.shape[0], 3, device=dev)
    alpha = torch.zeros(o.shape[0], device=dev)
    idx = hit.nonzero()[:, 0]
    for s in range(0, idx.numel(), chunk):
        j = idx[s : s + chunk]
        n = j.numel()
        c, a = render_rays(
            field, o[j], d[j], t0[j], t1[j], shape.expand(n, -1), texture.expand(n, -1), n_samples, None
        )
        rgb[j], alpha[j] = c.float(), a.float()
    return rgb.reshape(v_count, image_size, image_size, 3), alpha.reshape(v_count, image_size, image_size)
