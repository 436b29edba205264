"""The ROC AUC and its confidence interval from a count table of scores by outcome.

The AUC is the Mann–Whitney parameter θ = P(score of a positive > score of a negative) +
½ P(tie). Everything here is a function of the table ``counts`` (..., K, 2): for each of K
score values (or histogram bins) in increasing order, the number of negatives and of
positives there. Rows become a table through their distinct scores (:func:`score_table`,
lossless), and a score histogram is one already (the fairness method's streamed tables).

The interval (:func:`auc_interval`) rests on a bound, not on an estimated variance: whatever
the score distributions, the variance of the estimate Â is at most θ(1 − θ) / min(m, n) for m
positives and n negatives (van Dantzig 1951; Birnbaum & Klose 1957), the variance of a
proportion among min(m, n) rows. So the interval is the Clopper–Pearson interval of Â read as
such a proportion, k·Â "successes" of k = min(m, n) (beta quantiles, which take a non-integer
count). It is conservative by construction where the bound is loose, and it cannot collapse:
at Â = 1 its lower bound is (α/2)^(1/k). Variance estimates cannot do that near AUC 1 with a
small class: DeLong's variance is 0 at Â = 1 and underestimated when the rarer class's
placements are skewed, so DeLong (Wald or logit) and the percentile bootstrap put the lower
bound above the truth in up to 93 % of data sets there, and Newcombe's (2006) score interval,
whose variance model is symmetric in the two classes, in up to 8 % (benchmarks/auc_interval.py
has the grid; the README quotes it).
"""

from __future__ import annotations

import numpy as np

from audit.stats.bootstrap import auc_from_cells
from audit.stats.proportions import group_interval

#: What the interval is, as the performance method's Estimate states it.
AUC_INTERVAL = ("Clopper–Pearson interval of the AUC as a proportion of min(positives, negatives) rows "
                "(van Dantzig's variance bound; conservative)")


def score_table(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The (K, 2) table of negatives / positives at each distinct score, in increasing order.

    Examples
    --------
    >>> score_table(np.array([0.3, 0.1, 0.3, 0.9]), np.array([1, 0, 0, 1])).tolist()
    [[1, 0], [1, 1], [0, 1]]
    """
    _, cell = np.unique(np.asarray(scores, dtype=float), return_inverse=True)
    k = int(cell.max(initial=-1)) + 1
    return np.bincount(cell.reshape(-1) * 2 + np.asarray(y, dtype=np.int64).reshape(-1),
                       minlength=2 * k).reshape(k, 2)


def auc_interval(counts: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The AUC of ``counts`` (..., K, 2) and its two-sided interval at ``confidence``.

    Returns ``(auc, lower, upper)``: the Clopper–Pearson interval of ``k · auc`` successes in
    ``k = min(m, n)`` trials (see the module docstring). NaN without both outcomes.

    Examples
    --------
    Every positive above every negative, 5 positives: the lower bound is 0.025^(1/5).

    >>> a, lo, hi = auc_interval(np.array([[20, 0], [0, 5]]))
    >>> float(a), bool(np.isclose(lo, 0.025 ** (1 / 5))), float(hi)
    (1.0, True, 1.0)

    Ties count one half; with 10 positives and AUC 0.9 this is the interval of 9 of 10.

    >>> a, lo, hi = auc_interval(np.array([[16, 0], [8, 2], [16, 0], [0, 8]]))
    >>> round(float(a), 4), round(float(lo), 4), round(float(hi), 4)
    (0.9, 0.555, 0.9975)
    """
    c = np.asarray(counts)
    a = auc_from_cells(c)
    k = np.minimum(c[..., 0].sum(-1), c[..., 1].sum(-1)).astype(float)
    lo, hi = group_interval(np.nan_to_num(a) * k, k, confidence, "clopper-pearson")
    bad = ~np.isfinite(a)
    return a, np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


__all__ = ["AUC_INTERVAL", "auc_interval", "score_table"]
