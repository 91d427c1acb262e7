"""Differences between methods with their intervals and verdicts, and label-equivalent readings.

A single trial per method names a winner by chance: the spread between seeds is often
larger than the differences between methods. Every comparison here is therefore paired
by seed (same split seed and model seed, so split and initialisation luck cancel), comes
with a stated interval, and ends in one of four verdicts: "ahead", "behind", "no
difference detectable", or, with one seed, "no verdict". With the verdict goes how many
seeds would detect a difference of a stated size at the spread observed, so "no
difference detectable" reads as "not measured finely enough", not as "equal".

The label-equivalent reading answers the project's question, what a semi-supervised
result is worth in labels, by reading the method's accuracy off the supervised curve
across label amounts, with a bootstrap interval; only where that curve rises beyond its
own noise, and otherwise saying why not. Pure numpy/scipy so the report, the sweep's
closing lines and the summary page share one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from orchestration.display_names import ratio_text

MIN_BOOT_SEEDS = 3   # the label-equivalent's bootstrap interval needs this many seeds a point
VERDICTS = ("ahead", "behind", "no difference detectable", "no verdict")
MINUS = "\u2212"


def _sorted_keys(keys: set[Any]) -> list[Any]:
    """Keys in their natural order, or by text where they do not compare (mixed types)."""
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=repr)


def _finite(values: Mapping[Any, float]) -> dict[Any, float]:
    """Drop missing results: a NaN metric (a failed or diverged trial) measured nothing."""
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", MINUS)


def _check_level(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")


def amount_text(amount: Hashable) -> str:
    """A label amount as papers write it: fractions as `1/8`, counts as integers."""
    if isinstance(amount, float) and 0.0 < amount <= 1.0:
        return ratio_text(amount)
    if isinstance(amount, float) and amount == int(amount):
        return str(int(amount))
    return str(amount)


def seeds_to_detect(sd: float, detect: float, level: float = 0.95, power: float = 0.8,
                    max_n: int = 1000) -> int | None:
    """The fewest seeds (>= 2) at which a paired t-test detects a true mean difference `detect`.

    Power of the two-sided paired t-test at `level` with n pairs: P(|T| > t_crit) where
    T follows a noncentral t with n - 1 degrees of freedom and noncentrality
    detect * sqrt(n) / sd (the exact power, not the normal approximation, which
    undercounts at the small n seeds come in). Power rises with n, so a bisection finds
    the smallest n. sd == 0 -> 2: without spread any difference shows at the first
    interval. None when more than max_n seeds would be needed: "not with seeds".
    """
    if detect <= 0:
        raise ValueError(f"detect must be positive, got {detect}")
    _check_level("level", level)
    _check_level("power", power)
    if sd < 0 or not math.isfinite(sd):
        raise ValueError(f"sd must be a finite non-negative number, got {sd}")
    if sd == 0:
        return 2

    def achieved(n: int) -> float:
        df = n - 1
        t_crit = stats.t.ppf((1 + level) / 2, df)
        nc = detect * math.sqrt(n) / sd
        upper = float(stats.nct.sf(t_crit, df, nc))
        if not math.isfinite(upper):
            upper = 1.0 - float(stats.nct.cdf(t_crit, df, nc))
        # The wrong-sign tail: scipy returns NaN where it underflows (large nc), i.e. 0.
        lower = float(stats.nct.cdf(-t_crit, df, nc))
        return upper + (lower if math.isfinite(lower) else 0.0)

    if achieved(max_n) < power:
        return None
    low, high = 2, max_n  # achieved(high) >= power; answer in [low, high]
    while low < high:
        mid = (low + high) // 2
        if achieved(mid) >= power:
            high = mid
        else:
            low = mid + 1
    return low


@dataclass(frozen=True)
class PairedDifference:
    """a - b paired by key: the mean difference, its t interval and the verdict.

    `interval` names the interval's kind ("t": Student t on the paired differences).
    `seeds_needed` is `seeds_to_detect` at the observed sd (None without an sd, or when
    more than 1000 seeds would be needed).
    """

    n: int
    diffs: tuple[float, ...]
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None
    interval: str
    level: float
    verdict: str
    detect: float
    power: float
    seeds_needed: int | None
    keys: tuple[Any, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields; tuple keys (split_seed, seed) become lists."""
        data = asdict(self)
        data["diffs"] = list(self.diffs)
        data["keys"] = [_jsonable(k) for k in self.keys]
        return data


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float], *, detect: float = 0.01,
                      level: float = 0.95, power: float = 0.8) -> PairedDifference:
    """a - b over the keys both have (NaN results dropped), with a two-sided t interval.

    Rules: fewer than 2 pairs -> "no verdict" (one seed never names a winner); interval
    above 0 -> "ahead"; below 0 -> "behind"; otherwise "no difference detectable". The
    interval is mean +- t_{(1+level)/2, n-1} * sd / sqrt(n) (sd with ddof 1); the t rather
    than a bootstrap because with 3-5 seeds a bootstrap interval is too narrow (it
    cannot see spread the few seeds did not show). With sd == 0 the interval is
    [mean, mean]: a constant gap is a verdict, identical runs are no difference.
    """
    _check_level("level", level)
    a, b = _finite(a), _finite(b)
    keys = tuple(_sorted_keys(set(a) & set(b)))
    diffs = tuple(a[k] - b[k] for k in keys)
    n = len(diffs)
    mean = float(np.mean(diffs)) if n else None
    sd = low = high = seeds = None
    verdict = "no verdict"
    if n >= 2:
        sd = float(np.std(diffs, ddof=1))
        half = 0.0 if sd == 0 else float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        verdict = "ahead" if low > 0 else "behind" if high < 0 else "no difference detectable"
        seeds = seeds_to_detect(sd, detect, level, power)
    return PairedDifference(n=n, diffs=diffs, mean=mean, sd=sd, low=low, high=high,
                            interval="t", level=level, verdict=verdict, detect=detect,
                            power=power, seeds_needed=seeds, keys=keys)


