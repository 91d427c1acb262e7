"""MLflow tracking of sweeps: one parent run per sweep, one nested child run per trial.

Tune's own MLflow callback makes flat, parentless runs; users want the sweep as one
run with its trials nested under it, so the hierarchy is built here by hand with an
explicit `MlflowClient` and explicit run ids. Nothing touches MLflow's global "active
run": trials run in Ray worker processes where that global state is neither shared
nor safe, and `MLFLOW_RUN_ID` would make every worker write into one run.

Both trackers are idempotent on their names so a resumed sweep (same name) and a
restarted trial (same trial id) continue their runs instead of forking new ones.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.utils.validation import (MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH,
                                     MAX_TAG_VAL_LENGTH)

from orchestration import report
from orchestration.backbones import backbone_tags
from orchestration.mlflow_store import child_runs, ensure_experiment, find_runs_by_tags, resolve_tracking_uri
from orchestration.names import (CLASS_IOU_PREFIX, CONFIG_ARTIFACT, METRIC_MIOU, ROLE_SWEEP, ROLE_TRIAL,
                                 TAG_BEST_RUN, TAG_BEST_TRIAL, TAG_CHECKPOINT, TAG_COLLAPSED,
                                 TAG_COLLAPSED_AT, TAG_COLLAPSED_COUNT, TAG_DATASET_HASH, TAG_GIT_COMMIT,
                                 TAG_GIT_COMMIT_MLFLOW, TAG_GRID_KEYS, TAG_LABEL_COUNT, TAG_LABEL_RATIO,
                                 TAG_METHOD, TAG_METRIC, TAG_MODE, TAG_NOTE, TAG_PARENT, TAG_RESUMED,
                                 TAG_ROLE, TAG_RUN_COLOR, TAG_SEARCH_KEYS, TAG_SEED, TAG_SPACE,
                                 TAG_SPLIT_HASH_PREFIX, TAG_SPLIT_SEED, TAG_SWEEP, TAG_TRIAL_COUNT,
                                 TAG_TRIAL_ID, VAL_PREFIX)
from orchestration.naming import SWEEP_COLOR, method_color, sanitize_metric_key
from orchestration.overlays import overlay_figure
from orchestration.params import portable_tree, run_params
from orchestration.report_format import collapse_note, group_display, to_markdown
from orchestration.storage import redact, redact_text
from orchestration.summary_page import write_summary_files
from orchestration.ui_links import publish_view
from rrn_core.config import RunConfig
from rrn_core.loop import TrainHooks
from rrn_core.visualize import confusion_matrix_figure

if TYPE_CHECKING:
    import pandas as pd

    from orchestration.space import ResolvedSpace
    from rrn_core.evaluate import EvalResult

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- metric keys


def class_metric_keys(class_names: Iterable[str], prefix: str = CLASS_IOU_PREFIX) -> list[str]:
    """Per-class metric keys, unique even when two names sanitise to the same string."""
    keys: list[str] = []
    seen: set[str] = set()
    for index, name in enumerate(class_names):
        key = prefix + sanitize_metric_key(str(name))
        if key in seen:
            key = f"{key}_{index}"
        seen.add(key)
        keys.append(key)
    return keys


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_VAL_LENGTH]


def _tag_value(value: Any) -> str:
    return str(value)[:MAX_TAG_VAL_LENGTH]


def log_params_once(client: MlflowClient, run: Run, params: Mapping[str, Any]) -> list[str]:
    """Log params in batches, skipping keys the run already has.

    MLflow params are immutable: re-logging a key with another value fails the whole
    batch, which would crash a resumed trial. Returns keys whose stored value differs.
    """
    existing = run.data.params
    new: list[Param] = []
    changed: list[str] = []
    for key, value in params.items():
        text = _param_value(value)
        if key in existing:
            if existing[key] != text:
                changed.append(key)
            continue
        new.append(Param(key, text))
    for start in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run.info.run_id, params=new[start:start + MAX_PARAMS_TAGS_PER_BATCH])
    if changed:
        log.warning("run %s keeps its logged values for changed params: %s",
                    run.info.run_id, ", ".join(changed))
    return changed


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    items = [RunTag(k, _tag_value(v)) for k, v in tags.items() if v is not None]
    for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=items[start:start + MAX_PARAMS_TAGS_PER_BATCH])


def _steps(text: str) -> list[int]:
    """`"100,200"` -> [100, 200] (the `rrn.collapsed_at` tag read back)."""
    return [int(p) for p in text.split(",") if p.strip().isdigit()]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _reopen(client: MlflowClient, run: Run) -> None:
    """Mark a resumed run RUNNING again (a crash left it RUNNING or FAILED)."""
    if run.info.status != "RUNNING":
        client.update_run(run.info.run_id, status="RUNNING")
    resumed = int(run.data.tags.get(TAG_RESUMED, "0") or 0) + 1
    client.set_tag(run.info.run_id, TAG_RESUMED, str(resumed))


# --------------------------------------------------------------------------- sweep


class SweepTracker:
    """The parent run of one sweep; lives in the sweep driver process."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None

    def start(self, space: ResolvedSpace, *, git_commit: str | None, dataset_hash: str | None,
              split_hashes: dict[str, str], resume: bool) -> str:
        """Open (or, on resume, reopen) the parent run and record what the sweep is.

        The space file, its resolved description and the base config go in as
        artifacts so the parent alone is enough to rerun the sweep.
        """
        self.experiment_id = ensure_experiment(self.client, self.tracking_uri, self.experiment)
        run: Run | None = None
        if resume:
            found = find_runs_by_tags(self.client, [self.experiment_id],
                                      {TAG_SWEEP: self.sweep_name, TAG_ROLE: ROLE_SWEEP})
            run = found[0] if found else None
        if run is None:
            run = self.client.create_run(
                self.experiment_id, start_time=_now_ms(), run_name=self.sweep_name,
                tags={TAG_SWEEP: self.sweep_name, TAG_ROLE: ROLE_SWEEP,
                      TAG_RUN_COLOR: SWEEP_COLOR})
        else:
            _reopen(self.client, run)
        self.parent_run_id = run.info.run_id

        sweep = space.space
        search_keys = list(getattr(sweep, "search", None) or {})
        grid = dict(getattr(sweep, "grid", None) or {})
        metric = getattr(sweep, "metric", METRIC_MIOU)
        mode = getattr(sweep, "mode", "max")
        tags: dict[str, Any] = {
            TAG_SPACE: getattr(sweep, "name", self.sweep_name),
            TAG_METRIC: metric,
            TAG_MODE: mode,
            TAG_SEARCH_KEYS: json.dumps(search_keys),
            TAG_GRID_KEYS: json.dumps(list(grid)),
            TAG_TRIAL_COUNT: space.trial_count,
            TAG_GIT_COMMIT: git_commit,
            TAG_GIT_COMMIT_MLFLOW: git_commit,
            TAG_DATASET_HASH: dataset_hash,
        }
        for key, digest in split_hashes.items():
            tags[TAG_SPLIT_HASH_PREFIX + sanitize_metric_key(str(key))] = digest
        set_tags(self.client, self.parent_run_id, tags)
        params: dict[str, Any] = {
            "space_name": tags[TAG_SPACE], "trial_count": space.trial_count,
            "num_samples": getattr(sweep, "num_samples", None), "metric": metric, "mode": mode,
        }
        params.update({f"grid.{k}": v for k, v in grid.items()})
        search = getattr(sweep, "search", None) or {}
        params.update({f"search.{k}": _spec_text(v) for k, v in search.items()})
        log_params_once(self.client, run, {k: v for k, v in params.items() if v is not None})
        by_count = "data.label_count" in grid or "data.label_count" in (getattr(sweep, "fixed", None) or {})
        publish_view(self.client, self.experiment_id, self.sweep_name, metric, mode,
                     [*grid_searched(grid, search_keys)], by_count=by_count)

        rid = self.parent_run_id
        space_file = Path(space.path)
        if space_file.is_file():
            self.client.log_text(rid, redact_text(space_file.read_text()),
                                 f"space/{space_file.name}")
        self.client.log_text(rid, space.describe(), "space/resolved.txt")
        self.client.log_text(rid, yaml.safe_dump(redact(space.base), sort_keys=False),
                             "space/base_config.yaml")
        self.client.log_dict(rid, dict(split_hashes), "space/split_hashes.json")
        return rid

    def finish(self, status: str = "FINISHED") -> None:
        """End the parent run; any trial still RUNNING ends FAILED (KILLED if we were).

        A trial whose worker died never closes its own run; without this the UI would
        show it running forever.
        """
        if self.parent_run_id is None:
            return
        child_status = "KILLED" if status == "KILLED" else "FAILED"
        parent = self.client.get_run(self.parent_run_id)
        for child in child_runs(self.client, parent):
            if child.info.status in ("RUNNING", "SCHEDULED"):
                self.client.set_terminated(child.info.run_id, child_status)
        self.client.set_terminated(self.parent_run_id, status)

    def log_summary(self) -> None:
        """Summary table, label-efficiency plot and best config(s) -> the parent run."""
        if self.parent_run_id is None:
            raise RuntimeError("SweepTracker.log_summary() before start()")
        parent = self.client.get_run(self.parent_run_id)
        df = report.summarize_run(self.client, parent)
        mode = parent.data.tags.get(TAG_MODE, "max")
        with tempfile.TemporaryDirectory(prefix="rrn-summary-") as tmp:
            out = Path(tmp)
            for path in write_summary_files(df, out / "summary").values():
                self.client.log_artifact(self.parent_run_id, str(path), "summary")
            self._describe(df)
            best = report.best_trials(df, mode)
            if best.empty:
                return
            cfg_dir = out / "best_configs"
            cfg_dir.mkdir()
            files: dict[str, Path] = {}
            with _quiet_downloads():
                for _, row in best.iterrows():
                    got = Path(self.client.download_artifacts(row["run_id"], CONFIG_ARTIFACT, tmp))
                    stem = report.group_file_stem(row)
                    files[row["run_id"]] = got.replace(cfg_dir / f"{stem}.yaml")
            self.client.log_artifacts(self.parent_run_id, str(cfg_dir), "summary/best_configs")
            top = report.overall_best(df, mode)
            if top is None or top["run_id"] not in files:
                return
            best_path = out / "best_config.yaml"
            best_path.write_bytes(files[top["run_id"]].read_bytes())
            self.client.log_artifact(self.parent_run_id, str(best_path), "summary")
            metric = parent.data.tags.get(TAG_METRIC, METRIC_MIOU)
            self.client.log_metric(self.parent_run_id, f"best/{sanitize_key_path(metric)}",
                                   float(top["objective"]))
            set_tags(self.client, self.parent_run_id,
                     {TAG_BEST_TRIAL: top["trial_id"], TAG_BEST_RUN: top["run_id"]})

    def _describe(self, df: pd.DataFrame) -> None:
        """The method x labels table as the parent run's description (its Overview page)
        and the number of collapsed trials as a tag."""
        groups = group_display(df) if not df.empty else None
        lines = ["Best trial per seed; open `summary/summary.html` for the plots and all trials."]
        if groups is not None and not groups.empty:
            lines += ["", to_markdown(groups)]
        collapsed = int(df["collapsed"].sum()) if not df.empty else 0
        if collapsed:
            lines += ["", f"**{collapsed} trial(s) {collapse_note()}.**"]
        set_tags(self.client, self.parent_run_id,
                 {TAG_NOTE: "\n".join(lines), TAG_COLLAPSED_COUNT: collapsed})


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No tqdm bar per tiny config download in the sweep driver's log (unless asked for)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(key)
    if previous is None:
        os.environ[key] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)


