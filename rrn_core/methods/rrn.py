"""Region Relevance Network: CPS plus region-level critics (design note steps 1-9).

On top of cross pseudo supervision, each branch k has a region discriminator D_k that
scores an R x R grid of its prediction. Regions the critic trusts feed a local
selection loss against the branch's own pseudo-label; regions both critics trust feed
a second (cross-check) term; and the cross-supervision loss is re-weighted per region
by how much the two branches agree and how much both critics trust it (dynamic
region-loss correction). The critics learn which regions of a prediction are right
(`discriminator.objective: accuracy`, ours) or to tell one-hot ground truth from
predictions (`adversarial`, the release); feature matching pulls predictions towards
ground-truth statistics in the critics' feature space.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.transforms import denormalize
from rrn_core.methods.base import (Batch, Method, MethodSettings, StepContext, StepOutput, hard_labels,
                                   softmax, unsup_weight, unwrap)
from rrn_core.methods.cps import CPSConfig, CPSTerms, cps_terms
from rrn_core.methods.losses import (discriminator_bce, dynamic_region_loss, effective_region_fraction,
                                     feature_matching_loss, linear_rampup, local_selection_loss, one_hot,
                                     per_region_ce, region_accuracy_bce, region_agreement, region_reliability,
                                     region_scores_to_pixels, threshold_regions, top_fraction_regions)
from rrn_core.methods.signals import (critic_auroc, loss_shares, pseudo_label_accuracy, region_accuracy,
                                      selection_disagreement)
from rrn_core.models.discriminator import DiscriminatorConfig, build_discriminator

# The critic_auroc signal's definition of a good region: pseudo-labels right on >= 90 %.
GOOD_REGION_ACCURACY = 0.9


@contextmanager
def frozen(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Let gradients flow *through* the critics to the branches, not *into* them."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@contextmanager
def evaluating(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Score regions without Dropout2d noise: keep/drop decisions should be stable."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def region_scores(critics: Sequence[nn.Module], probs: Sequence[Tensor], image: Tensor | None,
                  with_other: bool) -> tuple[list[Tensor], list[Tensor] | None]:
    """(own, other): s_r(D_k) and, if `with_other`, s_r(D_{1-k}) of branch k's prediction.

    Decisions, so no gradient, in eval mode (no Dropout2d noise) and in float32 (bf16
    would tie scores and move the keep decisions). With `with_other`, each critic
    scores both branches' predictions in one call on the two batches concatenated:
    the critic has no batch statistics (no normalisation layers) and draws no dropout
    masks in eval mode, so each sample's score is what a call on its own batch gives,
    for one pass over the weights instead of two. `other` only feeds the cross-check,
    so it is not computed when that term is off (and during the warm-up).
    """
    def sigmoid_grid(logits: Tensor) -> Tensor:
        return torch.sigmoid(logits.float())[:, 0]

    with torch.no_grad(), evaluating(critics), torch.autocast(probs[0].device.type, enabled=False):
        if not with_other:
            return [sigmoid_grid(critics[k](probs[k].detach(), image)[0]) for k in (0, 1)], None
        both = torch.cat([p.detach() for p in probs])
        images = None if image is None else torch.cat([image, image])
        # scores[j][k]: critic j's scores of branch k's prediction.
        scores = [sigmoid_grid(critic(both, images)[0]).chunk(2) for critic in critics]
    return [scores[k][k] for k in (0, 1)], [scores[1 - k][k] for k in (0, 1)]


def fused_adam_supported(params: Sequence[Tensor]) -> bool:
    """Whether torch has a fused Adam kernel for all these parameters (else: its loop).
    CUDA has one since torch 2.0, the CPU since 2.4."""
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    devices = {"cuda"} | ({"cpu"} if version >= (2, 4) else set())
    return bool(params) and all(p.device.type in devices and p.is_floating_point() for p in params)


class RRNConfig(CPSConfig):
    """CPS's settings plus the critics, the selection terms and the region weights."""

    name: Literal["rrn"] = "rrn"  # type: ignore[assignment]
    w_select: float = Field(1.0, ge=0.0)
    w_drl: float = Field(1.0, ge=0.0, le=1.0)  # final share of the region-weighted CPS loss
    w_fm: float = Field(0.1, ge=0.0)
    tau_region: float = Field(0.6, ge=0.0, le=1.0)
    # Which regions a critic trusts: "threshold" (the release: score > tau_region) or
    # "top_fraction" (ours: the best-scored keep_fraction of the batch's regions), for
    # critics whose scores for every prediction collapse below any fixed tau.
    region_rule: Literal["threshold", "top_fraction"] = "threshold"
    keep_fraction: float = Field(0.5, gt=0.0, le=1.0)
    # Normaliser of the selection terms: the kept pixel count (the release, rrn_release)
    # or every valid pixel (ours, the default: a few kept regions then weigh little).
    select_per: Literal["kept", "valid"] = "valid"
    drl_rampup: float = Field(0.3, gt=0.0, le=1.0)
    # How the pseudo-label terms (cps, select, cross) are weighted: "added" (the
    # release): each on top of CPS's, so RRN trains with about (w_cps + 2 w_select) /
    # w_cps times CPS's unlabeled loss; "shared" (ours): they share CPS's weight w_cps
    # in proportion to their weights (formula in RRN.forward), so RRN's terms change which
    # pseudo-labels a pixel learns from, not how much unlabeled loss there is.
    pseudo_label_weight: Literal["added", "shared"] = "shared"
    # Region weights of the dynamic region-loss correction (both ours):
    # "agreement": w_r = a_r * s_r(D1) * s_r(D2), one weight for both directions;
    # "teacher": the loss of branch k on branch j's pseudo-labels is weighted by
    #   s_r(D_j), the teacher's critic's estimate that its labels in r are right.
    drl_weight: Literal["agreement", "teacher"] = "agreement"
    # Self-training (selection, cross-check, DRL) starts after this many passes over
    # the unlabeled set; before it, RRN trains as CPS while its critics learn.
    warmup_epochs: float = Field(1.0, ge=0.0)
    cross_check: bool = True
    drl: bool = True
    feature_matching: bool = True
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)


