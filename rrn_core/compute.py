"""What a run spent: images through each network, FLOPs and device-seconds.

Methods differ in work per iteration (CPS and RRN push labeled, unlabeled and mixed
batches through two networks, RRN through critics too), so a comparison at equal
iterations can be a comparison at three times the compute. A run counts its own
work so that reports can put compute next to accuracy:

- images: forward pre-hooks on every branch and critic count the images each network
  sees; a forward with gradients enabled is also counted as a backward (its graph is
  back-propagated by the step; a critic's segmentation-pass graph is too, before its
  gradients are discarded).
- FLOPs: each network's forward FLOPs per image are counted once, with
  torch.utils.flop_counter on a meta-device copy (no compute, no RNG draw, no
  BatchNorm update) at the shape of its first real input; a backward is counted as
  twice its forward (gradients for inputs and for weights), the usual convention.
- device-seconds: wall time of the training steps (evaluations excluded) x ranks.
Under DDP every rank does the same work, so one rank's counts x world size is the total.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rrn_core.constants import COMPUTE_DEVICE_SECONDS, COMPUTE_IMAGES_BWD, COMPUTE_IMAGES_FWD, COMPUTE_TFLOP

BACKWARD_FLOPS_PER_FORWARD = 2.0


def _per_image(args: tuple[Any, ...]) -> list[torch.Size | None]:
    """The shapes of a call's tensor arguments with the batch dimension set to 1."""
    return [torch.Size((1, *a.shape[1:])) if isinstance(a, torch.Tensor) and a.dim() > 0 else None
            for a in args]


def forward_flops(network: nn.Module, shapes: Sequence[torch.Size | None]) -> float:
    """Forward FLOPs of one image through `network`, counted on a meta-device copy."""
    plain = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
    ghost = copy.deepcopy(plain).to("meta")
    inputs = [torch.empty(s, device="meta") if s is not None else None for s in shapes]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        ghost(*inputs)
    return float(counter.get_total_flops())


class ComputeMeter:
    """Counts images per network from forward pre-hooks; FLOPs per image measured once."""

    def __init__(self, networks: dict[str, nn.Module], world_size: int = 1) -> None:
        self.world_size = world_size
        self.networks = networks
        self.forward = {name: 0 for name in networks}
        self.backward = {name: 0 for name in networks}
        self.flops_per_image: dict[str, float] = {}
        self.seconds = 0.0
        self.active = True  # off during evaluation and while FLOPs are measured
        self._shapes: dict[str, list[torch.Size | None]] = {}
        self._handles = [net.register_forward_pre_hook(self._hook(name)) for name, net in networks.items()]

    def _hook(self, name: str):
        network = self.networks[name]

        def count(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not self.active or module is not network:  # a deep copy carries the hook too
                return
            images = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) else 0
            self.forward[name] += images
            if torch.is_grad_enabled():
                self.backward[name] += images
            if name not in self._shapes:
                self._shapes[name] = _per_image(args)
        return count

    def measure_flops(self) -> None:
        """FLOPs per image of every network seen so far (call after the first step)."""
        self.active = False
        try:
            self._measure()
        finally:
            self.active = True

    def _measure(self) -> None:
        for name, shapes in self._shapes.items():
            if name not in self.flops_per_image:
                try:
                    self.flops_per_image[name] = forward_flops(self.networks[name], shapes)
                except Exception:  # a network meta tensors cannot trace: FLOPs unknown, counts stay
                    self.flops_per_image[name] = float("nan")

    def add_seconds(self, seconds: float) -> None:
        self.seconds += seconds

    def totals(self) -> dict[str, float]:
        """Cumulative totals over all ranks, as `compute/...` metrics."""
        w = self.world_size
        out: dict[str, float] = {COMPUTE_DEVICE_SECONDS: self.seconds * w}
        flops = 0.0
        for name in self.networks:
            fwd, bwd = self.forward[name] * w, self.backward[name] * w
            out[f"{COMPUTE_IMAGES_FWD}/{name}"] = float(fwd)
            out[f"{COMPUTE_IMAGES_BWD}/{name}"] = float(bwd)
            flops += self.flops_per_image.get(name, 0.0) * (fwd + BACKWARD_FLOPS_PER_FORWARD * bwd)
        out[COMPUTE_IMAGES_FWD] = float(sum(self.forward.values()) * w)
        out[COMPUTE_IMAGES_BWD] = float(sum(self.backward.values()) * w)
        out[COMPUTE_TFLOP] = flops / 1e12
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"forward": dict(self.forward), "backward": dict(self.backward), "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Totals of the run before a resume (absent in checkpoints older than the meter)."""
        if not state:
            return
        self.forward.update({k: v for k, v in state["forward"].items() if k in self.forward})
        self.backward.update({k: v for k, v in state["backward"].items() if k in self.backward})
        self.seconds = float(state["seconds"])

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def network_names(branches: Sequence[nn.Module], critics: Sequence[nn.Module]) -> dict[str, nn.Module]:
    """`branch0`, `branch1`, `critic0`, ...: the names compute metrics use."""
    names = {f"branch{i}": b for i, b in enumerate(branches)}
    names.update({f"critic{i}": c for i, c in enumerate(critics)})
    return names
