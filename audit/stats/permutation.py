"""Permutation p-values from a stored null distribution.

Conventions (Phipson & Smyth 2010; Olden & Jackson 2002): with ``B`` null statistics ``T_b`` and
the observed ``t``,

- upper tail ``p_up = (1 + #{T_b >= t}) / (B + 1)``,
- lower tail ``p_low = (1 + #{T_b <= t}) / (B + 1)``,
- two-sided ``min(1, 2 * min(p_up, p_low))`` — from the two empirical tails, *not* a comparison
  of ``|T|``, because a permutation null need not be centred at zero (every null network of the
  randomization test starts from the same initial weights).

The smallest attainable p-value is ``1 / (B + 1)``. Null draws that are not finite (a diverged
network) are excluded, and how many were excluded is reported with the p-values. Ties count as at
least as extreme, and so do draws within a relative ``1e-12`` of the observed value: the same
statistic summed in another order (a shuffle that leaves every group's values as they were)
differs in the last bits, and counting such a draw as less extreme would make the test
anti-conservative for discrete statistics. This module holds the package's only implementation
of these p-values (the fairness, recourse and calibration tests use it too).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from audit.errors import InvalidConfigError

Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
MIN_PERMUTATIONS = 19
#: Null draws within this relative distance of the observed statistic count as ties.
TIE_TOLERANCE = 1e-12


def check_n_permutations(value: object, *, where: str = "n_permutations", alternative: str = "greater",
                         alpha: float = 0.05) -> int:
    """Validate a number of permutations: an integer large enough that one test can reach ``alpha``.

    With ``B`` permutations the smallest attainable p-value is ``1/(B+1)`` one-sided and
    ``2/(B+1)`` two-sided, so fewer than 19 (one-sided) or 39 (two-sided) permutations can never
    give p <= 0.05. Whether a whole *family* of tests can reach ``alpha`` after a multiplicity
    correction depends on its size, known only at run time: see :func:`reachability`.

    Examples
    --------
    >>> check_n_permutations(999)
    999
    >>> check_n_permutations(39, alternative="two-sided")
    39
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidConfigError(f"The {where!r} parameter must be an integer. Got {value!r} instead.")
    least = max(MIN_PERMUTATIONS, smallest_reaching_b(1, alpha, alternative, "none"))
    if value < least:
        sided = "two-sided" if alternative == "two-sided" else "one-sided"
        floor = "2/(B+1)" if alternative == "two-sided" else "1/(B+1)"
        raise InvalidConfigError(
            f"The {where!r} parameter must be at least {least} (with B permutations the smallest "
            f"{sided} p-value is {floor}, which cannot reach {alpha:g} below {least}). Got {value} instead.")
    return int(value)


CORRECTIONS: tuple[str, ...] = ("none", "bonferroni", "holm", "bh", "maxt")
_CORRECTION_NAMES = {"none": "unadjusted", "bonferroni": "Bonferroni", "holm": "Holm",
                     "bh": "Benjamini–Hochberg", "maxt": "Westfall–Young max-T"}


def _tails(alternative: str) -> int:
    return 2 if alternative == "two-sided" else 1


