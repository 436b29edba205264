"""The result types of a comparison: frozen dataclasses, JSON through ``to_jsonable``; every
value with an interval is an :class:`audit.core.results.Estimate`."""

from __future__ import annotations

from dataclasses import dataclass

from audit.core.results import Estimate


@dataclass(frozen=True)
class Change:
    """One metric of both models and its change (challenger − champion) with its test.

    ``change.undefined_reason`` says why there is no value, or, when there is a value but no
    interval, why none is given. ``p_value`` is the paired permutation test's, ``p_adjusted``
    Holm's over the family the change belongs to (performance, or every disparity change).
    ``basis``: what ``champion`` and ``challenger`` are when not the metric over all rows
    (a recourse change: "median cost on the 118 paired rows"), so that no text shows them
    unlabelled beside a different per-model figure. ``excluded_undefined``: judged groups left
    out of both models' values, the change, its interval and its test because the metric is
    undefined for them, each with why ("C (one outcome class only: no AUC)")."""

    metric: str
    label: str
    champion: float | None
    challenger: float | None
    change: Estimate
    p_value: float | None
    p_adjusted: float | None
    test: str
    excluded_small: tuple[str, ...] = ()
    basis: str | None = None
    excluded_undefined: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecisionChange:
    """How many rows of a group change decision from the champion to the challenger."""

    group: str
    rows: int
    changed: int
    to_positive: int
    to_negative: int
    share: Estimate


@dataclass(frozen=True)
class MovedFeature:
    feature: str
    champion_rank: int
    challenger_rank: int


@dataclass(frozen=True)
class ImportanceComparison:
    """Global importances of one attribution method for both models, and their agreement."""

    method: str
    origin: str
    features: tuple[str, ...]
    champion: tuple[float, ...]
    challenger: tuple[float, ...]
    spearman: Estimate
    kendall: Estimate
    moved: tuple[MovedFeature, ...]
    paired_rows: int | None      # rows explained for both models (the bootstrap's rows), or None


__all__ = ["Change", "DecisionChange", "Estimate", "ImportanceComparison", "MovedFeature"]