@dataclass(frozen=True)
class Comparison:
    """`method` minus `baseline` at one label amount."""

    method: str
    baseline: str
    amount: Hashable
    difference: PairedDifference

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "baseline": self.baseline,
                "amount": _jsonable(self.amount), "difference": self.difference.as_dict()}


def compare_all(values: Mapping[tuple[str, Hashable], Mapping[Any, float]],
                order: Sequence[str], **kw: Any) -> list[Comparison]:
    """Every pair of methods at every label amount, the later method (in `order`) minus the earlier.

    `values` maps (method, amount) to {pairing key: metric}; `order` is the methods
    table's order, so differences always read the same way round (cps - supervised,
    rrn - supervised, rrn - cps), whatever order the trials finished in. Amounts come in
    increasing order. `kw` goes to `paired_difference`. A method missing from `order` is
    an error: its sign would be a guess.
    """
    rank = {m: i for i, m in enumerate(order)}
    unknown = sorted({m for m, _ in values} - set(rank))
    if unknown:
        raise ValueError(f"methods not in the methods order {list(order)}: {unknown}")
    out: list[Comparison] = []
    for amount in _sorted_keys({amt for _, amt in values}):
        present = sorted((m for m, amt in values if amt == amount), key=rank.__getitem__)
        for j, method in enumerate(present):
            for baseline in present[:j]:
                diff = paired_difference(values[(method, amount)], values[(baseline, amount)], **kw)
                out.append(Comparison(method, baseline, amount, diff))
    return out


def one_line(c: Comparison) -> str:
    """The comparison as the console, report and summary page print it.

    "rrn − cps @ 1/8: +0.012 [−0.004, +0.028] (95 % t, 5 seeds): no difference
    detectable; ~14 seeds would detect ±0.010 at this spread".
    """
    d = c.difference
    head = f"{c.method} {MINUS} {c.baseline} @ {amount_text(c.amount)}: "
    if d.n == 0:
        return head + "no paired seeds: no verdict (needs \u2265 2 seeds)"
    if d.verdict == "no verdict":
        return head + f"{_signed(d.mean)} ({d.n} seed): no verdict (needs \u2265 2 seeds)"
    text = (f"{head}{_signed(d.mean)} [{_signed(d.low)}, {_signed(d.high)}] "
            f"({d.level * 100:g} % t, {d.n} seeds): {d.verdict}")
    if d.verdict == "no difference detectable":
        if d.seeds_needed is None:
            text += f"; more than 1000 seeds would be needed to detect \u00b1{d.detect:.3f} at this spread"
        else:
            text += f"; ~{d.seeds_needed} seeds would detect \u00b1{d.detect:.3f} at this spread"
    return text