def _floor_numerator(family_size: int, alternative: str, correction: str) -> int:
    """``k`` such that the smallest adjusted p of a lone effect is ``k / (B + 1)``.

    Bonferroni, Holm and BH multiply a lone smallest p by the family size; max-T compares with the
    null maxima, whose smallest p is that of one test (adjusted p-values are reported no lower
    than the raw ones, so a two-sided max-T floor is ``2/(B+1)`` too).
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; expected one of {CORRECTIONS}")
    m = max(1, int(family_size)) if correction in ("bonferroni", "holm", "bh") else 1
    return m * _tails(alternative)


def smallest_reaching_b(family_size: int, alpha: float, alternative: str = "greater",
                        correction: str = "bh") -> int:
    """The smallest number of permutations ``B`` with which a lone effect can reach ``alpha``:
    the smallest ``B`` with ``k / (B + 1) <= alpha`` (``k`` from :func:`_floor_numerator`).

    Examples
    --------
    >>> smallest_reaching_b(1, 0.05, "two-sided", "none")
    39
    >>> smallest_reaching_b(6, 0.05, "greater", "bh")      # 6/120 = 0.05
    119
    >>> smallest_reaching_b(6, 0.05, "greater", "maxt")
    19
    """
    k = _floor_numerator(family_size, alternative, correction)
    b = max(1, math.ceil(k / alpha) - 1)
    while k / (b + 1) > alpha:       # guard the float rounding of k / alpha both ways
        b += 1
    while b > 1 and k / b <= alpha:
        b -= 1
    return b


@dataclass(frozen=True)
class Reachability:
    """Whether ``B`` permutations can make a test of a family significant after a correction.

    ``smallest_p`` is the smallest adjusted p-value a *lone* effect can get (its raw p at the
    floor ``1/(B+1)`` or ``2/(B+1)``, every other test unremarkable). Holm and Bonferroni can
    never go below it; Benjamini–Hochberg can, but only when at least ``needed_together`` tests
    reach the floor together; max-T does not depend on the family size.
    """

    n_permutations: int
    family_size: int
    alpha: float
    alternative: str
    correction: str
    smallest_p: float
    reachable: bool
    smallest_b: int              # smallest B with which a lone effect can reach alpha
    needed_together: int         # tests that must reach the floor together (BH); 1 when reachable

    def message(self, what: str = "tests", option: str = "n_permutations") -> str:
        """One sentence for a report note / finding (empty when reachable)."""
        if self.reachable:
            return ""
        name = _CORRECTION_NAMES[self.correction]
        sided = "two-sided" if self.alternative == "two-sided" else "one-sided"
        text = (f"With B = {self.n_permutations:,} permutations and {self.family_size} {what}, the "
                f"smallest {name}-adjusted p-value a lone effect can get is {self.smallest_p:.3g} "
                f"({sided}), above alpha = {self.alpha:g}")
        if self.correction == "bh" and self.needed_together <= self.family_size:
            text += (f": a test can be significant only if at least {self.needed_together} of the "
                     f"{what} reach the smallest p-value together")
        elif self.correction in ("bh", "holm", "bonferroni", "none", "maxt"):
            text += f": none of the {what} can be significant"
        return text + f". Set {option} to at least {self.smallest_b:,} to make a lone effect detectable."


def reachability(n_permutations: int, family_size: int, alpha: float, alternative: str = "greater",
                 correction: str = "bh") -> Reachability:
    """Can ``B = n_permutations`` permutations reach ``alpha`` for a family of ``family_size``
    tests after ``correction`` ("none", "bonferroni", "holm", "bh", "maxt")?

    Examples
    --------
    >>> r = reachability(99, 6, 0.05, "greater", "bh")      # 6 features, B = 99: floor 0.06
    >>> round(r.smallest_p, 3), r.reachable, r.smallest_b, r.needed_together
    (0.06, False, 119, 2)
    >>> reachability(99, 6, 0.05, "greater", "maxt").reachable
    True
    """
    B = int(n_permutations)
    k = _floor_numerator(family_size, alternative, correction)
    smallest = min(1.0, k / (B + 1))
    ok = smallest <= alpha
    raw_floor = _tails(alternative) / (B + 1)
    # BH: with j tests at the raw floor, their adjusted p is m * floor / j
    together = 1 if ok else (math.ceil(max(1, family_size) * raw_floor / alpha - 1e-12)
                             if correction == "bh" and raw_floor <= alpha else max(1, family_size) + 1)
    return Reachability(B, int(family_size), float(alpha), alternative, correction, smallest, ok,
                        smallest_reaching_b(family_size, alpha, alternative, correction), together)


def default_n_permutations(family_size: int, alpha: float, alternative: str = "greater", *,
                           correction: str = "bh", least: int = 99, cap: int = 999) -> int:
    """A default ``B`` for a family: the smallest with which a lone effect reaches ``alpha / 2``
    after ``correction`` (so an effect need not be the most extreme of all draws), at least
    ``least`` and at most ``cap``.

    Examples
    --------
    >>> default_n_permutations(6, 0.05)          # 6 / (B + 1) <= 0.025
    239
    >>> default_n_permutations(1, 0.05), default_n_permutations(500, 0.05)
    (99, 999)
    """
    return int(min(cap, max(least, smallest_reaching_b(family_size, alpha / 2, alternative, correction))))


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
    >>> float(permutation_pvalues(0.1 + 0.2, np.full(9, 0.3)).upper)   # a tie in the last bit
    1.0
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
    with np.errstate(invalid="ignore"):
        tol = TIE_TOLERANCE * np.maximum(1.0, np.abs(observed))
        upper = (1 + (null >= observed - tol).sum(axis=0)) / (B + 1)
        lower = (1 + (null <= observed + tol).sum(axis=0)) / (B + 1)
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
    "CORRECTIONS",
    "MIN_PERMUTATIONS",
    "PermutationPValues",
    "Reachability",
    "TIE_TOLERANCE",
    "check_n_permutations",
    "default_n_permutations",
    "null_summary",
    "permutation_pvalues",
    "reachability",
    "smallest_reaching_b",
    "valid_null_rows",
]