class RRN(Method):
    config_model = RRNConfig
    num_branches = 2
    num_critics = 2
    mcfg: RRNConfig

    @classmethod
    def warmup_iters(cls, mcfg: MethodSettings, steps_per_epoch: int) -> float:
        assert isinstance(mcfg, RRNConfig)
        return mcfg.warmup_epochs * steps_per_epoch

    @classmethod
    def build_critic(cls, mcfg: MethodSettings, num_classes: int, crop_size: int) -> nn.Module:
        assert isinstance(mcfg, RRNConfig)
        return build_discriminator(mcfg.discriminator, num_classes, crop_size)

    def critic_optimizer(self) -> torch.optim.Optimizer:
        """Adam, fused: one kernel over all critic tensors instead of ~10 elementwise passes
        per tensor (the same update to float rounding); 5x faster on CPU for two critics of
        2.8 M parameters each, where the per-tensor loop cost a third of a cps step."""
        disc_cfg = self.mcfg.discriminator
        params = list(self.discriminators.parameters())
        return torch.optim.Adam(params, lr=disc_cfg.lr, betas=disc_cfg.betas, fused=fused_adam_supported(params))

    def trusted(self, scores: Tensor) -> Tensor:
        """Regions a critic trusts under the configured rule: bool [B,R,R]."""
        mc = self.mcfg
        if mc.region_rule == "top_fraction":
            return top_fraction_regions(scores, mc.keep_fraction)
        return threshold_regions(scores, mc.tau_region)

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """CPS's terms plus the critics' terms; the critics' passes over this step:

        - region scores: one eval-mode, no-grad call per critic on both branches'
          predictions (`region_scores`; only its own branch's during the warm-up);
        - feature matching: per critic, a train-mode no-grad call on the one-hot
          labels and a train-mode call on its branch's prediction that backpropagates
          to the branch (frozen weights);
        - its own update (`critic_loss`): one train-mode call with gradients.
        Each call differs from every other in input, mode or gradient, so none can reuse
        another's result (but for the first conv block, before any dropout, which a
        score call and the feature-matching call on the same prediction share: ~6 % of
        a pass, left unshared). The train-mode calls stay separate and in this order:
        each draws its own Dropout2d masks from the global generator, and batching or
        reordering them would change which masks each term sees.
        """
        mc = self.mcfg
        disc_cfg = mc.discriminator
        t = cps_terms(self, batch)
        x_l, y_l = batch["labeled"]["image"], batch["labeled"]["mask"]
        num_classes = t.logits_mixed[0].shape[1]
        size = tuple(y_l.shape[-2:])
        image_l = denormalize(x_l) if disc_cfg.with_image else None
        image_m = denormalize(t.image_mixed) if disc_cfg.with_image else None
        probs = [softmax(logits) for logits in t.logits_mixed]
        critics = [unwrap(d) for d in self.discriminators]
        valid = t.ignore_mixed != IGNORE_INDEX

        # Region scores s_r(D_j) of branch k's prediction; `other` feeds only the cross-check.
        self_training = ctx.epoch >= mc.warmup_epochs
        own, other = region_scores(critics, probs, image_m, with_other=self_training and mc.cross_check)
        trusted_own = [self.trusted(s) for s in own]
        keep = [region_scores_to_pixels(r, size) for r in trusted_own]

        scalars = dict(t.scalars)
        scalars.update(self.health(own, trusted_own, keep, t))

        # Step 6: per-region reliability w_r = a_r * s_r(D1) * s_r(D2).
        preds = [hard_labels(logits.detach()) for logits in t.logits_mixed]
        agreement = region_agreement(preds[0], preds[1], valid, disc_cfg.regions_per_side)
        weights = region_reliability(agreement, own[0], own[1])
        scalars["region_weight"] = weights.mean()
        scalars["region_weight_spread"] = effective_region_fraction(weights)
        scalars["region_agreement"] = agreement.mean()

        ramp = unsup_weight(self.mcfg, ctx)
        scalars["unsup_ramp"] = torch.tensor(ramp)
        pseudo_terms: dict[str, Tensor] = {}   # CE terms against pseudo-labels, unweighted
        cross_sup = t.cps
        if self_training:
            if mc.drl:
                drl_share = min(1.0, mc.w_drl * linear_rampup(ctx.progress, mc.drl_rampup))
                # Branch k learns from teacher j = 1 - k; each direction has its weights.
                cross_sup = sum(
                    dynamic_region_loss(per_region_ce(t.logits_mixed[k], t.pseudo[1 - k], disc_cfg.regions_per_side),
                                        own[1 - k] if mc.drl_weight == "teacher" else weights, drl_share)
                    for k in (0, 1))
                scalars["loss_drl"] = cross_sup.detach()
                scalars["drl_ramp"] = torch.tensor(drl_share)
            select = sum(local_selection_loss(t.logits_mixed[k], t.pseudo[k], keep[k], mc.select_per)
                         for k in (0, 1))
            scalars["loss_select"] = select.detach()
            scalars["select_vs_cps_disagree"] = selection_disagreement(t.pseudo, keep, valid)
            pseudo_terms["select"] = select
            if other is not None:
                both = [region_scores_to_pixels(trusted_own[k] & self.trusted(other[k]), size) for k in (0, 1)]
                cross = sum(local_selection_loss(t.logits_mixed[k], t.pseudo[k], both[k], mc.select_per)
                            for k in (0, 1))
                scalars["loss_cross"] = cross.detach()
                pseudo_terms["cross"] = cross
        pseudo_terms["cps"] = cross_sup
        term_weights = {"cps": mc.w_cps, "select": mc.w_select, "cross": mc.w_select}
        # shared (ours): L'_t = w_cps * w_t L_t / sum_s w_s over the terms present, so they
        # split CPS's one weight; added (the release): L'_t = w_t L_t.
        total = sum(term_weights[name] for name in pseudo_terms)
        scale = (mc.w_cps / total if total > 0 else 0.0) if mc.pseudo_label_weight == "shared" else 1.0
        terms = {name: (scale * term_weights[name]) * term for name, term in pseudo_terms.items()}
        unsup = sum(terms.values(), x_l.new_zeros(()))

        # Step 7: feature matching through frozen critics.
        real = one_hot(y_l, num_classes)
        if mc.feature_matching and mc.w_fm > 0:
            with frozen(critics):
                fm = x_l.new_zeros(())
                for k in (0, 1):
                    with torch.no_grad():
                        feat_real = critics[k](real, image_l)[1]
                    fm = fm + feature_matching_loss(feat_real, critics[k](probs[k], image_m)[1])
            scalars["loss_fm"] = fm.detach()
            terms["fm"] = mc.w_fm * fm
            unsup = unsup + mc.w_fm * fm
        loss = t.sup + ramp * unsup
        scalars.update(loss_shares(t.sup, {k: ramp * v for k, v in terms.items()}))

        disc_loss = self.critic_loss(real, y_l, probs, t, image_l, image_m)
        scalars["loss_disc"] = disc_loss.detach()
        return StepOutput(loss=loss, disc_loss=disc_loss, scalars=scalars)

    def critic_loss(self, real: Tensor, y_l: Tensor, probs: list[Tensor], t: CPSTerms, image_l: Tensor | None,
                    image_m: Tensor | None) -> Tensor:
        """Step 9, the critics' own objective, on detached predictions; one forward per
        critic (real and fake concatenated) so a DDP-wrapped critic is happy."""
        disc_cfg = self.mcfg.discriminator
        total = real.new_zeros(())
        for k, critic in enumerate(self.discriminators):
            if disc_cfg.objective == "accuracy":
                # (ours) The branch's own labeled prediction, scored against the truth.
                logits_l = t.logits_labeled[k].detach()
                acc, known = region_accuracy(hard_labels(logits_l), y_l, disc_cfg.regions_per_side)
                z = critic(softmax(logits_l), image_l)[0]
                total = total + region_accuracy_bce(z, acc, known, disc_cfg.good_accuracy)
                continue
            inputs = torch.cat([real, probs[k].detach()])
            images = torch.cat([image_l, image_m]) if disc_cfg.with_image else None
            logits = critic(inputs, images)[0]
            total = total + discriminator_bce(logits[:real.shape[0]], logits[real.shape[0]:])
        return total

    def health(self, own: list[Tensor], trusted: list[Tensor], keep: list[Tensor],
               t: CPSTerms) -> dict[str, Tensor]:
        """What the critics know: kept share, pseudo-label accuracy on kept and rejected
        pixels, and the AUROC of s_r for regions whose pseudo-labels are >= 90 % right."""
        disc_cfg = self.mcfg.discriminator
        gt = t.gt_mixed
        aurocs = torch.stack([critic_auroc(own[k], t.pseudo[k], gt, disc_cfg.regions_per_side, GOOD_REGION_ACCURACY)
                              for k in (0, 1)])
        return {
            "regions_kept": torch.stack([r.float().mean() for r in trusted]).mean(),
            "pseudo_acc_kept": pseudo_label_accuracy(t.pseudo[0], gt, keep[0]),
            "pseudo_acc_rejected": pseudo_label_accuracy(t.pseudo[0], gt, ~keep[0]),
            "critic_auroc": aurocs.nanmean(),
        }
