"""A real S3 endpoint for tests: moto's server on 127.0.0.1, spoken to over HTTP.

Storage bugs live in the wire details (endpoint overrides lost on the way to a
worker, credentials read from the wrong place), which an in-process mock cannot
show. So tests talk to an actual HTTP S3 server on a free local port.

`s3_endpoint` (module scope, so module-scoped fixtures such as a sweep run can
use it) yields (endpoint_url, bucket) for a fresh bucket, with dummy AWS_*
credentials in the environment and every ambient AWS setting that could steer
requests elsewhere removed. AWS_ENDPOINT_URL is deliberately NOT set: code under
test must pass the endpoint on explicitly (e.g. a space's storage.endpoint_url),
otherwise its requests leave for AWS and fail. Processes started by a test
(Ray workers) inherit these variables only if started after the fixture.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "rrn-test-key",
    "AWS_SECRET_ACCESS_KEY": "rrn-test-secret-value",
    "AWS_DEFAULT_REGION": "us-east-1",
}
CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
           "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION")


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's threaded HTTP server on a free port of 127.0.0.1; yield its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server_url() -> Iterator[str]:
    """One moto server per test session (starting it costs ~1 s)."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def s3_endpoint(s3_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(endpoint_url, bucket): a fresh bucket on the local S3 server, dummy credentials set."""
    import boto3

    aws_dir = tmp_path_factory.mktemp("aws")
    patch = pytest.MonkeyPatch()
    for name, value in DUMMY_CREDENTIALS.items():
        patch.setenv(name, value)
    for name in CLEARED:
        patch.delenv(name, raising=False)
    # No ~/.aws files: only the environment may supply settings.
    patch.setenv("AWS_CONFIG_FILE", str(aws_dir / "config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_dir / "credentials"))
    bucket = f"rrn-test-{uuid.uuid4().hex[:10]}"
    try:
        boto3.client("s3", endpoint_url=s3_server_url, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield s3_server_url, bucket
    finally:
        patch.undo()
