"""The sweep driver: check everything, then run the grid x Optuna search on Ray Tune.

Order matters and is the point of this module:

1. `prepare_sweep` validates the space, the CLI overrides, the data set of every
   distinct data config (every image and mask opened once), the label splits each
   grid point will draw, ASHA's grace period against the real warm-up length, and
   whether results of this sweep already exist. It writes nothing and starts
   nothing: a bad input costs seconds and leaves no Ray session, MLflow run or
   folder behind.
2. `execute` writes the split files of every (ratio, seed) once, in the driver, and
   pins them into the trial configs, so trials only read them; opens the MLflow
   parent run; runs Tune (or restores it on `--resume`); logs the summary; and, in
   a `finally`, closes the parent run so no run is ever left RUNNING.

The sweep's name is never timestamped: the same name continues the same Tune
experiment, the same Train runs and the same MLflow parent run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration import storage
from orchestration.space import ResolvedSpace, SpaceError, load_space

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ray.tune import ResultGrid

    from orchestration.searcher import GridSearcher
    from rrn_core.config import RunConfig

log = logging.getLogger(__name__)

Say = Callable[[str], None]

#: Data-config fields that choose the split or the batching, not the files on disk:
#: grid points differing only in these share one data set check.
_SPLIT_FIELDS = ("label_ratio", "label_count", "split_seed", "split_dir", "batch_size",
                 "unlabeled_batch_size", "num_workers", "crop_size", "scale_range", "cutmix")
#: Env vars forwarded to a cluster the driver connects to with --address (inside a
#: Ray Job the job's runtime_env already carries them).
FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL",
                 "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                 "RRN_HOME", "RAY_USAGE_STATS_ENABLED", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")


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
    execution: str = "auto"             # auto | direct | trainer (see orchestration/trial.py)
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
        return f"{self.storage_path.rstrip('/')}/{self.name}"


@dataclass
class TrialOutcome:
    trial_id: str
    point: int
    grid: dict[str, Any]
    params: dict[str, Any]
    status: str                          # TERMINATED | ERROR | ...
    fully_trained: bool
    metric: float | None
    steps: list[int]                     # the loop's step at each reported evaluation
    last: dict[str, Any] = field(default_factory=dict)   # the last reported result
    retries: int = 0                     # restarts after failures (Tune's count, direct mode)
    error: str | None = None


@dataclass
class SweepOutcome:
    name: str
    experiment_path: str
    parent_run_id: str | None
    trials: list[TrialOutcome]
    studies: list[list[tuple[str, float | None, dict[str, Any]]]]  # per point: (state, value, params)
    split_hashes: dict[str, str]
    status: str                          # FINISHED | FAILED | KILLED

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "ERROR"]


# --------------------------------------------------------------------------- checks


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
    from orchestration.trial import resolve_execution

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

    if not storage.is_remote(storage_path):
        storage_path = str(Path(storage_path).expanduser().resolve())
    endpoint = resolved.storage_endpoint_url
    if endpoint and not storage.is_s3(storage_path):
        endpoint = None
    exists = _experiment_exists(storage_path, endpoint, space.name)
    prepared = PreparedSweep(resolved, points, configs, labels, execution,
                             options.max_concurrent or space.max_concurrent_trials,
                             tracking_uri, storage_path, endpoint, exists)
    if exists and finished_trials(prepared) == 0:
        # Nothing to keep: a sweep that failed before any trial finished (bad
        # resources, a fixed typo) is re-run under its own name, with or without --resume.
        say(f"sweep {space.name!r}: the earlier attempt at {prepared.experiment_path} finished no "
            "trial; it is discarded and the sweep starts afresh")
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
    from orchestration.preflight import metric_problem, storage_problems, tracking_problems
    from rrn_core.preflight import pretrained_problem

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


def finished_trials(prepared: PreparedSweep) -> int:
    """How many trials of the saved experiment finished (TERMINATED after reporting
    results), read from its experiment state without Ray; -1 when the state cannot
    be read (then the attempt is kept)."""
    import pyarrow.fs

    path, fs = _ray_storage(prepared.storage_path, prepared.endpoint_url)
    fs = fs or pyarrow.fs.LocalFileSystem()
    folder = f"{path}/{prepared.name}"
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(folder))
        states = sorted(i.path for i in infos if Path(i.path).name.startswith("experiment_state")
                        and i.path.endswith(".json"))
        if not states:
            return -1
        with fs.open_input_stream(states[-1]) as src:
            state = json.loads(src.read().decode())
    except (OSError, ValueError):
        return -1
    finished = 0
    for entry in state.get("trial_data", []):
        # [trial json state, run metadata json]; a trial Tune stopped before it was ever
        # placed is TERMINATED too, but it never reported a result
        try:
            trial, meta = json.loads(entry[0]), json.loads(entry[1])
        except (TypeError, ValueError, IndexError):
            return -1
        finished += trial.get("status") == "TERMINATED" and bool(meta.get("last_result"))
    return finished


def discard_attempt(prepared: PreparedSweep, tracking_uri: str, say: Say) -> None:
    """Remove the results folder of an attempt that finished no trial, and move its
    MLflow parent and trial runs to the bin (restorable), so that `--resume` later
    finds this sweep's parent run and no other."""
    import pyarrow.fs
    from mlflow import MlflowClient

    from orchestration.tracking import ROLE_SWEEP, TAG_PARENT, TAG_ROLE, TAG_SWEEP, find_runs_by_tags

    path, fs = _ray_storage(prepared.storage_path, prepared.endpoint_url)
    fs = fs or pyarrow.fs.LocalFileSystem()
    fs.delete_dir(f"{path}/{prepared.name}")
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(prepared.resolved.space.tracking.experiment)
    if exp is None:
        return
    parents = find_runs_by_tags(client, [exp.experiment_id],
                                {TAG_SWEEP: prepared.name, TAG_ROLE: ROLE_SWEEP})
    for parent in parents:
        for child in find_runs_by_tags(client, [exp.experiment_id], {TAG_PARENT: parent.info.run_id}):
            client.delete_run(child.info.run_id)
        client.delete_run(parent.info.run_id)
    if parents:
        say(f"moved {len(parents)} MLflow parent run(s) of the discarded attempt to the bin")


