"""Intervals, verdicts and label-equivalent readings on hand-made cases with known answers."""

from __future__ import annotations

import json
import math

import pytest

from orchestration.report.evidence import (
    Comparison,
    compare_all,
    label_equivalent,
    one_line,
    paired_difference,
    seeds_to_detect,
    welch_interval,
)

SEEDS = [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4)]  # (split_seed, seed) pairing keys


def runs(values: list[float]) -> dict[tuple[int, int], float]:
    return dict(zip(SEEDS, values))


SPREAD = [0.50, 0.58, 0.46, 0.61, 0.53]  # seed spread ~0.06, as the bench shows


def test_identical_runs_show_no_difference_with_zero_interval():
    d = paired_difference(runs(SPREAD), runs(SPREAD))
    assert (d.n, d.mean, d.sd, d.low, d.high) == (5, 0.0, 0.0, 0.0, 0.0)
    assert d.verdict == "no difference detectable"
    assert d.interval == "t"


def test_constant_gap_far_above_the_spread_is_ahead_and_swapped_behind():
    better = runs([v + 0.05 for v in SPREAD])
    ahead = paired_difference(better, runs(SPREAD))
    assert ahead.verdict == "ahead"
    assert ahead.mean == pytest.approx(0.05)
    assert ahead.low == pytest.approx(0.05) and ahead.high == pytest.approx(0.05)
    assert paired_difference(runs(SPREAD), better).verdict == "behind"


def test_one_seed_gives_no_verdict_never_a_winner():
    d = paired_difference({(0, 0): 0.9}, {(0, 0): 0.1})
    assert d.verdict == "no verdict"
    assert d.n == 1 and d.mean == pytest.approx(0.8)
    assert d.sd is None and d.low is None and d.high is None and d.seeds_needed is None


def test_t_interval_by_hand():
    # diffs .01 .02 .03: mean .02, sd .01, t_{.975, 2} = 4.303 -> .02 +- 4.303 * .01 / sqrt(3)
    d = paired_difference({1: 0.51, 2: 0.52, 3: 0.53}, {1: 0.5, 2: 0.5, 3: 0.5})
    assert d.mean == pytest.approx(0.02) and d.sd == pytest.approx(0.01)
    assert d.low == pytest.approx(-0.0048, abs=1e-4)
    assert d.high == pytest.approx(0.0448, abs=1e-4)
    assert d.verdict == "no difference detectable"


def test_unpaired_keys_and_nan_are_ignored():
    a = {1: 0.51, 2: 0.52, 3: 0.53, 4: 0.99, 5: float("nan")}
    b = {1: 0.5, 2: 0.5, 3: 0.5, 5: 0.1, 6: 0.0}
    d = paired_difference(a, b)
    assert d.keys == (1, 2, 3)
    assert d.diffs == pytest.approx((0.01, 0.02, 0.03))


def test_diffs_sorted_by_key_whatever_the_insertion_order():
    a = {(1, 2): 0.7, (0, 0): 0.5, (0, 1): 0.6}
    b = {(0, 1): 0.5, (1, 2): 0.5, (0, 0): 0.5}
    d = paired_difference(a, b)
    assert d.keys == ((0, 0), (0, 1), (1, 2))
    assert d.diffs == pytest.approx((0.0, 0.1, 0.2))
    assert json.loads(json.dumps(d.as_dict()))["keys"] == [[0, 0], [0, 1], [1, 2]]


def test_seeds_to_detect_matches_textbook_values():
    # Paired two-sided t-test, alpha .05, power .8, effect size d = detect / sd: n = 34
    # for d = 0.5 and n = 10 for d = 1.0 (Cohen 1988; R pwr::pwr.t.test(type="paired")
    # gives n = 33.37 and 9.94, rounded up; matched by a linear scan with scipy's nct).
    # d = 1.0 also runs the bisection through n ~ 500, where scipy's lower-tail cdf is NaN.
    assert seeds_to_detect(sd=0.02, detect=0.01) == 34
    assert seeds_to_detect(sd=0.01, detect=0.01) == 10
    assert seeds_to_detect(sd=0.05, detect=0.01) == 199  # d = 0.2; pwr: 198.15
    assert seeds_to_detect(sd=0.0, detect=0.01) == 2
    assert seeds_to_detect(sd=1.0, detect=0.01) is None  # ~78 000 seeds
    # More power or a smaller effect never needs fewer seeds.
    assert seeds_to_detect(0.02, 0.01, power=0.9) > 34
    with pytest.raises(ValueError, match="detect"):
        seeds_to_detect(0.02, 0.0)


