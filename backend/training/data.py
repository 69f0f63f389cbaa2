"""Bundles -> tensors: views resized to the preset's size, the held-out split, visual hulls and ray tables.

Images are kept as ``uint8`` premultiplied RGBA ``[A, V, H, W, 4]`` (a quarter of float32's
memory); rays are never materialised for whole images: a :class:`RaySet` stores, per ray that
meets its asset's hull, only (asset, view, pixel, t_min, t_max) and builds origins/directions for
each batch from the camera matrices.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from backend.model import rays as R
from backend.model.config import TrainConfig
from backend.model.errors import ModelError
from shared import rig
from shared.bundle import TRANSFORMS, AssetInfo, Bundle, BundleError, read_bundle

TRAIN_VIEWS: tuple[int, ...] = tuple(i for i in range(rig.NUM_VIEWS) if i not in rig.HELD_OUT_VIEWS)
ALL_VIEWS: tuple[int, ...] = tuple(range(rig.NUM_VIEWS))


def find_bundles(root: str | Path) -> list[Path]:
    """Every bundle folder under ``root`` (a folder with ``transforms.json``, found recursively), sorted.

    Hidden folders are skipped: they hold bundles being written (e.g. a backend storing an upload).
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"{root}: not a folder of view bundles (capture assets with `asset2vec capture` first)")
    found = sorted(p.parent for p in root.rglob(TRANSFORMS)
                   if not any(part.startswith(".") for part in p.parent.relative_to(root).parts))
    if not found:
        raise ModelError(
            f"{root}: the library is empty, no view bundle ({TRANSFORMS}) was found under it; "
            f"capture assets with `asset2vec capture DIR --out {root}`"
        )
    return found


def read_bundles(paths: Sequence[str | Path]) -> list[Bundle]:
    """Read and validate bundles, turning a bad one into a :class:`ModelError` that names it."""
    out = []
    for p in paths:
        try:
            out.append(read_bundle(p))
        except BundleError as e:
            raise ModelError(f"cannot use bundle {p}: {e}") from None
    return out


def unreadable_reason(path: str | Path) -> str | None:
    """Why the bundle folder ``path`` cannot be trained on, or None when it reads and every view decodes fully.

    The reason names no folder (it goes into a service's answers): a stored bundle written by an older release, or
    damaged on disk, is then skipped by a rebuild instead of failing it (:meth:`LibraryHome.set_aside_unreadable`).
    """
    path = Path(path)
    what = "the bundle"
    try:
        bundle = read_bundle(path)
        for i in range(len(bundle.frames)):
            what = f"view {i} ({bundle.frames[i].file_path})"
            with Image.open(io.BytesIO(bundle.image_bytes(i)), formats=["PNG"]) as im:
                im.load()  # every pixel: a valid header over garbage data fails only here
    except BundleError as e:
        return str(e).replace(f"{path}{os.sep}", "").replace(str(path), "the bundle")
    except Exception as e:  # noqa: BLE001 - Pillow and the file system raise many types; all mean "unreadable"
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e).replace(str(path), "")
        return f"{what} cannot be read ({type(e).__name__}: {detail[:120]})"
    return None


