"""Group fairness with honest uncertainty: per-group metrics, disparities, intervals, tests.

What is computed, for every sensitive attribute and every configured intersection (``sex*race``):

- per group (every count-based cell from the group's confusion counts, ``np.bincount``; the
  tests check them against fairlearn's ``MetricFrame``): count, base rate, selection rate,
  accuracy, balanced accuracy, TPR, FPR, FNR, TNR, PPV, NPV; with scores also AUC and calibration
  (expected calibration error and a reliability curve); for regression mean prediction, mean
  error and MAE; for multiclass accuracy and each class's selection rate;
- between groups: demographic parity, equalized odds, equal opportunity and predictive parity as
  differences and ratios, the disparate-impact ratio with the four-fifths rule, accuracy and AUC
  differences; each relative to a reference group (``reference``) or as max − min (min / max);
  and each group rate's own disparity (``false_positive_rate_difference``, ``…_ratio``, ...,
  :data:`RATE_DISPARITY_BASES`) for the gate; with ``favourable = "negative"`` demographic parity
  and disparate impact compare the rate of the favourable (negative) decision;
- for every rate (a proportion of a group's rows): the Clopper–Pearson interval; for every
  disparity of rates: the simultaneous score interval of :mod:`audit.stats.proportions` (MOVER
  differences / ratios of every compared pair, Bonferroni over the pairs on the bound away from
  parity: each bound misses with probability at most (1 − confidence) / 2 in every regime), and
  its test, the inversion of the same intervals, so that the findings and the gate cannot
  disagree; families (one null hypothesis per attribute and criterion) are explicit;
- percentile bootstrap intervals (resampling within groups, :mod:`audit.stats.bootstrap`) for what
  is not a proportion: balanced accuracy, AUC, regression means; the calibration error (binned
  ECE, biased upward) gets no interval but each group's Monte Carlo test of calibration
  (:mod:`audit.stats.calibration`, ``n_bootstrap`` simulations; on the reliability curve); regression
  disparities keep a permutation test, Holm-adjusted over the attribute's three disparities;
- a power note per group (the smallest gap to its best partner that the pairwise test, at its
  corrected level, detects with probability ``power``; normal approximation);
- threshold curves per group and a what-if with fairlearn's ThresholdOptimizer (information only;
  above ``what_if_rows`` rows on a stratified sample, its cost grows with the rows).

Labels are encoded to 0/1 with the declared positive label before fairlearn sees them (with string
labels fairlearn silently reports 0.0 selection rates). A rate whose denominator is empty in a
group is *undefined* (``None`` with the reason), never 0; it is left out of the disparities'
point estimates, but its rate counts as unknown (anywhere in [0, 1]) in their intervals, so the
gate cannot pass on the other groups alone.
Groups smaller than ``min_group_size`` are "too small to judge": they get no numbers and are
left out of disparities (the gate reports insufficient evidence for them).

The package's modules: :mod:`.config` (options and names), :mod:`.results` (result types),
:mod:`.formulas` (disparity formulas, score intervals), :mod:`.groups` (input checks, grouping),
:mod:`.binary`, :mod:`.regression`, :mod:`.multiclass` (the task analyses), :mod:`.what_if`,
:mod:`.figures` and :mod:`.method` (the method itself).
"""

from __future__ import annotations

from audit.methods.fairness.config import (
    FairnessConfig,
    attribute_sets,
    disparity_names,
    normalize_set_name,
    parse_set_key,
    set_name,
)
from audit.methods.fairness.formulas import binary_disparities, score_disparities
from audit.methods.fairness.method import Fairness
from audit.methods.fairness.results import AttributeResult, Disparity, Estimate, FairnessResult, GroupRow
from audit.methods.fairness.what_if import what_if_sample

__all__ = [
    "AttributeResult",
    "Disparity",
    "Estimate",
    "Fairness",
    "FairnessConfig",
    "FairnessResult",
    "GroupRow",
    "attribute_sets",
    "binary_disparities",
    "disparity_names",
    "normalize_set_name",
    "parse_set_key",
    "score_disparities",
    "set_name",
    "what_if_sample",
]
