"""GPU throughput per method at the VOC config: images/s, peak memory, achieved TFLOP/s.

For each method of rrn_core/methods/table.py, precision (fp32, bf16, fp16 with
its GradScaler; channels_last on CUDA) and GPU count (1, and 2 with DDP over NCCL;
batch 8 per GPU), one row: ms per training step (forward, backward, optimiser
steps, exactly rrn_core.loop's `apply_step`), images/s over all GPUs (labeled +
unlabeled images per step), peak GPU memory, the FLOPs of one step counted with
torch.utils.flop_counter and FLOPs / step time = achieved TFLOP/s, to read against
the chip's peak (H100 SXM dense: ~989 bf16/fp16, ~67 fp32 without TF32). Batches
are synthetic tensors already on the device, so rows measure compute only; the
input pipeline's share comes last: the real loaders (bench/input_pipeline.py) on
generated VOC-size JPEGs with the config's workers, seconds per step of data
against the compute step.

`--json PATH` also writes every row (rewritten after each, so a run cut short keeps
the rows it finished) with the FLOPs split by operator kind: `conv_flops` (every
aten convolution op, forward and backward) and `matmul_flops` (mm/addmm/bmm), so
the convolutions' share of a step can be read against the chip's matmul rate.

    .venv/bin/python bench/gpu_throughput.py                      # on a CUDA machine (see README)
    .venv/bin/python bench/gpu_throughput.py --tiny               # CPU smoke setting (tested)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from rrn_core.config import RunConfig, load_config  # noqa: E402
from rrn_core.loop import apply_step, build_optimizers, to_device, wrap_distributed  # noqa: E402
from rrn_core.distributed import DistInfo
from rrn_core.methods import StepContext
from rrn_core.methods.build import build_method  # noqa: E402
from rrn_core.methods.table import METHODS  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TINY = {"model.backbone": "resnet18d", "model.base_width": 8,
        "model.aspp_channels": 16, "model.low_level_channels": 8, "model.head_channels": 16}
TINY_CRITICS = {"method.discriminator.regions_per_side": 2, "method.discriminator.base_channels": 8}


def bench_config(args: argparse.Namespace, method: str) -> RunConfig:
    overrides: dict[str, Any] = {
        "data.root": tempfile.gettempdir(), "data.crop_size": args.crop,
        "data.batch_size": args.batch, "data.unlabeled_batch_size": args.batch,
        "method.name": method, "model.pretrained": None,
        "model.backbone": args.backbone, "runtime.device": args.device}
    has_critics = METHODS[method].num_critics > 0
    if has_critics:
        overrides["method.warmup_epochs"] = 0   # time the full step, selection terms included
    if args.tiny:
        overrides.update(TINY)
        if has_critics:
            overrides.update(TINY_CRITICS)
    return load_config(REPO / "configs" / "voc.yaml", overrides)


def synthetic_batch(cfg: RunConfig, device: torch.device, channels_last: bool) -> dict[str, dict]:
    """The loop's batch structure at the config's sizes, already on the device."""
    g = torch.Generator().manual_seed(0)
    b, ub, s, c = cfg.data.batch_size, cfg.data.unlabeled_batch_size, cfg.data.crop_size, cfg.data.num_classes
    box = torch.zeros(ub, s, s, dtype=torch.long)
    box[:, s // 4: 3 * s // 4, s // 4: 3 * s // 4] = 1

    def unlabeled() -> dict[str, torch.Tensor]:
        return {"image_weak": torch.randn(ub, 3, s, s, generator=g),
                "image_strong": torch.randn(ub, 3, s, s, generator=g),
                "ignore": torch.zeros(ub, s, s, dtype=torch.long), "cutmix_box": box,
                "mask": torch.randint(0, c, (ub, s, s), generator=g)}

    batch = {"labeled": {"image": torch.randn(b, 3, s, s, generator=g),
                         "mask": torch.randint(0, c, (b, s, s), generator=g)},
             "unlabeled_a": unlabeled(), "unlabeled_b": unlabeled()}
    return {k: to_device(v, device, channels_last) for k, v in batch.items()}


def images_per_step(cfg: RunConfig, uses_unlabeled: bool) -> int:
    return cfg.data.batch_size + (2 * cfg.data.unlabeled_batch_size if uses_unlabeled else 0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_method(args: argparse.Namespace, name: str, precision: str, device: torch.device,
               info: DistInfo) -> dict[str, Any]:
    """Time one (method, precision) on this rank; FLOPs of one step counted once."""
    cfg = bench_config(args, name)
    channels_last = device.type == "cuda" and not args.no_channels_last
    torch.manual_seed(0)
    method = build_method(cfg, cfg.data.num_classes).to(device)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    seg_opt, disc_opt = build_optimizers(method, cfg)
    if info.enabled:
        wrap_distributed(method, cfg, device, info)
    method.train()
    dtype = DTYPES[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    batch = synthetic_batch(cfg, device, channels_last)
    ctx = StepContext(step=10, total_steps=1000, epoch=10.0)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = method(batch, ctx)
        apply_step(out, seg_opt, disc_opt, scaler)

    for _ in range(args.warmup):
        step()
    flops, by_kind = 0, {"conv": 0, "matmul": 0}
    if not args.no_flops:  # every rank steps (DDP's collectives need all); each counts its own
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops()
        by_kind = flops_by_kind(counter.get_flop_counts().get("Global", {}))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        sync(device)
        tic = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - tic)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    step_s = statistics.median(times)
    return {"method": name, "precision": precision, "gpus": info.world_size, "step_s": step_s,
            "images_s": images_per_step(cfg, method.uses_unlabeled) * info.world_size / step_s,
            "peak": peak, "flops": flops * info.world_size, "channels_last": channels_last,
            "conv_flops": by_kind["conv"] * info.world_size, "matmul_flops": by_kind["matmul"] * info.world_size}


def flops_by_kind(counts: dict[Any, int]) -> dict[str, int]:
    """FlopCounterMode's per-operator counts summed into convolutions and matrix products."""
    kinds = {"conv": 0, "matmul": 0}
    for op, n in counts.items():
        name = str(op).rsplit(".", 1)[-1] if "." in str(op) else str(op)
        if "convolution" in name:
            kinds["conv"] += int(n)
        elif name in ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear"):
            kinds["matmul"] += int(n)
    return kinds


