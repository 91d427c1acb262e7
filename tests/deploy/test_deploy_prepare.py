"""deploy/mlflow/prepare.py (the MLflow pod's init step) against a real S3 endpoint:
moto's server on 127.0.0.1, spoken to over HTTP, as SeaweedFS is in the cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest
from deploy_helpers import REPO

SCRIPT = REPO / "deploy" / "mlflow" / "prepare.py"


@pytest.fixture()
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing-id",
                       "AWS_SECRET_ACCESS_KEY": "testing-key", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield url
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_waits_for_tcp_then_creates_the_bucket_once(s3_endpoint: str) -> None:
    port = s3_endpoint.rsplit(":", 1)[1]
    first = run("--wait-tcp", f"127.0.0.1:{port}", "--bucket", "rrn", "--timeout", "30")
    assert first.returncode == 0, first.stderr
    assert "created bucket rrn" in first.stdout
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    # In-process moto servers share one backend, so other tests' buckets may be there.
    assert [b["Name"] for b in client.list_buckets()["Buckets"]].count("rrn") == 1
    client.put_object(Bucket="rrn", Key="keep.txt", Body=b"x")
    again = run("--bucket", "rrn", "--timeout", "30")  # a restarted pod: nothing changes
    assert again.returncode == 0 and "bucket rrn exists" in again.stdout
    assert client.get_object(Bucket="rrn", Key="keep.txt")["Body"].read() == b"x"
    assert "testing-key" not in first.stdout + first.stderr + again.stdout


def test_gives_up_with_exit_1_when_a_dependency_never_answers() -> None:
    result = run("--wait-tcp", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert result.returncode == 1
    assert "not reachable" in result.stderr
