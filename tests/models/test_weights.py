"""Pretrained weights from a local torchvision-format file; clear errors, never a download."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rrn_core.models import WeightsError, build_resnet, build_segmenter, load_backbone_weights
from rrn_core.config_sections import ConfigError, ModelConfig


def torchvision_style_file(path: Path, width: int = 8, deep_stem: bool = False,
                           wrap: bool = False) -> dict[str, torch.Tensor]:
    """Write a state dict with torchvision key names, random values and an ImageNet fc."""
    gen = torch.Generator().manual_seed(7)
    state = {}
    for key, value in build_resnet("resnet18", width, deep_stem=deep_stem).state_dict().items():
        if value.is_floating_point():
            state[key] = torch.randn(value.shape, generator=gen).abs() + 0.1
        else:
            state[key] = torch.full_like(value, 42)
    state["fc.weight"] = torch.randn(1000, width * 8, generator=gen)
    state["fc.bias"] = torch.zeros(1000)
    payload = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90} if wrap else state
    torch.save(payload, path)
    return state


@pytest.mark.parametrize("wrap", [False, True])
def test_values_land_in_the_backbone(tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "r18.pth"
    saved = torchvision_style_file(path, wrap=wrap)
    # spot-check the literal torchvision names the file carries
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
                "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"):
        assert key in saved
    net = build_resnet("resnet18", 8, deep_stem=False)
    report = load_backbone_weights(net, path)
    own = net.state_dict()
    for key, value in own.items():
        assert torch.equal(value, saved[key]), key
    assert report.complete and not report.notes
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert len(report.loaded) == len(own)


def test_deep_stem_cannot_take_a_7x7_stem_but_loads_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "tv.pth"
    saved = torchvision_style_file(path, deep_stem=False)
    net = build_resnet("resnet18", 8, deep_stem=True)
    stem_before = net.conv1[0].weight.detach().clone()
    report = load_backbone_weights(net, path)
    assert "7x7" in report.notes[0] and "deep" in report.notes[0] and "deep_stem=false" in report.notes[0]
    assert torch.equal(net.conv1[0].weight, stem_before)
    assert not torch.equal(net.bn1.weight, saved["bn1.weight"])
    assert torch.equal(net.layer3[1].conv2.weight, saved["layer3.1.conv2.weight"])
    assert "conv1.0.weight" in report.missing and "bn1.weight" in report.missing
    assert "7x7" in report.summary()


def test_segmenter_loads_the_configured_file(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    saved = torchvision_style_file(path)
    cfg = ModelConfig(backbone="resnet18", base_width=8, deep_stem=False, pretrained=str(path),
                      aspp_channels=8, low_level_channels=8, head_channels=8)
    model = build_segmenter(cfg, 3)
    assert torch.equal(model.backbone.layer2[0].conv1.weight, saved["layer2.0.conv1.weight"])
    assert model.weights_report is not None and model.weights_report.complete


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet50.pth"
    cfg = ModelConfig(backbone="resnet18", base_width=8, pretrained=str(missing))
    with pytest.raises(WeightsError, match="resnet50.pth: pretrained weights file not found") as err:
        build_segmenter(cfg, 3)
    assert isinstance(err.value, ConfigError)  # the CLI's exit-2 path handles it


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsError, match="broken.pth: cannot read pretrained weights"):
        load_backbone_weights(build_resnet("resnet18", 8), path)


def test_file_for_another_width_matches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "wide.pth"
    torchvision_style_file(path, width=16)
    with pytest.raises(WeightsError, match="no tensor matches the resnet18 backbone"):
        load_backbone_weights(build_resnet("resnet18", 8, deep_stem=False), path)


def test_partial_file_reports_missing_unexpected_and_mismatched(tmp_path: Path) -> None:
    path = tmp_path / "partial.pth"
    state = build_resnet("resnet18", 8, deep_stem=False).state_dict()
    state.pop("layer4.1.conv2.weight")
    state["layer1.0.conv1.weight"] = torch.zeros(5, 5, 3, 3)
    state["head.extra"] = torch.zeros(2)
    torch.save(state, path)
    report = load_backbone_weights(build_resnet("resnet18", 8, deep_stem=False), path)
    assert report.missing == ["layer1.0.conv1.weight", "layer4.1.conv2.weight"]
    assert report.unexpected == ["head.extra"]
    assert report.mismatched == ["layer1.0.conv1.weight (file (5, 5, 3, 3) vs model (8, 8, 3, 3))"]
    text = report.summary()
    assert "missing" in text and "unexpected" in text and "shape mismatch" in text
