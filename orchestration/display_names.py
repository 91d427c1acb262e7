"""Names a person reads: run names, short keys and values that stay distinguishable.

Run names were `label_ratio=0.5,name=rrn,seed=0-<trial id>`: cut in the UI's table
and chart legends, the method called `name` and the searched value missing, so two
trials of one grid point looked alike. A run name now reads method first, then what
varies: `rrn r=1/8 s=0 lr=0.0106`. The same helpers format the console lines and
the `rrn report` table, so a trial is called the same everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from orchestration.names import METHOD_NAME_KEY
from rrn_core.method_names import METHOD_NAMES

#: Short names of the grid axes every sweep has; other keys use their last segment.
SHORT_KEYS = {
    "data.label_ratio": "r",
    "data.label_count": "n",
    "runtime.seed": "s",
    "data.split_seed": "split",
}
#: Significant digits of a sampled float in names (enough to tell Optuna draws apart).
NAME_DIGITS = 3


#: One colour per method, in the UI (the `mlflow.runColor` tag) and in our plots alike,
#: so a method reads the same everywhere: MLflow's own run palette, taken in the
#: methods table's order (supervised grey, cps blue, fixmatch green, rrn red, ...).
PALETTE = ("#5f7281", "#2272b4", "#3ba65e", "#c82d4c", "#de7921", "#8a63bf", "#04867d",
           "#b45091", "#93320b", "#434a93")
SWEEP_COLOR = "#1f272d"


def method_color(method: str) -> str:
    """The method's colour: its position in the methods table picks it from the palette
    (a name the table no longer has, e.g. an old run's, gets a stable one by its letters)."""
    if method in METHOD_NAMES:
        return PALETTE[METHOD_NAMES.index(method) % len(PALETTE)]
    return PALETTE[sum(map(ord, method)) % len(PALETTE)]


def short_key(key: str) -> str:
    """`data.label_ratio` -> `r`, `optim.lr` -> `lr`, `method.discriminator.lr` -> `lr`."""
    return SHORT_KEYS.get(key, key.rsplit(".", 1)[-1])


def ratio_text(ratio: float) -> str:
    """0.125 -> `1/8`, 0.5 -> `1/2`, 1.0 -> `1`, 0.3 -> `0.3`: how papers write splits."""
    if ratio >= 1.0:
        return "1"
    inverse = 1.0 / ratio
    if abs(inverse - round(inverse)) < 1e-6:
        return f"1/{round(inverse)}"
    frac = Fraction(ratio).limit_denominator(64)
    if abs(float(frac) - ratio) < 1e-9:
        return f"{frac.numerator}/{frac.denominator}"
    return f"{ratio:g}"


def value_text(value: Any, digits: int = NAME_DIGITS) -> str:
    """A value as short text; floats with `digits` significant digits."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def distinct_digits(values: Iterable[Any], minimum: int = NAME_DIGITS, maximum: int = 10) -> int:
    """The fewest significant digits (>= minimum) at which distinct floats print distinctly.

    `rrn report` must never show two different searched values as the same text.
    """
    floats = {float(v) for v in values
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    for digits in range(minimum, maximum + 1):
        if len({f"{v:.{digits}g}" for v in floats}) == len(floats):
            return digits
    return maximum


def axis_text(key: str, value: Any, digits: int = NAME_DIGITS) -> str:
    """One `key=value` of a name (`r=1/8`, `s=0`, `lr=0.0106`)."""
    if key == "data.label_ratio" and isinstance(value, (int, float)) and value > 0:
        return f"r={ratio_text(float(value))}"
    return f"{short_key(key)}={value_text(value, digits)}"


def run_name(method: str, grid: Mapping[str, Any], sampled: Mapping[str, Any]) -> str:
    """`rrn r=1/8 s=0 lr=0.0106`: method, then the grid point, then the sampled values."""
    parts = [str(grid.get(METHOD_NAME_KEY, method))]
    parts += [axis_text(k, v) for k, v in grid.items() if k != METHOD_NAME_KEY]
    parts += [axis_text(k, v) for k, v in sampled.items()]
    return " ".join(parts)


def config_run_name(cfg: Any) -> str:
    """The name of a single run outside a sweep, from its config (method, labels, seed)."""
    grid: dict[str, Any] = {}
    if cfg.data.label_ratio is not None:
        grid["data.label_ratio"] = cfg.data.label_ratio
    elif cfg.data.label_count is not None:
        grid["data.label_count"] = cfg.data.label_count
    grid["runtime.seed"] = cfg.runtime.seed
    return run_name(cfg.method.name, grid, {})


_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. ]+")


def sanitize_metric_key(name: str) -> str:
    """A string MLflow accepts as (a segment of) a metric key.

    MLflow allows letters, digits, `_ - . space /`; class names like "traffic light"
    pass, "person/rider" or "gt:void" would break the call (or nest a path), and "."
    or ".." are rejected as paths, so those become `_`.
    """
    clean = _METRIC_KEY_BAD.sub("_", name.replace("/", "_")).strip()
    if clean in ("", ".", ".."):
        clean = "_"
    return clean
