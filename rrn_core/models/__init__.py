"""Networks: DeepLabV3+ segmenters on from-scratch ResNets, and the region discriminator."""

from rrn_core.models.deeplab import ASPP, DeepLabV3PlusHead, Segmenter, build_segmenter
from rrn_core.models.discriminator import (RegionDiscriminator, RegionGrid, build_discriminator,
                                           conv_output_size, region_grid)
from rrn_core.models.resnet import ResNet, build_resnet, count_parameters
from rrn_core.models.weights import WeightsError, WeightsReport, load_backbone_weights, read_state_dict

__all__ = [
    "ASPP",
    "DeepLabV3PlusHead",
    "RegionDiscriminator",
    "RegionGrid",
    "ResNet",
    "Segmenter",
    "WeightsError",
    "WeightsReport",
    "build_discriminator",
    "build_resnet",
    "build_segmenter",
    "conv_output_size",
    "count_parameters",
    "load_backbone_weights",
    "read_state_dict",
    "region_grid",
]
