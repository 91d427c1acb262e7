"""Preparing a sweep: every check that can fail, before anything is written or started.

`prepare_sweep` validates the space, the CLI overrides, the data set of every
distinct data config (every image and mask opened once), the label splits each
grid point will draw, ASHA's grace period against each method's own warm-up, the
objective metric, devices, tracking and storage, and whether results of this sweep
already exist. It writes nothing and starts nothing: a bad input costs seconds and
leaves no Ray session, MLflow run or folder behind. What it returns,
`PreparedSweep`, is all orchestration/sweep/execute.py needs to run the sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Tuner

from orchestration.storage import filesystems
from orchestration.tracking.store import sqlite_path
from orchestration.sweep.checks import metric_problem, storage_problems, tracking_problems
from orchestration.sweep.results import ExperimentPlace, finished_trials, load_searcher
from orchestration.sweep.lease import SweepLease
from orchestration.sweep.state_signing import UntrustedState
from orchestration.space import ResolvedSpace, load_space
from orchestration.space_schema import SpaceError, field_problem
from orchestration.sweep.trial import resolve_execution
from rrn_core.config import RunConfig
from rrn_core.data import DataError, check_dataset
from rrn_core.methods.base import steps_per_epoch
from rrn_core.methods.table import method_class
from rrn_core.paths import resolve_dotted_paths
from rrn_core.run_checks import pretrained_problem, split_problem, unlabeled_count

Say = Callable[[str], None]

#: Data-config fields that choose the split or the batching, not the files on disk:
#: grid points differing only in these share one data set check.
_SPLIT_FIELDS = ("label_ratio", "label_count", "split_seed", "split_dir", "batch_size",
                 "unlabeled_batch_size", "num_workers", "crop_size", "scale_range", "cutmix")


class SweepError(Exception):
    """A sweep that cannot start; the message names the file/field. CLI: exit code 2."""


@dataclass
class SweepOptions:
    """The `rrn sweep` flags (explicit flags beat the space file and RRN_* env vars)."""

    address: str | None = None          # Ray cluster; None: RAY_ADDRESS, else a local Ray
    resume: bool = False
    max_concurrent: int | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    execution: str = "auto"             # auto | direct | trainer (see orchestration/sweep/trial.py)
    overrides: dict[str, Any] = field(default_factory=dict)   # --set KEY=VALUE, as `fixed:`
    verbose: bool = False               # Ray's worker logs and Tune's own reporter
    progress: bool = True               # our per-change progress lines (stderr)
    placement_timeout: float | None = None   # s with trials pending and none running; None: default


@dataclass
class PreparedSweep:
    """A sweep that passed every check; nothing has been written yet."""

    resolved: ResolvedSpace
    points: list[dict[str, Any]]
    configs: list[RunConfig]            # one per grid point (searched keys at their base value)
    labels: list[str]
    execution: str
    max_concurrent: int
    tracking_uri: str
    storage_path: str
    endpoint_url: str | None
    exists: bool                        # a Tune experiment of this name is already in storage
    discard: bool = False               # it is an earlier attempt that finished no trial: start afresh

    @property
    def name(self) -> str:
        return self.resolved.space.name

    @property
    def experiment_path(self) -> str:
        return self.place.experiment_path

    @property
    def place(self) -> ExperimentPlace:
        space = self.resolved.space
        return ExperimentPlace(self.storage_path, self.endpoint_url, self.name, space.metric, space.mode)


def prepare_sweep(space_path: str | Path, options: SweepOptions, say: Say = print) -> PreparedSweep:
    """Every check that can fail, before anything is written or started."""
    try:
        resolved = load_space(space_path)
        if options.overrides:
            _apply_overrides(resolved, options.overrides)
        points = resolved.grid_points()
        configs = [resolved.trial_config(p, {}) for p in points]
    except SpaceError as err:
        raise SweepError(str(err)) from None
    space = resolved.space
    labels = [resolved.point_label(p) for p in points]
    if options.max_concurrent is not None and options.max_concurrent < 1:
        raise SweepError(f"--max-concurrent must be at least 1 (got {options.max_concurrent})")

    try:
        execution = resolve_execution(options.execution, space.scaling.num_workers)
    except ValueError as err:
        raise SweepError(f"{resolved.path}: scaling: {err}") from None

    tracking_uri = options.tracking_uri or resolved.tracking_uri
    storage_path = options.storage or resolved.storage_path
    problems = static_problems(resolved, configs, labels, tracking_uri, storage_path, options)
    problems += check_data(resolved, configs, labels, say)
    if problems:
        raise SweepError(f"{resolved.path}: cannot start the sweep:\n"
                         + "\n".join(f"  {p}" for p in dict.fromkeys(problems)))

    if not filesystems.is_remote(storage_path):
        storage_path = str(Path(storage_path).expanduser().resolve())
    endpoint = resolved.storage_endpoint_url
    if endpoint and not filesystems.is_s3(storage_path):
        endpoint = None
    lease = SweepLease(storage_path, endpoint, space.name)
    if (running := lease.live_holder()) is not None:   # execute takes the lease itself (lease.py)
        raise SweepError(str(lease.refusal(running)))
    exists = experiment_exists(storage_path, endpoint, space.name)
    prepared = PreparedSweep(resolved, points, configs, labels, execution,
                             options.max_concurrent or space.max_concurrent_trials,
                             tracking_uri, storage_path, endpoint, exists)
    if exists and finished_trials(prepared.place) == 0:
        # Nothing to keep: a sweep that failed before any trial finished (bad
        # resources, a fixed typo) is re-run under its own name, with or without
        # --resume; execute discards it once it holds the lease (no live driver).
        prepared.exists, prepared.discard = False, True
    elif exists and not options.resume:
        raise SweepError(
            f"a sweep named {space.name!r} already has results at {storage_path}/{space.name}: "
            f"pass --resume to continue it (finished trials are kept), or change `name` in "
            f"{resolved.path} to start a new one")
    elif options.resume and not exists:
        say(f"nothing to resume at {storage_path}/{space.name}: starting sweep {space.name!r} afresh")
    if prepared.exists:
        _check_same_space(prepared)
    if options.address or os.environ.get("RAY_ADDRESS"):
        _warn_local_paths(prepared, say)
    return prepared


def static_problems(resolved: ResolvedSpace, configs: list[RunConfig], labels: list[str],
                    tracking_uri: str, storage_path: str, options: SweepOptions) -> list[str]:
    """What can be refused without data or a cluster: the objective metric, devices
    against scaling, pretrained weights, the MLflow store and the Ray storage folder."""

    space = resolved.space
    problems: list[str] = []
    for cfg, label in zip(configs, labels):
        where = f"   [grid point {label}]" if space.grid else ""
        if p := metric_problem(space.metric, cfg):
            problems.append(p)
        if cfg.runtime.device == "cuda" and not space.scaling.use_gpu:
            problems.append(f"runtime.device: 'cuda' but scaling.use_gpu is false: Ray gives the "
                            f"trial no GPU (set scaling.use_gpu: true or runtime.device: auto){where}")
        if p := pretrained_problem(cfg):
            problems.append(p + where)
    field = "--tracking-uri" if options.tracking_uri else "tracking.uri"
    problems += tracking_problems(tracking_uri, field)
    problems += storage_problems(storage_path, "--storage" if options.storage else "storage.path")
    return problems


def space_fingerprint(prepared: PreparedSweep) -> str:
    """What must not change under a resumed sweep: every grid point's config (data
    paths absolute), the searched distributions, samples, objective, scheduler, scaling.
    (max_concurrent_trials, tracking and storage may change.)"""
    space = prepared.resolved.space
    trees = [c.model_dump(mode="json") for c in prepared.configs]
    for tree in trees:
        if not filesystems.is_remote(tree["data"]["root"]):
            tree["data"]["root"] = str(Path(tree["data"]["root"]).expanduser().resolve())
    identity = {
        "points": prepared.points, "trees": trees, "num_samples": space.num_samples,
        "search": {k: v.model_dump(mode="json") for k, v in space.search.items()},
        "search_alg": space.search_alg.model_dump(mode="json"), "metric": space.metric,
        "mode": space.mode, "scheduler": space.scheduler.model_dump(mode="json"),
        "scaling": space.scaling.model_dump(mode="json"), "execution": prepared.execution,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _check_same_space(prepared: PreparedSweep) -> None:
    """A resume continues the saved search: its grid indices and studies must still
    mean the same configs, or unfinished trials would silently train something else."""
    try:
        saved = load_searcher(prepared.place)
    except UntrustedState as err:
        raise SweepError(f"{err}. Change `name` in {prepared.resolved.path} to start a new sweep "
                         "(see docs/operations.md: what a resume trusts)") from None
    if saved is None:
        raise SweepError(f"{prepared.experiment_path}: the Tune experiment has no search state "
                         f"to resume; change `name` in {prepared.resolved.path} to start afresh")
    if saved.fingerprint != space_fingerprint(prepared):
        raise SweepError(
            f"{prepared.resolved.path}: the space (or its base config, data path or --set values) "
            f"changed since sweep {prepared.name!r} started at {prepared.experiment_path}; "
            "resuming would train unfinished trials with other settings. Restore the old "
            "settings to resume, or change `name` to start a new sweep")


def _warn_local_paths(prepared: PreparedSweep, say: Say) -> None:
    """On a cluster every node must reach the store and the results folder."""

    if not filesystems.is_remote(prepared.storage_path):
        say(f"note: results go to {prepared.storage_path} on each node's local disk unless it is "
            "a shared file system; use storage.path: s3://... for a multi-node cluster")
    if sqlite_path(prepared.tracking_uri) is not None or prepared.tracking_uri.startswith("file:"):
        say(f"note: MLflow store {prepared.tracking_uri} is a local file: trials on other nodes "
            "cannot reach it; use a tracking server (tracking.uri: http://...)")


def _apply_overrides(resolved: ResolvedSpace, overrides: Mapping[str, Any]) -> None:
    """`--set KEY=VALUE` behaves like a `fixed:` entry (grid and searched keys excluded)."""

    space = resolved.space
    for key in overrides:
        if key in space.grid or key in space.search:
            where = "grid" if key in space.grid else "search"
            raise SpaceError(f"--set {key}: {key} is a {where} key of {resolved.path}; "
                             "edit the space file to change it")
        problem = field_problem(key)
        if problem:
            raise SpaceError(f"--set {key}: {problem}")

    # command-line paths are relative to the current directory (rrn_core/paths.py)
    space.fixed = {**space.fixed, **resolve_dotted_paths(overrides, Path.cwd())}


def _data_key(cfg: RunConfig) -> str:
    tree = cfg.data.model_dump(mode="json")
    for name in _SPLIT_FIELDS:
        tree.pop(name, None)
    if not filesystems.is_remote(tree["root"]):
        tree["root"] = str(Path(tree["root"]).expanduser().resolve())
    return json.dumps(tree, sort_keys=True)


def check_data(resolved: ResolvedSpace, configs: list[RunConfig], labels: list[str],
               say: Say = print) -> list[str]:
    """Problems of the data each grid point reads, and of the splits it would draw.

    Every distinct data set is scanned once with rrn_core's `check_dataset`. Then,
    without writing anything, each point's split sizes are computed, so that a
    method needing unlabeled images on a 100% split, or an ASHA grace period
    shorter than RRN's warm-up (counted in the loop's epochs: passes over the
    unlabeled set), fails here rather than hours into the sweep.
    """

    problems: list[str] = []
    checked: dict[str, bool] = {}
    for cfg, label in zip(configs, labels):
        key = _data_key(cfg)
        if key not in checked:
            root = Path(cfg.data.root).expanduser()
            if not filesystems.is_remote(cfg.data.root) and not root.is_dir():
                problems.append(f"data.root: {root.resolve()} does not exist "
                                f"(from {resolved.base_path or resolved.path})")
                checked[key] = False
                continue
            say(f"checking data set {root} ...")
            try:
                found = check_dataset(cfg.data, progress=_quarters(say, root))
            except DataError as err:
                found = [str(err)]
            problems += found
            checked[key] = not found
        if not checked[key]:
            continue
        try:
            problems += _split_problems(resolved, cfg, label)
        except DataError as err:
            problems.append(f"{err}   [grid point {label}]")
    return list(dict.fromkeys(problems))


def _quarters(say: Say, root: Path) -> Callable[[int, int], None]:
    """Progress of a long data scan (VOC: ~20k files) at each quarter."""
    shown: set[int] = set()

    def progress(done: int, total: int) -> None:
        quarter = 4 * done // max(total, 1)
        if total >= 1000 and quarter not in shown and quarter > 0:
            shown.add(quarter)
            say(f"  {root}: {done}/{total} files checked")

    return progress


def _split_problems(resolved: ResolvedSpace, cfg: RunConfig, label: str) -> list[str]:

    if problem := split_problem(cfg):   # rrn_core's rule: semi-supervised needs unlabeled images
        return [f"{problem}   [grid point {label}]"]
    problem = warmup_problem(resolved, cfg, unlabeled_count(cfg))
    return [f"{problem}   [grid point {label}]"] if problem else []


def warmup_problem(resolved: ResolvedSpace, cfg: RunConfig, unlabeled: int) -> str | None:
    """ASHA must not judge a method before its unlabeled terms start: its grace period
    (in evaluations) must pass the method's own warm-up (`Method.warmup_iters`,
    counted in the loop's epochs of this split's unlabeled set)."""

    sch = resolved.space.scheduler
    method = method_class(cfg.method.name)
    if sch.type != "asha":
        return None
    d, workers = cfg.data, resolved.space.scaling.num_workers
    images, batch = (unlabeled, d.unlabeled_batch_size) if method.uses_unlabeled else (0, d.batch_size)
    epoch = steps_per_epoch(images, batch, workers)
    warmup = method.warmup_iters(cfg.method, epoch)
    grace = sch.grace_period * cfg.eval.every
    if warmup <= 0 or grace > warmup:
        return None
    return (f"scheduler.grace_period: {sch.grace_period} evaluations x eval.every {cfg.eval.every} = "
            f"{grace} iterations, but {cfg.method.name}'s unlabeled terms start after {warmup:g} "
            f"(its warm-up over {images} unlabeled images, {batch * workers} per step): ASHA would stop "
            f"{cfg.method.name} trials before they begin; set grace_period to at least "
            f"{int(warmup // cfg.eval.every) + 1} (and max_t above it)")


def experiment_exists(storage_path: str, endpoint: str | None, name: str) -> bool:

    try:
        path, fs = filesystems.ray_storage(storage_path, endpoint)
        return Tuner.can_restore(f"{path}/{name}", storage_filesystem=fs)
    except Exception as err:  # noqa: BLE001 - any storage failure is the user's to fix
        raise SweepError(f"storage {storage_path}: cannot read it ({type(err).__name__}: "
                         f"{filesystems.redact_text(str(err))})") from None