def straight_rgba(bundle: Bundle, error: type[Exception] = ModelError) -> torch.Tensor:
    """The bundle's views decoded: straight-alpha RGBA ``[V, H, W, 4]`` float32 in [0, 1]; an undecodable view
    raises ``error`` saying to capture the asset again (the decoder's training and the pretrained features share it)."""
    imgs = []
    for i in range(len(bundle.frames)):
        try:
            im = Image.open(io.BytesIO(bundle.image_bytes(i))).convert("RGBA")
        except (OSError, ValueError) as e:
            raise error(f"{bundle.root}: view {i} cannot be decoded ({e}); capture the asset again") from None
        imgs.append(np.asarray(im, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(imgs))


def decode_views(bundle: Bundle, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Premultiplied RGBA ``[V, S, S, 4]`` uint8 at ``image_size`` and cameras ``c2w [V, 4, 4]``.

    Views of another size are resized (area-weighted, on premultiplied colour so transparent
    pixels do not bleed black into edges): a library may mix capture sizes.
    """
    x = straight_rgba(bundle)  # [V, H, W, 4] straight alpha
    x = torch.cat([x[..., :3] * x[..., 3:], x[..., 3:]], dim=-1)
    if x.shape[1] != image_size:
        x = F.interpolate(x.permute(0, 3, 1, 2), size=(image_size, image_size), mode="bilinear", antialias=True)
        x = x.permute(0, 2, 3, 1).clamp(0, 1)
    c2w = torch.tensor([fr.transform_matrix for fr in bundle.frames], dtype=torch.float32)
    return (x * 255.0).round().to(torch.uint8), c2w


@dataclass
class ViewSet:
    """Views of ``A`` assets at one size: ``images [A, V, S, S, 4]`` uint8 premultiplied, ``c2w [A, V, 4, 4]``."""

    names: list[str]
    assets: list[AssetInfo]
    images: torch.Tensor
    c2w: torch.Tensor
    image_size: int

    def to(self, device: torch.device | str) -> ViewSet:
        return ViewSet(self.names, self.assets, self.images.to(device), self.c2w.to(device), self.image_size)

    def rgba(self, asset: int) -> torch.Tensor:
        """Float premultiplied RGBA ``[V, S, S, 4]`` of one asset."""
        return self.images[asset].float() / 255.0


def load_views(
    bundles: Sequence[Bundle], image_size: int, progress: Callable[[int], object] | None = None, unique: bool = True
) -> ViewSet:
    """Decode bundles into a :class:`ViewSet`; with ``unique`` (training) asset names must differ, as they key the codes.

    ``progress(1)`` is called after each bundle.
    """
    if not bundles:
        raise ModelError("no bundles to load: the library is empty")
    names: list[str] = []
    seen: dict[str, Path | None] = {}
    imgs, cams = [], []
    for b in bundles:
        name = b.asset.name
        if unique and name in seen:
            raise ModelError(
                f"two bundles are both named {name!r} ({seen[name]} and {b.root}); asset names must be unique "
                f"in a library, rename one and capture it again"
            )
        seen[name] = b.root
        names.append(name)
        im, c = decode_views(b, image_size)
        imgs.append(im)
        cams.append(c)
        if progress is not None:
            progress(1)
    return ViewSet(names, [b.asset for b in bundles], torch.stack(imgs), torch.stack(cams), image_size)


@dataclass
class RayBatch:
    """A batch of rays: ``origins, dirs [N, 3]``, ``t_min, t_max [N]``, ``asset [N]``, target ``rgba [N, 4]`` (premultiplied)."""

    origins: torch.Tensor
    dirs: torch.Tensor
    t_min: torch.Tensor
    t_max: torch.Tensor
    asset: torch.Tensor
    rgba: torch.Tensor


@dataclass
class RaySet:
    """The rays of chosen views of every asset that meet the asset's occupancy grid.

    ``asset, view, pixel, t_min, t_max`` are ``[N]``; ``grids [A, G, G, G]`` bool. ``missed`` counts
    ``total`` counts all rays considered, ``missed_alpha`` the fraction of the views' summed
    alpha that falls on dropped rays (0 for a correct hull: dropping them loses nothing).
    """

    views: ViewSet
    asset: torch.Tensor
    view: torch.Tensor
    pixel: torch.Tensor
    t_min: torch.Tensor
    t_max: torch.Tensor
    grids: torch.Tensor
    total: int
    missed_alpha: float

    @property
    def count(self) -> int:
        return int(self.asset.numel())

    def sample(self, n: int, generator: torch.Generator) -> RayBatch:
        """``n`` rays drawn uniformly across all assets' rays (so batches mix many assets)."""
        dev = self.asset.device
        idx = torch.randint(0, self.count, (n,), generator=generator, device=dev)
        return self.gather(idx)

    def gather(self, idx: torch.Tensor) -> RayBatch:
        a, v, p = self.asset[idx], self.view[idx], self.pixel[idx]
        s = self.views.image_size
        u, vv = (p % s).float() + 0.5, (p // s).float() + 0.5
        cam = R.pixel_directions(u, vv, s)
        o, d = R.world_rays(self.views.c2w[a, v], cam)
        rgba = self.views.images[a, v, p // s, p % s].float() / 255.0
        return RayBatch(o, d, self.t_min[idx], self.t_max[idx], a, rgba)


def asset_grid(views: ViewSet, asset: int, view_ids: Sequence[int], cfg: TrainConfig) -> torch.Tensor:
    """The occupancy grid ``[G, G, G]`` used to place samples for one asset.

    ``hull`` sampling: the visual hull carved from the silhouettes of ``view_ids``; ``uniform``:
    every cell (samples then span the whole unit-sphere chord).
    """
    g = cfg.hull_resolution
    if cfg.sampling == "uniform":
        return torch.ones(g, g, g, dtype=torch.bool, device=views.images.device)
    if cfg.sampling != "hull":
        raise ModelError(f"unknown sampling {cfg.sampling!r}: use 'hull' or 'uniform'")
    vi = list(view_ids)
    alpha = views.images[asset, vi, ..., 3].float() / 255.0
    return R.carve_hull(alpha, views.c2w[asset, vi], g, cfg.hull_alpha, cfg.hull_dilation)


def build_rays(views: ViewSet, view_ids: Sequence[int], cfg: TrainConfig) -> RaySet:
    """Ray table over ``view_ids`` of every asset, with each asset's grid carved from the same views."""
    s = views.image_size
    dev = views.images.device
    cam = R.camera_directions(s, dev)  # [P, 3]
    vi = torch.tensor(list(view_ids), device=dev)
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("asset", "view", "pixel", "t_min", "t_max")}
    grids = []
    total, missed_alpha, all_alpha = 0, 0.0, 0.0
    for a in range(len(views.names)):
        grid = asset_grid(views, a, view_ids, cfg)
        grids.append(grid)
        o, d = R.world_rays(views.c2w[a, vi][:, None], cam[None])  # [V, P, 3]
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        near, far, hit = R.sphere_bounds(o, d)
        if cfg.sampling == "hull":
            t0, t1, ghit = R.grid_bounds(grid, o, d, near, far)
            hit = hit & ghit
        else:
            t0, t1 = near, far
        alpha = views.images[a, vi, ..., 3].reshape(-1).float() / 255.0
        missed_alpha += float(alpha[~hit].sum())
        all_alpha += float(alpha.sum())
        total += hit.numel()
        j = hit.nonzero()[:, 0]
        cols["asset"].append(torch.full_like(j, a))
        cols["view"].append(vi[j // cam.shape[0]])
        cols["pixel"].append(j % cam.shape[0])
        cols["t_min"].append(t0[j])
        cols["t_max"].append(t1[j])
    cat = {k: torch.cat(v) for k, v in cols.items()}
    frac = missed_alpha / all_alpha if all_alpha > 0 else 0.0
    return RaySet(views, grids=torch.stack(grids), total=total, missed_alpha=frac, **cat)