def space_fingerprint(prepared: PreparedSweep) -> str:
    """What must not change under a resumed sweep: every grid point's config (data
    paths absolute), the searched distributions, samples, objective, scheduler, scaling.
    (max_concurrent_trials, tracking and storage may change.)"""
    space = prepared.resolved.space
    trees = [c.model_dump(mode="json") for c in prepared.configs]
    for tree in trees:
        if not storage.is_remote(tree["data"]["root"]):
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
    saved = load_searcher(prepared)
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
    from orchestration.tracking import sqlite_path

    if not storage.is_remote(prepared.storage_path):
        say(f"note: results go to {prepared.storage_path} on each node's local disk unless it is "
            "a shared file system; use storage.path: s3://... for a multi-node cluster")
    if sqlite_path(prepared.tracking_uri) is not None or prepared.tracking_uri.startswith("file:"):
        say(f"note: MLflow store {prepared.tracking_uri} is a local file: trials on other nodes "
            "cannot reach it; use a tracking server (tracking.uri: http://...)")


def _apply_overrides(resolved: ResolvedSpace, overrides: Mapping[str, Any]) -> None:
    """`--set KEY=VALUE` behaves like a `fixed:` entry (grid and searched keys excluded)."""
    from orchestration.space import field_problem

    space = resolved.space
    for key in overrides:
        if key in space.grid or key in space.search:
            where = "grid" if key in space.grid else "search"
            raise SpaceError(f"--set {key}: {key} is a {where} key of {resolved.path}; "
                             "edit the space file to change it")
        problem = field_problem(key)
        if problem:
            raise SpaceError(f"--set {key}: {problem}")
    from rrn_core.paths import resolve_dotted_paths

    # command-line paths are relative to the current directory (rrn_core/paths.py)
    space.fixed = {**space.fixed, **resolve_dotted_paths(overrides, Path.cwd())}


def _data_key(cfg: RunConfig) -> str:
    tree = cfg.data.model_dump(mode="json")
    for name in _SPLIT_FIELDS:
        tree.pop(name, None)
    if not storage.is_remote(tree["root"]):
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
    from rrn_core.data import DataError, check_dataset

    problems: list[str] = []
    checked: dict[str, bool] = {}
    for cfg, label in zip(configs, labels):
        key = _data_key(cfg)
        if key not in checked:
            root = Path(cfg.data.root).expanduser()
            if not storage.is_remote(cfg.data.root) and not root.is_dir():
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
    from rrn_core.preflight import split_problem, unlabeled_count

    if problem := split_problem(cfg):   # rrn_core's rule: semi-supervised needs unlabeled images
        return [f"{problem}   [grid point {label}]"]
    problem = warmup_problem(resolved, cfg, unlabeled_count(cfg))
    return [f"{problem}   [grid point {label}]"] if problem else []


