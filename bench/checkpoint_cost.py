"""Seconds the training loop is blocked per checkpoint save: synchronous vs background.

The state is what the loop checkpoints for the VOC config (`configs/voc.yaml`: rrn,
two DeepLabV3+ ResNet-101 branches, two critics, SGD momentum and Adam states, RNG
state, config), about 1 GB. Two stores: a local directory and an S3 endpoint on
127.0.0.1 (moto's server, in its own process, so its request handling does not share
this process's interpreter). For each store, in one run:

* sync  — `save_checkpoint`, the loop's call before background writes: the loop is
  blocked for the whole serialise + write/upload;
* async — `CheckpointWriter.save` (what the loop calls now): blocked for the
  snapshot only. The bench then keeps "training" (a fixed matmul step) until the
  write commits, and reports how long the write took in the background and how
  much slower the steps ran meanwhile (the writer thread competes for CPU cores;
  on a GPU host the steps run on the device).

The figure to quote is the ratio of blocked seconds, sync / async.

    .venv/bin/python bench/checkpoint_cost.py [--repeats 3] [--stores local s3] [--threads 1]
    .venv/bin/python bench/checkpoint_cost.py --backbone resnet18 --width 16   # quick, small state
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rrn_core.checkpoint import capture_rng_state, load_checkpoint, save_checkpoint  # noqa: E402
from rrn_core.checkpoint_writer import CheckpointWriter  # noqa: E402
from rrn_core.config import load_config  # noqa: E402
from rrn_core.constants import CHECKPOINT_NAME  # noqa: E402
from rrn_core.loop import build_optimizers, model_state  # noqa: E402
from rrn_core.methods.build import build_method  # noqa: E402


def loop_state(args: argparse.Namespace) -> dict:
    """The dict rrn_core.loop._save checkpoints, with optimiser states filled by one step."""
    overrides = {"data.root": tempfile.gettempdir(), "runtime.device": "cpu", "model.pretrained": None}
    if args.backbone:
        overrides["model.backbone"] = args.backbone
    if args.width:
        overrides["model.base_width"] = args.width
    cfg = load_config(REPO / "configs" / "voc.yaml", overrides)
    method = build_method(cfg, cfg.data.num_classes)
    seg_opt, disc_opt = build_optimizers(method, cfg)
    for opt in (seg_opt, disc_opt):
        if opt is None:
            continue
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        opt.step()   # creates the momentum / Adam moments a real checkpoint carries
    return {"step": 2000, "best_miou": 0.5, "model": model_state(method),
            "seg_opt": seg_opt.state_dict(),
            "disc_opt": disc_opt.state_dict() if disc_opt is not None else None,
            "scaler": {}, "rng": capture_rng_state(), "config": cfg.model_dump(mode="json"),
            "_describe": f"{cfg.method.name}, 2 x DeepLabV3+ {cfg.model.backbone} "
                         f"(width {cfg.model.base_width}), {len(method.discriminators)} critics"}


def state_bytes(state) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)) and not isinstance(state, torch.Size):
        return sum(state_bytes(v) for v in state)
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_s3() -> Iterator[dict]:
    """moto's S3 server as a separate process on 127.0.0.1; yields fsspec storage options."""
    import boto3

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        env.pop(key, None)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield {"client_kwargs": {"endpoint_url": url}}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class FakeTraining:
    """A fixed CPU step standing in for training while the background write runs."""

    def __init__(self, size: int = 384) -> None:
        self.a = torch.randn(size, size)
        self.b = torch.randn(size, size)
        self.base = statistics.median(self.step() for _ in range(30))

    def step(self) -> float:
        tic = time.perf_counter()
        for _ in range(4):
            torch.mm(self.a, self.b)
        return time.perf_counter() - tic

    def run_while(self, writer: CheckpointWriter) -> float:
        """Step until the write commits; the extra seconds the steps took meanwhile."""
        extra = 0.0
        while writer.busy:
            extra += self.step() - self.base
        return max(0.0, extra)


def measure(store: str, url: str, options: dict, state: dict, repeats: int, train: FakeTraining) -> dict:
    sync_blocked = []
    for _ in range(repeats):
        tic = time.perf_counter()
        save_checkpoint(state, url, options)
        sync_blocked.append(time.perf_counter() - tic)
    assert load_checkpoint(url, options)["step"] == state["step"]
    blocked, write, slowdown, waited = [], [], [], []
    with CheckpointWriter() as writer:
        for _ in range(repeats):
            record = writer.save(state, url, options)
            slowdown.append(train.run_while(writer))
            writer.wait()
            blocked.append(record.blocked_s)
            waited.append(record.waited_s)
            write.append(record.write_s)
    assert load_checkpoint(url, options)["step"] == state["step"]
    med = statistics.median
    return {"store": store, "sync": med(sync_blocked), "async": med(blocked), "write": med(write),
            "slowdown": med(slowdown), "waited": med(waited), "sync_all": sync_blocked, "async_all": blocked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stores", nargs="+", default=["local", "s3"], choices=["local", "s3"])
    parser.add_argument("--dir", default=None, help="local checkpoint folder (default: a temp dir)")
    parser.add_argument("--backbone", default=None, help="override configs/voc.yaml's resnet101c")
    parser.add_argument("--width", type=int, default=None, help="override model.base_width")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = loop_state(args)
    describe = state.pop("_describe")
    size = state_bytes(state)
    train = FakeTraining()
    print(f"state: {describe}: {size / 1e9:.2f} GB of tensors; {args.repeats} saves per mode and store; "
          f"torch threads {torch.get_num_threads()}; fake step {train.base * 1000:.1f} ms")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if "local" in args.stores:
            rows.append(measure("local", f"{tmp}/checkpoints/{CHECKPOINT_NAME}", {}, state, args.repeats, train))
        if "s3" in args.stores:
            with moto_s3() as options:
                rows.append(measure("s3 (moto, 127.0.0.1)", f"s3://bench/run/checkpoints/{CHECKPOINT_NAME}",
                                    options, state, args.repeats, train))
    print(f"{'store':<22}{'sync blocked s':>15}{'async blocked s':>17}{'sync/async':>12}"
          f"{'bg write s':>12}{'step slowdown s':>17}")
    for r in rows:
        print(f"{r['store']:<22}{r['sync']:>15.3f}{r['async']:>17.3f}{r['sync'] / r['async']:>12.1f}"
              f"{r['write']:>12.3f}{r['slowdown']:>17.3f}")
    print("(medians; blocked = seconds the save call held the training thread; bg write = serialise + "
          "commit on the writer thread; step slowdown = extra seconds the fake steps took while it ran)")
    for r in rows:
        print(f"  {r['store']}: sync blocked {', '.join(f'{t:.3f}' for t in r['sync_all'])} s; "
              f"async blocked {', '.join(f'{t:.3f}' for t in r['async_all'])} s")


if __name__ == "__main__":
    main()
