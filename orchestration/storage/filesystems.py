"""Where results live: the project home on a laptop, or any fsspec/S3 store.

One module decides paths and credentials so that the sweep driver, Ray workers,
checkpoints and MLflow all agree on them. Two failure modes drive the design:

* Ray's own S3 handling (pyarrow's S3FileSystem built from a URI) drops custom
  endpoints, so MinIO/Ceph/moto users silently write to AWS. We hand Ray a pyarrow
  filesystem wrapping s3fs, whose constructor arguments (endpoint included)
  survive pickling to every worker.
* Credentials must never reach a log line, a results file or an MLflow param:
  they come from the environment only and `redact` masks them before printing.

Heavy imports (fsspec, s3fs, pyarrow) stay inside the functions: `rrn --help` and
`rrn space validate` must answer at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import fsspec
import pyarrow.fs
import s3fs

from orchestration.ray_compat import secrets_kept_out_of_trial_envs
from orchestration.storage.retry import RetryingFSSpecHandler

if TYPE_CHECKING:  # pragma: no cover - typing only
    import fsspec
    import pyarrow.fs

#: Environment variables that carry S3 credentials; nothing else is read for them.
CREDENTIAL_ENV = {
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "token",
}
REDACTED = "***"
_S3_SCHEMES = ("s3", "s3a")


def rrn_home() -> Path:
    """The project home (env RRN_HOME, default ./rrn-home), always absolute.

    Absolute because Ray Tune runs trials with another working directory: a
    relative path would point somewhere else inside every trial.
    """
    return Path(os.environ.get("RRN_HOME") or "rrn-home").expanduser().resolve()


def default_tracking_uri() -> str:
    """The laptop default MLflow store: a sqlite file in the project home."""
    return f"sqlite:///{rrn_home() / 'mlflow.db'}"


def default_storage_path() -> str:
    """Absolute local directory for Ray results (Tune's storage_path)."""
    return str(rrn_home() / "results")


def is_remote(path: str) -> bool:
    """True for URLs with a non-local scheme (s3://, gs://, ...)."""
    scheme = urlsplit(path).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter = a Windows drive


def is_s3(path: str) -> bool:
    return urlsplit(path).scheme in _S3_SCHEMES


def storage_options(endpoint_url: str | None = None) -> dict[str, Any]:
    """s3fs keyword arguments: endpoint from the argument or AWS_ENDPOINT_URL,
    credentials only from the AWS_* environment variables.

    Credentials are passed explicitly (instead of letting botocore find them) so
    that fsspec's instance cache is keyed by them: a refreshed session token gives
    a fresh filesystem instead of a cached one holding expired credentials. The
    result contains secrets: pass it through `redact` before logging it.
    """
    options: dict[str, Any] = {}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    for env_name, option in CREDENTIAL_ENV.items():
        value = os.environ.get(env_name)
        if value:
            options[option] = value
    return options


def _local_path(url: str) -> str:
    if url.startswith("file://"):
        url = urlsplit(url).path
    return str(Path(url).expanduser().resolve())


def open_fs(url: str, endpoint_url: str | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """An fsspec filesystem and the path inside it, for a local path or a URL.

    S3 URLs get `storage_options(endpoint_url)`; other schemes use fsspec's
    defaults (their own credential chains). Local paths come back absolute.
    """
    if not is_remote(url):
        return fsspec.filesystem("file"), _local_path(url)
    options = storage_options(endpoint_url) if is_s3(url) else {}
    if is_s3(url) and urlsplit(url).scheme != "s3":
        url = "s3://" + url.split("://", 1)[1]
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


def ray_storage(path: str, endpoint_url: str | None = None) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """(storage_path, storage_filesystem) for Ray Tune/Train RunConfig.

    Remote: the path without its scheme plus a pyarrow PyFileSystem around s3fs, so
    the endpoint override travels with the (picklable) filesystem to every worker.
    The s3fs instance carries no key/secret/token: Ray pickles it into `tuner.pkl`
    and the searcher state in the results bucket, where an explicit secret would sit
    in clear. botocore reads the AWS_* variables in each process instead.
    Local: an absolute path and None (Ray's default).
    """
    if not is_remote(path):
        return _local_path(path), None

    # Retried through store outages, all-or-nothing writes (orchestration/storage/retry.py).
    if not is_s3(path):
        fs, inner = open_fs(path, endpoint_url)
        return inner.rstrip("/"), pyarrow.fs.PyFileSystem(RetryingFSSpecHandler(fs))

    secret = set(CREDENTIAL_ENV.values())
    options = {k: v for k, v in storage_options(endpoint_url).items() if k not in secret}
    inner = path.split("://", 1)[1].rstrip("/")
    return inner, pyarrow.fs.PyFileSystem(RetryingFSSpecHandler(s3fs.S3FileSystem(**options)))


@contextmanager
def credentials_kept_out_of_ray() -> Iterator[None]:
    """Keep AWS_* credentials out of the runtime_env Ray Tune gives each trial actor.

    Ray Tune copies AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the session tokens
    from the driver's environment into every trainable's runtime_env, and Ray's
    runtime-env agent logs runtime envs at INFO into the session's world-readable log
    folder: the secret ended up in clear on several lines of runtime_env_agent.log.
    (How: orchestration/ray_compat.py.)
    """
    with secrets_kept_out_of_trial_envs(is_secret_key):
        yield


_SECRET_WORDS = ("secret", "token", "password", "passwd", "credential", "authorization",
                 "api_key", "apikey", "private_key", "access_key")
_SECRET_EXACT = {"key", "pwd"}
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<at>@)")


def is_secret_key(name: str) -> bool:
    """Whether a mapping key names a secret (AWS_SECRET_ACCESS_KEY, token, key...)."""
    low = str(name).lower()
    return low in _SECRET_EXACT or any(word in low for word in _SECRET_WORDS)


def redact_text(text: str) -> str:
    """Mask passwords embedded in URLs (postgresql://user:pw@host, http://u:t@h)."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['at']}", text)


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to log: secret-named values masked, URL passwords masked,
    nested mappings and lists handled. The input is left untouched."""

    def clean(key: str | None, value: Any) -> Any:
        if key is not None and is_secret_key(key) and value not in (None, ""):
            return REDACTED
        if isinstance(value, Mapping):
            return {k: clean(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(clean(None, v) for v in value)
        if isinstance(value, str):
            return redact_text(value)
        return value

    return {k: clean(str(k), v) for k, v in mapping.items()}
