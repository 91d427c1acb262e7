"""Checkpoint writes in the background, so training does not wait for a large upload.

Two R101 branches, two critics and their optimiser states make a checkpoint of about
1 GB; written synchronously to S3 at every evaluation, the GPUs idle for the whole
upload. `CheckpointWriter.save` instead blocks only for a snapshot of the state
(a copy of every tensor into host buffers that are reused from save to save;
asynchronous device-to-host copies on CUDA), then serialises and commits it on a
background thread while training continues.

Guarantees, and why they hold:

* **One write in flight at most.** `save` first waits for the previous write, so
  checkpoints commit in order and the host buffers are free to be reused.
* **Atomic commit.** The bytes are committed with checkpoint.write_checkpoint_bytes
  (temp file + os.replace locally; one PUT or a multipart upload that appears only
  when completed on S3): a reader or a resume sees the previous checkpoint or the
  new one, never a part of one, even if the process is killed mid-write.
* **Retried, then reported.** A failed commit is retried (`attempts`, with growing
  delays); each failure goes to `on_failure` (default: a logged warning). If every
  attempt fails the error is raised, as CheckpointError naming the URL, in the
  training thread at the next `save`, `wait` or `close`: a run never ends quietly
  without its checkpoint.
* **Exact resume.** The snapshot is taken at the very point the synchronous save
  serialised the live state, and the tensors copied are the same, so the bytes that
  land are those a synchronous save would have written.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rrn_core.checkpoint import CheckpointError, check_plain, serialize_checkpoint, write_checkpoint_bytes

__all__ = ["CheckpointWriter", "WriteRecord", "snapshot_state"]

log = logging.getLogger(__name__)

FailureCallback = Callable[[str, int, BaseException], None]


@dataclass
class WriteRecord:
    """What one save cost: the figures bench/checkpoint_cost.py prints."""

    url: str
    blocked_s: float = 0.0        # time `save` held the training thread (wait + snapshot)
    waited_s: float = 0.0         # part of blocked_s spent waiting for the previous write
    write_s: float = 0.0          # serialise + commit, on the background thread
    started: float = 0.0          # perf_counter when the background work began
    finished: float = 0.0         # perf_counter when it committed (or gave up)
    attempts: int = 0
    nbytes: int = 0
    error: BaseException | None = None


class _Buffers:
    """Host tensors reused across snapshots, keyed by their place in the state.

    A fresh 1 GB allocation per save costs page faults (and, for pinned memory, a
    slow cudaHostAlloc); since the next snapshot only starts once the previous write
    is done, one set of buffers is always free to reuse.
    """

    def __init__(self) -> None:
        self._by_path: dict[tuple[Any, ...], torch.Tensor] = {}

    def get(self, path: tuple[Any, ...], like: torch.Tensor) -> torch.Tensor:
        buf = self._by_path.get(path)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            pin = like.device.type == "cuda"
            buf = torch.empty(like.shape, dtype=like.dtype, device="cpu", pin_memory=pin)
            self._by_path[path] = buf
        return buf


def snapshot_state(state: Any, buffers: _Buffers | None = None, path: tuple[Any, ...] = ()
                   ) -> tuple[Any, bool]:
    """A copy of `state` whose tensors are host copies, safe from later in-place updates.

    Returns (copy, used_cuda): with used_cuda the device-to-host copies were only
    enqueued (non_blocking) on the current stream, and the caller must synchronise
    before reading the copy. Later optimiser steps on that stream are ordered after
    the copies, so training may go on at once.
    """
    buffers = buffers or _Buffers()
    if isinstance(state, torch.Tensor):
        src = state.detach()
        dst = buffers.get(path, src)
        dst.copy_(src, non_blocking=src.device.type == "cuda")
        return dst, src.device.type == "cuda"
    if isinstance(state, Mapping):
        # Module state dicts are OrderedDicts carrying `_metadata` (module versions that
        # load_state_dict reads): keep both, so the bytes match a synchronous save.
        out: dict[Any, Any] = OrderedDict() if isinstance(state, OrderedDict) else {}
        metadata = getattr(state, "_metadata", None)
        if metadata is not None:
            out._metadata = copy.deepcopy(metadata)  # type: ignore[attr-defined]
        cuda = False
        for key, value in state.items():
            out[key], used = snapshot_state(value, buffers, (*path, key))
            cuda = cuda or used
        return out, cuda
    if isinstance(state, (list, tuple)) and not isinstance(state, torch.Size):
        items, cuda = [], False
        for i, value in enumerate(state):
            item, used = snapshot_state(value, buffers, (*path, i))
            items.append(item)
            cuda = cuda or used
        return (items if isinstance(state, list) else tuple(items)), cuda
    return state, False  # numbers, strings, None, dtypes, sizes: immutable


class CheckpointWriter:
    """Saves checkpoints, in the background by default; see the module docstring.

    `background=False` gives the same commits inline (the synchronous reference the
    benchmark compares against). Call `close()` (or use it as a context manager)
    before the process ends, or the last checkpoint may not be written.
    """

    def __init__(self, *, background: bool = True, attempts: int = 3,
                 retry_delays: Sequence[float] = (1.0, 4.0, 16.0),
                 on_failure: FailureCallback | None = None) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.background = background
        self.attempts = attempts
        self.retry_delays = tuple(retry_delays) or (0.0,)
        self.on_failure = on_failure or _log_failure
        self.records: list[WriteRecord] = []
        self._buffers = _Buffers()
        self._thread: threading.Thread | None = None
        self._pending: WriteRecord | None = None

    # -- the training thread's calls ----------------------------------------------
    def save(self, state: Mapping[str, Any], url: str,
             storage_options: Mapping[str, Any] | None = None, *,
             block: bool | None = None) -> WriteRecord:
        """Commit `state` at `url`: in the background, or inline with `block=True`
        (default: inline only when the writer was made with background=False).

        Blocks until the previous write has committed (raising its error if it
        failed). In the background case it then blocks only for a snapshot of the
        state; inline it serialises the live state directly (nothing can change it
        meanwhile), exactly as a synchronous save_checkpoint does, retries included.
        A state that cannot be checkpointed (numpy arrays, objects) raises TypeError
        here, before anything is written.
        """
        inline = (not self.background) if block is None else block
        tic = time.perf_counter()
        self.wait()
        record = WriteRecord(url=url, waited_s=time.perf_counter() - tic)
        check_plain(state)
        options = dict(storage_options or {})
        self.records.append(record)
        if inline:
            self._pending = record
            self._write(record, state, options, None)
            record.blocked_s = time.perf_counter() - tic
            self.wait()
            return record
        snapshot, cuda = snapshot_state(state, self._buffers)
        ready = None
        if cuda:
            ready = torch.cuda.Event()
            ready.record()
        self._pending = record
        self._thread = threading.Thread(target=self._write, args=(record, snapshot, options, ready),
                                        name="rrn-checkpoint-writer", daemon=True)
        record.blocked_s = time.perf_counter() - tic
        self._thread.start()
        return record

    def wait(self) -> None:
        """Block until the write in flight (if any) is done; raise if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        record, self._pending = self._pending, None
        if record is not None and record.error is not None:
            raise CheckpointError(f"{record.url}: checkpoint not written after {record.attempts} "
                                  f"attempt(s): {record.error}") from record.error

    @property
    def busy(self) -> bool:
        """True while a background write is still running."""
        return self._thread is not None and self._thread.is_alive()

    def close(self, raise_errors: bool = True) -> None:
        """Wait for the last write. With raise_errors=False (the run is already failing
        with another exception) a failed write is logged instead of raised, so it does
        not mask the original error."""
        try:
            self.wait()
        except CheckpointError as err:
            if raise_errors:
                raise
            log.error("%s", err)

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(raise_errors=exc_type is None)

    # -- the background thread ------------------------------------------------------
    def _write(self, record: WriteRecord, snapshot: Any, options: dict[str, Any],
               ready: torch.cuda.Event | None) -> None:
        record.started = time.perf_counter()
        try:
            if ready is not None:
                ready.synchronize()
            data = serialize_checkpoint(snapshot)
            record.nbytes = len(data)
            del snapshot
            for attempt in range(1, self.attempts + 1):
                record.attempts = attempt
                try:
                    write_checkpoint_bytes(data, record.url, options)
                    record.error = None
                    break
                except Exception as err:  # retried: network, permissions, a full disk
                    record.error = err
                    self.on_failure(record.url, attempt, err)
                    if attempt < self.attempts:
                        time.sleep(self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)])
        except Exception as err:  # serialisation failed: not transient, not retried
            record.error = err
        finally:
            record.finished = time.perf_counter()
            record.write_s = record.finished - record.started


def _log_failure(url: str, attempt: int, err: BaseException) -> None:
    log.warning("checkpoint write to %s failed (attempt %d): %s", url, attempt, err)
