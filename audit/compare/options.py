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
Groups, intersections, the reference group, ``min_group_size`` and ``favourable`` come from the
champion's ``[methods.fairness]`` table, so the comparison judges the groups its audit judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit.errors import InvalidConfigError, did_you_mean

#: The disparities compared unless ``disparities`` lists others (gate keys are always added).
DEFAULT_DISPARITIES = ("demographic_parity_difference", "equalized_odds_difference",
                       "equal_opportunity_difference", "predictive_parity_difference",
                       "accuracy_difference")
_KEYS = {"confidence", "n_bootstrap", "n_permutations", "calibration_bins", "disparities", "gate"}


@dataclass(frozen=True)
class CompareOptions:
    """Options of a comparison (see the module docstring).

    confidence : level c of every paired interval; the gate's verdicts err at most (1 − c)/2
        each way where the interval's coverage is nominal.
    n_bootstrap : paired bootstrap resamples; 0 gives no intervals (the gate is then insufficient).
    n_permutations : sign-flip permutations per test; 0 gives no tests.
    calibration_bins : equal-width score bins of the expected calibration error.
    disparities : the disparities whose change is reported (gate keys are added).
    min_group_size, favourable : from the champion's [methods.fairness].
    """

    confidence: float = 0.95
    n_bootstrap: int = 1000
    n_permutations: int = 999
    calibration_bins: int = 10
    disparities: tuple[str, ...] = DEFAULT_DISPARITIES
    min_group_size: int = 30
    favourable: str = "positive"

    def validate(self) -> None:
        def bad(name: str, rule: str, value: Any) -> InvalidConfigError:
            return InvalidConfigError(f"The [compare] option {name!r} must be {rule}. Got {value!r} instead.")

        if not 0 < self.confidence < 1:
            raise bad("confidence", "between 0 and 1", self.confidence)
        if not (self.n_bootstrap == 0 or 100 <= self.n_bootstrap <= 100_000):
            raise bad("n_bootstrap", "0 (no intervals) or 100 to 100,000", self.n_bootstrap)
        if not (self.n_permutations == 0 or 99 <= self.n_permutations <= 100_000):
            raise bad("n_permutations", "0 (no tests) or 99 to 100,000", self.n_permutations)
        if not 2 <= self.calibration_bins <= 1_000:
            raise bad("calibration_bins", "2 to 1,000", self.calibration_bins)
        for d in self.disparities:
            if d not in comparable_disparities():
                names = comparable_disparities()
                raise bad("disparities", f"a list of disparities ({', '.join(names)})"
                          f"{did_you_mean(d, names)}", d)


def comparable_disparities() -> list[str]:
    """The disparities whose change is compared: the differences of group rates (a ratio's
    change has no interval here, and an AUC gap needs the per-group AUC bootstrap)."""
    from audit.methods.fairness.config import BINARY_DISPARITIES

    return [k for k in BINARY_DISPARITIES if k.endswith("_difference") and k != "auc_difference"]


def parse_compare(table: Mapping[str, Any], fairness: Mapping[str, Any] | None = None
                  ) -> tuple[CompareOptions, dict[str, Any]]:
    """``[compare]`` (and the champion's ``[methods.fairness]``) -> options and the gate table."""
    from audit.methods.fairness import FairnessConfig

    if not isinstance(table, Mapping):
        raise InvalidConfigError(f"[compare] must be a table. Got {table!r} instead.")
    for key in table:
        if key == "n_boot":  # one name per idea across the package
            raise InvalidConfigError("The [compare] option 'n_boot' was renamed 'n_bootstrap' (one name per idea "
                                     f"across methods): write n_bootstrap = {table[key]!r}.")
        if key not in _KEYS:
            raise InvalidConfigError(f"Unknown key {key!r} in [compare].{did_you_mean(key, _KEYS)} "
                                     f"Valid keys: {', '.join(sorted(_KEYS))}.")
    values: dict[str, Any] = {}
    for key, kind in (("confidence", float), ("n_bootstrap", int), ("n_permutations", int),
                      ("calibration_bins", int)):
        if key in table:
            v = table[key]
            ok = (isinstance(v, (int, float)) if kind is float else isinstance(v, int)) and not isinstance(v, bool)
            if not ok or (isinstance(v, float) and not math.isfinite(v)):
                raise InvalidConfigError(f"The [compare] option {key!r} must be {'a number' if kind is float else 'an integer'}. "
                                         f"Got {v!r} instead.")
            values[key] = kind(v)
    if "disparities" in table:
        d = table["disparities"]
        if not isinstance(d, list) or not d or not all(isinstance(x, str) for x in d):
            raise InvalidConfigError(f"The [compare] option 'disparities' must be a non-empty list of "
                                     f"disparity names. Got {d!r} instead.")
        values["disparities"] = tuple(dict.fromkeys(d))
    fair = FairnessConfig.from_dict(fairness or {}, method="fairness")
    options = CompareOptions(**values, min_group_size=fair.min_group_size, favourable=fair.favourable)
    options.validate()
    gate = table.get("gate", {})
    if not isinstance(gate, Mapping):
        raise InvalidConfigError(f"[compare.gate] must be a table of rules. Got {gate!r} instead.")
    return options, dict(gate)


__all__ = ["DEFAULT_DISPARITIES", "CompareOptions", "comparable_disparities", "parse_compare"]
