"""Region discriminator: scores an R x R grid of image regions as real / predicted.

Input is a segmentation's softmax map (or the one-hot ground truth), optionally with
the image in [0, 1]. Four 4x4 stride-2 convs (padding 1) bring a crop S down to a
feature map of side f; a last conv with kernel = stride = k = f // R then gives one
logit per region. The release uses a 512 crop: f = 32, k = 10, a 3 x 3 grid (the two
remainder feature cells at the bottom/right are not scored, as there).

Exactly R x R, always: when floor(f / k) != R (e.g. crop 64, R = 3: f = 4, k = 1 would
give 4 x 4; or an input of another size than the crop) the feature map is first
adaptive-average-pooled to (R*k) x (R*k), so each region cell sees its share of the
whole map. Pooling the features, not the logits, keeps one linear scoring conv for
all sizes. The output is logits (no sigmoid) so BCE-with-logits stays AMP-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from rrn_core.config_sections import StrictModel

_NUM_DOWN = 4


class DiscriminatorConfig(StrictModel):
    """`method.discriminator` of RRN: the critic network and its own optimiser (Adam).

    Defined beside the network it builds; RRN's config (rrn_core/methods/rrn.py)
    holds it, so only a method with critics accepts these fields.
    """

    regions_per_side: int = Field(3, ge=1, le=64)
    with_image: bool = False
    base_channels: int = Field(64, ge=4)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    lr: float = Field(1e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.99)
    # What the critic learns (see docs/method.md, "Critics"):
    # "adversarial" (the release): real = one-hot ground truth, fake = the branch's
    #   softmax map. A critic can win this by spotting one-hot inputs, and then scores
    #   every prediction near 0 whatever its quality.
    # "accuracy" (ours): on labeled images, predict for each region whether the
    #   branch's own argmax is right on at least `good_accuracy` of its pixels (the
    #   target is known there); its score is then a learned region-level estimate of
    #   pseudo-label quality on unlabeled images.
    objective: Literal["adversarial", "accuracy"] = "accuracy"
    good_accuracy: float = Field(0.9, gt=0.0, le=1.0)


def conv_output_size(size: int, kernel: int = 4, stride: int = 2, padding: int = 1) -> int:
    """Output side of a conv, exactly as PyTorch computes it (dilation 1)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class RegionGrid:
    """How a crop maps to regions: the 4-conv feature side, the region kernel, R."""

    feature_size: int
    kernel: int
    regions_per_side: int

    @property
    def exact(self) -> bool:
        """True when the region conv alone yields R x R (no feature pooling needed)."""
        return self.feature_size // self.kernel == self.regions_per_side


def region_grid(crop_size: int, regions_per_side: int) -> RegionGrid:
    """Derive the region conv for a crop: 512/R=3 -> (32, 10, 3); 800/R=5 -> (50, 10, 5)."""
    if crop_size < 1 or regions_per_side < 1:
        raise ValueError(f"crop_size and regions_per_side must be positive, got "
                         f"{crop_size}, {regions_per_side}")
    size = crop_size
    for _ in range(_NUM_DOWN):
        size = conv_output_size(size)
    if size < 1:
        raise ValueError(f"crop_size {crop_size} is too small for the discriminator's "
                         f"{_NUM_DOWN} stride-2 convs")
    return RegionGrid(feature_size=size, kernel=max(1, size // regions_per_side),
                      regions_per_side=regions_per_side)


class RegionDiscriminator(nn.Module):
    """D(prob[, image]) -> (region logits [B,1,R,R], last conv-block features [B,F,h,w])."""

    def __init__(self, in_channels: int, grid: RegionGrid, base_channels: int = 64,
                 dropout: float = 0.5, with_image: bool = False) -> None:
        super().__init__()
        self.grid = grid
        self.with_image = with_image
        self.in_channels = in_channels
        widths = [base_channels * 2**i for i in range(_NUM_DOWN)]  # 64-128-256-512
        blocks = []
        prev = in_channels
        for width in widths:
            blocks.append(nn.Sequential(nn.Conv2d(prev, width, 4, stride=2, padding=1),
                                        nn.LeakyReLU(0.2, inplace=True)))
            prev = width
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout2d(dropout)
        self.region = nn.Conv2d(prev, 1, grid.kernel, stride=grid.kernel)
        self.feature_channels = prev

    def forward(self, prob: Tensor, image01: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Score regions; `image01` is required when built with_image and ignored otherwise.

        The returned features are the last block's activations before its own dropout.
        In train mode the Dropout2d between the earlier blocks still acts, so two calls
        on the same input give different features (feature matching compares batch
        means, where that noise averages out); in eval mode they are deterministic.
        """
        x = prob
        if self.with_image:
            if image01 is None:
                raise ValueError("this discriminator was built with_image=true: pass image01")
            if image01.shape[-2:] != prob.shape[-2:]:
                raise ValueError(f"image01 {tuple(image01.shape)} and prob {tuple(prob.shape)} "
                                 "differ in spatial size")
            x = torch.cat([prob, image01.to(prob.dtype)], dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"discriminator expects {self.in_channels} input channels, got {x.shape[1]}")
        features = x
        for i, block in enumerate(self.blocks):
            features = block(features if i == 0 else self.dropout(features))
        h = self.dropout(features)
        r, k = self.grid.regions_per_side, self.grid.kernel
        if h.shape[-2] // k != r or h.shape[-1] // k != r:
            h = F.adaptive_avg_pool2d(h, (r * k, r * k))
        return self.region(h), features

    def scores(self, prob: Tensor, image01: Tensor | None = None) -> Tensor:
        """Region probabilities [B,1,R,R] (sigmoid of the logits), for selection and logging."""
        return torch.sigmoid(self.forward(prob, image01)[0].float())


def build_discriminator(cfg: DiscriminatorConfig, num_classes: int, crop_size: int) -> RegionDiscriminator:
    """Build the region discriminator for `num_classes` softmax inputs at `crop_size`."""
    grid = region_grid(crop_size, cfg.regions_per_side)
    in_channels = num_classes + (3 if cfg.with_image else 0)
    return RegionDiscriminator(in_channels, grid, base_channels=cfg.base_channels,
                               dropout=cfg.dropout, with_image=cfg.with_image)
