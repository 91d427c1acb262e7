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
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from mlflow.entities import Run

from orchestration.display_names import SWEEP_COLOR, sanitize_metric_key
from orchestration.names import (CONFIG_ARTIFACT, METRIC_MIOU, ROLE_SWEEP, TAG_BEST_RUN, TAG_BEST_TRIAL,
                                 TAG_COLLAPSED_COUNT, TAG_DATASET_HASH, TAG_GIT_COMMIT,
                                 TAG_GIT_COMMIT_MLFLOW, TAG_GRID_KEYS, TAG_METRIC, TAG_MODE, TAG_NOTE,
                                 TAG_ROLE, TAG_RUN_COLOR, TAG_SEARCH_KEYS, TAG_SPACE,
                                 TAG_SPLIT_HASH_PREFIX, TAG_STILL_IMPROVING, TAG_SWEEP, TAG_TRIAL_COUNT,
                                 TAG_CONVERGENCE)
from orchestration.report.table import best_trials, group_file_stem, overall_best, summarize_run
from orchestration.report.verdicts import sweep_evidence
from orchestration.report.formats import collapse_note, group_display, to_markdown
from orchestration.storage.filesystems import redact, redact_text
from orchestration.tracking.mlflow_calls import (log_params_once, set_tags, now_ms, reopen_run, tag_value,
                                                 sanitize_key_path, grid_searched, spec_text)
from orchestration.tracking.store import (child_runs, ensure_experiment, find_runs_by_tags, open_client,
                                          resolve_tracking_uri)
from orchestration.tracking.summary_page import write_summary_files
from orchestration.tracking.ui_links import publish_view

if TYPE_CHECKING:
    import pandas as pd

    from orchestration.space import ResolvedSpace
    from rrn_core.evaluate import EvalResult

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- metric keys


# --------------------------------------------------------------------------- sweep


class SweepTracker:
    """The parent run of one sweep; lives in the sweep driver process."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.client = open_client(self.tracking_uri)
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        #: trial id -> still improving, judged against its siblings by log_summary()
        self.judged: dict[str, bool | None] = {}

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
                self.experiment_id, start_time=now_ms(), run_name=self.sweep_name,
                tags={TAG_SWEEP: self.sweep_name, TAG_ROLE: ROLE_SWEEP,
                      TAG_RUN_COLOR: SWEEP_COLOR})
        else:
            reopen_run(self.client, run)
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
        params.update({f"search.{k}": spec_text(v) for k, v in search.items()})
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

    def log_summary(self) -> list[str]:
        """Summary table, label-efficiency plot, verdicts and best config(s) -> the parent
        run; returns the verdict lines (report/verdicts.py) for the console."""
        if self.parent_run_id is None:
            raise RuntimeError("SweepTracker.log_summary() before start()")
        parent = self.client.get_run(self.parent_run_id)
        df = summarize_run(self.client, parent)
        self.judged = self._retag_convergence(df)
        mode = parent.data.tags.get(TAG_MODE, "max")
        with tempfile.TemporaryDirectory(prefix="rrn-summary-") as tmp:
            out = Path(tmp)
            for path in write_summary_files(df, out / "summary").values():
                self.client.log_artifact(self.parent_run_id, str(path), "summary")
            lines = self._describe(df)
            best = best_trials(df, mode)
            if best.empty:
                return lines
            cfg_dir = out / "best_configs"
            cfg_dir.mkdir()
            files: dict[str, Path] = {}
            with _quiet_downloads():
                for _, row in best.iterrows():
                    got = Path(self.client.download_artifacts(row["run_id"], CONFIG_ARTIFACT, tmp))
                    stem = group_file_stem(row)
                    files[row["run_id"]] = got.replace(cfg_dir / f"{stem}.yaml")
            self.client.log_artifacts(self.parent_run_id, str(cfg_dir), "summary/best_configs")
            top = overall_best(df, mode)
            if top is None or top["run_id"] not in files:
                return lines
            best_path = out / "best_config.yaml"
            best_path.write_bytes(files[top["run_id"]].read_bytes())
            self.client.log_artifact(self.parent_run_id, str(best_path), "summary")
            metric = parent.data.tags.get(TAG_METRIC, METRIC_MIOU)
            self.client.log_metric(self.parent_run_id, f"best/{sanitize_key_path(metric)}",
                                   float(top["objective"]))
            set_tags(self.client, self.parent_run_id,
                     {TAG_BEST_TRIAL: top["trial_id"], TAG_BEST_RUN: top["run_id"]})
        return lines

    def _retag_convergence(self, df: pd.DataFrame) -> dict[str, bool | None]:
        """Each trial's convergence as judged against its siblings' noise (the report's
        verdict) replaces the one it tagged alone at its end, so that the runs view, the
        console and `rrn report` mark the same trials; returns trial id -> still improving."""
        import pandas as pd

        judged: dict[str, bool | None] = {}
        if df.empty or "still_improving" not in df:
            return judged
        for _, row in df.iterrows():
            flag = None if pd.isna(row["still_improving"]) else bool(row["still_improving"])
            judged[str(row["trial_id"])] = flag
            set_tags(self.client, row["run_id"], {
                TAG_STILL_IMPROVING: {True: "true", False: "false", None: "unknown"}[flag],
                TAG_CONVERGENCE: tag_value(row.get("convergence") or "")})
        return judged

    def _describe(self, df: pd.DataFrame) -> list[str]:
        """The method x labels table as the parent run's description (its Overview page)
        and the number of collapsed trials as a tag."""
        groups = group_display(df) if not df.empty else None
        lines = ["Final evaluation, best trial per seed; open `summary/summary.html` for the plots "
                 "and all trials, `summary/verdicts.json` for the intervals as data."]
        if groups is not None and not groups.empty:
            lines += ["", to_markdown(groups)]
        collapsed = int(df["collapsed"].sum()) if not df.empty else 0
        if collapsed:
            lines += ["", f"**{collapsed} trial(s) {collapse_note()}.**"]
        tags: dict[str, Any] = {TAG_COLLAPSED_COUNT: collapsed}
        verdicts: list[str] = []
        if not df.empty:
            evidence = sweep_evidence(df)
            verdicts = evidence.lines()
            lines += ["", "**Verdicts**", ""] + [f"- {line}" for line in verdicts]
            self.client.log_dict(self.parent_run_id, evidence.as_dict(), "summary/verdicts.json")
            tags[TAG_STILL_IMPROVING] = evidence.convergence["still_improving"]
        tags[TAG_NOTE] = "\n".join(lines)
        set_tags(self.client, self.parent_run_id, tags)
        return verdicts


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


# --------------------------------------------------------------------------- trial