def write_json(path: str | None, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """All rows so far, with derived rates, replacing the file (a cut-short run keeps these)."""
    if not path:
        return
    out = []
    for r in rows:
        if "error" in r:
            out.append(r)
            continue
        tflops = r["flops"] / r["step_s"] / 1e12
        out.append({**r, "ms_per_step": r["step_s"] * 1000, "tflops": tflops,
                    "conv_tflops": r["conv_flops"] / r["step_s"] / 1e12,
                    "peak_gib": r["peak"] / 2**30 if r["peak"] is not None else None})
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps({**meta, "rows": out}, indent=1))
    tmp.replace(path)


def run_all(args: argparse.Namespace, device: torch.device, info: DistInfo,
            done: Any = None) -> list[dict[str, Any]]:
    """Every (method, precision) row on this rank; `done(row)` after each one."""
    rows = []
    for name in args.methods:
        for precision in args.precisions:
            try:
                rows.append(run_method(args, name, precision, device, info))
            except torch.cuda.OutOfMemoryError as err:   # a row too big for this GPU; the rest still run
                rows.append({"method": name, "precision": precision, "gpus": info.world_size,
                             "error": f"out of memory: {str(err).splitlines()[0][:160]}"})
            if done is not None:
                done(rows[-1])
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def _ddp_worker(rank: int, world: int, args: argparse.Namespace, port: int, queue: Any) -> None:
    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "LOCAL_RANK": str(rank)})
    cuda = args.device == "cuda"
    torch.set_num_threads(args.threads)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        device = torch.device("cuda", rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        rows = run_all(args, device, DistInfo(rank, world, rank))
        if rank == 0:
            queue.put(rows)
    finally:
        dist.destroy_process_group()


def run_ddp(args: argparse.Namespace, world: int) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(world, args, port, queue), nprocs=world, join=True,
                       start_method="spawn")
    return queue.get()


