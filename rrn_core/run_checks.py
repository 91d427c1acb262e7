"""The up-front check of one run: everything that can be refused before anything is written.

`rrn train`, `rrn eval`, `rrn predict` and every grid point of `rrn sweep` call
these functions before they write a split file, a folder, a checkpoint or an
MLflow run. Each problem names the field (and the file) at fault, and all
problems are reported at once: a run that would die at its first checkpoint,
at the first unlabeled batch or in `torch.load` costs the user minutes to hours;
here it costs seconds. Nothing in this module writes: writability is judged from
the nearest existing folder (`os.access`), reachability from a read.

orchestration/sweep/checks.py adds what only a sweep or a tracked run has (MLflow
store, Ray storage, cluster resources, objective metric) on top of this.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Literal

import fsspec
import torch

from rrn_core.checkpoint import CheckpointError, CheckpointNotFoundError, load_checkpoint
from rrn_core.errors import UserError
from rrn_core.config import RunConfig
from rrn_core.constants import CHECKPOINT_NAME
from rrn_core.data.bundle import changed_split_files, derived_split_folder, layout_for
from rrn_core.data.check import check_dataset
from rrn_core.data.image_files import DataError
from rrn_core.data.splits import LABELED_FILE, UNLABELED_FILE, labeled_size
from rrn_core.methods.table import method_class
from rrn_core.models.pretrained import pretrained_problem as weights_problem
from rrn_core.paths import is_url

DataScope = Literal["all", "val", "none"]

#: Seconds a reachability probe of a remote store may take before it counts as unreachable.
REMOTE_TIMEOUT_S = 15.0


class PreflightError(UserError):
    """A run refused before it started; the message lists every problem."""


def raise_problems(source: str, problems: list[str], what: str = "cannot run") -> None:
    """One PreflightError naming `source` and every problem (no-op when there are none)."""
    problems = list(dict.fromkeys(problems))
    if problems:
        raise PreflightError(f"{source}: {what}:\n" + "\n".join(f"  {p}" for p in problems))


# --------------------------------------------------------------------------- places


def writable_dir_problem(path: str | Path, field: str) -> str | None:
    """Why `mkdir -p path` followed by writing files inside it would fail (None: it
    would work), judged without creating anything."""
    target = Path(path).expanduser().absolute()
    if target.exists():
        if not target.is_dir():
            return f"{field}: {target} exists and is not a folder"
        if not os.access(target, os.W_OK | os.X_OK):
            return f"{field}: {target} is not writable"
        return None
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{field}: {target} cannot be created: {parent} is a file, not a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{field}: {target} cannot be created: {parent} is not writable"
            return None
    return f"{field}: {target} cannot be created"


def writable_file_problem(path: str | Path, field: str) -> str | None:
    """Why creating or updating the file `path` would fail (None: it would work)."""
    target = Path(path).expanduser().absolute()
    if target.exists():
        if target.is_dir():
            return f"{field}: {target} is a folder, not a file"
        if not os.access(target, os.R_OK | os.W_OK):
            return f"{field}: {target} is not writable"
        return None
    return writable_dir_problem(target.parent, field)


def _quick_options(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Short timeouts and one attempt for an S3 probe (botocore retries for minutes)."""
    opts = dict(options)
    if url.startswith(("s3://", "s3a://")):
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("connect_timeout", 5)
        config.setdefault("read_timeout", 5)
        config.setdefault("retries", {"max_attempts": 1})
        opts["config_kwargs"] = config
        opts.setdefault("skip_instance_cache", True)
    return opts


def remote_problem(url: str, options: Mapping[str, Any], field: str) -> str | None:
    """Why the remote location `url` cannot be used (None: its bucket/root answers)."""
    def probe() -> None:
        fs, path = fsspec.core.url_to_fs(url, **_quick_options(url, options))
        root = path.strip("/").split("/", 1)[0]
        if fs.exists(path) and fs.isfile(path):
            raise NotADirectoryError(f"{url} is an object, not a folder")
        if root and not fs.exists(root):
            raise FileNotFoundError(f"bucket {root!r} does not exist")

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(probe).result(timeout=REMOTE_TIMEOUT_S)
    except FutureTimeout:
        return f"{field}: {_redact(url)} did not answer within {REMOTE_TIMEOUT_S:g} s"
    except Exception as err:  # noqa: BLE001 - any failure means the run could not write there
        return f"{field}: {_redact(url)} is not reachable ({type(err).__name__}: {_redact(str(err))[:300]})"
    finally:
        pool.shutdown(wait=False)
    return None


def _redact(text: str) -> str:
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]+@", r"\1***@", text)


def output_problem(url: str, options: Mapping[str, Any], field: str) -> str | None:
    """A run's output location: a writable local folder or a reachable remote one."""
    if is_url(url) and not url.startswith("file://"):
        return remote_problem(url, options, field)
    return writable_dir_problem(url.removeprefix("file://"), field)


# --------------------------------------------------------------------------- run


def device_problem(device: str) -> str | None:
    """runtime.device: cuda needs a CUDA device on this machine."""
    if device == "cuda" and not torch.cuda.is_available():
        return "runtime.device: 'cuda' but this machine has no CUDA device (use auto or cpu)"
    return None


def pretrained_problem(cfg: RunConfig) -> str | None:
    """model.pretrained: the file exists, or the named weights are in the cache (fetched
    into it when there is network); offline with an empty cache says how to pre-fetch."""
    return weights_problem(cfg.model.backbone, cfg.model.pretrained)


