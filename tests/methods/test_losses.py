"""Every loss on a small case whose value is worked out by hand in the comments.

Per-pixel logits are chosen so softmax is exact: [0, 0] -> p = (1/2, 1/2);
[ln 3, 0] -> p = (3/4, 1/4); [0, ln 3] -> p = (1/4, 3/4); [2, -1] -> p_1 = 1 / (1 + e^3).
"""

from __future__ import annotations

import math

import pytest
import torch

from rrn_core.methods.losses import (ce_loss, confidence_masked_ce, cps_loss, discriminator_bce,
                                     dynamic_region_loss, effective_region_fraction, feature_matching_loss,
                                     linear_rampup, local_selection_loss, one_hot, per_pixel_ce,
                                     per_region_ce, region_accuracy_bce, region_agreement, region_mean,
                                     region_reliability, region_scores_to_pixels, sigmoid_rampup,
                                     threshold_regions, top_fraction_regions)

LN3 = math.log(3.0)
LOG2, LOG4, LOG4_3 = math.log(2.0), math.log(4.0), math.log(4.0 / 3.0)


def pixels(rows: list[list[list[float]]]) -> torch.Tensor:
    """[H][W][C] nested lists -> logits [1,C,H,W] (a 1-image batch)."""
    return torch.tensor(rows, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)


def labels(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.long)


def example() -> tuple[torch.Tensor, torch.Tensor]:
    """1x2x2x2 logits; CE per pixel vs target: log 2, log 4/3, log 4, ignored."""
    logits = pixels([[[0, 0], [LN3, 0]], [[0, LN3], [2, -1]]]).requires_grad_()
    return logits, labels([[0, 0], [0, 255]])


def test_per_pixel_ce() -> None:
    logits, target = example()
    expected = torch.tensor([[[LOG2, LOG4_3], [LOG4, 0.0]]])
    assert torch.allclose(per_pixel_ce(logits, target), expected, atol=1e-6)


def test_ce_loss_means_over_non_ignored_pixels() -> None:
    logits, target = example()
    assert ce_loss(logits, target).item() == pytest.approx((LOG2 + LOG4_3 + LOG4) / 3, abs=1e-6)