def pipeline_step_s(args: argparse.Namespace) -> tuple[float, int]:
    """Seconds per step of the real training loaders on generated VOC-size JPEGs."""
    from input_pipeline import generate_voc, measure_loaders, pipeline_config

    workers = args.pipeline_workers
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_voc(Path(tmp) / "voc", args.pipeline_images)
        cfg = pipeline_config("voc", root, workers, crop=args.crop, batch=args.batch)
        r = measure_loaders(cfg, args.pipeline_steps, pin_memory=args.device == "cuda")
    return r["step_s"], workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--precisions", nargs="+", default=None, choices=list(DTYPES),
                        help="default: fp32 bf16 fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--gpus", nargs="+", type=int, default=None,
                        help="process counts (DDP when > 1); default 1 2 (2 only with 2 GPUs)")
    parser.add_argument("--backbone", default="resnet101c")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--no-flops", action="store_true")
    parser.add_argument("--pipeline-workers", type=int, default=4, help="data.num_workers per loader")
    parser.add_argument("--pipeline-steps", type=int, default=8)
    parser.add_argument("--pipeline-images", type=int, default=64)
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--tiny", action="store_true",
                        help="CPU smoke setting: resnet18d width 8, crop 64, batch 2, 2 steps, gloo DDP")
    args = parser.parse_args()
    if args.tiny:
        args.backbone, args.crop, args.batch, args.steps, args.warmup = "resnet18d", 64, 2, 2, 1
        args.pipeline_workers, args.pipeline_steps, args.pipeline_images = 0, 2, 8
    cuda = args.device == "cuda"
    if args.precisions is None:
        args.precisions = ["fp32", "bf16", "fp16"] if cuda else ["fp32"]
    if args.gpus is None:
        args.gpus = [1, 2] if (not cuda or torch.cuda.device_count() >= 2) else [1]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}; {args.backbone}, crop {args.crop}, batch {args.batch} labeled + 2x{args.batch} "
          f"unlabeled per process; {args.steps} timed steps after {args.warmup} warm-up; "
          f"channels_last {cuda and not args.no_channels_last}; torch {torch.__version__}")
    meta = {"device": name, "torch": torch.__version__, "backbone": args.backbone, "crop": args.crop,
            "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "tiny": args.tiny}
    rows: list[dict[str, Any]] = []   # every finished row, in order

    def done(row: dict[str, Any]) -> None:
        rows.append(row)
        took = row["error"] if "error" in row else f"{row['step_s'] * 1000:.1f} ms/step"
        print(f"  done: {row['method']} {row['precision']} x{row['gpus']}: {took}", file=sys.stderr, flush=True)
        write_json(args.json, meta, rows)

    for world in args.gpus:
        if world == 1:
            run_all(args, device, DistInfo(), done)
        else:
            for row in run_ddp(args, world):
                done(row)
    unit = "GPUs" if cuda else "procs"
    print(f"{'method':<12}{'prec':<6}{unit:>6}{'ms/step':>10}{'images/s':>10}{'peak GiB':>10}"
          f"{'GFLOP/step':>12}{'TFLOP/s':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['method']:<12}{r['precision']:<6}{r['gpus']:>6}  {r['error']}")
            continue
        peak = f"{r['peak'] / 2**30:.2f}" if r["peak"] is not None else "n/a"
        gflop = r["flops"] / 1e9
        tflops = r["flops"] / r["step_s"] / 1e12
        print(f"{r['method']:<12}{r['precision']:<6}{r['gpus']:>6}{r['step_s'] * 1000:>10.1f}"
              f"{r['images_s']:>10.1f}{peak:>10}{gflop:>12.2f}{tflops:>9.3f}")
    if not args.no_pipeline:
        data_s, workers = pipeline_step_s(args)
        print(f"input pipeline: {data_s * 1000:.1f} ms per step (labeled + 2 unlabeled batches, "
              f"{workers} workers per loader, crop {args.crop}, generated VOC-size JPEGs)")
        for r in rows:
            if r["gpus"] == 1 and r["method"] != "supervised" and "error" not in r:
                print(f"  {r['method']:<10} {r['precision']:<5} data/compute {data_s / r['step_s']:.2f} "
                      f"({'the loaders keep up' if data_s <= r['step_s'] else 'the GPU waits for data'})")


if __name__ == "__main__":
    main()
