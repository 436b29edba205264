"""Monte Carlo consistency test of calibration (Bröcker & Smith 2007).

The binned expected calibration error (ECE) is biased upward: even a perfectly calibrated model
has a positive ECE on a finite sample (each bin's fraction positive is noisy, and ECE adds up the
absolute noise), and a percentile bootstrap adds that bias a second time. So the audit reports
no interval for ECE. It asks instead whether the observed ECE is larger than a perfectly
calibrated model with *these scores* would produce: outcomes ``y* ~ Bernoulli(score)`` are drawn
from the model's own scores ``n_sim`` times and the binned ECE is recomputed on each draw.
Reported: the observed ECE, the mean and the 95th percentile of that null distribution (the ECE
to expect from a calibrated model on these rows), and the Monte Carlo p-value
``(1 + #{null ECE ≥ observed}) / (n_sim + 1)`` of "the model is calibrated" (exact size under
the null for any n, given the scores: the observed ECE and the draws are exchangeable).

One Bernoulli per row and simulation costs rows × ``n_sim`` draws (10^10 at 10^7 rows and 1,000
simulations). Above ``MAX_ROW_DRAWS`` the test draws per fine score bin instead
(:func:`histogram_calibration_test` on ``FINE_PER_BIN`` equal-width bins per calibration bin):
the observed ECE is unchanged, the null is wider by at most n · width² / 4 in variance
(slightly conservative), and the result's ``note`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.stats.permutation import permutation_pvalues

#: Rows × simulations above which the calibrated outcomes are drawn per fine score bin.
MAX_ROW_DRAWS = 100_000_000
#: Fine score bins per calibration bin for those draws (width 0.001 with 10 calibration bins).
FINE_PER_BIN = 100


@dataclass(frozen=True)
class CalibrationTest:
    """Observed binned ECE, the calibrated model's null ECE on the same scores, and the p-value."""

    ece: float
    null_mean: float
    null_q95: float
    p_value: float
    n_sim: int
    n_bins: int
    #: How the calibrated outcomes were drawn when not one Bernoulli per row ("" when they were).
    note: str = ""


def binned_ece(scores: np.ndarray, outcomes: np.ndarray, n_bins: int) -> np.ndarray:
    """Binned ECE of one score vector against outcomes ``(n,)`` or many ``(B, n)``: shape ``(B,)``.

    Bins are ``n_bins`` equal-width intervals of [0, 1];
    ECE = Σ_b (n_b / n) |mean score_b − fraction positive_b|.
    """
    s = np.asarray(scores, dtype=float).reshape(-1)
    y = np.atleast_2d(np.asarray(outcomes, dtype=float))
    b = np.clip((s * n_bins).astype(np.int64), 0, n_bins - 1)
    n_b = np.bincount(b, minlength=n_bins).astype(float)
    s_b = np.bincount(b, weights=s, minlength=n_bins)
    onehot = np.zeros((s.size, n_bins))
    onehot[np.arange(s.size), b] = 1.0
    y_b = y @ onehot
    return np.abs(s_b - y_b).sum(axis=1) / max(s.size, 1)


