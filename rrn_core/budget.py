"""A run's budget in iterations, and what those iterations are worth in epochs.

A budget in epochs means the same thing across label amounts: 30 epochs over the
labeled set give a supervised run at 1/2 of the labels four times the iterations of
one at 1/8 (UniMatch's supervised baseline counts so), where a fixed iteration count
would leave the larger set under-trained. Semi-supervised scripts count epochs over
the unlabeled set instead. Either way the loop trains a whole number of iterations;
this module turns the config's budget into that number once the split is known, and
says what it amounts to over both sets, so reports can state it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rrn_core.config_sections import ConfigError, OptimConfig
from rrn_core.constants import (BUDGET_EPOCHS_LABELED, BUDGET_EPOCHS_UNLABELED, BUDGET_ITERS, BUDGET_STATED_AS,
                                LABELED_IMAGES, UNLABELED_IMAGES)


@dataclass(frozen=True)
class Budget:
    """The resolved budget: iterations, and epochs over each set they amount to."""

    iters: int
    labeled_images: int
    unlabeled_images: int
    epochs_labeled: float          # labeled images seen / labeled set size
    epochs_unlabeled: float | None  # unlabeled images seen (per stream) / unlabeled set size
    stated_as: str                 # "iters" | "epochs over labeled" | "epochs over unlabeled"

    def as_params(self) -> dict[str, str | int | float | None]:
        return {BUDGET_ITERS: self.iters, BUDGET_STATED_AS: self.stated_as,
                BUDGET_EPOCHS_LABELED: round(self.epochs_labeled, 3),
                BUDGET_EPOCHS_UNLABELED: (None if self.epochs_unlabeled is None
                                          else round(self.epochs_unlabeled, 3)),
                LABELED_IMAGES: self.labeled_images, UNLABELED_IMAGES: self.unlabeled_images}


def resolve_budget(optim: OptimConfig, labeled_images: int, unlabeled_images: int,
                   batch_size: int, unlabeled_batch_size: int, world_size: int = 1,
                   uses_unlabeled: bool = True) -> Budget:
    """Iterations for `optim`'s budget on a split of this size (every rank's batch counts).

    An epoch over a set is ceil(images / (batch x world size)) iterations, so a set
    smaller than one batch still trains; `epochs` x that, rounded up, is the budget.
    """
    per_step_l = batch_size * world_size
    per_step_u = unlabeled_batch_size * world_size
    if optim.epochs is None:
        iters, stated = int(optim.iters or 0), "iters"
    elif optim.epochs_over == "labeled":
        iters, stated = math.ceil(optim.epochs * math.ceil(labeled_images / per_step_l)), "epochs over labeled"
    else:
        if unlabeled_images == 0:
            raise ConfigError("optim.epochs_over is 'unlabeled' but the split has no unlabeled images "
                              "(count epochs over the labeled set, or give optim.iters)")
        iters, stated = (math.ceil(optim.epochs * math.ceil(unlabeled_images / per_step_u)),
                         "epochs over unlabeled")
    iters = max(1, iters)
    epochs_u = (iters * per_step_u / unlabeled_images
                if uses_unlabeled and unlabeled_images else None)
    return Budget(iters=iters, labeled_images=labeled_images, unlabeled_images=unlabeled_images,
                  epochs_labeled=iters * per_step_l / max(1, labeled_images),
                  epochs_unlabeled=epochs_u, stated_as=stated)
