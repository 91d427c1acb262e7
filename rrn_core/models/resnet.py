"""ResNet-18/34/50/101 backbones for DeepLabV3+, written here because torchvision is
not available and the method needs two knobs torchvision lacks together: the deep
("v1c") stem and a width multiplier small enough for CPU demos.

Parameter names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, `...downsample.0`)
so a torchvision ResNet state dict loads as is. The deep stem follows the CPS/TorchSeg
"resnet50_v1c" layout (`conv1.0/.3/.6` convs, `conv1.1/.4` BNs, then `bn1`), the layout
of the checkpoint the RRN release starts from.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

BackboneName = Literal["resnet18", "resnet34", "resnet50", "resnet101"]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    # padding = dilation keeps the spatial size of a stride-1 conv for any dilation
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or projected) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 with the stride on the 3x3 (torchvision's "v1.5"): ResNet-50/101."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """A ResNet trunk (no pooling/fc) returning (layer1, layer4) features.

    `base_width` is the channel count of layer1's 3x3 convs (64 in the paper nets);
    every other width scales with it, so 8 or 16 gives nets a laptop CPU trains in
    minutes. `output_stride` 16 dilates layer4, 8 dilates layer3 and layer4: DeepLab
    keeps resolution that way instead of striding.
    """

    def __init__(self, name: BackboneName = "resnet50", base_width: int = 64,
                 deep_stem: bool = True, output_stride: int = 16) -> None:
        super().__init__()
        if name not in _LAYOUTS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_LAYOUTS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        block, counts = _LAYOUTS[name]
        self.name = name
        self.base_width = base_width
        self.deep_stem = deep_stem
        self.output_stride = output_stride

        if deep_stem:
            half = max(1, base_width // 2)  # 32-32-64 at base_width 64
            self.conv1: nn.Module = nn.Sequential(
                _conv3x3(3, half, stride=2), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                _conv3x3(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                _conv3x3(half, base_width),
            )
        else:
            self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        # (stride, dilation) per layer; dilation replaces the stride it removes.
        dilate3 = output_stride == 8
        dilate4 = output_stride in (8, 16)
        plan = [(1, 1), (2, 1), (1, 2) if dilate3 else (2, 1)]
        plan.append((1, 4 if dilate3 else 2) if dilate4 else (2, 1))
        self.inplanes = base_width
        for i, ((stride, dilation), count) in enumerate(zip(plan, counts)):
            layer = self._make_layer(block, base_width * 2**i, count, stride, dilation)
            self.add_module(f"layer{i + 1}", layer)

        self.low_channels = base_width * block.expansion
        self.high_channels = base_width * 8 * block.expansion
        self._init_weights()

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, count: int,
                    stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        # The first block of a dilated layer uses half the dilation (torchvision's
        # replace_stride_with_dilation, mmseg's contract_dilation): it still sees the
        # previous layer's sampling grid, so a full dilation there would skip pixels.
        first = max(1, dilation // 2)
        blocks = [block(self.inplanes, planes, stride, first, downsample)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, 1, dilation) for _ in range(1, count)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (low-level layer1 features at stride 4, high-level layer4 features)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        high = self.layer4(self.layer3(self.layer2(low)))
        return low, high


def build_resnet(name: BackboneName = "resnet50", base_width: int = 64, deep_stem: bool = True,
                 output_stride: int = 16) -> ResNet:
    """Build a randomly initialised backbone; see `weights.load_backbone_weights` for weights."""
    return ResNet(name, base_width=base_width, deep_stem=deep_stem, output_stride=output_stride)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars; used to check the nets match their torchvision twins."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "build_resnet", "count_parameters"]
