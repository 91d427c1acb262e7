"""DeepLabV3+ head and the `Segmenter` (backbone + head) every method trains.

The head follows the reference of the RRN/CPS release: ASPP (1x1, three dilated 3x3,
image pooling) projected to `aspp_channels`, a 48-channel projection of layer1,
concatenation, two 3x3 convs, a 1x1 classifier, bilinear upsampling to the input.
Every resize targets the exact size of the tensor it joins, so odd inputs (65x97)
come out at their own size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from rrn_core.models.resnet import ResNet, build_resnet
from rrn_core.models.weights import WeightsReport, load_backbone_weights
from rrn_core.config_sections import ModelConfig


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = 0 if kernel == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ImagePooling(nn.Module):
    """ASPP's global-context branch: average pool, 1x1 conv + BN + ReLU, broadcast back.

    After pooling, BN sees one value per channel per image, so in training mode a
    batch of one image has no batch statistics (torchvision's ASPP raises there).
    Laptop runs may use batch 1, so in that single case the BN normalises with its
    running statistics and leaves them unchanged, i.e. the branch acts as in eval
    mode. Under SyncBatchNorm across several processes the statistics are gathered
    over all ranks, so the BN runs as usual.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def _needs_running_stats(self, y: Tensor) -> bool:
        if not self.training or y.shape[0] > 1:
            return False
        synced = isinstance(self.bn, nn.SyncBatchNorm) and dist.is_available() \
            and dist.is_initialized() and dist.get_world_size() > 1
        return not synced

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        if self._needs_running_stats(y):
            bn = self.bn
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                             training=False, eps=bn.eps)
        else:
            y = self.bn(y)
        return self.relu(y).expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: context at several rates, projected to one width."""

    def __init__(self, in_ch: int, out_ch: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        branches: list[nn.Module] = [_conv_bn_relu(in_ch, out_ch, 1)]
        branches += [_conv_bn_relu(in_ch, out_ch, 3, r) for r in rates]
        branches.append(ImagePooling(in_ch, out_ch))
        self.branches = nn.ModuleList(branches)
        self.project = _conv_bn_relu(out_ch * len(branches), out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """Decoder: ASPP on the high-level map, fused with projected low-level features."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int,
                 cfg: ModelConfig) -> None:
        super().__init__()
        # ASPP rates are defined for output stride 16; at OS 8 the map is twice as
        # large, so the same receptive field needs twice the rate (DeepLab's habit).
        scale = 16 // cfg.output_stride
        rates = tuple(r * scale for r in cfg.aspp_rates)
        self.aspp = ASPP(high_channels, cfg.aspp_channels, rates)
        self.reduce = _conv_bn_relu(low_channels, cfg.low_level_channels, 1)
        self.fuse = nn.Sequential(
            _conv_bn_relu(cfg.aspp_channels + cfg.low_level_channels, cfg.head_channels, 3),
            _conv_bn_relu(cfg.head_channels, cfg.head_channels, 3),
        )
        self.classifier = nn.Conv2d(cfg.head_channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.classifier:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        context = self.aspp(high)
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([self.reduce(low), context], dim=1)))


class Segmenter(nn.Module):
    """DeepLabV3+ = ResNet backbone + head; x[B,3,H,W] -> logits[B,C,H,W].

    The two parameter groups exist because the usual recipe trains the (pretrained)
    backbone at the base lr and the fresh head at `head_lr_mult` times it.
    """

    def __init__(self, backbone: ResNet, head: DeepLabV3PlusHead, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.weights_report: WeightsReport | None = None

    def forward(self, x: Tensor) -> Tensor:
        low, high = self.backbone(x)
        logits = self.head(low, high)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()


def build_segmenter(cfg: ModelConfig, num_classes: int) -> Segmenter:
    """Build DeepLabV3+ from the config; `cfg.pretrained` (a local file) fills the backbone.

    Raises `WeightsError` (a `ConfigError`) naming the file when it cannot be used.
    The load report is kept on `segmenter.weights_report` for tracking.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    backbone = build_resnet(cfg.backbone, base_width=cfg.base_width, deep_stem=cfg.deep_stem,
                            output_stride=cfg.output_stride)
    report = load_backbone_weights(backbone, cfg.pretrained) if cfg.pretrained else None
    head = DeepLabV3PlusHead(backbone.low_channels, backbone.high_channels, num_classes, cfg)
    model = Segmenter(backbone, head, num_classes)
    model.weights_report = report
    return model
