"""Each method's training step on a hand-made batch: finite losses, the right terms,
parameters that move, and RRN's region machinery switching with its thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from rrn_core.config import RunConfig
from rrn_core.loop import apply_step, build_optimizers
from rrn_core.methods import StepContext
from rrn_core.methods.build import build_method
from rrn_core.methods.table import method_class

from method_lists import all_methods, semi_supervised_methods

NUM_CLASSES = 3
CROP = 32


def tiny_config(method: str, **method_fields) -> RunConfig:
    """A tiny run of `method`; `method_fields` are applied where the method has them
    (`conf_thresh` is FixMatch's, `tau_region` RRN's), as a grid over methods does."""
    section = {"name": "rrn", "warmup_epochs": 0,
               "discriminator": {"regions_per_side": 2, "base_channels": 8}, **method_fields}
    tree = {
        "data": {"root": "unused", "num_classes": NUM_CLASSES, "crop_size": CROP},
        "model": {"backbone": "resnet18d", "base_width": 8,
                  "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
        "method": {k: v for k, v in section.items()
                   if k in method_class(method).config_model.model_fields},
    }
    tree["method"]["name"] = method
    return RunConfig.model_validate(tree)


def make_batch(seed: int = 0, b: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.randn(b, 3, CROP, CROP, generator=g)  # noqa: E731
    mask = lambda: torch.randint(0, NUM_CLASSES, (b, CROP, CROP), generator=g)  # noqa: E731
    box = torch.zeros(b, CROP, CROP, dtype=torch.long)
    box[:, 8:24, 8:24] = 1
    ignore = torch.zeros(b, CROP, CROP, dtype=torch.long)
    ignore[:, :, -4:] = 255  # padding on the right
    unl = lambda: {"image_weak": img(), "image_strong": img(), "ignore": ignore.clone(),  # noqa: E731
                   "cutmix_box": box.clone(), "mask": mask()}
    return {"labeled": {"image": img(), "mask": mask()}, "unlabeled_a": unl(), "unlabeled_b": unl()}


#: The terms each method logs (a method not listed: only the checks every method gets).
EXPECTED_TERMS = {
    "supervised": {"loss_sup"},
    "cps": {"loss_sup", "loss_cps", "pseudo_acc"},
    "fixmatch": {"loss_sup", "loss_unsup", "pseudo_acc", "confident_fraction"},
    "rrn": {"loss_sup", "loss_cps", "loss_select", "loss_cross", "loss_drl", "loss_fm",
            "loss_disc", "regions_kept", "region_weight", "region_weight_spread", "pseudo_acc",
            "pseudo_acc_kept", "pseudo_acc_rejected", "critic_auroc", "unsup_ramp",
            "select_vs_cps_disagree", "share_sup", "share_cps", "share_select", "share_fm"},
}
# Health signals that are NaN when not measurable in a batch (e.g. every region kept:
# no rejected pixel; every region good: no AUROC).
MAY_BE_NAN = {"pseudo_acc_kept", "pseudo_acc_rejected", "critic_auroc"}


@pytest.mark.parametrize("name", all_methods())
def test_step_gives_finite_losses_and_moves_parameters(name: str) -> None:
    cfg = tiny_config(name, conf_thresh=0.0, tau_region=0.0)
    method = build_method(cfg, NUM_CLASSES)
    method.train()
    seg_opt, disc_opt = build_optimizers(method, cfg)
    before = [p.detach().clone() for p in method.parameters()]
    out = method(make_batch(), StepContext(step=5, total_steps=10, epoch=2.0))
    assert torch.isfinite(out.loss)
    assert EXPECTED_TERMS.get(name, set()) <= set(out.scalars)
    for key, value in out.scalars.items():
        assert math.isfinite(float(value)) or key in MAY_BE_NAN, key
    apply_step(out, seg_opt, disc_opt, torch.amp.GradScaler("cpu", enabled=False))
    moved = [not torch.equal(a, p.detach()) for a, p in zip(before, method.parameters())]
    assert sum(moved) / len(moved) > 0.9  # (a few BN-free params may legitimately stay)
    for k, branch in enumerate(method.branches):
        changed = any(not torch.equal(a, p) for a, p in zip(before, branch.parameters()))
        assert changed, f"branch {k} did not move"
    if name == "rrn":
        critic_params = list(method.discriminators.parameters())
        assert all(p.grad is not None for p in critic_params)


def test_rrn_without_its_terms_is_exactly_cps() -> None:
    # The ablation baseline the label-efficiency bench relies on: with selection, DRL and
    # feature matching off, RRN's branch update must be CPS's, bit for bit.
    ctx = StepContext(step=5, total_steps=10, epoch=2.0)
    results = []
    for name, fields in (("cps", {}), ("rrn", {"w_select": 0.0, "drl": False, "w_fm": 0.0, "tau_region": 0.0})):
        cfg = tiny_config(name, **fields)
        method = build_method(cfg, NUM_CLASSES)
        method.train()
        seg_opt, disc_opt = build_optimizers(method, cfg)
        torch.manual_seed(1)
        out = method(make_batch(), ctx)
        apply_step(out, seg_opt, disc_opt, torch.amp.GradScaler("cpu", enabled=False))
        results.append((out.loss.detach(), [p.detach().clone() for p in method.branches.parameters()]))
    (cps_loss, cps_params), (rrn_loss, rrn_params) = results
    assert torch.equal(cps_loss, rrn_loss)
    assert all(torch.equal(a, b) for a, b in zip(cps_params, rrn_params, strict=True))


def test_branches_start_different() -> None:
    method = build_method(tiny_config("cps"), NUM_CLASSES)
    a, b = (list(br.parameters()) for br in method.branches)
    assert any(not torch.equal(x, y) for x, y in zip(a, b))


def _rrn_scalars(**fields) -> dict:
    cfg = tiny_config("rrn", **fields)
    torch.manual_seed(0)
    method = build_method(cfg, NUM_CLASSES)
    out = method(make_batch(), StepContext(step=5, total_steps=10, epoch=2.0))
    return {k: float(v) for k, v in out.scalars.items()}


def test_region_threshold_controls_selection() -> None:
    # Sigmoid scores lie strictly in (0, 1): tau 0 keeps every region, tau 1 none.
    keep_all = _rrn_scalars(tau_region=0.0)
    keep_none = _rrn_scalars(tau_region=1.0)
    assert keep_all["regions_kept"] == 1.0 and keep_none["regions_kept"] == 0.0
    assert keep_all["loss_select"] > 0 and keep_none["loss_select"] == 0.0
    assert keep_none["loss_cross"] == 0.0
    assert 0.0 <= keep_all["region_weight"] <= 1.0


def test_top_fraction_rule_keeps_regions_whatever_the_scores() -> None:
    # tau 1 keeps nothing under the threshold rule; the rank rule ignores tau.
    ranked = _rrn_scalars(tau_region=1.0, region_rule="top_fraction", keep_fraction=0.5)
    assert 0.5 <= ranked["regions_kept"] < 1.0
    assert ranked["loss_select"] > 0


def test_self_training_terms_wait_for_warmup() -> None:
    cfg = tiny_config("rrn", warmup_epochs=1.0)
    method = build_method(cfg, NUM_CLASSES)
    early = method(make_batch(), StepContext(step=0, total_steps=10, epoch=0.5))
    late = method(make_batch(), StepContext(step=5, total_steps=10, epoch=1.5))
    assert "loss_select" not in early.scalars and "loss_drl" not in early.scalars
    assert "loss_select" in late.scalars and "loss_drl" in late.scalars
    assert "loss_fm" in early.scalars and "loss_disc" in early.scalars


@pytest.mark.parametrize("weighting", ["added", "shared"])
def test_rrn_loss_is_its_terms_weighted_as_documented(weighting: str) -> None:
    """added (the release): sup + ramp (w_cps L_drl + w_select (L_sel + L_cross) + w_fm L_fm);
    shared (ours): the three pseudo-label terms share w_cps in proportion to their weights."""
    fields = {"w_cps": 2.0, "w_select": 0.5, "w_fm": 0.1, "tau_region": 0.0, "pseudo_label_weight": weighting}
    s = _rrn_scalars(**fields)
    cfg = tiny_config("rrn", **fields)
    torch.manual_seed(0)
    out = build_method(cfg, NUM_CLASSES)(make_batch(), StepContext(step=5, total_steps=10, epoch=2.0))
    drl, sel, cross, fm = s["loss_drl"], s["loss_select"], s["loss_cross"], s["loss_fm"]
    assert sel > 0 and cross > 0
    if weighting == "added":
        pseudo = 2.0 * drl + 0.5 * (sel + cross)
    else:   # L'_t = w_cps * w_t L_t / sum_s w_s: the three terms split w_cps = 2
        pseudo = 2.0 * (2.0 * drl + 0.5 * sel + 0.5 * cross) / (2.0 + 0.5 + 0.5)
    expected = s["loss_sup"] + s["unsup_ramp"] * (pseudo + 0.1 * fm)
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)


def test_drl_equals_plain_cps_before_the_ramp() -> None:
    """At ramp 0 the corrected loss is the per-region mean of the CPS loss."""
    s = _rrn_scalars(drl_rampup=1.0, w_drl=1.0)
    assert s["drl_ramp"] == pytest.approx(0.5)  # step 5 of 10, ramp over the whole run
    s0 = _rrn_scalars(w_drl=0.0)
    assert s0["drl_ramp"] == 0.0
    assert s0["loss_drl"] == pytest.approx(s0["loss_cps"], rel=0.05)


@pytest.mark.parametrize("name", semi_supervised_methods())
def test_step_under_bf16_autocast_matches_fp32(name: str) -> None:
    # CPU autocast stands in for the CUDA AMP path: every loss must cope with bf16
    # logits and critic outputs (casts to float32 where it matters) and stay close.
    losses = {}
    for dtype in (None, torch.bfloat16):
        cfg = tiny_config(name, conf_thresh=0.0, tau_region=0.0)
        method = build_method(cfg, NUM_CLASSES)
        method.train()
        seg_opt, disc_opt = build_optimizers(method, cfg)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = method(make_batch(), StepContext(step=5, total_steps=10, epoch=2.0))
        for key, value in out.scalars.items():
            assert math.isfinite(float(value)) or key in MAY_BE_NAN, (dtype, key)
        assert out.loss.dtype == torch.float32
        apply_step(out, seg_opt, disc_opt, torch.amp.GradScaler("cpu", enabled=False))
        assert all(torch.isfinite(p).all() for p in method.parameters())
        losses[dtype] = float(out.loss.detach())
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=5e-2)


@pytest.mark.parametrize("objective", ["accuracy", "adversarial"])
def test_critic_objective_is_the_documented_loss(objective: str) -> None:
    """The critics' loss is region_accuracy_bce on each branch's own labeled prediction
    (ours) or the release's real/fake BCE; recomputed here from the same forwards."""
    from rrn_core.methods.cps import cps_terms
    from rrn_core.methods.losses import discriminator_bce, one_hot, region_accuracy_bce
    from rrn_core.methods.signals import region_accuracy

    cfg = tiny_config("rrn", discriminator={"regions_per_side": 2, "base_channels": 8, "dropout": 0.0,
                                            "objective": objective, "good_accuracy": 0.5})
    torch.manual_seed(0)
    method = build_method(cfg, NUM_CLASSES)
    method.train()
    batch = make_batch()
    torch.manual_seed(1)
    out = method(batch, StepContext(step=5, total_steps=10, epoch=2.0))
    torch.manual_seed(1)
    t = cps_terms(method, batch)
    y_l = batch["labeled"]["mask"]
    expected = torch.zeros(())
    for k, critic in enumerate(method.discriminators):
        if objective == "accuracy":
            logits_l = t.logits_labeled[k].detach()
            acc, known = region_accuracy(logits_l.argmax(1), y_l, 2)
            expected = expected + region_accuracy_bce(critic(logits_l.float().softmax(1))[0], acc, known, 0.5)
        else:
            real = critic(one_hot(y_l, NUM_CLASSES))[0]
            fake = critic(t.logits_mixed[k].detach().float().softmax(1))[0]
            expected = expected + discriminator_bce(real, fake)
    assert float(out.disc_loss) == pytest.approx(float(expected), rel=1e-5)


