"""What `model.backbone` may name, and what each kind of backbone needs: timm's model zoo.

A backbone is any timm model name (`timm.list_models()`): convolutional nets are
built with `features_only` at output stride 8 or 16 and feed DeepLabV3+; plain
Vision Transformers (`vit_*`, DINOv2's `vit_small_patch14_dinov2` and
`vit_base_patch14_dinov2` among them) feed the DPT decoder UniMatch V2 uses.

The paper's ResNet needs no code of ours. The RRN/CPS release starts from ResNet-101
"v1c": torchvision's v1.5 bottlenecks (stride on the 3x3) behind a deep stem of three
3x3 convs (32-32-64), with plain strided 1x1 shortcuts. timm builds exactly that as
`resnet101c` (and `resnet50c`), with the same parameter names as the release's
checkpoint (`conv1.0/.1/.3/.4/.6`, `bn1`, `layer1.0.conv1`, ...), so the release's
`resnet101_v1c.pth` loads by path and timm's `resnet101c.gluon_in1k` weights by name.
`resnet101d`/`resnet50d` (ResNet-D) add average-pool shortcuts: a different, stronger
net. The hand-written ResNet this module replaces added one knob timm lacks by
name, a width multiplier for CPU demos; timm's ResNet takes the stage widths as
arguments, so `model.base_width` maps onto those (ResNet family only).

This module only names and checks; it builds nothing (rrn_core/models/encoders.py does).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache

import timm

#: timm module of the nets whose stage widths `model.base_width` can scale.
RESNET_MODULE = "timm.models.resnet"
#: timm module of the plain ViTs (DINOv2 included) the DPT decoder reads.
VIT_MODULE = "timm.models.vision_transformer"
#: `model.pretrained` values that are not a file: no weights, or timm's default weights.
NO_WEIGHTS = ("none",)
DEFAULT_WEIGHTS = "imagenet"


@lru_cache(maxsize=None)
def _module_of(name: str) -> str:
    return timm.models.model_entrypoint(name).__module__


def is_vit(name: str) -> bool:
    """A plain Vision Transformer: patch tokens at one stride, decoded by DPT."""
    return _module_of(name) == VIT_MODULE


def is_resnet_family(name: str) -> bool:
    """A timm ResNet (resnet18..152 and the c/d/s variants): `base_width` applies."""
    return _module_of(name) == RESNET_MODULE


def patch_size(name: str) -> int:
    """A ViT's patch side (14 for DINOv2); 1 for convolutional nets (any size works)."""
    if not is_vit(name):
        return 1
    match = re.search(r"patch(\d+)", name)
    return int(match.group(1)) if match else 16


def weight_tags(name: str) -> list[str]:
    """The weight tags timm knows for `name` (`resnet50d` -> ['ra2_in1k', 'ra4_e3600_r224_in1k', ...])."""
    return [full.split(".", 1)[1] for full in timm.list_pretrained(f"{name}.*")]


def backbone_problem(name: str, base_width: int | None, output_stride: int) -> str | None:
    """Why `name` cannot be a backbone with these settings (None: it can)."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" (close: {', '.join(close)})" if close else ""
        return (f"unknown backbone {name!r}{hint}; any timm model name works, e.g. resnet50d, "
                "resnet101c (the paper's deep-stem ResNet-101), convnext_tiny, efficientnet_b0, "
                "vit_small_patch14_dinov2")
    if base_width is not None and not is_resnet_family(name):
        return (f"base_width applies to timm's ResNet family only (resnet18, resnet50d, ...), "
                f"not {name!r}: leave it unset")
    if is_vit(name) and output_stride != 16:
        return (f"{name} is a Vision Transformer: its features have the stride of its patch "
                f"({patch_size(name)}), so output_stride does not apply: leave it at 16")
    return None


def pretrained_tag_problem(name: str, pretrained: str) -> str | None:
    """Why `pretrained` (a name, not a file) does not name weights of `name`."""
    tags = weight_tags(name)
    if pretrained == DEFAULT_WEIGHTS:
        return None if tags else f"timm has no pretrained weights for {name!r}"
    if pretrained in tags:
        return None
    listed = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "") if tags else "none"
    return (f"{pretrained!r} is neither a file nor a weight tag of {name} (its tags: {listed}); "
            f"use {DEFAULT_WEIGHTS!r} for timm's default weights, a tag, a file path "
            "(./weights.pth) or 'none'")


__all__ = ["DEFAULT_WEIGHTS", "NO_WEIGHTS", "backbone_problem", "is_resnet_family", "is_vit",
           "patch_size", "pretrained_tag_problem", "weight_tags"]
