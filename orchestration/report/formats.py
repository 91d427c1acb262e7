"""The sweep summary as text: terminal tables that fit 80 columns, CSV, Markdown, JSON.

At 80 columns rich cut the searched value (`lr=0.01…`), so two trials of one grid
point read the same. Here nothing is ever cut: columns fold instead of ellipsising,
searched values get as many digits as it takes to tell them apart
(`naming.distinct_digits`), and columns that carry nothing (a `final` identical to
`best` everywhere, an empty `label_count`) are left out.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from orchestration.display_names import axis_text, distinct_digits, short_key, value_text
from orchestration.report.table import INTERNAL_COLUMNS, IOU_COLUMN_PREFIX, label_efficiency_data
from orchestration.report.verdicts import evidence_lines, sweep_evidence
from rrn_core.evaluate import COLLAPSE_SHARE

FORMATS = ("table", "csv", "markdown", "json")


def collapse_note() -> str:
    """What a collapse flag means; the threshold is rrn_core's (read, not re-derived)."""
    return (f"collapsed: the last evaluation predicted one class on at least "
            f"{COLLAPSE_SHARE:.0%} of the pixels (val/dominant_share); its mIoU is the "
            "one-class score, not a result")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def amount_key(x: str) -> str:
    return "data.label_ratio" if x == "label_ratio" else "data.label_count"


def amount_text(x: str, value: Any) -> str:
    """`1/8` for a ratio, `92` for a count, `-` when missing."""
    if pd.isna(value):
        return "-"
    return axis_text(amount_key(x), float(value) if x == "label_ratio" else int(value)) \
        .split("=", 1)[1]


# --------------------------------------------------------------------------- display frames


BEST_MARK = "best*"
BEST_NOTE = ("best*: a trial's best evaluation, picked on the validation set it is measured on "
             "(optimistic); every comparison uses `final`")
GROUP_TITLE = ("by method and label amount: final mIoU, mean ± 95 % t half-width over seeds; "
               "impr.: trials still improving at the end; TFLOP per trial")


def _tflop(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.3g}"


def group_display(df: pd.DataFrame) -> pd.DataFrame:
    """The method x label-amount table as strings: mean ± 95 % half-width, n, still
    improving, compute per trial, best trial."""
    data = label_efficiency_data(df)
    x = data.attrs["x"]
    rows = []
    for _, r in data.iterrows():
        amount = amount_text(x, r["x"])
        spread = f" ± {r['ci']:.3f}" if r["n"] > 1 else " (1 seed)"
        flag = f" ({r['collapsed']}/{r['trials']} collapsed)" if r["collapsed"] else ""
        if r["selected"] > 1:
            flag += f" (picked of {r['selected']} on val)"
        # the row already says method and amount: the best trial's name without them
        said = {str(r["method"]), axis_text(amount_key(x), r["x"])}
        rest = " ".join(t for t in str(r["best_run_name"]).split() if t not in said)
        rows.append({"method": r["method"], "ratio" if x == "label_ratio" else "labeled": amount,
                     "mIoU": f"{r['mean']:.3f}{spread}", "n": str(r["n"]),
                     "impr.": "IMPROVING " + f"{r['improving']}/{r['n']}" if r["improving"] else "0",
                     "TFLOP": _tflop(r["tflop"]),
                     "best trial": f"{rest} ({r['best']:.3f}){flag}".strip()})
    return pd.DataFrame(rows)


_STATUS = {"FINISHED": "done", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running",
           "SCHEDULED": "waiting"}


def _status(row: pd.Series) -> str:
    """`done`, `failed`, ... or `COLLAPSED` (the run finished, but predicts one class)."""
    status = _STATUS.get(str(row["status"]), str(row["status"]).lower())
    if not bool(row["collapsed"]):
        return status
    return "COLLAPSED" if status == "done" else f"{status}, COLLAPSED"


def id_prefix(ids: list[str]) -> str:
    """The prefix all trial ids share up to an `_` (Tune's `ab12c_00003`: `ab12c_`), so
    a narrow table can show only the part that differs."""
    if len(ids) < 2:
        return ""
    common = ids[0]
    for other in ids[1:]:
        while not other.startswith(common):
            common = common[:-1]
    cut = common.rfind("_")
    return common[:cut + 1] if cut >= 0 else ""


def trial_display(df: pd.DataFrame, wide: bool = False) -> pd.DataFrame:
    """One row of strings per trial, only the columns that tell trials apart.

    Narrow (a terminal): `attrs["id_prefix"]` is the common trial-id prefix left out
    of the `trial` column. Wide (pages, Markdown): whole ids and the MLflow run name.
    """
    params: list[str] = df.attrs.get("params", [])
    x = "label_ratio" if df["label_ratio"].notna().any() or not df["label_count"].notna().any() \
        else "label_count"
    digits = {k: distinct_digits(df[k].dropna()) for k in params if k in df}
    show_final = bool(((df["miou_best"] - df["miou_final"]).abs() > 1e-12).any())
    ids = [str(t) for t in df["trial_id"]]
    prefix = "" if wide else id_prefix(ids)
    rows = []
    for trial, (_, row) in zip(ids, df.iterrows()):
        out = {"trial": trial[len(prefix):]}
        if wide:
            out["run"] = str(row["run_name"])
        out.update({"method": str(row["method"]),
               "ratio" if x == "label_ratio" else "labeled": amount_text(x, row[x]),
               "seed": _num(row["seed"])})
        for key in params:
            value = row.get(key)
            out[short_key(key)] = "-" if value is None or (isinstance(value, float) and
                                                          math.isnan(value)) \
                else value_text(value, digits.get(key, 3))
        out[BEST_MARK if show_final else "mIoU"] = _num(row["miou_best"])
        if show_final:
            out["final"] = _num(row["miou_final"])
        out["evals"] = _num(row["evals"])
        out["status"] = _status(row) + (", IMPROVING" if row.get("still_improving") is True else "") \
            + (", SWINGING" if row.get("swinging") is True else "")
        rows.append(out)
    frame = pd.DataFrame(rows)
    frame.attrs["id_prefix"] = prefix
    return frame


