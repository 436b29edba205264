"""The AUC interval from a count table (audit/stats/auc.py): known values, ties, perfect
separation, and its error rates by simulation; and benchmarks/auc_interval.py's rival
intervals against brute force and a published example (its grid is what chose the interval)."""

from __future__ import annotations

import numpy as np
import pytest

from audit.stats.auc import auc_interval, score_table


@pytest.fixture(scope="module")
def bench():
    from tests.conftest import load_benchmark

    return load_benchmark("auc_interval")


def test_the_interval_is_clopper_pearson_of_the_auc_as_a_proportion_of_the_smaller_class():
    """AUC 0.9 with 10 positives (one tie block) is the interval of 9 successes in 10 trials;
    perfect separation keeps a lower bound of (α/2)^(1/k) below 1; the larger class does not
    narrow it; without both outcomes everything is NaN."""
    from scipy.stats import beta

    table = np.array([[16, 0], [8, 2], [16, 0], [0, 8]])  # positives: 2 tied with 8 negatives
    a, lo, hi = auc_interval(table, 0.9)
    assert float(a) == pytest.approx(0.9)
    assert (float(lo), float(hi)) == pytest.approx((beta.ppf(0.05, 9, 2), beta.ppf(0.95, 10, 1)), abs=1e-12)
    for n_neg in (5, 50, 5000):
        a, lo, hi = auc_interval(np.array([[n_neg, 0], [0, 5]]), 0.95)
        assert (float(a), float(hi)) == (1.0, 1.0) and float(lo) == pytest.approx(0.025 ** (1 / 5))
    a, lo, hi = auc_interval(np.array([[0, 3], [0, 4]]))
    assert np.isnan(a) and np.isnan(lo) and np.isnan(hi)


