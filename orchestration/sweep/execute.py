"""Running a prepared sweep: write the splits, open the parent run, run Tune, close.

`execute` writes the split files of every (ratio, seed) once, in the driver, and
pins them into the trial configs, so trials only read them; refuses a trial the
cluster can never place (before the first write); opens the MLflow parent run;
runs Tune, one `orchestration.sweep.trial.run_trial` per trial (or restores it on
`--resume`); logs the summary; and, in a `finally`, closes the parent run so no run
is ever left RUNNING. The sweep's name is never timestamped: the same name
continues the same Tune experiment, the same Train runs and the same MLflow run.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
import ray
from mlflow import MlflowClient
from ray import tune

from orchestration import ray_compat
from orchestration.ray_auth import embedded_token_auth
from orchestration.storage import filesystems
from orchestration.tracking.gitinfo import git_state
from orchestration.tracking.store import child_runs, find_runs_by_tags, resolve_tracking_uri
from orchestration.names import ROLE_SWEEP, TAG_PARENT, TAG_ROLE, TAG_SWEEP, TAG_TRIAL_ID
from orchestration.sweep.checks import (DEFAULT_PLACEMENT_TIMEOUT_S, PlacementWatchdog, alive_nodes,
                                        describe_cluster, resource_problems)
from orchestration.sweep.lease import SweepLease, SweepRunning
from orchestration.sweep.prepare import (PreparedSweep, Say, SweepError, SweepOptions, experiment_exists,
                                         space_fingerprint)
from orchestration.sweep.progress import SweepProgress, watch
from orchestration.sweep.results import SweepOutcome, finished_trials, read_outcome
from orchestration.sweep.searcher import build_scheduler, make_searcher
from orchestration.tracking.sweep_run import SweepTracker
from orchestration.sweep.trial import TrialPlan, make_trainable, trial_dirname, trial_name
from rrn_core.data.bundle import dataset_fingerprint, layout_for, resolve_splits
from rrn_core.data.splits import split_folder_name

log = logging.getLogger(__name__)

#: Env vars forwarded to a cluster the driver connects to with --address; secrets
#: among them are dropped (connect_ray): nodes carry their own credentials.
FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL",
                 "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                 "RRN_HOME", "RAY_USAGE_STATS_ENABLED", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")


def execute(prepared: PreparedSweep, options: SweepOptions, say: Say = print) -> SweepOutcome:
    """Write splits, open the parent run, run (or resume) Tune, summarise, close."""
    space = prepared.resolved.space
    if not options.verbose:
        _quiet()
    timeout = options.placement_timeout or DEFAULT_PLACEMENT_TIMEOUT_S
    # Ray Train's wait for a trial's worker group is bounded by the same timeout.
    os.environ.setdefault(ray_compat.worker_group_start_timeout_env(), f"{timeout:g}")
    started_ray = connect_ray(options.address, options.verbose)
    lease: SweepLease | None = None
    try:
        check_cluster(prepared, say)          # before the first write: exit 2, nothing left behind
        tracking_uri = resolve_tracking_uri(prepared.tracking_uri)
        lease = hold_lease(prepared)          # the first write: no other driver of this name runs
        if prepared.discard:
            say(f"sweep {prepared.name!r}: the earlier attempt at {prepared.experiment_path} finished "
                "no trial and its driver is gone; it is discarded and the sweep starts afresh")
            discard_attempt(prepared, tracking_uri, say)
        trees, split_hashes, dataset_hash = write_splits(prepared)
    except BaseException:
        if lease is not None:
            lease.release()
        if started_ray:
            ray.shutdown()
        raise
    tracker = SweepTracker(tracking_uri, space.tracking.experiment, prepared.name)
    status = "FAILED"
    progress: SweepProgress | None = None
    watchdog = PlacementWatchdog(timeout)
    outcome: SweepOutcome | None = None
    try:
        parent = tracker.start(prepared.resolved, git_commit=_git_label(), dataset_hash=dataset_hash,
                               split_hashes=split_hashes, resume=options.resume)
        say(f"sweep {prepared.name}: {prepared.resolved.trial_count} trial(s), "
            f"{prepared.max_concurrent} at a time, {prepared.execution} execution; "
            f"results {prepared.experiment_path}; MLflow {filesystems.redact_text(tracking_uri)} "
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
        with filesystems.credentials_kept_out_of_ray():
            results = _tuner(prepared, plan, options, progress, watchdog).fit()
        outcome = read_outcome(results, prepared.place, parent, split_hashes)
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
                lines = tracker.log_summary()
                if outcome is not None:
                    outcome.evidence, outcome.still_improving = lines, tracker.judged
        except Exception as err:  # noqa: BLE001 - a summary must not mask the sweep's own error
            log.warning("could not log the sweep summary: %s", err)
        finally:
            try:
                tracker.finish(status)
            finally:
                lease.release()
                if started_ray:
                    ray.shutdown()


def hold_lease(prepared: PreparedSweep) -> SweepLease:
    """Take the sweep's lease (lease.py), then re-read under it what prepare_sweep saw:
    a sweep of this name may have started, or finished a trial, while this one was
    being prepared. SweepError (nothing written) when another driver holds it."""
    lease = SweepLease(prepared.storage_path, prepared.endpoint_url, prepared.name)
    try:
        lease.acquire()
    except SweepRunning as err:
        raise SweepError(str(err)) from None
    try:
        exists = experiment_exists(prepared.storage_path, prepared.endpoint_url, prepared.name)
        changed = (exists != (prepared.exists or prepared.discard)
                   or (prepared.discard and finished_trials(prepared.place) != 0))
        if changed:
            raise SweepError(
                f"sweep {prepared.name!r}: another sweep of this name wrote {prepared.experiment_path} "
                "while this one was being prepared; run the command again (with --resume to "
                "continue that sweep)")
    except BaseException:
        lease.release()
        raise
    return lease


def check_cluster(prepared: PreparedSweep, say: Say) -> None:
    """Print the cluster's totals and refuse (SweepError) a trial it can never place:
    otherwise Tune waits forever with only a warning (a GPU on a CPU machine,
    {CPU: 64} on 2 cores, 8 workers on 2 cores)."""
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


def write_splits(prepared: PreparedSweep) -> tuple[list[dict[str, Any]], dict[str, str], str | None]:
    """Write each (ratio or count, seed)'s split files once; return the trial trees with
    absolute data paths and the split files pinned, the split hashes, and a dataset hash."""
    trees: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    for cfg in prepared.configs:
        tree = cfg.model_dump(mode="json")
        data = tree["data"]
        if not filesystems.is_remote(data["root"]):
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
    if ray.is_initialized():
        return False
    level = logging.INFO if verbose else logging.WARNING
    if address:
        # Secrets stay out of the job's runtime_env (Ray logs runtime envs in clear):
        # the cluster's nodes need their own AWS_* / MLFLOW_TRACKING_* credentials.
        env = {k: os.environ[k] for k in FORWARDED_ENV
               if os.environ.get(k) and not filesystems.is_secret_key(k)}
        ray.init(address=address, log_to_driver=verbose, logging_level=level,
                 runtime_env={"env_vars": env} if env else None)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=verbose, logging_level=level)
    else:
        # An embedded, dashboard-less cluster for this process only; its ports are
        # open on the machine's address, so token auth is on (orchestration/ray_auth.py).
        embedded_token_auth()
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 _temp_dir=os.environ.get("RAY_TMPDIR") or None,
                 log_to_driver=verbose, logging_level=level)
    return True


def _quiet() -> None:
    """Our progress lines replace Tune's tables, Optuna's per-study logs and Tune's
    snapshot-frequency warning (tiny demo trials checkpoint often by design)."""
    ray_compat.use_legacy_console_output()   # the engine that honours verbose=0
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray.tune", "ray.train", "mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _git_label() -> str | None:
    state = git_state(Path(__file__).resolve().parent)
    return None if state.commit is None else state.label


def _tuner(prepared: PreparedSweep, plan: Any, options: SweepOptions, progress: Any,
           watchdog: Any) -> Any:
    progress_callback = watch(progress)   # also what a restored Tuner's pickled callback reaches
    space = prepared.resolved.space
    path, fs = filesystems.ray_storage(prepared.storage_path, prepared.endpoint_url)
    trainable = make_trainable(plan)
    if prepared.exists:  # --resume (checked in prepare_sweep)
        # A restored Tuner runs the RunConfig pickled by the first run (Tuner.restore
        # takes no callbacks); its watchdog hooks act on this command's watchdog
        # (placement.py). Resources were checked against the cluster already.
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
            search_alg=make_searcher(space, prepared.points, space_fingerprint(prepared)),
            scheduler=scheduler,
            num_samples=prepared.resolved.trial_count,
            max_concurrent_trials=prepared.max_concurrent, metric=space.metric, mode=space.mode,
            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
            reuse_actors=plan.execution == "direct"),
        run_config=tune.RunConfig(
            name=prepared.name, storage_path=path, storage_filesystem=fs,
            failure_config=tune.FailureConfig(max_failures=tune_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            stop=watchdog.stopper,
            callbacks=[watchdog.callback, *([progress_callback] if options.progress else [])],
            verbose=1 if options.verbose else 0),
    )


def _bundle_text(plan: Any) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in plan.worker_resources().items()) + "}"


def discard_attempt(prepared: PreparedSweep, tracking_uri: str, say: Say) -> None:
    """Remove the results folder of an attempt that finished no trial, and move its
    MLflow parent and trial runs to the bin (restorable), so that `--resume` later
    finds this sweep's parent run and no other."""
    path, fs = filesystems.ray_storage(prepared.storage_path, prepared.endpoint_url)
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


def _close_trial_runs(tracker: Any, outcome: SweepOutcome) -> None:
    """Give every child run the status its trial ended with in Tune.

    A trial closes its own run, but Tune may tear down its actor first (ASHA stops,
    a worker dies at the end): a run still RUNNING here is closed FINISHED when the
    trial trained to the end, KILLED when it was stopped early, FAILED on error.
    """
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
