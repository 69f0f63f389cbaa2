"""The instant encoder: an asset's 18 views -> its 64-number code in one forward pass, no inversion.

A small CNN shared by all views (32 px premultiplied RGBA) gives one feature vector per view; a
learned per-view embedding (the rig is fixed, so view ``i`` always looks from the same place) is
added, features are mean-pooled over the views and an MLP maps them to the code. It is trained by
regression onto the auto-decoder's learned codes of the run's training assets (standardised per
dimension), with random view dropout as the only augmentation (fewer views of the same asset
still have the same code). Saved as ``RUN_DIR/encoder.pt``.

    train_encoder(run_dir, bundles_dir, minutes=2)      # after `asset2vec nerf train`
    shape, texture = encode_bundles(run_dir, bundles)   # [N, 32] each
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from backend.model.errors import ModelError
from shared import rig
from shared.bundle import Bundle

from .data import decode_views, find_bundles, read_bundles

ENCODER_FILE = "encoder.pt"
ENCODER_FORMAT = 1
IMAGE_SIZE = 32


class ViewEncoder(nn.Module):
    """``views [B, V, 4, S, S]`` (premultiplied RGBA in [0, 1]) + ``view_ids [V]`` -> standardised codes ``[B, D]``."""

    def __init__(self, code_dim: int = 64, image_size: int = IMAGE_SIZE, width: int = 16, feature: int = 256,
                 num_views: int = rig.NUM_VIEWS) -> None:
        super().__init__()
        self.config = {"code_dim": code_dim, "image_size": image_size, "width": width, "feature": feature,
                       "num_views": num_views}
        w = width
        self.cnn = nn.Sequential(  # S -> S/8 with stride-2 convolutions; flatten keeps where things are in the view
            nn.Conv2d(4, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(4 * w * (image_size // 8) ** 2, feature), nn.ReLU(),
        )
        self.view_embed = nn.Parameter(torch.zeros(num_views, feature))
        self.head = nn.Sequential(nn.Linear(feature, feature), nn.ReLU(), nn.Linear(feature, code_dim))

    def forward(self, views: torch.Tensor, view_ids: torch.Tensor) -> torch.Tensor:
        b, v = views.shape[:2]
        f = self.cnn(views.reshape(b * v, *views.shape[2:])).reshape(b, v, -1)
        f = f + self.view_embed[view_ids]
        return self.head(f.mean(dim=1))


@dataclass
class Encoder:
    """A trained :class:`ViewEncoder` with the code statistics it predicts in (``mean``, ``std`` ``[D]``)."""

    net: ViewEncoder
    mean: torch.Tensor
    std: torch.Tensor
    shape_dim: int
    model_id: str = ""

    @torch.no_grad()
    def encode(self, views: torch.Tensor, batch: int = 64) -> np.ndarray:
        """Codes ``[N, D]`` float32 of ``views [N, V, S, S, 4]`` uint8 premultiplied (all V rig views)."""
        self.net.eval()
        ids = torch.arange(views.shape[1])
        out = []
        for i in range(0, len(views), batch):
            x = views[i:i + batch].permute(0, 1, 4, 2, 3).float() / 255.0
            out.append(self.net(x, ids) * self.std + self.mean)
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, len(self.mean)), np.float32)

    def save(self, path: Path) -> None:
        torch.save({"format": ENCODER_FORMAT, "config": self.net.config, "state": self.net.state_dict(),
                    "mean": self.mean, "std": self.std, "shape_dim": self.shape_dim, "model_id": self.model_id}, path)


@dataclass
class EncoderSummary:
    """What :func:`train_encoder` did: steps, seconds, final training loss (standardised MSE), the fraction of
    training assets whose encoded code is nearest to their own learned code, and where it was saved."""

    steps: int
    seconds: float
    loss: float
    nearest_own: float
    path: Path | None


def views_tensor(bundles: Sequence[Bundle], image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """``[N, V, S, S, 4]`` uint8 premultiplied views of the bundles (all must have the rig's 18 views)."""
    out = []
    for b in bundles:
        if len(b.frames) != rig.NUM_VIEWS:
            raise ModelError(f"{b.root}: has {len(b.frames)} views, the encoder needs the rig's {rig.NUM_VIEWS}; "
                             "capture the asset again")
        out.append(decode_views(b, image_size)[0])
    return torch.stack(out) if out else torch.zeros((0, rig.NUM_VIEWS, image_size, image_size, 4), dtype=torch.uint8)


def fit_encoder(
    views: torch.Tensor,
    codes: np.ndarray,
    shape_dim: int = 32,
    minutes: float = 1.0,
    steps: int | None = None,
    batch: int = 16,
    lr: float = 2e-3,
    min_views: int = 9,
    seed: int = 0,
    show_progress: bool = True,
    on_step: Callable[[float, float], None] | None = None,
) -> tuple[Encoder, int, float]:
    """Fit an encoder on ``views [N, V, S, S, 4]`` uint8 -> ``codes [N, D]``; returns ``(encoder, steps, loss)``.

    Stops after ``steps`` or ``minutes``, whichever comes first; the learning rate decays tenfold over that horizon.
    Each step sees a random batch of assets through a random subset of ``min_views``..V of their views.
    ``on_step(fraction_done, loss)`` is called every 10 steps (it may raise to stop the fit).
    """
    from tqdm import tqdm

    if len(views) != len(codes) or len(views) < 2:
        raise ModelError(f"the encoder needs views and codes of 2+ assets, got {len(views)} and {len(codes)}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = views.permute(0, 1, 4, 2, 3).float() / 255.0  # [N, V, 4, S, S]; small libraries fit in memory
    z = torch.as_tensor(np.asarray(codes, np.float32))
    mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
    target = (z - mean) / std
    n, v = x.shape[:2]
    net = ViewEncoder(code_dim=z.shape[1], image_size=x.shape[-1], num_views=v)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    budget = minutes * 60.0
    horizon = steps if steps is not None else 10**9
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc="encoder", unit="step", disable=not show_progress, leave=False)
    step, loss_v = 0, float("nan")
    net.train()
    while step < horizon and time.perf_counter() - t0 < budget:
        done = max(step / horizon, (time.perf_counter() - t0) / budget)
        for g in opt.param_groups:
            g["lr"] = lr * 0.1 ** done
        idx = torch.randint(n, (min(batch, n),), generator=gen)
        k = int(torch.randint(min(min_views, v), v + 1, (1,), generator=gen))
        ids = torch.randperm(v, generator=gen)[:k].sort().values
        loss = F.mse_loss(net(x[idx][:, ids], ids), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_v = loss.item()
        step += 1
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss_v:.3f}")
        if on_step is not None and step % 10 == 0:
            on_step(max(step / horizon, (time.perf_counter() - t0) / budget), loss_v)
    bar.close()
    net.eval()
    return Encoder(net, mean, std, shape_dim), step, loss_v


def nearest_own(pred: np.ndarray, codes: np.ndarray) -> float:
    """Fraction of rows of ``pred [N, D]`` whose nearest row of ``codes [N, D]`` (standardised space) is their own."""
    mu, sd = codes.mean(0), codes.std(0) + 1e-6
    p, c = (pred - mu) / sd, (codes - mu) / sd
    d = ((p[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    return float((d.argmin(1) == np.arange(len(p))).mean())


def _run(run_dir_or_run):  # noqa: ANN001, ANN202 (TrainedRun import is heavy and circular-prone)
    from .run import TrainedRun, load_run

    return run_dir_or_run if isinstance(run_dir_or_run, TrainedRun) else load_run(run_dir_or_run)


def train_encoder(
    run_dir: str | Path,
    bundles_dir: str | Path,
    minutes: float = 2.0,
    steps: int | None = None,
    seed: int = 0,
    show_progress: bool = True,
    on_step: Callable[[float, float], None] | None = None,
) -> EncoderSummary:
    """Train the instant encoder of a run on its training assets' views (found under ``bundles_dir``) and learned
    codes; saves ``RUN_DIR/encoder.pt``. Bundles of assets the run does not know are ignored.
    ``on_step(fraction_done, loss)``: progress, see :func:`fit_encoder`."""
    run = _run(run_dir)
    found = {b.asset.name: b for b in read_bundles(find_bundles(bundles_dir))}
    missing = [n for n in run.names if n not in found]
    if len(missing) == len(run.names):
        raise ModelError(f"{bundles_dir}: none of the run's {len(run.names)} assets has a bundle there; "
                         "pass the folder the run was trained on")
    idx = [i for i, n in enumerate(run.names) if n in found]
    views = views_tensor([found[run.names[i]] for i in idx])
    codes = np.concatenate([run.shape_codes, run.texture_codes], axis=1)[idx]
    t0 = time.perf_counter()
    enc, n_steps, loss = fit_encoder(views, codes, run.shape_codes.shape[1], minutes, steps, seed=seed,
                                     show_progress=show_progress, on_step=on_step)
    seconds = time.perf_counter() - t0
    enc.model_id = run.model_id
    path = Path(run.run_dir) / ENCODER_FILE
    enc.save(path)
    _CACHE.pop(str(path), None)
    return EncoderSummary(n_steps, seconds, loss, nearest_own(enc.encode(views), codes), path)


_CACHE: dict[str, tuple[float, Encoder]] = {}


def load_encoder(run_dir: str | Path, model_id: str | None = None) -> Encoder:
    """``RUN_DIR/encoder.pt`` (cached while the file is unchanged); a clear error if missing or of another run."""
    path = Path(run_dir) / ENCODER_FILE
    if not path.is_file():
        raise ModelError(f"{run_dir}: this run has no instant encoder ({ENCODER_FILE}); train one with "
                         "`asset2vec train-encoder BUNDLES --run RUN_DIR`")
    mtime = path.stat().st_mtime
    hit = _CACHE.get(str(path))
    if hit and hit[0] == mtime:
        enc = hit[1]
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = ViewEncoder(**state["config"])
            net.load_state_dict(state["state"])
        except (OSError, RuntimeError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: not a readable encoder ({e}); train it again") from None
        enc = Encoder(net.eval(), state["mean"], state["std"], int(state["shape_dim"]), str(state["model_id"]))
        _CACHE[str(path)] = (mtime, enc)
    if model_id is not None and enc.model_id != model_id:
        raise ModelError(f"{path} was trained for model {enc.model_id}, not {model_id}; train the encoder again")
    return enc


def encode_bundles(run_dir_or_run, bundles: Sequence[Bundle | str | Path]) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Codes of bundles (objects or folders) from the run's encoder: ``(shape [N, 32], texture [N, 32])``."""
    from .run import TrainedRun

    if isinstance(run_dir_or_run, TrainedRun):
        enc = load_encoder(run_dir_or_run.run_dir, run_dir_or_run.model_id)
    else:
        enc = load_encoder(run_dir_or_run)
    items = [b if isinstance(b, Bundle) else read_bundles([b])[0] for b in bundles]
    z = enc.encode(views_tensor(items, enc.net.config["image_size"]))
    return z[:, :enc.shape_dim].copy(), z[:, enc.shape_dim:].copy()
