"""Storage: project-home defaults, S3 through a real HTTP endpoint, secrets never shown."""

from __future__ import annotations

import pickle
from pathlib import Path

import boto3
import pyarrow.fs
import pytest

from orchestration.storage.filesystems import (default_storage_path, default_tracking_uri, open_fs,
                                               ray_storage, redact, rrn_home, storage_options)


def _keys(endpoint: str, bucket: str, prefix: str) -> set[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {obj["Key"] for obj in listed.get("Contents", [])}


def test_home_defaults_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RRN_HOME", raising=False)
    assert rrn_home() == tmp_path.resolve() / "rrn-home"
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/rrn-home/mlflow.db"
    assert default_tracking_uri().startswith("sqlite:////")          # four slashes: an absolute file
    assert default_storage_path() == str(tmp_path.resolve() / "rrn-home" / "results")
    monkeypatch.setenv("RRN_HOME", "elsewhere")                       # relative env value: made absolute
    assert rrn_home() == tmp_path.resolve() / "elsewhere"


def test_storage_options_take_credentials_only_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    assert storage_options() == {}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env-endpoint:9000")
    assert storage_options() == {"endpoint_url": "http://env-endpoint:9000", "key": "AKIA-test", "secret": "s3cr3t"}
    assert storage_options("http://explicit:9000")["endpoint_url"] == "http://explicit:9000"


def test_redact_hides_secrets_and_keeps_the_rest() -> None:
    original = {
        "endpoint_url": "http://minio:9000",
        "key": "AKIA-test",
        "secret": "s3cr3t",
        "env": {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "tok", "RRN_HOME": "/x",
                "MLFLOW_TRACKING_URI": "postgresql://mlflow:hunter2@db:5432/mlflow"},
        "headers": [{"Authorization": "Bearer abc"}],
    }
    clean = redact(original)
    text = repr(clean)
    for secret in ("AKIA-test", "s3cr3t", "tok", "hunter2", "Bearer abc"):
        assert secret not in text
    assert clean["endpoint_url"] == "http://minio:9000" and clean["env"]["RRN_HOME"] == "/x"
    assert clean["env"]["MLFLOW_TRACKING_URI"] == "postgresql://mlflow:***@db:5432/mlflow"
    assert original["secret"] == "s3cr3t"                               # input untouched


def test_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ray_storage("results") == (str(tmp_path.resolve() / "results"), None)
    assert ray_storage(f"file://{tmp_path}/r2")[0] == str(tmp_path / "r2")
    fs, path = open_fs("sub/file.txt")
    assert path == str(tmp_path.resolve() / "sub" / "file.txt")
    fs.makedirs(str(Path(path).parent), exist_ok=True)
    with fs.open(path, "w") as f:
        f.write("local")
    assert (tmp_path / "sub" / "file.txt").read_text() == "local"


def test_open_fs_s3_round_trip(s3_endpoint: tuple[str, str]) -> None:
    endpoint, bucket = s3_endpoint
    fs, path = open_fs(f"s3://{bucket}/fsspec/hello.txt", endpoint_url=endpoint)
    assert path == f"{bucket}/fsspec/hello.txt"
    with fs.open(path, "wb") as f:
        f.write(b"hello s3")
    assert _keys(endpoint, bucket, "fsspec/") == {"fsspec/hello.txt"}  # boto3 sees it on the server
    fs2, path2 = open_fs(f"s3://{bucket}/fsspec/hello.txt", endpoint_url=endpoint)
    assert fs2.cat(path2) == b"hello s3"


def test_ray_storage_filesystem_keeps_endpoint_through_pickling(s3_endpoint: tuple[str, str],
                                                                 tmp_path: Path) -> None:
    endpoint, bucket = s3_endpoint
    path, fs = ray_storage(f"s3://{bucket}/ray-results/", endpoint_url=endpoint)
    assert path == f"{bucket}/ray-results"
    assert isinstance(fs, pyarrow.fs.PyFileSystem)
    # Ray ships the filesystem to workers by pickling: the endpoint must survive.
    worker_fs = pickle.loads(pickle.dumps(fs))
    with worker_fs.open_output_stream(f"{path}/trial_0/result.json") as stream:
        stream.write(b'{"val/mIoU": 0.5}')
    # Ray Train persists checkpoint folders with pyarrow.fs.copy_files: do the same.
    local = tmp_path / "checkpoint"
    (local / "nested").mkdir(parents=True)
    (local / "nested" / "last.pt").write_bytes(b"weights")
    pyarrow.fs.copy_files(str(local), f"{path}/trial_0/checkpoint_000000",
                          source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=worker_fs)
    assert _keys(endpoint, bucket, "ray-results/") == {
        "ray-results/trial_0/result.json",
        "ray-results/trial_0/checkpoint_000000/nested/last.pt",
    }
    info = worker_fs.get_file_info(f"{path}/trial_0/result.json")
    assert info.type == pyarrow.fs.FileType.File and info.size == len(b'{"val/mIoU": 0.5}')


def test_endpoint_from_env_when_not_given(s3_endpoint: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, bucket = s3_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    path, fs = ray_storage(f"s3://{bucket}/from-env")
    with fs.open_output_stream(f"{path}/x.txt") as stream:
        stream.write(b"x")
    assert _keys(endpoint, bucket, "from-env/") == {"from-env/x.txt"}


def test_refreshed_credentials_give_a_fresh_filesystem(s3_endpoint: tuple[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, bucket = s3_endpoint
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-1")
    first, _ = open_fs(f"s3://{bucket}/x", endpoint)
    again, _ = open_fs(f"s3://{bucket}/x", endpoint)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-2")
    refreshed, _ = open_fs(f"s3://{bucket}/x", endpoint)
    assert first is again              # fsspec's cache still serves unchanged credentials
    assert refreshed is not first      # but never a filesystem holding the expired token