def sanitize_key_path(key: str) -> str:
    """A metric key with each `/`-separated segment sanitised (keeps `val/mIoU` as is)."""
    return "/".join(sanitize_metric_key(part) for part in key.split("/"))


def grid_searched(grid: Mapping[str, Any], search_keys: Iterable[str]) -> Iterator[str]:
    """Param keys worth a column in the runs view: searched keys, then grid keys that are
    not already shown as tags (method, ratio, seed)."""
    own = {"method.name", "data.label_ratio", "data.label_count", "runtime.seed"}
    yield from search_keys
    yield from (k for k in grid if k not in own and k not in search_keys)


def _spec_text(spec: Any) -> str:
    """A search distribution as a person writes it: `loguniform [0.003, 0.03]`."""
    if hasattr(spec, "describe"):
        return spec.describe()
    return json.dumps(spec, sort_keys=True)


# --------------------------------------------------------------------------- trial


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
            _reopen(self.client, run)
        self.run_id = run.info.run_id
        set_tags(self.client, self.run_id, tags)
        # runtime.storage_options may carry S3 keys: params and config artifact are redacted;
        # only what the method uses, nothing machine-local (see orchestration/params.py)
        safe_tree = redact(portable_tree(config))
        log_params_once(self.client, run, run_params(config, safe_tree, keep=keep))
        self._collapsed_at = _steps(run.data.tags.get(TAG_COLLAPSED_AT, "")) if found else []
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
        stamp = _now_ms()
        metrics = []
        for key, value in values.items():
            if step <= self._last_step.get(key, -1):
                continue  # replayed after a resume: already in the history
            metrics.append(Metric(key, float(value), stamp, int(step)))
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])

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
        self._log_eval_images(step, result)
        if checkpoint_dir is not None:
            self.client.set_tag(self.run_id, TAG_CHECKPOINT,
                                _tag_value(redact_text(str(checkpoint_dir))))

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
        from orchestration.tracking_retry import PatientClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        # A tracking-server restart must not kill or stall the trial (tracking_retry.py).
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
            run = self.client.create_run(self.experiment_id, start_time=_now_ms(),
                                         run_name=run_name, tags={TAG_PARENT: parent_run_id,
                                                                  TAG_TRIAL_ID: trial_id})
        swept = [*json.loads(parent.data.tags.get(TAG_GRID_KEYS, "[]")),
                 *json.loads(parent.data.tags.get(TAG_SEARCH_KEYS, "[]"))]
        self._attach(run, bool(found), config, run_tags, keep=swept)