def test_unsup_rampup_scales_every_unlabeled_term() -> None:
    """At step 0 the collapse guard weighs the unlabeled terms by e^-5; off, by 1."""
    batch = make_batch()
    losses = {}
    for ramp in (0.0, 0.5):
        torch.manual_seed(0)
        method = build_method(tiny_config("cps", unsup_rampup=ramp), NUM_CLASSES)
        out = method(batch, StepContext(step=0, total_steps=10, epoch=0.0))
        losses[ramp] = (float(out.loss), float(out.scalars["loss_sup"]), float(out.scalars["loss_cps"]))
    total, sup, cps = losses[0.5]
    assert total == pytest.approx(sup + math.exp(-5.0) * cps, rel=1e-5)
    total, sup, cps = losses[0.0]
    assert total == pytest.approx(sup + cps, rel=1e-5)


class SyncCounter:
    """Counts the calls that make the host wait for a tensor's value."""

    PATCHED = ("item", "tolist", "__bool__", "__float__", "__int__")

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._saved: dict[str, object] = {}

    def __enter__(self) -> SyncCounter:
        for name in self.PATCHED:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def counted(tensor, *args, _name=name, _original=original, **kwargs):
                self.calls.append(_name)
                return _original(tensor, *args, **kwargs)
            setattr(torch.Tensor, name, counted)
        original_getitem = torch.Tensor.__getitem__
        self._saved["__getitem__"] = original_getitem

        def getitem(tensor, index):
            parts = index if isinstance(index, tuple) else (index,)
            if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
                self.calls.append("bool-mask index")
            return original_getitem(tensor, index)
        torch.Tensor.__getitem__ = getitem
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize("name", semi_supervised_methods())
def test_a_step_does_not_wait_for_the_device(name):
    """No host sync in a method's forward (the loop checks the loss once per log)."""
    method = build_method(tiny_config(name, conf_thresh=0.0, tau_region=0.0), NUM_CLASSES)
    method.train()
    batch = make_batch()
    with SyncCounter() as counter:
        method(batch, StepContext(step=5, total_steps=10, epoch=2.0))
    assert counter.calls == [], counter.calls


def test_sync_counter_sees_what_it_must():
    x = torch.arange(4.0)
    with SyncCounter() as counter:
        x.sum().item()
        _ = x[x > 1]
        bool(x[0] > 0)
    assert counter.calls == ["item", "bool-mask index", "__bool__"]


def test_drl_teacher_weights_differ_from_agreement_weights_only_once_ramped():
    """drl_weight=teacher re-weights each direction by its teacher's critic; at share 0
    both weightings reduce to the plain per-region mean of the cross loss."""
    flat = [_rrn_scalars(w_drl=0.0, drl_weight=w)["loss_drl"] for w in ("agreement", "teacher")]
    assert flat[0] == pytest.approx(flat[1], rel=1e-6)
    full = [_rrn_scalars(w_drl=1.0, drl_rampup=0.1, drl_weight=w)["loss_drl"] for w in ("agreement", "teacher")]
    assert full[0] != pytest.approx(full[1], rel=1e-4)
