"""The training loop: one flat function, the same on a laptop CPU and in a Ray worker.

Counted in iterations (like UniMatch's loop), so label ratios with very different
labeled-set sizes train for the same budget. Everything that could make a resumed
run differ from an uninterrupted one (model, optimisers, scaler, RNGs, data stream
position) goes into the checkpoint. Under torch.distributed (set up by the caller,
e.g. Ray Train) branches and critics are DDP-wrapped and data is sharded; nothing
here knows about Ray.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from torch.utils.data import DataLoader

from rrn_core.checkpoint import capture_rng_state, checkpoint_exists, load_checkpoint, restore_rng_state
from rrn_core.budget import Budget, resolve_budget
from rrn_core.checkpoint_writer import CheckpointWriter
from rrn_core.compute import ComputeMeter, network_names
from rrn_core.config import RunConfig
from rrn_core.constants import CHECKPOINT_NAME, TRAIN_PREFIX
from rrn_core.data.bundle import DataBundle, build_datasets
from rrn_core.data.sampler import ResumableSampler
from rrn_core.distributed import (DistInfo, dist_info, resolve_device, wrap_distributed,
                                  share_rank0_buffers, mean_scalars, rank_seed)
from rrn_core.evaluate import EvalResult, evaluate
from rrn_core.methods import Method, StepContext, StepOutput
from rrn_core.methods.base import steps_per_epoch, unwrap
from rrn_core.methods.build import build_method
from rrn_core.precise_bn import recompute_bn_stats


class TrainHooks:
    """Observers of a run; orchestration subclasses this (Ray reports, MLflow runs)."""

    def on_start(self, facts: dict[str, Any]) -> None:
        """Once, before the first step: the resolved budget and the split's sizes."""

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        pass

    def on_evaluation(self, step: int, result: EvalResult, checkpoint_dir: str | None) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def hooks_read_checkpoint_files(hooks: Any) -> bool:
    """Whether `hooks.on_evaluation` needs `checkpoint_dir` to hold the new last.pt.

    The loop's contract hands hooks the checkpoint directory right after the save,
    and Ray's reporting hooks copy it at once; such hooks get a committed write (the
    save then costs what a synchronous one does). Hooks that only record the path
    declare `reads_checkpoint_files = False` and let the write overlap training;
    hooks that do not override on_evaluation cannot read it either.
    """
    declared = getattr(hooks, "reads_checkpoint_files", None)
    if declared is not None:
        return bool(declared)
    return getattr(type(hooks), "on_evaluation", None) is not TrainHooks.on_evaluation


@dataclass
class TrainResult:
    steps: int
    final: EvalResult | None
    best_miou: float
    history: list[dict[str, float]] = field(default_factory=list)
    budget: Budget | None = None
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, mIoU) of this process's evaluations
    compute: dict[str, float] = field(default_factory=dict)      # ComputeMeter totals at the end


def amp_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """AMP only on CUDA: CPU autocast is slower than fp32 for these convs.

    bf16 needs an Ampere or newer GPU; on older ones the run falls back to fp16 (with
    its GradScaler) and says so, instead of failing at the first step.
    """
    if device.type != "cuda" or cfg.runtime.amp == "none":
        return None
    if cfg.runtime.amp == "bf16":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        warnings.warn(f"runtime.amp is bf16 but {torch.cuda.get_device_name(device)} has no bf16 "
                      "support: training in fp16 with loss scaling instead", stacklevel=2)
    return torch.float16


def poly_lr(base: float, step: int, total: int, warmup: int, power: float) -> float:
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    return base * (1 - step / max(1, total)) ** power