def calibration_test(scores: np.ndarray, outcomes: np.ndarray, *, n_bins: int, n_sim: int,
                     rng: np.random.Generator, chunk_cells: int = 4_000_000) -> CalibrationTest:
    """Monte Carlo test of "P(outcome = 1 | score) = score" with the binned ECE as statistic.

    Parameters
    ----------
    scores : predicted probabilities of the outcome, in [0, 1] (binary: the positive class's
        score; multiclass top-label: the top class's probability).
    outcomes : 0/1 outcomes (multiclass top-label: 1 when the top class is right).
    n_bins : equal-width bins of the ECE.
    n_sim : simulated calibrated outcome vectors (at least 1).
    rng : the random stream.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.random(500); y = (rng.random(500) < s).astype(int)
    >>> t = calibration_test(s, y, n_bins=10, n_sim=199, rng=rng)
    >>> t.ece > 0 and t.null_mean > 0 and t.p_value > 0.05
    True
    """
    s = np.clip(np.asarray(scores, dtype=float).reshape(-1), 0.0, 1.0)
    if s.size * n_sim > MAX_ROW_DRAWS:
        return _binned_test(s, np.asarray(outcomes, dtype=float).reshape(-1), n_bins, n_sim, rng)
    obs = float(binned_ece(s, outcomes, n_bins)[0])
    null = np.empty(n_sim)
    step = max(1, chunk_cells // max(s.size, 1))
    for start in range(0, n_sim, step):
        b = min(step, n_sim - start)
        null[start:start + b] = binned_ece(s, rng.random((b, s.size)) < s, n_bins)
    # ties (discrete ECE values at small n) count against the model: exact size, conservative
    p = permutation_pvalues(obs, null).upper
    return CalibrationTest(obs, float(null.mean()), float(np.quantile(null, 0.95)), float(p),
                           int(n_sim), int(n_bins))


def _binned_test(s: np.ndarray, y: np.ndarray, n_bins: int, n_sim: int,
                 rng: np.random.Generator) -> CalibrationTest:
    """:func:`calibration_test` from a fine score histogram whose bins nest in the calibration
    bins (each row's fine bin lies inside its calibration bin, as ``binned_ece`` bins it)."""
    coarse = np.clip((s * n_bins).astype(np.int64), 0, n_bins - 1)
    fine = np.clip(((s * n_bins - coarse) * FINE_PER_BIN).astype(np.int64), 0, FINE_PER_BIN - 1)
    k = coarse * FINE_PER_BIN + fine
    size = n_bins * FINE_PER_BIN
    count = np.bincount(k, minlength=size)
    test = histogram_calibration_test(count, np.bincount(k, weights=y, minlength=size),
                                      np.bincount(k, weights=s, minlength=size),
                                      n_bins=n_bins, n_sim=n_sim, rng=rng)
    return CalibrationTest(test.ece, test.null_mean, test.null_q95, test.p_value, test.n_sim, test.n_bins,
                           f"; calibrated outcomes drawn per score bin ({size:,} bins of width "
                           f"{1 / size:.2g}) since {s.size:,} rows × {n_sim:,} simulations exceed "
                           f"{MAX_ROW_DRAWS:,} draws: slightly conservative")


def histogram_calibration_test(count: np.ndarray, positives: np.ndarray, score_sum: np.ndarray, *,
                               n_bins: int, n_sim: int, rng: np.random.Generator) -> CalibrationTest:
    """The same test from a score histogram: per fine bin its rows ``count``, ``positives`` and
    ``score_sum`` (``n_bins`` equal-width calibration bins merge ``len(count) / n_bins`` fine
    bins each).

    The observed ECE is exact (it needs only the calibration bins' sums). Calibrated outcomes
    are drawn as ``Binomial(n_k, mean score of fine bin k)`` instead of one Bernoulli per row:
    scores within a fine bin differ by less than its width, and the binomial's variance exceeds
    the rows' (Poisson-binomial) variance by Σ (s_i − s̄_k)², at most n_k · width² / 4, so the
    null is at most that much wider (conservative).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> count = np.full(100, 50); s = (np.arange(100) + 0.5) / 100
    >>> pos = rng.binomial(count, s)
    >>> t = histogram_calibration_test(count, pos, count * s, n_bins=10, n_sim=199, rng=rng)
    >>> t.p_value > 0.05
    True
    """
    count = np.asarray(count, dtype=np.int64)
    per = count.size // n_bins
    merge = lambda a: np.asarray(a, dtype=float).reshape(*np.shape(a)[:-1], n_bins, per).sum(axis=-1)  # noqa: E731
    n = max(int(count.sum()), 1)
    s_b = merge(score_sum)
    obs = float(np.abs(s_b - merge(positives)).sum() / n)
    filled = np.flatnonzero(count)
    p = np.clip(np.asarray(score_sum, dtype=float)[filled] / count[filled], 0.0, 1.0)
    null = np.empty(n_sim)
    step = max(1, 4_000_000 // max(filled.size, 1))
    for start in range(0, n_sim, step):
        b = min(step, n_sim - start)
        draws = np.zeros((b, count.size))
        draws[:, filled] = rng.binomial(count[filled], p, size=(b, filled.size))
        null[start:start + b] = np.abs(s_b - merge(draws)).sum(axis=1) / n
    p_value = permutation_pvalues(obs, null).upper
    return CalibrationTest(obs, float(null.mean()), float(np.quantile(null, 0.95)), float(p_value),
                           int(n_sim), int(n_bins))


__all__ = ["CalibrationTest", "FINE_PER_BIN", "MAX_ROW_DRAWS", "binned_ece", "calibration_test", "histogram_calibration_test"]
