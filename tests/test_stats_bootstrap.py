"""Known-answer and statistical checks of audit.stats.bootstrap and audit.stats.fairness_tests."""

from __future__ import annotations

import numpy as np
import pytest

from audit.stats.bootstrap import (
    auc_from_cells,
    bootstrap_cells,
    bootstrap_score_metrics,
    confusion_cells,
    percentile_interval,
    rates_from_cells,
    score_cells,
    weighted_auc,
    weighted_calibration,
)
from audit.stats.fairness_tests import (
    benjamini_hochberg,
    holm,
    min_detectable_difference,
    permutation_pvalue,
    permute_cells,
)


def test_rates_from_cells_known_values_and_undefined():
    # group 0: tn=3 fp=1 fn=2 tp=4 ; group 1: no positive outcomes at all
    cells = np.array([[3, 1, 2, 4], [5, 5, 0, 0]])
    r = rates_from_cells(cells)
    assert r["selection_rate"][0] == pytest.approx(0.5)
    assert r["tpr"][0] == pytest.approx(4 / 6)
    assert r["fpr"][0] == pytest.approx(1 / 4)
    assert r["ppv"][0] == pytest.approx(4 / 5)
    assert r["npv"][0] == pytest.approx(3 / 5)
    assert r["balanced_accuracy"][0] == pytest.approx((4 / 6 + 3 / 4) / 2)
    for k in ("tpr", "fnr", "balanced_accuracy"):
        assert np.isnan(r[k][1]), k  # undefined, never 0
    assert r["fpr"][1] == pytest.approx(0.5)


def test_confusion_cells_matches_loop():
    rng = np.random.default_rng(0)
    y, p, g = rng.integers(0, 2, 500), rng.integers(0, 2, 500), rng.integers(0, 3, 500)
    cells = confusion_cells(y, p, g, 3)
    for k in range(3):
        m = g == k
        assert cells[k].tolist() == [np.sum(m & (y == 0) & (p == 0)), np.sum(m & (y == 0) & (p == 1)),
                                     np.sum(m & (y == 1) & (p == 0)), np.sum(m & (y == 1) & (p == 1))]


def test_bootstrap_cells_keeps_group_sizes_and_matches_binomial_variance():
    cells = np.array([[400, 100, 50, 450], [3, 0, 0, 0]])  # a 3-row group never vanishes
    boot = bootstrap_cells(cells, 4000, np.random.default_rng(1))
    assert (boot.sum(axis=2) == cells.sum(axis=1)).all()
    assert (boot[:, 1, 0] == 3).all()
    sel = rates_from_cells(boot)["selection_rate"][:, 0]
    p = 550 / 1000
    assert sel.mean() == pytest.approx(p, abs=0.003)
    assert sel.std() == pytest.approx(np.sqrt(p * (1 - p) / 1000), rel=0.06)


