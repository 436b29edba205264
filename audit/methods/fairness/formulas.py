"""Vectorized disparity formulas over (..., G) arrays (NaN = undefined or excluded) and the
score intervals and tests of the binary disparities."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from audit.methods.fairness.config import RATE_DISPARITY_BASES
from audit.stats.bootstrap import disparity_interval, rate_counts
from audit.stats.proportions import disparity_score_interval


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
#: How a disparity of proportions gets its interval (audit.stats.proportions.disparity_score_interval).
SCORE_INTERVAL = ("simultaneous score interval from the pairwise Newcombe (MOVER) intervals, "
                  "Bonferroni over the compared pairs on the bound away from parity")
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
