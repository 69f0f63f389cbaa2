"""Bundles -> tensors: views resized to the preset's size, the held-out split, visual hulls and ray tables.

Images are kept as ``uint8`` premultiplied RGBA ``[A, V, H, W, 4]`` (a quarter of float32's
memory); rays are never materialised for whole images: a :class:`RaySet` stores, per ray that
meets its asset's hull, only (asset, view, pixel, t_min, t_max) and builds origins/directions for
each batch from the camera matrices.

Libraries larger than ``TrainConfig.resident_assets`` are trained in chunks (see :class:`ChunkSchedule` and
:class:`ChunkStream`): only the chunks' views and rays are in memory, each asset's decoded views, hull grid and
ray table are built once and kept on disk (:class:`AssetCache`), and the next chunk is prepared in a background
thread while the current one trains.
"""

from __future__ import annotations

import ctypes
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
    names = library_names(bundles) if unique else [b.asset.name for b in bundles]
    images: torch.Tensor | None = None  # [A, V, S, S, 4], filled in place (no second copy to stack)
    cams: torch.Tensor | None = None
    for a, b in enumerate(bundles):
        im, c = decode_views(b, image_size)
        if images is None or cams is None:
            images = torch.empty((len(bundles), *im.shape), dtype=im.dtype)
            cams = torch.empty((len(bundles), *c.shape), dtype=c.dtype)
        if im.shape != images.shape[1:]:
            raise ModelError(f"{b.root}: {im.shape[0]} views, where the library's first bundle has {images.shape[1]}")
        images[a], cams[a] = im, c
        if progress is not None:
            progress(1)
    assert images is not None and cams is not None
    return ViewSet(names, [b.asset for b in bundles], images, cams, image_size)


def library_names(bundles: Sequence[Bundle]) -> list[str]:
    """The bundles' asset names (they key a run's codes); a :class:`ModelError` when two bundles share one."""
    names: list[str] = []
    seen: dict[str, Path | None] = {}
    for b in bundles:
        name = b.asset.name
        if name in seen:
            raise ModelError(
                f"two bundles are both named {name!r} ({seen[name]} and {b.root}); asset names must be unique "
                f"in a library, rename one and capture it again"
            )
        seen[name] = b.root
        names.append(name)
    return names


@dataclass
class RayBatch:
    """A batch of rays: ``origins, dirs [N, 3]``, ``t_min, t_max [N]``, ``asset [N]`` (int64, the index into the run's
    code table), target ``rgba [N, 4]`` (premultiplied)."""

    origins: torch.Tensor
    dirs: torch.Tensor
    t_min: torch.Tensor
    t_max: torch.Tensor
    asset: torch.Tensor
    rgba: torch.Tensor


