"""Time per training step of each method relative to `supervised`.

Same batch, same model, same process: each method runs a warm-up, then `--steps`
timed steps (forward, backward, optimiser step(s)); the ratio to supervised is the
figure to quote. Semi-supervised steps see the unlabeled batches too, so ratios
above 1 are the price of the extra forwards (CPS: 2 branches; RRN: + 2 critics).

    .venv/bin/python bench/step_cost.py [--crop 64] [--width 16] [--batch 4] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rrn_core.config import build_config
from rrn_core.loop import apply_step, build_optimizers
from rrn_core.methods import StepContext
from rrn_core.methods.build import build_method


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


def time_method(name: str, args: argparse.Namespace, device: torch.device) -> list[float]:
    cfg = build_config({
        "data": {"root": "unused", "num_classes": args.classes, "crop_size": args.crop},
        "model": {"backbone": args.backbone, "base_width": args.width, "deep_stem": False},
        "method": {"name": "rrn", "warmup_epochs": 0,   # RRN's section; other methods keep their share
                   "discriminator": {"regions_per_side": args.regions}},
    }, {"method.name": name})
    method = build_method(cfg, args.classes).to(device).train()
    seg_opt, disc_opt = build_optimizers(method, cfg)
    batch = {k: {kk: v.to(device) for kk, v in d.items()}
             for k, d in make_batch(args.batch, args.crop, args.classes).items()}
    ctx = StepContext(step=1, total_steps=2, epoch=1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        out = method(batch, ctx)
        apply_step(out, seg_opt, disc_opt, scaler)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - tic)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--regions", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, {args.backbone} width {args.width}, crop {args.crop}, batch {args.batch} "
          f"(labeled) + 2x{args.batch} (unlabeled), {args.steps} timed steps, torch threads "
          f"{torch.get_num_threads()}")
    medians = {}
    for name in ("supervised", "cps", "fixmatch", "rrn"):
        times = time_method(name, args, device)
        medians[name] = statistics.median(times)
    base = medians["supervised"]
    print(f"{'method':<12}{'ms/step (median)':>18}{'x supervised':>15}")
    for name, t in medians.items():
        print(f"{name:<12}{t * 1000:>18.1f}{t / base:>15.2f}")


if __name__ == "__main__":
    main()
