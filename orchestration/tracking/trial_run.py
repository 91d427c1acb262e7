"""MLflow tracking of one trial or run: the child run a trial logs into (RunLogger, TrialTracker).

`RunLogger` is the training loop's hooks for any tracked run (a sweep trial or
`rrn train`): metrics, per-class IoU, overlays, checkpoints as artifacts.
`TrialTracker` adds the sweep's child-run tags and the parent link.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Run
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from orchestration.backbones import backbone_tags
from orchestration.display_names import method_color, sanitize_metric_key
from orchestration.names import (CLASS_IOU_PREFIX, CONFIG_ARTIFACT, ROLE_TRIAL, TAG_CHECKPOINT,
                                 TAG_COLLAPSED, TAG_COLLAPSED_AT, TAG_GRID_KEYS, TAG_LABEL_COUNT,
                                 TAG_LABEL_RATIO, TAG_METHOD, TAG_PARENT, TAG_ROLE, TAG_RUN_COLOR,
                                 TAG_SEARCH_KEYS, TAG_SEED, TAG_SPLIT_SEED, TAG_SWEEP, TAG_TRIAL_ID,
                                 VAL_PREFIX, BUDGET_ITERS, METRIC_MIOU, TAG_CONVERGENCE,
                                 TAG_STILL_IMPROVING)
from orchestration.storage.filesystems import redact, redact_text
from orchestration.tracking.mlflow_calls import (tag_value, log_params_once, set_tags, parse_steps,
                                                 now_ms, reopen_run, class_metric_keys,
                                                 sanitize_key_path)
from orchestration.tracking.overlays import overlay_figure
from orchestration.tracking.params import portable_tree, run_params
from orchestration.tracking.store import find_runs_by_tags, resolve_tracking_uri
from rrn_core.config import RunConfig
from rrn_core.convergence import assess
from rrn_core.loop import TrainHooks
from rrn_core.visualize import confusion_matrix_figure

log = logging.getLogger(__name__)


def config_tags(config: RunConfig) -> dict[str, Any]:
    """What a run is, as tags the report and the runs view read (method, labels, seed)."""
    data = config.data
    return {
        TAG_RUN_COLOR: method_color(config.method.name),
        TAG_METHOD: config.method.name,
        TAG_LABEL_RATIO: "" if data.label_ratio is None else data.label_ratio,
        TAG_LABEL_COUNT: "" if data.label_count is None else data.label_count,
        TAG_SEED: config.runtime.seed,
        TAG_SPLIT_SEED: data.split_seed,
        **backbone_tags(config),
    }
class RunLogger(TrainHooks):
    """Feeds one MLflow run from the training loop's hooks: train scalars, validation
    metrics, per-class IoU, the collapse flag, confusion matrix and overlays.

    Subclasses find or create the run, then call `_attach`. A reused run (a resume)
    drops metric points at steps already logged, so the replay after a resume does
    not draw duplicate curves.
    """

    client: MlflowClient
    run_id: str

    def _attach(self, run: Run, found: bool, config: RunConfig, tags: Mapping[str, Any],
                keep: Iterable[str] = ()) -> None:
        self.config = config
        self.num_classes = config.data.num_classes
        self._last_step: dict[str, int] = self._logged_steps(run) if found else {}
        if found:
            reopen_run(self.client, run)
        self.run_id = run.info.run_id
        set_tags(self.client, self.run_id, tags)
        # runtime.storage_options may carry S3 keys: params and config artifact are redacted;
        # only what the method uses, nothing machine-local (see orchestration/tracking/params.py)
        safe_tree = redact(portable_tree(config))
        log_params_once(self.client, run, run_params(config, safe_tree, keep=keep))
        self._collapsed_at = parse_steps(run.data.tags.get(TAG_COLLAPSED_AT, "")) if found else []
        self._run = run
        self._total: int | None = None
        # every evaluation of the run, those before a resume included: the convergence rule reads them all
        self._evals: dict[int, float] = ({m.step: m.value for m in self.client.get_metric_history(
            self.run_id, METRIC_MIOU)} if found else {})
        if not found:
            self.client.log_text(self.run_id, yaml.safe_dump(safe_tree, sort_keys=False),
                                 CONFIG_ARTIFACT)
        self._closed = False

    def _logged_steps(self, run: Run) -> dict[str, int]:
        steps: dict[str, int] = {}
        for key in run.data.metrics:
            history = self.client.get_metric_history(run.info.run_id, key)
            if history:
                steps[key] = max(m.step for m in history)
        return steps

    def _log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        stamp = now_ms()
        metrics = []
        for key, value in values.items():
            if step <= self._last_step.get(key, -1):
                continue  # replayed after a resume: already in the history
            metrics.append(Metric(key, float(value), stamp, int(step)))
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])

    def on_start(self, facts: dict[str, Any]) -> None:
        """The budget the run resolved to and its split's sizes, as params."""
        self._total = int(facts[BUDGET_ITERS])
        log_params_once(self.client, self._run, facts)

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        """Train scalars (`train/loss`, ...) as metrics at `step`, in one request."""
        self._log_metrics(step, {sanitize_key_path(k): v for k, v in scalars.items()})

    def on_evaluation(self, step: int, result: EvalResult, checkpoint_dir: str | None) -> None:
        """Validation metrics, per-class IoU, confusion matrix and overlays at `step`."""
        metrics: dict[str, float] = {}
        for key, value in result.as_metrics(prefix=VAL_PREFIX).items():
            if not key.startswith(CLASS_IOU_PREFIX):
                metrics[sanitize_key_path(key)] = float(value)
        for key, iou in zip(class_metric_keys(result.class_names), result.per_class_iou):
            if math.isfinite(float(iou)):  # nan: the class never occurs, nothing to plot
                metrics[key] = float(iou)
        self._log_metrics(step, metrics)
        self._tag_collapse(step, result)
        self._evals[step] = result.miou
        if self._total is not None and step >= self._total:
            self._tag_convergence()
        self._log_eval_images(step, result)
        if checkpoint_dir is not None:
            self.client.set_tag(self.run_id, TAG_CHECKPOINT,
                                tag_value(redact_text(str(checkpoint_dir))))

    def _tag_collapse(self, step: int, result: EvalResult) -> None:
        """Flag the run when rrn_core says its predictions cover one class.

        `rrn.collapsed` follows the latest evaluation; `rrn.collapsed_at` keeps every
        collapsed step, so a collapse that recovered later is still visible.
        """
        collapsed = bool(result.collapsed)
        if collapsed and step not in self._collapsed_at:
            self._collapsed_at.append(step)
        tags: dict[str, Any] = {TAG_COLLAPSED: "true" if collapsed else "false"}
        if self._collapsed_at:
            tags[TAG_COLLAPSED_AT] = ",".join(str(s) for s in sorted(self._collapsed_at))
        set_tags(self.client, self.run_id, tags)

    def _tag_convergence(self) -> None:
        """At the last evaluation: was the metric still rising (rrn_core/convergence.py)?"""
        verdict = assess(sorted(self._evals.items()), int(self._total or 0))
        flag = {True: "true", False: "false", None: "unknown"}[verdict.still_improving]
        set_tags(self.client, self.run_id, {TAG_STILL_IMPROVING: flag,
                                            TAG_CONVERGENCE: tag_value(verdict.rule)})

    def _log_eval_images(self, step: int, result: EvalResult) -> None:
        folder = f"eval/step_{step:07d}"
        with tempfile.TemporaryDirectory(prefix="rrn-eval-") as tmp:
            out = Path(tmp)
            confusion_matrix_figure(result.confusion, list(result.class_names),
                                    str(out / "confusion.png"))
            for index, sample in enumerate(getattr(result, "samples", None) or []):
                name = f"overlay_{index:02d}_{sanitize_metric_key(str(sample.id))}.png"
                overlay_figure(sample.image, sample.gt, sample.pred, list(result.class_names),
                               out / name, title=f"{sample.id}  (step {step})")
            self.client.log_artifacts(self.run_id, tmp, folder)

    def should_stop(self) -> bool:
        return False

    def close(self, status: str = "FINISHED") -> None:
        """End the child run; safe to call twice (e.g. from a finally block)."""
        if not self._closed:
            self.client.set_terminated(self.run_id, status)
            self._closed = True
