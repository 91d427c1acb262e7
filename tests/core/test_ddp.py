"""Multi-worker correctness on CPU: two gloo ranks running the real `train()`.

What a careful read of the DDP path found (issue 15) and these tests pin down:
every rank evaluates with rank 0's BatchNorm statistics, so the logged mIoU is the
rank-0 checkpoint's own score; ranks draw different dropout masks and each rank's
RNG state goes into the checkpoint; and a step queues its work without waiting for
the device (tests/methods/test_methods.py counts host syncs in a method's forward).
"""

from __future__ import annotations

import os
import queue as queue_mod
import socket
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rrn_core.config import RunConfig, build_config
from rrn_core.loop import TrainHooks, train
from rrn_core.distributed import rank_seed

NUM_CLASSES = 4


def config(root: Path, out: Path, method: str = "rrn", iters: int = 4, **extra) -> RunConfig:
    return build_config({
        "data": {"root": str(root), "num_classes": NUM_CLASSES, "label_ratio": 0.25, "crop_size": 32,
                 "batch_size": 2, "unlabeled_batch_size": 2},
        "model": {"backbone": "resnet18d", "base_width": 8,
                  "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
        "method": {"name": "rrn", "warmup_epochs": 0.0,   # RRN's section; other methods keep their share
                   "discriminator": {"regions_per_side": 2, "base_channels": 8}},
        "optim": {"iters": iters, "lr": 0.01},
        "eval": {"every": iters, "overlays": 0},
        "runtime": {"output_dir": str(out), "log_every": 2, "progress": False, "resume": False},
    }, {"method.name": method, **extra})


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from rrn_core.data.synth import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("ddp") / "synth", num_classes=NUM_CLASSES,
                              num_train=24, num_val=6, size=40, seed=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LastEval(TrainHooks):
    def __init__(self) -> None:
        self.miou = float("nan")

    def on_evaluation(self, step, result, checkpoint_dir) -> None:
        self.miou = result.miou


def _rank(rank: int, world: int, port: int, root: str, out: str, results, backend: str = "gloo",
          extra: dict | None = None) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    device = None
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        hooks = LastEval()
        train(config(Path(root), Path(out), **(extra or {})), hooks, device=device)
        results.put((rank, {"miou": hooks.miou, "draw": torch.rand(4).tolist()}))
    except BaseException:
        results.put((rank, traceback.format_exc()))
        raise
    finally:
        dist.destroy_process_group()


def run_two_ranks(root: Path, out: Path, backend: str = "gloo", extra: dict | None = None,
                  world: int = 2) -> dict[int, dict]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, str(root), str(out), results, backend, extra))
             for r in range(world)]
    for p in procs:
        p.start()
    got: dict[int, dict] = {}
    try:
        while len(got) < world:
            try:
                rank, payload = results.get(timeout=1)
            except queue_mod.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not dead, f"a rank died without reporting (exit codes {dead})"
                continue
            assert isinstance(payload, dict), payload
            got[rank] = payload
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return got


def checkpoint_miou(root: Path, out: Path, device: str = "cpu", **extra) -> float:
    """What the rank-0 checkpoint scores in one process on the whole validation set."""
    from rrn_core.checkpoint import load_checkpoint
    from rrn_core.data.bundle import build_datasets
    from rrn_core.evaluate import evaluate
    from rrn_core.loop import load_model_state
    from rrn_core.methods.build import build_method

    cfg = config(root, out, **extra)
    state = load_checkpoint(str(out / "checkpoints" / "last.pt"))
    method = build_method(cfg, NUM_CLASSES)
    load_model_state(method, state["model"])
    method.to(device)
    bundle = build_datasets(cfg.data, cfg.runtime.seed)
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=1, shuffle=False)
    return evaluate(list(method.branches), loader, NUM_CLASSES, bundle.class_names, cfg.eval, device).miou


def test_two_ranks_evaluate_the_checkpointed_model_and_draw_their_own_randomness(synth_root, tmp_path):
    from rrn_core.checkpoint import load_checkpoint

    out = tmp_path / "ddp"
    got = run_two_ranks(synth_root, out)
    # 1. Both ranks logged the same mIoU, and it is what the rank-0 checkpoint scores
    # in one process on the whole validation set.
    assert got[0]["miou"] == pytest.approx(got[1]["miou"], abs=1e-9)
    assert got[0]["miou"] == pytest.approx(checkpoint_miou(synth_root, out), abs=1e-9)
    state = load_checkpoint(str(out / "checkpoints" / "last.pt"))
    # 3. Per-rank randomness: different draws now, and two different saved states.
    assert got[0]["draw"] != got[1]["draw"]
    rng = state["rng"]
    assert isinstance(rng, list) and len(rng) == 2
    assert not torch.equal(torch.as_tensor(rng[0]["torch"]), torch.as_tensor(rng[1]["torch"]))


def test_rank_seeds_differ_and_rank_zero_keeps_the_run_seed():
    assert rank_seed(7, 0) == 7
    assert len({rank_seed(7, r) for r in range(8)}) == 8
    assert rank_seed(7, 1) not in {rank_seed(s, 0) for s in range(100)}


GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(GPUS < 2, reason="needs 2 CUDA devices (NCCL across two GPUs)")
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_two_gpus_nccl_syncbn_evaluate_the_checkpointed_model(synth_root, tmp_path, amp):
    """Issue 15 on real hardware: NCCL process group, SyncBatchNorm in both branches
    (ranks share batch statistics), autocast; every rank logs the mIoU the rank-0
    checkpoint scores alone, and ranks still draw their own randomness."""
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(reason="this GPU has no bf16")
    extra = {"runtime.device": "cuda", "runtime.amp": amp, "model.sync_bn": True,
             "runtime.channels_last": True}
    out = tmp_path / f"nccl-{amp}"
    got = run_two_ranks(synth_root, out, backend="nccl", extra=extra)
    assert got[0]["miou"] == pytest.approx(got[1]["miou"], abs=1e-6)
    alone = checkpoint_miou(synth_root, out, "cuda", **{k: v for k, v in extra.items()
                                                         if k != "runtime.amp"})
    assert got[0]["miou"] == pytest.approx(alone, abs=2e-3 if amp != "none" else 1e-6)
    assert got[0]["draw"] != got[1]["draw"]


@pytest.mark.gpu
@pytest.mark.skipif(GPUS < 1, reason="needs a CUDA device (SyncBatchNorm runs on CUDA only)")
def test_one_gpu_syncbn_under_nccl_trains_and_matches_its_checkpoint(synth_root, tmp_path):
    extra = {"runtime.device": "cuda", "model.sync_bn": True}
    out = tmp_path / "nccl-1"
    got = run_two_ranks(synth_root, out, backend="nccl", extra=extra, world=1)
    assert got[0]["miou"] == pytest.approx(checkpoint_miou(synth_root, out, "cuda", **extra), abs=1e-6)
