"""Count tables and score histograms (audit.stats.counts): what the fairness method computes from."""

from __future__ import annotations

import numpy as np
import pytest

from audit.stats.bootstrap import confusion_cells, weighted_auc, weighted_calibration
from audit.stats.calibration import histogram_calibration_test
from audit.stats.counts import (
    GroupTable,
    calibration_bins,
    histogram_auc,
    sample_rows,
    threshold_rates,
)


def _rows(n: int, seed: int, *, groups: int = 3, ties: bool = False):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, groups, n)
    s = rng.beta(2, 3, n)
    if ties:
        s = np.round(s, 2)
    y = (rng.random(n) < s).astype(np.int64)
    yhat = (s >= 0.5).astype(np.int64)
    return codes, y, yhat, s


def test_table_cells_are_the_confusion_counts_and_the_histogram_sums_to_them():
    codes, y, yhat, s = _rows(5000, 0)
    t = GroupTable.from_rows(("a", "b", "c"), codes, y, yhat, s, n_bins=100)
    assert np.array_equal(t.cells, confusion_cells(y, yhat, codes, 3))
    assert np.array_equal(t.hist.sum(axis=-1).reshape(3, 4), t.cells)
    assert np.allclose(t.score_sum.sum(axis=1), np.bincount(codes, weights=s))


@pytest.mark.parametrize(("n", "ties", "bins"), [(40, False, 10), (300, True, 100), (20000, False, 1000),
                                                 (20000, True, 50)])
def test_histogram_auc_lies_within_its_stated_bound_of_the_exact_auc(n, ties, bins):
    for seed in range(5):
        codes, y, yhat, s = _rows(n, seed, groups=1, ties=ties)
        t = GroupTable.from_rows(("a",), codes, y, yhat, s, n_bins=bins)
        auc, bound = histogram_auc(t.by_outcome(0))
        exact = float(weighted_auc(s, y, np.ones(n)))
        assert abs(auc - exact) <= bound + 1e-12
        assert bound < 0.5 / bins * 20  # the bound shrinks with the bin width


def test_histogram_auc_is_exact_when_no_bin_holds_both_outcomes():
    s = np.array([0.05, 0.15, 0.25, 0.35, 0.95])
    y = np.array([0, 1, 0, 1, 1])
    t = GroupTable.from_rows(("a",), np.zeros(5, dtype=int), y, (s >= 0.5).astype(int), s, n_bins=10)
    auc, bound = histogram_auc(t.by_outcome(0))
    assert bound == 0.0 and auc == pytest.approx(float(weighted_auc(s, y, np.ones(5))))


def test_calibration_from_the_histogram_equals_the_rows_binned_ece():
    codes, y, yhat, s = _rows(3000, 1, groups=1)
    t = GroupTable.from_rows(("a",), codes, y, yhat, s, n_bins=1000)
    count, pos, ssum = calibration_bins(t, 0, 10)
    ece_rows, cnt, ms, fp = weighted_calibration(s, y, np.ones(s.size), 10)
    assert np.array_equal(count, cnt[0])
    assert np.allclose(ssum / np.maximum(count, 1), np.nan_to_num(ms[0]))
    assert np.allclose(pos / np.maximum(count, 1), np.nan_to_num(fp[0]))
    ece = np.abs(ssum - pos).sum() / count.sum()
    assert ece == pytest.approx(float(ece_rows[0]), abs=1e-12)


def test_threshold_rates_are_exact_at_the_bin_edges():
    codes, y, yhat, s = _rows(2000, 2, groups=1)
    t = GroupTable.from_rows(("a",), codes, y, yhat, s, n_bins=100)
    rates = threshold_rates(t, 0, step=5)
    edges = np.arange(0, 101, 5) / 100
    assert np.allclose(rates["selection_rate"], [(s >= e).mean() for e in edges])
    assert np.allclose(rates["tpr"], [(s[y == 1] >= e).mean() for e in edges])
    assert np.allclose(rates["fpr"], [(s[y == 0] >= e).mean() for e in edges])


def test_sample_rows_draws_without_replacement_within_each_group():
    codes, y, yhat, s = _rows(3000, 3)
    t = GroupTable.from_rows(("a", "b", "c"), codes, y, yhat, s, n_bins=20)
    g, yy, dd, bb = sample_rows(t, [0, 2], [100, 10**6], np.random.default_rng(0))
    assert (g == 0).sum() == 100 and (g == 2).sum() == t.counts[2]  # all of group 2's rows
    drawn = np.zeros_like(t.hist)
    np.add.at(drawn, (g, yy, dd, bb), 1)
    assert np.all(drawn <= t.hist)
    assert np.array_equal(drawn[2], t.hist[2])


@pytest.mark.slow
@pytest.mark.parametrize("n", [30, 200, 3000])
@pytest.mark.parametrize("scores", ["spread", "near_0_and_1"])
def test_histogram_calibration_test_keeps_its_size_for_calibrated_scores(n, scores):
    """Calibrated outcomes (y ~ Bernoulli(s)) reject at most at the nominal 5 % (plus Monte Carlo
    error), from 30-row groups to thousands, with scores spread out or piled at 0 and 1."""
    rng = np.random.default_rng(n)
    reps, rejected = 600, 0
    for _ in range(reps):
        s = rng.beta(2, 2, n) if scores == "spread" else rng.choice([0.002, 0.01, 0.99, 0.997], n)
        y = (rng.random(n) < s).astype(np.int64)
        t = GroupTable.from_rows(("a",), np.zeros(n, dtype=int), y, (s >= 0.5).astype(int), s, n_bins=1000)
        test = histogram_calibration_test(t.hist[0].sum(axis=(0, 1)), t.hist[0, 1].sum(axis=0),
                                          t.score_sum[0], n_bins=10, n_sim=199, rng=rng)
        rejected += test.p_value <= 0.05
    se = np.sqrt(0.05 * 0.95 / reps)
    assert rejected / reps <= 0.05 + 3 * se


def test_histogram_calibration_test_detects_a_miscalibrated_model():
    rng = np.random.default_rng(0)
    s = rng.beta(2, 2, 2000)
    y = (rng.random(2000) < np.clip(s + 0.15, 0, 1)).astype(np.int64)
    t = GroupTable.from_rows(("a",), np.zeros(2000, dtype=int), y, (s >= 0.5).astype(int), s, n_bins=1000)
    test = histogram_calibration_test(t.hist[0].sum(axis=(0, 1)), t.hist[0, 1].sum(axis=0),
                                      t.score_sum[0], n_bins=10, n_sim=199, rng=rng)
    assert test.p_value == pytest.approx(1 / 200)


def test_a_table_of_decisions_without_scores_refuses_score_quantities_with_an_audit_error():
    from audit.errors import CapabilityError
    from audit.stats.counts import GroupTable, calibration_bins, threshold_rates

    table = GroupTable.from_rows(["a", "b"], np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([1, 1, 0]))
    for compute in (lambda: table.by_outcome(0), lambda: calibration_bins(table, 0, 10),
                    lambda: threshold_rates(table, 0, 1)):
        with pytest.raises(CapabilityError, match="decisions without scores"):
            compute()
