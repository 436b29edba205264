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
  (:mod:`audit.stats.calibration`, ``n_boot`` simulations; on the reliability curve); regression
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
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import AuditMethod, Finding, MethodConfig, MethodResult, RunContext
from audit.errors import DataValidationError, InvalidConfigError, did_you_mean
from audit.stats.bootstrap import (
    RATE_METRICS,
    bootstrap_cells,
    bootstrap_score_metrics,
    confusion_cells,
    disparity_interval,
    group_codes,
    multiclass_rates_from_cells,
    percentile_interval,
    rate_counts,
    rates_from_cells,
    row_weights,
    weighted_auc,
    weighted_calibration,
    weighted_means,
)
from audit.stats.calibration import CalibrationTest, calibration_test
from audit.stats.fairness_tests import (
    min_detectable_difference,
    min_detectable_mean_difference,
    permutation_pvalue,
)
from audit.stats.multiplicity import holm
from audit.stats.proportions import GROUP_METHOD, disparity_score_interval, group_interval

#: Separator of attribute names in an intersection's name (``"sex*race"``); ``×`` and ``&``
#: are accepted as synonyms in gate keys and config.
INTERSECTION_SEP = "*"
_GROUP_SEP = " × "
TOO_SMALL = "too small to judge"

METRIC_LABELS = {
    "count": "rows", "base_rate": "base rate", "selection_rate": "selection rate",
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "tpr": "TPR", "fpr": "FPR",
    "fnr": "FNR", "tnr": "TNR", "ppv": "PPV", "npv": "NPV", "auc": "AUC",
    "ece": "ECE (calibration error)",
    "favourable_rate": "favourable outcome rate",
    "mean_prediction": "mean prediction", "mean_error": "mean error (pred − true)", "mae": "MAE",
}

#: Disparities per task: name -> (label, group metric it compares).
BINARY_DISPARITIES: dict[str, tuple[str, str]] = {
    "demographic_parity_difference": ("demographic parity difference", "selection_rate"),
    "demographic_parity_ratio": ("demographic parity ratio", "selection_rate"),
    "disparate_impact_ratio": ("disparate impact ratio (four-fifths rule)", "selection_rate"),
    "equalized_odds_difference": ("equalized odds difference (max of TPR, FPR)", "tpr,fpr"),
    "equalized_odds_ratio": ("equalized odds ratio (min of TPR, FPR)", "tpr,fpr"),
    "equal_opportunity_difference": ("equal opportunity difference (TPR)", "tpr"),
    "equal_opportunity_ratio": ("equal opportunity ratio (TPR)", "tpr"),
    "predictive_parity_difference": ("predictive parity difference (PPV)", "ppv"),
    "predictive_parity_ratio": ("predictive parity ratio (PPV)", "ppv"),
    "accuracy_difference": ("accuracy difference", "accuracy"),
    "auc_difference": ("AUC difference", "auc"),
}
#: Each group rate's own disparity (for the gate): rate name -> (group metric, label, the null
#: hypothesis it tests). FNR = 1 − TPR and TNR = 1 − FPR, so they test the same hypotheses.
RATE_DISPARITY_BASES: dict[str, tuple[str, str, str]] = {
    "selection_rate": ("selection_rate", "selection rate", "equal selection rates"),
    "true_positive_rate": ("tpr", "TPR", "equal TPR"),
    "false_positive_rate": ("fpr", "FPR", "equal FPR"),
    "false_negative_rate": ("fnr", "FNR", "equal TPR"),
    "true_negative_rate": ("tnr", "TNR", "equal FPR"),
    "positive_predictive_value": ("ppv", "PPV", "equal PPV"),
    "negative_predictive_value": ("npv", "NPV", "equal NPV"),
}
for _rate, (_base, _label, _) in RATE_DISPARITY_BASES.items():
    BINARY_DISPARITIES[f"{_rate}_difference"] = (f"{_label} difference", _base)
    BINARY_DISPARITIES[f"{_rate}_ratio"] = (f"{_label} ratio", _base)
#: The per-rate disparities, shown apart from the headline criteria in the report.
RATE_DISPARITIES = tuple(f"{r}_{kind}" for r in RATE_DISPARITY_BASES for kind in ("difference", "ratio"))
REGRESSION_DISPARITIES: dict[str, tuple[str, str]] = {
    "mean_prediction_difference": ("mean prediction difference", "mean_prediction"),
    "mean_error_difference": ("mean error difference", "mean_error"),
    "mae_difference": ("MAE difference", "mae"),
}
MULTICLASS_DISPARITIES: dict[str, tuple[str, str]] = {
    "accuracy_difference": ("accuracy difference", "accuracy"),
    "demographic_parity_difference": ("demographic parity difference (largest over classes)",
                                      "selection_rate[*]"),
}


def disparity_names(task: str) -> list[str]:
    """The disparity metrics reported (and usable in the gate) for a task."""
    table = {"binary": BINARY_DISPARITIES, "regression": REGRESSION_DISPARITIES}.get(
        task, MULTICLASS_DISPARITIES)
    return list(table)


@dataclass(frozen=True)
class FairnessConfig(MethodConfig):
    """Options of the fairness method.

    min_group_size : groups with fewer rows are "too small to judge" (no numbers, no disparity).
    confidence : level c of the intervals (two-sided; each bound errs at most (1 − c)/2); the gate
        judges on them, and for rates and their disparities the tests use α = 1 − c (the
        interval's own test), so that findings and gate verdicts agree.
    alpha : significance level of the regression permutation tests and their power note.
    power : power of the minimum-detectable-difference note.
    n_boot : bootstrap resamples for what is not a proportion (AUC, calibration, balanced
        accuracy, regression); 0 disables those intervals (rates keep their exact intervals).
    n_permutations : permutations per regression test (0 disables them).
    reference : attribute (or intersection) -> reference group; others use max − min.
    intersections : lists of attributes to cross; default: every pair of sensitive attributes.
    max_groups : an attribute with more distinct values is an error (bin it first); so is an
        intersection listed in ``intersections`` with more groups, and a default (pairwise)
        intersection with more is skipped, the reason stated in the report.
    calibration_bins : equal-width score bins of the reliability curves.
    what_if : run fairlearn's ThresholdOptimizer what-if (needs scores).
    what_if_rows : above this many judged rows the what-if is fitted and evaluated on a
        stratified random sample of them (its cost grows with the rows; it is information only).
    dp_warn, eo_warn : differences whose whole interval lies above these are named in the summary.
    favourable : which decision of a binary classifier is the favourable outcome, "positive"
        (default: the positive label, e.g. a loan granted) or "negative" (an adverse decision
        such as a "high risk" score is the positive label). Demographic parity, the
        disparate-impact ratio and the four-fifths rule then compare the rate of the favourable
        outcome (for a difference this changes nothing; for a ratio it does).
    favourable_label : the same, by the label's name (one of the target's two classes).
    """

    min_group_size: int = 30
    confidence: float = 0.95
    alpha: float = 0.05
    power: float = 0.8
    n_boot: int = 1000
    n_permutations: int = 999
    reference: dict[str, str] = field(default_factory=dict)
    intersections: tuple[tuple[str, ...], ...] | None = None
    max_groups: int = 50
    calibration_bins: int = 10
    what_if: bool = True
    what_if_rows: int = 20_000
    dp_warn: float = 0.1
    eo_warn: float = 0.1
    favourable: Literal["positive", "negative"] = "positive"
    favourable_label: str | None = None

    def validate(self) -> None:
        def bad(name: str, rule: str, value: Any) -> InvalidConfigError:
            return InvalidConfigError(f"The {name!r} option of fairness must be {rule}. Got {value!r} instead.")

        if self.min_group_size < 1:
            raise bad("min_group_size", "at least 1", self.min_group_size)
        for name in ("confidence", "alpha", "power", "dp_warn", "eo_warn"):
            if not 0 < getattr(self, name) < 1:
                raise bad(name, "between 0 and 1", getattr(self, name))
        if self.n_boot < 0 or 0 < self.n_boot < 100:
            raise bad("n_boot", "0 (no intervals) or at least 100", self.n_boot)
        if self.n_permutations < 0 or 0 < self.n_permutations < 99:
            raise bad("n_permutations", "0 (no tests) or at least 99", self.n_permutations)
        if self.max_groups < 2:
            raise bad("max_groups", "at least 2", self.max_groups)
        if self.what_if_rows < 1000:
            raise bad("what_if_rows", "at least 1000", self.what_if_rows)
        if self.calibration_bins < 2:
            raise bad("calibration_bins", "at least 2", self.calibration_bins)
        for combo in self.intersections or ():
            if len(combo) < 2 or len(set(combo)) != len(combo):
                raise bad("intersections", "a list of lists of at least two distinct attributes",
                          list(combo))
        for key, value in self.reference.items():
            if not isinstance(value, str):
                raise bad(f"reference.{key}", "a group name (text)", value)


