"""Labeled data only: the floor every semi-supervised method must clear."""

from __future__ import annotations

from rrn_core.methods.base import Batch, Method, StepContext, StepOutput
from rrn_core.methods.losses import ce_loss


class Supervised(Method):
    uses_unlabeled = False

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        labeled = batch["labeled"]
        loss = ce_loss(self.branches[0](labeled["image"]), labeled["mask"])
        return StepOutput(loss=loss, scalars={"loss_sup": loss.detach()})
