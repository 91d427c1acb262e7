"""RRN's critic passes are batched and shared (issue 14): the step must stay the same.

`UnbatchedRRN` below is the step as it was before: each critic run once per use (own
score, other score, feature matching on real and on fake, the critics' update), and
`argmax` for the hard predictions. The test runs both steps on one batch with the same
weights and the same random seed and compares every loss, every logged scalar and the
gradient of every parameter of the branches and the critics. The critics keep their
Dropout2d (p = 0.5): the train-mode passes must draw the same masks, in the same order,
as before, so this also fails if a train-mode pass is batched or reordered.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.transforms import denormalize
from rrn_core.methods import StepContext
from rrn_core.methods.base import Batch, StepOutput, softmax, unsup_weight, unwrap
from rrn_core.methods.build import build_method
from rrn_core.methods.cps import CPSTerms, cps_terms
from rrn_core.methods.losses import (discriminator_bce, dynamic_region_loss, effective_region_fraction,
                                     feature_matching_loss, linear_rampup, local_selection_loss, one_hot,
                                     per_region_ce, region_accuracy_bce, region_agreement,
                                     region_reliability, region_scores_to_pixels)
from rrn_core.methods.rrn import RRN, evaluating, frozen
from rrn_core.methods.signals import region_accuracy
from tests.methods.test_methods import NUM_CLASSES, make_batch, tiny_config


class UnbatchedRRN(RRN):
    """RRN's step before issue 14, verbatim but for the names: the equality oracle."""

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        mc = self.mcfg
        dc = mc.discriminator
        t = cps_terms(self, batch)
        x_l, y_l = batch["labeled"]["image"], batch["labeled"]["mask"]
        num_classes = t.logits_mixed[0].shape[1]
        size = tuple(y_l.shape[-2:])
        image_l = denormalize(x_l) if dc.with_image else None
        image_m = denormalize(t.image_mixed) if dc.with_image else None
        probs = [softmax(logits) for logits in t.logits_mixed]
        critics = [unwrap(d) for d in self.discriminators]
        valid = t.ignore_mixed != IGNORE_INDEX
        with torch.no_grad(), evaluating(critics), torch.autocast(x_l.device.type, enabled=False):
            own = [torch.sigmoid(critics[k](probs[k].detach(), image_m)[0].float())[:, 0] for k in (0, 1)]
            other = [torch.sigmoid(critics[1 - k](probs[k].detach(), image_m)[0].float())[:, 0] for k in (0, 1)]
        trusted_own = [self.trusted(s) for s in own]
        keep = [region_scores_to_pixels(r, size) for r in trusted_own]
        scalars = dict(t.scalars)
        scalars.update(self.health(own, trusted_own, keep, t))
        preds = [logits.detach().argmax(1) for logits in t.logits_mixed]
        agreement = region_agreement(preds[0], preds[1], valid, dc.regions_per_side)
        weights = region_reliability(agreement, own[0], own[1])
        scalars["region_weight"] = weights.mean()
        scalars["region_weight_spread"] = effective_region_fraction(weights)
        scalars["region_agreement"] = agreement.mean()
        ramp = unsup_weight(self.mcfg, ctx)
        scalars["unsup_ramp"] = torch.tensor(ramp)
        cross_sup = t.cps
        unsup = x_l.new_zeros(())
        if ctx.epoch >= mc.warmup_epochs:
            if mc.drl:
                drl_share = min(1.0, mc.w_drl * linear_rampup(ctx.progress, mc.drl_rampup))
                cross_sup = sum(
                    dynamic_region_loss(per_region_ce(t.logits_mixed[k], t.pseudo[1 - k], dc.regions_per_side),
                                        own[1 - k] if mc.drl_weight == "teacher" else weights, drl_share)
                    for k in (0, 1))
                scalars["loss_drl"] = cross_sup.detach()
                scalars["drl_ramp"] = torch.tensor(drl_share)
            select = sum(local_selection_loss(t.logits_mixed[k], t.pseudo[k], keep[k], mc.select_per)
                         for k in (0, 1))
            scalars["loss_select"] = select.detach()
            unsup = unsup + mc.w_select * select
            if mc.cross_check:
                both = [region_scores_to_pixels(trusted_own[k] & self.trusted(other[k]), size) for k in (0, 1)]
                cross = sum(local_selection_loss(t.logits_mixed[k], t.pseudo[k], both[k], mc.select_per)
                            for k in (0, 1))
                scalars["loss_cross"] = cross.detach()
                unsup = unsup + mc.w_select * cross
        unsup = unsup + mc.w_cps * cross_sup
        real = one_hot(y_l, num_classes)
        if mc.feature_matching and mc.w_fm > 0:
            with frozen(critics):
                fm = x_l.new_zeros(())
                for k in (0, 1):
                    with torch.no_grad():
                        feat_real = critics[k](real, image_l)[1]
                    fm = fm + feature_matching_loss(feat_real, critics[k](probs[k], image_m)[1])
            scalars["loss_fm"] = fm.detach()
            unsup = unsup + mc.w_fm * fm
        loss = t.sup + ramp * unsup
        disc_loss = self.unbatched_critic_loss(real, y_l, probs, t, image_l, image_m)
        scalars["loss_disc"] = disc_loss.detach()
        return StepOutput(loss=loss, disc_loss=disc_loss, scalars=scalars)

    def unbatched_critic_loss(self, real: Tensor, y_l: Tensor, probs: list[Tensor], t: CPSTerms,
                              image_l: Tensor | None, image_m: Tensor | None) -> Tensor:
        dc = self.mcfg.discriminator
        total = real.new_zeros(())
        for k, critic in enumerate(self.discriminators):
            if dc.objective == "accuracy":
                logits_l = t.logits_labeled[k].detach()
                acc, known = region_accuracy(logits_l.argmax(1), y_l, dc.regions_per_side)
                z = critic(softmax(logits_l), image_l)[0]
                total = total + region_accuracy_bce(z, acc, known, dc.good_accuracy)
                continue
            inputs = torch.cat([real, probs[k].detach()])
            images = torch.cat([image_l, image_m]) if dc.with_image else None
            logits = critic(inputs, images)[0]
            total = total + discriminator_bce(logits[:real.shape[0]], logits[real.shape[0]:])
        return total


