"""Monte Carlo calibration test: the ECE statistic equals the binned formula, the test holds its
level for calibrated models (small n, rare positives included) and has power against
miscalibration."""

from __future__ import annotations

import numpy as np
import pytest

from audit.stats.bootstrap import weighted_calibration
from audit.stats.calibration import binned_ece, calibration_test


def test_binned_ece_equals_the_weighted_reliability_formula():
    rng = np.random.default_rng(0)
    s = rng.random(257)
    y = (rng.random(257) < s ** 1.5).astype(int)
    for bins in (2, 10, 15):
        assert binned_ece(s, y, bins)[0] == pytest.approx(weighted_calibration(s, y, np.ones(257), bins)[0][0])


def test_binned_ece_of_a_hand_worked_example():
    # bin [0, .5): scores .2, .4 (mean .3), outcomes 0, 1 (.5): gap .2 on 2 rows;
    # bin [.5, 1]: score .9, outcome 1: gap .1 on 1 row -> (2 * .2 + .1) / 3
    assert binned_ece([.2, .4, .9], [0, 1, 1], 2)[0] == pytest.approx(0.5 / 3)


def test_a_calibrated_model_has_positive_ece_that_the_null_explains():
    rng = np.random.default_rng(1)
    s = rng.random(300)
    y = (rng.random(300) < s).astype(int)
    t = calibration_test(s, y, n_bins=10, n_sim=999, rng=rng)
    assert t.ece > 0.01  # the upward bias the report states
    assert t.null_mean > 0.01 and t.null_q95 > t.null_mean
    assert t.p_value > 0.05


def test_a_miscalibrated_model_is_rejected_with_the_smallest_p_value():
    rng = np.random.default_rng(2)
    s = rng.random(1000)
    y = (rng.random(1000) < s ** 2).astype(int)  # scores too high
    t = calibration_test(s, y, n_bins=10, n_sim=199, rng=rng)
    assert t.p_value == pytest.approx(1 / 200)
    assert t.ece > t.null_q95


def _rejection_rate(n: int, base: float, reps: int, alpha: float, distort: float, seed: int) -> float:
    """Share of data sets where p < alpha; scores ~ Beta with mean ``base``, y ~ Bernoulli(s**distort)."""
    rng = np.random.default_rng(seed)
    a = 2.0
    b = a * (1 - base) / base
    rejected = 0
    for _ in range(reps):
        s = rng.beta(a, b, n)
        y = (rng.random(n) < s ** distort).astype(int)
        rejected += calibration_test(s, y, n_bins=10, n_sim=199, rng=rng).p_value < alpha
    return rejected / reps


@pytest.mark.slow
@pytest.mark.parametrize("n, base", [(20, 0.4), (30, 0.05), (100, 0.05), (100, 0.4), (1000, 0.02),
                                     (1000, 0.5)])
def test_calibrated_models_are_rejected_at_most_at_the_level(n, base):
    """Size: at alpha = 0.05 and 0.20 the rejection rate of a calibrated model stays at or below
    the level plus 3 Monte Carlo standard errors (400 data sets per cell)."""
    reps = 400
    for alpha in (0.05, 0.20):
        rate = _rejection_rate(n, base, reps, alpha, 1.0, seed=n + int(base * 100))
        assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps), (alpha, rate)


@pytest.mark.slow
@pytest.mark.parametrize("n, base, distort, power", [(100, 0.4, 2.0, 0.9), (300, 0.4, 1.3, 0.5),
                                                      (1000, 0.4, 1.2, 0.7), (2000, 0.05, 0.7, 0.9)])
def test_miscalibrated_models_are_detected(n, base, distort, power):
    """Power: outcomes drawn from score**distort (over- or under-confident scores) are rejected
    at alpha = 0.05 in at least ``power`` of 200 data sets (measured 0.975, 0.64, 0.83, 1.0)."""
    assert _rejection_rate(n, base, 200, 0.05, distort, seed=7) >= power


def test_above_the_row_draw_cap_the_test_draws_per_score_bin_and_keeps_the_observed_ece(monkeypatch):
    """Rows x simulations above MAX_ROW_DRAWS: the same observed ECE (its fine bins nest in the
    calibration bins, boundary scores included), a null from per-bin draws, and a note saying so."""
    import audit.stats.calibration as cal

    rng = np.random.default_rng(3)
    s = np.r_[rng.random(2000), np.arange(11) / 10]  # bin edges 0.1, 0.2, ... exactly
    y = (rng.random(s.size) < s).astype(int)
    exact = calibration_test(s, y, n_bins=10, n_sim=199, rng=np.random.default_rng(0))
    monkeypatch.setattr(cal, "MAX_ROW_DRAWS", 1000)
    binned = calibration_test(s, y, n_bins=10, n_sim=199, rng=np.random.default_rng(0))
    assert binned.ece == pytest.approx(exact.ece, abs=1e-12) and exact.note == ""
    assert "per score bin (1,000 bins" in binned.note and "slightly conservative" in binned.note
    assert binned.null_mean == pytest.approx(exact.null_mean, rel=0.15) and binned.p_value > 0.05
    worse = (rng.random(s.size) < s ** 2).astype(int)
    assert calibration_test(s, worse, n_bins=10, n_sim=199, rng=rng).p_value == pytest.approx(1 / 200)


@pytest.mark.slow
@pytest.mark.parametrize("n, base", [(30, 0.05), (200, 0.4), (1000, 0.02)])
def test_per_bin_draws_keep_the_level_for_calibrated_models(n, base, monkeypatch):
    """Size of the per-score-bin test (the cap forced on): at most alpha + 3 Monte Carlo SE."""
    import audit.stats.calibration as cal

    monkeypatch.setattr(cal, "MAX_ROW_DRAWS", 0)
    reps = 400
    for alpha in (0.05, 0.20):
        rate = _rejection_rate(n, base, reps, alpha, 1.0, seed=7 * n + int(base * 100))
        assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps), (alpha, rate)
