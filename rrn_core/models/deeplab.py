"""DeepLabV3+ head and the `Segmenter` (encoder + decoder) every method trains.

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

from rrn_core.models.dpt import DPTHead
from rrn_core.models.encoders import EncoderInfo, build_encoder
from rrn_core.models.pretrained import local_file, weight_source
from rrn_core.models.weights import WeightsReport, load_encoder_weights
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
    """Decoder: ASPP on the encoder's last map, fused with its stride-4 map (`low_index`)."""

    def __init__(self, info: EncoderInfo, num_classes: int, cfg: ModelConfig) -> None:
        super().__init__()
        # the stride-4 map (stride 2 and 8 only when a net has none at 4)
        self.low_index = min(range(len(info.reductions)),
                             key=lambda i: (abs(info.reductions[i] - 4), info.reductions[i]))
        low_channels, high_channels = info.channels[self.low_index], info.channels[-1]
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

    def forward(self, feats: list[Tensor]) -> Tensor:
        low, high = feats[self.low_index], feats[-1]
        context = self.aspp(high)
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([self.reduce(low), context], dim=1)))


class Segmenter(nn.Module):
    """Encoder + decoder; x[B,3,H,W] -> logits[B,C,H,W] for any H, W.

    A ViT sees tokens of `pad_to` pixels, so inputs are zero-padded (after
    normalisation: the mean colour) on the bottom/right to a multiple of it and the
    logits cropped back; crops are validated to be multiples already, so only whole-
    image evaluation of odd-sized images pads. The two parameter groups exist because
    the usual recipe trains the (pretrained) backbone at the base lr and the fresh
    head at `head_lr_mult` times it.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, num_classes: int, pad_to: int = 1) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.pad_to = pad_to
        self.weights_report: WeightsReport | None = None

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        p = self.pad_to
        if p > 1 and (h % p or w % p):
            x = F.pad(x, (0, -w % p, 0, -h % p))
        logits = self.head(self.backbone(x))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()


def build_segmenter(cfg: ModelConfig, num_classes: int) -> Segmenter:
    """Build the segmenter from the config and fill its encoder from `cfg.pretrained`.

    Raises `WeightsError` (a `ConfigError`) naming the file when it cannot be used.
    The load report (with the file's sha256) is kept on `segmenter.weights_report`.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    encoder, info = build_encoder(cfg.backbone, output_stride=cfg.output_stride,
                                  base_width=cfg.base_width)
    path = local_file(weight_source(cfg.backbone, cfg.pretrained))
    report = load_encoder_weights(encoder, path) if path is not None else None
    head: nn.Module
    if info.embed_dim:
        head = DPTHead(info.embed_dim, num_classes, cfg.dpt_features)
    else:
        head = DeepLabV3PlusHead(info, num_classes, cfg)
    model = Segmenter(encoder, head, num_classes, pad_to=info.patch_size)
    model.weights_report = report
    return model
