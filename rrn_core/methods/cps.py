"""Cross pseudo supervision (Chen et al. 2021): steps 1-3 of the RRN design note.

Two differently initialised branches label the CutMix-ed unlabeled batch for each
other. RRN builds on exactly this step, so it reuses `cps_terms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from rrn_core.methods.base import (Batch, Method, SemiSupervisedSettings, StepContext, StepOutput, cutmix,
                                   mixed_pseudo_labels, split_logits, unsup_weight)
from rrn_core.methods.losses import ce_loss, cps_loss
from rrn_core.methods.signals import pseudo_label_accuracy


class CPSConfig(SemiSupervisedSettings):
    """loss = L_sup + ramp * w_cps * L_cps."""

    name: Literal["cps"] = "cps"
    w_cps: float = Field(1.0, ge=0.0)


@dataclass
class CPSTerms:
    """Everything one CPS forward produces that RRN's extra terms read."""

    sup: Tensor
    cps: Tensor
    logits_labeled: list[Tensor]   # per branch, with gradient: f_k(x_l)
    logits_mixed: list[Tensor]     # per branch, with gradient: f_k(u_m)
    pseudo: list[Tensor]           # per branch: argmax of the mixed no-grad prediction
    ignore_mixed: Tensor
    gt_mixed: Tensor
    image_mixed: Tensor
    scalars: dict[str, Tensor]


def cps_terms(method: Method, batch: Batch) -> CPSTerms:
    labeled, ua, ub = batch["labeled"], batch["unlabeled_a"], batch["unlabeled_b"]
    x_l, y_l = labeled["image"], labeled["mask"]
    box = ua["cutmix_box"]
    u_m = cutmix(ua["image_weak"], ub["image_weak"], box)
    ignore_m = cutmix(ua["ignore"], ub["ignore"], box)
    gt_m = cutmix(ua["mask"], ub["mask"], box)

    pseudo = []
    for branch in method.branches:
        _, _, labels = mixed_pseudo_labels(branch, ua["image_weak"], ub["image_weak"], box, ignore_m)
        pseudo.append(labels)

    sup = x_l.new_zeros(())
    logits_labeled, logits_mixed = [], []
    for branch in method.branches:
        logits_l, logits_m = split_logits(branch(torch.cat([x_l, u_m])), x_l.shape[0])
        sup = sup + ce_loss(logits_l, y_l)
        logits_labeled.append(logits_l)
        logits_mixed.append(logits_m)
    cps = cps_loss(logits_mixed[0], logits_mixed[1], pseudo[0], pseudo[1])
    scalars = {"loss_sup": sup.detach(), "loss_cps": cps.detach(),
               "pseudo_acc": pseudo_label_accuracy(pseudo[0], gt_m)}
    return CPSTerms(sup, cps, logits_labeled, logits_mixed, pseudo, ignore_m, gt_m, u_m, scalars)


class CPS(Method):
    config_model = CPSConfig
    num_branches = 2
    mcfg: CPSConfig

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        t = cps_terms(self, batch)
        ramp = unsup_weight(self.mcfg, ctx)
        scalars = {**t.scalars, "unsup_ramp": torch.tensor(ramp)}
        return StepOutput(loss=t.sup + ramp * self.mcfg.w_cps * t.cps, scalars=scalars)