# --------------------------------------------------------------------------- terminal


def rich_table(frame: pd.DataFrame, title: str) -> Any:
    """A rich table whose values are never cut: each column is at least as wide as its
    widest value (headers may wrap), and anything longer folds instead of `…`."""
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1), collapse_padding=True)
    for column in frame.columns:
        cells = [str(v) for v in frame[column]]
        numeric = all(c.replace(".", "", 1).replace("-", "", 1).isdigit() or c == "-"
                      for c in cells)
        widest = max((len(c) for c in cells), default=1)
        table.add_column(escape(str(column)), justify="right" if numeric else "left", overflow="fold",
                         min_width=min(widest, 24))
    for row in frame.itertuples(index=False):
        style = "red" if any("COLLAPSED" in str(v) or "collapsed)" in str(v) for v in row) else \
            "yellow" if any("IMPROVING" in str(v) or "SWINGING" in str(v) for v in row) else None
        table.add_row(*(escape(str(v)) for v in row), style=style)
    return table


def print_report(console: Any, df: pd.DataFrame, title: str) -> None:
    """`rrn report --format table`: the method x labels summary, then every trial."""
    console.print(escape(title), soft_wrap=True)
    if df.empty:
        console.print("no trials logged yet")
        return
    groups = group_display(df)
    if not groups.empty:
        console.print(rich_table(groups, GROUP_TITLE))
    trials = trial_display(df)
    prefix = trials.attrs.get("id_prefix")
    console.print(rich_table(trials, "trials" + (f" (ids {prefix}...)" if prefix else "")))
    if BEST_MARK in trials.columns:
        console.print(BEST_NOTE, highlight=False)
    if df["collapsed"].any():
        console.print(f"[red]{int(df['collapsed'].sum())} trial(s) {escape(collapse_note())}[/]")
    evidence = sweep_evidence(df)
    style = "bold red" if evidence.convergence["budget_too_small"] else "bold"
    console.print(f"[{style}]{escape(evidence.convergence['line'])}[/]")
    for line in evidence.lines()[1:]:
        console.print(escape(line), highlight=False)


# --------------------------------------------------------------------------- files


def export_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The summary frame for files: without an all-empty label amount column."""
    drop = [c for c in ("label_ratio", "label_count") if c in df and df[c].isna().all()
            and len(df)] + [c for c in INTERNAL_COLUMNS if c in df]
    return df.drop(columns=drop)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub table (pandas' to_markdown needs `tabulate`, not worth a dependency)."""
    def cell(value: Any) -> str:
        if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_csv(df: pd.DataFrame) -> str:
    buffer = io.StringIO()
    export_frame(df).to_csv(buffer, index=False)
    return buffer.getvalue()


def report_markdown(df: pd.DataFrame, title: str) -> str:
    """The summary as Markdown: method x labels table, trial table, collapse note."""
    parts = [f"# {title}\n"]
    if df.empty:
        return parts[0] + "\nno trials logged yet\n"
    groups = group_display(df)
    if not groups.empty:
        parts += [f"## {GROUP_TITLE[0].upper()}{GROUP_TITLE[1:]}\n", to_markdown(groups)]
    parts += ["## Verdicts\n", "\n".join(f"- {line}" for line in evidence_lines(df)) + "\n"]
    trials = trial_display(df, wide=True)
    parts += ["## Trials\n", to_markdown(trials)]
    if BEST_MARK in trials.columns:
        parts.append(f"{BEST_NOTE}\n")
    if df["collapsed"].any():
        parts.append(f"**{int(df['collapsed'].sum())} trial(s) {collapse_note()}.**\n")
    return "\n".join(parts)


def to_json(df: pd.DataFrame) -> str:
    """Groups and trials as JSON (NaN and missing values as null)."""
    data = label_efficiency_data(df)
    trials = json.loads(export_frame(df).to_json(orient="records"))
    groups = json.loads(data.to_json(orient="records")) if not data.empty else []
    doc = {"sweep": df.attrs.get("sweep"), "parent_run_id": df.attrs.get("parent_run_id"),
           "metric": df.attrs.get("metric"), "mode": df.attrs.get("mode"),
           "amount": data.attrs.get("x"), "groups": groups,
           "evidence": sweep_evidence(df).as_dict() if not df.empty else None, "trials": trials,
           "classes": [c[len(IOU_COLUMN_PREFIX):] for c in df.attrs.get("classes", [])]}
    return json.dumps(doc, indent=2) + "\n"


def render(df: pd.DataFrame, fmt: str, title: str) -> str:
    """csv | markdown | json as text (the table format prints through rich instead)."""
    if fmt == "csv":
        return to_csv(df)
    if fmt == "markdown":
        return report_markdown(df, title)
    if fmt == "json":
        return to_json(df)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