def test_ce_loss_all_ignored_is_zero_and_differentiable() -> None:
    logits, _ = example()
    loss = ce_loss(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_ce_is_float32_under_bf16_logits() -> None:
    logits, target = example()
    loss = ce_loss(logits.detach().bfloat16(), target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx((LOG2 + LOG4_3 + LOG4) / 3, abs=2e-2)


def test_cps_loss() -> None:
    # branch 1: px a [ln3,0] (argmax 0), px b [0,ln3] (argmax 1); branch 2: both [0,ln3] (argmax 1)
    logits_1 = pixels([[[LN3, 0], [0, LN3]]])
    logits_2 = pixels([[[0, LN3], [0, LN3]]])
    pseudo_1 = labels([[0, 255]])   # px b ignored in branch 1's pseudo-label
    pseudo_2 = labels([[1, 1]])
    # CE(x1, y2) = (log 4 + log 4/3) / 2 ; CE(x2, y1) = log 4 (px a only)
    expected = (LOG4 + LOG4_3) / 2 + LOG4
    assert cps_loss(logits_1, logits_2, pseudo_1, pseudo_2).item() == pytest.approx(expected, abs=1e-6)


def test_region_scores_to_pixels_partition() -> None:
    grid = torch.arange(9.0).reshape(1, 3, 3)
    # H = 10: rows 0-3 | 4-6 | 7-9 ; W = 5: cols 0-1 | 2-3 | 4
    row_blocks = [0] * 4 + [1] * 3 + [2] * 3
    col_blocks = [0, 0, 1, 1, 2]
    expected = torch.tensor([[[3.0 * r + c for c in col_blocks] for r in row_blocks]])
    assert torch.equal(region_scores_to_pixels(grid, (10, 5)), expected)
    assert torch.equal(region_scores_to_pixels(grid.unsqueeze(1), (10, 5)), expected)


def test_threshold_regions_is_strictly_above_tau() -> None:
    probs = torch.tensor([[[[0.7, 0.5], [0.61, 0.6]]]])
    trusted = threshold_regions(probs, 0.6)
    assert trusted.dtype == torch.bool and torch.equal(trusted, torch.tensor([[[True, False], [True, False]]]))
    keep = region_scores_to_pixels(trusted, (4, 4))
    expected = torch.tensor([[[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]], dtype=torch.bool)
    assert keep.dtype == torch.bool and torch.equal(keep, expected)


def test_top_fraction_regions_ranks_over_the_whole_batch() -> None:
    # Two images, 2x2 regions: all scores far below any usable tau, ranking still informative.
    scores = torch.tensor([[[0.010, 0.002], [0.030, 0.001]],
                           [[0.020, 0.004], [0.003, 0.005]]])
    top3 = top_fraction_regions(scores, 3 / 8)
    assert torch.equal(top3, torch.tensor([[[True, False], [True, False]],
                                           [[True, False], [False, False]]]))
    # ceil(0.3 * 8) = 3 regions as well; fraction 1 keeps all, ties at the cut are kept.
    assert torch.equal(top_fraction_regions(scores, 0.3), top3)
    assert top_fraction_regions(scores, 1.0).all()
    tied = torch.full((1, 2, 2), 0.2)
    assert top_fraction_regions(tied, 0.25).all()
    assert top_fraction_regions(scores.unsqueeze(1), 3 / 8).shape == (2, 2, 2)


def test_local_selection_loss() -> None:
    logits, _ = example()
    pseudo = labels([[0, 0], [0, 255]])
    keep = torch.tensor([[[True, False], [True, True]]])
    # kept and not ignored: (0,0) log 2 and (1,0) log 4
    assert local_selection_loss(logits, pseudo, keep).item() == pytest.approx((LOG2 + LOG4) / 2, abs=1e-6)
    nothing = local_selection_loss(logits, pseudo, torch.zeros_like(keep))
    assert nothing.item() == 0.0
    # per="valid": the same kept sum over all 3 non-ignored pixels
    per_valid = local_selection_loss(logits, pseudo, keep, per="valid")
    assert per_valid.item() == pytest.approx((LOG2 + LOG4) / 3, abs=1e-6)


def test_region_mean_and_its_gradient() -> None:
    values = torch.arange(16.0).reshape(1, 4, 4).requires_grad_()
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = False
    valid[0, 2:, 2:] = False
    means = region_mean(values, valid, 2)
    # TL {1,4,5} -> 10/3 ; TR {2,3,6,7} -> 4.5 ; BL {8,9,12,13} -> 10.5 ; BR none -> 0
    expected = torch.tensor([[[10 / 3, 4.5], [10.5, 0.0]]])
    assert torch.allclose(means, expected, atol=1e-6)
    means.sum().backward()
    assert values.grad[0, 0, 1].item() == pytest.approx(1 / 3)
    assert values.grad[0, 0, 0].item() == 0.0 and values.grad[0, 3, 3].item() == 0.0
    assert values.grad[0, 1, 2].item() == pytest.approx(1 / 4)


def test_region_agreement() -> None:
    pred_1 = labels([[0, 1, 2, 2], [0, 0, 2, 2], [1, 1, 0, 0], [1, 1, 0, 0]])
    pred_2 = labels([[0, 1, 2, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]])
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 2, 0] = False
    # TL: 3 of 4 agree ; TR: 1 of 4 ; BL: 3 of 3 valid ; BR: 4 of 4
    expected = torch.tensor([[[0.75, 0.25], [1.0, 1.0]]])
    assert torch.allclose(region_agreement(pred_1, pred_2, valid, 2), expected)


def test_region_reliability() -> None:
    agreement = torch.tensor([[[0.5, 1.0], [0.0, 0.8]]])
    s1 = torch.tensor([[[[0.8, 0.5], [0.9, 0.5]]]])
    s2 = torch.tensor([[[0.5, 0.5], [0.9, 1.0]]])
    expected = torch.tensor([[[0.2, 0.25], [0.0, 0.4]]])
    assert torch.allclose(region_reliability(agreement, s1, s2), expected)


def test_per_region_ce() -> None:
    # H=2, W=4, R=2: regions are rows {0},{1} x cols {0,1},{2,3}
    logits = pixels([[[0, 0], [LN3, 0], [0, LN3], [0, 0]],
                     [[LN3, 0], [0, 0], [2, -1], [0, LN3]]])
    target = labels([[0, 0, 1, 255], [1, 1, 255, 255]])
    expected = torch.tensor([[[(LOG2 + LOG4_3) / 2, LOG4_3], [(LOG4 + LOG2) / 2, 0.0]]])
    assert torch.allclose(per_region_ce(logits, target, 2), expected, atol=1e-6)


def test_dynamic_region_loss() -> None:
    losses = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    weights = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    # mean L = 2.5 ; w~ = (3/4, 0, 0, 1/4) -> sum w~ L = 0.75 + 1 = 1.75
    loss = dynamic_region_loss(losses, weights, ramp=0.25)
    assert loss.item() == pytest.approx(0.75 * 2.5 + 0.25 * 1.75)
    loss.backward()
    assert weights.grad is None  # weights are detached
    expected_grad = torch.tensor([[[0.75 / 4 + 0.25 * 0.75, 0.75 / 4], [0.75 / 4, 0.75 / 4 + 0.25 * 0.25]]])
    assert torch.allclose(losses.grad, expected_grad)
    # all-zero weights fall back to uniform: both terms are the mean
    assert dynamic_region_loss(losses, torch.zeros(1, 2, 2), ramp=0.7).item() == pytest.approx(2.5)
    assert dynamic_region_loss(losses, weights, ramp=0.0).item() == pytest.approx(2.5)


@pytest.mark.parametrize("progress, rampup, expected", [
    (0.0, 0.3, 0.0), (0.15, 0.3, 0.5), (0.3, 0.3, 1.0), (0.9, 0.3, 1.0), (-0.1, 0.3, 0.0), (0.5, 0.0, 1.0),
])
def test_linear_rampup(progress: float, rampup: float, expected: float) -> None:
    assert linear_rampup(progress, rampup) == pytest.approx(expected)


def test_feature_matching_loss() -> None:
    real = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]]], requires_grad=True)   # batch mean (2, 3)
    fake = torch.tensor([[[[0.0, 5.0]]]], requires_grad=True)                     # batch mean (0, 5)
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx((2 + 2) / 2)  # |2-0| and |3-5|, averaged
    loss.backward()
    assert real.grad is None  # the real side is a constant target
    assert torch.allclose(fake.grad, torch.tensor([[[[-0.5, 0.5]]]]))