def unlabeled_count(cfg: RunConfig) -> int:
    """How many unlabeled images the run's split gives, computed without writing it."""
    d = cfg.data
    layout = layout_for(d)
    if d.labeled_split is not None:
        return len(layout.samples(d.unlabeled_split, "train", need_mask=False)) if d.unlabeled_split else 0
    if d.label_ratio is None and d.label_count is None:
        return 0
    total = len(layout.samples(d.train_split, "train", need_mask=False))
    return total - labeled_size(total, d.label_ratio, d.label_count)


def split_problem(cfg: RunConfig) -> str | None:
    """A semi-supervised method on a split without unlabeled images cannot train."""
    try:
        unlabeled = unlabeled_count(cfg)
    except DataError as err:
        return str(err)
    except ValueError as err:
        return f"data: {err}"
    if method_class(cfg.method.name).uses_unlabeled and unlabeled == 0:
        return (f"method.name: {cfg.method.name!r} needs unlabeled images but this split leaves "
                "none (set data.label_ratio < 1 or data.label_count)")
    return None


def split_write_problem(cfg: RunConfig) -> str | None:
    """A run drawing its split (label_ratio / label_count) writes the split files under
    data.split_dir unless the same files are there: that folder must be writable (a
    read-only data root is refused here, not after the run's tracking has started)."""
    d = cfg.data
    if d.labeled_split is not None or (d.label_ratio is None and d.label_count is None):
        return None
    layout = layout_for(d)
    folder = derived_split_folder(d, layout, d.label_ratio, d.label_count, d.split_seed)
    if all((folder / name).is_file() for name in (LABELED_FILE, UNLABELED_FILE)):
        train = layout.samples(d.train_split, "train", need_mask=False)
        if not changed_split_files(train, d.label_ratio, d.label_count, d.split_seed, folder):
            return None
    problem = writable_dir_problem(folder, "data.split_dir")
    return None if problem is None else f"{problem} (the run writes its split files there)"


def data_problems(cfg: RunConfig, scope: DataScope = "all") -> list[str]:
    """Every problem of the files the run reads: the same scan as `rrn data check`
    (the unlabeled part included, whatever the method), then the split sizes."""
    if scope == "none":
        return []
    root = Path(cfg.data.root)
    if not root.is_dir():
        return [f"data.root: {root} is not a folder (relative paths resolve against the "
                "config file's folder)"]
    try:
        problems = check_dataset(cfg.data, val_only=scope == "val")
    except DataError as err:
        problems = [str(err)]
    if scope == "all" and not problems:
        problem = split_problem(cfg) or split_write_problem(cfg)
        if problem:
            problems.append(problem)
    return problems


def run_problems(cfg: RunConfig, *, data: DataScope = "all", output: bool = True,
                 device: bool = True) -> list[str]:
    """All problems of one run config on this machine (empty: it can start).

    `output`: runtime.output_dir must be creatable/writable; `device`: the device
    must exist here (a sweep checks devices against its cluster instead).
    """
    problems: list[str] = []
    if device and (p := device_problem(cfg.runtime.device)):
        problems.append(p)
    if p := pretrained_problem(cfg):
        problems.append(p)
    if output and (p := output_problem(cfg.runtime.output_dir, cfg.runtime.storage_options,
                                       "runtime.output_dir")):
        problems.append(p)
    problems += data_problems(cfg, data)
    return problems


def check_run(cfg: RunConfig, source: str, **kwargs: Any) -> None:
    """`run_problems`, raised as one PreflightError naming `source`."""
    raise_problems(source, run_problems(cfg, **kwargs))


# --------------------------------------------------------------------------- checkpoint


def checkpoint_url(target: str) -> str:
    """A checkpoint file from what a user passes: the .pt file, a checkpoints/ folder,
    or the run's output folder (`rrn train --output-dir`)."""
    if target.endswith(".pt"):
        return target
    base = target.rstrip("/")
    if not is_url(base):
        for candidate in (Path(base) / CHECKPOINT_NAME, Path(base) / "checkpoints" / CHECKPOINT_NAME):
            if candidate.is_file():
                return str(candidate)
    return f"{base}/{CHECKPOINT_NAME}"


def read_checkpoint(target: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint's state, or a PreflightError naming the file and what is wrong."""
    url = checkpoint_url(target)
    try:
        state = load_checkpoint(url, dict(storage_options or {}))
    except CheckpointNotFoundError:
        raise PreflightError(f"{url}: no checkpoint file there (CHECKPOINT: a .pt file, a "
                             "checkpoints/ folder or a run's output folder)") from None
    except CheckpointError as err:
        # torch's message ends with advice to load with weights_only=False: running a
        # file's pickled code is exactly what a checkpoint from a bucket must not do.
        reason = str(err).split(": ", 1)[-1].split("\n", 1)[0]
        if "weights_only" in reason or "Weights only" in reason or "not a readable" in str(err):
            reason = "corrupt, truncated or not a checkpoint written by rrn"
        raise PreflightError(f"{url}: not a readable checkpoint ({reason[:200]})") from None
    missing = [k for k in ("config", "model") if k not in state]
    if missing:
        raise PreflightError(f"{url}: not an rrn checkpoint (no {', '.join(repr(m) for m in missing)} "
                             f"entry; rrn train writes checkpoints/{CHECKPOINT_NAME})")
    if not isinstance(state["config"], dict):
        raise PreflightError(f"{url}: not an rrn checkpoint ('config' is not a mapping)")
    return state
