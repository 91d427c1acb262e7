"""Region discriminator: grid derivation and an exactly R x R output for any input size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rrn_core.models import RegionGrid, build_discriminator, conv_output_size, region_grid
from rrn_core.models.discriminator import DiscriminatorConfig


@pytest.mark.parametrize("crop, regions, feature, kernel", [
    (512, 3, 32, 10),   # the release: 3x3 grid of ~160 px regions
    (800, 5, 50, 10),   # the release at 800: 5x5
    (800, 3, 50, 16),
    (513, 3, 32, 10),
    (321, 3, 20, 6),
    (321, 7, 20, 2),
    (96, 3, 6, 2),
    (64, 3, 4, 1),
    (64, 1, 4, 4),
    (64, 8, 4, 1),      # more regions than feature cells
])
def test_region_grid(crop: int, regions: int, feature: int, kernel: int) -> None:
    assert region_grid(crop, regions) == RegionGrid(feature, kernel, regions)


def test_conv_output_size_matches_pytorch() -> None:
    conv = torch.nn.Conv2d(1, 1, 4, stride=2, padding=1)
    for size in (2, 3, 16, 65, 321, 513):
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == conv_output_size(size)


def test_tiny_crop_is_rejected() -> None:
    with pytest.raises(ValueError, match="too small"):
        region_grid(8, 3)


@pytest.mark.parametrize("crop", [64, 96, 321, 512, 513, 800])
@pytest.mark.parametrize("regions", [1, 3, 5])
@pytest.mark.parametrize("with_image", [False, True])
def test_output_is_exactly_r_by_r(crop: int, regions: int, with_image: bool) -> None:
    cfg = DiscriminatorConfig(regions_per_side=regions, with_image=with_image, base_channels=4)
    disc = build_discriminator(cfg, num_classes=3, crop_size=crop).eval()
    assert disc.in_channels == (6 if with_image else 3)
    prob = torch.softmax(torch.randn(2, 3, crop, crop), dim=1)
    image = torch.rand(2, 3, crop, crop) if with_image else None
    with torch.no_grad():
        logits, features = disc(prob, image)
    assert tuple(logits.shape) == (2, 1, regions, regions)
    side = disc.grid.feature_size
    assert tuple(features.shape) == (2, 32, side, side)


@pytest.mark.parametrize("size", [(321, 321), (97, 65), (1024, 700)])
def test_other_input_sizes_still_give_r_by_r(size: tuple[int, int]) -> None:
    disc = build_discriminator(DiscriminatorConfig(regions_per_side=3, base_channels=4), 2, 512).eval()
    with torch.no_grad():
        logits, _ = disc(torch.rand(1, 2, *size))
    assert tuple(logits.shape) == (1, 1, 3, 3)


def test_release_grid_scores_aligned_blocks_without_pooling() -> None:
    # 512 crop, R=3: region (i, j) is the 10x10 block of feature cells at (10i, 10j).
    disc = build_discriminator(DiscriminatorConfig(regions_per_side=3, base_channels=4), 2, 512).eval()
    with torch.no_grad():
        logits, features = disc(torch.rand(1, 2, 512, 512))
        block = features[:, :, 10:20, 20:30]
        expected = (block * disc.region.weight[0]).sum() + disc.region.bias[0]
    assert torch.allclose(logits[0, 0, 1, 2], expected, atol=1e-5)


def test_uneven_grid_pools_features_to_r_times_kernel() -> None:
    # 64 crop, R=3: a 4x4 feature map, kernel 1 -> features averaged to 3x3 first.
    disc = build_discriminator(DiscriminatorConfig(regions_per_side=3, base_channels=4), 2, 64).eval()
    with torch.no_grad():
        logits, features = disc(torch.rand(1, 2, 64, 64))
        pooled = F.adaptive_avg_pool2d(features, 3)
        expected = F.conv2d(pooled, disc.region.weight, disc.region.bias)
    assert torch.allclose(logits, expected, atol=1e-6)


def test_returns_logits_and_scores_are_their_sigmoid() -> None:
    disc = build_discriminator(DiscriminatorConfig(regions_per_side=2, base_channels=4), 2, 64).eval()
    prob = torch.rand(3, 2, 64, 64)
    with torch.no_grad():
        logits, _ = disc(prob)
        scores = disc.scores(prob)
    assert torch.allclose(scores, 1 / (1 + torch.exp(-logits)))


def test_release_widths_and_dropout() -> None:
    disc = build_discriminator(DiscriminatorConfig(dropout=0.3), num_classes=21, crop_size=512)
    widths = [block[0].out_channels for block in disc.blocks]
    assert widths == [64, 128, 256, 512]
    assert disc.blocks[0][0].in_channels == 21
    assert all(b[0].kernel_size == (4, 4) and b[0].stride == (2, 2) for b in disc.blocks)
    assert disc.blocks[0][1].negative_slope == 0.2
    assert disc.dropout.p == 0.3
    assert disc.region.kernel_size == (10, 10) and disc.region.stride == (10, 10)


def test_with_image_requires_the_image() -> None:
    disc = build_discriminator(DiscriminatorConfig(with_image=True, base_channels=4), 2, 64)
    with pytest.raises(ValueError, match="image01"):
        disc(torch.rand(1, 2, 64, 64))
