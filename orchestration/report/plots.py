"""The sweep's figures: label efficiency (mIoU vs labels) and per-class IoU by method.

Both read only the summary frame of `report.summarize_run`, so `rrn report` and the
parent run's summary draw the same pictures. Each figure says what it averages and
over how many seeds (n per point): a one-seed sweep must not look like a mean ± std.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from orchestration.display_names import method_color, ratio_text
from orchestration.report.table import ceiling, class_iou_data, label_efficiency_data
from orchestration.report.verdicts import method_order, per_seed_values


#: How far apart (as a factor on the log axis) methods are drawn at one label amount.
DODGE = 1.04


def _tick(value: float, x: str) -> str:
    return ratio_text(value) if x == "label_ratio" else f"{int(value)}"


def label_efficiency_figure(df: pd.DataFrame, title: str | None = None) -> Any:
    """mIoU vs label amount, one line per method: the mean of the final evaluation over
    seeds with its 95 % t interval as error bars, every seed as a dot, n at each point,
    points with a trial still improving at the end drawn hollow and marked, and the
    supervised-with-all-labels line when the sweep has it."""
    data = label_efficiency_data(df)
    x = data.attrs["x"]
    sweep = df.attrs.get("sweep")
    seeds = per_seed_values(df) if not df.empty else {}
    fig = Figure(figsize=(7.2, 4.8), dpi=120)
    ax = fig.subplots()
    if data.empty:
        ax.text(0.5, 0.5, "no evaluated trials yet", ha="center", va="center",
                transform=ax.transAxes)
    top = ceiling(data)
    order = method_order(sorted(data["method"].astype(str).unique())) if not data.empty else []
    for index, method in enumerate(order):
        group = data[data["method"] == method].sort_values("x")
        amounts = group["x"].to_numpy(float)
        # methods side by side at one amount (a few % apart on the log axis), not on top of each other
        xs = amounts * DODGE ** (index - (len(order) - 1) / 2)
        mean = group["mean"].to_numpy(float)
        ci = np.nan_to_num(group["ci"].to_numpy(float), nan=0.0)
        color = method_color(method.split(" on ", 1)[0])
        (line,) = ax.plot(xs, mean, label=str(method), color=color)
        ax.errorbar(xs, mean, yerr=ci, fmt="none", ecolor=color, capsize=4, linewidth=1.2)
        for xv, amount, yv, n, bad, improving in zip(xs, amounts, mean, group["n"], group["collapsed"],
                                                     group["improving"]):
            hollow = bool(improving)
            ax.plot([xv], [yv], marker="o", markersize=7, color=color,
                    markerfacecolor="white" if hollow else color)
            dots = list(seeds.get((method, float(amount)), {}).values())
            ax.scatter([xv] * len(dots), dots, s=12, color=color, alpha=0.55, zorder=3)
            note = f"n={n}" + (" collapsed" if bad else "") + (" still improving" if improving else "")
            ax.annotate(note, (xv, yv), textcoords="offset points", xytext=(5, 5), fontsize=7,
                        color="red" if bad or improving else color)
    if top is not None:
        ax.axhline(float(top["mean"]), linestyle="--", color="0.35",
                   label=f"supervised, all labels (n={int(top['n'])})")
    values = sorted(float(v) for v in data["x"].unique()) if not data.empty else []
    if len(values) > 1 and all(v > 0 for v in values):
        ax.set_xscale("log")
        ax.minorticks_off()  # only the sweep's own amounts as ticks
        ax.set_xticks(values)
        ax.set_xticklabels([_tick(v, x) for v in values])
    ax.set_xlabel("fraction of training images labeled" if x == "label_ratio"
                  else "labeled images")
    many = not data.empty and bool((data["n"] > 1).any())
    clipped = _clip_to_metric_range(ax, data)
    ax.set_ylabel("val mIoU, final evaluation\n" + ("(mean, 95 % t interval over seeds; dots: seeds)"
                                                    if many else "(one seed per point: no interval)")
                  + ("\nintervals cut at 0 and 1, the range of mIoU" if clipped else ""))
    ax.set_title("Label efficiency" + (f" — sweep {sweep}" if sweep else ""))
    ax.grid(True, alpha=0.3)
    if not data.empty:
        ax.legend(title="method", fontsize=8)
    fig.tight_layout()
    return fig


def _clip_to_metric_range(ax: Any, data: pd.DataFrame) -> bool:
    """Keep the y axis within [0, 1], mIoU's range: a 2-seed t interval (t = 12.7) can
    reach below 0 or above 1, and an axis drawn to -0.4 reads as if the metric could.
    Returns whether an interval was cut (the label then says so)."""
    if data.empty:
        return False
    ci = np.nan_to_num(data["ci"].to_numpy(float), nan=0.0)
    mean = data["mean"].to_numpy(float)
    low, high = float(np.min(mean - ci)), float(np.max(mean + ci))
    if low >= 0.0 and high <= 1.0:
        return False
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(0.0, bottom), min(1.0, top))
    return True


def _save_png(fig: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def label_efficiency_plot(df: pd.DataFrame, path: str | Path) -> None:
    """Write the label-efficiency plot as a PNG (an empty sweep gives a labelled blank)."""
    _save_png(label_efficiency_figure(df), path)


def class_iou_figure(df: pd.DataFrame) -> Any:
    """Heat map of per-class IoU: rows `method r=1/8`, columns classes, values printed."""
    table = class_iou_data(df)
    sweep = df.attrs.get("sweep")
    rows, cols = table.shape if not table.empty else (1, 1)
    fig = Figure(figsize=(max(5.0, 0.75 * cols + 3.0), max(2.6, 0.45 * rows + 1.8)), dpi=120)
    ax = fig.subplots()
    if table.empty:
        ax.text(0.5, 0.5, "no per-class IoU logged yet", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    values = np.ma.masked_invalid(table.to_numpy(float))
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    im = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="IoU")
    ax.set_xticks(range(cols), labels=list(table.columns), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rows), labels=list(table.index), fontsize=8)
    if cols <= 25:
        for i in range(rows):
            for j in range(cols):
                v = table.iat[i, j]
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if v > 0.6 else "white")
    ax.set_title("Per-class IoU (best trial per seed, mean over seeds)"
                 + (f" — sweep {sweep}" if sweep else ""), fontsize=10)
    fig.tight_layout()
    return fig


def class_iou_plot(df: pd.DataFrame, path: str | Path) -> None:
    """Write the per-class IoU heat map as a PNG."""
    _save_png(class_iou_figure(df), path)