def test_table_auc_equals_scikit_learns_with_ties_and_the_interval_is_the_same_on_a_histogram():
    """Exact rows go through their distinct scores; a coarser histogram of the same rows is a
    table too (its ties count one half), and a batch of tables gives each its own interval."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(int)
    s = np.round(rng.random(400) * 0.7 + 0.3 * y, 2)
    table = score_table(s, y)
    a, lo, hi = auc_interval(table)
    assert float(a) == pytest.approx(roc_auc_score(y, s), abs=1e-12) and lo < a < hi
    hist = np.stack([np.bincount((s[y == k] * 10).astype(int), minlength=11) for k in (0, 1)], axis=1)
    ah, _, _ = auc_interval(hist)
    assert float(ah) == pytest.approx(roc_auc_score(y, np.floor(s * 10)), abs=1e-12)
    batch = auc_interval(np.stack([table, table[::-1]]))
    assert batch[0].shape == (2,) and batch[1][0] == pytest.approx(lo)


def test_delong_variance_of_the_benchmark_equals_the_pairwise_brute_force_with_ties(bench):
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)
    for s in (rng.normal(size=300) + y, np.round(rng.normal(size=300) + y, 1)):  # continuous, tied
        pos, neg = s[y == 1], s[y == 0]
        kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        want = kernel.mean(axis=1).var(ddof=1) / len(pos) + kernel.mean(axis=0).var(ddof=1) / len(neg)
        a, v = bench.auc_moments(score_table(s, y))
        assert float(a) == pytest.approx(kernel.mean(), abs=1e-12) and float(v) == pytest.approx(want, rel=1e-10)


def test_newcombe_interval_of_the_benchmark_reproduces_a_published_example(bench):
    """SingleCaseES's NAP example (Newcombe's method 5): baseline 20, 20, 26, 25, 22, 23 and
    treatment 28, 25, 24, 27, 30, 30, 29 give 0.9167 (0.5973406, 0.9860176), found by R's
    ``uniroot`` at its default tolerance (1.2e-4); each bound here solves the defining equation
    (Â − θ)² = z² V(θ) to machine precision."""
    from scipy.stats import norm

    s = np.array([20, 20, 26, 25, 22, 23, 28, 25, 24, 27, 30, 30, 29], dtype=float)
    y = np.r_[np.zeros(6, int), np.ones(7, int)]
    a, _, _ = auc_interval(score_table(s, y))
    lo, hi = bench.newcombe_interval(a, 7, 6, 0.95)
    assert float(a) == pytest.approx(11 / 12)
    assert (float(lo), float(hi)) == pytest.approx((0.5973406, 0.9860176), abs=1.2e-4)
    for bound in (lo, hi):
        assert (a - bound) ** 2 == pytest.approx(norm.ppf(0.975) ** 2 * bench.newcombe_variance(bound, 7, 6),
                                                 rel=1e-9)


#: Hard cells of benchmarks/auc_interval.py's grid: (shape, AUC, positives, negatives), where
#: DeLong, the bootstrap or Newcombe's interval erred most (skewed placements of a small class,
#: AUC near 1, ties, tiny balanced classes).
HARD = [("pos_wide", 0.97, 30, 1470), ("pos_wide", 0.97, 5, 5), ("pos_wide", 0.5, 5, 245),
        ("binormal", 0.995, 5, 245), ("neg_wide", 0.9, 10, 10), ("ties", 0.97, 10, 490),
        ("pos_wide", 0.995, 10, 10), ("binormal", 0.9, 100, 4900)]


@pytest.mark.slow
@pytest.mark.parametrize("shape, auc, m, n", HARD)
def test_each_bound_errs_on_its_side_at_most_nominally_where_other_intervals_fail(bench, shape, auc, m, n):
    """P(lower > θ) (a ``min`` rule at the true AUC passes falsely) and P(upper < θ) (``max``
    does) each at most (1 − c)/2 + 3 Monte Carlo SE, at 95 % and 90 %."""
    reps = 2000
    rng = np.random.default_rng([m, n, int(auc * 1000)])
    tables, theta = bench.tables(rng, reps, m, n, auc, shape), bench.truth(auc, shape)
    for conf in (0.95, 0.90):
        nominal = (1 - conf) / 2
        _, lo, hi = auc_interval(tables, conf)
        slack = 3 * np.sqrt(nominal * (1 - nominal) / reps)
        assert np.mean(lo > theta + 1e-12) <= nominal + slack and np.mean(hi < theta - 1e-12) <= nominal + slack


def test_auc_gap_interval_is_the_bonferroni_range_of_the_groups_intervals():
    """Lower bound: the largest gap the groups' intervals at 1 − α/(2G) force apart; upper: the
    largest gap their intervals at 1 − α/2 allow, over distinct groups (max − min) or each group
    against the reference; clipped to [0, 1]."""
    from audit.stats.auc import auc_bounds, auc_gap_interval

    a, k = np.array([0.95, 0.70, 0.80]), np.array([100, 100, 60])
    far, near = auc_bounds(a, k, 1 - 0.05 / 6), auc_bounds(a, k, 1 - 0.05 / 2)
    lo, hi = auc_gap_interval(a, k, None, 0.95)
    assert float(lo) == pytest.approx(far[0][0] - far[1][1]) and float(hi) == pytest.approx(near[1][0] - near[0][1])
    lo, hi = auc_gap_interval(a, k, 2, 0.95)  # vs the reference (0.80): 0.95 is the farther group
    assert float(lo) == pytest.approx(max(0.0, far[0][0] - far[1][2], far[0][2] - far[1][1]))
    assert float(hi) == pytest.approx(max(near[1][0] - near[0][2], near[1][2] - near[0][1]))
    # the same group never pairs with itself: one wide group alone bounds nothing
    lo, hi = auc_gap_interval(np.array([0.9, 0.9]), np.array([5, 1000]), None, 0.95)
    b5, b1000 = auc_bounds(np.array([0.9, 0.9]), np.array([5, 1000]), 0.975)
    assert float(lo) == 0.0 and float(hi) == pytest.approx(max(b5[1] - b1000[0], b1000[1] - b5[0]))


def test_auc_gap_interval_treats_a_group_without_a_usable_interval_as_unknown():
    """A counted group with no AUC or fewer than 5 rows of a class: left out of the lower bound
    (which then counts only the known groups in its Bonferroni split) and the upper bound is 1;
    with fewer than two known groups the interval is [0, 1]."""
    from audit.stats.auc import MIN_PER_CLASS, auc_gap_interval

    a, k = np.array([0.99, 0.55, 0.05]), np.array([200, 200, MIN_PER_CLASS - 1])
    lo, hi = auc_gap_interval(a, k, None, 0.95, counted=np.ones(3, bool))
    lo2, _ = auc_gap_interval(a[:2], k[:2], None, 0.95)
    assert float(lo) == pytest.approx(float(lo2)) and lo > 0.2 and float(hi) == 1.0
    lo, hi = auc_gap_interval(np.array([0.9, np.nan, 0.5]), np.array([50, 50, 50]), None, 0.95,
                              counted=np.ones(3, bool))
    assert 0 < lo and float(hi) == 1.0
    assert auc_gap_interval(np.array([0.9, 0.5]), np.array([50, 3]), 0, 0.95) == (0.0, 1.0)


def test_auc_bounds_widened_by_a_histogram_bound_contain_every_exact_aucs_interval():
    from audit.stats.auc import auc_bounds

    for a, k, w in ((0.9, 10, 0.02), (0.999, 40, 0.01), (0.01, 7, 0.05), (0.5, 300, 0.001)):
        lo, hi = auc_bounds(np.array(a), k, 0.95, within=w)
        for exact in np.linspace(max(0, a - w), min(1, a + w), 11):
            x_lo, x_hi = auc_bounds(np.array(exact), k, 0.95)
            assert lo <= x_lo + 1e-12 and x_hi <= hi + 1e-12 and 0 <= lo and hi <= 1


def test_auc_gap_errors_stay_within_nominal_over_tiny_groups_and_auc_up_to_1():
    """benchmarks/fairness_auc_gap.py's grid (2–10 groups with 5–500 rows of a class, AUC 0.5–1
    with continuous, skewed, tied and perfectly separated scores, zero and planted gaps, max − min
    and vs a reference), 1,500 data sets per cell: each bound beyond the true gap at most 2.5 %
    plus 3 Monte Carlo SEs (measured with 4,000: 0 in every cell), and the interval not trivial
    where the groups are large (it excludes a 0.1 gap between two groups of 500 + 500 rows most
    of the time)."""
    from tests.conftest import load_benchmark

    bench = load_benchmark("fairness_auc_gap")
    reps = 1500
    band = 0.025 + 3 * np.sqrt(0.025 * 0.975 / reps)
    rng = np.random.default_rng(5)
    for cell in bench.CELLS:
        lo_err, hi_err, width, power, gap = bench.simulate(cell, reps, rng)
        assert lo_err <= band and hi_err <= band, (cell, lo_err, hi_err)
        assert 0 < width <= 1
    assert bench.simulate("2 x 500+500 gap 0.8/0.9", reps, rng)[3] > 0.8


def test_two_point_scores_reach_but_never_exceed_the_nominal_error():
    """Where van Dantzig's bound is attained — each positive scores far above or far below every
    negative — the AUC is a binomial proportion of the positives and the interval is exactly
    Clopper–Pearson's: each bound's error, computed exactly over the binomial, stays within the
    nominal 2.5 % and comes arbitrarily close to it, so the interval is not conservative there."""
    from scipy.stats import binom

    from audit.stats.auc import auc_interval

    for m in (6, 15):
        x = np.arange(m + 1)
        tables = np.array([[[0, m - k], [50, 0], [0, k]] for k in x])  # low positives, negatives, high positives
        auc, lo, hi = auc_interval(tables)
        np.testing.assert_allclose(auc, x / m)
        p = np.linspace(0.0005, 0.9995, 20_000)[:, None]  # the true AUC
        w = binom.pmf(x[None, :], m, p)
        below, above = (w * (hi < p)).sum(1), (w * (lo > p)).sum(1)
        assert below.max() <= 0.025 + 1e-12 and above.max() <= 0.025 + 1e-12, m
        assert below.max() > 0.0249 and above.max() > 0.0249, (m, below.max(), above.max())
