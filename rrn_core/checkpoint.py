"""Checkpoints through fsspec: the same two calls for a laptop directory and for S3.

A checkpoint is a plain dict (state dicts, step, config, RNG state) serialised with
torch.save. It is serialised to memory first, so a state that cannot be saved never
touches the file system; on local disks it is then written to a temporary file beside
the target and moved over it with os.replace, so a process killed mid-write leaves the
previous last.pt intact. Object stores replace an object in one PUT, which is atomic.

Loading uses torch.load(weights_only=True): a checkpoint fetched from a shared bucket
cannot run code. save_checkpoint therefore refuses, naming the key, any value that
such a load could not read back (numpy arrays, arbitrary objects), so the mistake shows
up at the first save rather than at resume time.

Writing in the background, so that training does not wait for a large upload, is
rrn_core.checkpoint_writer's job; it uses serialize_checkpoint and
write_checkpoint_bytes from here, so both paths commit the same way.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
from collections.abc import Mapping
from typing import Any

import fsspec
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem

from rrn_core.errors import UserError

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "capture_rng_state",
    "check_plain",
    "checkpoint_exists",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "serialize_checkpoint",
    "write_checkpoint_bytes",
]

_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be written or read; the message names the URL."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the URL (also a FileNotFoundError, for callers that test for that)."""


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url, **dict(storage_options or {}))


def _check_plain(value: Any, where: str) -> None:
    """Reject what torch.load(weights_only=True) would refuse, naming the key path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, _PLAIN_TYPES):
                raise TypeError(f"{where}: key {key!r} of type {type(key).__name__} cannot be checkpointed")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN_TYPES):
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__name__}; checkpoints hold only "
            "tensors, numbers, strings and lists/dicts of them (convert with torch.as_tensor or .tolist())")


def save_checkpoint(state: dict[str, Any], url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write `state` to a local path or an fsspec URL (s3://bucket/key), replacing it whole."""
    write_checkpoint_bytes(serialize_checkpoint(state), url, storage_options)


def serialize_checkpoint(state: dict[str, Any]) -> bytes:
    """Check `state` (see check_plain) and torch.save it to bytes.

    Separate from the write so that a background writer can serialise once and retry
    only the upload, and so a state that cannot be saved never touches the store.
    """
    check_plain(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def write_checkpoint_bytes(data: bytes, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Commit serialised checkpoint bytes at `url` atomically: a reader sees the old
    object or the new one, never part of one (temp file + os.replace on local disks;
    one PUT, or a multipart upload that only appears when completed, on S3)."""
    fs, path = _fs(url, storage_options)
    if isinstance(fs, LocalFileSystem):
        _write_local_atomic(path, data)
    else:
        try:
            fs.pipe_file(path, data)
        except Exception as err:  # network / permission errors come in many types
            raise CheckpointError(f"{url}: could not write checkpoint: {err}") from err


def check_plain(state: Mapping[str, Any]) -> None:
    """Raise TypeError, naming the key, for any value torch.load(weights_only=True)
    could not read back; run before anything is written."""
    _check_plain(state, "state")


def _write_local_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    fs, path = _fs(url, storage_options)
    return bool(fs.isfile(path))


def load_checkpoint(url: str, storage_options: Mapping[str, Any] | None = None,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint; errors name the URL."""
    fs, path = _fs(url, storage_options)
    try:
        data = fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError):
        raise CheckpointNotFoundError(f"{url}: no checkpoint file there") from None
    except Exception as err:
        raise CheckpointError(f"{url}: could not read checkpoint: {err}") from err
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # zip, pickle and weights_only errors have no common base
        raise CheckpointError(f"{url}: not a readable checkpoint (corrupt or truncated?): {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{url}: holds a {type(state).__name__}, expected a dict")
    return state


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every global RNG a training step draws from, as tensors and plain numbers.

    Restoring it makes a resumed run draw the same dropout masks, samples and
    augmentations as an uninterrupted one. On CUDA only the state of the device this
    process trains on is kept (`device`, default the current one): a rank owns one
    device, and a restart may map it to another index.
    """
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": _python_state_to_plain(random.getstate()),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        index = device.index if device is not None and device.type == "cuda" else torch.cuda.current_device()
        state["cuda_device"] = torch.cuda.get_rng_state(index)
    return state


def restore_rng_state(state: Mapping[str, Any], device: torch.device | None = None) -> None:
    """Put back what capture_rng_state took; the CUDA state goes to this process's
    device (`device`, default the current one), whatever index it was saved from."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(torch.as_tensor(internal).tolist()), gauss))
    npst = state["numpy"]
    key = np.asarray(torch.as_tensor(npst["key"]).cpu().numpy(), dtype=np.uint32)
    np.random.set_state(("MT19937", key, int(npst["pos"]), int(npst["has_gauss"]), float(npst["gauss"])))
    # set_rng_state wants CPU byte tensors; map_location may have moved them to a GPU.
    torch.set_rng_state(torch.as_tensor(state["torch"]).cpu())
    if torch.cuda.is_available():
        index = device.index if device is not None and device.type == "cuda" else torch.cuda.current_device()
        if state.get("cuda_device") is not None:
            torch.cuda.set_rng_state(torch.as_tensor(state["cuda_device"]).cpu(), device=index)
        elif state.get("cuda"):  # checkpoints written before per-device states: take this index's
            states = state["cuda"]
            torch.cuda.set_rng_state(torch.as_tensor(states[min(index, len(states) - 1)]).cpu(), device=index)


def _python_state_to_plain(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [int(version), torch.tensor(internal, dtype=torch.int64), gauss]
