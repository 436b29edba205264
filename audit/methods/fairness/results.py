"""Result types of the fairness method and the wording of its tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from audit.core.method import MethodResult
from audit.core.results import Estimate
from audit.stats.calibration import CalibrationTest

TOO_SMALL = "too small to judge"


@dataclass(frozen=True)
class Calibration:
    """Reliability curve of one group: per score bin, rows, mean score and fraction positive;
    with ``n_bootstrap`` the group's Monte Carlo test of calibration (:mod:`audit.stats.calibration`)."""

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
        return {k: e.undefined_reason for k, e in self.metrics.items() if e.undefined_reason}

    @classmethod
    def too_small_to_judge(cls, group: object, count: int, keys: Sequence[str]) -> GroupRow:
        """A group below min_group_size: counted, but every metric undefined."""
        return cls(str(group), int(count), True, {k: Estimate(None, undefined_reason=TOO_SMALL) for k in keys}, {})


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

    if d.significance == SIGNIFICANT and m == 1:
        return (f"The gap is significant ({d.family}; one comparison, so no correction: "
                f"p {fmt(d.p_adjusted)} < {alpha:.3g}).")
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
    #: gate's correction across rules (not serialised; read through :meth:`interval_at`).
    _bounds: Callable[[str, float], tuple[float | None, float | None]] | None = None
    #: AUC from a score histogram (streamed data): the largest distance from any judged group's
    #: histogram AUC to its exact AUC (None: exact, computed from the rows).
    auc_error_bound: float | None = None

    @property
    def title(self) -> str:
        return " × ".join(self.columns)

    def interval_at(self, metric: str, confidence: float) -> tuple[float | None, float | None]:
        """The disparity ``metric``'s interval at another ``confidence`` (the gate's Bonferroni
        correction across rules); ``(None, None)`` when it has none."""
        if self._bounds is None:
            return None, None
        return self._bounds(metric, confidence)


@dataclass(frozen=True)
class FairnessResult(MethodResult):
    task: str
    positive_label: str | None
    metrics: tuple[str, ...]
    labels: dict[str, str]
    attributes: dict[str, AttributeResult]
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
    #: the largest ``auc_error_bound`` of the attributes (None: every AUC exact)
    auc_error_bound: float | None = None
    #: how the intervals of the disparities that are not proportions are computed (the AUC
    #: difference; regression's mean gaps), as their Estimates state it; None where there are none
    gap_interval: str | None = None