def set_name(columns: Sequence[str]) -> str:
    """The name of an attribute or intersection (``"sex"``, ``"sex*race"``)."""
    return INTERSECTION_SEP.join(columns)


def normalize_set_name(name: str) -> str:
    """Accept ``×``, ``&`` and spaces around the separator as synonyms of ``*``."""
    for sep in ("×", "&"):
        name = name.replace(sep, INTERSECTION_SEP)
    return INTERSECTION_SEP.join(p.strip() for p in name.split(INTERSECTION_SEP))


def attribute_sets(sensitive: Sequence[str], config: FairnessConfig) -> list[tuple[str, ...]]:
    """Every attribute alone, then the intersections (default: every pair)."""
    singles = [(a,) for a in sensitive]
    if config.intersections is None:
        crosses = list(itertools.combinations(sensitive, 2)) if len(sensitive) >= 2 else []
    else:
        crosses = [tuple(c) for c in config.intersections]
        for combo in crosses:
            for a in combo:
                if a not in sensitive:
                    raise InvalidConfigError(
                        f"The fairness intersection {list(combo)} names {a!r}, which is not a "
                        f"sensitive attribute.{did_you_mean(a, sensitive)} Sensitive: {list(sensitive)}.")
        seen: dict[frozenset[str], tuple[str, ...]] = {}
        for combo in crosses:  # the same groups twice would count one family twice
            if frozenset(combo) in seen:
                raise InvalidConfigError(
                    f"The fairness intersections list {list(combo)} and {list(seen[frozenset(combo)])}, "
                    "which are the same groups. List each intersection once.")
            seen[frozenset(combo)] = combo
    return singles + crosses


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval; ``undefined`` says why there is no value."""

    value: float | None
    lower: float | None = None
    upper: float | None = None
    undefined: str | None = None


@dataclass(frozen=True)
class Calibration:
    """Reliability curve of one group: per score bin, rows, mean score and fraction positive;
    with ``n_boot`` the group's Monte Carlo test of calibration (:mod:`audit.stats.calibration`)."""

    bin_edges: tuple[float, ...]
    count: tuple[int, ...]
    mean_score: tuple[float | None, ...]
    fraction_positive: tuple[float | None, ...]
    test: CalibrationTest | None = None


@dataclass(frozen=True)
class GroupRow:
    group: str
    count: int
    too_small: bool
    metrics: dict[str, Estimate]
    mdd: dict[str, float | None]  # metric -> minimum detectable difference (power note)
    calibration: Calibration | None = None

    @property
    def undefined(self) -> dict[str, str]:
        return {k: e.undefined for k, e in self.metrics.items() if e.undefined}


#: How a finding words a disparity's test (the three cases of the report and README).
SIGNIFICANT = "significant after correction"
RAW_ONLY = "raw p small but not significant after correction"
NO_EVIDENCE = "no evidence of a gap at this sample size"


@dataclass(frozen=True)
class Disparity:
    """One disparity, its interval and its test.

    ``p_value`` is the smallest unadjusted p-value among the compared pairs (and components),
    ``p_adjusted`` the p-value corrected for the ``n_comparisons`` hypotheses of its ``family``,
    ``significance`` one of :data:`SIGNIFICANT`, :data:`RAW_ONLY`, :data:`NO_EVIDENCE` at the
    level ``1 − confidence`` (None when untested).
    """

    name: str
    label: str
    estimate: Estimate
    p_value: float | None = None
    p_adjusted: float | None = None
    test: str | None = None
    groups_used: tuple[str, ...] = ()
    excluded_small: tuple[str, ...] = ()
    excluded_undefined: tuple[str, ...] = ()
    family: str | None = None
    n_comparisons: int | None = None
    significance: str | None = None
    #: Why each group of ``excluded_undefined`` has no value ("C: TPR undefined (no positive
    #: outcomes in the group)"): judged groups whose rate is unknown, so no pass is possible.
    undefined_why: tuple[str, ...] = ()

    @property
    def value(self) -> float | None:
        return self.estimate.value


def significance(p_raw: float | None, p_adjusted: float | None, alpha: float) -> str | None:
    """The wording of a test result: significant after correction, raw p small but not after
    correction, or no evidence of a gap (never the last when the raw p is small)."""
    if p_raw is None or p_adjusted is None:
        return None
    if p_adjusted < alpha:
        return SIGNIFICANT
    return RAW_ONLY if p_raw < alpha else NO_EVIDENCE


def test_sentence(d: Disparity, alpha: float) -> str:
    """One sentence saying what the disparity's test showed, in the three cases of the report."""
    if d.significance is None:
        return "No test was run for it."
    m = d.n_comparisons or 0
    fam = f"{m} comparison{'s' if m != 1 else ''}"

    def fmt(p: float | None) -> str:  # the tail beyond 1e-10 is not computed precisely
        return "< 1e-10" if p is not None and p < 1e-10 else f"= {p:.2g}"

    if d.significance == SIGNIFICANT:
        return (f"The gap is significant after correcting for the {fam} of its family "
                f"({d.family}; adjusted p {fmt(d.p_adjusted)} < {alpha:.3g}).")
    if d.significance == RAW_ONLY:
        return (f"The smallest raw p {fmt(d.p_value)} is small but not significant after "
                f"correcting for the {fam} of its family (adjusted p {fmt(d.p_adjusted)}); this "
                "is not evidence that there is no gap.")
    return (f"No evidence of a gap at this sample size (smallest raw p {fmt(d.p_value)} over "
            f"{fam}); this does not show the groups are equal: see the detectable gap per group.")


@dataclass(frozen=True)
class ThresholdCurves:
    thresholds: tuple[float, ...]
    curves: dict[str, dict[str, tuple[float | None, ...]]]  # group -> metric -> values


@dataclass(frozen=True)
class WhatIf:
    constraint: str
    accuracy_before: float | None
    accuracy_after: float | None
    disparity: str
    disparity_before: float | None
    disparity_after: float | None
    selection_rate_after: dict[str, float | None]
    error: str | None = None
    #: rows it was fitted and evaluated on, of the judged rows (a stratified sample when fewer)
    rows_used: int | None = None
    rows_total: int | None = None


@dataclass(frozen=True)
class AttributeResult:
    attribute: str  # set name: "sex" or "sex*race"
    columns: tuple[str, ...]
    reference: str | None
    groups: tuple[GroupRow, ...]
    disparities: dict[str, Disparity]
    impact_ratios: dict[str, float | None]
    four_fifths_fail: tuple[str, ...]
    notes: tuple[str, ...]
    curves: ThresholdCurves | None = None
    what_if: tuple[WhatIf, ...] = ()
    #: (metric, confidence) -> (lower, upper): the disparity's interval at another level, for the
    #: gate's correction across rules (not serialised).
    _bounds: Callable[[str, float], tuple[float | None, float | None]] | None = None

    @property
    def title(self) -> str:
        return " × ".join(self.columns)


@dataclass(frozen=True)
class FairnessResult(MethodResult):
    task: str
    positive_label: str | None
    metrics: tuple[str, ...]
    labels: dict[str, str]
    attributes: dict[str, AttributeResult]
    min_group_size: int
    confidence: float
    alpha: float
    power: float
    n_boot: int
    n_permutations: int
    has_scores: bool
    n_tests: int
    notes: tuple[str, ...] = ()
    threshold: float = 0.5
    #: intersection -> why it was not analysed (more groups than max_groups)
    skipped: dict[str, str] = field(default_factory=dict)
    #: which decision is favourable ("positive" or "negative") and its label (binary only)
    favourable: str = "positive"
    favourable_label: str | None = None
    #: each group rate's own disparities (for the gate), shown apart from the headline criteria
    rate_disparities: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Vectorized disparity formulas over (..., G) arrays (NaN = undefined or excluded)
# --------------------------------------------------------------------------------------------


def _quiet(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def wrapped(*args: Any, **kwargs: Any) -> np.ndarray:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)
    return wrapped


@_quiet
def spread_difference(v: np.ndarray, ref: int | None = None) -> np.ndarray:
    """max − min over defined groups, or the largest |group − reference| when ``ref`` is set."""
    v = np.asarray(v, dtype=float)
    defined = np.isfinite(v).sum(axis=-1)
    if ref is None:
        out = np.nanmax(v, axis=-1) - np.nanmin(v, axis=-1)
        return np.where(defined >= 2, out, np.nan)
    d = np.abs(v - v[..., ref:ref + 1])
    d[..., ref] = np.nan
    out = np.nanmax(d, axis=-1)
    return np.where(np.isfinite(v[..., ref]) & (defined >= 2), out, np.nan)