def build_optimizers(method: Method, cfg: RunConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """SGD for branches (backbone lr x1, head lr x head_lr_mult), Adam for critics."""
    oc = cfg.optim
    backbone, head = [], []
    for branch in method.branches:
        plain = unwrap(branch)
        backbone += list(plain.backbone_parameters())
        head += list(plain.head_parameters())
    seg = torch.optim.SGD(
        [{"params": backbone, "lr_mult": 1.0}, {"params": head, "lr_mult": oc.head_lr_mult}],
        lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay)
    return seg, method.critic_optimizer()


def apply_step(out: StepOutput, seg_opt: torch.optim.Optimizer,
               disc_opt: torch.optim.Optimizer | None, scaler: torch.amp.GradScaler) -> None:
    """Branches first, then critics; the critics' grads from the segmentation pass
    (feature matching flows through them) are discarded before their own update."""
    seg_opt.zero_grad(set_to_none=True)
    scaler.scale(out.loss).backward()
    scaler.step(seg_opt)
    if out.disc_loss is not None and disc_opt is not None:
        disc_opt.zero_grad(set_to_none=True)
        scaler.scale(out.disc_loss).backward()
        scaler.step(disc_opt)
    scaler.update()


def infinite_loader(dataset, batch_size: int, seed: int, stream: int, info: DistInfo,
                    start_batches: int, num_workers: int, pin_memory: bool = False
                    ) -> Iterator[dict[str, torch.Tensor]]:
    sampler = ResumableSampler(len(dataset), seed, stream, info.rank, info.world_size,
                               start=start_batches * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        drop_last=True, pin_memory=pin_memory,
                        persistent_workers=num_workers > 0,
                        # Its own generator: creating the iterator must not draw from the
                        # global RNG, or a resumed run's random stream would shift.
                        generator=torch.Generator().manual_seed(seed + stream))
    return iter(loader)


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def model_state(method: Method) -> dict[str, Any]:
    return {
        "branches": [unwrap(b).state_dict() for b in method.branches],
        "discriminators": [unwrap(d).state_dict() for d in method.discriminators],
    }


def load_model_state(method: Method, state: dict[str, Any]) -> None:
    for branch, sd in zip(method.branches, state["branches"], strict=True):
        unwrap(branch).load_state_dict(sd)
    for critic, sd in zip(method.discriminators, state["discriminators"], strict=True):
        unwrap(critic).load_state_dict(sd)


def _resolve_resume(cfg: RunConfig, resume_from: str | None) -> str | None:
    if resume_from:
        url = resume_from.rstrip("/")
        return url if url.endswith(".pt") else f"{url}/{CHECKPOINT_NAME}"
    if cfg.runtime.resume:
        url = f"{cfg.runtime.output_dir.rstrip('/')}/checkpoints/{CHECKPOINT_NAME}"
        if checkpoint_exists(url, cfg.runtime.storage_options):
            return url
    return None


def _first_non_finite(first_bad: torch.Tensor, loss: torch.Tensor, step: int) -> torch.Tensor:
    """The first step whose loss was not finite (-1: none yet), kept on the device."""
    return torch.where((first_bad < 0) & ~torch.isfinite(loss), torch.full_like(first_bad, step), first_bad)


def train(cfg: RunConfig, hooks: TrainHooks | None = None, resume_from: str | None = None,
          bundle: DataBundle | None = None, device: torch.device | None = None) -> TrainResult:
    """Train `cfg` to its last iteration (or until a hook stops it), resuming if asked.

    `device`: the device the caller's scheduler assigned to this process (Ray Train's
    `get_device()`); default: from `runtime.device` and LOCAL_RANK.
    """
    hooks = hooks or TrainHooks()
    info = dist_info()
    device = device if device is not None else resolve_device(cfg.runtime.device, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rt, oc = cfg.runtime, cfg.optim
    torch.manual_seed(rt.seed)

    bundle = bundle or build_datasets(cfg.data, rt.seed)
    num_classes = cfg.data.num_classes
    method = build_method(cfg, num_classes).to(device)
    if rt.channels_last:
        method = method.to(memory_format=torch.channels_last)
    seg_opt, disc_opt = build_optimizers(method, cfg)
    meter = ComputeMeter(network_names(method.branches, method.discriminators), info.world_size)
    torch.manual_seed(rank_seed(rt.seed, info.rank))
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    start = 0
    best = -math.inf
    resume_url = _resolve_resume(cfg, resume_from)
    if resume_url:
        state = load_checkpoint(resume_url, rt.storage_options)
        load_model_state(method, state["model"])
        seg_opt.load_state_dict(state["seg_opt"])
        if disc_opt is not None:
            disc_opt.load_state_dict(state["disc_opt"])
        if state["scaler"] and scaler.is_enabled():  # a bf16/fp32 run saved an empty scaler
            scaler.load_state_dict(state["scaler"])
        start, best = state["step"], state.get("best_miou", -math.inf)
        meter.load_state_dict(state.get("compute"))
        rng = state["rng"]
        restore_rng_state(rng[info.rank] if isinstance(rng, list) else rng, device)
    if info.enabled:
        wrap_distributed(method, cfg, device, info)
    method.train()

    data_cfg = cfg.data
    pin = device.type == "cuda"
    labeled = infinite_loader(bundle.labeled, data_cfg.batch_size, rt.seed, 0, info, start, data_cfg.num_workers, pin)
    uses_unlabeled = method.uses_unlabeled
    if uses_unlabeled and not bundle.unlabeled:
        raise ValueError(f"method {cfg.method.name!r} needs unlabeled images, but the split has none "
                         "(set data.label_ratio / data.label_count or data.unlabeled_split)")
    budget = resolve_budget(oc, len(bundle.labeled), len(bundle.unlabeled) if bundle.unlabeled else 0,
                            data_cfg.batch_size, data_cfg.unlabeled_batch_size, info.world_size, uses_unlabeled)
    total = budget.iters
    if uses_unlabeled:
        ub = data_cfg.unlabeled_batch_size
        unlabeled_a = infinite_loader(bundle.unlabeled, ub, rt.seed, 1, info, start, data_cfg.num_workers, pin)
        unlabeled_b = infinite_loader(bundle.unlabeled, ub, rt.seed, 2, info, start, data_cfg.num_workers, pin)
        epoch_steps = steps_per_epoch(len(bundle.unlabeled), ub, info.world_size)
    else:
        epoch_steps = steps_per_epoch(len(bundle.labeled), data_cfg.batch_size, info.world_size)

    val_loader = DataLoader(bundle.val, batch_size=1, shuffle=False, num_workers=0,
                            generator=torch.Generator().manual_seed(rt.seed))
    branches_for_eval = method.branches

    hooks.on_start(budget.as_params())
    progress = ConsoleProgress(rt.progress and info.is_main, cfg, start, total)
    evals: list[tuple[int, float]] = []
    window: list[dict[str, torch.Tensor]] = []
    history: list[dict[str, float]] = []
    final: EvalResult | None = None
    step = start
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss
    window_start = time.perf_counter()
    writer = CheckpointWriter()  # background, one write in flight; drained in `finally`
    wait_for_commit = hooks_read_checkpoint_files(hooks)
    try:
        while step < total:
            lr = poly_lr(oc.lr, step, total, oc.warmup_iters, oc.poly_power)
            for group in seg_opt.param_groups:
                group["lr"] = lr * group["lr_mult"]
            batch = {"labeled": to_device(next(labeled), device, rt.channels_last)}
            if uses_unlabeled:
                batch["unlabeled_a"] = to_device(next(unlabeled_a), device, rt.channels_last)
                batch["unlabeled_b"] = to_device(next(unlabeled_b), device, rt.channels_last)
            ctx = StepContext(step=step, total_steps=total, epoch=step / epoch_steps)

            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = method(batch, ctx)
            # No host sync per step: the finiteness of the loss is checked at the next log.
            first_bad = _first_non_finite(first_bad, out.loss.detach(), step)
            apply_step(out, seg_opt, disc_opt, scaler)
            step += 1

            scalars = {k: v.detach().float() for k, v in out.scalars.items()}
            scalars["loss"] = out.loss.detach().float()
            scalars["lr"] = torch.tensor(lr)
            window.append(scalars)
            if step % rt.log_every == 0 or step == total:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                bad = int(first_bad)  # the one host sync of the window
                if bad >= 0:
                    raise FloatingPointError(f"non-finite loss at step {bad}")
                now = time.perf_counter()
                for scalars in window:  # wall time per step over the window, GPU work included
                    scalars["iter_time"] = torch.tensor((now - window_start) / len(window))
                meter.add_seconds(now - window_start)
                meter.measure_flops()  # once per network, at the shape of its first input
                window_start = now
                means = {f"{TRAIN_PREFIX}{k}": v for k, v in mean_scalars(window, info).items()}
                means.update(meter.totals())
                window.clear()
                hooks.on_log(step, means)
                history.append({"step": step, **means})
                progress.update(step, means)

            if step % cfg.eval.every == 0 or step == total:
                meter.active = False  # evaluation is not training compute
                if cfg.eval.precise_bn:
                    recompute_bn_stats(method.branches, bundle.labeled, data_cfg.batch_size, device, rt.channels_last)
                if info.enabled:
                    share_rank0_buffers(method.branches)
                final = evaluate(list(branches_for_eval), val_loader, num_classes, bundle.class_names,
                                 cfg.eval, device, dtype)
                meter.active = True
                best = max(best, final.miou)
                evals.append((step, final.miou))
                ckpt_dir = _save(cfg, method, seg_opt, disc_opt, scaler, step, best, info, device,
                                 writer, wait_for_commit, meter)
                hooks.on_evaluation(step, final, ckpt_dir)
                progress.update(step, {"mIoU": final.miou})
                if hooks.should_stop():
                    break
                window_start = time.perf_counter()  # evaluation time is not step time
    finally:
        progress.close()
        meter.close()
        # The last checkpoint is committed before train returns; a failed write is
        # raised, unless another error is already on its way out.
        writer.close(raise_errors=sys.exc_info()[0] is None)
    return TrainResult(steps=step, final=final, best_miou=best, history=history, budget=budget,
                       evals=evals, compute=meter.totals())


def _save(cfg: RunConfig, method: Method, seg_opt, disc_opt, scaler, step: int, best: float,
          info: DistInfo, device: torch.device, writer: CheckpointWriter,
          wait_for_commit: bool = True, meter: ComputeMeter | None = None) -> str:
    """Rank 0 writes; every rank contributes its RNG state so a resumed DDP run matches.

    The write goes through `writer`: in the background (rank 0 is blocked only for
    the state's snapshot and for a previous write still in flight), or, with
    `wait_for_commit` (hooks that read checkpoint_dir, e.g. Ray's reporting), inline,
    so that last.pt is committed when the hooks see the directory, as their contract says.
    """
    rng = capture_rng_state(device)
    if info.enabled:
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, rng)
        rng = gathered
    ckpt_dir = f"{cfg.runtime.output_dir.rstrip('/')}/checkpoints"
    if info.is_main:
        state = {
            "step": step,
            "best_miou": best,
            "model": model_state(method),
            "seg_opt": seg_opt.state_dict(),
            "disc_opt": disc_opt.state_dict() if disc_opt is not None else None,
            "scaler": scaler.state_dict(),
            "rng": rng,
            "compute": meter.state_dict() if meter is not None else None,
            "config": cfg.model_dump(mode="json"),
        }
        writer.save(state, f"{ckpt_dir}/{CHECKPOINT_NAME}", cfg.runtime.storage_options,
                    block=wait_for_commit)
    if info.enabled:
        dist.barrier()
    return ckpt_dir


class ConsoleProgress:
    """A rich progress bar on rank 0 (a no-op elsewhere or when disabled)."""

    def __init__(self, enabled: bool, cfg: RunConfig, start: int, total: int) -> None:
        self.bar = None
        if not enabled:
            return
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        self.task = self.bar.add_task(f"{cfg.method.name}", total=total, completed=start, info="")
        self.info: dict[str, float] = {}
        self.bar.start()

    def update(self, step: int, values: dict[str, float]) -> None:
        """Show the latest `loss` (a log's means hold it as train/loss) and `mIoU`."""
        if self.bar is None:
            return
        for key, value in values.items():
            shown = key.rsplit("/", 1)[-1]
            if shown in ("loss", "mIoU"):
                self.info[shown] = value
        text = "  ".join(f"{k} {v:.3f}" for k, v in self.info.items())
        self.bar.update(self.task, completed=step, info=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
