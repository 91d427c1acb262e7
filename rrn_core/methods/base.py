"""What every training step receives and returns, and the pieces steps share.

A method is an `nn.Module` that owns its segmentation branches (and, for RRN, its
region discriminators) and turns one batch into losses. The loop owns everything
else (optimisers, AMP, DDP wrapping, schedules), so adding a method means writing
one `forward`, not another training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rrn_core.config import IGNORE_INDEX, RunConfig
from rrn_core.methods.losses import sigmoid_rampup


@dataclass
class StepContext:
    """Where training stands: schedules (warm-up, ramps) read it."""

    step: int
    total_steps: int
    epoch: float

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)


@dataclass
class StepOutput:
    loss: Tensor                      # everything the segmentation branches minimise
    disc_loss: Tensor | None = None   # the discriminators' own objective (RRN only)
    scalars: dict[str, Tensor] = field(default_factory=dict)


Batch = dict[str, dict[str, Tensor]]   # {"labeled": ..., "unlabeled_a": ..., "unlabeled_b": ...}


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under a DDP wrapper (used where DDP's hooks must not run)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class Method(nn.Module):
    """Base class: holds the branches and discriminators the loop optimises."""

    uses_unlabeled: bool = True

    def __init__(self, cfg: RunConfig, branches: list[nn.Module],
                 discriminators: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.mcfg = cfg.method
        self.branches = nn.ModuleList(branches)
        self.discriminators = nn.ModuleList(discriminators or [])

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:  # pragma: no cover
        raise NotImplementedError


def cutmix(a: Tensor, b: Tensor, box: Tensor) -> Tensor:
    """Paste `b` into `a` where `box` is 1 (box: [B,H,W]; a, b: [B,...,H,W])."""
    mask = box.bool()
    while mask.dim() < a.dim():
        mask = mask.unsqueeze(1)
    return torch.where(mask, b, a)


@torch.no_grad()
def mixed_pseudo_labels(branch: nn.Module, u_a: Tensor, u_b: Tensor, box: Tensor,
                        ignore_m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Predict both unlabeled batches once, mix the predictions with the CutMix box.

    Returns (softmax of the mixed prediction, its confidence, its argmax with 255 on
    padded pixels). Mixing predictions instead of predicting the mixed image is what
    CPS's release does: the pseudo-label of each pixel comes from its own context.
    """
    probs = torch.softmax(branch(torch.cat([u_a, u_b])).float(), dim=1)
    p_a, p_b = probs.chunk(2)
    mixed = cutmix(p_a, p_b, box)
    conf, pseudo = mixed.max(dim=1)
    pseudo = pseudo.masked_fill(ignore_m == IGNORE_INDEX, IGNORE_INDEX)
    return mixed, conf, pseudo


def unsup_weight(method: Method, ctx: StepContext) -> float:
    """The collapse guard: the ramp on every unlabeled term (`method.unsup_rampup`)."""
    return sigmoid_rampup(ctx.progress, method.mcfg.unsup_rampup)


def split_logits(logits: Tensor, n_first: int) -> tuple[Tensor, Tensor]:
    return logits[:n_first], logits[n_first:]


def softmax(logits: Tensor) -> Tensor:
    return F.softmax(logits.float(), dim=1)
