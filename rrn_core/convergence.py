"""Was a trial still improving when its budget ran out, and did its evaluations swing?

A comparison of methods means something only if every trial had the budget to get
where it was going: a run still climbing at the end measures the budget, not the
method. And a run whose late evaluations jump by 0.1 mIoU from one evaluation to the
next (BatchNorm statistics, small validation sets) contributes one draw of that swing
to a mean, not its accuracy. This module states both for one run, from its
evaluations alone, with rules a report can print next to the number.

Input everywhere: `evals`, one run's evaluations as (step, metric) pairs in step order,
and `total_steps`, the step at which its budget ends. Pure numpy; no tracking or
training imports, so the loop, the sweep and the report can all call it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: A gain below this over the last quarter of training (1 mIoU point) is "converged
#: enough": reports compare at one-point resolution, so a budget that leaves less than
#: a point on the table is long enough for them.
MIN_GAIN = 0.01
#: Smallest noise used as a reference. A run with three late evaluations exactly on a
#: line has zero residual noise; a zero reference would call any gain, or any sibling's
#: scatter, significant.
NOISE_FLOOR = 0.005
#: Late scatter below this (2 mIoU points) is never called a swing, however quiet the
#: siblings: a 0.006 scatter three times a 0.002 one is still below anything reported.
SWING_FLOOR = 0.02
#: The gain is measured over the training after this fraction of the budget.
LATE_FRACTION = 0.75
#: Fewer evaluations than this give no verdict: with 3 the last quarter holds one
#: interval of the curve and the noise one residual degree of freedom.
MIN_EVALS = 4
#: Evaluation noise is read from the evaluations at or after this fraction of the
#: budget, where the run is near its plateau and scatter is about a slow trend.
NOISE_FRACTION = 0.5


@dataclass(frozen=True)
class Convergence:
    """The verdict on one run; `rule` is the one line a report prints for it.

    still_improving / swinging are None when the run's evaluations cannot say
    (too few of them, an early-stopped run, no siblings to compare the noise with).
    """

    gain: float | None
    noise: float | None
    noise_ref: float
    still_improving: bool | None
    swinging: bool | None
    n_evals: int
    rule: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (plain floats, bools and None)."""
        return asdict(self)


