"""One Tune trial: rrn_core's training loop, unchanged, reporting to Tune and MLflow.

Two ways to run a trial, chosen per sweep (`resolve_execution`):

* ``trainer`` (the Train V2 pattern): the Tune trial function builds and fits a
  ``TorchTrainer``; every worker runs `rrn_core.loop.train` under a process group
  (DDP, gloo on CPU / NCCL on GPU) and `TuneReportCallback` forwards rank 0's
  metrics to Tune. Train's FailureConfig restarts dead workers from the last
  checkpoint, and a trainer with the same (storage_path, name) resumes by itself.
* ``direct``: the loop runs inside the Tune trial function. A TorchTrainer for one
  worker buys nothing (no process group is needed) yet costs a controller actor, a
  worker group and a torch.distributed rendezvous: about 30 s per trial on a
  2-core laptop against ~1-3 s here (see bench/sweep_overhead.py). Tune's own
  FailureConfig and checkpoints give the same restart-from-checkpoint behaviour.

``auto`` picks ``direct`` for one worker and ``trainer`` for two or more.

In both, the worker writes its checkpoint into a local temporary folder (the
loop's `runtime.output_dir`) and Ray persists it to the sweep's storage (local or
S3); a restarted trial downloads the last persisted one and passes it to the loop
as `resume_from`. Rank 0 also feeds the trial's MLflow child run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer, get_device
from ray.tune.integration.ray_train import TuneReportCallback

from orchestration.storage import filesystems
from orchestration.names import GRID_KEY, PARAMS_KEY, POINT_KEY, TAG_EXECUTION, TAG_GRID_POINT, TAG_NODES
from orchestration.display_names import run_name
from orchestration.sweep.trial_reporting import ReportHooks
from orchestration.tracking.trial_run import TrialTracker
from rrn_core.config import RunConfig, build_config
from rrn_core.loop import train
from rrn_core.methods.table import DEFAULT_METHOD

Execution = Literal["auto", "direct", "trainer"]
EXECUTIONS = ("auto", "direct", "trainer")


@dataclass(frozen=True)
class TrialPlan:
    """Everything a trial needs besides its Tune config; shipped once to the object
    store by `tune.with_parameters`, so every trial reads the same resolved trees."""

    sweep_name: str
    point_trees: tuple[dict[str, Any], ...]   # RunConfig trees: base + fixed + grid point
    point_labels: tuple[str, ...]
    execution: Literal["direct", "trainer"]
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: Mapping[str, float] = field(default_factory=dict)
    max_failures: int = 2
    storage_path: str = ""                    # local absolute path or s3://bucket/prefix
    storage_endpoint_url: str | None = None
    tracking_uri: str | None = None           # None: no MLflow child runs
    experiment: str = "rrn"
    parent_run_id: str | None = None

    def worker_resources(self) -> dict[str, float]:
        """Per-worker resources as Ray Train spells them (CPU/GPU + custom)."""
        resources = {str(k): float(v) for k, v in self.resources_per_worker.items()}
        resources.setdefault("CPU", 1.0)
        if self.use_gpu:
            resources.setdefault("GPU", 1.0)
        return resources


def resolve_execution(requested: str, num_workers: int) -> Literal["direct", "trainer"]:
    """`auto` -> direct for one worker, trainer (DDP) for more; explicit choices win,
    except that `direct` cannot run several workers."""
    if requested not in EXECUTIONS:
        raise ValueError(f"execution must be one of {', '.join(EXECUTIONS)}, got {requested!r}")
    if requested == "direct" and num_workers > 1:
        raise ValueError(f"execution 'direct' runs one worker, but scaling.num_workers is {num_workers}")
    if requested == "auto":
        return "direct" if num_workers == 1 else "trainer"
    return requested  # type: ignore[return-value]


def trial_resources(plan: TrialPlan) -> Any:
    """What the Tune trial itself reserves.

    direct: the worker's resources (the loop runs in the trial). trainer: nothing
    countable: the TorchTrainer reserves its workers, and a trial holding a CPU
    while its workers wait for one deadlocks a 2-core laptop. Ray needs a non-empty
    request, so the trial asks for 1 MiB of Ray's logical memory resource.
    """
    bundle = {}
    if plan.execution == "direct":
        bundle = {k: v for k, v in plan.worker_resources().items() if v}
    return tune.PlacementGroupFactory([bundle or {"memory": float(2**20)}])


def make_trainable(plan: TrialPlan) -> Any:
    """The Tune trainable: `run_trial` with the plan bound and the resources set."""
    return tune.with_resources(tune.with_parameters(run_trial, plan=plan), trial_resources(plan))


def trial_run_name(plan: TrialPlan, config: Mapping[str, Any], trial_id: str) -> str:
    """`rrn r=1/8 s=0 lr=0.0106` (see orchestration/display_names.py); the trial id is a tag."""

    point = int(config[POINT_KEY])
    grid = dict(config.get(GRID_KEY) or {})
    method = tree_method(plan.point_trees[point])
    return run_name(method, grid, dict(config.get(PARAMS_KEY) or {}))


def tree_method(tree: Mapping[str, Any]) -> str:
    """The method of a grid point's config tree (when `method.name` is not a grid axis)."""
    return str((tree.get("method") or {}).get("name", DEFAULT_METHOD))


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class _Tracking:
    """Picklable arguments of the rank-0 TrialTracker."""

    tracking_uri: str
    experiment: str
    parent_run_id: str
    trial_id: str
    run_name: str
    tags: dict[str, str]

    def open(self, cfg: RunConfig) -> TrialTracker:
        return TrialTracker(self.tracking_uri, self.experiment, self.parent_run_id, self.trial_id,
                            self.run_name, cfg, tags=self.tags)


