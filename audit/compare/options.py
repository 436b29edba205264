"""The ``[compare]`` table: options of the paired statistics, and its ``gate`` sub-table.

```toml
[compare]
confidence = 0.95        # level of every paired interval
n_bootstrap = 1000            # paired bootstrap resamples (0: no intervals, so the gate cannot pass)
n_permutations = 999     # sign-flip permutations per test (0: no tests)
calibration_bins = 10    # equal-width score bins of the ECE
disparities = ["demographic_parity_difference", "equalized_odds_difference"]

[compare.gate]
"fairness.sex.demographic_parity_difference" = { max_increase = 0.02 }
"performance.auc" = { max_decrease = 0.01 }
```
Groups, intersections, the reference group, ``min_group_size`` and the favourable outcome
(``favourable`` or ``favourable_label``) come from the champion's ``[methods.fairness]`` table,
so the comparison judges the groups its audit judged; the favourable outcome is resolved against
the data's classes by the fairness method's own resolver
(:func:`audit.methods.fairness.groups.resolve_favourable`) when the rows are known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from audit.core.method import Constraint, Either, Interval, MethodConfig, OptionError, Options
from audit.errors import InvalidConfigError
from audit.methods.fairness.config import BINARY_DISPARITIES

#: The disparities compared unless ``disparities`` lists others (gate keys are always added).
DEFAULT_DISPARITIES = ("demographic_parity_difference", "equalized_odds_difference",
                       "equal_opportunity_difference", "predictive_parity_difference",
                       "accuracy_difference", "demographic_parity_ratio", "equalized_odds_ratio",
                       "equal_opportunity_ratio", "predictive_parity_ratio", "auc_difference")
#: Options of the comparison that come from the champion's [methods.fairness], not [compare].
_FROM_FAIRNESS = ("min_group_size", "favourable", "favourable_label")


def comparable_disparities() -> list[str]:
    """The disparities whose change is compared: every disparity of a binary classifier (the
    differences and ratios of group rates, and the gap between groups' AUCs)."""
    return list(BINARY_DISPARITIES)


@dataclass(frozen=True)
class CompareConfig(MethodConfig):
    """The ``[compare]`` table's options (see the module docstring); validated by the
    declarative option bounds of every method (:data:`audit.core.method.OPTION_BOUNDS`, with the
    stricter resample counts below), so errors have the same shape.

    confidence : level c of every paired interval; the gate's verdicts err at most (1 − c)/2
        each way where the interval's coverage is nominal.
    n_bootstrap : paired bootstrap resamples; 0 gives no intervals (the gate is then insufficient).
    n_permutations : sign-flip permutations per test; 0 gives no tests.
    calibration_bins : equal-width score bins of the expected calibration error.
    disparities : the disparities whose change is reported (gate keys are added).
    """

    confidence: float = 0.95
    n_bootstrap: int = 1000
    n_permutations: int = 999
    calibration_bins: int = 10
    disparities: tuple[str, ...] = DEFAULT_DISPARITIES

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "n_bootstrap": Either((Options((0,)), Interval(100, 100_000)),
                              "0 (no intervals), or enough paired resamples to place the ends of a 95% interval"),
        "n_permutations": Either((Options((0,)), Interval(99, 100_000)),
                                 "0 (no tests), or enough swaps for a p-value to reach 0.01"),
        "disparities": Options(tuple(comparable_disparities()),
                               "the disparities of a binary classifier, whose changes get paired intervals"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"n_boot": "n_bootstrap"}
    tables: ClassVar[tuple[str, ...]] = ("gate",)

    def validate(self) -> None:
        if not self.disparities:
            raise OptionError("disparities", "a non-empty list of disparity names", list(self.disparities))


@dataclass(frozen=True)
class CompareOptions(CompareConfig):
    """The options of a comparison: ``[compare]``'s, and from the champion's
    ``[methods.fairness]`` the ``min_group_size`` of its groups and the favourable decision
    (``"positive"`` or ``"negative"``, resolved from ``favourable`` / ``favourable_label`` by
    :func:`audit.compare.run.compare_runs`)."""

    min_group_size: int = 30
    favourable: str = "positive"


def parse_compare(table: Mapping[str, Any], fairness: Mapping[str, Any] | None = None
                  ) -> tuple[CompareOptions, dict[str, Any]]:
    """``[compare]`` (and the champion's ``[methods.fairness]``) -> options and the gate table.

    Examples
    --------
    >>> parse_compare({"n_bootstrap": 5})
    Traceback (most recent call last):
    ...
    audit.errors.InvalidConfigError: The 'n_bootstrap' option in [compare] must be 0 or 100 to 100,000 (0 (no intervals), or enough paired resamples to place the ends of a 95% interval). Got 5 instead.
    """
    from audit.methods.fairness import FairnessConfig

    if not isinstance(table, Mapping):
        raise InvalidConfigError(f"[compare] must be a table. Got {table!r} instead.")
    for key in _FROM_FAIRNESS:
        if key in table:
            raise InvalidConfigError(f"The {key!r} of a comparison is the champion's: set it in [methods.fairness] "
                                     "(the comparison judges the groups its audit judged), not in [compare].")
    own_table = {k: v for k, v in table.items() if k != "gate"}
    listed = own_table.get("disparities")
    if isinstance(listed, list) and all(isinstance(d, str) for d in listed):
        own_table["disparities"] = list(dict.fromkeys(listed))  # each once
    own = CompareConfig.from_dict(own_table, method="compare", section="[compare]")
    fair = FairnessConfig.from_dict(fairness or {}, method="fairness")
    options = CompareOptions(**own.__dict__, min_group_size=fair.min_group_size)
    gate = table.get("gate", {})
    if not isinstance(gate, Mapping):
        raise InvalidConfigError(f"[compare.gate] must be a table of rules. Got {gate!r} instead.")
    return options, dict(gate)


__all__ = ["DEFAULT_DISPARITIES", "CompareConfig", "CompareOptions", "comparable_disparities", "parse_compare"]