def warmup_problem(resolved: ResolvedSpace, cfg: RunConfig, unlabeled: int) -> str | None:
    """ASHA must not judge a method before its unlabeled terms start: its grace period
    (in evaluations) must pass the method's own warm-up (`Method.warmup_iters`,
    counted in the loop's epochs of this split's unlabeled set)."""
    from rrn_core.methods.base import steps_per_epoch
    from rrn_core.methods.table import method_class

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


def _ray_storage(path: str, endpoint: str | None) -> tuple[str, Any]:
    from orchestration.storage import ray_storage

    return ray_storage(path, endpoint)


def _experiment_exists(storage_path: str, endpoint: str | None, name: str) -> bool:
    from ray.tune import Tuner

    try:
        path, fs = _ray_storage(storage_path, endpoint)
        return Tuner.can_restore(f"{path}/{name}", storage_filesystem=fs)
    except Exception as err:  # noqa: BLE001 - any storage failure is the user's to fix
        raise SweepError(f"storage {storage_path}: cannot read it ({type(err).__name__}: "
                         f"{storage.redact_text(str(err))})") from None


# --------------------------------------------------------------------------- running


def write_splits(prepared: PreparedSweep) -> tuple[list[dict[str, Any]], dict[str, str], str | None]:
    """Write each (ratio or count, seed)'s split files once; return the trial trees with
    absolute data paths and the split files pinned, the split hashes, and a dataset hash."""
    from rrn_core.data.bundle import dataset_fingerprint, layout_for, resolve_splits
    from rrn_core.data.splits import split_folder_name

    trees: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    for cfg in prepared.configs:
        tree = cfg.model_dump(mode="json")
        data = tree["data"]
        if not storage.is_remote(data["root"]):
            data["root"] = str(Path(data["root"]).expanduser().resolve())
        d = cfg.data.model_copy(update={"root": data["root"]})
        files = resolve_splits(d, layout_for(d))
        data["labeled_split"] = str(files.labeled.resolve())
        data["unlabeled_split"] = str(files.unlabeled.resolve()) if files.unlabeled else None
        if d.label_ratio is not None or d.label_count is not None:
            key = split_folder_name(d.label_ratio, d.label_count, d.split_seed)
        else:
            key = Path(files.labeled).stem
        if len({c.data.root for c in prepared.configs}) > 1:
            key = f"{Path(data['root']).name}/{key}"
        hashes[key] = files.hash
        if data["root"] not in fingerprints:
            fingerprints[data["root"]] = dataset_fingerprint(d)
        trees.append(tree)
    if len(fingerprints) == 1:
        dataset_hash = next(iter(fingerprints.values()))
    else:
        joined = "\n".join(f"{k}={v}" for k, v in sorted(fingerprints.items()))
        dataset_hash = hashlib.sha256(joined.encode()).hexdigest()[:16] if joined else None
    return trees, hashes, dataset_hash


def connect_ray(address: str | None, verbose: bool = False) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS, as inside a Ray Job), else start
    a local Ray sized to this machine; returns whether this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    level = logging.INFO if verbose else logging.WARNING
    if address:
        # Secrets stay out of the job's runtime_env (Ray logs runtime envs in clear):
        # the cluster's nodes need their own AWS_* / MLFLOW_TRACKING_* credentials.
        env = {k: os.environ[k] for k in FORWARDED_ENV
               if os.environ.get(k) and not storage.is_secret_key(k)}
        ray.init(address=address, log_to_driver=verbose, logging_level=level,
                 runtime_env={"env_vars": env} if env else None)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=verbose, logging_level=level)
    else:
        # An embedded, dashboard-less cluster for this process only: Ray 2.60 would
        # otherwise switch on token auth and write ~/.ray/auth_token.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 _temp_dir=os.environ.get("RAY_TMPDIR") or None,
                 log_to_driver=verbose, logging_level=level)
    return True


