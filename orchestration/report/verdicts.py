"""The sweep's verdicts: is the budget long enough, which method is ahead at each label
amount (paired by seed, with a 95 % interval), and what a semi-supervised result is
worth in labels.

This is the glue between the summary frame (report/table.py) and the pure statistics
(report/evidence.py, rrn_core/convergence.py); `rrn report` in every format, the
parent MLflow run, the summary page and the end of `rrn sweep` all print what
`sweep_evidence` returns, so they can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from orchestration.report.evidence import (Comparison, LabelEquivalent, compare_all, label_equivalent,
                                           one_line)
from orchestration.names import HEALTH_METRICS, LOSS_SHARE_PREFIX
from orchestration.report.evidence import amount_text
from orchestration.report.table import COMPARED, amount_column
from rrn_core.method_names import METHOD_NAMES

SUPERVISED = "supervised"
#: The share of still-improving trials above which a sweep's budget is called too small.
TOO_SMALL_SHARE = 0.5
METRIC_NOTE = ("compared: each trial's final evaluation of val/mIoU (not its best one, which is "
               "picked on the same validation set it would be reported on)")


@dataclass
class SweepEvidence:
    """Everything a report states beside its tables, as data and as lines."""

    metric: str
    convergence: dict[str, Any]
    comparisons: list[Comparison] = field(default_factory=list)
    equivalents: list[tuple[str, Hashable, LabelEquivalent]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [self.convergence["line"]]
        out += [one_line(c) for c in self.comparisons]
        out += [eq.text for _, _, eq in self.equivalents]
        return out + self.notes

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "convergence": self.convergence,
                "comparisons": [c.as_dict() | {"line": one_line(c)} for c in self.comparisons],
                "label_equivalents": [{"method": m, "amount": a, **eq.as_dict()}
                                      for m, a, eq in self.equivalents],
                "notes": self.notes}


def _base_method(label: str) -> str:
    """`cps on resnet101c` -> `cps` (report/backbones labels methods per backbone)."""
    return label.split(" on ", 1)[0]


def method_order(labels: list[str]) -> list[str]:
    """Methods in the methods table's order (supervised first), backbone arms side by side."""
    table = list(METHOD_NAMES)
    return sorted(labels, key=lambda m: (table.index(_base_method(m)) if _base_method(m) in table
                                         else len(table), m))


def per_seed_values(df: pd.DataFrame) -> dict[tuple[str, Hashable], dict[tuple[int, int], float]]:
    """{(method, amount): {(split seed, seed): compared metric}}: the best Optuna sample of
    each seed (as the group table picks it), keyed for pairing."""
    mode = df.attrs.get("mode", "max")
    x = amount_column(df)
    done = df[df["objective"].notna() & df[x].notna() & df[COMPARED].notna()]
    out: dict[tuple[str, Hashable], dict[tuple[int, int], float]] = {}
    for (method, amount, seed), group in done.groupby(["method", x, "seed"], dropna=False):
        pick = group["objective"].idxmax() if mode == "max" else group["objective"].idxmin()
        row = group.loc[pick]
        split_seed = row.get("split_seed", math.nan)
        split = -1 if pd.isna(split_seed) else int(split_seed)
        out.setdefault((str(method), float(amount)), {})[(split, -1 if pd.isna(seed) else int(seed))] = \
            float(row[COMPARED])
    return out


def convergence_summary(df: pd.DataFrame) -> dict[str, Any]:
    """How many trials were still improving at the end, and the one line that says so."""
    flags = df["still_improving"] if "still_improving" in df else pd.Series(pd.NA, index=df.index, dtype="boolean")
    judged = df[flags.notna()]
    improving = int(flags.fillna(False).astype(bool).sum())
    swinging = int(df["swinging"].fillna(False).astype(bool).sum()) if "swinging" in df else 0
    total, unknown = len(df), int(flags.isna().sum())
    too_small = bool(len(judged)) and improving > TOO_SMALL_SHARE * len(judged)
    if too_small:
        line = (f"BUDGET TOO SMALL: {improving} of {len(judged)} trials were still improving at the end; "
                "this sweep cannot compare methods (train longer: optim.iters or optim.epochs)")
    elif improving:
        line = f"{improving} of {len(judged)} trials were still improving at the end (marked)"
    else:
        line = f"converged: none of {len(judged)} judged trials was still improving at the end"
    if unknown:
        line += f"; {unknown} trial(s) without a convergence verdict (too few evaluations or stopped early)"
    if swinging:
        line += f"; {swinging} trial(s) whose late evaluations swing far more than their siblings'"
    return {"still_improving": improving, "judged": len(judged), "trials": total, "unknown": unknown,
            "swinging": swinging, "budget_too_small": too_small, "line": line}


