"""timm encoders: names, the paper's ResNet layout, narrow widths, output strides, DINOv2 blocks."""

from __future__ import annotations

import pytest
import torch

from rrn_core.models import build_encoder, count_parameters
from rrn_core.models.backbones import backbone_problem, is_vit, patch_size, weight_tags
from rrn_core.models.encoders import dpt_blocks


def test_the_papers_resnet101_is_timms_resnet101c_with_the_release_layout() -> None:
    net, info = build_encoder("resnet101c")
    keys = list(net.state_dict())
    # the v1c deep stem (32-32-64) under the names the release's checkpoint uses
    assert keys[:6] == ["conv1.0.weight", "conv1.1.weight", "conv1.1.bias", "conv1.1.running_mean",
                        "conv1.1.running_var", "conv1.1.num_batches_tracked"]
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["conv1.0.weight"] == (32, 3, 3, 3) and shapes["conv1.6.weight"] == (64, 32, 3, 3)
    assert shapes["bn1.weight"] == (64,) and "layer3.22.conv3.weight" in shapes
    # plain strided 1x1 shortcut (no ResNet-D average pool), stride on the 3x3 (v1.5)
    assert shapes["layer2.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert net.layer2[0].conv2.stride == (2, 2) and net.layer2[0].conv1.stride == (1, 1)
    assert info.channels[-1] == 2048 and info.reductions[1] == 4
    assert "gluon_in1k" in weight_tags("resnet101c")


@pytest.mark.parametrize("name, params", [("resnet50", 23_508_032), ("resnet18", 11_176_512)])
def test_resnets_match_torchvision_without_fc(name: str, params: int) -> None:
    torchvision = pytest.importorskip("torchvision", reason="torchvision is pinned beside torch")
    net, _ = build_encoder(name)
    assert count_parameters(net) == params
    tv = getattr(torchvision.models, name)(weights=None)
    assert count_parameters(tv) - tv.fc.weight.numel() - tv.fc.bias.numel() == params


@pytest.mark.parametrize("output_stride, high", [(8, 8), (16, 4)])
def test_narrow_resnet_at_output_stride(output_stride: int, high: int) -> None:
    net, info = build_encoder("resnet18d", output_stride=output_stride, base_width=8)
    assert info.channels == (8, 8, 16, 32, 64)           # deep stem 4-4-8, stages 8..64
    feats = net(torch.randn(1, 3, 64, 64))
    assert tuple(feats[1].shape[-2:]) == (16, 16) and tuple(feats[-1].shape[-2:]) == (high, high)
    wide, _ = build_encoder("resnet18d", output_stride=output_stride)
    assert count_parameters(net) * 40 < count_parameters(wide)


def test_dinov2_encoder_reads_four_normed_blocks() -> None:
    assert dpt_blocks(12) == (2, 5, 8, 11) and dpt_blocks(24) == (5, 11, 17, 23)
    assert is_vit("vit_base_patch14_dinov2") and patch_size("vit_small_patch14_dinov2") == 14
    net, info = build_encoder("vit_small_patch14_dinov2")
    assert info.embed_dim == 384 and info.patch_size == 14
    feats = net(torch.randn(2, 3, 28, 42))
    assert [tuple(f.shape) for f in feats] == [(2, 384, 2, 3)] * 4
    assert "model.norm.weight" in net.state_dict()          # kept: every block read is normed
    assert "lvd142m" in weight_tags("vit_small_patch14_dinov2")


@pytest.mark.parametrize("name, width, stride, words", [
    ("resnet5o", None, 16, ["unknown backbone", "resnet50"]),
    ("convnext_tiny", 8, 16, ["base_width", "ResNet family"]),
    ("vit_small_patch14_dinov2", None, 8, ["output_stride", "patch"]),
])
def test_backbone_problems_say_what_to_do(name: str, width: int | None, stride: int, words: list[str]) -> None:
    problem = backbone_problem(name, width, stride)
    assert problem is not None and all(w in problem for w in words), problem
    assert backbone_problem("efficientnet_b0", None, 8) is None
