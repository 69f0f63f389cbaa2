"""The decoder: a latent-conditioned radiance field with a shape/texture split of the code.

* The **shape** half of the code (32) joins the encoded position at the trunk input (and at the
  skip layer); the trunk drives the density and the features of the colour branch.
* The **texture** half (32) enters only the colour branch, next to the trunk feature and the
  encoded view direction.

So density (and hence alpha and silhouette) is a function of position and shape code only: the
structural guarantee the split relies on. :meth:`LatentField.density` does not even take a
texture code.

Concatenating a per-ray code with per-sample inputs and applying a linear layer equals adding a
per-ray projection of the code to a per-sample projection of the inputs; computing the code's
projection once per ray (not once per sample) saves a big share of the first layer's work.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig
from .encoding import Encoding


class LatentField(nn.Module):
    """``(points, directions, shape code, texture code) -> (density, colour)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_enc = Encoding(cfg.pos_harmonics)
        self.dir_enc = Encoding(cfg.dir_harmonics)
        p, h = self.pos_enc.output_dim, cfg.hidden
        self.trunk = nn.ModuleList()
        self.code_in = nn.ModuleDict()  # layer index -> projection of the shape code (input and skip layers)
        for i in range(cfg.layers):
            if i == 0:
                self.trunk.append(nn.Linear(p, h))
                self.code_in["0"] = nn.Linear(cfg.shape_dim, h, bias=False)
            elif cfg.skip_at is not None and i == cfg.skip_at:
                self.trunk.append(nn.Linear(h + p, h))
                self.code_in[str(i)] = nn.Linear(cfg.shape_dim, h, bias=False)
            else:
                self.trunk.append(nn.Linear(h, h))
        self.density_head = nn.Linear(h, 1)
        self.color_feat = nn.Linear(h, cfg.color_hidden)
        self.color_tex = nn.Linear(cfg.texture_dim, cfg.color_hidden, bias=False)
        self.color_dir = nn.Linear(self.dir_enc.output_dim, cfg.color_hidden, bias=False)
        self.color_out = nn.Linear(cfg.color_hidden, 3)

    def features(self, points: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Trunk features ``[R, S, hidden]`` for points ``[R, S, 3]`` and shape codes ``[R, 32]``."""
        x = self.pos_enc(points)
        h = x
        for i, layer in enumerate(self.trunk):
            if i > 0 and str(i) in self.code_in:  # skip connection: re-inject position and shape code
                h = torch.cat([h, x], dim=-1)
            h = layer(h)
            if str(i) in self.code_in:
                h = h + self.code_in[str(i)](shape)[:, None, :]
            h = F.relu(h)
        return h

    @staticmethod
    def _sigma(raw: torch.Tensor) -> torch.Tensor:
        # softplus keeps the density positive with a gradient everywhere (ReLU can die on empty space)
        return F.softplus(raw.squeeze(-1).float() - 1.0)

    def density(self, points: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Density ``[R, S]`` (>= 0) at points ``[R, S, 3]`` for shape codes ``[R, 32]``."""
        return self._sigma(self.density_head(self.features(points, shape)))

    def forward(
        self, points: torch.Tensor, directions: torch.Tensor, shape: torch.Tensor, texture: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density ``[R, S]`` and colour ``[R, S, 3]`` in [0, 1].

        ``points [R, S, 3]``, unit ``directions [R, 3]``, ``shape [R, 32]``, ``texture [R, 32]``.
        """
        h = self.features(points, shape)
        sigma = self._sigma(self.density_head(h))
        per_ray = self.color_tex(texture)
        if self.cfg.view_dependent:
            per_ray = per_ray + self.color_dir(self.dir_enc(directions))
        c = self.color_feat(h) + per_ray[:, None, :]
        rgb = torch.sigmoid(self.color_out(F.relu(c)).float())
        return sigma, rgb
