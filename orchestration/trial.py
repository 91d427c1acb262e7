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

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rrn_core.config import RunConfig, build_config
from rrn_core.loop import TrainHooks
from rrn_core.methods.table import DEFAULT_METHOD

from orchestration.searcher import (FULLY_TRAINED, GRID_KEY, PARAMS_KEY, POINT_KEY, STEP_KEY,
                                    TOTAL_STEPS_KEY, WORLD_SIZE_KEY)
from orchestration.tags import RESULT_COLLAPSED, TAG_EXECUTION, TAG_GRID_POINT

Execution = Literal["auto", "direct", "trainer"]
EXECUTIONS = ("auto", "direct", "trainer")

#: Fault injection for tests: SIGKILL this process once when the loop logs this step
#: (guarded by the marker file, created just before the kill, so it happens once).
ENV_KILL_AT_STEP = "RRN_TEST_KILL_AT_STEP"
ENV_KILL_MARKER = "RRN_TEST_KILL_MARKER"


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

    def trial_config(self, config: Mapping[str, Any]) -> RunConfig:
        """The RunConfig of the trial Tune handed `config` (grid point + sampled values)."""
        point = int(config[POINT_KEY])
        return build_config(self.point_trees[point], dict(config.get(PARAMS_KEY) or {}),
                            source=f"sweep {self.sweep_name}, grid point {self.point_labels[point]}")

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
    from ray import tune

    bundle = {}
    if plan.execution == "direct":
        bundle = {k: v for k, v in plan.worker_resources().items() if v}
    return tune.PlacementGroupFactory([bundle or {"memory": float(2**20)}])


def make_trainable(plan: TrialPlan) -> Any:
    """The Tune trainable: `run_trial` with the plan bound and the resources set."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, plan=plan), trial_resources(plan))


def trial_run_name(plan: TrialPlan, config: Mapping[str, Any], trial_id: str) -> str:
    """`rrn r=1/8 s=0 lr=0.0106` (see orchestration/naming.py); the trial id is a tag."""
    from orchestration.naming import run_name

    point = int(config[POINT_KEY])
    grid = dict(config.get(GRID_KEY) or {})
    method = tree_method(plan.point_trees[point])
    return run_name(method, grid, dict(config.get(PARAMS_KEY) or {}))


def tree_method(tree: Mapping[str, Any]) -> str:
    """The method of a grid point's config tree (when `method.name` is not a grid axis)."""
    return str((tree.get("method") or {}).get("name", DEFAULT_METHOD))


# --------------------------------------------------------------------------- hooks


class ReportHooks(TrainHooks):
    """Forward the loop's evaluations to Ray (metrics + checkpoint) and to MLflow.

    One Ray report per evaluation, on every rank (Ray Train needs the same number of
    reports from each), checkpoint attached on rank 0 only. Tune's
    `training_iteration` therefore counts evaluations, which is what ASHA's
    grace_period/max_t are expressed in.
    """

    def __init__(self, report: Callable[..., None], checkpoint_from_dir: Callable[[str], Any],
                 *, is_main: bool, total_steps: int, tracker: Any | None = None,
                 latest_checkpoint: Callable[[], Any] | None = None,
                 storage_scheme: str = "") -> None:
        self._report = report
        self._checkpoint_from_dir = checkpoint_from_dir
        self._is_main = is_main
        self._total = total_steps
        self._tracker = tracker
        self._latest = latest_checkpoint
        self._scheme = storage_scheme
        self._train: dict[str, float] = {}
        self.final_reported = False   # the run's last evaluation reached Ray

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        self._train = dict(scalars)
        if self._tracker is not None:
            self._tracker.on_log(step, scalars)
        _maybe_inject_fault(step)

    def on_evaluation(self, step: int, result: Any, checkpoint_dir: str | None) -> None:
        if self._tracker is not None:
            self._tracker.on_evaluation(step, result, None)
        metrics: dict[str, float] = {}
        for key, value in result.as_metrics(prefix="val/").items():
            value = float(value)
            if value == value:  # per-class IoU is nan for absent classes: nothing to report
                metrics[key] = value
        metrics.update(self._train)
        # rrn_core's own verdict, so the console can flag a collapse without re-deriving it
        metrics[RESULT_COLLAPSED] = float(result.collapsed)
        metrics[STEP_KEY] = float(step)
        metrics[TOTAL_STEPS_KEY] = float(self._total)
        metrics[FULLY_TRAINED] = float(step >= self._total)
        metrics[WORLD_SIZE_KEY] = float(_world_size())
        checkpoint = None
        if self._is_main and checkpoint_dir is not None:
            checkpoint = self._checkpoint_from_dir(checkpoint_dir)
        # Set before reporting: Tune may stop the trial inside this very call (ASHA at
        # max_t), and the result has reached Tune by then.
        self.final_reported = step >= self._total
        self._report(metrics, checkpoint=checkpoint)
        if checkpoint is not None and self._tracker is not None and self._latest is not None:
            self._tag_checkpoint()

    def _tag_checkpoint(self) -> None:
        """Point the child run at the checkpoint Ray persisted (the loop's own folder is
        a temporary one on the worker)."""
        from orchestration.tracking import TAG_CHECKPOINT

        persisted = self._latest() if self._latest is not None else None
        if persisted is not None:
            self._tracker.client.set_tag(self._tracker.run_id, TAG_CHECKPOINT,
                                         f"{self._scheme}{persisted.path}")


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _maybe_inject_fault(step: int) -> None:
    """Tests only: die like an OOM-killed worker, once, at a chosen step."""
    target = os.environ.get(ENV_KILL_AT_STEP)
    marker = os.environ.get(ENV_KILL_MARKER)
    if not target or not marker or int(target) != step or Path(marker).exists():
        return
    Path(marker).write_text(f"pid {os.getpid()} killed at step {step}\n")
    time.sleep(2.0)  # let the driver register the last reported checkpoint
    os.kill(os.getpid(), signal.SIGKILL)


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

    def open(self, cfg: RunConfig) -> Any:
        from orchestration.tracking import TrialTracker

        return TrialTracker(self.tracking_uri, self.experiment, self.parent_run_id, self.trial_id,
                            self.run_name, cfg, tags=self.tags)


