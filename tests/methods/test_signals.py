"""Health signals on hand-made cases whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from rrn_core.methods.signals import binary_auroc, critic_auroc, pseudo_label_accuracy, region_accuracy


def test_auroc_perfect_inverted_and_uninformative() -> None:
    pos = torch.tensor([True, True, False, False])
    assert float(binary_auroc(torch.tensor([0.9, 0.8, 0.2, 0.1]), pos)) == 1.0
    assert float(binary_auroc(torch.tensor([0.1, 0.2, 0.8, 0.9]), pos)) == 0.0
    # Every score tied: ties count half -> 0.5, the "knows nothing" value.
    assert float(binary_auroc(torch.full((4,), 0.3), pos)) == 0.5


def test_auroc_counts_pairs_with_ties_half() -> None:
    # pos scores {0.9, 0.5}, neg {0.5, 0.1}: pairs (0.9>0.5) (0.9>0.1) (0.5=0.5 -> 1/2) (0.5>0.1)
    # AUROC = (1 + 1 + 0.5 + 1) / 4 = 0.875.
    scores = torch.tensor([0.9, 0.5, 0.5, 0.1])
    pos = torch.tensor([True, True, False, False])
    assert float(binary_auroc(scores, pos)) == pytest.approx(0.875)


def test_auroc_is_nan_when_a_side_is_empty() -> None:
    assert math.isnan(float(binary_auroc(torch.tensor([0.2, 0.4]), torch.tensor([True, True]))))
    assert math.isnan(float(binary_auroc(torch.tensor([0.2, 0.4]), torch.tensor([False, False]))))


def test_region_accuracy_leaves_out_unknown_pixels() -> None:
    # 2x4 image, R = 1... use R = 2 on a 2x2 grid of 1x2 regions.
    gt = torch.tensor([[[1, 1, 2, 255], [0, 0, 255, 255]]])
    pred = torch.tensor([[[1, 0, 2, 2], [0, 0, 1, 1]]])
    acc, known = region_accuracy(pred, gt, regions_per_side=2)
    # Regions: top-left {1,1} vs {1,0}: 1/2; top-right {2} known only: 1; bottom-left 2/2;
    # bottom-right: no known pixel -> not known.
    assert acc[0].tolist() == [[0.5, 1.0], [1.0, 0.0]]
    assert known[0].tolist() == [[True, True], [True, False]]


def test_critic_auroc_on_regions_with_known_answer() -> None:
    # Four 1x1 regions (R = 2 on a 2x2 image), one pixel each. Pseudo-labels right in
    # regions 0 and 3; the critic scores them 0.8 and 0.7, the wrong ones 0.6 and 0.1:
    # every good region outranks every bad one -> 1. Flip the scores -> 0.
    gt = torch.tensor([[[1, 2], [3, 4]]])
    pseudo = torch.tensor([[[1, 0], [0, 4]]])
    scores = torch.tensor([[[0.8, 0.6], [0.1, 0.7]]])
    assert float(critic_auroc(scores, pseudo, gt, 2)) == 1.0
    assert float(critic_auroc(1 - scores, pseudo, gt, 2)) == 0.0
    # A region whose ground truth is all ignore is left out, not counted as bad.
    gt_ignored = gt.clone()
    gt_ignored[0, 1, 0] = 255
    scores_bad_high = scores.clone()
    scores_bad_high[0, 1, 0] = 0.99
    assert float(critic_auroc(scores_bad_high, pseudo, gt_ignored, 2)) == 1.0


def test_pseudo_label_accuracy_where_and_nan() -> None:
    gt = torch.tensor([[1, 2, 255, 3]])
    pseudo = torch.tensor([[1, 0, 2, 3]])
    assert float(pseudo_label_accuracy(pseudo, gt)) == pytest.approx(2 / 3)
    where = torch.tensor([[True, True, False, False]])
    assert float(pseudo_label_accuracy(pseudo, gt, where)) == pytest.approx(1 / 2)
    assert math.isnan(float(pseudo_label_accuracy(pseudo, gt, torch.zeros_like(where))))
