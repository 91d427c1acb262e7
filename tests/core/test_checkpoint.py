"""Checkpoints: round trips (local and a real moto S3 server), atomic replace, RNG resume."""

from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from rrn_core.checkpoint import (CheckpointError, CheckpointNotFoundError, capture_rng_state,
                                 checkpoint_exists, load_checkpoint, restore_rng_state, save_checkpoint)


def make_state(step: int) -> dict:
    torch.manual_seed(step)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    return {"step": step, "model": net.state_dict(), "optimizer": opt.state_dict(),
            "config": {"name": "t", "lr": 0.1, "sizes": [1, 2], "nested": {"none": None}},
            "split_hash": "abc"}


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def draws() -> tuple:
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(),
            torch.rand(3).tolist(), torch.randint(0, 1000, (2,)).tolist())


def test_local_round_trip_with_rng_state(tmp_path) -> None:
    url = str(tmp_path / "run" / "checkpoints" / "last.pt")  # parents are created
    assert not checkpoint_exists(url)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.randn()  # and in numpy's
    state = make_state(3)
    state["rng"] = capture_rng_state()
    save_checkpoint(state, url)
    expected = draws()

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    assert draws() != expected
    loaded = load_checkpoint(url)
    assert checkpoint_exists(url) and checkpoint_exists("file://" + url)
    restore_rng_state(loaded["rng"])
    assert draws() == expected
    rng = loaded.pop("rng")
    assert_same(state | {"rng": rng}, loaded | {"rng": rng})
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["last.pt"]


def test_overwrite_is_atomic_when_writing_fails(tmp_path, monkeypatch) -> None:
    url = str(tmp_path / "last.pt")
    save_checkpoint(make_state(1), url)

    def crash(src, dst):  # a kill between writing the temp file and renaming it
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(make_state(2), url)
    monkeypatch.undo()
    assert load_checkpoint(url)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_unserialisable_state_leaves_previous_checkpoint(tmp_path) -> None:
    url = str(tmp_path / "last.pt")
    save_checkpoint(make_state(1), url)
    with pytest.raises(TypeError, match=r"state\['extra'\]\['arr'\].*numpy"):
        save_checkpoint({"step": 2, "extra": {"arr": np.zeros(3)}}, url)
    with pytest.raises(TypeError, match=r"state\['fn'\]"):
        save_checkpoint({"step": 2, "fn": lambda: None}, url)
    assert load_checkpoint(url)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_missing_and_corrupt_files_name_the_url(tmp_path) -> None:
    missing = str(tmp_path / "nope" / "last.pt")
    with pytest.raises(CheckpointNotFoundError, match=re.escape(missing)) as info:
        load_checkpoint(missing)
    assert isinstance(info.value, FileNotFoundError)
    corrupt = tmp_path / "bad.pt"
    save_checkpoint(make_state(1), str(corrupt))
    corrupt.write_bytes(corrupt.read_bytes()[:100])  # truncated, as after a crash without atomic write
    with pytest.raises(CheckpointError, match=re.escape(str(corrupt))):
        load_checkpoint(str(corrupt))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(str(tmp_path / "junk.pt"))
    with pytest.raises(CheckpointNotFoundError):
        load_checkpoint(str(tmp_path))  # a directory is not a checkpoint


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A real S3 API (moto's server) over HTTP on 127.0.0.1, with dummy credentials."""
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_round_trip(s3_endpoint) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="ckpt")
    options = {"endpoint_url": s3_endpoint, "skip_instance_cache": True}
    url = "s3://ckpt/sweeps/trial-1/checkpoints/last.pt"
    assert not checkpoint_exists(url, options)
    state = make_state(5)
    state["rng"] = capture_rng_state()
    save_checkpoint(state, url, options)
    assert checkpoint_exists(url, options)
    loaded = load_checkpoint(url, {"client_kwargs": {"endpoint_url": s3_endpoint}, "skip_instance_cache": True})
    assert_same(state, loaded)
    save_checkpoint(make_state(6), url, options)  # replacing an object works too
    assert load_checkpoint(url, options)["step"] == 6
    with pytest.raises(CheckpointNotFoundError, match="s3://ckpt/other.pt"):
        load_checkpoint("s3://ckpt/other.pt", options)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rng_round_trip_with_gpu_map_location(tmp_path) -> None:
    url = str(tmp_path / "last.pt")
    torch.cuda.manual_seed_all(3)
    save_checkpoint({"rng": capture_rng_state()}, url)
    expected = torch.rand(4, device="cuda").tolist(), torch.rand(2).tolist()
    torch.cuda.manual_seed_all(4)
    torch.manual_seed(4)
    restore_rng_state(load_checkpoint(url, map_location="cuda")["rng"])
    assert (torch.rand(4, device="cuda").tolist(), torch.rand(2).tolist()) == expected
