"""DPT decoder for ViT backbones, as UniMatch V2 uses it on DINOv2 (from Depth Anything).

A ViT gives one stride (its patch) at every block, so DPT builds its own pyramid from
four blocks: each is projected (1x1) to a width of D/8, D/4, D/2, D (D = embedding
width) and resized to 4x, 2x, 1x and 1/2x of the token grid; RefineNet-style fusion
blocks then merge them coarse to fine, each doubling the resolution, and a 3x3 conv +
1x1 classifier gives logits at 2x the finest map (the segmenter resizes them to the
input). Widths follow UniMatch V2: `features` 64 for ViT-S (D = 384), 128 for ViT-B
(D = 768), i.e. D / 6. No batch norm: the decoder's statistics do not depend on the
batch size, as in the release.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), two 3x3 convs with bias."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class FusionBlock(nn.Module):
    """Add the lateral map (refined) to the coarser path, refine, upsample, project."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.lateral = ResidualConvUnit(features)
        self.refine = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, path: Tensor, lateral: Tensor | None = None,
                size: tuple[int, int] | None = None) -> Tensor:
        if lateral is not None:
            path = path + self.lateral(lateral)
        path = self.refine(path)
        if size is None:
            path = F.interpolate(path, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            path = F.interpolate(path, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(path)


def default_features(embed_dim: int) -> int:
    """UniMatch V2's fusion width: 64 for ViT-S (384), 128 for ViT-B (768)."""
    return max(8, embed_dim // 6)


class DPTHead(nn.Module):
    """Four ViT block maps [B, D, h, w] -> logits [B, C, 2*4h, 2*4w]."""

    def __init__(self, embed_dim: int, num_classes: int, features: int | None = None) -> None:
        super().__init__()
        features = features or default_features(embed_dim)
        widths = [max(1, embed_dim // 8), max(1, embed_dim // 4), max(1, embed_dim // 2), embed_dim]
        self.projects = nn.ModuleList(nn.Conv2d(embed_dim, w, 1) for w in widths)
        self.resize = nn.ModuleList([
            nn.ConvTranspose2d(widths[0], widths[0], 4, stride=4),
            nn.ConvTranspose2d(widths[1], widths[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(widths[3], widths[3], 3, stride=2, padding=1),
        ])
        self.layers_rn = nn.ModuleList(nn.Conv2d(w, features, 3, padding=1, bias=False) for w in widths)
        self.fusion = nn.ModuleList(FusionBlock(features) for _ in widths)
        self.output = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(True),
                                    nn.Conv2d(features, num_classes, 1))

    def forward(self, feats: list[Tensor]) -> Tensor:
        maps = [rn(resize(project(f))) for f, project, resize, rn
                in zip(feats, self.projects, self.resize, self.layers_rn)]
        l1, l2, l3, l4 = maps
        path = self.fusion[3](l4, size=tuple(l3.shape[-2:]))
        path = self.fusion[2](path, l3, size=tuple(l2.shape[-2:]))
        path = self.fusion[1](path, l2, size=tuple(l1.shape[-2:]))
        path = self.fusion[0](path, l1)
        return self.output(path)


__all__ = ["DPTHead", "FusionBlock", "ResidualConvUnit", "default_features"]