def test_discriminator_bce() -> None:
    # BCE(sigma(z), 1) = log(1 + e^-z): z = 0 -> log 2, ln 3 -> log 4/3, -ln 3 -> log 4
    real = torch.tensor([[[[0.0, 0.0], [LN3, -LN3]]]])
    # BCE(sigma(z), 0) = log(1 + e^z): z = ln 3 -> log 4
    fake = torch.full((1, 1, 2, 2), LN3)
    expected = (LOG2 + LOG2 + LOG4_3 + LOG4) / 4 + LOG4
    assert discriminator_bce(real, fake).item() == pytest.approx(expected, abs=1e-6)


def test_confidence_masked_ce() -> None:
    logits, _ = example()
    pseudo = labels([[0, 0], [0, 1]])
    confidence = torch.tensor([[[0.4, 0.99], [0.96, 0.5]]])
    ignore = labels([[0, 0], [255, 0]])
    # padding excludes (1,0); confident (>= 0.5, equality counts): (0,1) and (1,1), not (0,0)
    # (0,1): log 4/3 ; (1,1): target 1 with [2, -1] -> log(1 + e^3) ; normaliser: 3 valid pixels
    expected = (LOG4_3 + math.log(1 + math.exp(3))) / 3
    value = confidence_masked_ce(logits, pseudo, confidence, 0.5, ignore)
    assert value.item() == pytest.approx(expected, abs=1e-6)
    # raise the threshold above every confidence: nothing counts
    assert confidence_masked_ce(logits, pseudo, confidence, 0.995, ignore).item() == 0.0


def test_one_hot_zero_at_ignored_pixels() -> None:
    out = one_hot(labels([[0, 2], [255, 1]]), 3)
    expected = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]],
                              [[0.0, 0.0], [0.0, 1.0]],
                              [[0.0, 1.0], [0.0, 0.0]]]])
    assert out.dtype == torch.float32 and torch.equal(out, expected)


def test_effective_region_fraction() -> None:
    uniform = torch.full((2, 2, 2), 0.3)
    assert float(effective_region_fraction(uniform)) == pytest.approx(1.0)
    one = torch.zeros(2, 2, 2)
    one[1, 0, 1] = 1e-4
    assert float(effective_region_fraction(one)) == pytest.approx(1 / 8)
    # two equal regions of four: (2w)^2 / (4 * 2w^2) = 1/2
    assert float(effective_region_fraction(torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))) == pytest.approx(0.5)
    assert float(effective_region_fraction(torch.zeros(1, 2, 2))) == 1.0


@pytest.mark.parametrize(("progress", "rampup", "expected"), [
    (0.0, 0.5, math.exp(-5.0)),          # exp(-5 (1 - 0)^2)
    (0.25, 0.5, math.exp(-5.0 * 0.25)),  # t/T = 1/2: exp(-5/4)
    (0.5, 0.5, 1.0), (0.9, 0.5, 1.0),    # done ramping
    (0.3, 0.0, 1.0),                     # no ramp: full weight at once
])
def test_sigmoid_rampup(progress: float, rampup: float, expected: float) -> None:
    assert sigmoid_rampup(progress, rampup) == pytest.approx(expected)


def test_region_accuracy_bce() -> None:
    # Two regions known, one not. Region 0: acc 0.95 >= 0.9 -> target 1, z = 0:
    # BCE = ln 2. Region 1: acc 0.5 -> target 0, z = ln 3: BCE = ln(1 + 3) = ln 4.
    # Region 2 is unknown (no labeled pixel) and must not count whatever its z.
    z = torch.tensor([[[0.0, math.log(3.0), 100.0]]])
    acc = torch.tensor([[[0.95, 0.5, 0.0]]])
    known = torch.tensor([[[True, True, False]]])
    loss = region_accuracy_bce(z, acc, known, good_accuracy=0.9)
    assert float(loss) == pytest.approx((math.log(2.0) + math.log(4.0)) / 2)
    # Exactly at the threshold counts as good: acc 0.9 -> target 1, z = 0 -> ln 2.
    edge = region_accuracy_bce(torch.zeros(1, 1, 1), torch.full((1, 1, 1), 0.9),
                               torch.ones(1, 1, 1, dtype=torch.bool), 0.9)
    assert float(edge) == pytest.approx(math.log(2.0))