@_quiet
def spread_ratio(v: np.ndarray, ref: int | None = None) -> np.ndarray:
    """min / max over defined groups, or the smallest of min(g/ref, ref/g) with a reference.
    Undefined (NaN) when the larger rate is 0 (0/0)."""
    v = np.asarray(v, dtype=float)
    defined = np.isfinite(v).sum(axis=-1)
    if ref is None:
        hi, lo = np.nanmax(v, axis=-1), np.nanmin(v, axis=-1)
        out = np.where(hi > 0, lo / hi, np.nan)
        return np.where(defined >= 2, out, np.nan)
    r = v[..., ref:ref + 1]
    big, small = np.maximum(v, r), np.minimum(v, r)
    q = np.where(big > 0, small / big, np.nan)
    q[..., ref] = np.nan
    out = np.nanmin(q, axis=-1)
    return np.where(np.isfinite(v[..., ref]) & (defined >= 2), out, np.nan)


@_quiet
def impact_ratios(v: np.ndarray, ref: int | None = None) -> np.ndarray:
    """Each group's rate over the reference group's (default: the highest rate), (..., G)."""
    v = np.asarray(v, dtype=float)
    base = np.nanmax(v, axis=-1, keepdims=True) if ref is None else v[..., ref:ref + 1]
    return np.where(base > 0, v / base, np.nan)


@_quiet
def disparate_impact(v: np.ndarray, ref: int | None = None) -> np.ndarray:
    """The smallest impact ratio over the other groups (four-fifths rule: below 0.8 fails)."""
    r = impact_ratios(v, ref)
    if ref is not None:
        r = r.copy()
        r[..., ref] = np.nan
    defined = np.isfinite(np.asarray(v, dtype=float)).sum(axis=-1)
    return np.where(defined >= 2, np.nanmin(r, axis=-1), np.nan)


def binary_disparities(rates: dict[str, np.ndarray], ref: int | None) -> dict[str, np.ndarray]:
    """All binary disparities from group rates (each (..., G)); AUC handled separately.
    Demographic parity and disparate impact compare ``favourable_rate`` where the rates have
    one (the rate of the favourable outcome, see ``FairnessConfig.favourable``), else the
    selection rate."""
    d, r = spread_difference, spread_ratio
    fav = rates.get("favourable_rate", rates["selection_rate"])
    out = {
        "demographic_parity_difference": d(fav, ref),
        "demographic_parity_ratio": r(fav, ref),
        "disparate_impact_ratio": disparate_impact(fav, ref),
        "equalized_odds_difference": np.maximum(d(rates["tpr"], ref), d(rates["fpr"], ref)),
        "equalized_odds_ratio": np.minimum(r(rates["tpr"], ref), r(rates["fpr"], ref)),
        "equal_opportunity_difference": d(rates["tpr"], ref),
        "equal_opportunity_ratio": r(rates["tpr"], ref),
        "predictive_parity_difference": d(rates["ppv"], ref),
        "predictive_parity_ratio": r(rates["ppv"], ref),
        "accuracy_difference": d(rates["accuracy"], ref),
    }
    for rate, (base, _, _) in RATE_DISPARITY_BASES.items():
        out[f"{rate}_difference"] = d(rates[base], ref)
        out[f"{rate}_ratio"] = r(rates[base], ref)
    return out


#: The score-interval disparities of a binary classifier: name -> (test family, the rates
#: compared, kind). A family is one null hypothesis ("these rates are equal in every compared
#: pair"); a difference, its ratio and the disparate-impact ratio test the same one. Equal
#: opportunity (TPR) is one half of equalized odds (TPR and FPR), not a separate hypothesis.
SCORE_DISPARITIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "demographic_parity_difference": ("equal selection rates", ("favourable_rate",), "difference"),
    "demographic_parity_ratio": ("equal selection rates", ("favourable_rate",), "ratio"),
    "disparate_impact_ratio": ("equal selection rates", ("favourable_rate",), "impact"),
    "equalized_odds_difference": ("equal TPR and FPR", ("tpr", "fpr"), "difference"),
    "equalized_odds_ratio": ("equal TPR and FPR", ("tpr", "fpr"), "ratio"),
    "equal_opportunity_difference": ("equal TPR", ("tpr",), "difference"),
    "equal_opportunity_ratio": ("equal TPR", ("tpr",), "ratio"),
    "predictive_parity_difference": ("equal PPV", ("ppv",), "difference"),
    "predictive_parity_ratio": ("equal PPV", ("ppv",), "ratio"),
    "accuracy_difference": ("equal accuracy", ("accuracy",), "difference"),
}
SCORE_DISPARITIES.update({f"{rate}_{kind}": (family, (base,), kind)
                          for rate, (base, _, family) in RATE_DISPARITY_BASES.items()
                          for kind in ("difference", "ratio")})
SCORE_TEST = ("score test of equal proportions for every compared pair (inverted Newcombe "
              "interval), Bonferroni over the pairs")
#: The disparate-impact ratio against a reference is signed; its test is its own interval's.
IMPACT_TEST = ("score test of each group's selection rate against the reference's (inverted Newcombe "
               "interval), Bonferroni over the groups; a gap above the reference needs every group "
               "above it (the largest p), a gap below it one group (the smallest p)")


def score_disparities(cells: np.ndarray, ref: int | None, confidence: float,
                      judged: np.ndarray | None = None, keys: Sequence[str] | None = None,
                      *, test: bool = True, favourable: str = "positive") -> dict[str, tuple[np.ndarray, ...]]:
    """Simultaneous score intervals and tests of the binary disparities from confusion counts
    ``(..., G, 4)`` (:func:`audit.stats.proportions.disparity_score_interval`); groups outside
    ``judged`` (default: every group with rows) are left out. A judged group whose rate is
    undefined (no positives for TPR, no positive decisions for PPV, ...) is not left out: its
    rate is unknown, so the bound towards parity allows any value of it (see ``counted`` there).
    ``favourable`` ("positive" or "negative"): the decision whose rate demographic parity and
    disparate impact compare. Returns name -> ``(lower, upper, p_adjusted, p_raw, m)``."""
    cells = np.asarray(cells)
    counts = favourable_counts(rate_counts(cells), favourable)
    counted = cells.sum(axis=-1) > 0
    if judged is not None:
        counted = counted & judged
        counts = {k: (np.where(judged, x, 0), np.where(judged, n, 0)) for k, (x, n) in counts.items()}
    out: dict[str, tuple[np.ndarray, ...]] = {}
    tested: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # a family's test is computed once
    for k, (family, comps, kind) in SCORE_DISPARITIES.items():
        if keys is not None and k not in keys:
            continue
        # the disparate-impact ratio against a reference is signed (a group may lie above the
        # reference): its interval excludes 1 by its own test, computed for it alone
        own = kind == "impact" and ref is not None
        lo, hi, p_adj, p_raw, m = disparity_score_interval(
            [counts[c] for c in comps], kind, ref, confidence, counted=counted,
            test=test and (own or family not in tested))
        if test and not own:
            p_adj, p_raw = tested.setdefault(family, (p_adj, p_raw))
        out[k] = (lo, hi, p_adj, p_raw, m)
    return out