def _quiet() -> None:
    """Our progress lines replace Tune's tables, Optuna's per-study logs and Tune's
    snapshot-frequency warning (tiny demo trials checkpoint often by design)."""
    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")   # the legacy engine honours verbose=0
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray.tune", "ray.train", "mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _git_label() -> str | None:
    from orchestration.gitinfo import git_state

    state = git_state(Path(__file__).resolve().parent)
    return None if state.commit is None else state.label


def make_searcher(prepared: PreparedSweep) -> GridSearcher:
    """One seeded Optuna study per grid point, each with its own seed.

    With one seed for all points every study proposed the same values (the demo's six
    points all tried lr 0.01062 and 0.01557): the "search" was a fixed list repeated.
    Each point's seed is derived from the sweep's `search_alg.seed` and the point's
    own values (`point_seed`), so points explore different values and a rerun of the
    same space proposes exactly the same ones.
    """
    from orchestration.searcher import GridSearcher, point_seed
    from orchestration.space import build_sampler, to_optuna_distributions

    space = prepared.resolved.space
    distributions = to_optuna_distributions(space.search)
    base_seed = space.search_alg.seed
    samplers = ([build_sampler(space.search_alg, seed=point_seed(base_seed, point))
                 for point in prepared.points] if distributions else None)
    return GridSearcher(prepared.points, distributions, space.num_samples, space.metric, space.mode,
                        samplers=samplers, fingerprint=space_fingerprint(prepared))


def _tuner(prepared: PreparedSweep, plan: Any, options: SweepOptions, progress: Any,
           watchdog: Any) -> Any:
    from ray import tune

    from orchestration.searcher import build_scheduler
    from orchestration.trial import make_trainable, trial_dirname, trial_name

    space = prepared.resolved.space
    path, fs = _ray_storage(prepared.storage_path, prepared.endpoint_url)
    trainable = make_trainable(plan)
    if prepared.exists:  # --resume (checked in prepare_sweep)
        # A restored Tuner keeps its saved RunConfig (no watchdog); resources were
        # checked against the cluster before this point.
        return tune.Tuner.restore(f"{path}/{prepared.name}", trainable, resume_unfinished=True,
                                  restart_errored=True, storage_filesystem=fs)
    sch = space.scheduler
    scheduler = build_scheduler(sch.type, grace_period=sch.grace_period, max_t=sch.max_t,
                                reduction_factor=sch.reduction_factor)
    # Retries live in one place: Ray Train restarts workers in trainer mode, Tune
    # restarts the trial in direct mode (both resume from the last checkpoint).
    tune_failures = space.failure.max_failures if plan.execution == "direct" else 0
    return tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(prepared), scheduler=scheduler,
            num_samples=prepared.resolved.trial_count,
            max_concurrent_trials=prepared.max_concurrent, metric=space.metric, mode=space.mode,
            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
            reuse_actors=plan.execution == "direct"),
        run_config=tune.RunConfig(
            name=prepared.name, storage_path=path, storage_filesystem=fs,
            failure_config=tune.FailureConfig(max_failures=tune_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            stop=watchdog.stopper,
            callbacks=[watchdog.callback, *([progress] if options.progress else [])],
            verbose=1 if options.verbose else 0),
    )


def _bundle_text(plan: Any) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in plan.worker_resources().items()) + "}"


def check_cluster(prepared: PreparedSweep, say: Say) -> None:
    """Print the cluster's totals and refuse (SweepError) a trial it can never place:
    otherwise Tune waits forever with only a warning (a GPU on a CPU machine,
    {CPU: 64} on 2 cores, 8 workers on 2 cores)."""
    from orchestration.preflight import alive_nodes, describe_cluster, resource_problems
    from orchestration.trial import TrialPlan

    space = prepared.resolved.space
    plan = TrialPlan(sweep_name=prepared.name, point_trees=(), point_labels=(),
                     execution=prepared.execution,  # type: ignore[arg-type]
                     num_workers=space.scaling.num_workers, use_gpu=space.scaling.use_gpu,
                     resources_per_worker=dict(space.scaling.resources_per_worker or {}))
    nodes = alive_nodes()
    say(f"cluster: {describe_cluster(nodes)}")
    problems = resource_problems(nodes, plan.worker_resources(), plan.num_workers, plan.execution)
    if problems:
        raise SweepError(f"{prepared.resolved.path}: cannot start the sweep:\n"
                         + "\n".join(f"  {p}" for p in problems))