@dataclass
class RaySet:
    """The rays of chosen views of ``A`` assets (a whole library, or one chunk of it) that meet each asset's grid.

    ``asset [N]`` int32 (the asset's position in ``views``), ``view [N]`` int16, ``pixel [N]`` int32 (row-major in
    the view), ``t_min, t_max [N]`` float32: 18 bytes a ray. ``grids [A, G, G, G]`` bool. ``ids [A]`` int64 maps
    each of ``views``' assets to its row of the run's code table (None: the same position, a whole library).
    ``total`` counts all rays considered, ``missed_alpha`` the fraction of the views' summed alpha that falls on
    dropped rays (0 for a correct hull: dropping them loses nothing).
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
    ids: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return int(self.asset.numel())

    @property
    def nbytes(self) -> int:
        """Bytes held by the ray table, the grids and the views' images."""
        ts = (self.asset, self.view, self.pixel, self.t_min, self.t_max, self.grids, self.views.images, self.views.c2w)
        return sum(t.numel() * t.element_size() for t in ts)

    def code_index(self, local: torch.Tensor) -> torch.Tensor:
        """Code-table rows ``[N]`` int64 of local asset positions ``local [N]``."""
        local = local.long()
        return local if self.ids is None else self.ids[local]

    def to(self, device: torch.device | str) -> RaySet:
        mv = lambda t: t.to(device)  # noqa: E731
        return RaySet(self.views.to(device), mv(self.asset), mv(self.view), mv(self.pixel), mv(self.t_min),
                      mv(self.t_max), mv(self.grids), self.total, self.missed_alpha,
                      None if self.ids is None else mv(self.ids))

    def sample(self, n: int, generator: torch.Generator) -> RayBatch:
        """``n`` rays drawn uniformly across all assets' rays (so batches mix many assets)."""
        dev = self.asset.device
        idx = torch.randint(0, self.count, (n,), generator=generator, device=dev)
        return self.gather(idx)

    def gather(self, idx: torch.Tensor) -> RayBatch:
        a, v, p = self.asset[idx].long(), self.view[idx].long(), self.pixel[idx].long()
        s = self.views.image_size
        u, vv = (p % s).float() + 0.5, (p // s).float() + 0.5
        cam = R.pixel_directions(u, vv, s)
        o, d = R.world_rays(self.views.c2w[a, v], cam)
        rgba = self.views.images[a, v, p // s, p % s].float() / 255.0
        return RayBatch(o, d, self.t_min[idx], self.t_max[idx], self.code_index(a), rgba)


def asset_grid(views: ViewSet, asset: int, view_ids: Sequence[int], cfg: TrainConfig) -> torch.Tensor:
    """The occupancy grid ``[G, G, G]`` used to place samples for one asset.

    ``hull`` sampling: the visual hull carved from the silhouettes of ``view_ids``; ``uniform``:
    every cell (samples then span the whole unit-sphere chord).
    """
    return _grid(views.images[asset], views.c2w[asset], view_ids, cfg)


def _grid(images: torch.Tensor, c2w: torch.Tensor, view_ids: Sequence[int], cfg: TrainConfig) -> torch.Tensor:
    g = cfg.hull_resolution
    if cfg.sampling == "uniform":
        return torch.ones(g, g, g, dtype=torch.bool, device=images.device)
    if cfg.sampling != "hull":
        raise ModelError(f"unknown sampling {cfg.sampling!r}: use 'hull' or 'uniform'")
    vi = list(view_ids)
    alpha = images[vi, ..., 3].float() / 255.0
    return R.carve_hull(alpha, c2w[vi], g, cfg.hull_alpha, cfg.hull_dilation)


@dataclass
class AssetRecord:
    """One asset's training data at the run's image size: ``images [V, S, S, 4]`` uint8 premultiplied (all views),
    ``c2w [V, 4, 4]``, ``grid [G, G, G]`` bool (carved from the ray views), the ray table of the ray views
    ``view [n]`` int16, ``pixel [n]`` int32, ``t_min, t_max [n]`` float32, and ``total`` (rays considered),
    ``missed_alpha`` / ``all_alpha`` (summed alpha on dropped / all rays)."""

    images: torch.Tensor
    c2w: torch.Tensor
    grid: torch.Tensor
    view: torch.Tensor
    pixel: torch.Tensor
    t_min: torch.Tensor
    t_max: torch.Tensor
    total: int
    missed_alpha: float
    all_alpha: float


#: Rays per call of :func:`backend.model.rays.grid_bounds` (bounds its probes' memory at large image sizes).
_BOUNDS_RAYS = 4096


def asset_rays(images: torch.Tensor, c2w: torch.Tensor, view_ids: Sequence[int], cfg: TrainConfig) -> AssetRecord:
    """The grid and ray table of one asset's views ``images [V, S, S, 4]`` uint8 seen by ``c2w [V, 4, 4]``."""
    s = images.shape[1]
    dev = images.device
    cam = R.camera_directions(s, dev)  # [P, 3]
    vi = torch.tensor(list(view_ids), device=dev)
    grid = _grid(images, c2w, view_ids, cfg)
    o, d = R.world_rays(c2w[vi][:, None], cam[None])  # [V, P, 3]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    near, far, hit = R.sphere_bounds(o, d)
    if cfg.sampling == "hull":  # in pieces: grid_bounds holds [rays, 4 G] probes at once (ray by ray: same result)
        parts = [R.grid_bounds(grid, o[i:i + _BOUNDS_RAYS], d[i:i + _BOUNDS_RAYS], near[i:i + _BOUNDS_RAYS],
                               far[i:i + _BOUNDS_RAYS]) for i in range(0, o.shape[0], _BOUNDS_RAYS)]
        t0, t1, ghit = (torch.cat(x) for x in zip(*parts, strict=True))
        hit = hit & ghit
    else:
        t0, t1 = near, far
    alpha = images[vi, ..., 3].reshape(-1).float() / 255.0
    j = hit.nonzero()[:, 0]
    return AssetRecord(
        images=images, c2w=c2w, grid=grid,
        view=vi[j // cam.shape[0]].to(torch.int16), pixel=(j % cam.shape[0]).to(torch.int32),
        t_min=t0[j], t_max=t1[j],
        total=hit.numel(), missed_alpha=float(alpha[~hit].sum()), all_alpha=float(alpha.sum()),
    )


def record_views(records: Sequence[AssetRecord], names: list[str], assets: list[AssetInfo]) -> ViewSet:
    """The :class:`ViewSet` of per-asset records (``records[a]`` is asset ``a``)."""
    return ViewSet(names, assets, torch.stack([r.images for r in records]), torch.stack([r.c2w for r in records]),
                   int(records[0].images.shape[1]))


def assemble(records: Sequence[AssetRecord], views: ViewSet, ids: torch.Tensor | None = None) -> RaySet:
    """One :class:`RaySet` over ``views`` from its assets' records (``records[a]`` is ``views``' asset ``a``)."""
    missed, everything = 0.0, 0.0
    for r in records:
        missed += r.missed_alpha
        everything += r.all_alpha
    return RaySet(
        views,
        asset=torch.cat([torch.full((r.view.numel(),), a, dtype=torch.int32, device=r.view.device)
                         for a, r in enumerate(records)]),
        view=torch.cat([r.view for r in records]),
        pixel=torch.cat([r.pixel for r in records]),
        t_min=torch.cat([r.t_min for r in records]),
        t_max=torch.cat([r.t_max for r in records]),
        grids=torch.stack([r.grid for r in records]),
        total=sum(r.total for r in records),
        missed_alpha=missed / everything if everything > 0 else 0.0,
        ids=ids,
    )


def build_rays(views: ViewSet, view_ids: Sequence[int], cfg: TrainConfig) -> RaySet:
    """Ray table over ``view_ids`` of every asset, with each asset's grid carved from the same views."""
    records = []
    for a in range(len(views.names)):
        records.append(asset_rays(views.images[a], views.c2w[a], view_ids, cfg))
        trim_heap()
    return assemble(records, views)


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    Finding an asset's rays allocates ~50 MB of short-lived probes; glibc keeps such freed blocks in its heaps
    (one per thread) between the small tensors that stay, so without trimming a process's memory grows with the
    assets it has built, not with what it holds (measured: +400 MB after 64 assets at 32 px on this CPU).
    """
    global _LIBC
    if not sys.platform.startswith("linux"):
        return
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        try:
            _LIBC.malloc_trim(0)
        except AttributeError:  # not glibc (e.g. musl)
            _LIBC = False


_LIBC: ctypes.CDLL | bool | None = None


class AssetCache:
    """Per-asset :class:`AssetRecord` files ``folder/<index>.pt``: each asset's views are decoded, its hull carved and
    its rays found once per run (the costly part, ~0.2 s an asset at 32 px on a 2-core CPU), then read back in
    every later round in about a millisecond. Disk use is about the resident size of the asset (cpu-small:
    ~0.25 MB an asset). Files are written whole (temporary file + rename); a damaged one is rebuilt."""

    def __init__(self, folder: str | Path, bundles: Sequence[Bundle], cfg: TrainConfig,
                 view_ids: Sequence[int] = TRAIN_VIEWS) -> None:
        self.folder, self.bundles, self.cfg, self.view_ids = Path(folder), list(bundles), cfg, tuple(view_ids)

    def get(self, i: int) -> AssetRecord:
        path = self.folder / f"{i}.pt"
        if path.is_file():
            try:
                return AssetRecord(**torch.load(path, map_location="cpu", weights_only=True))
            except Exception:  # noqa: BLE001 - a damaged or foreign file is rebuilt
                pass
        im, c2w = decode_views(self.bundles[i], self.cfg.image_size)
        rec = asset_rays(im, c2w, self.view_ids, self.cfg)
        trim_heap()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{i}.{threading.get_ident()}.tmp"
        torch.save(dict(rec.__dict__), tmp)
        os.replace(tmp, path)
        return rec

    def clear(self) -> None:
        """Delete the cache (a finished run needs it no more)."""
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


#: A step count at or above this is open-ended (a time-budgeted run): chunk visits then have a fixed length.
OPEN_ENDED_STEPS = 10**7


@dataclass(frozen=True)
class ChunkSchedule:
    """Which assets are resident at each step of a run over more than ``resident_assets`` assets.

    ``n_assets`` = A assets are cut into ``chunks`` = K = ceil(A / C) chunks of at most ``chunk_assets`` = C =
    ``resident_assets // 2`` (the chunk that trains and the one being prepared are both resident). Round r is a
    permutation of all assets drawn from ``(seed, r)`` cut into K chunks whose sizes differ by at most one, visited
    one after the other, so every asset is visited once per round. Visit v (round v // K, chunk v % K) trains the
    steps ``[start(v), start(v + 1))``: a run of T steps holds a whole number of rounds
    ``max(1, round(T / (K * chunk_steps)))`` and ``start(v) = floor(v * T / visits)`` (every asset gets the same
    number of steps, within one); an open-ended run (a time budget) has visits of ``chunk_steps`` each. The
    schedule depends only on (A, C, T, chunk_steps, seed): a resumed run finds its chunk from the step.
    """

    n_assets: int
    chunk_assets: int
    steps: int
    chunk_steps: int
    seed: int

    @classmethod
    def plan(cls, n_assets: int, cfg: TrainConfig) -> ChunkSchedule | None:
        """The schedule of a run of ``n_assets`` under ``cfg``, or None when all of them fit at once."""
        if cfg.resident_assets < 2:
            raise ModelError(f"resident_assets must be at least 2, got {cfg.resident_assets}")
        if n_assets <= cfg.resident_assets:
            return None
        return cls(n_assets, cfg.resident_assets // 2, cfg.steps, max(1, cfg.chunk_steps), cfg.seed)

    @property
    def chunks(self) -> int:
        return -(-self.n_assets // self.chunk_assets)

    @property
    def rounds(self) -> int | None:
        """Rounds over the library (None for an open-ended run)."""
        if self.steps >= OPEN_ENDED_STEPS:
            return None
        return max(1, round(self.steps / (self.chunks * self.chunk_steps)))

    def start(self, visit: int) -> int:
        """First step of ``visit``."""
        r = self.rounds
        return visit * self.chunk_steps if r is None else visit * self.steps // (r * self.chunks)

    def visit_at(self, step: int) -> int:
        """The visit that trains ``step``."""
        r = self.rounds
        v = step // self.chunk_steps if r is None else step * r * self.chunks // self.steps
        while self.start(v + 1) <= step:
            v += 1
        while v > 0 and self.start(v) > step:
            v -= 1
        return v

    def members(self, visit: int) -> np.ndarray:
        """Code-table rows ``[C_v]`` int64 of the assets of ``visit`` (C_v is C or C - 1)."""
        rnd, k = divmod(visit, self.chunks)
        perm = np.random.default_rng([self.seed, rnd]).permutation(self.n_assets)
        return np.array_split(perm, self.chunks)[k].astype(np.int64)


class _Stopped(Exception):
    pass


class ChunkStream:
    """The resident chunk of a chunked run (a :class:`RaySet` on ``device``), the next one prepared in a thread.

    ``resident`` counts the assets whose views and rays are in memory now (the training chunk and the one being
    prepared), ``peak`` the most at any time; ``loads`` lists the sizes of the chunks built.
    """

    def __init__(self, schedule: ChunkSchedule, cache: AssetCache, names: list[str], assets: list[AssetInfo],
                 device: torch.device | str, stop: int) -> None:
        self.schedule, self.cache, self.names, self.assets = schedule, cache, names, assets
        self.device, self.stop = device, stop
        self.visit: int | None = None
        self.current: RaySet | None = None
        self._pending: tuple[int, Future[RaySet]] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="a2v-chunks")
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.resident, self.peak, self.wait_seconds = 0, 0, 0.0
        self.loads: list[int] = []

    def _count(self, n: int) -> None:
        with self._lock:
            self.resident += n
            self.peak = max(self.peak, self.resident)

    def _build(self, visit: int) -> RaySet:
        ids = self.schedule.members(visit)
        self._count(len(ids))
        try:
            records = []
            for i in ids:
                if self._halt.is_set():
                    raise _Stopped()
                records.append(self.cache.get(int(i)))
            views = record_views(records, [self.names[i] for i in ids], [self.assets[i] for i in ids])
            out = assemble(records, views, torch.from_numpy(ids))
            del records
        except BaseException:
            self._count(-len(ids))
            raise
        self.loads.append(len(ids))
        return out

    def needs_switch(self, step: int) -> bool:
        return self.visit is None or self.schedule.visit_at(step) != self.visit

    def rays_at(self, step: int) -> RaySet:
        """The chunk that trains ``step`` (waits for it when it is not ready yet); prepares the next one."""
        v = self.schedule.visit_at(step)
        if v == self.visit and self.current is not None:
            return self.current
        self._release_current()
        t0 = time.perf_counter()
        if self._pending is not None and self._pending[0] == v:
            chunk = self._pending[1].result()
        else:
            self._drop_pending()
            chunk = self._build(v)
        self._pending = None
        self.wait_seconds += time.perf_counter() - t0
        self.current, self.visit = chunk.to(self.device), v
        if self.schedule.start(v + 1) < self.stop:
            self._pending = (v + 1, self._pool.submit(self._build, v + 1))
        return self.current

    def _release_current(self) -> None:
        if self.current is not None:
            n = len(self.current.views.names)
            self.current = None
            self._count(-n)
            trim_heap()

    def _drop_pending(self) -> None:
        if self._pending is None:
            return
        _, fut = self._pending
        self._pending = None
        self._halt.set()
        try:
            chunk = fut.result()
            self._count(-len(chunk.views.names))
        except BaseException:  # noqa: BLE001 - stopped, or failed: the build gave its count back already
            pass
        finally:
            self._halt.clear()

    def close(self) -> None:
        """Stop preparing, release both chunks and the thread."""
        self._drop_pending()
        self._release_current()
        self._pool.shutdown(wait=True)
