"""BatchNorm statistics recomputed before each evaluation ("precise BN").

A BatchNorm layer evaluates with running statistics: an exponential average
(momentum 0.1) over roughly the last ten training batches. With the small batches
and crops of semi-supervised segmentation (4 images of a crop), those ten batches
are a noisy sample, so two evaluations a few steps apart, at a learning rate near
zero and with almost the same weights, can score several mIoU points apart; the
no-grad pseudo-label passes of CPS and RRN move the statistics too. Evaluation then
measures which batches came last as much as the model. Wu & Johnson ("Rethinking
'Batch' in BatchNorm", 2021) call the fix precise BN: before evaluating, average the
statistics over many batches of the training distribution with equal weights.

The pass uses the labeled training set with its training augmentation drawn from a
fixed seed (a pure function of the index, see rrn_core/data), under a forked RNG,
so it draws nothing from the training stream and a resumed run repeats it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, Dataset

#: Images the statistics are averaged over (the whole labeled set when smaller).
PRECISE_BN_IMAGES = 512
#: The augmentation seed of the pass: fixed, so every evaluation averages the same views.
PRECISE_BN_SEED = 7_919


class _SeededViews(Dataset):
    """The first `count` items of a training dataset, each with a fixed augmentation seed."""

    def __init__(self, dataset: Dataset, count: int) -> None:
        self.dataset, self.count = dataset, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        return self.dataset[(index, PRECISE_BN_SEED)]["image"]


def has_batchnorm(network: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())


def recompute_bn_stats(branches: Sequence[nn.Module], labeled: Dataset, batch_size: int,
                       device: torch.device, channels_last: bool = False) -> None:
    """Replace every branch's BatchNorm running statistics by their average over the
    labeled set's training views (up to PRECISE_BN_IMAGES images)."""
    nets = [b.module if isinstance(b, nn.parallel.DistributedDataParallel) else b for b in branches]
    nets = [n for n in nets if has_batchnorm(n)]
    if not nets:
        return
    views = _SeededViews(labeled, min(len(labeled), PRECISE_BN_IMAGES))
    loader = DataLoader(views, batch_size=min(batch_size, len(views)), shuffle=False, drop_last=False)
    fork = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        batches = [x.to(device, non_blocking=True) for x in loader]
        if channels_last:
            batches = [x.contiguous(memory_format=torch.channels_last) for x in batches]
        for net in nets:
            update_bn(batches, net)