def _train_reporting(cfg: RunConfig, *, trial_id: str, is_main: bool, tracking: _Tracking | None,
                     report: Callable[..., None], checkpoint_from_dir: Callable[[str], Any],
                     latest_checkpoint: Callable[[], Any], storage_scheme: str,
                     device: Any = None) -> None:
    """Run the loop in a private temp dir, resuming from Ray's last checkpoint if any.

    `device`: the GPU Ray assigned to this worker (None: rrn_core picks from the config)."""
    from rrn_core.loop import train

    workdir = Path(tempfile.mkdtemp(prefix=f"rrn-trial-{trial_id}-"))
    tracker = None
    hooks: ReportHooks | None = None
    status = "FAILED"
    try:
        resume_from = None
        previous = latest_checkpoint()
        if previous is not None:
            resume_from = previous.to_directory(str(workdir / "resume"))
        run_cfg = build_config(cfg.model_dump(mode="json"), {
            "runtime.output_dir": str(workdir / "run"),
            "runtime.resume": False,     # resume only from what Ray persisted
            "runtime.progress": False,   # no progress bars in worker logs
        })
        if is_main and tracking is not None:
            tracker = tracking.open(run_cfg)
        hooks = ReportHooks(report, checkpoint_from_dir, is_main=is_main,
                            total_steps=run_cfg.optim.iters, tracker=tracker,
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


def _scheme(plan: TrialPlan) -> str:
    from orchestration import storage

    return "s3://" if storage.is_s3(plan.storage_path) else ""


def _tracking(plan: TrialPlan, config: Mapping[str, Any], trial_id: str) -> _Tracking | None:
    if plan.tracking_uri is None or plan.parent_run_id is None:
        return None
    point = int(config[POINT_KEY])
    return _Tracking(plan.tracking_uri, plan.experiment, plan.parent_run_id, trial_id,
                     trial_run_name(plan, config, trial_id),
                     {TAG_GRID_POINT: plan.point_labels[point], TAG_EXECUTION: plan.execution})


def run_trial(config: dict[str, Any], plan: TrialPlan) -> None:
    """The Tune trial function (see the module docstring for the two executions)."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    cfg = plan.trial_config(config)
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
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from orchestration import storage

    storage_path, filesystem = storage.ray_storage(_join(plan.storage_path, plan.sweep_name, "train"),
                                                   plan.storage_endpoint_url)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": cfg.model_dump(mode="json"), "trial_id": trial_id,
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
    import ray.train

    from ray.train.torch import get_device

    cfg = RunConfig.model_validate(loop_config["config"])
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


__all__ = ["EXECUTIONS", "GRID_KEY", "PARAMS_KEY", "POINT_KEY", "ReportHooks", "TrialPlan",
           "make_trainable", "resolve_execution", "run_trial", "trial_dirname", "trial_name",
           "trial_resources"]
