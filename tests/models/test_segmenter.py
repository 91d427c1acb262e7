"""Segmenters: output = input size for odd sizes (DeepLabV3+ and DPT), batch 1, parameter groups."""

from __future__ import annotations

import pytest
import torch

from rrn_core.models import build_segmenter
from rrn_core.config_sections import ModelConfig

TINY = dict(backbone="resnet18d", base_width=8, aspp_channels=16, low_level_channels=8, head_channels=16)


@pytest.mark.parametrize("size", [(65, 97), (64, 64), (33, 50)])
@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("backbone", ["resnet18d", "resnet18"])
def test_logits_have_input_size(size: tuple[int, int], output_stride: int, backbone: str) -> None:
    model = build_segmenter(ModelConfig(**{**TINY, "backbone": backbone}, output_stride=output_stride), 5)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert tuple(out.shape) == (2, 5, *size)
    assert torch.isfinite(out).all()


def test_batch_of_one_in_eval_and_train_mode() -> None:
    model = build_segmenter(ModelConfig(**TINY), 3)
    model.eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 41, 53)).shape) == (1, 3, 41, 53)
    model.train()
    pool_bn = model.head.aspp.branches[-1].bn
    before = pool_bn.running_mean.clone()
    out = model(torch.randn(1, 3, 41, 53))
    out.mean().backward()
    assert tuple(out.shape) == (1, 3, 41, 53)
    # batch 1: the image-pooling BN uses (and keeps) its running statistics ...
    assert torch.equal(pool_bn.running_mean, before)
    # ... while the rest of the net still trains on batch statistics
    assert model.backbone.bn1.num_batches_tracked.item() == 1
    model(torch.randn(2, 3, 41, 53))
    assert not torch.equal(pool_bn.running_mean, before)


def test_aspp_rates_double_at_output_stride_8() -> None:
    def rates(os: int) -> list[int]:
        model = build_segmenter(ModelConfig(**TINY, output_stride=os, aspp_rates=(6, 12, 18)), 2)
        return [b[0].dilation[0] for b in model.head.aspp.branches[1:4]]

    assert rates(16) == [6, 12, 18]
    assert rates(8) == [12, 24, 36]


def test_parameter_groups_are_disjoint_and_complete() -> None:
    model = build_segmenter(ModelConfig(**TINY), 4)
    backbone = {id(p) for p in model.backbone_parameters()}
    head = {id(p) for p in model.head_parameters()}
    everything = {id(p) for p in model.parameters()}
    assert backbone and head
    assert not backbone & head
    assert backbone | head == everything


def test_head_widths_follow_config() -> None:
    cfg = ModelConfig(**{**TINY, "aspp_channels": 12, "low_level_channels": 6, "head_channels": 10})
    model = build_segmenter(cfg, 7)
    assert model.head.aspp.project[0].out_channels == 12
    assert model.head.reduce[0].out_channels == 6
    assert model.head.classifier.in_channels == 10 and model.head.classifier.out_channels == 7
    assert model.weights_report is None


def test_resnet50_segmenter_forward_tiny_input() -> None:
    model = build_segmenter(ModelConfig(backbone="resnet50c", base_width=8, aspp_channels=16,
                                        low_level_channels=8, head_channels=16), 21).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 49, 35))
    assert tuple(out.shape) == (1, 21, 49, 35)


def test_convnext_segmenter_reads_its_stride_4_map() -> None:
    model = build_segmenter(ModelConfig(backbone="convnext_atto", aspp_channels=8, low_level_channels=8,
                                        head_channels=8), 3).eval()
    assert model.head.low_index == 0 and model.head.reduce[0].in_channels == 40
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 45, 61)).shape) == (1, 3, 45, 61)


def test_vit_segmenter_pads_to_its_patch_and_crops_back() -> None:
    model = build_segmenter(ModelConfig(backbone="vit_small_patch14_dinov2"), 4).eval()
    assert model.pad_to == 14 and type(model.head).__name__ == "DPTHead"
    with torch.no_grad():
        odd = torch.randn(1, 3, 30, 43)
        out = model(odd)
        assert tuple(out.shape) == (1, 4, 30, 43)
        # the padded area only adds zeros on the bottom/right: same logits as an explicit pad
        padded = torch.nn.functional.pad(odd, (0, 56 - 43, 0, 42 - 30))
        assert torch.allclose(model(padded)[..., :30, :43], out, atol=1e-5)