def clean_evals(evals: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """The evaluations a verdict is drawn from, in step order.

    Non-finite metrics are dropped: a NaN evaluation measured nothing (and a run whose
    final evaluation is NaN thereby has no final evaluation, so no verdict). A step
    logged twice keeps its last value: a resumed trial re-evaluates the step it resumed
    at. Steps going backwards are an error in the caller, not something to guess about.
    """
    kept: dict[int, float] = {}
    last_step: int | None = None
    for step, metric in evals:
        step = int(step)
        if last_step is not None and step < last_step:
            raise ValueError(f"evaluations are not in step order: step {step} after {last_step}")
        last_step = step
        metric = float(metric)
        if math.isfinite(metric):
            kept[step] = metric
        else:
            kept.pop(step, None)
    return sorted(kept.items())


def _check_total(total_steps: int) -> None:
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")


def eval_noise(evals: Sequence[tuple[int, float]], total_steps: int) -> float | None:
    """Residual standard deviation (ddof=2) of a line fitted to the last half's evaluations.

    Once a run is near its plateau, late evaluations scatter around a trend; that
    scatter is the evaluation noise. Fitting a line (rather than taking the plain
    standard deviation) keeps a run that is still rising steadily from being called
    noisy. ddof=2 because the line used two degrees of freedom. None with fewer than 3
    evaluations at step >= total_steps / 2: two points always lie on a line.
    """
    _check_total(total_steps)
    late = [(s, m) for s, m in clean_evals(evals) if s >= NOISE_FRACTION * total_steps]
    if len(late) < 3:
        return None
    steps = np.array([s for s, _ in late], dtype=float)
    metrics = np.array([m for _, m in late], dtype=float)
    slope, intercept = np.polyfit(steps, metrics, 1)
    residuals = metrics - (slope * steps + intercept)
    return float(math.sqrt(float(np.sum(residuals**2)) / (len(late) - 2)))


def late_gain(evals: Sequence[tuple[int, float]], total_steps: int) -> float | None:
    """Final evaluation minus the latest one at or before LATE_FRACTION * total_steps.

    None when the last evaluation is not at total_steps (an early-stopped or unfinished
    run has no "end of its budget" to judge) or when no evaluation lies in the first
    three quarters (nothing to measure the gain from).
    """
    _check_total(total_steps)
    clean = clean_evals(evals)
    if not clean or clean[-1][0] != total_steps:
        return None
    before = [m for s, m in clean if s <= LATE_FRACTION * total_steps]
    if not before:
        return None
    return clean[-1][1] - before[-1]


def sibling_noise(noises: Iterable[float | None]) -> float | None:
    """The median of the known noises, floored at NOISE_FLOOR; None when none is known.

    The median, so that one swinging sibling does not raise the reference the others
    are judged by. Pass the noises of the *other* runs of the group (same method, label
    amount and config, other seeds): with two runs, including the run itself would put
    its own swing into the median it is compared with.
    """
    known = [float(n) for n in noises if n is not None and math.isfinite(n)]
    if not known:
        return None
    return max(float(np.median(known)), NOISE_FLOOR)


def _fmt(value: float) -> str:
    return f"{value:+.3f}".replace("-", "\u2212")


def assess(
    evals: Sequence[tuple[int, float]],
    total_steps: int,
    noise_ref: float | None = None,
    min_gain: float = MIN_GAIN,
) -> Convergence:
    """Judge one run: still improving at the end? evaluations swinging against its siblings?

    Rules (the reference noise is `noise_ref` when given, the siblings' noise from
    `sibling_noise`, else the run's own `eval_noise`, floored at NOISE_FLOOR):

    - still_improving = gain > max(min_gain, 2 * reference noise), where gain is
      `late_gain`. A gain within twice the swing of the evaluations themselves is not
      evidence of improvement; a gain below min_gain (default one mIoU point over the
      last quarter) leaves less on the table than reports resolve. None (cannot say)
      with fewer than MIN_EVALS evaluations or no gain (early stop, no early eval).
    - swinging = own noise > max(3 * reference noise, SWING_FLOOR), only when
      noise_ref is given: a run alone has no siblings to compare its scatter with, so
      swinging is None then (and when the run has too few late evaluations for a noise).
    """
    clean = clean_evals(evals)
    noise = eval_noise(clean, total_steps)
    gain = late_gain(clean, total_steps)
    if noise_ref is not None:
        ref, ref_name = max(float(noise_ref), NOISE_FLOOR), "sibling noise"
    elif noise is not None:
        ref, ref_name = max(noise, NOISE_FLOOR), "own noise"
    else:
        ref, ref_name = NOISE_FLOOR, "noise floor"

    threshold = max(min_gain, 2 * ref)
    if len(clean) < MIN_EVALS:
        still_improving = None
        gain_text = f"no convergence verdict: {len(clean)} evaluations (needs \u2265 {MIN_EVALS})"
    elif gain is None:
        still_improving = None
        if clean[-1][0] != total_steps:
            gain_text = (f"no convergence verdict: last evaluation at step {clean[-1][0]}, "
                         f"not at the end of the budget ({total_steps})")
        else:
            gain_text = (f"no convergence verdict: no evaluation in the first "
                         f"{LATE_FRACTION:.0%} of the budget")
    else:
        still_improving = gain > threshold
        verb = "still improving" if still_improving else "converged"
        sign = ">" if still_improving else "\u2264"
        gain_text = (f"{verb}: last-quarter gain {_fmt(gain)} {sign} "
                     f"max({min_gain:.3f}, 2 \u00d7 {ref_name} {ref:.3f})")

    if noise_ref is None or noise is None:
        swinging = None
        swing_text = ""
    else:
        swing_limit = max(3 * ref, SWING_FLOOR)
        swinging = noise > swing_limit
        if swinging:
            swing_text = (f"; evaluations swing: late noise {noise:.3f} > "
                          f"max(3 \u00d7 sibling noise {ref:.3f}, {SWING_FLOOR:.3f})")
        else:
            swing_text = ""
    return Convergence(gain=gain, noise=noise, noise_ref=ref, still_improving=still_improving,
                       swinging=swinging, n_evals=len(clean), rule=gain_text + swing_text)


def assess_siblings(runs: Sequence[tuple[Sequence[tuple[int, float]], int]],
                    min_gain: float = MIN_GAIN) -> list[Convergence]:
    """Judge each run of a group (same method, label amount and config; other seeds)
    against the other runs' noise; a group of one is judged by its own noise."""
    noises = [eval_noise(clean_evals(evals), total) for evals, total in runs]
    out = []
    for i, (evals, total) in enumerate(runs):
        ref = sibling_noise(noises[:i] + noises[i + 1:]) if len(runs) > 1 else None
        out.append(assess(evals, total, noise_ref=ref, min_gain=min_gain))
    return out
