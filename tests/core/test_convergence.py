"""Convergence rule on hand-made evaluation curves whose answers are known."""

from __future__ import annotations

import json
import math

import pytest

from rrn_core.convergence import (
    assess_siblings,
    MIN_GAIN,
    NOISE_FLOOR,
    SWING_FLOOR,
    assess,
    eval_noise,
    late_gain,
    sibling_noise,
)


def rising(n: int = 8, total: int = 800) -> list[tuple[int, float]]:
    """0.3 .. 0.7 linearly over n evaluations evenly spaced up to total."""
    return [(total * (k + 1) // n, 0.3 + 0.4 * k / (n - 1)) for k in range(n)]


def test_eval_noise_three_points_by_hand():
    # Last half of 100 steps: (50, .50), (75, .60), (100, .55). Line: mean .55, slope
    # 1.25/1250 = .001 -> fitted .525, .55, .575; residuals -.025, .05, -.025;
    # SS = .00375 over n - 2 = 1 degree of freedom -> sqrt(.00375).
    evals = [(25, 0.1), (50, 0.50), (75, 0.60), (100, 0.55)]
    assert eval_noise(evals, 100) == pytest.approx(math.sqrt(0.00375), abs=1e-12)
    # The evaluation at step 25 is in the first half and must not count.
    assert eval_noise(evals[1:], 100) == pytest.approx(math.sqrt(0.00375), abs=1e-12)


def test_eval_noise_needs_three_late_points():
    assert eval_noise([(10, 0.1), (20, 0.2), (60, 0.5), (100, 0.6)], 100) is None


def test_eval_noise_of_a_straight_line_is_zero():
    assert eval_noise(rising(), 800) == pytest.approx(0.0, abs=1e-12)


def test_saturated_flat_curve_is_not_improving():
    wiggle = [0.001, -0.001, 0.0005, -0.0005, 0.001, -0.001, 0.0, 0.0005]
    evals = [(100 * (k + 1), 0.6 + w) for k, w in enumerate(wiggle)]
    verdict = assess(evals, 800)
    assert verdict.still_improving is False
    assert verdict.gain == pytest.approx(0.6005 - 0.599)  # step 800 minus step 600
    assert verdict.noise_ref == NOISE_FLOOR  # own noise is tiny: floored
    assert verdict.swinging is None  # no siblings given
    assert verdict.rule.startswith("converged")


def test_linearly_rising_curve_is_still_improving():
    verdict = assess(rising(), 800)
    # Steps 100..800; the latest evaluation at or before 600 is the 6th (0.3 + 5/7 * .4).
    assert verdict.gain == pytest.approx(0.4 * 2 / 7, abs=1e-12)
    assert verdict.gain == pytest.approx(0.1, abs=0.02)  # about the last-quarter rise
    assert verdict.still_improving is True
    assert verdict.rule.startswith("still improving")


def test_gain_within_the_noise_is_not_improvement():
    # Gain 0.05 is above MIN_GAIN but within twice a sibling noise of 0.03.
    evals = [(250, 0.5), (500, 0.55), (750, 0.55), (1000, 0.60)]
    assert assess(evals, 1000, noise_ref=0.03).still_improving is False
    assert assess(evals, 1000, noise_ref=0.01).still_improving is True
    # And a gain above twice the noise but below min_gain is not improvement either.
    assert assess(evals, 1000, noise_ref=0.01, min_gain=0.06).still_improving is False


def test_swinging_run_among_quiet_siblings():
    # The case: 0.564, 0.470, 0.647, 0.499 at 300..1200 while siblings scatter ~0.01.
    evals = [(300, 0.564), (600, 0.470), (900, 0.647), (1200, 0.499)]
    ref = sibling_noise([0.01, 0.012, None, 0.008])
    assert ref == pytest.approx(0.01)
    verdict = assess(evals, 1200, noise_ref=ref)
    assert verdict.swinging is True
    assert verdict.noise > 3 * ref and verdict.noise > SWING_FLOOR
    assert verdict.still_improving is False  # final 0.499 is below 0.647 at step 900
    assert "swing" in verdict.rule
    # Alone (no siblings), the same run gets no swinging verdict.
    assert assess(evals, 1200).swinging is None


def test_quiet_run_among_quiet_siblings_is_not_swinging():
    evals = [(300, 0.60), (600, 0.70), (900, 0.71), (1200, 0.705)]
    verdict = assess(evals, 1200, noise_ref=0.01)
    assert verdict.noise is not None and verdict.noise < SWING_FLOOR
    assert verdict.swinging is False


def test_too_few_evaluations_give_no_verdict():
    verdict = assess([(500, 0.4), (750, 0.5), (1000, 0.6)], 1000, noise_ref=0.01)
    assert verdict.still_improving is None
    assert verdict.n_evals == 3
    assert "needs" in verdict.rule


def test_early_stopped_run_gives_no_verdict():
    evals = rising()[:-1]  # last evaluation at 700 of 800
    assert late_gain(evals, 800) is None
    verdict = assess(evals, 800)
    assert verdict.still_improving is None
    assert "700" in verdict.rule


def test_no_evaluation_in_first_three_quarters_gives_no_gain():
    assert late_gain([(800, 0.5), (900, 0.6), (1000, 0.7)], 1000) is None


def test_nan_evaluations_are_dropped_and_a_nan_final_has_no_verdict():
    evals = rising()
    evals[2] = (evals[2][0], float("nan"))
    assert late_gain(evals, 800) == pytest.approx(0.4 * 2 / 7)
    evals[-1] = (800, float("nan"))
    assert late_gain(evals, 800) is None


def test_repeated_step_keeps_the_last_value_and_backwards_steps_fail():
    evals = rising() + [(800, 0.9)]
    assert late_gain(evals, 800) == pytest.approx(0.9 - (0.3 + 0.4 * 5 / 7))
    with pytest.raises(ValueError, match="step order"):
        assess([(200, 0.1), (100, 0.2)], 200)


def test_sibling_noise_median_and_floor():
    assert sibling_noise([]) is None
    assert sibling_noise([None, float("nan")]) is None
    assert sibling_noise([0.001, 0.002]) == NOISE_FLOOR
    assert sibling_noise([0.01, 0.2, 0.03]) == pytest.approx(0.03)


def test_as_dict_is_json():
    verdict = assess(rising(), 800, noise_ref=0.01)
    data = json.loads(json.dumps(verdict.as_dict()))
    assert data["still_improving"] is True and data["swinging"] is False
    assert set(data) == {"gain", "noise", "noise_ref", "still_improving", "swinging",
                         "n_evals", "rule"}
    assert MIN_GAIN == 0.01


def test_assess_siblings_judges_each_run_by_the_others_noise():
    """The issue's case: seed 2 swings 0.564/0.470/0.647/0.499 while seeds 0 and 1 settle."""
    total = 1200
    steps = [300, 450, 600, 750, 900, 1050, 1200]
    settled_a = list(zip(steps, [0.60, 0.68, 0.72, 0.745, 0.752, 0.755, 0.757]))
    settled_b = list(zip(steps, [0.59, 0.67, 0.71, 0.738, 0.744, 0.746, 0.748]))
    swinging = list(zip(steps, [0.50, 0.564, 0.52, 0.470, 0.60, 0.647, 0.499]))
    a, b, c = assess_siblings([(settled_a, total), (settled_b, total), (swinging, total)])
    assert a.still_improving is False and b.still_improving is False
    assert a.swinging is False and c.swinging is True
    # alone, a run is judged by its own noise and never called swinging
    (alone,) = assess_siblings([(swinging, total)])
    assert alone.swinging is None
