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
count). It is conservative where the bound is loose; where it is attained — two-point scores,
each positive far above or far below every negative, so that Â is a binomial proportion of the
positives — it is exactly the Clopper–Pearson interval of that proportion, each bound's error
within the nominal α/2 but arbitrarily close to it (tests/test_stats_auc.py). It cannot collapse:
at Â = 1 its lower bound is (α/2)^(1/k). Variance estimates cannot do that near AUC 1 with a
small class: DeLong's variance is 0 at Â = 1 and underestimated when the rarer class's
placements are skewed, so DeLong (Wald or logit) and the percentile bootstrap put the lower
bound above the truth in up to 93 % of data sets there, and Newcombe's (2006) score interval,
whose variance model is symmetric in the two classes, in up to 8 % (benchmarks/auc_interval.py
has the grid; the README quotes it).
"""

from __future__ import annotations

import warnings

import numpy as np

from audit.stats.bootstrap import auc_from_cells
from audit.stats.proportions import group_interval

#: What the interval is, as the performance method's Estimate states it.
AUC_INTERVAL = ("Clopper–Pearson interval of the AUC as a proportion of min(positives, negatives) rows "
                "(van Dantzig's variance bound)")


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


#: Fewer rows than this of a class: the interval's error rates were not simulated, so the
#: performance method marks it unreliable and the fairness method gives none (its AUC gap then
#: treats the group's AUC as unknown).
MIN_PER_CLASS = 5

#: What the AUC gap's interval is (:func:`auc_gap_interval`), as the fairness method states it.
AUC_GAP_INTERVAL = ("range allowed by the groups' AUC intervals (" + AUC_INTERVAL.split(" (")[0]
                    + "), Bonferroni over the groups' 2·G one-sided bounds for the bound away from "
                    "parity, over the attaining pair's two for the bound towards it; conservative")


def auc_bounds(auc: np.ndarray, k: np.ndarray, confidence: float = 0.95, *,
               within: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The interval of :func:`auc_interval` from the AUC and ``k = min(m, n)``.

    ``within``: the AUC of the rows is only known to lie within this distance of ``auc`` (a
    score histogram's tie bound, :func:`audit.stats.counts.histogram_auc`). Both ends of the
    interval increase with the AUC, so the union of the intervals of every value in that range
    runs from the lower end at ``auc − within`` to the upper end at ``auc + within``: it holds
    whatever the rows' exact AUC, at the cost of that width. NaN where ``auc`` is NaN or k = 0.

    Examples
    --------
    >>> lo, hi = auc_bounds(np.array([0.9]), np.array([10]), 0.9)
    >>> round(float(lo[0]), 4), round(float(hi[0]), 4)
    (0.6058, 0.9949)
    """
    a = np.asarray(auc, dtype=float)
    k = np.asarray(k, dtype=float)
    w = np.asarray(within, dtype=float)
    lo, _ = group_interval(np.clip(np.nan_to_num(a) - w, 0, 1) * k, k, confidence, "clopper-pearson")
    _, hi = group_interval(np.clip(np.nan_to_num(a) + w, 0, 1) * k, k, confidence, "clopper-pearson")
    bad = ~np.isfinite(a) | ~(k > 0)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


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
    return (a, *auc_bounds(a, np.minimum(c[..., 0].sum(-1), c[..., 1].sum(-1)), confidence))


def auc_gap_interval(auc: np.ndarray, k: np.ndarray, ref: int | None, confidence: float = 0.95, *,
                     within: np.ndarray | float = 0.0, counted: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the AUC gap between groups from each group's :func:`auc_bounds`.

    The gap is max − min of the groups' AUCs, or with ``ref`` (a group index) the largest
    |g − ref|. ``auc``, ``k`` (the group's smaller class) and ``within`` are (..., G); leading
    axes are independent data sets. With α = 1 − ``confidence``, each bound lies beyond the
    true gap with probability at most α/2:

    - the bound *away from parity* (the lower one) is the largest gap the groups' intervals at
      level 1 − α/(2G) force apart: it exceeds the truth only if one of the G groups' 2G one-sided
      bounds fails (Bonferroni, α/(4G) each);
    - the bound *towards parity* (the upper one) is the largest gap the intervals at level
      1 − α/2 allow: it falls short only if the pair that attains the true gap has a bound on
      the wrong side (α/4 each).

    Each group's interval holds its level (simulated; exact for two-point scores), so the
    gap's bounds hold theirs, conservatively (the Bonferroni split). A ``counted`` group (default:
    every group with an AUC) whose AUC is undefined, or that has fewer than
    :data:`MIN_PER_CLASS` rows of a class (its interval's error rates were not simulated), is
    unknown: it is left out of the lower bound (a group can only widen the true gap, so the
    bound stays valid) and the upper bound is 1. Fewer than two known groups (or no known
    reference): lower 0, upper 1.

    Examples
    --------
    Two groups of 100 positives (and more negatives), AUC 0.95 and 0.70:

    >>> lo, hi = auc_gap_interval(np.array([0.95, 0.70]), np.array([100, 100]), None)
    >>> round(float(lo), 3), round(float(hi), 3)
    (0.06, 0.4)
    """
    a = np.asarray(auc, dtype=float)
    k = np.broadcast_to(np.asarray(k, dtype=float), a.shape)
    w = np.broadcast_to(np.asarray(within, dtype=float), a.shape)
    counted = np.isfinite(a) if counted is None else np.broadcast_to(np.asarray(counted, dtype=bool), a.shape)
    known = counted & np.isfinite(a) & (k >= MIN_PER_CLASS)
    n_known = known.sum(axis=-1, keepdims=True)
    alpha = 1 - confidence
    far = auc_bounds(np.where(known, a, np.nan), k, 1 - alpha / (2 * np.maximum(n_known, 1)), within=w)
    near = auc_bounds(np.where(known, a, np.nan), k, 1 - alpha / 2, within=w)
    G = a.shape[-1]
    # the compared pairs (g, h), both orders: every pair of distinct groups, or each with ref
    pair = ~np.eye(G, dtype=bool) if ref is None else np.zeros((G, G), dtype=bool)
    if ref is not None:
        pair[ref, :] = pair[:, ref] = True
        pair[ref, ref] = False
    pair = pair & known[..., :, None] & known[..., None, :]

    def gap(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # the largest x_g − y_h over the pairs
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmax(np.where(pair, x[..., :, None] - y[..., None, :], np.nan), axis=(-2, -1))

    enough = pair.any(axis=(-2, -1))
    lower, upper = gap(far[0], far[1]), gap(near[1], near[0])
    unknown = (counted & ~known).any(-1)
    lower = np.where(enough, np.clip(lower, 0, 1), 0.0)
    upper = np.where(enough & ~unknown, np.clip(upper, 0, 1), 1.0)
    return lower, upper


__all__ = ["AUC_GAP_INTERVAL", "AUC_INTERVAL", "MIN_PER_CLASS", "auc_bounds", "auc_gap_interval", "auc_interval",
           "score_table"]
