"""Time per training step of each method relative to `supervised` and to `cps`.

Same batch, same model, same process: every method is built first, then each timed
round runs one step (forward, backward, optimiser step(s)) of every method in turn,
so a load that comes and goes on a shared machine hits all of them alike; the
medians' ratios are the figures to quote. Semi-supervised steps see the unlabeled
batches too, so ratios above 1 are the price of the extra forwards (CPS: 2
branches; RRN: + 2 critics). `--compare REV` adds `rrn@REV`: RRN's step as
rrn_core/methods/rrn.py was at git revision REV (run against today's helpers), on
the same weights, for a before/after ratio measured in one run.

`--backbones A B ...` gives rows per backbone (`cps resnet50d`), each against the
first backbone; `--old-resnet REV` adds the hand-written ResNet the project had at
REV (rrn_core/models/resnet.py, deep stem) in place of timm's `resnet50c` (same
layers and parameter names, so the same weights are copied in) for the ResNet-50
step before/after timm, in one run. `--width 0` leaves the published widths.

    .venv/bin/python bench/step_cost.py [--crop 64] [--width 16] [--batch 4] [--steps 10]
        [--threads 1] [--methods cps rrn] [--compare HEAD~1] [--clock cpu]
        [--backbones resnet18d convnext_tiny] [--old-resnet main]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from rrn_core.config import build_config
from rrn_core.loop import apply_step, build_optimizers
from rrn_core.methods import StepContext
from rrn_core.methods.base import Method
from rrn_core.methods.build import build_method
from rrn_core.methods.table import METHODS

REPO = Path(__file__).resolve().parents[1]


def make_batch(b: int, crop: int, num_classes: int) -> dict:
    g = torch.Generator().manual_seed(0)
    box = torch.zeros(b, crop, crop, dtype=torch.long)
    box[:, crop // 4: 3 * crop // 4, crop // 4: 3 * crop // 4] = 1

    def unl():
        return {"image_weak": torch.randn(b, 3, crop, crop, generator=g),
                "image_strong": torch.randn(b, 3, crop, crop, generator=g),
                "ignore": torch.zeros(b, crop, crop, dtype=torch.long), "cutmix_box": box,
                "mask": torch.randint(0, num_classes, (b, crop, crop), generator=g)}

    return {"labeled": {"image": torch.randn(b, 3, crop, crop, generator=g),
                        "mask": torch.randint(0, num_classes, (b, crop, crop), generator=g)},
            "unlabeled_a": unl(), "unlabeled_b": unl()}


class OldResNetFeatures(torch.nn.Module):
    """The hand-written ResNet of an older revision, returning timm's feature list."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        stem = n.relu(n.bn1(n.conv1(x)))
        l1 = n.layer1(n.maxpool(stem))
        l2 = n.layer2(l1)
        l3 = n.layer3(l2)
        return [stem, l1, l2, l3, n.layer4(l3)]


def old_resnet_at(rev: str, name: str, width: int | None, output_stride: int) -> torch.nn.Module:
    """rrn_core/models/resnet.py at `rev` (deep stem), wrapped as a timm feature net."""
    path = "rrn_core/models/resnet.py"
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"resnet_at_{rev}")
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    net = module.ResNet(name, base_width=width or 64, deep_stem=True, output_stride=output_stride)
    return OldResNetFeatures(net)


def rrn_class_at(rev: str) -> type[Method]:
    """The RRN class of rrn_core/methods/rrn.py at git revision `rev`."""
    path = "rrn_core/methods/rrn.py"
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"rrn_at_{rev}")
    sys.modules[module.__name__] = module   # dataclasses/pydantic look their module up
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module.RRN