def test_weighted_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    s = np.round(rng.random(300), 1)  # many ties
    y = (rng.random(300) < s).astype(int)
    assert weighted_auc(s, y, np.ones(300)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    w = rng.integers(0, 3, 300)
    rep = np.repeat(np.arange(300), w)
    assert weighted_auc(s, y, w) == pytest.approx(roc_auc_score(y[rep], s[rep]), abs=1e-12)
    counts, _, _ = score_cells(s, y, n_bins=10)  # 11 distinct scores: lossless cells
    assert float(auc_from_cells(counts)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(weighted_auc(s, np.zeros(300), np.ones(300)))


def test_calibration_perfect_and_score_bootstrap_centred():
    s = np.repeat([0.05, 0.25, 0.75], 400)
    y = np.concatenate([np.r_[np.ones(20), np.zeros(380)], np.r_[np.ones(100), np.zeros(300)],
                        np.r_[np.ones(300), np.zeros(100)]])
    ece, count, mean_s, frac = weighted_calibration(s, y, np.ones(s.size), 10)
    assert ece[0] == pytest.approx(0.0, abs=1e-12)
    assert frac[0, 2] == pytest.approx(0.25)
    auc_b, ece_b, auc_c, ece_c = bootstrap_score_metrics(s, y, 500, np.random.default_rng(0), n_bins=10)
    assert auc_c == pytest.approx(weighted_auc(s, y, np.ones(s.size)))
    assert np.nanmean(auc_b) == pytest.approx(auc_c, abs=0.01)


def test_percentile_interval_undefined_when_unstable():
    x = np.r_[np.full(80, np.nan), np.linspace(0, 1, 20)]
    lo, hi = percentile_interval(x, 0.95)
    assert np.isnan(lo) and np.isnan(hi)
    lo, hi = percentile_interval(np.linspace(0, 1, 1001), 0.9)
    assert (float(lo), float(hi)) == pytest.approx((0.05, 0.95))


def test_permute_cells_keeps_margins():
    cells = np.array([[30, 10, 5, 15], [100, 20, 40, 60], [7, 1, 2, 0]])
    for strata in ([[0, 1, 2, 3]], [[0, 1], [2, 3]], [[0, 2], [1, 3]]):
        perm = permute_cells(cells, strata, 200, np.random.default_rng(3))
        assert (perm.sum(axis=1) == cells.sum(axis=0)).all()  # pooled cells kept
        for st in strata:  # each group's rows within every stratum kept
            assert (perm[:, :, st].sum(axis=2) == cells[:, st].sum(axis=1)).all()


def test_permute_cells_distribution_matches_row_shuffle():
    rng = np.random.default_rng(4)
    g = np.repeat([0, 1], [40, 60])
    y = (rng.random(100) < 0.3).astype(int)
    cells = confusion_cells(y, y, g, 2)
    perm = permute_cells(cells, [[0, 1, 2, 3]], 20000, rng)[:, 0, 3]
    shuffled = np.array([np.sum(y[rng.permutation(100)][:40]) for _ in range(20000)])
    assert perm.mean() == pytest.approx(shuffled.mean(), abs=0.05)
    assert perm.std() == pytest.approx(shuffled.std(), rel=0.05)


def test_pvalue_and_multiplicity_known_values():
    assert permutation_pvalue(1.0, np.array([0.0, 0.5, 1.0, 2.0])) == pytest.approx(3 / 5)
    assert np.isnan(permutation_pvalue(float("nan"), np.zeros(5)))
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    assert holm(p)[:4].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert benjamini_hochberg(p)[:4].tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(holm(p)[4]) and np.isnan(benjamini_hochberg(p)[4])


def test_min_detectable_difference_shrinks_with_n():
    small = min_detectable_difference(0.3, 50, 5000, alpha=0.05)
    large = min_detectable_difference(0.3, 5000, 5000, alpha=0.05)
    assert small > 0.15 > 0.03 > large
    assert np.isnan(min_detectable_difference(0.3, 0, 10, alpha=0.05))


@pytest.mark.slow
def test_interval_coverage_near_nominal():
    """95% percentile intervals of a selection-rate difference cover the truth ~95% of the time."""
    from audit.methods.fairness import spread_difference

    rng = np.random.default_rng(5)
    p = np.array([0.45, 0.30])
    n = np.array([400, 250])
    truth = 0.15
    hits = 0
    reps = 400
    for _ in range(reps):
        sel = rng.binomial(n, p)
        cells = np.column_stack([n - sel, sel, np.zeros(2, int), np.zeros(2, int)])
        boot = rates_from_cells(bootstrap_cells(cells, 1000, rng))["selection_rate"]
        lo, hi = percentile_interval(spread_difference(boot), 0.95)
        hits += lo <= truth <= hi
    assert 0.91 <= hits / reps <= 0.98


@pytest.mark.slow
def test_permutation_false_positive_rate_near_alpha():
    """Under no disparity (equal TPR/FPR, different base rates) the conditional test rejects ~α."""
    from audit.methods.fairness import binary_disparities

    rng = np.random.default_rng(6)
    n = np.array([300, 200, 120])
    base = np.array([0.2, 0.4, 0.3])  # base rates differ; error rates do not
    reps, alpha = 400, 0.05
    rejects = {"equalized_odds_difference": 0, "demographic_parity_difference": 0}
    for _ in range(reps):
        pos = rng.binomial(n, base)
        tp = rng.binomial(pos, 0.7)
        fp = rng.binomial(n - pos, 0.2)
        cells = np.column_stack([n - pos - fp, fp, pos - tp, tp])
        obs = binary_disparities(rates_from_cells(cells), None)
        perm = permute_cells(cells, [[0, 1], [2, 3]], 199, rng)
        null = binary_disparities(rates_from_cells(perm), None)
        k = "equalized_odds_difference"
        rejects[k] += permutation_pvalue(float(obs[k]), null[k]) <= alpha
        # demographic parity genuinely differs here (base rates differ): should reject often
        perm = permute_cells(cells, [[0, 1, 2, 3]], 199, rng)
        null = binary_disparities(rates_from_cells(perm), None)
        k = "demographic_parity_difference"
        rejects[k] += permutation_pvalue(float(obs[k]), null[k]) <= alpha
    assert rejects["equalized_odds_difference"] / reps <= alpha + 0.03
    assert rejects["equalized_odds_difference"] / reps >= alpha - 0.035
    assert rejects["demographic_parity_difference"] / reps > 0.25  # far above alpha


@pytest.mark.slow
def test_disparity_intervals_cover_the_true_gap_with_many_small_groups():
    """The percentile interval of a max-min over 10 groups of 60 rows covers the true gap almost
    never (measured: 0%); the joint pairwise intervals cover it at least at the nominal level,
    and with two large groups they are as tight as the ordinary interval (~95%)."""
    from audit.methods.fairness import spread_difference
    from audit.stats.bootstrap import disparity_interval

    rng = np.random.default_rng(11)
    for p, n, floor in [(np.r_[np.full(9, 0.3), 0.4], np.full(10, 60), 0.93),
                        (np.array([0.45, 0.30]), np.array([400, 250]), 0.91)]:
        truth = p.max() - p.min()
        hits = pct_hits = 0
        reps = 200
        for _ in range(reps):
            sel = rng.binomial(n, p)
            cells = np.column_stack([n - sel, sel, np.zeros(len(n), int), np.zeros(len(n), int)])
            point = rates_from_cells(cells)["selection_rate"]
            boot = rates_from_cells(bootstrap_cells(cells, 1000, rng))["selection_rate"]
            lo, hi = disparity_interval(point, boot, "difference", None, 0.95)
            hits += lo <= truth <= hi
            plo, phi = percentile_interval(spread_difference(boot), 0.95)
            pct_hits += plo <= truth <= phi
        assert hits / reps >= floor
        if len(n) == 10:
            assert pct_hits / reps < 0.2  # why the percentile interval is not used here
