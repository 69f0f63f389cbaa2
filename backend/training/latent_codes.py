"""The per-asset code table of an auto-decoder run: free codes, or codes predicted from the pretrained feature.

``TrainConfig.code_head`` chooses how the 64-number codes are made while the decoder trains:

* ``"none"`` (default): one free learned vector per asset, as in DeepSDF.
* ``"shape"``: the shape half is ``head(feature) + offset``, the texture half stays free. ``feature`` is the
  asset's pretrained multi-view appearance feature (:mod:`backend.features`, standardised); ``head`` is a
  2-layer MLP trained with the decoder; ``offset`` a free per-asset correction held small by an L2 penalty
  (``offset_reg``), so reconstruction can refine an asset without washing out what the head predicts
  (a free offset brought the codes straight back to free-code quality in the issue's probe).
* ``"both"``: both halves from the head (same rule).

Auxiliary losses give free codes meaning without a head (:class:`FeatureDistillation`, summed by
:class:`Distillations`; the presets switch them on, ``backend.model.config.MEANINGFUL_CODES``): the silhouettes'
pretrained feature into the shape half, the views' colour statistics into the texture half.

Whatever the source, :meth:`CodeTable.forward` gives the full table ``[A, 64]`` and that table is what the
checkpoint and ``codes.npz`` store as the run's codes, so inversion, the encoder, the catalogue and every
benchmark read a run the same way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from backend.model.errors import ModelError

HEADS = ("none", "shape", "both")
DISTILL_TARGETS = ("whitened", "weighted")


class CodeTable(nn.Module):
    """Codes of ``num_assets`` assets: ``forward() -> [A, shape_dim + texture_dim]``."""

    def __init__(self, num_assets: int, shape_dim: int, texture_dim: int, init_std: float, head: str = "none",
                 features: np.ndarray | None = None, width: int = 256) -> None:
        super().__init__()
        if head not in HEADS:
            raise ModelError(f"unknown code head {head!r}; choose one of: {', '.join(HEADS)}")
        self.head_kind, self.shape_dim = head, shape_dim
        self.free = nn.Parameter(torch.randn(num_assets, shape_dim + texture_dim) * init_std)
        self.head: nn.Sequential | None = None
        if head != "none":
            if features is None or len(features) != num_assets:
                raise ModelError(f"code head {head!r} needs one feature vector per asset")
            f = torch.as_tensor(np.asarray(features, np.float32))
            mean, std = f.mean(0), f.std(0, unbiased=False).clamp_min(1e-6)  # one asset: std 0, not NaN
            self.register_buffer("features", (f - mean) / std)  # [A, F] standardised over the run's assets
            out = shape_dim if head == "shape" else shape_dim + texture_dim
            self.head = nn.Sequential(nn.Linear(f.shape[1], width), nn.ReLU(), nn.Linear(width, out))
            last = self.head[-1]
            nn.init.normal_(last.weight, std=init_std)  # start as small as free codes do
            nn.init.zeros_(last.bias)
            with torch.no_grad():
                self.free.mul_(0.0)  # the free table is now the offsets: they start at zero

    def forward(self) -> torch.Tensor:
        """The code table ``[A, D]``."""
        if self.head is None:
            return self.free
        pred = self.head(self.features)
        if self.head_kind == "shape":
            return torch.cat([pred + self.free[:, :self.shape_dim], self.free[:, self.shape_dim:]], dim=1)
        return pred + self.free

    def offset_penalty(self) -> torch.Tensor:
        """Mean squared norm of the offsets on the head-driven halves (0 for free codes)."""
        if self.head is None:
            return self.free.new_zeros(())
        off = self.free[:, :self.shape_dim] if self.head_kind == "shape" else self.free
        return (off**2).sum(-1).mean()


class FeatureDistillation(nn.Module):
    """An auxiliary loss that makes (a half of) the codes carry the pretrained feature's main directions.

    The target of each asset is its feature projected on the library's top ``dims`` principal directions,
    ``"whitened"`` (unit variance per direction) or ``"weighted"`` (each direction keeps its share of the
    feature's variance, scaled so the directions average unit variance: the main directions weigh most); a linear
    map from the chosen code half must predict it. The codes stay free (reconstruction still shapes them), but
    every linear read-out of the feature's main directions is now also a linear read-out of the code: what the
    feature knows (chair vs table) the code must say too.
    """

    def __init__(self, features: np.ndarray, dims: int, code_slice: slice, code_width: int,
                 target: str = "whitened") -> None:
        super().__init__()
        if target not in DISTILL_TARGETS:
            raise ModelError(f"unknown distillation target {target!r}; choose one of: {', '.join(DISTILL_TARGETS)}")
        f = np.asarray(features, np.float32)
        f = (f - f.mean(0)) / (f.std(0) + 1e-6)
        u, s = _top_directions(f, max(1, min(dims, len(f) - 1, f.shape[1])))  # f ~ U S V^T: U sqrt(A) is whitened
        scale = s / max(float(np.sqrt((s**2).mean())), 1e-12) if target == "weighted" else 1.0
        target = u * np.sqrt(len(f)) * scale
        self.register_buffer("target", torch.as_tensor(np.asarray(target), dtype=torch.float32))  # [A, k]
        self.code_slice = code_slice
        self.read = nn.Linear(code_width, u.shape[1])

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the read-out of ``codes [A, D]`` against the targets ``[A, k]``."""
        return ((self.read(codes[:, self.code_slice]) - self.target) ** 2).mean()


def _top_directions(f: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` left singular vectors ``[A, k']`` and singular values ``[k']`` of the centred ``f [A, F]``, without
    the directions the data does not span (a constant entry, two equal ones): ``k' <= k``, each ``s > 1e-6 s[0]``,
    so no target is scaled-up rounding noise.

    A library with more assets than feature numbers goes through the ``F x F`` Gram matrix, accumulated in float64
    over blocks of rows (no full SVD and no float64 copy of ``A x F``)."""
    if len(f) <= f.shape[1]:
        u, s, _ = np.linalg.svd(f.astype(np.float64), full_matrices=False)
        u, s = u[:, :k], s[:k]
    else:
        gram = np.zeros((f.shape[1], f.shape[1]))
        for lo in range(0, len(f), _GRAM_ROWS):
            block = f[lo:lo + _GRAM_ROWS].astype(np.float64)
            gram += block.T @ block
        w, v = np.linalg.eigh(gram)
        order = np.argsort(w)[::-1][:k]
        s = np.sqrt(np.clip(w[order], 0.0, None))
        u = (f @ v[:, order].astype(f.dtype)) / np.maximum(s, 1e-12).astype(f.dtype)
    keep = s > 1e-6 * max(float(s[0]), 1e-12)
    keep[0] = True  # at least one direction, even for a library whose feature is constant
    return u[:, keep], s[keep]


_GRAM_ROWS = 8192  # rows per block of the Gram matrix (8192 x 1280 float64: 84 MB)


class Distillations(nn.Module):
    """The weighted sum of a run's distillation losses, one module (one state dict, one parameter list).

    ``parts`` maps a name (``"shape"``: the pretrained feature, ``"texture"``: the colour statistics) to its
    weight and loss."""

    def __init__(self, parts: dict[str, tuple[float, FeatureDistillation]]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict({name: loss for name, (_, loss) in parts.items()})
        self.weights = {name: float(w) for name, (w, _) in parts.items()}

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """``sum(weight * loss(codes [A, D]))`` over the parts."""
        return sum((self.weights[n] * part(codes) for n, part in self.parts.items()), codes.new_zeros(()))

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):  # type: ignore[override]
        # a run distilled before the parts existed saved its one (shape) loss under bare names: read them as it
        if state and not any(k.startswith("parts.") for k in state):
            state = {f"parts.shape.{k}": v for k, v in state.items()}
        return super().load_state_dict(state, strict, assign)