def _images_per_amount(df: pd.DataFrame, x: str) -> dict[float, int] | None:
    if "labeled_images" not in df:
        return None
    sup = df[(df["method"].map(_base_method) == SUPERVISED) & df["labeled_images"].notna()]
    if sup.empty:
        return None
    counts = sup.groupby(x)["labeled_images"].median()
    return {float(a): int(c) for a, c in counts.items()}


def sweep_evidence(df: pd.DataFrame, detect: float = 0.01) -> SweepEvidence:
    """Convergence, every paired comparison and the label-equivalent readings of a sweep."""
    values = per_seed_values(df)
    order = method_order(sorted({m for m, _ in values}))
    comparisons = compare_all(values, order, detect=detect)
    x = amount_column(df)
    equivalents = []
    for method in order:
        base = _base_method(method)
        arm = method[len(base):]
        curve = {a: v for (m, a), v in values.items() if m == SUPERVISED + arm}
        if base == SUPERVISED or len(curve) < 2:
            continue
        for (m, amount), seeds in sorted(values.items(), key=lambda kv: kv[0][1]):
            if m != method:
                continue
            by_seed = {k[1]: v for k, v in seeds.items()}
            sup_by_seed = {a: {k[1]: v for k, v in s.items()} for a, s in curve.items()}
            eq = label_equivalent(sup_by_seed, by_seed, images=_images_per_amount(df, x),
                                  method_name=method, method_amount=amount)
            equivalents.append((method, amount, eq))
    notes = [METRIC_NOTE] + health_lines(df)
    if not df.empty and (df.groupby(["method", x, "seed"], dropna=False).size() > 1).any():
        notes.append("hyper-parameters were picked per seed by the objective on the validation set "
                     "that is also reported: the group means are optimistic by that selection")
    if values and all(len(v) < 2 for v in values.values()):
        notes.append("every point has one seed: no verdict is possible (run at least 2 seeds, "
                     "runtime.seed on the grid)")
    return SweepEvidence(metric=COMPARED, convergence=convergence_summary(df), comparisons=comparisons,
                         equivalents=equivalents, notes=notes)


def health_lines(df: pd.DataFrame) -> list[str]:
    """Per method and label amount with health signals: what the critics keep and know,
    how often selection disagrees with CPS, and each loss term's share (trial means of
    the last logged values), so a reader sees why a method helped or not."""
    x = amount_column(df)
    shares = [c for c in df.columns if str(c).startswith(LOSS_SHARE_PREFIX)]
    present = [c for c in HEALTH_METRICS if c in df] + shares
    out = []
    for (method, amount), group in df.groupby(["method", x], sort=True):
        means = {c: group[c].mean() for c in present if group[c].notna().any()}
        if "train/regions_kept" not in means and not any(c in means for c in shares):
            continue
        parts = []
        if "train/regions_kept" in means:
            parts.append(f"critics keep {means['train/regions_kept']:.0%} of regions")
        if "train/critic_auroc" in means:
            parts.append(f"critic AUROC {means['train/critic_auroc']:.2f}")
        if "train/pseudo_acc" in means:
            parts.append(f"pseudo-labels {means['train/pseudo_acc']:.0%} right")
        if "train/select_vs_cps_disagree" in means:
            parts.append(f"selection disagrees with the CPS target on "
                         f"{means['train/select_vs_cps_disagree']:.1%} of kept pixels")
        terms = " / ".join(f"{c[len(LOSS_SHARE_PREFIX):]} {means[c]:.2f}" for c in shares if c in means)
        if terms:
            parts.append(f"loss shares {terms}")
        out.append(f"health {method} @ {amount_text(float(amount))}: " + "; ".join(parts))
    return out


def evidence_lines(df: pd.DataFrame) -> list[str]:
    """The lines every text format prints under its tables (none for an empty sweep)."""
    return [] if df.empty else sweep_evidence(df).lines()


__all__ = ["METRIC_NOTE", "SweepEvidence", "convergence_summary", "evidence_lines", "method_order",
           "per_seed_values", "sweep_evidence"]
