"""Background checkpoint writes: same bytes as a synchronous save, one write in flight,
atomic commits (readers and resumes see whole checkpoints only, even after a kill),
failed uploads retried then reported, and exact resume through the loop.

Real components throughout: local files, and a real S3 API (moto's server over HTTP
on 127.0.0.1) spoken to through s3fs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from rrn_core.checkpoint import (CheckpointError, CheckpointNotFoundError, load_checkpoint, save_checkpoint,
                                 serialize_checkpoint)
from rrn_core.checkpoint_writer import CheckpointWriter, snapshot_state
from rrn_core.loop import TrainHooks, hooks_read_checkpoint_files, train

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "orchestration"))   # the suite's real S3 endpoint
from s3_server import s3_endpoint, s3_server_url  # noqa: E402, F401  (fixtures)
from test_loop import run_config  # noqa: E402  (tests/core is on sys.path under pytest)


def trained_state(step: int = 1) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    """A small model after one SGD step (momentum buffers exist), and its checkpoint dict."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 9, 9)).square().mean().backward()
    opt.step()
    return model, opt, checkpoint_of(model, opt, step)


def checkpoint_of(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> dict:
    return {"step": step, "model": model.state_dict(), "opt": opt.state_dict(),
            "rng": torch.get_rng_state(), "shape": torch.Size([2, 3]), "config": {"crop": [321, 321]}}


def payload_state(step: int, mb: int) -> dict:
    """A checkpoint whose payload says which step wrote it, so a partial or mixed read shows."""
    return {"step": step, "payload": torch.full((mb * 2**18,), float(step))}


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def s3_options(endpoint: str) -> dict:
    return {"client_kwargs": {"endpoint_url": endpoint}, "skip_instance_cache": True}


# -- what lands --------------------------------------------------------------------

def test_background_save_writes_the_bytes_of_a_sync_save_despite_later_updates(tmp_path) -> None:
    model, opt, state = trained_state()
    expected = serialize_checkpoint(state)   # what a synchronous save writes now
    with CheckpointWriter() as writer:
        record = writer.save(state, str(tmp_path / "async" / "last.pt"))
        # Training goes on at once and updates the live tensors in place.
        model(torch.randn(2, 3, 9, 9)).square().mean().backward()
        opt.step()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    assert (tmp_path / "async" / "last.pt").read_bytes() == expected
    assert record.error is None and record.attempts == 1 and record.nbytes == len(expected)
    loaded = load_checkpoint(str(tmp_path / "async" / "last.pt"))
    assert type(loaded["shape"]) is torch.Size and loaded["config"] == {"crop": [321, 321]}
    assert not torch.equal(loaded["model"]["0.weight"], model.state_dict()["0.weight"])


def test_snapshot_reuses_its_host_buffers_between_saves() -> None:
    _, _, state = trained_state()
    writer = CheckpointWriter()
    first, _ = snapshot_state(state, writer._buffers)
    second, _ = snapshot_state(state, writer._buffers)
    assert first["model"]["0.weight"].data_ptr() == second["model"]["0.weight"].data_ptr()
    assert first["model"]["0.weight"].data_ptr() != state["model"]["0.weight"].data_ptr()


def test_unsaveable_state_is_refused_in_the_calling_thread(tmp_path) -> None:
    import numpy as np

    with CheckpointWriter() as writer, pytest.raises(TypeError, match=r"\['extra'\]\['arr'\]"):
        writer.save({"step": 1, "extra": {"arr": np.zeros(3)}}, str(tmp_path / "last.pt"))
    assert not (tmp_path / "last.pt").exists()


# -- ordering and atomicity -------------------------------------------------------------

def test_one_write_in_flight_commits_in_order(s3_endpoint) -> None:  # noqa: F811
    endpoint, bucket = s3_endpoint
    url = f"s3://{bucket}/order/last.pt"
    with CheckpointWriter() as writer:
        records = [writer.save(payload_state(step, 24), url, s3_options(endpoint)) for step in (1, 2, 3)]
    for earlier, later in zip(records, records[1:]):
        assert later.started >= earlier.finished      # the next save waited for the previous one
    assert all(r.error is None for r in records)
    assert load_checkpoint(url, s3_options(endpoint))["step"] == 3


@pytest.mark.parametrize("store", ["local", "s3"])
def test_concurrent_reader_sees_only_whole_checkpoints(store, tmp_path, s3_endpoint) -> None:  # noqa: F811
    endpoint, bucket = s3_endpoint
    if store == "local":
        url, options = str(tmp_path / "last.pt"), {}
    else:
        url, options = f"s3://{bucket}/reader-{os.getpid()}/last.pt", s3_options(endpoint)
    save_checkpoint(payload_state(0, 16), url, options)
    seen: list[int] = []
    problems: list[str] = []
    done = threading.Event()

    def read_repeatedly() -> None:
        while not done.is_set():
            try:
                state = load_checkpoint(url, options)
            except CheckpointNotFoundError as err:   # never: the object always exists
                problems.append(str(err))
                continue
            except CheckpointError as err:           # a truncated read would land here
                problems.append(str(err))
                continue
            step = state["step"]
            if not torch.equal(state["payload"], torch.full_like(state["payload"], float(step))):
                problems.append(f"mixed payload at step {step}")
            seen.append(step)

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        with CheckpointWriter() as writer:
            for step in (1, 2, 3, 4):
                writer.save(payload_state(step, 16), url, options)
    finally:
        done.set()
        reader.join()
    assert not problems
    assert seen and seen == sorted(seen) and set(seen) <= {0, 1, 2, 3, 4}
    assert load_checkpoint(url, options)["step"] == 4


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from rrn_core.checkpoint import save_checkpoint
    from rrn_core.checkpoint_writer import CheckpointWriter
    url = sys.argv[1]
    save_checkpoint({"step": 1, "payload": torch.full((2**18,), 1.0)}, url)
    writer = CheckpointWriter()
    print("ready", flush=True)
    while True:   # keep writing big checkpoints until killed
        writer.save({"step": 2, "payload": torch.full((128 * 2**18,), 2.0)}, url)
""")


def test_process_killed_mid_write_leaves_the_previous_checkpoint(tmp_path) -> None:
    url = tmp_path / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(url)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not list(url.parent.glob(".last.pt.*.tmp")):   # the first big write has begun
            assert time.monotonic() < deadline, "the writer never started writing"
            assert proc.poll() is None
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    state = load_checkpoint(str(url))   # whole: step 1, or a later step fully committed
    assert torch.equal(state["payload"], torch.full_like(state["payload"], float(state["step"])))
    assert state["step"] in (1, 2)


# -- failures ---------------------------------------------------------------------------

def test_failed_upload_is_retried_and_then_lands(s3_endpoint) -> None:  # noqa: F811
    import boto3

    endpoint, _ = s3_endpoint
    bucket = f"late-{os.getpid()}-{int(time.time() * 1000) % 10**6}"
    url = f"s3://{bucket}/ckpt/last.pt"
    failures: list[tuple[int, str]] = []

    def bucket_appears(where: str, attempt: int, err: BaseException) -> None:
        failures.append((attempt, where))   # a real failure: the bucket does not exist yet
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)

    with CheckpointWriter(retry_delays=(0.05,), on_failure=bucket_appears) as writer:
        record = writer.save(payload_state(7, 1), url, s3_options(endpoint))
    assert failures == [(1, url)]
    assert record.attempts == 2 and record.error is None
    assert load_checkpoint(url, s3_options(endpoint))["step"] == 7


def test_write_failing_every_attempt_is_reported_in_the_training_thread(tmp_path, caplog) -> None:
    (tmp_path / "blocker").write_text("a file where the checkpoint folder should be")
    url = str(tmp_path / "blocker" / "checkpoints" / "last.pt")
    attempts: list[int] = []
    writer = CheckpointWriter(attempts=3, retry_delays=(0.01,), on_failure=lambda u, a, e: attempts.append(a))
    writer.save(payload_state(1, 1), url)          # returns at once: the failure comes later
    with pytest.raises(CheckpointError, match=r"blocker/checkpoints/last.pt: checkpoint not written after 3"):
        writer.wait()
    assert attempts == [1, 2, 3]
    writer.save(payload_state(2, 1), url)
    with pytest.raises(CheckpointError):
        writer.save(payload_state(3, 1), str(tmp_path / "ok.pt"))   # the next save reports it too
    writer.save(payload_state(4, 1), url)
    writer.close(raise_errors=False)               # while another error is on its way out: logged
    assert "checkpoint not written after 3" in caplog.text
    assert not (tmp_path / "ok.pt").exists()


# -- through the loop ------------------------------------------------------------------

class PathOnlyRecorder(TrainHooks):
    """Hooks that only note the checkpoint path, so the loop writes in the background."""

    reads_checkpoint_files = False

    def __init__(self, stop_after_evals: int | None = None) -> None:
        self.logs: dict[int, dict[str, float]] = {}
        self.evals: list[tuple[int, float]] = []
        self.stop_after = stop_after_evals

    def on_log(self, step, scalars):
        self.logs[step] = scalars

    def on_evaluation(self, step, result, checkpoint_dir):
        self.evals.append((step, result.miou))

    def should_stop(self):
        return self.stop_after is not None and len(self.evals) >= self.stop_after


class ReadingHooks(TrainHooks):
    def on_evaluation(self, step, result, checkpoint_dir):
        pass


def test_which_hooks_get_a_committed_checkpoint() -> None:
    assert hooks_read_checkpoint_files(ReadingHooks())       # may read it: committed first
    assert not hooks_read_checkpoint_files(TrainHooks())     # cannot read it
    assert not hooks_read_checkpoint_files(PathOnlyRecorder())


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from rrn_core.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, num_classes=4, num_train=24, num_val=4, size=40, seed=0)
    return root


def test_background_checkpoints_resume_exactly(synth_root, tmp_path) -> None:
    straight = PathOnlyRecorder()
    train(run_config(synth_root, tmp_path / "a", "supervised"), straight)
    first = train(run_config(synth_root, tmp_path / "b", "supervised"), PathOnlyRecorder(stop_after_evals=1))
    assert first.steps == 3
    # train returned: the background write of step 3 has committed.
    assert load_checkpoint(str(tmp_path / "b" / "checkpoints" / "last.pt"))["step"] == 3
    resumed = PathOnlyRecorder()
    second = train(run_config(synth_root, tmp_path / "b", "supervised"), resumed)
    assert second.steps == 6 and sorted(resumed.logs) == [4, 5, 6]
    for step in (4, 5, 6):
        for key in ("train/loss", "train/loss_sup"):
            assert resumed.logs[step][key] == pytest.approx(straight.logs[step][key], rel=1e-5, abs=1e-6)
    assert resumed.evals[-1][1] == pytest.approx(straight.evals[-1][1], abs=1e-6)
    a = load_checkpoint(str(tmp_path / "a" / "checkpoints" / "last.pt"))
    b = load_checkpoint(str(tmp_path / "b" / "checkpoints" / "last.pt"))
    assert_same(a["model"], b["model"])
    assert_same(a["seg_opt"], b["seg_opt"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_snapshot_is_isolated_from_the_next_steps(tmp_path) -> None:
    weights = torch.randn(64, 1024, device="cuda")
    expected = weights.cpu().clone()
    with CheckpointWriter() as writer:
        writer.save({"w": weights}, str(tmp_path / "last.pt"))
        for _ in range(20):   # in-place updates queued right behind the copy
            weights.mul_(1.5).add_(1.0)
    assert torch.equal(load_checkpoint(str(tmp_path / "last.pt"))["w"], expected)
