"""Reading a sweep back out of MLflow: the per-trial table and the label-efficiency plot.

The table is built only from what the trackers wrote (tags, params, metric
histories), so it works the same for a finished sweep, one still running, and one
on a remote tracking server — there is no second bookkeeping to fall out of sync.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run

from orchestration.storage import redact_text
from orchestration.tracking import (
    TAG_CHECKPOINT,
    TAG_GRID_KEYS,
    TAG_LABEL_COUNT,
    TAG_LABEL_RATIO,
    TAG_METHOD,
    TAG_METRIC,
    TAG_MODE,
    TAG_ROLE,
    TAG_SEARCH_KEYS,
    TAG_SEED,
    TAG_SPLIT_SEED,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    ROLE_SWEEP,
    child_runs,
    find_runs_by_tags,
    resolve_tracking_uri,
    sanitize_metric_key,
    search_all_runs,
)

MIOU = "val/mIoU"
# Axes that already have their own columns; other grid keys become param columns.
_OWN_COLUMNS = {"data.label_ratio", "data.label_count", "method.name", "runtime.seed",
                "data.split_seed"}
BASE_COLUMNS = ["trial_id", "method", "label_ratio", "label_count", "seed", "split_seed"]
RESULT_COLUMNS = ["miou_best", "miou_final", "objective", "evals", "last_step", "status",
                  "run_name", "run_id", "checkpoint"]


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
        return yaml.safe_load(text)
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
    """One row per child run of `parent`: grid axes, searched params, mIoU, status."""
    metric = parent.data.tags.get(TAG_METRIC, MIOU)
    mode = parent.data.tags.get(TAG_MODE, "max")
    params = param_columns(parent)
    rows = []
    for run in child_runs(client, parent):
        tags, run_id = run.data.tags, run.info.run_id
        miou_points = _history(client, run_id, MIOU)
        miou = [v for _, v in miou_points]
        objective = miou if metric == MIOU else [v for _, v in _history(client, run_id, metric)]
        row: dict[str, Any] = {
            "trial_id": tags.get(TAG_TRIAL_ID, run_id),
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
            "evals": len(miou),
            "last_step": miou_points[-1][0] if miou_points else math.nan,
            "status": run.info.status,
            "run_name": run.info.run_name,
            "run_id": run_id,
            "checkpoint": tags.get(TAG_CHECKPOINT, ""),
        })
        rows.append(row)
    df = pd.DataFrame(rows, columns=BASE_COLUMNS + params + RESULT_COLUMNS)
    df.attrs.update(metric=metric, mode=mode, params=params)
    if df.empty:
        return df
    return df.sort_values(["method", "label_ratio", "label_count", "seed", "trial_id"],
                          na_position="last", kind="stable").reset_index(drop=True)


def summarize(tracking_uri: str, experiment: str, sweep_name: str) -> pd.DataFrame:
    """One row per trial of the newest sweep named `sweep_name` (SweepNotFound if none)."""
    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    return summarize_run(client, find_sweep_run(client, experiment, sweep_name))


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
    if not math.isnan(row["label_ratio"]):
        stem += f"_ratio{row['label_ratio']:g}"
    elif not math.isnan(row["label_count"]):
        stem += f"_count{int(row['label_count'])}"
    return sanitize_metric_key(stem).replace(" ", "_")


def label_efficiency_data(df: pd.DataFrame, mode: str | None = None) -> pd.DataFrame:
    """The points of the label-efficiency plot: one row per (method, label amount).

    Within each (method, amount, seed) the Optuna samples compete and only the best
    (by the sweep's objective) counts; the seeds then give the mean and the spread
    (sample std, 0 for one seed). `attrs["x"]` names the x axis column.
    """
    mode = mode or df.attrs.get("mode", "max")
    x = "label_ratio" if df["label_ratio"].notna().any() else "label_count"
    cols = ["method", "x", "mean", "std", "n"]
    done = df[df["objective"].notna() & df[x].notna() & df["miou_best"].notna()]
    if done.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs["x"] = x
        return out
    picks = [_best_index(g["objective"], mode)
             for _, g in done.groupby(["method", x, "seed"], dropna=False)]
    best = done.loc[picks]
    stats = best.groupby(["method", x])["miou_best"].agg(["mean", "std", "count"]).reset_index()
    stats = stats.rename(columns={x: "x", "count": "n"})
    stats["std"] = stats["std"].fillna(0.0)
    out = stats[cols].sort_values(["method", "x"]).reset_index(drop=True)
    out.attrs["x"] = x
    return out


def label_efficiency_figure(df: pd.DataFrame):  # -> matplotlib.figure.Figure
    """mIoU vs label amount, one line (mean, +-std band) per method."""
    from matplotlib.figure import Figure

    data = label_efficiency_data(df)
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.subplots()
    if data.empty:
        ax.text(0.5, 0.5, "no evaluated trials yet", ha="center", va="center",
                transform=ax.transAxes)
    for method, group in data.groupby("method", sort=True):
        xs, mean, std = group["x"].to_numpy(float), group["mean"].to_numpy(float), \
            group["std"].to_numpy(float)
        ax.plot(xs, mean, marker="o", label=str(method))
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    if data["x"].nunique() > 1 and (data["x"] > 0).all():
        ax.set_xscale("log")
        ax.minorticks_off()  # only the sweep's own ratios as ticks
        ax.set_xticks(sorted(data["x"].unique()))
        ax.set_xticklabels([f"{v:g}" for v in sorted(data["x"].unique())])
    ax.set_xlabel("label ratio" if data.attrs["x"] == "label_ratio" else "labeled images")
    ax.set_ylabel("val mIoU (best trial per seed; mean ± std over seeds)")
    ax.set_title("Label efficiency")
    ax.grid(True, alpha=0.3)
    if not data.empty:
        ax.legend(title="method")
    fig.tight_layout()
    return fig


def label_efficiency_plot(df: pd.DataFrame, path: str | Path) -> None:
    """Write the label-efficiency plot as a PNG (an empty sweep gives a labelled blank)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label_efficiency_figure(df).savefig(path, format="png")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub table (pandas' to_markdown needs `tabulate`, not worth a dependency)."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_summary_files(df: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """summary.csv / .md / .html and label_efficiency.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "summary.csv", "md": out / "summary.md",
             "html": out / "summary.html", "png": out / "label_efficiency.png"}
    df.to_csv(files["csv"], index=False)
    files["md"].write_text(to_markdown(df))
    df.to_html(files["html"], index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    label_efficiency_plot(df, files["png"])
    return files
