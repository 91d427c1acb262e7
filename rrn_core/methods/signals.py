"""Health signals: numbers that say whether a method is doing what it claims.

None of these is trained on. They answer the questions a result must survive: are
the pseudo-labels right (where the unlabeled ground truth is known: the synthetic
set, VOC's SBD masks), do RRN's critics know which regions are right, and do the
predictions still cover more than one class. NaN means "not measurable here", so a
dashboard shows a gap instead of a fake number.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rrn_core.constants import IGNORE_INDEX
from rrn_core.methods.losses import region_mean


def pseudo_label_accuracy(pseudo: Tensor, gt: Tensor, where: Tensor | None = None) -> Tensor:
    """acc = #{i: y^_i = y_i} / #{i: y_i, y^_i known (and where_i)}; NaN if that set is empty."""
    valid = (gt != IGNORE_INDEX) & (pseudo != IGNORE_INDEX)
    if where is not None:
        valid = valid & where.bool()
    count = valid.sum()
    correct = ((pseudo == gt) & valid).sum()
    return torch.where(count > 0, correct.float() / count.clamp(min=1).float(),
                       torch.full((), float("nan"), device=pseudo.device))


def region_accuracy(pred: Tensor, gt: Tensor, regions_per_side: int) -> tuple[Tensor, Tensor]:
    """(acc_r, known_r): pixel accuracy of `pred` in each region where the ground truth is
    known, and whether region r has any such pixel.  [B,R,R] float, [B,R,R] bool."""
    valid = (gt != IGNORE_INDEX) & (pred != IGNORE_INDEX)
    acc = region_mean((pred == gt).float(), valid, regions_per_side)
    known = region_mean(valid.float(), torch.ones_like(valid), regions_per_side) > 0
    return acc, known


def binary_auroc(scores: Tensor, positive: Tensor, valid: Tensor | None = None) -> Tensor:
    """AUROC = sum_{i pos, j neg} ([s_i > s_j] + [s_i = s_j] / 2) / (n_pos n_neg)  (Mann-Whitney U).

    Tied scores count half: 0.5 = the scores carry no information about `positive`,
    1 = every positive outranks every negative. NaN when either side is empty. Only
    samples with `valid` count. Computed over all pairs with masks, not by sorting
    or boolean indexing, so it never waits for the device (no data-dependent shapes):
    meant for the few hundred regions of a batch, O(n^2) memory.
    """
    s = scores.detach().flatten().float()
    pos = positive.flatten().bool()
    keep = torch.ones_like(pos) if valid is None else valid.flatten().bool()
    p = (pos & keep).float()
    n = (~pos & keep).float()
    diff = s[:, None] - s[None, :]
    wins = (diff > 0).float() + 0.5 * (diff == 0).float()
    u = (p[:, None] * n[None, :] * wins).sum()
    pairs = p.sum() * n.sum()
    return torch.where(pairs > 0, u / pairs.clamp(min=1), torch.full_like(u, float("nan")))


def critic_auroc(scores: Tensor, pseudo: Tensor, gt: Tensor, regions_per_side: int,
                 good_accuracy: float = 0.9) -> Tensor:
    """AUROC of region scores s_r for telling regions whose pseudo-label accuracy is at
    least `good_accuracy` from the rest; regions without known ground truth are left out."""
    acc, known = region_accuracy(pseudo, gt, regions_per_side)
    return binary_auroc(scores, acc >= good_accuracy, known)


def selection_disagreement(pseudo: Sequence[Tensor], keep: Sequence[Tensor], valid: Tensor) -> Tensor:
    """How often the selection loss and CPS pull a branch two ways: the share of kept
    pixels where branch k's own pseudo-label (the selection target) differs from the
    other branch's (k's CPS target), averaged over the two branches.

    Near 0, the selection terms repeat what cross supervision already teaches; large,
    they pull each branch towards its own, other answer on the pixels its critic trusts.
    """
    shares = []
    for k in (0, 1):
        kept = keep[k] & valid
        differ = (pseudo[k] != pseudo[1 - k]) & kept
        shares.append(differ.sum().float() / kept.sum().clamp(min=1).float())
    return torch.stack(shares).mean()


def loss_shares(supervised: Tensor, terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """`share_<term>`: each term's part of the total loss |term| / (|sup| + sum |terms|),
    detached: which of a method's terms actually carries its gradient signal."""
    parts = {"sup": supervised.detach().abs(), **{k: v.detach().abs() for k, v in terms.items()}}
    total = torch.stack(list(parts.values())).sum().clamp(min=1e-12)
    return {f"share_{name}": value / total for name, value in parts.items()}
