"""Tracking of a single `rrn train` run: an MLflow run and a `metrics.jsonl` file.

A run outside a sweep used to leave only checkpoints: no curve, no overlay, nothing
in the UI to compare with the sweep's trials. `standalone_hooks` gives the training
loop the same logging a trial gets (run name, tags, params, metrics, per-class IoU,
collapse flag, confusion matrix, overlays; orchestration/tracking/sweep_run.py `RunLogger`)
in the same store, plus a `metrics.jsonl` beside the checkpoints that needs no
store at all. The run is found again by its output folder, so `rrn train` resuming
from its last checkpoint continues the same MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrn_core.config import RunConfig
from rrn_core.loop import TrainHooks

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rrn_core.evaluate import EvalResult

import os


from orchestration.tracking.store import ensure_experiment, find_runs_by_tags, open_client, resolve_tracking_uri
from orchestration.names import ROLE_TRAIN, TAG_ROLE, TAG_RUN_KEY, VAL_PREFIX
from orchestration.display_names import config_run_name
from orchestration.tracking.trial_run import RunLogger, config_tags

METRICS_FILE = "metrics.jsonl"


class MetricsFile(TrainHooks):
    """Appends one JSON line per log and per evaluation to `{output_dir}/metrics.jsonl`.

    Lines: `{"step", "kind": "train"|"eval", "time", ...values}`; an evaluation line
    also carries `collapsed` (rrn_core's `EvalResult.collapsed`). NaN becomes null.
    A resumed run replays steps from its checkpoint; steps already in the file are
    not written twice.
    """

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self._last: dict[str, int] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    kind, step = str(record["kind"]), int(record["step"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a crash
                self._last[kind] = max(step, self._last.get(kind, step))

    def _write(self, record: dict[str, Any]) -> None:
        if record["step"] <= self._last.get(record["kind"], -1):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        self._write({"step": step, "kind": "train", "time": time.time(),
                     **{k: float(v) for k, v in scalars.items()}})

    def on_evaluation(self, step: int, result: EvalResult, checkpoint_dir: str | None) -> None:
        self._write({"step": step, "kind": "eval", "time": time.time(),
                     **{k: float(v) for k, v in result.as_metrics(prefix=VAL_PREFIX).items()},
                     "collapsed": bool(result.collapsed), "checkpoint": checkpoint_dir})


class Fanout(TrainHooks):
    """Several hooks as one (the loop takes a single hooks object)."""

    def __init__(self, hooks: Sequence[TrainHooks]) -> None:
        self.hooks = list(hooks)

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        for hook in self.hooks:
            hook.on_log(step, scalars)

    def on_evaluation(self, step: int, result: Any, checkpoint_dir: str | None) -> None:
        for hook in self.hooks:
            hook.on_evaluation(step, result, checkpoint_dir)

    def should_stop(self) -> bool:
        return any(hook.should_stop() for hook in self.hooks)


def run_key(cfg: RunConfig) -> str:
    """Identity of a standalone run: its output folder (where its checkpoints live)."""
    folder = cfg.runtime.output_dir
    if "://" not in folder:
        folder = str(Path(folder).expanduser().resolve())
    return hashlib.sha256(folder.encode()).hexdigest()[:24]


def _open_run_logger(cfg: RunConfig, tracking_uri: str | None, experiment: str) -> Any:
    """A RunLogger on a top-level run of `experiment` (created, or continued on resume)."""
    uri = resolve_tracking_uri(tracking_uri)
    logger = RunLogger()
    logger.client = open_client(uri)
    experiment_id = ensure_experiment(logger.client, uri, experiment)
    key = run_key(cfg)
    found = find_runs_by_tags(logger.client, [experiment_id], {TAG_RUN_KEY: key, TAG_ROLE: ROLE_TRAIN})
    if found and cfg.runtime.resume:
        run = found[0]
    else:
        run = logger.client.create_run(experiment_id, run_name=config_run_name(cfg),
                                       tags={TAG_RUN_KEY: key, TAG_ROLE: ROLE_TRAIN})
    logger._attach(run, bool(found) and cfg.runtime.resume, cfg,
                   {TAG_ROLE: ROLE_TRAIN, TAG_RUN_KEY: key, **config_tags(cfg)})
    return logger


def standalone_hooks(cfg: RunConfig, *, track: bool = True, tracking_uri: str | None = None,
                     experiment: str = "rrn",
                     extra: Sequence[TrainHooks] = ()) -> tuple[TrainHooks, Callable[[str], None],
                                                                str | None]:
    """Hooks for `rrn train`: metrics.jsonl always, an MLflow run unless `track` is False.

    Returns (hooks, close, run_id): call `close("FINISHED" | "FAILED" | "KILLED")` when
    the loop returns or raises. `tracking_uri` None means the sweeps' default store
    ($RRN_TRACKING_URI, $MLFLOW_TRACKING_URI, else $RRN_HOME/mlflow.db).
    """
    hooks: list[TrainHooks] = [*extra, MetricsFile(cfg.runtime.output_dir)]
    logger = None
    if track:
        uri = tracking_uri or os.environ.get("RRN_TRACKING_URI") or os.environ.get(
            "MLFLOW_TRACKING_URI")
        logger = _open_run_logger(cfg, uri, experiment)
        hooks.append(logger)

    def close(status: str = "FINISHED") -> None:
        if logger is not None:
            logger.close(status)

    return Fanout(hooks), close, None if logger is None else logger.run_id
