"""What the training loop does differently under torch.distributed: ranks, devices, DDP, shared statistics.

Set up by the caller (Ray Train, torchrun); a one-process run goes through the same
functions with world size 1, so the code path is the same on a laptop.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from rrn_core.config import RunConfig
from rrn_core.methods import Method
from rrn_core.methods.base import unwrap


RANK_SEED_STRIDE = 1_000_003  # a prime, so rank seeds never collide with nearby run seeds
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0
def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()
def resolve_device(requested: str, info: DistInfo) -> torch.device:
    """The device of a run started outside a cluster scheduler (`rrn train`, tests).

    Under Ray Train the caller passes the device Ray assigned (`train(device=...)`,
    from `ray.train.torch.get_device()`) instead: LOCAL_RANK % device_count matches
    Ray's assignment only with exactly one whole GPU per worker.
    """
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("runtime.device is 'cuda' but no CUDA device is available")
    return torch.device("cuda", info.local_rank % torch.cuda.device_count())
def wrap_distributed(method: Method, cfg: RunConfig, device: torch.device, info: DistInfo) -> None:
    """DDP per network: each is called (and back-propagated) on its own schedule."""
    ids = [device.index] if device.type == "cuda" else None
    for k, branch in enumerate(method.branches):
        if cfg.model.sync_bn:
            branch = nn.SyncBatchNorm.convert_sync_batchnorm(branch)
        method.branches[k] = nn.parallel.DistributedDataParallel(branch, device_ids=ids)
    for k, critic in enumerate(method.discriminators):
        method.discriminators[k] = nn.parallel.DistributedDataParallel(critic, device_ids=ids)
def share_rank0_buffers(networks: nn.ModuleList) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before evaluating.

    DDP broadcasts buffers only at the start of a forward, and the no-grad pseudo-label
    forwards update each rank's statistics with its own batches, so without this each
    rank would score its shard of the validation set with a different model, and the
    logged mIoU would depend on the world size and differ from the (rank-0) checkpoint.
    """
    for network in networks:
        for buffer in unwrap(network).buffers():
            dist.broadcast(buffer, src=0)
def mean_scalars(window: list[dict[str, torch.Tensor]], info: DistInfo) -> dict[str, float]:
    """Average a logging window's scalars over steps (and ranks), ignoring NaNs.

    The values are stacked where they live and copied to the host once."""
    keys = sorted({k for s in window for k in s})
    nan = torch.tensor(math.nan, dtype=torch.float64)
    values = torch.stack([torch.stack([s[k].detach().double().cpu() if k in s else nan for k in keys])
                          for s in window])
    finite = ~torch.isnan(values)
    sums = torch.where(finite, values, 0.0).sum(0)
    counts = finite.sum(0).double()
    if info.enabled:
        stacked = torch.stack([sums, counts])
        if dist.get_backend() == "nccl":
            stacked = stacked.cuda()
        dist.all_reduce(stacked)
        sums, counts = stacked.cpu()
    return {k: (s / c).item() for k, s, c in zip(keys, sums, counts) if c > 0}
def rank_seed(seed: int, rank: int) -> int:
    """The global RNG seed of a rank after the networks are built.

    Networks are initialised from `seed` alike on every rank (DDP also broadcasts rank
    0's), but dropout masks and other per-step draws must differ across ranks, or
    every rank's critic drops the same channels. Rank 0 keeps `seed`, so a one-process
    run is unchanged.
    """
    return seed + RANK_SEED_STRIDE * rank
