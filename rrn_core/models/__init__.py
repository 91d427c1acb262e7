"""Networks: segmenters on timm encoders (DeepLabV3+ or DPT), and the region discriminator."""

from rrn_core.models.deeplab import ASPP, DeepLabV3PlusHead, Segmenter, build_segmenter
from rrn_core.models.discriminator import (RegionDiscriminator, RegionGrid, build_discriminator,
                                           conv_output_size, region_grid)
from rrn_core.models.dpt import DPTHead
from rrn_core.models.encoders import EncoderInfo, build_encoder, count_parameters
from rrn_core.models.weights import WeightsError, WeightsReport, load_encoder_weights, read_state_dict

__all__ = [
    "ASPP",
    "DPTHead",
    "DeepLabV3PlusHead",
    "EncoderInfo",
    "RegionDiscriminator",
    "RegionGrid",
    "Segmenter",
    "WeightsError",
    "WeightsReport",
    "build_discriminator",
    "build_encoder",
    "build_segmenter",
    "conv_output_size",
    "count_parameters",
    "load_encoder_weights",
    "read_state_dict",
    "region_grid",
]

