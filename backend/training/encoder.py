"""The instant encoder: an asset's 18 views -> its 64-number code in one pass, no inversion.

Two kinds, both saved as ``RUN_DIR/encoder.pt``:

* ``"feature"`` (:class:`FeatureEncoder`, the default when the pretrained backbone runs): a ridge regression from
  the pretrained backbone's mid-level activations of the asset's 18 views (:mod:`backend.features`: the four
  stages' average-pooled activations, per view, concatenated over the views, which are fixed poses) to its code.
  Fitted in seconds on activations the library computes anyway (cached next to each bundle with issue 15's
  descriptor feature, so the index's feature step then reads them for free), holds no views in memory, and lands
  out-of-fold codes nearest their own far more often than the CNN (docs/quality_codes.md).
* ``"views"`` (:class:`Encoder`): a small CNN shared by all views (32 px premultiplied RGBA) gives one
  feature vector per view; a learned per-view embedding (the rig is fixed, so view ``i`` always looks from
  the same place) is added, features are mean-pooled over the views and an MLP maps them to the code. It is
  trained by regression onto the auto-decoder's learned codes of the run's training assets (standardised per
  dimension), with random view dropout as the only augmentation (fewer views of the same asset still have
  the same code).

    train_encoder(run_dir, bundles_dir, minutes=2)      # after `asset2vec nerf train`; kind="auto"|"feature"|"views"
    shape, texture = encode_bundles(run_dir, bundles)   # [N, 32] each
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from backend.model.errors import ModelError
from shared import rig
from shared.bundle import Bundle

from .data import decode_views, find_bundles, read_bundles

ENCODER_FILE = "encoder.pt"
ENCODER_FORMAT = 2  # 2 added the feature kind; format-1 files are CNN encoders and still load
IMAGE_SIZE = 32
ENCODER_KINDS = ("auto", "feature", "views")
#: What the feature encoder reads of each view (``backend.features`` per-view activations): the backbone's four
#: stages, not its head. Mid-level activations carry the geometry and colour the codes hold; per view, because
#: the rig's views are fixed poses (measured against the head's pooled feature: docs/quality_codes.md).
ENCODER_LAYERS = ("stage80_avg", "stage112_avg", "stage192_avg", "stage320_avg")
#: Ridge penalty of the feature encoder on standardised inputs: of 10/30/100/300/1000, 100 was the best or within a
#: point of it on the sample library, Scopia and the default catalogue (docs/quality_codes.md).
FEATURE_RIDGE = 100.0
#: The ridge is fitted on at most this many assets (evenly spread): memory and time stay bounded at any library size.
FIT_MAX_ASSETS = 4096
#: Folds of the feature encoder's out-of-fold check (what new assets get, unlike the in-sample score), on at most
#: :data:`CHECK_MAX_ASSETS` assets.
CHECK_FOLDS = 5
CHECK_MAX_ASSETS = 2000

log = logging.getLogger(__name__)


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
    kind: ClassVar[str] = "views"

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
        torch.save({"format": ENCODER_FORMAT, "kind": self.kind, "config": self.net.config,
                    "state": self.net.state_dict(), "mean": self.mean, "std": self.std, "shape_dim": self.shape_dim,
                    "model_id": self.model_id}, path)


def encoder_input(per_view: Mapping[str, np.ndarray], layers: Sequence[str] = ENCODER_LAYERS) -> np.ndarray:
    """One asset's feature-encoder input ``[V * C]`` float32: the ``layers``' per-view activations (``{layer: [V,
    C_layer]}``, :func:`backend.features.view_features`), concatenated over the layers, then over the views."""
    missing = [layer for layer in layers if layer not in per_view]
    if missing:
        raise ModelError(f"the feature encoder reads layers {missing}, not in these activations; capture again")
    return np.concatenate([per_view[layer] for layer in layers], axis=1).reshape(-1).astype(np.float32)


def input_name(layers: Sequence[str] = ENCODER_LAYERS) -> str:
    """The name of what a feature encoder reads (backbone, input size and preprocessing, layers, per view)."""
    from backend.features import DEFAULT_SPEC

    return f"{DEFAULT_SPEC.key}/{'+'.join(layers)}/per-view"


@dataclass
class FeatureEncoder:
    """Codes from the pretrained backbone's per-view activations: ``code = ((x - mean) / scale) @ weight + bias``
    with ``x = encoder_input(per_view, layers)``.

    ``feature``: the name of its input (:func:`input_name`); ``mean`` / ``scale [F]``, ``weight [F, D]``, ``bias
    [D]``; the first ``shape_dim`` numbers of a code are its shape half.
    """

    feature: str
    layers: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    shape_dim: int
    model_id: str = ""
    kind: ClassVar[str] = "feature"

    def encode_features(self, features: np.ndarray) -> np.ndarray:
        """Codes ``[N, D]`` float32 of inputs ``[N, F]`` (rows of :func:`encoder_input`)."""
        x = np.asarray(features, np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise ModelError(f"the feature encoder reads {len(self.mean)} numbers per asset ({self.feature}), "
                             f"got shape {tuple(x.shape)}")
        return (((x - self.mean) / self.scale) @ self.weight + self.bias).astype(np.float32)

    def check_input(self) -> None:
        """Raise :class:`ModelError` when this Asset2Vec computes other activations than the encoder was fitted on
        (another backbone or preprocessing version)."""
        if self.feature != input_name(self.layers):
            raise ModelError(f"the encoder reads {self.feature}, this Asset2Vec computes {input_name(self.layers)}; "
                             "train the encoder again")

    def encode_views(self, per_views: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
        """Codes ``[N, D]`` float32 of assets given by their per-view activations (``{layer: [V, C]}`` each)."""
        self.check_input()
        if not per_views:
            return np.zeros((0, len(self.bias)), np.float32)
        return self.encode_features(np.stack([encoder_input(p, self.layers) for p in per_views]))

    def save(self, path: Path) -> None:
        torch.save({"format": ENCODER_FORMAT, "kind": self.kind, "feature": self.feature, "layers": list(self.layers),
                    "mean": torch.from_numpy(self.mean), "scale": torch.from_numpy(self.scale),
                    "weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias),
                    "shape_dim": self.shape_dim, "model_id": self.model_id}, path)


def fit_feature_encoder(features: np.ndarray, codes: np.ndarray, feature: str = "",
                        layers: Sequence[str] = ENCODER_LAYERS, shape_dim: int = 32,
                        alpha: float = FEATURE_RIDGE) -> FeatureEncoder:
    """Ridge regression ``features [N, F]`` -> ``codes [N, D]`` on standardised inputs (closed form; the dual
    ``N x N`` system when there are fewer assets than inputs)."""
    x, z = np.asarray(features, np.float32), np.asarray(codes, np.float64)
    if len(x) != len(z) or len(x) < 2:
        raise ModelError(f"the encoder needs features and codes of 2+ assets, got {len(x)} and {len(z)}")
    mean = x.mean(0, dtype=np.float64)
    scale = x.std(0, dtype=np.float64) + 1e-3  # + 1e-3: near-silent channels stay near zero, not amplified noise
    xs = ((x - mean.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)
    zc = z - z.mean(0)
    n, f = xs.shape
    if n < f:  # dual form: x^T (x x^T + a I)^-1 z
        gram = (xs @ xs.T).astype(np.float64)
        weight = xs.T.astype(np.float64) @ np.linalg.solve(gram + alpha * np.eye(n), zc)
    else:
        weight = np.linalg.solve((xs.T @ xs).astype(np.float64) + alpha * np.eye(f), xs.T.astype(np.float64) @ zc)
    return FeatureEncoder(feature, tuple(layers), mean.astype(np.float32), scale.astype(np.float32),
                          weight.astype(np.float32), z.mean(0).astype(np.float32), shape_dim)


def feature_encoder_check(features: np.ndarray, codes: np.ndarray, folds: int = CHECK_FOLDS,
                          alpha: float = FEATURE_RIDGE, max_assets: int = CHECK_MAX_ASSETS) -> float | None:
    """Out-of-fold :func:`nearest_own` of the feature encoder (each fold's codes from an encoder fitted on the rest),
    on at most ``max_assets`` evenly spread assets; None with too few assets for ``folds`` folds."""
    keep = _spread(len(codes), max_assets)
    features, codes = features[keep], np.asarray(codes, np.float32)[keep]
    n = len(codes)
    if n < 2 * folds:
        return None
    order = np.random.default_rng(0).permutation(n)
    pred = np.zeros_like(codes)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        pred[test] = fit_feature_encoder(features[train], codes[train], alpha=alpha).encode_features(features[test])
    return nearest_own(pred, codes)


def _spread(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``n`` rows, evenly spread (all of them when ``n <= most``)."""
    return np.arange(n) if n <= most else np.unique(np.linspace(0, n - 1, most).astype(np.int64))


@dataclass
class EncoderSummary:
    """What :func:`train_encoder` did: steps, seconds, final training loss (standardised MSE), the fraction of
    training assets whose encoded code is nearest to their own learned code, and where it was saved."""

    steps: int
    seconds: float
    loss: float
    nearest_own: float
    path: Path | None
    kind: str = "views"
    nearest_own_oof: float | None = None  # the feature kind's out-of-fold check (what a new asset gets)
    skipped: int = 0  # the feature kind: assets left out because their activations could not be computed


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


def nearest_own(pred: np.ndarray, codes: np.ndarray, block: int = 1024) -> float:
    """Fraction of rows of ``pred [N, D]`` whose nearest row of ``codes [N, D]`` (standardised space) is their own.
    Distances by blocks of ``block`` rows (``|p|^2 - 2 p.c + |c|^2``): memory ``block x N``, not ``N x N x D``."""
    mu, sd = codes.mean(0), codes.std(0) + 1e-6
    p, c = ((pred - mu) / sd).astype(np.float64), ((codes - mu) / sd).astype(np.float64)
    cc = (c ** 2).sum(1)
    hits = 0
    for s in range(0, len(p), block):
        d = cc[None, :] - 2.0 * p[s:s + block] @ c.T  # + |p|^2: the same for a row, so not needed for its argmin
        hits += int((d.argmin(1) == np.arange(s, s + len(d))).sum())
    return hits / max(len(p), 1)


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
    kind: str = "auto",
) -> EncoderSummary:
    """Train the instant encoder of a run on its training assets' views (found under ``bundles_dir``) and learned
    codes; saves ``RUN_DIR/encoder.pt``. Bundles of assets the run does not know are ignored.
    ``kind``: ``"feature"`` (ridge on the pretrained appearance feature; ``minutes``/``steps`` do not apply),
    ``"views"`` (the CNN, trained for ``steps`` or ``minutes``) or ``"auto"``: the feature kind, or the CNN when the
    backbone cannot run. ``on_step(fraction_done, loss)``: progress, see :func:`fit_encoder` (the feature kind
    reports its feature computation, loss NaN)."""
    if kind not in ENCODER_KINDS:
        raise ModelError(f"unknown encoder kind {kind!r}; use one of {', '.join(ENCODER_KINDS)}")
    run = _run(run_dir)
    found = {b.asset.name: b for b in read_bundles(find_bundles(bundles_dir))}
    missing = [n for n in run.names if n not in found]
    if len(missing) == len(run.names):
        raise ModelError(f"{bundles_dir}: none of the run's {len(run.names)} assets has a bundle there; "
                         "pass the folder the run was trained on")
    idx = [i for i, n in enumerate(run.names) if n in found]
    codes = np.concatenate([run.shape_codes, run.texture_codes], axis=1)[idx]
    path = Path(run.run_dir) / ENCODER_FILE
    if kind != "views":
        try:
            return _train_feature_encoder(run, [found[run.names[i]] for i in idx], codes, path, on_step)
        except ModelError as e:
            if kind == "feature":
                raise
            log.warning("instant encoder on the views (CNN): %s", e)
    views = views_tensor([found[run.names[i]] for i in idx])
    t0 = time.perf_counter()
    enc, n_steps, loss = fit_encoder(views, codes, run.shape_codes.shape[1], minutes, steps, seed=seed,
                                     show_progress=show_progress, on_step=on_step)
    seconds = time.perf_counter() - t0
    enc.model_id = run.model_id
    enc.save(path)
    _CACHE.pop(str(path), None)
    return EncoderSummary(n_steps, seconds, loss, nearest_own(enc.encode(views), codes), path)


