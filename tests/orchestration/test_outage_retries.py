"""Writes during a service outage: retried until the service is back, or a clear failure.

Real endpoints only: moto's S3 server behind the relay the cluster test uses (the
relay is killed for the outage, moto keeps its objects) and a port with nothing
listening for the tracking server. The multi-node test (test_cluster.py) shows the
same retries carrying a whole sweep through 30 s outages; these pin the edges:
a write that finally fails raises a named error and leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.cluster.local import Secrets
from orchestration.cluster.local_services import S3
from orchestration.cluster.processes import free_port
from orchestration.storage.filesystems import ray_storage
from orchestration.storage.retry import ENV_RETRY_S, StorageUnavailable, is_transient
from orchestration.tracking.retry import PatientClient, is_unreachable, patiently


@pytest.fixture(scope="module")
def relayed_s3() -> Iterator[S3]:
    secrets = Secrets()
    patch = pytest.MonkeyPatch()
    for key, value in secrets.env().items():
        patch.setenv(key, value)
    patch.setenv("AWS_CONFIG_FILE", os.devnull)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    s3 = S3(Path(tempfile.mkdtemp(prefix="rrn-s3-")), {**os.environ, **secrets.env()})
    try:
        s3.start()
        yield s3
    finally:
        s3.stop()
        patch.undo()


def test_checkpoint_write_waits_out_an_s3_outage(relayed_s3: S3) -> None:
    path, fs = ray_storage(f"s3://{relayed_s3.bucket}/r", relayed_s3.url)
    relayed_s3.stop_relay()
    back = threading.Timer(4.0, relayed_s3.start_relay)
    back.start()
    tic = time.monotonic()
    with fs.open_output_stream(f"{path}/ckpt/last.pt") as out:
        out.write(b"x" * 100_000)
    waited = time.monotonic() - tic
    back.join()
    assert waited >= 3.5, f"the write did not meet the outage ({waited:.1f}s)"
    with fs.open_input_stream(f"{path}/ckpt/last.pt") as src:
        assert src.read() == b"x" * 100_000


def test_write_that_finally_fails_raises_and_leaves_no_object(relayed_s3: S3,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path, fs = ray_storage(f"s3://{relayed_s3.bucket}/r", relayed_s3.url)
    monkeypatch.setenv(ENV_RETRY_S, "2")
    spools = set(Path(tempfile.gettempdir()).glob("rrn-upload-*"))
    relayed_s3.stop_relay()
    try:
        with pytest.raises(StorageUnavailable, match=r"upload of .*/half/last.pt failed .*RRN_STORAGE_RETRY_S=2"):
            with fs.open_output_stream(f"{path}/half/last.pt") as out:
                out.write(b"y" * 100_000)
    finally:
        relayed_s3.start_relay()
    info = fs.get_file_info(f"{path}/half/last.pt")
    assert info.type.name == "NotFound", "a failed write left an object a resume could load"
    assert set(Path(tempfile.gettempdir()).glob("rrn-upload-*")) <= spools, "the spool file was left behind"


def test_missing_object_is_not_retried(relayed_s3: S3) -> None:
    path, fs = ray_storage(f"s3://{relayed_s3.bucket}/r", relayed_s3.url)
    tic = time.monotonic()
    with pytest.raises(FileNotFoundError):
        fs.open_input_stream(f"{path}/no/such/object")
    assert time.monotonic() - tic < 5
    assert not is_transient(FileNotFoundError("x")) and is_transient(ConnectionRefusedError())


def test_tracking_calls_retry_while_the_server_is_away_then_fail_clearly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    client = PatientClient(MlflowClient(f"http://127.0.0.1:{free_port()}"))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"   # MLflow's own doubling shortened
    monkeypatch.setenv("RRN_TRACKING_RETRY_S", "3")
    tic = time.monotonic()
    with pytest.raises(MlflowException) as caught:
        client.get_experiment_by_name("x")
    assert is_unreachable(caught.value)
    assert 3 <= time.monotonic() - tic < 60
    # a refusal by the server itself is raised at once
    refused = MlflowException("bad", error_code="INVALID_PARAMETER_VALUE")
    calls = []

    def bad() -> None:
        calls.append(1)
        raise refused

    with pytest.raises(MlflowException):
        patiently("x", bad, budget=30)
    assert calls == [1]
