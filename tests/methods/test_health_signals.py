"""RRN's health signals on hand-computed cases: loss shares and selection-vs-CPS disagreement."""

from __future__ import annotations

import pytest
import torch

from rrn_core.methods.signals import loss_shares, selection_disagreement


def test_selection_disagreement_counts_kept_valid_pixels_where_the_targets_differ():
    p0 = torch.tensor([[[0, 1], [2, 3]]])
    p1 = torch.tensor([[[0, 0], [2, 0]]])                 # differs at (0,1) and (1,1)
    keep0 = torch.tensor([[[True, True], [False, True]]])  # kept: 3 pixels, 2 differ
    keep1 = torch.tensor([[[True, False], [True, False]]])  # kept: 2 pixels, 0 differ
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    share = selection_disagreement([p0, p1], [keep0, keep1], valid)
    assert share.item() == pytest.approx((2 / 3 + 0 / 2) / 2)
    valid[0, 1, 1] = False                                 # padding: never counted
    assert selection_disagreement([p0, p1], [keep0, keep1], valid).item() == pytest.approx((1 / 2) / 2)
    nothing = torch.zeros_like(keep0)
    assert selection_disagreement([p0, p1], [nothing, nothing], valid).item() == 0.0


def test_loss_shares_sum_to_one_and_follow_magnitudes():
    shares = loss_shares(torch.tensor(1.0), {"cps": torch.tensor(2.0), "select": torch.tensor(-1.0)})
    assert shares["share_sup"].item() == pytest.approx(0.25)
    assert shares["share_cps"].item() == pytest.approx(0.5)
    assert shares["share_select"].item() == pytest.approx(0.25)
    assert sum(v.item() for v in shares.values()) == pytest.approx(1.0)