class TrialTracker(RunLogger):
    """One nested child run per trial (rank 0 only), idempotent on the trial id: a
    restarted worker or a resumed sweep continues the trial's run."""

    def __init__(self, tracking_uri: str, experiment: str, parent_run_id: str, trial_id: str,
                 run_name: str, config: RunConfig, tags: dict[str, str] | None = None) -> None:
        from orchestration.tracking.retry import PatientClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        # A tracking-server restart must not kill or stall the trial (tracking/retry.py).
        self.client = PatientClient(MlflowClient(tracking_uri=self.tracking_uri))
        self.parent_run_id = parent_run_id
        self.trial_id = trial_id
        parent = self.client.get_run(parent_run_id)
        self.experiment_id = parent.info.experiment_id
        if experiment and self.client.get_experiment(self.experiment_id).name != experiment:
            log.warning("parent run %s is in another experiment than %r; using the parent's",
                        parent_run_id, experiment)
        found = find_runs_by_tags(self.client, [self.experiment_id],
                                  {TAG_PARENT: parent_run_id, TAG_TRIAL_ID: trial_id})
        run_tags: dict[str, Any] = {
            TAG_PARENT: parent_run_id,
            TAG_ROLE: ROLE_TRIAL,
            TAG_TRIAL_ID: trial_id,
            TAG_SWEEP: parent.data.tags.get(TAG_SWEEP, ""),
            **config_tags(config),
            **(tags or {}),
        }
        if found:
            run = found[0]
        else:
            run = self.client.create_run(self.experiment_id, start_time=now_ms(),
                                         run_name=run_name, tags={TAG_PARENT: parent_run_id,
                                                                  TAG_TRIAL_ID: trial_id})
        swept = [*json.loads(parent.data.tags.get(TAG_GRID_KEYS, "[]")),
                 *json.loads(parent.data.tags.get(TAG_SEARCH_KEYS, "[]"))]
        self._attach(run, bool(found), config, run_tags, keep=swept)
