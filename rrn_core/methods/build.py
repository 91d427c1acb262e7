"""The method of a run config, with its branches and critics built and seeded."""

from __future__ import annotations

import torch

from rrn_core.config import RunConfig
from rrn_core.methods.base import Method
from rrn_core.methods.table import method_class
from rrn_core.models.deeplab import build_segmenter


def build_method(cfg: RunConfig, num_classes: int) -> Method:
    """Branches get different initialisations (network diversity) from distinct seeds;
    the critics' seeds are offset by 100 so that adding a branch does not move them."""
    cls = method_class(cfg.method.name)
    branches = []
    for k in range(cls.num_branches):
        torch.manual_seed(cfg.runtime.seed * 1000 + k)
        branches.append(build_segmenter(cfg.model, num_classes))
    critics = []
    for k in range(cls.num_critics):
        torch.manual_seed(cfg.runtime.seed * 1000 + 100 + k)
        critics.append(cls.build_critic(cfg.method, num_classes, cfg.data.crop_size))
    torch.manual_seed(cfg.runtime.seed)
    return cls(cfg.method, branches, critics)
