"""FixMatch as UniMatch's `fixmatch.py` runs it: one branch, weak view labels the strong view.

The strongest simple public baseline. Per step, as the reference does:
1. the CutMix partner batch `u_b` (weak view) is predicted in eval mode, no grad;
2. one train-mode pass on [labeled, weak `u_a`] gives the supervised logits and, detached,
   the weak view's pseudo-labels and confidences;
3. a separate train-mode pass on the CutMix-ed strong view (`u_a` strong with `u_b`
   strong pasted in the box) is trained on the mixed pseudo-labels where the mixed
   confidence is >= conf_thresh;
4. loss = (L_sup + w_unsup * L_unsup) / 2 (the reference averages the two).
The collapse guard (`unsup_rampup`, 0 = off as in the reference) ramps L_unsup.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rrn_core.constants import IGNORE_INDEX
from rrn_core.methods.base import (Batch, Method, SemiSupervisedSettings, StepContext, StepOutput, cutmix,
                                   split_logits, unsup_weight)
from rrn_core.methods.losses import ce_loss, confidence_masked_ce
from rrn_core.methods.signals import pseudo_label_accuracy


class FixMatchConfig(SemiSupervisedSettings):
    """Pixels whose weak-view confidence is >= conf_thresh train the strong view."""

    name: Literal["fixmatch"] = "fixmatch"
    conf_thresh: float = Field(0.95, ge=0.0, le=1.0)
    w_unsup: float = Field(1.0, ge=0.0)


class FixMatch(Method):
    config_model = FixMatchConfig
    mcfg: FixMatchConfig

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        labeled, ua, ub = batch["labeled"], batch["unlabeled_a"], batch["unlabeled_b"]
        x_l, y_l = labeled["image"], labeled["mask"]
        box = ua["cutmix_box"]
        branch = self.branches[0]

        with torch.no_grad():  # step 1: the mix partner, eval mode (BN running stats untouched)
            branch.eval()
            probs_b = torch.softmax(branch(ub["image_weak"]).float(), dim=1)
            branch.train()
        logits_l, logits_w = split_logits(branch(torch.cat([x_l, ua["image_weak"]])), x_l.shape[0])
        probs_w = torch.softmax(logits_w.detach().float(), dim=1)
        conf, pseudo = cutmix(probs_w, probs_b, box).max(dim=1)
        ignore_m = cutmix(ua["ignore"], ub["ignore"], box)
        pseudo = pseudo.masked_fill(ignore_m == IGNORE_INDEX, IGNORE_INDEX)
        logits_s = branch(cutmix(ua["image_strong"], ub["image_strong"], box))

        sup = ce_loss(logits_l, y_l)
        unsup = confidence_masked_ce(logits_s, pseudo, conf, self.mcfg.conf_thresh, ignore_m)
        ramp = unsup_weight(self.mcfg, ctx)
        valid = ignore_m != IGNORE_INDEX
        confident = (conf >= self.mcfg.conf_thresh) & valid
        gt_m = cutmix(ua["mask"], ub["mask"], box)
        scalars = {
            "loss_sup": sup.detach(),
            "loss_unsup": unsup.detach(),
            "confident_fraction": confident.sum() / valid.sum().clamp(min=1),
            "pseudo_acc": pseudo_label_accuracy(pseudo, gt_m),
            "unsup_ramp": torch.tensor(ramp),
        }
        return StepOutput(loss=(sup + ramp * self.mcfg.w_unsup * unsup) / 2, scalars=scalars)