class Runner:
    """One method's model, optimisers and batch: `step()` times one training step."""

    def __init__(self, name: str, args: argparse.Namespace, device: torch.device,
                 method_class: type[Method] | None = None, backbone: str | None = None,
                 old_resnet: str | None = None) -> None:
        backbone = backbone or args.backbone
        cfg = build_config({
            "data": {"root": "unused", "num_classes": args.classes, "crop_size": args.crop},
            "model": {"backbone": backbone, "base_width": args.width or None},
            "method": {"name": "rrn", "warmup_epochs": 0,   # RRN's section; other methods keep their share
                       "discriminator": {"regions_per_side": args.regions}},
        }, {"method.name": name.split("@")[0]})
        torch.manual_seed(0)
        method = build_method(cfg, args.classes)
        if method_class is not None:   # the same weights under another revision's step
            method = method_class(method.mcfg, copy.deepcopy(list(method.branches)),
                                  copy.deepcopy(list(method.discriminators)))
        if old_resnet is not None:     # the same weights in the old hand-written ResNet
            for branch in method.branches:
                old = old_resnet_at(old_resnet, backbone.rstrip("c"), args.width or None,
                                    cfg.model.output_stride)
                old.net.load_state_dict(branch.backbone.state_dict(), strict=True)
                branch.backbone = old
        self.method = method.to(device).train()
        self.seg_opt, self.disc_opt = build_optimizers(self.method, cfg)
        self.batch = {k: {kk: v.to(device) for kk, v in d.items()}
                      for k, d in make_batch(args.batch, args.crop, args.classes).items()}
        self.ctx = StepContext(step=1, total_steps=2, epoch=1.0)
        self.scaler = torch.amp.GradScaler(device.type, enabled=False)
        self.device = device

    def step(self, clock: Callable[[], float] = time.perf_counter) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        tic = clock()
        out = self.method(self.batch, self.ctx)
        apply_step(out, self.seg_opt, self.disc_opt, self.scaler)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18d")
    parser.add_argument("--backbones", nargs="+", default=None,
                        help="rows per backbone (each method on each); ratios against the first")
    parser.add_argument("--old-resnet", metavar="REV", default=None,
                        help="also time resnet50c's step with the hand-written ResNet of REV")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--regions", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--compare", metavar="REV", default=None,
                        help="also time rrn's step as of this git revision (rrn@REV)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, which time slices lent to other "
                             "processes do not inflate (a shared CPU machine; sums threads)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu measures CPU work only: use it with --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {args.backbone} width {args.width}, crop {args.crop}, batch {args.batch} "
          f"(labeled) + 2x{args.batch} (unlabeled), {args.steps} timed steps, torch threads "
          f"{torch.get_num_threads()}, {args.clock} clock")
    if args.backbones:
        return per_backbone(args, device, clock)
    runners = {name: Runner(name, args, device) for name in args.methods}
    if args.compare:
        runners[f"rrn@{args.compare}"] = Runner(f"rrn@{args.compare}", args, device, rrn_class_at(args.compare))
    times = timed_in_turns(runners, args, clock)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    bases = [b for b in ("supervised", "cps") if b in medians]
    print(f"{'method':<16}{'ms/step (median)':>18}" + "".join(f"{'x ' + b:>14}" for b in bases)
          + ("  x cps per round (median, quartiles)" if "cps" in medians else ""))
    for name, t in medians.items():
        row = f"{name:<16}{t * 1000:>18.1f}" + "".join(f"{t / medians[b]:>14.2f}" for b in bases)
        if "cps" in medians:
            low, mid, high = paired_ratios(times[name], times["cps"])
            row += f"  {mid:.2f} ({low:.2f}-{high:.2f})"
        print(row)


def timed_in_turns(runners: dict[str, Runner], args: argparse.Namespace,
                   clock: Callable[[], float]) -> dict[str, list[float]]:
    """Each runner's step times after the warm-up, the runners taking turns step by step,
    so that a slow phase of the machine hits every row alike."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(args.warmup + args.steps):
        for name, runner in runners.items():
            elapsed = runner.step(clock)
            if i >= args.warmup:
                times[name].append(elapsed)
    return times


def per_backbone(args: argparse.Namespace, device: torch.device, clock: Callable[[], float]) -> None:
    """Rows `method backbone` (+ `method resnet50c@REV` with --old-resnet), timed in turns."""
    runners: dict[str, Runner] = {}
    for backbone in args.backbones:
        for method in args.methods:
            runners[f"{method} {backbone}"] = Runner(method, args, device, backbone=backbone)
            if args.old_resnet and backbone == "resnet50c":
                runners[f"{method} {backbone}@{args.old_resnet}"] = Runner(
                    method, args, device, backbone=backbone, old_resnet=args.old_resnet)
    times = timed_in_turns(runners, args, clock)
    first = args.backbones[0]
    print(f"{'row':<44}{'ms/step (median)':>18}{'x ' + first:>22}{'x timm (paired)':>18}")
    for name, ts in times.items():
        method = name.split(" ", 1)[0]
        base = times[f"{method} {first}"]
        row = f"{name:<44}{statistics.median(ts) * 1000:>18.1f}{statistics.median(ts) / statistics.median(base):>22.2f}"
        if "@" in name:
            row += f"{paired_ratios(ts, times[name.split('@')[0]])[1]:>18.2f}"
        print(row)


def paired_ratios(times: list[float], base: list[float]) -> tuple[float, float, float]:
    """Quartiles of t_i / base_i over the rounds: each ratio compares two steps run one
    after the other, so a load that drifts over the run cancels out of it."""
    ratios = [t / b for t, b in zip(times, base, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, mid, high = statistics.quantiles(ratios, n=4)
    return low, mid, high


if __name__ == "__main__":
    main()