def execute(prepared: PreparedSweep, options: SweepOptions, say: Say = print) -> SweepOutcome:
    """Write splits, open the parent run, run (or resume) Tune, summarise, close."""
    import ray

    from ray.train.v2._internal.constants import WORKER_GROUP_START_TIMEOUT_S_ENV_VAR

    from orchestration.preflight import DEFAULT_PLACEMENT_TIMEOUT_S, PlacementWatchdog, alive_nodes, describe_cluster
    from orchestration.progress import SweepProgress
    from orchestration.tracking import SweepTracker, resolve_tracking_uri
    from orchestration.trial import TrialPlan

    space = prepared.resolved.space
    if not options.verbose:
        _quiet()
    timeout = options.placement_timeout or DEFAULT_PLACEMENT_TIMEOUT_S
    # Ray Train's wait for a trial's worker group is bounded by the same timeout.
    os.environ.setdefault(WORKER_GROUP_START_TIMEOUT_S_ENV_VAR, f"{timeout:g}")
    started_ray = connect_ray(options.address, options.verbose)
    try:
        check_cluster(prepared, say)          # before the first write: exit 2, nothing left behind
        tracking_uri = resolve_tracking_uri(prepared.tracking_uri)
        if prepared.discard:
            discard_attempt(prepared, tracking_uri, say)
        trees, split_hashes, dataset_hash = write_splits(prepared)
    except BaseException:
        if started_ray:
            ray.shutdown()
        raise
    tracker = SweepTracker(tracking_uri, space.tracking.experiment, prepared.name)
    status = "FAILED"
    progress: SweepProgress | None = None
    watchdog = PlacementWatchdog(timeout)
    try:
        parent = tracker.start(prepared.resolved, git_commit=_git_label(), dataset_hash=dataset_hash,
                               split_hashes=split_hashes, resume=options.resume)
        say(f"sweep {prepared.name}: {prepared.resolved.trial_count} trial(s), "
            f"{prepared.max_concurrent} at a time, {prepared.execution} execution; "
            f"results {prepared.experiment_path}; MLflow {storage.redact_text(tracking_uri)} "
            f"run {parent}")
        plan = TrialPlan(
            sweep_name=prepared.name, point_trees=tuple(trees), point_labels=tuple(prepared.labels),
            execution=prepared.execution,  # type: ignore[arg-type]
            num_workers=space.scaling.num_workers, use_gpu=space.scaling.use_gpu,
            resources_per_worker=dict(space.scaling.resources_per_worker or {}),
            max_failures=space.failure.max_failures, storage_path=prepared.storage_path,
            storage_endpoint_url=prepared.endpoint_url, tracking_uri=tracking_uri,
            experiment=space.tracking.experiment, parent_run_id=parent)
        progress = SweepProgress(prepared.name, prepared.resolved.trial_count, space.metric,
                                 space.mode)
        with storage.credentials_kept_out_of_ray():
            results = _tuner(prepared, plan, options, progress, watchdog).fit()
        outcome = _outcome(prepared, results, parent, split_hashes)
        if watchdog.fired:
            raise SweepError(
                f"sweep {prepared.name}: no trial could be placed for {timeout:g} s (trials waited "
                f"for {_bundle_text(plan)} per worker with none running; cluster: "
                f"{describe_cluster(alive_nodes())}). Free the cluster or lower "
                f"scaling in {prepared.resolved.path}; rerunning under the same name starts afresh "
                "when no trial finished")
        _close_trial_runs(tracker, outcome)
        unfinished = [t for t in outcome.trials if t.status not in ("TERMINATED", "ERROR")]
        status = "KILLED" if unfinished else ("FAILED" if outcome.failed else "FINISHED")
        outcome.status = status
        return outcome
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if progress is not None:
            progress.close()  # the live status line must not outlive the sweep (Ctrl-C)
        try:
            if tracker.parent_run_id is not None:
                tracker.log_summary()
        except Exception as err:  # noqa: BLE001 - a summary must not mask the sweep's own error
            log.warning("could not log the sweep summary: %s", err)
        finally:
            tracker.finish(status)
            if started_ray:
                ray.shutdown()


