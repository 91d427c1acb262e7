"""Training steps: one per method, all behind the same `Method` interface."""

from __future__ import annotations

from rrn_core.config import RunConfig
from rrn_core.methods.base import Method, StepContext, StepOutput


def build_method(cfg: RunConfig, num_classes: int) -> Method:
    """Branches get different initialisations (network diversity) from distinct seeds."""
    import torch

    from rrn_core.methods.cps import CPS
    from rrn_core.methods.fixmatch import FixMatch
    from rrn_core.methods.rrn import RRN
    from rrn_core.methods.supervised import Supervised
    from rrn_core.models import build_discriminator, build_segmenter

    classes = {"supervised": Supervised, "cps": CPS, "fixmatch": FixMatch, "rrn": RRN}
    name = cfg.method.name
    branches = []
    for k in range(cfg.method.num_branches):
        torch.manual_seed(cfg.runtime.seed * 1000 + k)
        branches.append(build_segmenter(cfg.model, num_classes))
    discriminators = []
    if name == "rrn":
        for k in range(2):
            torch.manual_seed(cfg.runtime.seed * 1000 + 100 + k)
            discriminators.append(build_discriminator(cfg.method.discriminator, num_classes,
                                                      cfg.data.crop_size))
    torch.manual_seed(cfg.runtime.seed)
    return classes[name](cfg, branches, discriminators)


__all__ = ["Method", "StepContext", "StepOutput", "build_method"]