def _train_reporting(cfg: RunConfig, *, trial_id: str, is_main: bool, tracking: _Tracking | None,
                     report: Callable[..., None], checkpoint_from_dir: Callable[[str], Any],
                     latest_checkpoint: Callable[[], Any], storage_scheme: str,
                     device: Any = None) -> None:
    """Run the loop in a private temp dir, resuming from Ray's last checkpoint if any.

    `device`: the GPU Ray assigned to this worker (None: rrn_core picks from the config)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"rrn-trial-{trial_id}-"))
    tracker = None
    hooks: ReportHooks | None = None
    status = "FAILED"
    try:
        resume_from = None
        previous = latest_checkpoint()
        if previous is not None:
            resume_from = previous.to_directory(str(workdir / "resume"))
        # The trial's config was validated once, in run_trial; these runtime fields
        # are set by the runner and known to be valid, so they are copied in.
        run_cfg = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={
            "output_dir": str(workdir / "run"),
            "resume": False,     # resume only from what Ray persisted
            "progress": False,   # no progress bars in worker logs
        })})
        if is_main and tracking is not None:
            tracker = tracking.open(run_cfg)
            _tag_node(tracker)
        hooks = ReportHooks(report, checkpoint_from_dir, is_main=is_main,
                            total_steps=run_cfg.optim.iters or 0, tracker=tracker,  # an epoch budget: set by on_start
                            latest_checkpoint=latest_checkpoint, storage_scheme=storage_scheme)
        train(run_cfg, hooks, resume_from=resume_from, device=device)
        status = "FINISHED"
    except SystemExit:
        # Tune stops a trial by exiting its training thread: ASHA early (KILLED), or at
        # max_t, which may be the run's last evaluation (then it simply FINISHED).
        status = "FINISHED" if hooks is not None and hooks.final_reported else "KILLED"
        raise
    finally:
        if tracker is not None:
            tracker.close(status)
        shutil.rmtree(workdir, ignore_errors=True)


def _tag_node(tracker: Any) -> None:
    """Append this Ray node's id to the child run's `rrn.nodes` tag: where each
    attempt of the trial ran (a node failure shows as a second id)."""
    node = ray.get_runtime_context().get_node_id()
    previous = tracker.client.get_run(tracker.run_id).data.tags.get(TAG_NODES, "")
    tracker.client.set_tag(tracker.run_id, TAG_NODES, ",".join(filter(None, [previous, node])))


def _scheme(plan: TrialPlan) -> str:
    return "s3://" if filesystems.is_s3(plan.storage_path) else ""


def _tracking(plan: TrialPlan, config: Mapping[str, Any], trial_id: str) -> _Tracking | None:
    if plan.tracking_uri is None or plan.parent_run_id is None:
        return None
    point = int(config[POINT_KEY])
    return _Tracking(plan.tracking_uri, plan.experiment, plan.parent_run_id, trial_id,
                     trial_run_name(plan, config, trial_id),
                     {TAG_GRID_POINT: plan.point_labels[point], TAG_EXECUTION: plan.execution})


def run_trial(config: dict[str, Any], plan: TrialPlan) -> None:
    """The Tune trial function (see the module docstring for the two executions)."""
    trial_id = tune.get_context().get_trial_id()
    point = int(config[POINT_KEY])
    # The grid point's tree (base + fixed + grid values, splits pinned) plus the values
    # its study sampled, built and validated once, by rrn_core's one config builder.
    cfg = build_config(plan.point_trees[point], config.get(PARAMS_KEY),
                       source=f"sweep {plan.sweep_name}, grid point {plan.point_labels[point]}")
    tracking = _tracking(plan, config, trial_id)
    if plan.execution == "direct":
        _train_reporting(cfg, trial_id=trial_id, is_main=True, tracking=tracking,
                         report=tune.report, checkpoint_from_dir=tune.Checkpoint.from_directory,
                         latest_checkpoint=tune.get_checkpoint, storage_scheme=_scheme(plan))
    else:
        _fit_trainer(cfg, plan, trial_id, tracking)


def _fit_trainer(cfg: RunConfig, plan: TrialPlan, trial_id: str, tracking: _Tracking | None) -> None:
    """Fit a TorchTrainer for this trial; its name is the trial id, so a restarted
    trial (or a resumed sweep) continues the same Train run from its checkpoint."""
    storage_path, filesystem = filesystems.ray_storage(_join(plan.storage_path, plan.sweep_name, "train"),
                                                   plan.storage_endpoint_url)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": cfg, "trial_id": trial_id,   # pickled as is: no revalidation
                           "tracking": tracking, "storage_scheme": _scheme(plan)},
        scaling_config=ray.train.ScalingConfig(num_workers=plan.num_workers, use_gpu=plan.use_gpu,
                                               resources_per_worker=plan.worker_resources()),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Every Ray Train worker: the loop under the process group Ray set up."""
    cfg: RunConfig = loop_config["config"]
    is_main = ray.train.get_context().get_world_rank() == 0
    # Ray's assignment, not LOCAL_RANK % device_count: they differ with GPU: 2 or 0.5 per worker.
    assigned = get_device()
    _train_reporting(cfg, trial_id=loop_config["trial_id"], is_main=is_main,
                     tracking=loop_config["tracking"], report=ray.train.report,
                     checkpoint_from_dir=ray.train.Checkpoint.from_directory,
                     latest_checkpoint=ray.train.get_checkpoint,
                     storage_scheme=loop_config["storage_scheme"],
                     device=assigned if assigned.type == "cuda" and cfg.runtime.device != "cpu" else None)


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def trial_dirname(trial: Any) -> str:
    """Short, stable trial folder names (Tune's default embeds every parameter)."""
    return f"trial-{trial.config.get(POINT_KEY, 0)}-{trial.trial_id}"


def trial_name(trial: Any) -> str:
    return f"p{trial.config.get(POINT_KEY, 0)}-{trial.trial_id}"


__all__ = ["EXECUTIONS", "TrialPlan", "make_trainable", "resolve_execution", "run_trial",
           "trial_dirname", "trial_name", "trial_resources"]