def _close_trial_runs(tracker: Any, outcome: SweepOutcome) -> None:
    """Give every child run the status its trial ended with in Tune.

    A trial closes its own run, but Tune may tear down its actor first (ASHA stops,
    a worker dies at the end): a run still RUNNING here is closed FINISHED when the
    trial trained to the end, KILLED when it was stopped early, FAILED on error.
    """
    from orchestration.tracking import TAG_TRIAL_ID, child_runs

    parent = tracker.client.get_run(tracker.parent_run_id)
    trials = {t.trial_id: t for t in outcome.trials}
    for run in child_runs(tracker.client, parent):
        trial = trials.get(run.data.tags.get(TAG_TRIAL_ID, ""))
        ended = trial is not None and trial.status in ("TERMINATED", "ERROR")
        if not ended or run.info.status != "RUNNING":
            continue
        status = ("FAILED" if trial.status == "ERROR" else
                  "FINISHED" if trial.fully_trained else "KILLED")
        tracker.client.set_terminated(run.info.run_id, status)


def run_sweep(space_path: str | Path, options: SweepOptions | None = None,
              say: Say = print) -> SweepOutcome:
    """`rrn sweep`: prepare (all checks, nothing written), then execute."""
    options = options or SweepOptions()
    prepared = prepare_sweep(space_path, options, say)
    return execute(prepared, options, say)


# --------------------------------------------------------------------------- results


def _outcome(prepared: PreparedSweep, results: ResultGrid, parent: str | None,
             split_hashes: dict[str, str]) -> SweepOutcome:
    from orchestration.searcher import FULLY_TRAINED, GRID_KEY, PARAMS_KEY, POINT_KEY, STEP_KEY

    metric = prepared.resolved.space.metric
    # ResultGrid's public Results drop the trial status and retry count; the Trial
    # objects behind them keep both.
    analysis = results._experiment_analysis
    frames = analysis.trial_dataframes
    errors = {Path(r.path).name: r.error for r in results if r.error is not None}
    trials: list[TrialOutcome] = []
    for trial in analysis.trials:
        config = trial.config or {}
        metrics = dict(trial.last_result or {})
        frame = frames.get(trial.trial_id)
        steps = ([int(s) for s in frame[STEP_KEY].dropna()]
                 if frame is not None and STEP_KEY in frame else [])
        value = metrics.get(metric)
        error = errors.get(Path(trial.path).name) if trial.path else None
        trials.append(TrialOutcome(
            trial_id=trial.trial_id, point=int(config.get(POINT_KEY, 0)),
            grid=dict(config.get(GRID_KEY) or {}), params=dict(config.get(PARAMS_KEY) or {}),
            status=str(trial.status), fully_trained=bool(metrics.get(FULLY_TRAINED, 0.0)),
            metric=None if value is None else float(value), steps=steps, last=metrics,
            retries=int(getattr(trial, "num_failures", 0) or 0),
            error=None if error is None else str(error).strip().splitlines()[-1][:300]))
    searcher = load_searcher(prepared)
    studies = [] if searcher is None else [
        [(t.state.name, t.value, dict(t.params)) for t in study.trials] if study is not None else []
        for study in searcher.studies()]
    return SweepOutcome(prepared.name, prepared.experiment_path, parent, trials, studies,
                        split_hashes, "FINISHED")


def load_searcher(prepared: PreparedSweep) -> GridSearcher | None:
    """The searcher as Tune last saved it in the experiment folder (None if absent)."""
    import tempfile

    import pyarrow.fs

    from orchestration.searcher import GridSearcher

    path, fs = _ray_storage(prepared.storage_path, prepared.endpoint_url)
    fs = fs or pyarrow.fs.LocalFileSystem()
    folder = f"{path}/{prepared.name}"
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(folder))
    except (FileNotFoundError, OSError):
        return None
    # Newest session by the timestamp in the name: a resumed Tune re-uploads the whole
    # experiment folder, so every session's file gets the same fresh mtime.
    states = sorted((i for i in infos if Path(i.path).name.startswith("searcher-state-")),
                    key=lambda i: Path(i.path).name)
    if not states:
        return None
    searcher = GridSearcher([{}], {}, 1, prepared.resolved.space.metric, prepared.resolved.space.mode)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "searcher.pkl"
        with fs.open_input_stream(states[-1].path) as src:
            local.write_bytes(src.read())
        searcher.restore(str(local))
    return searcher
