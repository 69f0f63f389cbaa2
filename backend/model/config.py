"""Model and training configuration, and the two presets (``cpu-small`` and ``full``).

The shape/texture split of the 64-number code is fixed by the design: 32 shape + 32 texture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ModelError

SHAPE_DIM = 32
TEXTURE_DIM = 32
CODE_DIM = SHAPE_DIM + TEXTURE_DIM


@dataclass
class ModelConfig:
    """Architecture of the decoder (see :class:`backend.model.field.LatentField`)."""

    hidden: int = 128  # trunk width
    layers: int = 4  # trunk depth (fully connected layers)
    skip_at: int | None = None  # trunk layer that gets the input re-injected (None: no skip)
    color_hidden: int = 64  # width of the colour branch
    pos_harmonics: int = 6  # frequencies of the position encoding (2**0 .. 2**(n-1))
    dir_harmonics: int = 2  # frequencies of the view-direction encoding (colour only)
    shape_dim: int = SHAPE_DIM
    texture_dim: int = TEXTURE_DIM
    view_dependent: bool = True  # False: colour ignores the view direction (ablation)


@dataclass
class TrainConfig:
    """How a library is trained, inverted and rendered."""

    image_size: int = 32  # views are resized to this on load
    samples_per_ray: int = 16
    sampling: str = "hull"  # "hull": samples between first/last occupied hull cell; "uniform": in the unit sphere
    hull_resolution: int = 32  # visual-hull / occupancy grid cells per axis over [-1, 1]^3
    hull_dilation: int = 1  # cells added around the carved hull (thin parts, discretisation)
    hull_alpha: float = 0.05  # a pixel counts as silhouette above this alpha (after 1-px mask dilation)
    rays_per_batch: int = 1024
    steps: int = 1500
    lr: float = 4e-3  # decoder learning rate (Adam), decayed exponentially to lr * lr_final
    code_lr: float = 2e-2  # learning rate of the per-asset codes
    lr_final: float = 0.1
    code_reg: float = 1e-3  # weight of the L2 penalty on the codes of the batch
    code_init_std: float = 0.01
    alpha_weight: float = 0.5  # weight of the alpha (silhouette) loss next to the RGB loss
    empty_points: int = 1024  # points outside the hull per batch whose density is pushed to 0
    empty_weight: float = 0.1
    checkpoint_every: int = 200
    # Steps that grow with the library (see steps_for_library): ``steps`` is the count for a library of up to
    # ``reference_assets`` assets (the presets were tuned on ~70- to ~400-asset libraries); a larger library gets
    # proportionally more, so each asset gets as many updates as at the reference size. An explicit step count wins.
    reference_assets: int = 400
    # Memory bounded: at most this many assets' views and rays are in memory at once. A larger library trains in
    # chunks of resident_assets // 2 (the chunk training and the next one being prepared in a thread), each visited
    # for about chunk_steps steps, round after round (backend.training.data.ChunkSchedule). 512 keeps every library
    # the presets were tuned and measured on (<= ~400 assets) training exactly as one whole batch pool, and holds
    # ~0.25 MB an asset at cpu-small (32 px: views 74 KB, ~7k rays x 18 B, 32^3 grid), ~3.5 MB at full (128 px).
    resident_assets: int = 512
    # Short visits, many rounds (later rounds read the run's per-asset cache, ~1 ms an asset): sample library
    # (73 assets, 1500 steps, resident_assets 32 = 5 chunks, one seed) held-out 26.32 dB whole vs 26.24 / 26.35 /
    # 25.50 dB chunked with visits of 25 / 50 / 100 steps.
    chunk_steps: int = 50
    mixed_precision: bool = False  # bf16 autocast on CUDA
    inversion_steps: int = 150
    inversion_lr: float = 3e-2
    inversion_rays: int = 512  # rays per step per inverted asset
    seed: int = 0
    # Codes from the pretrained multi-view feature (backend.training.latent_codes): "none" (free codes),
    # "shape" (shape half = head(feature) + offset) or "both"; offsets are held small by offset_reg.
    code_head: str = "none"
    offset_reg: float = 0.1
    head_width: int = 256
    # Distil the pretrained feature's top principal directions into a code half ("shape", "texture" or "both"):
    # a linear read-out of the code must predict them (weight 0: off; the presets set MEANINGFUL_CODES below).
    # See latent_codes.FeatureDistillation.
    distill_weight: float = 0.0
    distill_dims: int = 32
    distill_half: str = "shape"
    distill_views: str = "silhouette"  # the feature distilled: of the "silhouette"s (geometry only) or "colour" views
    distill_target: str = "whitened"  # or "weighted": the main directions weigh by their variance
    # Distil the views' colour statistics (backend.features.colour_stats: colours, their spread, highlights, how busy
    # the surface is; no shape) into the texture half, same read-out rule (weight 0: off).
    texture_distill_weight: float = 0.0


@dataclass
class Preset:
    name: str
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_json(self) -> dict[str, Any]:
        return {"preset": self.name, "model": asdict(self.model), "train": asdict(self.train)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preset:
        try:
            return cls(
                name=str(data["preset"]),
                model=_build(ModelConfig, data["model"]),
                train=_build(TrainConfig, data["train"]),
            )
        except (KeyError, TypeError) as e:
            raise ModelError(f"run configuration is incomplete or malformed ({e})") from None


def _build(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


#: Codes that carry meaning (issue 15, docs/quality_codes.md "Distillation by default"): the silhouettes' pretrained
#: feature distilled into the shape half and the views' colour statistics into the texture half, both with their
#: main directions weighted by variance (the texture part reuses distill_dims and distill_target). Scopia (394
#: artist-made models scored, 2 seeds, codes + size): visual p@10 0.647 -> 0.684, tag mAP 0.327 -> 0.370, the instant encoder's out-of-fold codes nearest their own 0.32 -> 0.62, held-out
#: PSNR within 0.1 dB. The presets switch it on; TrainConfig's own defaults stay off, so a run saved before keeps
#: what it was trained with.
MEANINGFUL_CODES: dict[str, Any] = {"distill_weight": 0.1, "distill_target": "weighted", "texture_distill_weight": 0.1}

PRESETS: dict[str, Preset] = {
    # Tuned for quality per minute on a 2-core CPU: a small MLP, 32 px, 16 samples inside the visual hull.
    # 3-minute runs on 67 sample-library assets (1 thread): held-out 25.5 dB with 2048 rays per batch,
    # 26.0 dB with 1024 and 26.1 dB with 512 (more, noisier steps win at this budget); 1024 keeps some margin.
    # 1500 steps: longer runs reconstruct better but their codes are worse. Sweet Home 3D, 3 seeds each
    # (docs/quality_gpu.md): tag mAP 0.475 at 1500 steps, 0.434 at 3000, 0.381 at 9000; category accuracy
    # 0.654 / 0.610 / 0.614. Sample library: colour/material from the texture half 0.882 at 1000 steps, 0.916
    # at 1500 (CPU, 2 seeds), 0.907 at 3000.
    "cpu-small": Preset(
        name="cpu-small",
        model=ModelConfig(hidden=128, layers=4, skip_at=None, color_hidden=64, pos_harmonics=6, dir_harmonics=2),
        train=TrainConfig(image_size=32, samples_per_ray=16, rays_per_batch=1024, steps=1500, **MEANINGFUL_CODES),
    ),
    # The design's decoder: 8 x 256 with the input re-injected at layer 4, 128 px, mixed precision on CUDA.
    "full": Preset(
        name="full",
        model=ModelConfig(hidden=256, layers=8, skip_at=4, color_hidden=128, pos_harmonics=10, dir_harmonics=4),
        train=TrainConfig(
            image_size=128,
            samples_per_ray=64,
            hull_resolution=64,
            rays_per_batch=8192,
            steps=50000,
            lr=1e-3,
            code_lr=1e-2,
            checkpoint_every=1000,
            mixed_precision=True,
            inversion_steps=400,
            inversion_rays=4096,
            **MEANINGFUL_CODES,
        ),
    ),
}


def steps_for_library(train: TrainConfig, n_assets: int) -> int:
    """Steps of a run over ``n_assets``: ``train.steps`` up to ``train.reference_assets`` assets, above it
    ``ceil(steps * n_assets / reference_assets)`` (the same number of updates per asset as at the reference size)."""
    ref = max(1, train.reference_assets)
    if n_assets <= ref:
        return train.steps
    return -(-train.steps * n_assets // ref)


STEPS_RULE = "steps = preset steps up to reference_assets assets, else ceil(preset steps * assets / reference_assets)"


def get_preset(name: str) -> Preset:
    """A fresh copy of preset ``name`` (so callers may tweak it)."""
    if name not in PRESETS:
        raise ModelError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return Preset.from_json(PRESETS[name].to_json())
