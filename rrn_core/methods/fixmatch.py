"""FixMatch as UniMatch runs it: one branch, weak view labels the strong view.

The strongest simple public baseline; confident (>= conf_thresh) pixels of the weak
view's prediction supervise the CutMix-ed strong view.
"""

from __future__ import annotations

import torch

from rrn_core.methods.base import (Batch, Method, StepContext, StepOutput, cutmix,
                                   mixed_pseudo_labels, pseudo_label_accuracy, split_logits)
from rrn_core.methods.losses import ce_loss, confidence_masked_ce


class FixMatch(Method):
    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        labeled, ua, ub = batch["labeled"], batch["unlabeled_a"], batch["unlabeled_b"]
        x_l, y_l = labeled["image"], labeled["mask"]
        box = ua["cutmix_box"]
        branch = self.branches[0]
        ignore_m = cutmix(ua["ignore"], ub["ignore"], box)
        _, conf, pseudo = mixed_pseudo_labels(branch, ua["image_weak"], ub["image_weak"], box, ignore_m)
        u_s = cutmix(ua["image_strong"], ub["image_strong"], box)

        logits_l, logits_s = split_logits(branch(torch.cat([x_l, u_s])), x_l.shape[0])
        sup = ce_loss(logits_l, y_l)
        unsup = confidence_masked_ce(logits_s, pseudo, conf, self.mcfg.conf_thresh, ignore_m)
        confident = conf >= self.mcfg.conf_thresh
        gt_m = cutmix(ua["mask"], ub["mask"], box)
        scalars = {
            "loss_sup": sup.detach(),
            "loss_unsup": unsup.detach(),
            "confident_fraction": confident[ignore_m != 255].float().mean(),
            "pseudo_acc": pseudo_label_accuracy(pseudo, gt_m),
        }
        return StepOutput(loss=sup + self.mcfg.w_unsup * unsup, scalars=scalars)