def favourable_counts(counts: dict[str, tuple[np.ndarray, np.ndarray]], favourable: str
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``counts`` with ``favourable_rate``: the selection rate's counts, or with the negative
    class favourable (an adverse decision such as "high risk" is the positive label) the
    count of negative decisions over the same rows."""
    x, n = counts["selection_rate"]
    return {**counts, "favourable_rate": (x, n) if favourable == "positive" else (n - x, n)}


def _disparity_bounds(key: str, bases: list[str], point: dict[str, np.ndarray],
                      boot: dict[str, np.ndarray], ref: int | None,
                      confidence: float, *, cap: float | None = 1.0) -> tuple[float | None, float | None]:
    """The disparity's interval from jointly valid pairwise group intervals
    (:func:`audit.stats.bootstrap.disparity_interval`). Two rates (equalized odds: TPR and FPR)
    each get the Sidak-adjusted level and combine as the max of differences / min of ratios.
    ``cap`` bounds a difference of rates (None for unbounded values such as regression means)."""
    kind = ("impact" if key == "disparate_impact_ratio" else
            "difference" if key.endswith("_difference") else "ratio")
    level = confidence ** (1.0 / len(bases))
    parts = [disparity_interval(point[b], boot[b], kind, ref, level) for b in bases]
    los, his = np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
    if np.isnan(los).any() or np.isnan(his).any():
        return None, None
    if kind == "difference":
        hi = his.max() if cap is None else min(cap, his.max())
        return _f(los.max()), _f(hi)
    return _f(los.min()), _f(his.min())


def _mask_groups(rates: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for k, v in rates.items():
        v = np.array(v, dtype=float, copy=True)
        v[..., ~keep] = np.nan
        out[k] = v
    return out


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class Fairness(AuditMethod[FairnessConfig, FairnessResult]):
    """Group fairness audit (see the module docstring)."""

    name = "fairness"
    title = "Group fairness"
    requires = frozenset({"predictions"})
    needs_target = True
    modalities = frozenset({"tabular", "image", "sequence"})  # uses only labels and groups
    Config = FairnessConfig
    uses_torch = False  # numpy, fairlearn and scikit-learn only

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: FairnessConfig) -> str | None:
        if not data.spec.sensitive:
            return "no sensitive attributes were named ([data] sensitive)"
        return super().skip_reason(model, data, config)

    def run(self, model: ModelAdapter, data: AuditData, config: FairnessConfig, ctx: RunContext) -> FairnessResult:
        preds = model.predictions(data)
        y_true = np.asarray(data.y)
        y_pred = np.asarray(preds.labels)
        scores = None
        if data.task == "binary" and preds.scores is not None:
            scores = np.asarray(preds.scores, dtype=float).reshape(-1)
        if data.task == "binary":
            y_pred = y_pred.astype(np.int64)
            if not set(np.unique(y_pred)) <= {0, 1}:
                raise DataValidationError("Binary predictions must be 0/1 class indices after encoding.")
        check_sensitive(data, config)
        favourable, favourable_label = resolve_favourable(data, config)
        sets = attribute_sets(data.spec.sensitive, config)
        names = [set_name(s) for s in sets]
        for key in config.reference:
            if normalize_set_name(key) not in names:
                raise InvalidConfigError(
                    f"The fairness 'reference' names {key!r}, which is not an attribute or "
                    f"intersection.{did_you_mean(key, names)} Choices: {', '.join(names)}.")
        refs = {normalize_set_name(k): v for k, v in config.reference.items()}

        attributes: dict[str, AttributeResult] = {}
        skipped: dict[str, str] = {}
        for i, cols in enumerate(sets):
            values = group_values(data, cols)
            ref = refs.get(set_name(cols))
            too_many = intersection_too_large(cols, values, config, ref is not None, data.source)
            if too_many:
                skipped[set_name(cols)] = too_many
                ctx.progress(i + 1, len(sets))
                continue
            if data.task == "binary":
                res = _analyse_binary(cols, values, y_true, y_pred, scores, config, ref, ctx.rng,
                                      favourable=favourable, favourable_label=favourable_label)
            elif data.task == "regression":
                res = _analyse_regression(cols, values, y_true.astype(float),
                                          y_pred.astype(float), config, ref, ctx.rng)
            else:
                res = _analyse_multiclass(cols, values, y_true, y_pred, len(data.classes or ()),
                                          data.classes or (), config, ref, ctx.rng)
            attributes[set_name(cols)] = res
            ctx.progress(i + 1, len(sets))
        # one test per family (attribute × null hypothesis): a difference, its ratio and the
        # disparate-impact ratio test the same hypothesis
        n_tests = len({(a, d.family) for a, res in attributes.items()
                       for d in res.disparities.values() if d.p_value is not None})

        if data.task == "binary":
            metrics = (("base_rate", "selection_rate")
                       + (("favourable_rate",) if favourable == "negative" else ())
                       + ("accuracy", "balanced_accuracy", "tpr", "fpr", "fnr", "tnr", "ppv", "npv")
                       + (("auc", "ece") if scores is not None else ()))
        elif data.task == "regression":
            metrics = ("mean_prediction", "mean_error", "mae")
        else:
            metrics = ("accuracy",) + tuple(f"selection_rate[{c}]" for c in data.classes or ())
        labels = {k: METRIC_LABELS.get(k, k.replace("_", " ")) for k in metrics}
        if "favourable_rate" in labels:
            labels["favourable_rate"] = f"favourable outcome rate ({favourable_label})"
        notes = []
        if data.task == "binary" and scores is None:
            notes.append("The predictions are labels without scores, so AUC, calibration, threshold "
                         "curves and the threshold what-if are not available.")
        positive = data.classes[1] if data.task == "binary" and data.classes else None
        return FairnessResult(
            task=data.task, positive_label=positive, metrics=metrics, labels=labels,
            attributes=attributes, min_group_size=config.min_group_size,
            confidence=config.confidence, alpha=config.alpha, power=config.power,
            n_boot=config.n_boot, n_permutations=config.n_permutations,
            has_scores=scores is not None, n_tests=n_tests, notes=tuple(notes),
            threshold=float(model.threshold), skipped=skipped, favourable=favourable,
            favourable_label=favourable_label,
            rate_disparities=RATE_DISPARITIES if data.task == "binary" else ())

    def plan(self, model: ModelAdapter, data: AuditData, config: FairnessConfig, ctx: RunContext) -> Any:
        """One pass of the model over the rows; the rest is counting and resampling labels."""
        from audit.core.cost import Plan

        return Plan(f"predictions on {data.n_rows:,} rows, {config.n_boot:,} bootstrap resamples",
                    model_rows=data.n_rows, model_calls=1)

    def findings(self, result: FairnessResult, config: FairnessConfig) -> list[Finding]:
        out = []
        conf = f"{result.confidence:.0%}"
        alpha = 1 - result.confidence
        for res in result.attributes.values():
            if result.task == "regression":
                out += _regression_findings(res, result)
            for name, limit in (("demographic_parity_difference", config.dp_warn),
                                ("equalized_odds_difference", config.eo_warn)):
                d = res.disparities.get(name)
                if d is None or d.value is None:
                    continue
                e = d.estimate
                what = "Selection rates" if name.startswith("demographic") else "Error rates"
                gap = "selection-rate gap" if name.startswith("demographic") else "error-rate gap"
                ci = (f"{conf} CI {e.lower:.3f}–{e.upper:.3f}" if e.lower is not None and e.upper is not None
                      else "no interval")
                test = test_sentence(d, alpha)
                if e.lower is not None and e.lower > limit:
                    # lower > limit >= 0 implies p_adjusted < alpha: the same intervals decide
                    out.append(Finding("warning", f"{what} differ between groups of {res.title}: "
                                                  f"{d.label} {e.value:.3f} ({ci}), clearly above {limit}: "
                                                  f"the whole interval lies above it. {test}"))
                elif e.value > limit:
                    # a point estimate above the limit alone says nothing of a difference (a fair
                    # 2 x 30 model gets there 37% of the time): say observed, not "differ"
                    out.append(Finding("info", f"The observed {gap} between groups of {res.title} is "
                                               f"{e.value:.3f} ({d.label}, point estimate; {ci}); above "
                                               f"{limit} as a point estimate, but the interval reaches "
                                               f"below it. {test}"))
            if res.four_fifths_fail:
                rate = ("selection rate" if result.favourable_label is None else
                        f"rate of the favourable outcome ({result.favourable_label})")
                versus = (f"the reference group's ({res.reference})" if res.reference is not None
                          else "the group with the highest rate's")  # as the report's table says
                out.append(Finding("warning", f"Four-fifths rule: the {rate} of "
                                              f"{', '.join(res.four_fifths_fail[:5])} ({res.title}) is below "
                                              f"80% of {versus} (point estimate)."))
            small = [g.group for g in res.groups if g.too_small]
            if small:
                out.append(Finding("info", f"{len(small)} group(s) of {res.title} have fewer than "
                                           f"{result.min_group_size} rows and are too small to judge: "
                                           f"{', '.join(small[:5])}{' …' if len(small) > 5 else ''}."))
        if result.skipped:
            names = [k.replace(INTERSECTION_SEP, " × ") for k in result.skipped]
            out.append(Finding("warning", f"{len(names)} intersection(s) not analysed, each with more "
                                          f"groups than max_groups = {config.max_groups}: "
                                          f"{', '.join(names[:5])}{' …' if len(names) > 5 else ''}. Bin "
                                          "the attributes into fewer groups, raise max_groups, or "
                                          "list the intersections to analyse."))
        return out

    def figures(self, result: FairnessResult, data: AuditData) -> dict[str, Any]:
        from audit.core.plots import PALETTE, new_figure

        figs: dict[str, Any] = {}
        if result.task != "binary":
            return figs
        shown = ("selection_rate", "tpr", "fpr")
        for key, res in result.attributes.items():
            groups = [g for g in res.groups if not g.too_small]
            if not groups:
                continue
            fig, ax = new_figure(6.5, 0.8 + 0.4 * len(groups))
            height = 0.8 / len(shown)
            for k, metric in enumerate(shown):
                ys = np.arange(len(groups)) + k * height
                vals = [g.metrics[metric].value for g in groups]
                lo = [g.metrics[metric].lower for g in groups]
                hi = [g.metrics[metric].upper for g in groups]
                x = np.array([v if v is not None else np.nan for v in vals])
                err = np.array([[v - lo_ if v is not None and lo_ is not None else 0 for v, lo_ in zip(vals, lo)],
                                [hi_ - v if v is not None and hi_ is not None else 0 for v, hi_ in zip(vals, hi)]])
                ax.barh(ys, np.nan_to_num(x), height=height, color=PALETTE[k],
                        label=METRIC_LABELS[metric], xerr=err, error_kw={"lw": 0.8, "capsize": 2})
            ax.set_yticks(np.arange(len(groups)) + height)
            ax.set_yticklabels([f"{g.group} (n={g.count:,})" for g in groups])
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.set_xlabel(f"rate ({result.confidence:.0%} Clopper–Pearson interval)")
            ax.set_title(f"Rates by {res.title}")
            ax.legend(frameon=False, fontsize=7, loc="lower right")
            figs[f"rates:{key}"] = fig
            if res.curves is not None:
                fig, axes = new_figure(7.5, 2.6, ncols=3, sharey=True)
                for ax, metric in zip(axes, shown, strict=True):
                    for k, (g, curve) in enumerate(res.curves.curves.items()):
                        vals = np.array([v if v is not None else np.nan for v in curve[metric]])
                        ax.plot(res.curves.thresholds, vals, color=PALETTE[k % len(PALETTE)], lw=1.2,
                                label=g)
                    ax.axvline(result.threshold, color="#999999", lw=0.8, ls="--")
                    ax.set_title(METRIC_LABELS[metric])
                    ax.set_xlabel("decision threshold")
                    ax.set_ylim(0, 1)
                axes[0].legend(frameon=False, fontsize=6)
                figs[f"curves:{key}"] = fig
            cal = [g for g in groups if g.calibration is not None]
            if cal:
                fig, ax = new_figure(3.6, 3.4)
                ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
                for k, g in enumerate(cal):
                    c = g.calibration
                    xs = np.array([v if v is not None else np.nan for v in c.mean_score])
                    ys = np.array([v if v is not None else np.nan for v in c.fraction_positive])
                    ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=PALETTE[k % len(PALETTE)], label=g.group)
                ax.set_xlabel("mean predicted probability")
                ax.set_ylabel("fraction positive")
                ax.set_xlim(0, 1)
                ax.set_ylim(0, 1)
                ax.set_title(f"Reliability by {res.title}")
                ax.legend(frameon=False, fontsize=6)
                figs[f"calibration:{key}"] = fig
        return figs


#: What each regression disparity compares, in the words of a finding.
_REGRESSION_WHAT = {"mean_prediction_difference": ("Mean predictions", "mean-prediction gap"),
                    "mean_error_difference": ("Mean errors (prediction − true value)",
                                              "mean-error gap (prediction − true value)"),
                    "mae_difference": ("Mean absolute errors", "mean-absolute-error gap")}


#: Judged groups below this size make the regression test's level approximate (see the caveat).
SMALL_FOR_MEANS = 100


def _skew_caveat(res: AttributeResult) -> str:
    """The permutation test's level is exact for identical error distributions only; with a small
    group whose errors are skewed, false warnings reached 0.135 at a stated 5% (outside simulation:
    30 log-normal rows beside 1,000 normal ones with the same mean error and MAE)."""
    small = [g.group for g in res.groups if not g.too_small and g.count < SMALL_FOR_MEANS]
    if not small:
        return ""
    return (f" The test shuffles group labels, so its stated level is exact only when the groups' "
            f"errors have the same distribution; with a group under {SMALL_FOR_MEANS} rows "
            f"({', '.join(small[:3])}) whose errors are skewed, false warnings reached 0.135 in "
            "simulation: confirm on more rows.")


def _regression_findings(res: AttributeResult, result: FairnessResult) -> list[Finding]:
    """A regression disparity whose permutation test is significant after Holm (at ``alpha``)
    is a warning; one whose raw p alone is small is information. (Before, only the binary
    disparities were read here, so a regression gap never made a finding.)"""
    out = []
    conf = f"{result.confidence:.0%}"
    for name, (what, gap) in _REGRESSION_WHAT.items():
        d = res.disparities.get(name)
        if d is None or d.value is None or d.significance not in (SIGNIFICANT, RAW_ONLY):
            continue
        e = d.estimate
        ci = (f"{conf} bootstrap CI {e.lower:.3g}–{e.upper:.3g}" if e.lower is not None and e.upper is not None
              else "no interval")
        if d.significance == SIGNIFICANT:
            out.append(Finding("warning", f"{what} differ between groups of {res.title}: {d.label} "
                                          f"{e.value:.3g} ({ci}). {test_sentence(d, result.alpha)}"
                                          f"{_skew_caveat(res)}"))
        else:  # not significant after correction: no claim that the groups differ
            out.append(Finding("info", f"The observed {gap} between groups of {res.title} is "
                                       f"{e.value:.3g} ({d.label}, point estimate; {ci}). "
                                       f"{test_sentence(d, result.alpha)}"))
    return out


# --------------------------------------------------------------------------------------------
# Input checks and grouping
# --------------------------------------------------------------------------------------------


def check_sensitive(data: AuditData, config: FairnessConfig) -> None:
    """One group only, or too many distinct values: the config's choice of sensitive attribute
    cannot be audited as it stands, so these stop the run (exit 2) with the fix."""
    for attr in data.spec.sensitive:
        levels = np.sort(np.asarray(data.sensitive[attr].unique(), dtype=object))
        if len(levels) < 2:
            raise InvalidConfigError(
                f"The sensitive column {attr!r} has a single group ({levels[0]!r}) in "
                f"{data.source or 'the data'}; fairness compares groups, so it needs at least two. "
                "Remove it from [data] sensitive.")
        if len(levels) > config.max_groups:
            raise InvalidConfigError(
                f"The sensitive column {attr!r} has {len(levels)} distinct values (more than "
                f"max_groups = {config.max_groups}); group it into fewer bins (e.g. age ranges such "
                "as 18-25, 26-40, ...) in the data before the audit, or raise [methods.fairness] "
                "max_groups.")


def resolve_favourable(data: AuditData, config: FairnessConfig) -> tuple[str, str | None]:
    """Which decision is favourable ("positive" or "negative") and its label; the label is None
    for a binary task left at the default (texts then speak of selection rates)."""
    chosen = config.favourable_label is not None or config.favourable != "positive"
    if data.task != "binary":
        if chosen:
            raise InvalidConfigError(
                f"The fairness options 'favourable' and 'favourable_label' apply to binary "
                f"classifiers; this audit's task is {data.task}. Remove them from [methods.fairness].")
        return "positive", None
    classes = [str(c) for c in (data.classes or ("0", "1"))]
    if config.favourable_label is None:
        return config.favourable, (classes[1] if config.favourable == "positive" else classes[0]) if chosen else None
    if config.favourable_label not in classes:
        raise InvalidConfigError(
            f"The fairness option 'favourable_label' is {config.favourable_label!r}, which is not a "
            f"class of the target.{did_you_mean(config.favourable_label, classes)} Classes: "
            f"{', '.join(classes)} (positive: {classes[1]}).")
    favourable = "positive" if config.favourable_label == classes[1] else "negative"
    if config.favourable != "positive" and config.favourable != favourable:
        raise InvalidConfigError(
            f"The fairness options disagree: favourable_label = {config.favourable_label!r} is the "
            f"{favourable} class, but favourable = {config.favourable!r}. Set only one of them.")
    return favourable, config.favourable_label


def intersection_too_large(cols: Sequence[str], values: np.ndarray, config: FairnessConfig,
                           has_reference: bool, source: str | None) -> str | None:
    """Why an intersection is not analysed: more groups than ``max_groups``, or None.

    Time, memory and the report grow with the groups (and the pairwise intervals with their
    square), so ``max_groups`` bounds intersections as it bounds attributes. A default
    intersection over the bound is skipped with this reason; one the config asks for by name
    (``intersections`` or ``reference``) is a config error.
    """
    if len(cols) < 2:
        return None
    n_groups = len(pd.unique(values))
    if n_groups <= config.max_groups:
        return None
    name = set_name(cols)
    if config.intersections is not None or has_reference:
        asked = "[methods.fairness] intersections" if config.intersections is not None else "reference"
        raise InvalidConfigError(
            f"The fairness intersection {name!r} named in {asked} has {n_groups:,} groups in "
            f"{source or 'the data'}, more than max_groups = {config.max_groups}. Remove it, bin "
            "its attributes into fewer groups, or raise [methods.fairness] max_groups.")
    return f"{n_groups:,} groups, more than max_groups = {config.max_groups}"


def group_values(data: AuditData, columns: Sequence[str]) -> np.ndarray:
    """Each row's group label for an attribute or an intersection ("Female × White").

    The columns are factorized and their codes combined, so that only the distinct groups'
    labels are built as text (joining a million rows' strings took most of the time)."""
    codes = np.zeros(data.n_rows, dtype=np.int64)
    labels = np.array([""], dtype=object)
    for i, c in enumerate(columns):
        # factorized as a Series: pandas' text columns need no conversion to objects first
        col_codes, col_levels = pd.factorize(data.sensitive[c].astype(str), use_na_sentinel=False)
        col_levels = np.asarray(col_levels, dtype=object)
        labels = (labels[:, None] + (_GROUP_SEP if i else "") + col_levels[None, :]).ravel()
        codes, present = pd.factorize(codes * len(col_levels) + col_codes)  # only groups that occur
        labels = labels[np.asarray(present)]
    return labels[codes]


def _reference_index(levels: np.ndarray, ref: str | None, small: np.ndarray, name: str) -> int | None:
    if ref is None:
        return None
    lv = [str(v) for v in levels]
    if ref not in lv:
        raise InvalidConfigError(
            f"The fairness reference group {ref!r} of {name!r} does not occur in the data."
            f"{did_you_mean(ref, lv)} Groups: {', '.join(lv[:10])}.")
    idx = lv.index(ref)
    if small[idx]:
        raise InvalidConfigError(
            f"The fairness reference group {ref!r} of {name!r} is too small to judge; choose a "
            "larger group as the reference.")
    return idx


# --------------------------------------------------------------------------------------------
# Binary classification
# --------------------------------------------------------------------------------------------


def _groups(cols: Sequence[str], values: np.ndarray, config: FairnessConfig, ref_name: str | None
            ) -> tuple[str, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, int | None]:
    """The attribute set's name, its groups (levels, each row's code, count), which are too small
    to judge, which are judged, and the reference group's index (or None for max − min)."""
    name = set_name(cols)
    levels, codes = group_codes(values)
    G = len(levels)
    counts = np.bincount(codes, minlength=G)
    small = counts < config.min_group_size
    return name, levels, codes, G, counts, small, ~small, _reference_index(levels, ref_name, small, name)


def _with_favourable(rates: dict[str, np.ndarray], favourable: str) -> dict[str, np.ndarray]:
    sel = rates["selection_rate"]
    return {**rates, "favourable_rate": sel if favourable == "positive" else 1 - sel}


def _analyse_binary(cols: Sequence[str], values: np.ndarray, y: np.ndarray, yhat: np.ndarray,
                    scores: np.ndarray | None, config: FairnessConfig, ref_name: str | None,
                    rng: np.random.Generator, *, favourable: str = "positive",
                    favourable_label: str | None = None) -> AttributeResult:
    name, levels, codes, G, counts, small, judged, ref = _groups(cols, values, config, ref_name)
    cells = confusion_cells(y, yhat, codes, G)
    point = _with_favourable(rates_from_cells(cells), favourable)
    B = config.n_boot
    boot = _with_favourable(rates_from_cells(bootstrap_cells(cells, B, rng)), favourable) if B else None
    notes: list[str] = []

    # Score-based metrics: AUC and calibration, bootstrapped with row weights within groups.
    auc_point = np.full(G, np.nan)
    ece_point = np.full(G, np.nan)
    auc_boot = np.full((B, G), np.nan) if B else None
    calib: dict[int, Calibration] = {}
    if scores is not None:
        edges = tuple(np.linspace(0, 1, config.calibration_bins + 1).round(6).tolist())
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(G + 1))
        for g in range(G):
            rows = order[bounds[g]:bounds[g + 1]]
            if small[g] or rows.size == 0:
                continue
            s, t = scores[rows], y[rows]
            ones = np.ones(rows.size)
            auc_point[g] = weighted_auc(s, t, ones)
            ece, cnt, ms, fp = weighted_calibration(s, t, ones, config.calibration_bins)
            ece_point[g] = ece[0]
            test = None
            if B:
                # AUC resampled from compressed score cells, re-centred on the exact estimate;
                # ECE (biased upward): no interval, a test against calibrated outcomes instead
                a_b, _, a_c, _ = bootstrap_score_metrics(s, t, B, rng, n_bins=config.calibration_bins)
                auc_boot[:, g] = a_b + (auc_point[g] - a_c) if np.isfinite(a_c) else a_b
                test = calibration_test(s, t, n_bins=config.calibration_bins, n_sim=B, rng=rng)
            calib[g] = Calibration(edges, tuple(int(c) for c in cnt[0]),
                                   tuple(_f(v) for v in ms[0]), tuple(_f(v) for v in fp[0]), test)

    all_point = {**point, "auc": auc_point, "ece": ece_point}
    all_boot = {**boot, "auc": auc_boot} if B else None
    reasons = {**RATE_METRICS, "auc": "needs both positive and negative outcomes in the group",
               "ece": None, "favourable_rate": None}
    metric_keys = (list(RATE_METRICS) + (["favourable_rate"] if favourable == "negative" else [])
                   + (["auc", "ece"] if scores is not None else []))
    # Proportions: exact (Clopper-Pearson) intervals from the counts; the rest: percentile bootstrap.
    counts_of = favourable_counts(rate_counts(cells), favourable)
    intervals = {k: group_interval(*counts_of[k], config.confidence, GROUP_METHOD) for k in counts_of}
    if B:
        intervals.update({k: percentile_interval(all_boot[k], config.confidence)
                          for k in metric_keys if k not in counts_of and k != "ece"})
    alpha = 1 - config.confidence
    scored = score_disparities(cells, ref, config.confidence, judged, favourable=favourable)

    # Power note: the smallest gap between this group and its best partner (the reference, or
    # the largest other group) that the pairwise score test at its corrected level detects.
    pooled = rates_from_cells(cells[judged].sum(axis=0))
    family_of_mdd = {"selection_rate": "demographic_parity_difference",
                     "tpr": "equal_opportunity_difference"}
    rows_out = []
    for g, lv in enumerate(levels):
        if small[g]:
            metrics = {k: Estimate(None, undefined=TOO_SMALL) for k in metric_keys}
            rows_out.append(GroupRow(str(lv), int(counts[g]), True, metrics, {}))
            continue
        metrics = {}
        for k in metric_keys:
            v = _f(all_point[k][g])
            lo, hi = (intervals[k][0][g], intervals[k][1][g]) if k in intervals else (None, None)
            why = None if v is not None else (reasons.get(k) or "undefined")
            metrics[k] = Estimate(v, _f(lo) if v is not None else None,
                                  _f(hi) if v is not None else None, why)
        mdd = {}
        for k, key in family_of_mdd.items():
            den = counts_of[k][1] * judged
            m = int(scored[key][4])
            partners = [ref] if ref is not None and ref != g else [h for h in np.flatnonzero(judged) if h != g]
            n_other = max((den[h] for h in partners), default=0)
            mdd[k] = _f(min_detectable_difference(float(pooled[k]), den[g], n_other,
                                                  alpha=alpha / (2 * max(m, 1)), power=config.power))
        rows_out.append(GroupRow(str(lv), int(counts[g]), False, metrics, mdd, calib.get(g)))

    # Disparities over the judged groups.
    masked_point = _mask_groups(all_point, judged)
    disp_point = binary_disparities(masked_point, ref)
    disp_point["auc_difference"] = spread_difference(masked_point["auc"], ref)
    masked_boot = _mask_groups(all_boot, judged) if B else None
    names = [k for k in BINARY_DISPARITIES if k != "auc_difference" or scores is not None]
    judged_names = tuple(str(levels[g]) for g in np.flatnonzero(judged))
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    disparities: dict[str, Disparity] = {}
    n_judged = int(judged.sum())

    def bounds_at(k: str, level: float) -> tuple[float | None, float | None]:
        if k in SCORE_DISPARITIES:
            lo, hi, *_ = score_disparities(cells, ref, level, judged, keys=[k], test=False,
                                           favourable=favourable)[k]
            return _f(lo), _f(hi)
        if masked_boot is None:
            return None, None
        bases_k = BINARY_DISPARITIES[k][1].split(",")
        lo, hi = _disparity_bounds(k, bases_k, masked_point, masked_boot, ref, level)
        if lo is not None and any(not np.isfinite(all_point[b][g]) for b in bases_k for g in np.flatnonzero(judged)):
            # a judged group's value is unknown (e.g. AUC without both outcomes): as for the rates
            lo, hi = (lo, 1.0) if k.endswith("_difference") else (0.0, hi)
        return lo, hi

    for k in names:
        label, base = BINARY_DISPARITIES[k]
        bases = base.split(",")
        if favourable_label is not None and k in ("demographic_parity_difference",
                                                  "demographic_parity_ratio", "disparate_impact_ratio"):
            label, bases = f"{label}, favourable outcome ({favourable_label})", ["favourable_rate"]
        undefined_in = {b: [str(levels[g]) for g in np.flatnonzero(judged) if not np.isfinite(all_point[b][g])]
                        for b in bases}
        undefined_groups = tuple(sorted({g for gs in undefined_in.values() for g in gs}))
        undefined_why = tuple(f"{g}: {METRIC_LABELS.get(b, b)} undefined ({reasons.get(b) or 'no value'})"
                              for b in bases for g in undefined_in[b])
        v = _f(disp_point[k])
        lo = hi = p_raw = p_adj = m = None
        family = test = None
        if v is not None and k in SCORE_DISPARITIES:
            lo_, hi_, p_adj_, p_raw_, m_ = scored[k]
            lo, hi, p_adj, p_raw, m = _f(lo_), _f(hi_), _f(p_adj_), _f(p_raw_), int(m_)
            family = SCORE_DISPARITIES[k][0]
            test = IMPACT_TEST if k == "disparate_impact_ratio" and ref is not None else SCORE_TEST
        elif v is not None and masked_boot is not None:
            lo, hi = bounds_at(k, config.confidence)
        why = None
        if v is None:
            why = (f"fewer than two groups with at least {config.min_group_size} rows"
                   if n_judged < 2 else
                   "the reference group's rate is undefined" if ref is not None and not np.isfinite(all_point[bases[0]][ref])
                   else "fewer than two groups with a defined value, or a ratio of zero rates")
        disparities[k] = Disparity(k, label, Estimate(v, lo, hi, why), p_raw, p_adj, test,
                                   judged_names, small_names, undefined_groups, family, m,
                                   significance(p_raw, p_adj, alpha), undefined_why)
        if undefined_groups and n_judged >= 2:
            what = "; ".join(f"{METRIC_LABELS.get(b, b)} undefined for {', '.join(gs)} ({reasons.get(b) or 'no value'})"
                             for b, gs in undefined_in.items() if gs)
            towards = "upper bound is 1" if k.endswith("_difference") else "lower bound is 0"
            notes.append(f"{what}: the {label} point estimate is over the other groups, but the true "
                         f"rate there is unknown (anywhere from 0 to 1), so its interval's {towards} "
                         "and a gate rule on it cannot pass (insufficient evidence, unless the other "
                         "groups already breach).")

    ratios = impact_ratios(masked_point["favourable_rate"], ref)
    impact = {str(levels[g]): _f(ratios[g]) for g in range(G) if judged[g]}
    four_fifths = tuple(g for g, r in impact.items() if r is not None and r < 0.8)

    curves = None
    what_if: tuple[WhatIf, ...] = ()
    if scores is not None and len(cols) == 1:
        curves = _threshold_curves(scores, y, codes, levels, judged)
        if config.what_if and n_judged >= 2:
            what_if = _what_if(scores, y, yhat, values, judged[codes], ref,
                               max_rows=config.what_if_rows, rng=rng)
    if small.any():
        notes.append(f"{int(small.sum())} group(s) with fewer than {config.min_group_size} rows are "
                     "too small to judge and left out of the disparities.")
    return AttributeResult(name, tuple(cols), str(levels[ref]) if ref is not None else None,
                           tuple(rows_out), disparities, impact, four_fifths,
                           tuple(dict.fromkeys(notes)), curves, what_if, bounds_at)


def _threshold_curves(scores: np.ndarray, y: np.ndarray, codes: np.ndarray, levels: np.ndarray,
                      judged: np.ndarray, n_points: int = 51) -> ThresholdCurves:
    """Selection rate, TPR and FPR of each judged group as the threshold moves over [0, 1]."""
    t = np.linspace(0, 1, n_points)
    curves = {}
    for g in np.flatnonzero(judged):
        s = scores[codes == g]
        yy = y[codes == g]

        def above(x: np.ndarray) -> tuple[float | None, ...]:
            if x.size == 0:
                return tuple(None for _ in t)
            xs = np.sort(x)
            return tuple(float(v) for v in (x.size - np.searchsorted(xs, t, side="left")) / x.size)
        curves[str(levels[g])] = {"selection_rate": above(s), "tpr": above(s[yy == 1]),
                                  "fpr": above(s[yy == 0])}
    return ThresholdCurves(tuple(float(v) for v in t.round(4)), curves)


def _score_model() -> Any:
    """A prefit scikit-learn 'estimator' whose prediction is its single input column."""
    from sklearn.base import BaseEstimator

    class ScoreModel(BaseEstimator):
        def fit(self, X: Any, y: Any = None) -> Any:
            self.fitted_ = True
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(X, dtype=float)[:, 0]

        def __sklearn_is_fitted__(self) -> bool:
            return True

    return ScoreModel().fit(None)


def what_if_sample(codes: np.ndarray, max_rows: int, rng: np.random.Generator,
                   min_per_group: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Rows for the what-if (all of them up to ``max_rows``) and each row's weight.

    Above ``max_rows``: a stratified random sample, each group in proportion to its size but
    with at least ``min_per_group`` rows (or all of its rows), so that no judged group drops
    out; the weight ``n_g / k_g`` of a sampled row restores the groups' shares in an overall
    mean (accuracy)."""
    n = codes.size
    if n <= max_rows:
        return np.arange(n), np.ones(n)
    G = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=G)
    take = np.minimum(sizes, np.maximum(np.ceil(max_rows * sizes / n), min_per_group)).astype(np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    rows = np.concatenate([rng.choice(order[bounds[g]:bounds[g + 1]], take[g], replace=False)
                           for g in range(G) if take[g]])
    rows.sort()
    return rows, (sizes / np.maximum(take, 1))[codes[rows]]


def _what_if(scores: np.ndarray, y: np.ndarray, yhat: np.ndarray, values: np.ndarray,
             keep: np.ndarray, ref: int | None, *, max_rows: int = 20_000,
             rng: np.random.Generator | None = None) -> tuple[WhatIf, ...]:
    """fairlearn ThresholdOptimizer per constraint, fitted and evaluated on the audited rows
    (above ``max_rows`` on a stratified sample of them, :func:`what_if_sample`: its cost grows
    with the rows and it is information only)."""
    try:
        from fairlearn.postprocessing import ThresholdOptimizer
    except ImportError:  # pragma: no cover - fairlearn is a dependency
        return ()
    # Scores rounded to 0.001: the optimizer's cost grows with the number of distinct scores.
    s, t, p, v = np.round(scores[keep], 3), y[keep], yhat[keep], values[keep]
    levels, codes = group_codes(v)
    rows, w = what_if_sample(codes, max_rows, rng if rng is not None else np.random.default_rng(0))
    s, t, p, v, codes = s[rows], t[rows], p[rows], v[rows], codes[rows]
    n_total = int(keep.sum())
    finite = bool(np.all(np.isfinite(scores[keep])))  # fairlearn loops without end on NaN scores (17 GB in 15 min)
    G = len(levels)
    before_rates = rates_from_cells(confusion_cells(t, p, codes, G))

    def acc(pred: np.ndarray) -> float | None:
        return _f(np.average(pred == t, weights=w))
    out = []
    for constraint, disp in (("demographic_parity", "demographic_parity_difference"),
                             ("equalized_odds", "equalized_odds_difference")):
        before = binary_disparities(before_rates, None)[disp]
        if not finite:
            out.append(WhatIf(constraint, acc(p), None, disp, _f(before), None, {},
                              "not run: the scores contain NaN or infinite values", rows.size, n_total))
            continue
        try:
            opt = ThresholdOptimizer(estimator=_score_model(), constraints=constraint,
                                     predict_method="predict", prefit=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt.fit(s[:, None], t, sensitive_features=v)
                new = np.asarray(opt.predict(s[:, None], sensitive_features=v, random_state=0)).astype(np.int64)
        except Exception as exc:  # fairlearn raises ValueError etc. on degenerate groups
            out.append(WhatIf(constraint, acc(p), None, disp, _f(before), None, {},
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                              rows.size, n_total))
            continue
        after_rates = rates_from_cells(confusion_cells(t, new, codes, G))
        after = binary_disparities(after_rates, None)[disp]
        out.append(WhatIf(constraint, acc(p), acc(new), disp, _f(before),
                          _f(after), {str(lv): _f(after_rates["selection_rate"][g])
                                      for g, lv in enumerate(levels)}, None, rows.size, n_total))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Regression and multiclass
# --------------------------------------------------------------------------------------------


def _analyse_regression(cols: Sequence[str], values: np.ndarray, y: np.ndarray, yhat: np.ndarray,
                        config: FairnessConfig, ref_name: str | None,
                        rng: np.random.Generator) -> AttributeResult:
    name, levels, codes, G, counts, small, judged, ref = _groups(cols, values, config, ref_name)
    keys = ("mean_prediction", "mean_error", "mae")
    cols_vals = np.column_stack([yhat, yhat - y, np.abs(yhat - y)])
    # per-group means from sums (np.bincount; fairlearn's MetricFrame gives the same, slowly)
    point = {k: np.bincount(codes, cols_vals[:, j], minlength=G) / np.maximum(counts, 1)
             for j, k in enumerate(keys)}
    B = config.n_boot
    boot = {k: np.full((B, G), np.nan) for k in keys} if B else None
    if B:
        for g, rows, w in row_weights(codes, G, B, rng):
            if small[g] or rows.size == 0:
                continue
            m = weighted_means(cols_vals[rows], w)
            for j, k in enumerate(keys):
                boot[k][:, g] = m[:, j]
    intervals = {k: percentile_interval(boot[k], config.confidence) for k in keys} if B else {}
    sds = cols_vals[judged[codes]].std(axis=0)
    rows_out = []
    for g, lv in enumerate(levels):
        if small[g]:
            rows_out.append(GroupRow(str(lv), int(counts[g]), True,
                                     {k: Estimate(None, undefined=TOO_SMALL) for k in keys}, {}))
            continue
        metrics = {k: Estimate(_f(point[k][g]), _f(intervals[k][0][g]) if B else None,
                               _f(intervals[k][1][g]) if B else None) for k in keys}
        n_other = counts[ref] if ref is not None and ref != g else counts[judged].sum() - counts[g]
        mdd = {k: _f(min_detectable_mean_difference(float(sds[j]), counts[g], n_other,
                                                     alpha=config.alpha, power=config.power))
               for j, k in enumerate(keys)}
        rows_out.append(GroupRow(str(lv), int(counts[g]), False, metrics, mdd))
    masked = _mask_groups(point, judged)
    judged_names = tuple(str(levels[g]) for g in np.flatnonzero(judged))
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    # Permutation: shuffle group labels over the judged rows. The statistic is the largest
    # studentized pairwise gap (Welch t), matching the pairwise bootstrap-t interval; the raw
    # max − min would let the noisiest (smallest) group dominate the null.
    from audit.stats.proportions import pairs_of

    pairs = pairs_of(judged, ref)
    pa = np.array([p[0] for p in pairs], dtype=np.int64)
    pb = np.array([p[1] for p in pairs], dtype=np.int64)

    @_quiet
    def max_t(n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        mean = s1 / n
        var = np.maximum(s2 / n - mean ** 2, 0.0) * n / np.maximum(n - 1, 1)
        se = np.sqrt(var[..., pa] / n[..., pa] + var[..., pb] / n[..., pb])
        # a zero spread within both groups: any gap is decisive, no gap is not (finite, so
        # that permutation_pvalue can rank it)
        t = np.abs(mean[..., pa] - mean[..., pb]) / np.maximum(se, 1e-12)
        return np.nanmax(t, axis=-1)

    null = None
    observed_t = {}
    P = config.n_permutations
    keep_rows = np.flatnonzero(judged[codes])
    if P and pairs:
        sub_codes = codes[keep_rows]
        vals = cols_vals[keep_rows]
        n_obs = np.bincount(sub_codes, minlength=G).astype(float)
        for j, k in enumerate(keys):
            observed_t[k] = float(max_t(n_obs, np.bincount(sub_codes, vals[:, j], minlength=G),
                                        np.bincount(sub_codes, vals[:, j] ** 2, minlength=G)))
        null = {k: np.empty(P) for k in keys}
        chunk = max(1, 2_000_000 // max(1, keep_rows.size))
        for start in range(0, P, chunk):
            b = min(chunk, P - start)
            perm = np.stack([rng.permutation(sub_codes) for _ in range(b)])
            flat = (perm + (np.arange(b) * G)[:, None]).ravel()
            n = np.bincount(flat, minlength=b * G).reshape(b, G).astype(float)
            for j, k in enumerate(keys):
                s1 = np.bincount(flat, weights=np.tile(vals[:, j], b), minlength=b * G).reshape(b, G)
                s2 = np.bincount(flat, weights=np.tile(vals[:, j] ** 2, b), minlength=b * G).reshape(b, G)
                null[k][start:start + b] = max_t(n, s1, s2)
    disparities = {}
    masked_boot = _mask_groups(boot, judged) if B else None

    def bounds_at(k: str, level: float) -> tuple[float | None, float | None]:
        if masked_boot is None:
            return None, None
        return _disparity_bounds(k, [REGRESSION_DISPARITIES[k][1]], masked, masked_boot, ref, level,
                                 cap=None)

    raw = {}
    for k, (label, base) in REGRESSION_DISPARITIES.items():
        v = _f(spread_difference(masked[base], ref))
        lo, hi = bounds_at(k, config.confidence) if v is not None else (None, None)
        raw[k] = (_f(permutation_pvalue(observed_t[base], null[base]))
                  if null is not None and v is not None else None)
        why = None if v is not None else f"fewer than two groups with at least {config.min_group_size} rows"
        disparities[k] = Disparity(k, label, Estimate(v, lo, hi, why), raw[k], None,
                                   "group labels shuffled over all rows; statistic: the largest "
                                   "pairwise Welch t" if raw[k] is not None else None,
                                   judged_names, small_names)
    # One family per attribute: its regression disparities, Holm-adjusted together.
    tested = [k for k, p in raw.items() if p is not None]
    for k, adj in zip(tested, holm([raw[k] for k in tested]), strict=True):
        disparities[k] = dataclasses.replace(
            disparities[k], p_adjusted=_f(adj), family="regression disparities (Holm)",
            n_comparisons=len(tested), significance=significance(raw[k], _f(adj), config.alpha))
    notes = []
    if small.any():
        notes.append(f"{int(small.sum())} group(s) with fewer than {config.min_group_size} rows are "
                     "too small to judge and left out of the disparities.")
    return AttributeResult(name, tuple(cols), str(levels[ref]) if ref is not None else None,
                           tuple(rows_out), disparities, {}, (), tuple(notes), None, (), bounds_at)


def _analyse_multiclass(cols: Sequence[str], values: np.ndarray, y: np.ndarray, yhat: np.ndarray,
                        K: int, classes: Sequence[str], config: FairnessConfig, ref_name: str | None,
                        rng: np.random.Generator) -> AttributeResult:
    name, levels, codes, G, counts, small, judged, ref = _groups(cols, values, config, ref_name)
    cells = confusion_cells(y, yhat, codes, G, K)

    def named(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {("accuracy" if k == "accuracy" else f"selection_rate[{classes[int(k[15:-1])]}]"): v
                for k, v in r.items()}

    point = named(multiclass_rates_from_cells(cells, K))
    keys = list(point)
    c = cells.reshape(G, K, K)
    n_rows = c.sum(axis=(1, 2))
    # every multiclass rate is a proportion of the group's rows: exact per-group intervals
    num = {"accuracy": np.trace(c, axis1=1, axis2=2)}
    num.update({k: c[:, :, j].sum(axis=1) for j, k in enumerate(keys[1:])})
    intervals = {k: group_interval(num[k], n_rows, config.confidence, GROUP_METHOD) for k in keys}

    def disp(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = _mask_groups(rates, judged)
        sel = np.stack([spread_difference(m[k], ref) for k in keys if k != "accuracy"], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {"accuracy_difference": spread_difference(m["accuracy"], ref),
                    "demographic_parity_difference": np.nanmax(sel, axis=0)}

    dpoint = disp(point)
    rows_out = []
    for g, lv in enumerate(levels):
        if small[g]:
            rows_out.append(GroupRow(str(lv), int(counts[g]), True,
                                     {k: Estimate(None, undefined=TOO_SMALL) for k in keys}, {}))
            continue
        rows_out.append(GroupRow(str(lv), int(counts[g]), False,
                                 {k: Estimate(_f(point[k][g]), _f(intervals[k][0][g]),
                                              _f(intervals[k][1][g])) for k in keys}, {}))
    judged_names = tuple(str(levels[g]) for g in np.flatnonzero(judged))
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    n_judged = np.where(judged, n_rows, 0)
    # demographic parity here is the largest gap over the classes' selection rates: one family
    # of pairs × classes
    comps = {"accuracy_difference": [(num["accuracy"], n_judged)],
             "demographic_parity_difference": [(num[k], n_judged) for k in keys[1:]]}
    families = {"accuracy_difference": "equal accuracy",
                "demographic_parity_difference": "equal selection rate of every class"}

    def bounds_at(k: str, level: float) -> tuple[float | None, float | None]:
        lo, hi, *_ = disparity_score_interval(comps[k], "difference", ref, level)
        return _f(lo), _f(hi)

    disparities = {}
    alpha = 1 - config.confidence
    for k, (label, _) in MULTICLASS_DISPARITIES.items():
        v = _f(dpoint[k])
        lo = hi = p_adj = p_raw = m = None
        if v is not None:
            lo_, hi_, p_adj_, p_raw_, m_ = disparity_score_interval(comps[k], "difference", ref,
                                                                    config.confidence)
            lo, hi, p_adj, p_raw, m = _f(lo_), _f(hi_), _f(p_adj_), _f(p_raw_), int(m_)
        why = None if v is not None else f"fewer than two groups with at least {config.min_group_size} rows"
        disparities[k] = Disparity(k, label, Estimate(v, lo, hi, why), p_raw, p_adj,
                                   SCORE_TEST if p_raw is not None else None, judged_names,
                                   small_names, (), families[k] if p_raw is not None else None, m,
                                   significance(p_raw, p_adj, alpha))
    return AttributeResult(name, tuple(cols), str(levels[ref]) if ref is not None else None,
                           tuple(rows_out), disparities, {}, (), (), None, (), bounds_at)


__all__ = [
    "AttributeResult",
    "Disparity",
    "Estimate",
    "Fairness",
    "FairnessConfig",
    "FairnessResult",
    "GroupRow",
    "attribute_sets",
    "disparity_names",
    "normalize_set_name",
    "set_name",
]
