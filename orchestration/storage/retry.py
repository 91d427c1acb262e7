"""Object-store calls that survive an outage: retried with backoff, then a clear error.

Ray persists every checkpoint and the experiment state through the pyarrow
filesystem `storage.ray_storage` builds. With the plain `FSSpecHandler` an object
store that is away for a few seconds (a restarted MinIO, a failed-over endpoint,
a network blip) fails the write at once: botocore's own retries last about two
seconds, after which `tune.report` raises, the trial is restarted, its restore
from the same unreachable store fails too, and after `max_failures` the trial is
lost. Users report exactly this as "lost checkpoints when S3 writes fail".

`RetryingFSSpecHandler` retries each operation that failed for a *transient*
reason (connection refused or reset, timeouts, HTTP 5xx/throttling) with growing
delays until `RRN_STORAGE_RETRY_S` seconds (default 120) have passed; then it
raises `StorageUnavailable` naming the operation, the path and the last error.
Errors that retrying cannot fix (missing object, access denied) are raised at once.

Writes are all-or-nothing: an output stream is spooled to a local temporary file
and uploaded in one `put_file` when it is closed (a single PUT, or a multipart
upload that S3 only shows once completed), and retried as a whole. A write that
finally fails leaves no object behind, and Ray registers a checkpoint only after
all its files were persisted, so a resume never loads a half-written checkpoint.
Reads are fetched whole (spooled the same way) for the same reason: a stream cut
mid-object by an outage is retried, not handed back truncated.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
from pyarrow.fs import FSSpecHandler

log = logging.getLogger(__name__)

ENV_RETRY_S = "RRN_STORAGE_RETRY_S"
DEFAULT_RETRY_S = 120.0
#: Spooled transfers stay in memory up to this size, then go to a temp file.
SPOOL_BYTES = 64 * 2**20
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                     errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN}
_TRANSIENT_WORDS = ("connect", "timed out", "timeout", "serviceunavailable", "service unavailable",
                    "slowdown", "internalerror", "internal error", "503", "502", "500", "504",
                    "throttl", "reset by peer", "broken pipe", "remote end closed",
                    "server disconnected", "incompleteread", "temporarily")

T = TypeVar("T")


class StorageUnavailable(OSError):
    """The object store stayed unreachable for the whole retry budget."""


def env_seconds(name: str, default: float) -> float:
    """A non-negative number of seconds from the environment (`default` if unset or
    not a number): the retry budgets of storage and tracking calls."""
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


def retry_budget() -> float:
    """Seconds an operation keeps retrying (env RRN_STORAGE_RETRY_S, default 120)."""
    return env_seconds(ENV_RETRY_S, DEFAULT_RETRY_S)


def is_transient(err: BaseException) -> bool:
    """Whether waiting could fix `err`: network and server-side failures, not
    missing objects or refused permissions."""
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                        FileExistsError, ValueError, TypeError)):
        return False
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (ConnectionError, TimeoutError)):
            return True
        if isinstance(err, OSError) and err.errno in _TRANSIENT_ERRNOS:
            return True
        name = type(err).__name__.lower()
        text = f"{name} {err}".lower()
        if any(word in text for word in _TRANSIENT_WORDS):
            return True
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def with_retries(what: str, call: Callable[[], T], budget: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, retried on transient errors with delays 0.5, 1, 2, 4, 8, 8 ... s
    until `budget` seconds passed; then StorageUnavailable."""
    budget = retry_budget() if budget is None else budget
    deadline = time.monotonic() + budget
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - classified below
            if not is_transient(err):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageUnavailable(
                    f"object store unreachable: {what} failed {attempt} time(s) over {budget:g}s "
                    f"(retry budget {ENV_RETRY_S}={budget:g}); last error: {type(err).__name__}: {err}"
                ) from err
            log.warning("storage: %s failed (%s: %s); retrying in %.1fs", what, type(err).__name__,
                        err, min(delay, left))
            sleep(min(delay, left))
            delay = min(delay * 2, 8.0)


class _UploadOnClose:
    """A writable file that spools locally and uploads in one retried put on close."""

    def __init__(self, fs: Any, path: str) -> None:
        self._fs, self._path = fs, path
        self._tmp = tempfile.NamedTemporaryFile(prefix="rrn-upload-", delete=False)
        self.closed = False

    def write(self, data: bytes) -> int:
        return self._tmp.write(data)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._tmp.tell()

    def flush(self) -> None:
        self._tmp.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._tmp.close()
        try:
            with_retries(f"upload of {self._path}", lambda: self._fs.put_file(self._tmp.name, self._path))
        finally:
            os.unlink(self._tmp.name)


def _fetch(fs: Any, path: str) -> Any:
    """The whole object, in a spooled temp file rewound to its start."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    with fs.open(path, "rb") as src:
        shutil.copyfileobj(src, out, 4 * 2**20)
    out.seek(0)
    return out


class RetryingFSSpecHandler(FSSpecHandler):
    """FSSpecHandler whose every call rides out a store outage (see module docstring).

    Picklable like its parent (Ray ships it to every worker with the filesystem)."""

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        return with_retries(what, call)

    def get_file_info(self, paths):  # noqa: ANN001, ANN201 - pyarrow's signature
        return self._retry(f"stat of {paths[:3]}", lambda: super(RetryingFSSpecHandler, self).get_file_info(paths))

    def get_file_info_selector(self, selector):  # noqa: ANN001, ANN201
        return self._retry(f"listing of {selector.base_dir}",
                           lambda: super(RetryingFSSpecHandler, self).get_file_info_selector(selector))

    def create_dir(self, path, recursive):  # noqa: ANN001, ANN201
        return self._retry(f"mkdir {path}", lambda: super(RetryingFSSpecHandler, self).create_dir(path, recursive))

    def delete_dir(self, path):  # noqa: ANN001, ANN201
        return self._retry(f"delete of {path}", lambda: super(RetryingFSSpecHandler, self).delete_dir(path))

    def delete_dir_contents(self, path, missing_dir_ok=False):  # noqa: ANN001, ANN201
        return self._retry(f"delete of {path}/*", lambda: super(RetryingFSSpecHandler, self)
                           .delete_dir_contents(path, missing_dir_ok))

    def delete_file(self, path):  # noqa: ANN001, ANN201
        return self._retry(f"delete of {path}", lambda: super(RetryingFSSpecHandler, self).delete_file(path))

    def move(self, src, dest):  # noqa: ANN001, ANN201
        return self._retry(f"move {src}", lambda: super(RetryingFSSpecHandler, self).move(src, dest))

    def copy_file(self, src, dest):  # noqa: ANN001, ANN201
        return self._retry(f"copy {src}", lambda: super(RetryingFSSpecHandler, self).copy_file(src, dest))

    def open_input_stream(self, path):  # noqa: ANN001, ANN201
        return pa.PythonFile(self._retry(f"download of {path}", lambda: _fetch(self.fs, path)), mode="r")

    def open_input_file(self, path):  # noqa: ANN001, ANN201
        return pa.PythonFile(self._retry(f"download of {path}", lambda: _fetch(self.fs, path)), mode="r")

    def open_output_stream(self, path, metadata):  # noqa: ANN001, ANN201
        return pa.PythonFile(_UploadOnClose(self.fs, path), mode="w")
