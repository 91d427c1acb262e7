"""Direct links into the MLflow UI: a sweep's runs table and its parent run.

`rrn ui` printed only the bare address, which opens MLflow's experiment list (and,
for an experiment without `mlflow.experimentKind`, its GenAI traces view). These
links open the model-training runs view of one sweep.

The runs view's default shows no metric column and nests the trials, collapsed,
under the parent. So each sweep publishes a *shared view* (an experiment tag the
UI reads by `viewStateShareKey`): filtered to the sweep, sorted by the objective
(which lists parent and trials flat), with the objective, the collapse signal, the
method and the searched values as columns, and every run drawn in the charts (the
UI's default draws the first 10). The UI is a hash-routed single-page app;
`workflowType` picks its model-training mode.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from mlflow import MlflowClient

from orchestration.tracking.store import find_runs_by_tags
from orchestration.names import (METRIC_DOMINANT_SHARE, METRIC_MIOU, ROLE_SWEEP, TAG_COLLAPSED, TAG_LABEL_COUNT, TAG_STILL_IMPROVING,
                                 TAG_LABEL_RATIO, TAG_METHOD, TAG_ROLE, TAG_SEED, TAG_SHARED_VIEW_PREFIX,
                                 TAG_SWEEP)

#: The UI's model-training (not GenAI) mode, as its own URLs spell it.
WORKFLOW_TRAINING = "machine_learning"


def _column(kind: str, key: str) -> str:
    """The UI's column key: `metrics.`val/mIoU``."""
    return f"{kind}.`{key}`"


def view_key(sweep: str) -> str:
    """The share key of a sweep's view (stable: a resumed sweep updates the same view)."""
    return "rrn-" + hashlib.sha256(sweep.encode()).hexdigest()[:16]


def view_state(sweep: str, metric: str, mode: str, searched: Sequence[str],
               by_count: bool = False) -> dict[str, Any]:
    """The runs-table state the UI restores from a shared view (`by_count`: the sweep's
    label amounts are image counts, not ratios)."""
    columns = [_column("metrics", metric)]
    if metric != METRIC_MIOU:
        columns.append(_column("metrics", METRIC_MIOU))
    columns += [_column("metrics", METRIC_DOMINANT_SHARE)]
    amount = TAG_LABEL_COUNT if by_count else TAG_LABEL_RATIO
    columns += [_column("tags", key) for key in (TAG_METHOD, TAG_COLLAPSED, TAG_STILL_IMPROVING, amount, TAG_SEED)]
    columns += [_column("params", key) for key in searched]
    return {"searchFilter": f"tags.`{TAG_SWEEP}` = '{sweep}'",
            "orderByKey": _column("metrics", metric), "orderByAsc": mode == "min",
            "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL"}


def publish_view(client: Any, experiment_id: str, sweep: str, metric: str, mode: str,
                 searched: Sequence[str], by_count: bool = False) -> str:
    """Store the sweep's view as an experiment tag; returns its share key."""
    key = view_key(sweep)
    client.set_experiment_tag(experiment_id, TAG_SHARED_VIEW_PREFIX + key,
                              json.dumps(view_state(sweep, metric, mode, searched, by_count)))
    return key


def runs_url(base: str, experiment_id: str, sweep: str | None = None,
             shared: bool = False) -> str:
    """The runs table of an experiment, or of one sweep: its shared view when published,
    else filtered to the sweep and sorted by start time."""
    query = {"workflowType": WORKFLOW_TRAINING}
    if sweep and shared:
        query["viewStateShareKey"] = view_key(sweep)
    elif sweep:
        query["searchFilter"] = f"tags.`{TAG_SWEEP}` = '{sweep}'"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?" + urlencode(query, quote_via=quote)


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """One run's page (overview, metrics charts, artifacts)."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?"
            + urlencode({"workflowType": WORKFLOW_TRAINING}))


@dataclass(frozen=True)
class SweepLinks:
    experiment: str
    experiment_id: str
    sweep: str | None
    parent_run_id: str | None
    shared: bool = False            # the sweep's view is published in the experiment

    def runs(self, base: str) -> str:
        return runs_url(base, self.experiment_id, self.sweep, self.shared)

    def lines(self, base: str) -> list[str]:
        """What `rrn ui` prints under the address."""
        if self.sweep is None or self.parent_run_id is None:
            return [f"  runs of experiment {self.experiment}: {runs_url(base, self.experiment_id)}"]
        return [f"  sweep {self.sweep}, its trials: {self.runs(base)}",
                f"  sweep {self.sweep}, parent run:  "
                f"{run_url(base, self.experiment_id, self.parent_run_id)}"]


def find_links(tracking_uri: str, experiment: str, sweep: str | None) -> SweepLinks | None:
    """The experiment and the sweep's newest parent run (the newest sweep when `sweep` is
    None); None when the store has no such experiment yet."""
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    tags = {TAG_ROLE: ROLE_SWEEP}
    if sweep:
        tags[TAG_SWEEP] = sweep
    runs = find_runs_by_tags(client, [exp.experiment_id], tags)
    if not runs:
        return SweepLinks(experiment, exp.experiment_id, None, None)
    newest = runs[0]
    name = newest.data.tags.get(TAG_SWEEP)
    shared = name is not None and TAG_SHARED_VIEW_PREFIX + view_key(name) in exp.tags
    return SweepLinks(experiment, exp.experiment_id, name, newest.info.run_id, shared)