def test_seeds_needed_is_reported_at_the_observed_spread():
    d = paired_difference({1: 0.51, 2: 0.52, 3: 0.53}, {1: 0.5, 2: 0.5, 3: 0.5}, detect=0.01)
    assert d.seeds_needed == seeds_to_detect(0.01, 0.01) == 10


def test_compare_all_reads_each_pair_later_minus_earlier():
    values = {("rrn", 0.125): runs(SPREAD), ("supervised", 0.125): runs(SPREAD),
              ("cps", 0.125): runs(SPREAD), ("supervised", 0.5): runs(SPREAD),
              ("rrn", 0.5): runs(SPREAD)}
    got = [(c.method, c.baseline, c.amount)
           for c in compare_all(values, ["supervised", "cps", "rrn"])]
    assert got == [("cps", "supervised", 0.125), ("rrn", "supervised", 0.125),
                   ("rrn", "cps", 0.125), ("rrn", "supervised", 0.5)]
    with pytest.raises(ValueError, match="fixmatch"):
        compare_all({("fixmatch", 0.5): runs(SPREAD)}, ["supervised"])


def test_compare_all_passes_options_on():
    values = {("supervised", 0.5): runs(SPREAD), ("rrn", 0.5): runs([v + 0.01 for v in SPREAD])}
    (c,) = compare_all(values, ["supervised", "rrn"], detect=0.05)
    assert c.difference.detect == 0.05


def test_one_line_texts():
    base = {1: 0.5, 2: 0.5, 3: 0.5}
    c = Comparison("rrn", "cps", 0.125, paired_difference({1: 0.51, 2: 0.52, 3: 0.53}, base))
    assert one_line(c) == ("rrn \u2212 cps @ 1/8: +0.020 [\u22120.005, +0.045] (95 % t, 3 seeds): "
                           "no difference detectable; ~10 seeds would detect \u00b10.010 at this spread")
    one = Comparison("rrn", "cps", 0.125, paired_difference({1: 0.6}, {1: 0.5}))
    assert one_line(one) == "rrn \u2212 cps @ 1/8: +0.100 (1 seed): no verdict (needs \u2265 2 seeds)"
    ahead = Comparison("cps", "supervised", 0.5,
                       paired_difference(runs([v + 0.05 for v in SPREAD]), runs(SPREAD)))
    assert one_line(ahead).endswith("(95 % t, 5 seeds): ahead")
    counts = Comparison("rrn", "cps", 92, paired_difference({1: 0.6}, {2: 0.5}))
    assert one_line(counts) == "rrn \u2212 cps @ 92: no paired seeds: no verdict (needs \u2265 2 seeds)"
    data = json.loads(json.dumps(ahead.as_dict()))
    assert data["difference"]["verdict"] == "ahead" and data["difference"]["interval"] == "t"


def test_welch_interval_by_hand():
    # hi: .6 .7 (mean .65, var .005), lo: .5 .5 .5 (var 0): se = sqrt(.005/2) = .05,
    # df = (.0025^2) / (.0025^2 / 1) = 1 -> t_{.975,1} = 12.706 -> .15 +- .6353.
    low, high = welch_interval([0.6, 0.7], [0.5, 0.5, 0.5])
    assert low == pytest.approx(0.15 - 12.7062 * 0.05, abs=1e-3)
    assert high == pytest.approx(0.15 + 12.7062 * 0.05, abs=1e-3)


LINEAR = {0.125: 0.50, 0.25: 0.60, 0.5: 0.70}  # linear in log2 amount, +0.1 per doubling


def supervised_curve(means: dict[float, float], noise: tuple[float, ...] = (0.0, 0.0, 0.0)):
    return {amt: {(i, i): m + e for i, e in enumerate(noise)} for amt, m in means.items()}


def test_label_equivalent_reads_back_a_known_amount_exactly():
    # 0.65 lies halfway (in log amount) between 1/4 (0.60) and 1/2 (0.70): sqrt(1/8).
    eq = label_equivalent(supervised_curve(LINEAR), {(i, i): 0.65 for i in range(3)},
                          method_name="rrn", method_amount=0.125)
    assert eq.reason is None and not eq.below and not eq.above
    assert eq.amount == pytest.approx(math.sqrt(1 / 8), abs=1e-12)
    assert eq.amount == pytest.approx(0.3536, abs=1e-4)
    assert eq.low == pytest.approx(eq.amount) and eq.high == pytest.approx(eq.amount)
    assert eq.clamped_share == 0.0
    assert eq.text == ("rrn at 1/8 \u2248 supervised at 0.35 of the labels "
                       "(95 % bootstrap interval 0.35-0.35)")


