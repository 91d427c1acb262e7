"""The budget's resolution, the compute meter and precise BN, on hand-made cases."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from rrn_core.budget import resolve_budget
from rrn_core.compute import BACKWARD_FLOPS_PER_FORWARD, ComputeMeter, forward_flops
from rrn_core.precise_bn import PRECISE_BN_SEED, recompute_bn_stats
from rrn_core.config_sections import DEFAULT_ITERS, ConfigError, OptimConfig

TRAIN_IMAGES = 400


@pytest.mark.parametrize("ratio", [0.125, 0.5])
def test_epochs_over_labeled_and_unlabeled_at_two_label_amounts(ratio):
    labeled = int(TRAIN_IMAGES * ratio)
    unlabeled = TRAIN_IMAGES - labeled
    over_l = resolve_budget(OptimConfig(epochs=10, epochs_over="labeled"), labeled, unlabeled, 4, 8)
    over_u = resolve_budget(OptimConfig(epochs=10, epochs_over="unlabeled"), labeled, unlabeled, 4, 8)
    # an epoch is ceil(images / batch) iterations: 1/8 of 400 -> 13 x 10 labeled, 44 x 10
    # unlabeled; 1/2 -> 50 x 10 labeled, 25 x 10 unlabeled
    assert over_l.iters == {0.125: 130, 0.5: 500}[ratio]
    assert over_u.iters == {0.125: 440, 0.5: 250}[ratio]
    assert over_l.epochs_labeled == pytest.approx(over_l.iters * 4 / labeled)
    assert over_u.epochs_unlabeled == pytest.approx(over_u.iters * 8 / unlabeled)
    assert over_l.stated_as == "epochs over labeled" and over_u.stated_as == "epochs over unlabeled"


def test_epoch_counts_round_up_and_count_every_rank():
    # 350 unlabeled images, 8 per rank, 2 ranks: ceil(350 / 16) = 22 iterations an epoch
    b = resolve_budget(OptimConfig(epochs=1.5, epochs_over="unlabeled"), 50, 350, 4, 8, world_size=2)
    assert b.iters == 33
    assert b.epochs_labeled == pytest.approx(33 * 8 / 50)


def test_iterations_are_the_default_budget_and_one_budget_only():
    assert OptimConfig().iters == DEFAULT_ITERS
    assert resolve_budget(OptimConfig(iters=900), 50, 350, 4, 4).iters == 900
    with pytest.raises(ValidationError, match="not both"):
        OptimConfig(iters=900, epochs=3)
    with pytest.raises(ConfigError, match="no unlabeled images"):
        resolve_budget(OptimConfig(epochs=3, epochs_over="unlabeled"), 400, 0, 4, 4)


def test_meter_counts_forward_backward_and_flops():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    meter = ComputeMeter({"branch0": conv})
    conv(torch.zeros(2, 1, 4, 4)).sum().backward()
    with torch.no_grad():
        conv(torch.zeros(3, 1, 4, 4))
    meter.active = False
    conv(torch.zeros(5, 1, 4, 4))             # an evaluation: not training compute
    meter.active = True
    meter.measure_flops()
    per_image = 2 * 9 * 16                    # a multiply and an add per tap, 16 outputs
    assert forward_flops(conv, [torch.Size((1, 1, 4, 4))]) == per_image
    totals = meter.totals()
    assert totals["compute/images_fwd/branch0"] == 5 and totals["compute/images_bwd/branch0"] == 2
    assert totals["compute/tflop"] * 1e12 == pytest.approx(per_image * (5 + BACKWARD_FLOPS_PER_FORWARD * 2))
    restored = ComputeMeter({"branch0": conv}, world_size=2)
    restored.load_state_dict(meter.state_dict())
    assert restored.totals()["compute/images_fwd"] == 10   # two ranks did the same work
    meter.close(), restored.close()


class _Views(torch.utils.data.Dataset):
    """A training set whose view is a pure function of (index, seed), like rrn_core's."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, key):
        index, seed = key
        g = torch.Generator().manual_seed(index * 1000 + seed)
        return {"image": torch.randn(3, 4, 4, generator=g) + index}


def test_precise_bn_averages_the_training_views_and_draws_no_random_numbers():
    net = nn.Sequential(nn.BatchNorm2d(3))
    net.train()
    net[0].running_mean.fill_(100.0)          # statistics of "the last few batches"
    before = torch.get_rng_state()
    recompute_bn_stats([net], _Views(), batch_size=2, device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)
    views = torch.stack([_Views()[(i, PRECISE_BN_SEED)]["image"] for i in range(6)])
    # equal-weight average of the three batches' means = the mean over all six views
    assert torch.allclose(net[0].running_mean, views.mean(dim=(0, 2, 3)), atol=1e-5)
    assert net.training
