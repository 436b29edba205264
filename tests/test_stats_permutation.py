"""Known answers for audit.stats.permutation and audit.stats.multiplicity."""

from __future__ import annotations

import numpy as np
import pytest

from audit.errors import InvalidConfigError
from audit.stats.multiplicity import benjamini_hochberg, bonferroni, holm, maxt_stepdown
from audit.stats.permutation import check_n_permutations, permutation_pvalues


def test_pvalues_count_the_observed_in_both_tails():
    null = np.arange(1.0, 20.0)[:, None]          # 1..19, B = 19
    p = permutation_pvalues(np.array([25.0]), null)
    assert p.upper[0] == pytest.approx(1 / 20)
    assert p.lower[0] == pytest.approx(1.0)
    assert p.two_sided[0] == pytest.approx(2 / 20)
    p = permutation_pvalues(np.array([10.0]), null)   # ties count as at least as extreme
    assert p.upper[0] == pytest.approx(11 / 20) and p.lower[0] == pytest.approx(11 / 20)
    assert p.two_sided[0] == 1.0


def test_two_sided_uses_the_tails_not_absolute_values():
    # a null centred at 5: an observed 0 is extreme on the low side although |0| is small
    null = np.full((99, 1), 5.0) + np.linspace(-1, 1, 99)[:, None]
    p = permutation_pvalues(np.array([0.0]), null)
    assert p.two_sided[0] == pytest.approx(2 / 100)


def test_non_finite_null_rows_are_excluded_and_counted():
    null = np.arange(1.0, 21.0)[:, None].repeat(2, 1)
    null[3, 1] = np.nan
    null[7, 0] = np.inf
    p = permutation_pvalues(np.array([30.0, 30.0]), null)
    assert p.n_null == 18 and p.n_excluded == 2
    assert p.upper[0] == pytest.approx(1 / 19)


@pytest.mark.parametrize("bad", [18, 0, 99.5, "999", True])
def test_too_few_or_non_integer_permutations_are_refused(bad):
    with pytest.raises(InvalidConfigError, match="n_permutations"):
        check_n_permutations(bad)


def test_bh_holm_bonferroni_known_values():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # BH: sorted 0.005, 0.01, 0.03, 0.04 with m = 4 -> 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg(p)[:4].tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert holm(p)[:4].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bonferroni(p)[:4].tolist() == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert np.isnan(benjamini_hochberg(p)[4]) and np.isnan(holm(p)[4])


def test_maxt_is_between_raw_and_bonferroni_and_monotone():
    rng = np.random.default_rng(1)
    B, m = 999, 8
    common = rng.normal(size=(B, 1))
    null = 0.8 * common + 0.6 * rng.normal(size=(B, m))   # correlated statistics
    obs = np.array([3.5, 3.0, 2.5, 0.5, -0.2, 1.0, -3.2, 0.0])
    raw = permutation_pvalues(obs, null).two_sided
    adj = maxt_stepdown(obs, null, "two-sided")
    assert np.all(adj >= raw - 1e-12)
    assert np.all(adj <= np.minimum(1, raw * m) + 1e-12)
    order = np.argsort(-np.abs(obs))
    assert np.all(np.diff(adj[order]) >= -1e-12)


def test_maxt_controls_familywise_error_under_the_null():
    rng = np.random.default_rng(2)
    rejections = 0
    for _ in range(200):
        draws = rng.normal(size=(100, 5)) + 0.7 * rng.normal(size=(100, 1))
        obs, null = draws[0], draws[1:]
        rejections += bool((maxt_stepdown(obs, null) <= 0.05).any())
    assert rejections / 200 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)