def test_label_equivalent_interval_covers_the_reading_with_noise():
    sup = supervised_curve(LINEAR, noise=(-0.01, 0.0, 0.01))
    eq = label_equivalent(sup, {(i, i): 0.55 + e for i, e in enumerate((-0.01, 0.0, 0.01))})
    # 0.55 is halfway between 1/8 and 1/4 in log: 2 ** -2.5.
    assert eq.amount == pytest.approx(2 ** -2.5)
    assert eq.low < eq.amount < eq.high
    assert 0.125 <= eq.low and eq.high <= 0.5
    again = label_equivalent(sup, {(i, i): 0.55 + e for i, e in enumerate((-0.01, 0.0, 0.01))})
    assert (again.low, again.high) == (eq.low, eq.high)  # fixed seed: reproducible


def test_flat_supervised_curve_gives_a_reason_and_no_reading():
    flat = {0.125: {1: 0.568, 2: 0.57, 3: 0.566}, 0.5: {1: 0.571, 2: 0.56, 3: 0.58}}
    eq = label_equivalent(flat, {1: 0.65, 2: 0.66})
    assert eq.amount is None and eq.low is None and eq.high is None
    assert eq.reason.startswith("supervised at 1/2 (0.570) is not above 1/8 (0.568) within its interval")
    falling = {0.125: {1: 0.568, 2: 0.568}, 0.5: {1: 0.56, 2: 0.56}}
    eq = label_equivalent(falling, {1: 0.65, 2: 0.66})
    assert eq.reason == "supervised falls from 1/8 (0.568) to 1/2 (0.560)"
    one_seed = {0.125: {1: 0.5, 2: 0.5}, 0.5: {1: 0.7}}
    assert label_equivalent(one_seed, {1: 0.6, 2: 0.6}).reason == \
        "supervised at 1/2 has 1 seed (needs \u2265 2)"
    assert "1 label amount" in label_equivalent({0.5: {1: 0.7, 2: 0.7}}, {1: 0.6, 2: 0.6}).reason


def test_method_above_the_largest_amount_is_flagged_above():
    eq = label_equivalent(supervised_curve(LINEAR), {1: 0.8, 2: 0.8}, method_name="cps",
                          method_amount=0.125)
    assert eq.above and not eq.below and eq.amount is None
    assert eq.clamped_share == 1.0
    assert "worth more labels than the largest amount measured" in eq.text
    below = label_equivalent(supervised_curve(LINEAR), {1: 0.4, 2: 0.4})
    assert below.below and below.amount is None


def test_marginal_miou_per_labeled_image_by_hand():
    images = {0.125: 10, 0.25: 20, 0.5: 40}
    eq = label_equivalent(supervised_curve(LINEAR), {1: 0.65, 2: 0.65}, images=images)
    # (0.60 - 0.50) / (20 - 10) = 0.01 and (0.70 - 0.60) / (40 - 20) = 0.005 per image.
    assert [m[:2] for m in eq.marginal] == [(0.125, 0.25), (0.25, 0.5)]
    assert [m[2] for m in eq.marginal] == pytest.approx([0.01, 0.005])
    data = json.loads(json.dumps(eq.as_dict()))
    assert data["marginal"][1] == pytest.approx([0.25, 0.5, 0.005])


def test_label_counts_read_as_counts():
    counts = {10: {1: 0.5, 2: 0.5}, 40: {1: 0.7, 2: 0.7}}
    eq = label_equivalent(counts, {1: 0.6, 2: 0.6})
    assert eq.amount == pytest.approx(20.0)  # halfway in log between 10 and 40
    assert "supervised at 20 labels" in eq.text


def test_label_equivalent_gives_no_bootstrap_interval_from_two_seeds():
    sup = {0.125: {0: 0.49, 1: 0.51}, 0.5: {0: 0.69, 1: 0.71}}
    eq = label_equivalent(sup, {0: 0.59, 1: 0.61})
    assert eq.amount == pytest.approx(0.25) and eq.low is None and eq.high is None
    assert "no interval" in eq.text
