"""Build the encoder a segmenter decodes: a timm net that returns feature maps.

Convolutional nets come from timm's `features_only` (one map per stage, dilated to
the output stride instead of striding). ViTs are built whole and read through
timm's `forward_intermediates`, so that the final LayerNorm applies to every block
read (as DINOv2's `get_intermediate_layers`, which UniMatch V2 calls, does) and the
parameter names stay timm's own. Which names are accepted and why lives in
rrn_core/models/backbones.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import Tensor, nn

from rrn_core.models.backbones import is_resnet_family, is_vit, patch_size


@dataclass(frozen=True)
class EncoderInfo:
    """What a decoder needs to know about the maps an encoder returns."""

    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    patch_size: int          # inputs are padded to a multiple of this (1: none needed)
    embed_dim: int = 0       # ViTs only


class ViTFeatures(nn.Module):
    """A timm ViT returning normed patch-token maps [B, D, H/p, W/p] of chosen blocks."""

    def __init__(self, vit: nn.Module, blocks: tuple[int, ...]) -> None:
        super().__init__()
        vit.prune_intermediate_layers(list(blocks), prune_norm=False, prune_head=True)
        self.model = vit
        self.blocks = blocks

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model.forward_intermediates(x, indices=list(self.blocks), norm=True,
                                                output_fmt="NCHW", intermediates_only=True)


def dpt_blocks(depth: int) -> tuple[int, ...]:
    """The four blocks DPT reads: the last of each quarter ([2, 5, 8, 11] for 12 blocks,
    UniMatch V2's choice for ViT-S/B)."""
    return tuple(depth * q // 4 - 1 for q in (1, 2, 3, 4))


def resnet_width_kwargs(name: str, base_width: int | None) -> dict[str, object]:
    """timm ResNet arguments for a narrow net: stage widths w, 2w, 4w, 8w and, for the
    deep-stem variants (c, d, s), a stem of w/2-w/2-w. timm ignores `stem_width` for
    its 7x7 stem, which keeps 64 channels whatever the width."""
    if base_width is None or not is_resnet_family(name):
        return {}
    return {"channels": tuple(base_width * 2**i for i in range(4)),
            "stem_width": max(1, base_width // 2)}


def build_encoder(name: str, *, output_stride: int = 16,
                  base_width: int | None = None) -> tuple[nn.Module, EncoderInfo]:
    """A randomly initialised encoder and its output description (weights: weights.py)."""
    if is_vit(name):
        vit = timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)
        blocks = dpt_blocks(len(vit.blocks))
        dim = int(vit.embed_dim)
        p = patch_size(name)
        return ViTFeatures(vit, blocks), EncoderInfo((dim,) * 4, (p,) * 4, p, dim)
    net = timm.create_model(name, pretrained=False, features_only=True, output_stride=output_stride,
                            **resnet_width_kwargs(name, base_width))
    info = net.feature_info
    return net, EncoderInfo(tuple(info.channels()), tuple(info.reduction()), 1)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (bench rows, tests)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["EncoderInfo", "ViTFeatures", "build_encoder", "count_parameters", "dpt_blocks",
           "resnet_width_kwargs"]