def step_and_grads(method: RRN, batch: Batch, ctx: StepContext, seed: int
                   ) -> tuple[StepOutput, list[Tensor | None], list[Tensor | None]]:
    """One step's outputs and, as `apply_step` takes them, the gradient of the branches'
    loss on every parameter, then the critics' loss on every critic parameter."""
    torch.manual_seed(seed)
    out = method(batch, ctx)
    method.zero_grad(set_to_none=True)
    out.loss.backward()
    seg_grads = [None if p.grad is None else p.grad.clone() for p in method.parameters()]
    method.zero_grad(set_to_none=True)
    assert out.disc_loss is not None
    out.disc_loss.backward()
    disc_grads = [None if p.grad is None else p.grad.clone() for p in method.discriminators.parameters()]
    return out, seg_grads, disc_grads


def assert_same(a: Tensor | None, b: Tensor | None, what: str) -> None:
    assert (a is None) == (b is None), what
    if a is not None and b is not None:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True, msg=what)


CASES = {   # discriminator fields, method fields
    "accuracy": ({}, {}),
    "adversarial": ({"objective": "adversarial"}, {}),
    "accuracy+image": ({"with_image": True}, {}),
    "adversarial+image": ({"objective": "adversarial", "with_image": True}, {}),
    "top_fraction+teacher": ({}, {"region_rule": "top_fraction", "drl_weight": "teacher"}),
    "no_cross_check": ({}, {"cross_check": False}),
    "in_warmup": ({}, {"warmup_epochs": 5.0}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_batched_critic_passes_give_the_unbatched_losses_and_gradients(case: str) -> None:
    critic_fields, fields = CASES[case]
    # the oracle adds the pseudo-label terms at their own weights (the release's weighting)
    cfg = tiny_config("rrn", tau_region=0.5, pseudo_label_weight="added", **fields,
                      discriminator={"regions_per_side": 2, "base_channels": 8, **critic_fields})
    torch.manual_seed(0)
    method = build_method(cfg, NUM_CLASSES).train()
    assert isinstance(method, RRN)
    reference = UnbatchedRRN(method.mcfg, copy.deepcopy(list(method.branches)),
                             copy.deepcopy(list(method.discriminators))).train()
    assert any(isinstance(m, torch.nn.Dropout2d) and m.p > 0 for m in method.modules())
    batch = make_batch(seed=3, b=3)
    ctx = StepContext(step=5, total_steps=10, epoch=2.0)
    new, new_seg, new_disc = step_and_grads(method, batch, ctx, seed=7)
    old, old_seg, old_disc = step_and_grads(reference, batch, ctx, seed=7)

    assert_same(new.loss, old.loss, "loss")
    assert_same(new.disc_loss, old.disc_loss, "disc_loss")
    # the step now also reports what explains it (loss shares, selection vs CPS): the
    # reference predates them; everything both report must agree
    assert set(old.scalars) <= set(new.scalars)
    assert {k for k in set(new.scalars) - set(old.scalars)
            if not (k.startswith("share_") or k == "select_vs_cps_disagree")} == set()
    for key in old.scalars:
        assert_same(new.scalars[key], old.scalars[key], key)
    assert len(new_seg) == len(old_seg) and len(new_disc) == len(old_disc)
    names = [n for n, _ in method.named_parameters()]
    for name, a, b in zip(names, new_seg, old_seg, strict=True):
        assert_same(a, b, f"d loss / d {name}")
    critic_names = [n for n, _ in method.discriminators.named_parameters()]
    for name, a, b in zip(critic_names, new_disc, old_disc, strict=True):
        assert_same(a, b, f"d disc_loss / d {name}")
    # The comparison has teeth: the critics get gradients, and fm reaches the branches.
    assert all(g is not None and g.abs().sum() > 0 for g in new_disc)
    assert all(g is None for g in new_seg[-len(new_disc):])


def test_each_critic_scores_each_branch_in_one_batched_call() -> None:
    """own[k] = s(D_k) of branch k's prediction, other[k] = s(D_{1-k}) of it, as separate
    eval-mode calls give them; the critics' train mode is restored afterwards."""
    from rrn_core.methods.rrn import region_scores

    method = build_method(tiny_config("rrn"), NUM_CLASSES).train()
    critics = list(method.discriminators)
    g = torch.Generator().manual_seed(0)
    probs = [torch.randn(3, NUM_CLASSES, 32, 32, generator=g).mul(3).softmax(1) for _ in (0, 1)]
    calls = []
    for critic in critics:
        critic.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    own, other = region_scores(critics, probs, None, with_other=True)
    assert calls == [6, 6]
    assert other is not None and all(c.training for c in critics)
    with torch.no_grad():
        for c in critics:
            c.eval()
        for k in (0, 1):
            torch.testing.assert_close(own[k], critics[k].scores(probs[k])[:, 0])
            torch.testing.assert_close(other[k], critics[1 - k].scores(probs[k])[:, 0])
            assert not torch.allclose(own[k], other[k])
    calls.clear()
    own_only, none = region_scores(critics, probs, None, with_other=False)
    assert none is None and calls == [3, 3]
    for k in (0, 1):
        torch.testing.assert_close(own_only[k], own[k])


def test_fused_critic_optimizer_takes_plain_adams_steps() -> None:
    """The critics' fused Adam moves every parameter as torch's per-tensor Adam does."""
    from rrn_core.methods.rrn import fused_adam_supported

    method = build_method(tiny_config("rrn"), NUM_CLASSES)
    fused = method.critic_optimizer()
    assert fused.defaults["fused"] is fused_adam_supported(list(method.discriminators.parameters()))
    twin = copy.deepcopy(method.discriminators)
    start = [p.detach().clone() for p in twin.parameters()]
    dc = method.mcfg.discriminator
    plain = torch.optim.Adam(twin.parameters(), lr=dc.lr, betas=dc.betas, foreach=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(method.discriminators.parameters(), twin.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    for p, q, p0 in zip(method.discriminators.parameters(), twin.parameters(), start, strict=True):
        assert not torch.equal(q, p0)
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
