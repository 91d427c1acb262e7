"""ResNet backbones: torchvision-identical shapes and names, deep stem, output stride."""

from __future__ import annotations

import pytest
import torch

from rrn_core.models import build_resnet, count_parameters

# torchvision's published parameter counts minus its 1000-way fc (in*1000 + 1000).
TORCHVISION_PARAMS_WITHOUT_FC = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet101": 44_549_160 - 2_049_000,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS_WITHOUT_FC))
def test_standard_width_matches_torchvision_parameter_count(name: str) -> None:
    net = build_resnet(name, base_width=64, deep_stem=False)
    assert count_parameters(net) == TORCHVISION_PARAMS_WITHOUT_FC[name]


def test_state_dict_uses_torchvision_names_and_shapes() -> None:
    state = build_resnet("resnet50", base_width=64, deep_stem=False).state_dict()
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer3.5.bn3.weight": (1024,),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "layer4.0.downsample.1.num_batches_tracked": (),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("fc.") for k in state)


def test_deep_stem_is_32_32_64_scaled_by_width() -> None:
    state = build_resnet("resnet18", base_width=64, deep_stem=True).state_dict()
    assert tuple(state["conv1.0.weight"].shape) == (32, 3, 3, 3)
    assert tuple(state["conv1.3.weight"].shape) == (32, 32, 3, 3)
    assert tuple(state["conv1.6.weight"].shape) == (64, 32, 3, 3)
    assert "conv1.weight" not in state
    tiny = build_resnet("resnet18", base_width=16, deep_stem=True).state_dict()
    assert tuple(tiny["conv1.6.weight"].shape) == (16, 8, 3, 3)


@pytest.mark.parametrize("output_stride, high_side", [(16, 4), (8, 8)])
@pytest.mark.parametrize("deep_stem", [True, False])
def test_output_stride_and_feature_channels(output_stride: int, high_side: int, deep_stem: bool) -> None:
    net = build_resnet("resnet18", base_width=8, deep_stem=deep_stem, output_stride=output_stride).eval()
    with torch.no_grad():
        low, high = net(torch.randn(1, 3, 64, 64))
    assert tuple(low.shape) == (1, 8, 16, 16)
    assert tuple(high.shape) == (1, 64, high_side, high_side)
    assert (net.low_channels, net.high_channels) == (8, 64)


def test_dilation_replaces_stride() -> None:
    net = build_resnet("resnet50", base_width=8, output_stride=8)
    assert net.layer3[0].conv2.stride == (1, 1) and net.layer3[1].conv2.dilation == (2, 2)
    assert net.layer4[0].conv2.dilation == (2, 2) and net.layer4[2].conv2.dilation == (4, 4)
    net16 = build_resnet("resnet50", base_width=8, output_stride=16)
    assert net16.layer3[0].conv2.stride == (2, 2) and net16.layer4[1].conv2.dilation == (2, 2)


def test_resnet50_tiny_forward() -> None:
    net = build_resnet("resnet50", base_width=8, deep_stem=True).eval()
    with torch.no_grad():
        low, high = net(torch.randn(1, 3, 33, 47))
    assert tuple(low.shape) == (1, 32, 9, 12)
    assert tuple(high.shape) == (1, 256, 3, 3)
