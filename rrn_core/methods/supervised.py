"""Labeled data only: the floor every semi-supervised method must clear."""

from __future__ import annotations

from typing import Literal

from rrn_core.methods.base import Batch, Method, MethodSettings, StepContext, StepOutput
from rrn_core.methods.losses import ce_loss


class SupervisedConfig(MethodSettings):
    """Nothing to set: cross-entropy on the labeled batch."""

    name: Literal["supervised"] = "supervised"


class Supervised(Method):
    config_model = SupervisedConfig
    uses_unlabeled = False

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        labeled = batch["labeled"]
        loss = ce_loss(self.branches[0](labeled["image"]), labeled["mask"])
        return StepOutput(loss=loss, scalars={"loss_sup": loss.detach()})