def bundle_inputs(bundles: Sequence[Bundle], layers: Sequence[str] = ENCODER_LAYERS,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``[N, F]`` float32: the bundles' feature-encoder inputs, from each bundle's activation cache when current,
    else computed (and cached, for the index's feature step too). Raises :class:`ModelError` when the backbone
    cannot run. One bundle's activations are held at a time."""
    from backend.features import FeatureError
    from backend.features.library import bundle_view_features

    out = []
    for n, b in enumerate(bundles):
        try:
            out.append(encoder_input(bundle_view_features(b)[0], layers))
        except (FeatureError, OSError, RuntimeError, ValueError) as e:
            raise ModelError(f"no pretrained activations for {b.asset.name}: {e}") from None
        if progress is not None:
            progress(n + 1, len(bundles))
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


def _train_feature_encoder(run, bundles: Sequence[Bundle], codes: np.ndarray, path: Path,  # noqa: ANN001
                           on_step: Callable[[float, float], None] | None) -> EncoderSummary:
    from backend.features import FeatureError
    from backend.features.library import bundle_view_features

    t0 = time.perf_counter()
    keep = _spread(len(bundles), FIT_MAX_ASSETS)  # the others' activations are left to the index's feature step
    every = max(1, len(keep) // 50)
    rows, fitted, skipped = [], [], []
    for n, i in enumerate(keep):
        try:  # an asset whose views cannot be read is left out of the fit, not a reason to fall back to the CNN
            rows.append(encoder_input(bundle_view_features(bundles[i])[0]))
            fitted.append(i)
        except (FeatureError, OSError, RuntimeError, ValueError) as e:
            skipped.append(f"{bundles[i].asset.name}: {e}")
            if not fitted and len(skipped) >= 3:  # the backbone itself cannot run here: stop trying
                break
        if on_step is not None and ((n + 1) % every == 0 or n + 1 == len(keep)):
            on_step(0.95 * (n + 1) / len(keep), float("nan"))  # also where a cancel lands
    if len(fitted) < 2:
        raise ModelError(f"no pretrained activations for the encoder ({len(skipped)} assets failed; first: "
                         f"{skipped[0] if skipped else 'none'})")
    if skipped:
        log.warning("feature encoder fitted without %d asset(s): %s", len(skipped), "; ".join(skipped[:3]))
    inputs, codes = np.stack(rows), codes[fitted]
    enc = fit_feature_encoder(inputs, codes, input_name(), ENCODER_LAYERS, run.shape_codes.shape[1])
    enc.model_id = run.model_id
    pred = enc.encode_features(inputs)
    sd = codes.std(0) + 1e-6
    loss = float((((pred - codes) / sd) ** 2).mean())  # standardised MSE on the training assets, as the CNN's
    oof = feature_encoder_check(inputs, codes)
    enc.save(path)
    _CACHE.pop(str(path), None)
    return EncoderSummary(0, time.perf_counter() - t0, loss, nearest_own(pred, codes), path, kind="feature",
                          nearest_own_oof=oof, skipped=len(skipped))


AnyEncoder = Encoder | FeatureEncoder
_CACHE: dict[str, tuple[float, AnyEncoder]] = {}


def load_encoder(run_dir: str | Path, model_id: str | None = None) -> AnyEncoder:
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
            enc = _from_state(state)
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: not a readable encoder ({e}); train it again") from None
        _CACHE[str(path)] = (mtime, enc)
    if model_id is not None and enc.model_id != model_id:
        raise ModelError(f"{path} was trained for model {enc.model_id}, not {model_id}; train the encoder again")
    return enc


def _from_state(state: dict) -> AnyEncoder:
    kind = state.get("kind", "views")  # format 1: the CNN only
    if kind == "feature":
        return FeatureEncoder(str(state["feature"]), tuple(state["layers"]),
                              *(state[k].numpy() for k in ("mean", "scale", "weight", "bias")),
                              int(state["shape_dim"]), str(state["model_id"]))
    if kind != "views":
        raise ValueError(f"unknown encoder kind {kind!r} (written by a newer Asset2Vec?)")
    net = ViewEncoder(**state["config"])
    net.load_state_dict(state["state"])
    return Encoder(net.eval(), state["mean"], state["std"], int(state["shape_dim"]), str(state["model_id"]))


def encode_bundles(run_dir_or_run, bundles: Sequence[Bundle | str | Path]) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Codes of bundles (objects or folders) from the run's encoder: ``(shape [N, 32], texture [N, 32])``."""
    from .run import TrainedRun

    if isinstance(run_dir_or_run, TrainedRun):
        enc = load_encoder(run_dir_or_run.run_dir, run_dir_or_run.model_id)
    else:
        enc = load_encoder(run_dir_or_run)
    items = [b if isinstance(b, Bundle) else read_bundles([b])[0] for b in bundles]
    if isinstance(enc, FeatureEncoder):
        enc.check_input()
        z = enc.encode_features(bundle_inputs(items, enc.layers)) if items else np.zeros((0, len(enc.bias)),
                                                                                         np.float32)
    else:
        z = enc.encode(views_tensor(items, enc.net.config["image_size"]))
    return z[:, :enc.shape_dim].copy(), z[:, enc.shape_dim:].copy()
