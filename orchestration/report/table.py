"""Reading a sweep back out of MLflow: the per-trial table and the label-efficiency plot.

The table is built only from what the trackers wrote (tags, params, metric
histories), so it works the same for a finished sweep, one still running, and one
on a remote tracking server — there is no second bookkeeping to fall out of sync.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import yaml
from scipy import stats
from mlflow import MlflowClient
from mlflow.entities import Run

from orchestration.backbones import label_by_backbone
from orchestration.tracking.store import child_runs, find_runs_by_tags, resolve_tracking_uri, search_all_runs
from orchestration.names import (EXPERIMENT_AXES, CLASS_IOU_PREFIX, METRIC_DOMINANT_SHARE, METRIC_MIOU, ROLE_SWEEP,
                                 TAG_CHECKPOINT, TAG_COLLAPSED, TAG_COLLAPSED_AT, TAG_GRID_KEYS,
                                 TAG_LABEL_COUNT, TAG_LABEL_RATIO, TAG_METHOD, TAG_METRIC, TAG_MODE, TAG_ROLE,
                                 TAG_SEARCH_KEYS, TAG_SEED, TAG_SPLIT_SEED, TAG_SWEEP, TAG_TRIAL_ID,
                                 BUDGET_EPOCHS_LABELED, BUDGET_EPOCHS_UNLABELED, BUDGET_ITERS,
                                 COMPUTE_DEVICE_SECONDS, COMPUTE_IMAGES_BWD, COMPUTE_IMAGES_FWD,
                                 COMPUTE_TFLOP, HEALTH_METRICS, LABELED_IMAGES, LOSS_SHARE_PREFIX)
from orchestration.display_names import axis_text, sanitize_metric_key
from orchestration.storage.filesystems import redact_text
from rrn_core.convergence import assess_siblings
from rrn_core.yaml_files import load_yaml

MIOU = METRIC_MIOU
DOMINANT_SHARE = METRIC_DOMINANT_SHARE
#: Per-class IoU columns of the summary frame: `IoU/<class>` (the run's latest value).
IOU_COLUMN_PREFIX = "IoU/"
# Axes that already have their own columns; other grid keys become param columns.
_OWN_COLUMNS = set(EXPERIMENT_AXES)
BASE_COLUMNS = ["trial_id", "run_name", "method", "label_ratio", "label_count", "seed",
                "split_seed"]
RESULT_COLUMNS = ["miou_best", "miou_final", "objective", "best_step", "evals", "last_step",
                  "total_steps", "still_improving", "swinging", "convergence",
                  "tflop", "device_seconds", "images_fwd", "images_bwd", "labeled_images",
                  "epochs_labeled", "epochs_unlabeled",
                  "dominant_share", "collapsed", "collapsed_at", "status", "run_id", "checkpoint",
                  "eval_history"]
#: Columns for the trackers' own use, left out of exported files.
INTERNAL_COLUMNS = ["eval_history"]
#: Per trial: the metric every comparison uses (the final evaluation: the best one is
#: chosen on the validation set it is reported on, an optimistic pick).
COMPARED = "miou_final"
#: Whole-number columns: nullable integers, so the CSV says `0`, not `0.0`.
INT_COLUMNS = ["label_count", "seed", "split_seed", "best_step", "evals", "last_step", "total_steps",
               "labeled_images"]


class SweepNotFound(LookupError):
    """No sweep of that name in the store; the message says where it looked."""


def find_sweep_run(client: MlflowClient, experiment: str, sweep_name: str) -> Run:
    """The newest parent run of `sweep_name` (a non-resumed rerun starts a new one)."""
    exp = client.get_experiment_by_name(experiment)
    store = redact_text(client.tracking_uri)
    where = f"experiment {experiment!r} of {store}"
    if exp is None:
        raise SweepNotFound(f"no experiment {experiment!r} in {store}")
    runs = find_runs_by_tags(client, [exp.experiment_id],
                             {TAG_SWEEP: sweep_name, TAG_ROLE: ROLE_SWEEP})
    if not runs:
        known = sorted(known_sweeps(client, exp.experiment_id))
        hint = f"; known sweeps: {', '.join(known)}" if known else "; it has no sweeps yet"
        raise SweepNotFound(f"no sweep named {sweep_name!r} in {where}{hint}")
    return runs[0]


def known_sweeps(client: MlflowClient, experiment_id: str) -> set[str]:
    runs = search_all_runs(client, [experiment_id], f"tags.`{TAG_ROLE}` = '{ROLE_SWEEP}'")
    return {r.data.tags.get(TAG_SWEEP, "") for r in runs} - {""}


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _param(text: str | None) -> Any:
    """A logged param back to a value (params are strings; they were written as YAML/JSON)."""
    if text is None:
        return None
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) in step order, NaNs dropped."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return [(m.step, m.value) for m in points if not math.isnan(m.value)]


def _pick(values: list[float], mode: str) -> float:
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


def param_columns(parent: Run) -> list[str]:
    """Searched keys plus grid keys without their own column, in space-file order."""
    tags = parent.data.tags
    grid = json.loads(tags.get(TAG_GRID_KEYS, "[]"))
    search = json.loads(tags.get(TAG_SEARCH_KEYS, "[]"))
    return [k for k in grid if k not in _OWN_COLUMNS] + [k for k in search if k not in grid]


def summarize_run(client: MlflowClient, parent: Run) -> pd.DataFrame:
    """One row per child run of `parent`: grid axes, searched params, mIoU, collapse, status.

    `attrs` carry the sweep's name, objective and param columns for the formatters.
    """
    metric = parent.data.tags.get(TAG_METRIC, MIOU)
    mode = parent.data.tags.get(TAG_MODE, "max")
    params = param_columns(parent)
    rows = []
    classes: list[str] = []
    for run in child_runs(client, parent):
        tags, run_id = run.data.tags, run.info.run_id
        miou_points = _history(client, run_id, MIOU)
        miou = [v for _, v in miou_points]
        objective = miou if metric == MIOU else [v for _, v in _history(client, run_id, metric)]
        best_at = (miou_points[miou.index(max(miou))][0] if miou else math.nan)
        row: dict[str, Any] = {
            "trial_id": tags.get(TAG_TRIAL_ID, run_id),
            "run_name": run.info.run_name,
            "method": tags.get(TAG_METHOD, ""),
            "label_ratio": _number(tags.get(TAG_LABEL_RATIO)),
            "label_count": _number(tags.get(TAG_LABEL_COUNT)),
            "seed": _number(tags.get(TAG_SEED)),
            "split_seed": _number(tags.get(TAG_SPLIT_SEED)),
        }
        row.update({key: _param(run.data.params.get(key)) for key in params})
        row.update({
            "miou_best": max(miou) if miou else math.nan,
            "miou_final": miou[-1] if miou else math.nan,
            "objective": _pick(objective, mode),
            "best_step": best_at,
            "evals": len(miou),
            "last_step": miou_points[-1][0] if miou_points else math.nan,
            "total_steps": _number(run.data.params.get(BUDGET_ITERS, run.data.params.get("optim.iters"))),
            "tflop": run.data.metrics.get(COMPUTE_TFLOP, math.nan),
            "device_seconds": run.data.metrics.get(COMPUTE_DEVICE_SECONDS, math.nan),
            "images_fwd": run.data.metrics.get(COMPUTE_IMAGES_FWD, math.nan),
            "images_bwd": run.data.metrics.get(COMPUTE_IMAGES_BWD, math.nan),
            "labeled_images": _number(run.data.params.get(LABELED_IMAGES)),
            "epochs_labeled": _number(run.data.params.get(BUDGET_EPOCHS_LABELED)),
            "epochs_unlabeled": _number(run.data.params.get(BUDGET_EPOCHS_UNLABELED)),
            "eval_history": json.dumps(miou_points),
            "dominant_share": run.data.metrics.get(DOMINANT_SHARE, math.nan),
            "collapsed": tags.get(TAG_COLLAPSED) == "true",
            "collapsed_at": tags.get(TAG_COLLAPSED_AT, ""),
            "status": run.info.status,
            "run_id": run_id,
            "checkpoint": tags.get(TAG_CHECKPOINT, ""),
        })
        for key, value in run.data.metrics.items():
            if key in HEALTH_METRICS or key.startswith(LOSS_SHARE_PREFIX):
                row[key] = value
            if key.startswith(CLASS_IOU_PREFIX):
                name = IOU_COLUMN_PREFIX + key[len(CLASS_IOU_PREFIX):]
                row[name] = value
                if name not in classes:
                    classes.append(name)
        rows.append(row)
    health = [k for k in HEALTH_METRICS if any(k in r for r in rows)] + sorted(
        {k for r in rows for k in r if k.startswith(LOSS_SHARE_PREFIX)})
    df = pd.DataFrame(rows, columns=BASE_COLUMNS + params + RESULT_COLUMNS + health + classes)
    df = df.astype({c: "Int64" for c in INT_COLUMNS})
    df["collapsed"] = df["collapsed"].astype(bool)
    df.attrs.update(metric=metric, mode=mode, params=params,
                    sweep=parent.data.tags.get(TAG_SWEEP, parent.info.run_name),
                    parent_run_id=parent.info.run_id, classes=classes)
    if df.empty:
        return df
    df = judge_convergence(label_by_backbone(df))
    return df.sort_values(["method", "label_ratio", "label_count", "seed", "trial_id"],
                          na_position="last", kind="stable").reset_index(drop=True)


def judge_convergence(df: pd.DataFrame) -> pd.DataFrame:
    """`still_improving`, `swinging` and the rule's line per trial (rrn_core/convergence.py),
    each trial judged against the noise of its siblings: the other seeds of its method,
    label amount and searched values."""
    df = df.copy()
    keys = ["method", "label_ratio", "label_count"] + [p for p in df.attrs.get("params", []) if p in df]
    improving, swinging, rules = {}, {}, {}
    for _, group in df.groupby(keys, dropna=False, sort=False):
        runs = [(json.loads(h), int(t) if not pd.isna(t) else int(last) if not pd.isna(last) else 0)
                for h, t, last in zip(group["eval_history"], group["total_steps"], group["last_step"])]
        for index, verdict in zip(group.index, assess_siblings(runs)):
            improving[index], swinging[index], rules[index] = (verdict.still_improving, verdict.swinging,
                                                               verdict.rule)
    df["still_improving"] = pd.Series(improving, dtype="boolean")
    df["swinging"] = pd.Series(swinging, dtype="boolean")
    df["convergence"] = pd.Series(rules, dtype="object")
    return df


_GROUP = ["method", "label_ratio", "label_count"]


def _best_index(values: pd.Series, mode: str) -> Any:
    return values.idxmax() if mode == "max" else values.idxmin()


def best_trials(df: pd.DataFrame, mode: str = "max") -> pd.DataFrame:
    """The best trial (by objective) per (method, label ratio/count): its tuned config."""
    done = df[df["objective"].notna()]
    if done.empty:
        return done
    picks = [_best_index(g["objective"], mode) for _, g in done.groupby(_GROUP, dropna=False)]
    return done.loc[picks].reset_index(drop=True)


def overall_best(df: pd.DataFrame, mode: str = "max") -> pd.Series | None:
    done = df[df["objective"].notna()]
    return None if done.empty else done.loc[_best_index(done["objective"], mode)]


def group_file_stem(row: pd.Series) -> str:
    """`rrn_ratio0.125` / `cps_count92`: a file name for one (method, label amount)."""
    stem = str(row["method"]) or "trial"
    if not pd.isna(row["label_ratio"]):
        stem += f"_ratio{row['label_ratio']:g}"
    elif not pd.isna(row["label_count"]):
        stem += f"_count{int(row['label_count'])}"
    return sanitize_metric_key(stem).replace(" ", "_")


def amount_column(df: pd.DataFrame) -> str:
    """The label-amount axis of a sweep: `label_ratio`, or `label_count` when only counts."""
    return "label_ratio" if df["label_ratio"].notna().any() or not df["label_count"].notna().any() \
        else "label_count"


GROUP_COLUMNS = ["method", "x", "mean", "std", "ci", "n", "improving", "swinging", "tflop",
                 "device_seconds", "epochs_labeled", "epochs_unlabeled", "best", "best_trial",
                 "best_run_name", "best_run_id", "collapsed", "trials", "selected"]


def _count(group: pd.DataFrame, column: str) -> int:
    """Trials flagged in `column` (a frame from elsewhere may lack the flag: none)."""
    return int(group[column].fillna(False).astype(bool).sum()) if column in group else 0


def _mean(group: pd.DataFrame, column: str) -> float:
    return float(pd.to_numeric(group[column], errors="coerce").mean()) if column in group else math.nan


def label_efficiency_data(df: pd.DataFrame, mode: str | None = None) -> pd.DataFrame:
    """One row per (method, label amount): the method x label-ratio table and plot points.

    Within each (method, amount, seed) the Optuna samples compete and only the best
    (by the sweep's objective) counts (`selected`: how many competed, so the table can
    say that the pick was made on the validation set it reports); the seeds then give
    the mean of the final evaluation (COMPARED), the spread (sample std, 0 for one
    seed), the 95 % t half-width `ci` (NaN for one seed) and n; `improving`/`swinging`
    count trials still rising at the end / swinging against their siblings, `tflop`,
    `device_seconds` and the epochs are means per trial. `best*` name the best trial,
    `collapsed` counts the group's trials whose last evaluation predicted one class,
    `trials` all of the group's evaluated trials. `attrs["x"]` names the x column.
    """
    mode = mode or df.attrs.get("mode", "max")
    x = amount_column(df)
    if df.empty:
        out = pd.DataFrame(columns=GROUP_COLUMNS)
        out.attrs["x"] = x
        return out
    done = df[df["objective"].notna() & df[x].notna() & df[COMPARED].notna()]
    if done.empty:
        out = pd.DataFrame(columns=GROUP_COLUMNS)
        out.attrs["x"] = x
        return out
    picks = [_best_index(g["objective"], mode)
             for _, g in done.groupby(["method", x, "seed"], dropna=False)]
    best = done.loc[picks]
    rows = []
    for (method, amount), group in best.groupby(["method", x], sort=True):
        top = group.loc[_best_index(group["objective"], mode)]
        every = done[(done["method"] == method) & (done[x] == amount)]
        values = group[COMPARED].astype(float)
        n = int(len(values))
        rows.append({
            "method": method, "x": amount, "mean": float(values.mean()),
            "std": float(values.std()) if n > 1 else 0.0,
            "ci": float(stats.t.ppf(0.975, n - 1) * values.std() / math.sqrt(n)) if n > 1 else math.nan,
            "n": n, "improving": _count(group, "still_improving"), "swinging": _count(group, "swinging"),
            "tflop": _mean(group, "tflop"), "device_seconds": _mean(group, "device_seconds"),
            "epochs_labeled": _mean(group, "epochs_labeled"),
            "epochs_unlabeled": _mean(group, "epochs_unlabeled"),
            "selected": int(len(every)) // max(1, n),
            "best": float(top["miou_best"]), "best_trial": top["trial_id"],
            "best_run_name": top["run_name"], "best_run_id": top["run_id"],
            "collapsed": int(every["collapsed"].sum()), "trials": int(len(every)),
        })
    out = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    out.attrs["x"] = x
    return out


def ceiling(data: pd.DataFrame) -> pd.Series | None:
    """Supervised with all the labels (ratio 1), when the sweep ran it: the upper bound
    every semi-supervised method is measured against."""
    if data.attrs.get("x") != "label_ratio" or data.empty:
        return None
    rows = data[(data["method"] == "supervised") & (data["x"].astype(float) >= 1.0)]
    return None if rows.empty else rows.iloc[0]


def class_iou_data(df: pd.DataFrame, mode: str | None = None) -> pd.DataFrame:
    """Mean per-class IoU per (method, label amount) over the best trial of each seed.

    Rows are `method @ amount` labels, columns the class names; a class a group never
    scored stays NaN.
    """
    mode = mode or df.attrs.get("mode", "max")
    columns = [c for c in df.columns if c.startswith(IOU_COLUMN_PREFIX)]
    x = amount_column(df)
    done = df[df["objective"].notna() & df[x].notna()]
    if done.empty or not columns:
        return pd.DataFrame()
    picks = [_best_index(g["objective"], mode)
             for _, g in done.groupby(["method", x, "seed"], dropna=False)]
    best = done.loc[picks]
    table = best.groupby(["method", x])[columns].mean()
    key = "data.label_ratio" if x == "label_ratio" else "data.label_count"
    table.index = [f"{m} {axis_text(key, a)}" for m, a in table.index]
    table.columns = [c[len(IOU_COLUMN_PREFIX):] for c in columns]
    return table
