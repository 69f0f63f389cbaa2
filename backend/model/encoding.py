"""Positional (harmonic) encoding of positions and view directions, via PyTorch3D's ``HarmonicEmbedding``."""

from __future__ import annotations

import torch
from pytorch3d.renderer import HarmonicEmbedding


class Encoding(torch.nn.Module):
    """``x -> [x, sin(2^k x), cos(2^k x)]`` for ``k = 0..n-1`` (per coordinate).

    Input ``[..., 3]``, output ``[..., 3 * (2 n + 1)]``. Positions live in the unit sphere, so the
    lowest frequency (2^0) already varies smoothly over the whole asset.
    """

    def __init__(self, n_harmonics: int, input_dim: int = 3) -> None:
        super().__init__()
        self.embed = HarmonicEmbedding(n_harmonic_functions=n_harmonics, omega_0=1.0, logspace=True, append_input=True)
        self.output_dim = int(self.embed.get_output_dim(input_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)
