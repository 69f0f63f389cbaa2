"""A trained run, ready to use: its codes, rendering of any code, and inversion of new assets.

``load_run(RUN_DIR)`` is the one entry point the library, the service and the CLI use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.model.config import Preset
from backend.model.errors import ModelError
from backend.model.field import LatentField
from backend.model.renderer import density_grid, render_images
from shared import rig
from shared.bundle import AssetInfo, Bundle

from .checkpoint import CHECKPOINT, load_checkpoint
from .data import load_views
from .inversion import Cancelled, InversionResult, Progress, invert_views
from .trainer import pick_device

__all__ = ["Cancelled", "InversionResult", "TrainedRun", "load_run"]


@dataclass
class TrainedRun:
    """A run folder's decoder and codes. ``shape_codes``/``texture_codes`` are ``[N, 32]`` in ``names`` order."""

    run_dir: Path
    model_id: str
    preset: str
    names: list[str]
    shape_codes: np.ndarray
    texture_codes: np.ndarray
    assets: list[AssetInfo]
    heldout_psnr: float
    config: Preset
    decoder: LatentField = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    metrics: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def index(self, name: str) -> int:
        """Position of asset ``name`` in the run; a clear error if the run has no such asset."""
        try:
            return self.names.index(name)
        except ValueError:
            sample = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
            raise ModelError(f"no asset named {name!r} in run {self.run_dir} (it has: {sample})") from None

    def _codes(self, x: np.ndarray | Sequence, what: str) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)
        if t.ndim == 1:
            t = t[None]
        want = self.config.model.shape_dim if what == "shape" else self.config.model.texture_dim
        if t.ndim != 2 or t.shape[1] != want:
            raise ModelError(f"{what} codes must be [M, {want}] numbers, got shape {tuple(t.shape)}")
        return t

    @torch.no_grad()
    def render(
        self,
        shape: np.ndarray,
        texture: np.ndarray,
        views: list[rig.RigView] | None = None,
        image_size: int = 64,
    ) -> np.ndarray:
        """Render ``M`` codes (``shape, texture [M, 32]``) from ``views`` (default: the 18 rig views).

        Returns straight RGBA ``[M, V, H, W, 4]`` float32 in [0, 1]. Samples are placed in an
        occupancy grid evaluated from the model's own density for each shape code, so any code
        renders (PCA directions, shape of one asset with the texture of another).
        """
        s, t = self._codes(shape, "shape"), self._codes(texture, "texture")
        if s.shape[0] != t.shape[0]:
            raise ModelError(f"{s.shape[0]} shape codes but {t.shape[0]} texture codes; pass as many of each")
        views = views if views is not None else rig.views()
        if not views:
            raise ModelError("no views to render")
        c2w = torch.tensor([v.camera_to_world() for v in views], dtype=torch.float32, device=self.device)
        tc = self.config.train
        out = np.zeros((s.shape[0], len(views), image_size, image_size, 4), dtype=np.float32)
        with self._lock:  # the decoder is shared; renders and inversions take turns
            for m in range(s.shape[0]):
                grid = density_grid(self.decoder, s[m], tc.hull_resolution, dilation=tc.hull_dilation)
                rgb, alpha = render_images(self.decoder, s[m], t[m], c2w, image_size, grid, tc.samples_per_ray)
                straight = torch.where(alpha[..., None] > 1e-4, rgb / alpha.clamp_min(1e-4)[..., None], 0.0)
                out[m, ..., :3] = straight.clamp(0, 1).cpu().numpy()
                out[m, ..., 3] = alpha.clamp(0, 1).cpu().numpy()
        return out

    def invert(
        self,
        bundles: list[Bundle],
        steps: int | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        init: np.ndarray | None = None,
    ) -> list[InversionResult]:
        """Fit codes for new assets' bundles with the decoder frozen (all at once); one result per bundle.

        ``init [B, 64]`` (optional) starts each asset from a given code, e.g. the instant encoder's
        (a refinement); by default every asset starts from the mean training code.

        Views of another size are resized to the run's training size. Raises :class:`Cancelled`
        when ``cancel`` is set.
        """
        if not bundles:
            return []
        views = load_views(bundles, self.config.train.image_size, unique=False).to(self.device)
        if init is None:
            start = torch.as_tensor(
                np.concatenate([self.shape_codes, self.texture_codes], axis=1).mean(0), device=self.device
            )
        else:
            start = torch.as_tensor(np.asarray(init, dtype=np.float32), device=self.device)
            want = (len(bundles), self.config.model.shape_dim + self.config.model.texture_dim)
            if tuple(start.shape) != want:
                raise ModelError(f"init codes must be {list(want)} (one per bundle), got {list(start.shape)}")
        with self._lock:
            return invert_views(self.decoder, self.config, views, start, steps, progress, cancel)


def load_run(run_dir: str | Path, device: str | None = None) -> TrainedRun:
    """Load ``RUN_DIR/checkpoint.pt``; a clear :class:`ModelError` if it is missing or of another format."""
    run_dir = Path(run_dir)
    dev = pick_device(device)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location=dev)
    try:  # data only, but any shape of it: a malformed checkpoint is a ModelError, never a crash of the caller
        cfg = Preset.from_json(state["config"])
        if cfg.name != state["preset"]:
            raise ModelError(f"{run_dir}: checkpoint is inconsistent (preset {state['preset']!r} vs {cfg.name!r})")
        net = LatentField(cfg.model).to(dev)
        try:
            net.load_state_dict(state["field"])
        except RuntimeError as e:
            raise ModelError(f"{run_dir}: checkpoint weights do not fit preset {cfg.name!r} ({e})") from None
        net.eval()
        codes = state["codes"].float().cpu().numpy()
        sd = cfg.model.shape_dim
        metrics = state.get("metrics") or {}
        assets = [AssetInfo(**a) for a in state.get("assets", [])]
        names = [str(n) for n in state["names"]]
        heldout = float(metrics.get("heldout_psnr", float("nan")))
        model_id = str(state["model_id"])
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - wrong types or fields inside a readable file
        raise ModelError(f"{run_dir}: not a usable Asset2Vec checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    return TrainedRun(
        run_dir=run_dir,
        model_id=model_id,
        preset=cfg.name,
        names=names,
        shape_codes=codes[:, :sd].copy(),
        texture_codes=codes[:, sd:].copy(),
        assets=assets,
        heldout_psnr=heldout,
        config=cfg,
        decoder=net,
        device=dev,
        metrics=metrics,
    )