@dataclass(frozen=True)
class LabelEquivalent:
    """What a method's result is worth in supervised labels, or why there is no reading.

    `amount` is the supervised label amount whose (interpolated) mean equals the method's
    mean; None when there is no reading (`reason` says why) or when the method lies
    outside the measured curve (`below` / `above`). low / high: the bootstrap
    percentile interval, each draw clamped to the measured range; `clamped_share` the
    share of draws clamped. `marginal`: (amount_lo, amount_hi, mIoU per extra labeled
    image) between consecutive supervised amounts.
    """

    amount: float | None
    low: float | None
    high: float | None
    below: bool
    above: bool
    clamped_share: float | None
    reason: str | None
    marginal: tuple[tuple[float, float, float], ...]
    level: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["marginal"] = [list(m) for m in self.marginal]
        return data


def welch_interval(hi: Sequence[float], lo: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided Welch t interval of mean(hi) - mean(lo): unpaired, unequal variances.

    Unpaired because different label amounts use different splits, so their seeds share
    nothing to pair on. Zero spread in both gives [diff, diff].
    """
    hi_a, lo_a = np.asarray(hi, dtype=float), np.asarray(lo, dtype=float)
    diff = float(hi_a.mean() - lo_a.mean())
    v_hi, v_lo = hi_a.var(ddof=1) / len(hi_a), lo_a.var(ddof=1) / len(lo_a)
    se2 = v_hi + v_lo
    if se2 == 0:
        return diff, diff
    df = se2**2 / (v_hi**2 / (len(hi_a) - 1) + v_lo**2 / (len(lo_a) - 1))
    half = float(stats.t.ppf((1 + level) / 2, df)) * math.sqrt(se2)
    return diff - half, diff + half


def _invert(log_amounts: np.ndarray, means: np.ndarray, target: float) -> tuple[float, int]:
    """The smallest log amount at which the piecewise-linear curve reaches `target`.

    Smallest, so that a flat stretch (or a bootstrap draw's dip) reads as the fewest
    labels supervised needs to match the method. Returns (log amount, clamp): clamp -1
    when the target is below the curve's start (read as the smallest amount), +1 when
    the curve never reaches it (read as the largest), 0 inside.
    """
    if target < means[0]:
        return float(log_amounts[0]), -1
    for i in range(len(means) - 1):
        m_lo, m_hi = means[i], means[i + 1]
        if m_lo >= target:
            return float(log_amounts[i]), 0
        if m_hi >= target:
            t = (target - m_lo) / (m_hi - m_lo)
            return float(log_amounts[i] + t * (log_amounts[i + 1] - log_amounts[i])), 0
    if means[-1] >= target:
        return float(log_amounts[-1]), 0
    return float(log_amounts[-1]), 1


def _equivalent_text(amount: float, fractions: bool) -> str:
    return f"{amount:.2g} of the labels" if fractions else f"{amount:.0f} labels"


def label_equivalent(supervised: Mapping[float, Mapping[Any, float]], method: Mapping[Any, float], *,
                     images: Mapping[float, int] | None = None, level: float = 0.95,
                     n_boot: int = 2000, seed: int = 0, method_name: str = "method",
                     method_amount: float | None = None) -> LabelEquivalent:
    """Read the method's mean off the supervised curve (in log amount), with a bootstrap interval.

    Only where the supervised curve rises within its intervals: at least 2 amounts, each
    with >= 2 seeds, means non-decreasing with amount, and the largest amount's mean above
    the smallest's by a Welch t interval at `level`. On a flat or falling curve every
    label amount looks alike and any reading would be noise. The method needs >= 2 seeds.
    Log amount because label curves are close to linear in log labels (each doubling
    buys about the same). Interval: resample seeds with replacement within the method and
    within each supervised amount independently, invert each draw's curve, take the
    percentile interval. `marginal` (with `images`) describes the measured supervised
    curve, so it is given with or without a reading. `method_name` / `method_amount`
    only name the method in `text`.
    """
    _check_level("level", level)
    curve = {float(amt): _finite(v) for amt, v in supervised.items()}
    amounts = sorted(a for a in curve if curve[a])
    fractions = all(a <= 1.0 for a in amounts)
    mine = np.array(list(_finite(method).values()), dtype=float)
    who = method_name + (f" at {amount_text(float(method_amount))}" if method_amount is not None else "")
    samples = [np.array(list(curve[a].values()), dtype=float) for a in amounts]
    means = np.array([s.mean() for s in samples])
    marginal: list[tuple[float, float, float]] = []
    if images is not None:
        for i in range(len(amounts) - 1):
            lo, hi = amounts[i], amounts[i + 1]
            if lo in images and hi in images:
                extra = images[hi] - images[lo]
                if extra <= 0:
                    raise ValueError(f"labeled images must grow with the amount: "
                                     f"{images[lo]} at {amount_text(lo)}, {images[hi]} at {amount_text(hi)}")
                marginal.append((lo, hi, float(means[i + 1] - means[i]) / extra))

    def no_reading(reason: str) -> LabelEquivalent:
        return LabelEquivalent(amount=None, low=None, high=None, below=False, above=False,
                               clamped_share=None, reason=reason, marginal=tuple(marginal),
                               level=level, text=f"{who}: no label-equivalent reading: {reason}")

    if any(a <= 0 for a in amounts):
        raise ValueError(f"label amounts must be positive, got {amounts}")
    if len(amounts) < 2:
        return no_reading(f"supervised was measured at {len(amounts)} label amount(s) (needs \u2265 2)")
    for a, s in zip(amounts, samples):
        if len(s) < 2:
            return no_reading(f"supervised at {amount_text(a)} has {len(s)} seed (needs \u2265 2)")
    for i in range(len(amounts) - 1):
        if means[i + 1] < means[i]:
            return no_reading(f"supervised falls from {amount_text(amounts[i])} ({means[i]:.3f}) "
                              f"to {amount_text(amounts[i + 1])} ({means[i + 1]:.3f})")
    low_gap, high_gap = welch_interval(samples[-1], samples[0], level)
    if low_gap <= 0:
        return no_reading(
            f"supervised at {amount_text(amounts[-1])} ({means[-1]:.3f}) is not above "
            f"{amount_text(amounts[0])} ({means[0]:.3f}) within its interval "
            f"({level * 100:g} % Welch t: [{_signed(low_gap)}, {_signed(high_gap)}])")
    if len(mine) < 2:
        return no_reading(f"{method_name} has {len(mine)} seed (needs \u2265 2)")

    logs = np.log(np.array(amounts))
    log_point, clamp = _invert(logs, means, float(mine.mean()))
    rng = np.random.default_rng(seed)
    boot_mine = mine[rng.integers(0, len(mine), size=(n_boot, len(mine)))].mean(axis=1)
    boot_curve = np.stack([s[rng.integers(0, len(s), size=(n_boot, len(s)))].mean(axis=1)
                           for s in samples], axis=1)
    draws = [_invert(logs, boot_curve[i], float(boot_mine[i])) for i in range(n_boot)]
    log_draws = np.array([d[0] for d in draws])
    clamped = float(np.mean([d[1] != 0 for d in draws]))
    tail = (1 - level) / 2 * 100
    low, high = (float(math.exp(q)) for q in np.percentile(log_draws, [tail, 100 - tail]))
    interval = f"{level * 100:g} % bootstrap interval {low:.2g}-{high:.2g}"
    if min(len(mine), *(len(x) for x in samples)) < MIN_BOOT_SEEDS:  # 2 values resample to 3 means
        low = high = None
        interval = f"no interval: a bootstrap of fewer than {MIN_BOOT_SEEDS} seeds a point understates the spread"
    elif clamped > 0:
        interval += f", {clamped:.0%} of draws clamped to the measured range"
    if clamp == -1:
        text = (f"{who} ({mine.mean():.3f}) is below supervised at {amount_text(amounts[0])} "
                f"({means[0]:.3f}): worth fewer labels than the smallest amount measured ({interval})")
    elif clamp == 1:
        text = (f"{who} ({mine.mean():.3f}) is above supervised at {amount_text(amounts[-1])} "
                f"({means[-1]:.3f}): worth more labels than the largest amount measured ({interval})")
    else:
        text = f"{who} \u2248 supervised at {_equivalent_text(math.exp(log_point), fractions)} ({interval})"
    return LabelEquivalent(amount=None if clamp else float(math.exp(log_point)), low=low, high=high,
                           below=clamp == -1, above=clamp == 1, clamped_share=clamped, reason=None,
                           marginal=tuple(marginal), level=level, text=text)
