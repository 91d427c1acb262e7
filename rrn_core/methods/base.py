"""What every training step receives and returns, and the pieces steps share.

A method is an `nn.Module` that owns its segmentation branches (and, for RRN, its
region discriminators) and turns one batch into losses. The loop owns everything
else (optimisers, AMP, DDP wrapping, schedules), so adding a method means writing
one `forward`, not another training loop.

Each method also declares, as class attributes, what the rest of the project asks
of it instead of testing its name: its config model (only the fields its step
reads; `method.name` picks the model), how many branches and critics it trains,
whether it reads unlabeled images, and how long its self-training warm-up lasts.
Adding a method is one file (config model + `Method` subclass) and one line in
rrn_core/methods/table.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from rrn_core.constants import IGNORE_INDEX
from rrn_core.methods.losses import sigmoid_rampup
from rrn_core.config_sections import StrictModel


class MethodSettings(StrictModel):
    """The `method:` section every method's config model extends; `name` picks the model."""

    name: str


class SemiSupervisedSettings(MethodSettings):
    """What every method that trains on unlabeled images shares."""

    # Collapse guard (ours, from Mean Teacher / CCT): the weight of every unlabeled
    # term ramps from 0 to 1 as exp(-5 (1 - t / T)^2) over the first `unsup_rampup`
    # of training (T as a fraction of optim.iters; 0 = full weight from step 0, as the
    # release does with pretrained backbones). From scratch, full weight at step 0
    # trains each branch on the other's near-uniform argmax, which is the majority
    # class everywhere, and both branches lock into predicting background.
    unsup_rampup: float = Field(0.3, ge=0.0, le=1.0)


@dataclass
class StepContext:
    """Where training stands: schedules (warm-up, ramps) read it."""

    step: int
    total_steps: int
    epoch: float

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)


def steps_per_epoch(images: int, batch_size: int, world_size: int = 1) -> int:
    """Iterations per epoch: one pass over the unlabeled set (the labeled set for a
    method without unlabeled images), counting every rank's batch. The loop's
    `StepContext.epoch` and every method's warm-up are measured in these."""
    return max(1, images // (batch_size * world_size))


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

    #: The model of this method's `method:` section.
    config_model: ClassVar[type[MethodSettings]] = MethodSettings
    #: Segmentation networks it trains (differently initialised: network diversity).
    num_branches: ClassVar[int] = 1
    #: Region critics it trains beside them (built by `build_critic`).
    num_critics: ClassVar[int] = 0
    #: Whether its step reads the unlabeled streams (and so needs unlabeled images).
    uses_unlabeled: ClassVar[bool] = True

    def __init__(self, mcfg: MethodSettings, branches: list[nn.Module],
                 discriminators: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.mcfg = mcfg
        self.branches = nn.ModuleList(branches)
        self.discriminators = nn.ModuleList(discriminators or [])

    @classmethod
    def warmup_iters(cls, mcfg: MethodSettings, steps_per_epoch: int) -> float:
        """Iterations before the unlabeled terms start (the loop's epoch is a pass over
        the unlabeled set, `steps_per_epoch` iterations); an early-stopping scheduler
        must not judge the method before then."""
        return 0.0

    @classmethod
    def build_critic(cls, mcfg: MethodSettings, num_classes: int, crop_size: int) -> nn.Module:
        """One of the `num_critics` critics (the caller seeds each one)."""
        raise NotImplementedError(f"{cls.__name__} trains no critics")

    def critic_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimiser of the critics' own objective (None: the method has none)."""
        return None

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


def unsup_weight(settings: SemiSupervisedSettings, ctx: StepContext) -> float:
    """The collapse guard: the ramp on every unlabeled term (`method.unsup_rampup`)."""
    return sigmoid_rampup(ctx.progress, settings.unsup_rampup)


def split_logits(logits: Tensor, n_first: int) -> tuple[Tensor, Tensor]:
    return logits[:n_first], logits[n_first:]


def softmax(logits: Tensor) -> Tensor:
    return F.softmax(logits.float(), dim=1)


def hard_labels(logits: Tensor) -> Tensor:
    """argmax_c logits[:, c]: the class map [B,H,W] of scores [B,C,H,W].

    Through `max`, which returns the same indices (the first maximum on ties) as
    `argmax(1)`, but reduces over the channel dimension of an NCHW tensor about 20x
    faster on CPU (torch 2.13, 4 x 6 x 64 x 64: 0.4 vs 9 ms).
    """
    return logits.max(dim=1).indices
