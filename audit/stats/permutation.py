"""Permutation p-values from a stored null distribution.

Conventions (Phipson & Smyth 2010; Olden & Jackson 2002): with ``B`` null statistics ``T_b`` and
the observed ``t``,

- upper tail ``p_up = (1 + #{T_b >= t}) / (B + 1)``,
- lower tail ``p_low = (1 + #{T_b <= t}) / (B + 1)``,
- two-sided ``min(1, 2 * min(p_up, p_low))`` — from the two empirical tails, *not* a comparison
  of ``|T|``, because a permutation null need not be centred at zero (every null network of the
  randomization test starts from the same initial weights).

The smallest attainable p-value is ``1 / (B + 1)``. Null draws that are not finite (a diverged
network) are excluded, and how many were excluded is reported with the p-values.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from audit.errors import InvalidConfigError

Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
MIN_PERMUTATIONS = 19


def check_n_permutations(value: object, *, where: str = "n_permutations") -> int:
    """Validate a number of permutations: an integer of at least 19.

    With fewer than 19 permutations the smallest attainable p-value, ``1/(B+1)``, exceeds 0.05.

    Examples
    --------
    >>> check_n_permutations(999)
    999
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidConfigError(f"The {where!r} parameter must be an integer. Got {value!r} instead.")
    if value < MIN_PERMUTATIONS:
        raise InvalidConfigError(
            f"The {where!r} parameter must be at least {MIN_PERMUTATIONS} (with B permutations the "
            f"smallest p-value is 1/(B+1), which cannot reach 0.05 below 19). Got {value} instead.")
    return int(value)


@dataclass(frozen=True)
class PermutationPValues:
    """Per-statistic permutation p-values (arrays shaped like the observed statistic)."""

    upper: np.ndarray
    lower: np.ndarray
    two_sided: np.ndarray
    n_null: int          # finite null draws used
    n_excluded: int      # null draws dropped because they were not finite

    def select(self, alternative: str) -> np.ndarray:
        """The p-values of one alternative ("two-sided", "greater"/"upper", "less"/"lower")."""
        if alternative == "two-sided":
            return self.two_sided
        if alternative in ("greater", "upper"):
            return self.upper
        if alternative in ("less", "lower"):
            return self.lower
        raise InvalidConfigError(f"The 'alternative' must be one of {list(ALTERNATIVES)}. Got {alternative!r} instead.")


def valid_null_rows(null: np.ndarray) -> np.ndarray:
    """Boolean mask of null draws (rows) whose statistics are all finite."""
    null = np.asarray(null, dtype=float)
    return np.isfinite(null.reshape(len(null), -1)).all(axis=1)


def permutation_pvalues(observed: np.ndarray, null: np.ndarray) -> PermutationPValues:
    """Upper, lower and two-sided permutation p-values.

    Parameters
    ----------
    observed : array of shape (...)
        The statistics on the real data.
    null : array of shape (B, ...)
        The same statistics from ``B`` permuted data sets. Rows with any non-finite value are
        excluded (and counted in ``n_excluded``).

    Examples
    --------
    >>> null = np.arange(99.0)[:, None]            # 0, 1, ..., 98
    >>> p = permutation_pvalues(np.array([97.5]), null)
    >>> float(p.upper[0]), float(p.two_sided[0])
    (0.02, 0.04)
    """
    observed = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    if null.shape[1:] != observed.shape:
        raise ValueError(f"null draws have shape {null.shape[1:]}, observed {observed.shape}")
    keep = valid_null_rows(null)
    null = null[keep]
    B = len(null)
    if B == 0:
        nan = np.full(observed.shape, np.nan)
        return PermutationPValues(nan, nan, nan, 0, int((~keep).sum()))
    upper = (1 + (null >= observed).sum(axis=0)) / (B + 1)
    lower = (1 + (null <= observed).sum(axis=0)) / (B + 1)
    two = np.minimum(1.0, 2 * np.minimum(upper, lower))
    bad = ~np.isfinite(observed)
    if bad.any():
        upper, lower, two = (np.where(bad, np.nan, a) for a in (upper, lower, two))
    return PermutationPValues(upper, lower, two, B, int((~keep).sum()))


def null_summary(null: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation, 2.5% and 97.5% quantiles of the finite null draws."""
    null = np.asarray(null, dtype=float)
    null = null[valid_null_rows(null)]
    if len(null) == 0:
        nan = np.full(null.shape[1:], np.nan)
        return nan, nan, nan, nan
    q = np.quantile(null, [0.025, 0.975], axis=0)
    return null.mean(0), null.std(0, ddof=1) if len(null) > 1 else np.zeros(null.shape[1:]), q[0], q[1]


__all__ = [
    "ALTERNATIVES",
    "Alternative",
    "MIN_PERMUTATIONS",
    "PermutationPValues",
    "check_n_permutations",
    "null_summary",
    "permutation_pvalues",
    "valid_null_rows",
]
