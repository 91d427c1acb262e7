"""The parent run's summary files, made to be read in MLflow's artifact viewer.

The viewer shows `summary.html` in a sandboxed frame without the run's other files,
so the page is self-contained: its own CSS and the two figures embedded as data
URIs. It leads with what a researcher asks first (method x label amount, mean ± std
over seeds, n, best trial), then the figures, then every trial, collapsed ones in red.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from orchestration.names import METRIC_MIOU
from orchestration.report.verdicts import sweep_evidence
from orchestration.report.formats import collapse_note, group_display, report_markdown, to_csv, trial_display
from orchestration.report.plots import class_iou_plot, label_efficiency_plot

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1.2em; color: #1f2328; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
p.meta { color: #59636e; margin-top: 0; }
table { border-collapse: collapse; font-size: .9em; margin: .4em 0; }
th, td { border: 1px solid #d1d9e0; padding: .3em .6em; text-align: left; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #fbfcfd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.collapsed td { background: #ffebe9; color: #82071e; }
img { max-width: 100%; border: 1px solid #d1d9e0; margin: .4em 0; }
p.warn { color: #82071e; font-weight: 600; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        bad = any("COLLAPSED" in str(v) or "collapsed)" in str(v) for v in row)
        cells = []
        for value in row:
            text = str(value)
            numeric = text.replace(".", "", 1).replace("-", "", 1).replace(" ± ", "").isdigit()
            cells.append(f"<td class=\"num\">{html.escape(text)}</td>" if numeric
                         else f"<td>{html.escape(text)}</td>")
        attr = ' class="collapsed"' if bad else ""
        rows.append(f"<tr{attr}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def summary_html(df: pd.DataFrame, figures: dict[str, Path]) -> str:
    """The whole page as one HTML string."""
    sweep = df.attrs.get("sweep") or "sweep"
    metric, mode = df.attrs.get("metric", METRIC_MIOU), df.attrs.get("mode", "max")
    parts = [f"<h1>Sweep {html.escape(str(sweep))}</h1>",
             f"<p class=\"meta\">{len(df)} trial(s); objective {html.escape(metric)} ({mode}); "
             "mIoU is the final evaluation of each trial (the best trial per seed counts), "
             "mean ± 95 % t half-width over seeds.</p>"]
    if df.empty:
        parts.append("<p>No trials logged yet.</p>")
    else:
        if df["collapsed"].any():
            parts.append(f"<p class=\"warn\">{int(df['collapsed'].sum())} trial(s) "
                         f"{html.escape(collapse_note())}.</p>")
        groups = group_display(df)
        if not groups.empty:
            parts += ["<h2>By method and label amount</h2>", _html_table(groups)]
        evidence = sweep_evidence(df)
        warn = ' class="warn"' if evidence.convergence["budget_too_small"] else ""
        items = "".join(f"<li>{html.escape(line)}</li>" for line in evidence.lines()[1:])
        parts += ["<h2>Verdicts</h2>", f"<p{warn}>{html.escape(evidence.convergence['line'])}</p>",
                  f"<ul>{items}</ul>"]
    for title, key in (("Label efficiency", "png"), ("Per-class IoU", "class_iou")):
        if key in figures and figures[key].is_file():
            parts += [f"<h2>{title}</h2>",
                      f"<img alt=\"{title}\" src=\"{_data_uri(figures[key])}\">"]
    if not df.empty:
        parts += ["<h2>Trials</h2>", _html_table(trial_display(df, wide=True))]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sweep "
            f"{html.escape(str(sweep))}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            "</body></html>\n")


def write_summary_files(df: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """summary.csv / .md / .html, label_efficiency.png and class_iou.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "summary.csv", "md": out / "summary.md", "html": out / "summary.html",
             "png": out / "label_efficiency.png", "class_iou": out / "class_iou.png"}
    files["csv"].write_text(to_csv(df))
    sweep = df.attrs.get("sweep") or "sweep"
    files["md"].write_text(report_markdown(df, f"Sweep {sweep}"))
    label_efficiency_plot(df, files["png"])
    class_iou_plot(df, files["class_iou"])
    files["html"].write_text(summary_html(df, files))
    return files
