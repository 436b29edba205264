"""Recourse fairness: the cost of the cheapest valid counterfactual per sensitive group.

Burden in the sense of Sharma et al. (2020): for the rows with the unfavourable prediction,
how far each group has to move to reach the favourable one. Rows without any counterfactual
are not given a cost (undefined is not zero); their share per group is reported and tested
separately.

Procedures
----------
- Per-group mean and median cost with percentile bootstrap intervals (rows resampled within
  the group, ``n_bootstrap`` resamples).
- Gap: the largest minus the smallest group mean among groups with at least
  ``min_group_size`` costed rows; its p-value is a permutation test (group labels shuffled
  among costed rows, ``n_permutations`` shuffles, p = (1 + #{null >= observed}) / (B + 1),
  :func:`audit.stats.permutation.permutation_pvalues`).
  The same shuffles of all searched rows test the gap in the share without a counterfactual.
- Across sensitive attributes, Holm's step-down adjustment of the cost-gap p-values (by the
  caller, :func:`audit.stats.multiplicity.holm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.core.results import Estimate
from audit.stats.permutation import permutation_pvalues


@dataclass(frozen=True)
class GroupRecourse:
    group: str
    n_rows: int                  # searched rows (unfavourable prediction) in the group
    n_with_cf: int
    share_without_cf: float | None
    mean_cost: Estimate          # over the group's rows with a counterfactual, bootstrap interval
    median_cost: Estimate
    tested: bool                 # large enough to enter the gap test


@dataclass(frozen=True)
class AttributeRecourse:
    attribute: str
    groups: tuple[GroupRecourse, ...]
    highest: str | None          # group with the highest mean cost (among tested groups)
    lowest: str | None
    mean_gap: float | None       # highest minus lowest mean cost
    p_value: float | None        # permutation test of the mean-cost gap
    p_adjusted: float | None     # Holm across attributes
    no_cf_gap: float | None      # largest minus smallest share without counterfactual
    no_cf_p_value: float | None
    note: str = ""


def _boot(values: np.ndarray, stat: str, rng: np.random.Generator, B: int, level: float = 0.95) -> Estimate:
    """The group's mean or median cost with its percentile bootstrap interval (rows resampled;
    none for fewer than two rows)."""
    if values.size == 0:
        return Estimate(None, undefined_reason="no row of the group has a counterfactual")
    value = float(values.mean() if stat == "mean" else np.median(values))
    if values.size < 2 or B < 1:
        return Estimate(value)
    idx = rng.integers(0, values.size, (B, values.size))
    draws = values[idx]
    stats = draws.mean(axis=1) if stat == "mean" else np.median(draws, axis=1)
    a = (1 - level) / 2
    return Estimate(value, float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a)), level,
                    f"percentile bootstrap of the group's rows, {B:,} resamples")


def _spread(values: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """max minus min of the per-group means; ``codes`` is (B, n) or (n,)."""
    codes = np.atleast_2d(codes)
    sums = np.zeros((codes.shape[0], k))
    counts = np.zeros((codes.shape[0], k))
    rows = np.repeat(np.arange(codes.shape[0]), codes.shape[1])
    np.add.at(sums, (rows, codes.ravel()), np.tile(values, codes.shape[0]))
    np.add.at(counts, (rows, codes.ravel()), 1)
    means = sums / np.maximum(counts, 1)
    return means.max(axis=1) - means.min(axis=1)


def recourse_by_group(attribute: str, groups: np.ndarray, cost: np.ndarray, found: np.ndarray,
                      rng: np.random.Generator, *, n_bootstrap: int = 1000,
                      n_permutations: int = 999, min_group_size: int = 20) -> AttributeRecourse:
    """Cost of the cheapest counterfactual per group of one sensitive attribute.

    ``cost`` is ignored where ``found`` is False.
    """
    groups = np.asarray(groups).astype(str)
    out = []
    tested = []
    for g in sorted(set(groups.tolist())):
        in_g = groups == g
        c = cost[in_g & found]
        n_rows = int(in_g.sum())
        ok = c.size >= min_group_size
        if ok:
            tested.append(g)
        out.append(GroupRecourse(
            group=g, n_rows=n_rows, n_with_cf=int(c.size),
            share_without_cf=float(1 - c.size / n_rows) if n_rows else None,
            mean_cost=_boot(c, "mean", rng, n_bootstrap), median_cost=_boot(c, "median", rng, n_bootstrap),
            tested=ok))
    if len(tested) < 2:
        note = (f"Fewer than two groups have {min_group_size} or more rows with a counterfactual; "
                "no gap is tested.")
        return AttributeRecourse(attribute, tuple(out), None, None, None, None, None, None, None, note)
    means = {r.group: r.mean_cost.value for r in out if r.group in tested}
    hi_g = max(means, key=lambda g: means[g])  # type: ignore[arg-type, return-value]
    lo_g = min(means, key=lambda g: means[g])  # type: ignore[arg-type, return-value]
    keep = np.isin(groups, tested)
    lookup = {g: i for i, g in enumerate(tested)}
    # cost gap among costed rows of tested groups
    sel = keep & found
    codes = np.array([lookup[g] for g in groups[sel]])
    values = cost[sel]
    observed = float(_spread(values, codes, len(tested))[0])
    B = n_permutations
    perms = np.stack([rng.permutation(codes) for _ in range(B)]) if B else np.zeros((0, codes.size), int)
    null = _spread(values, perms, len(tested)) if B else np.zeros(0)
    p = float(permutation_pvalues(observed, null).upper) if B else None
    # share-without-counterfactual gap among all searched rows of tested groups
    codes_all = np.array([lookup[g] for g in groups[keep]])
    missing = (~found[keep]).astype(float)
    obs_nc = float(_spread(missing, codes_all, len(tested))[0])
    if B and obs_nc > 0:
        perms_all = np.stack([rng.permutation(codes_all) for _ in range(B)])
        null_nc = _spread(missing, perms_all, len(tested))
        p_nc: float | None = float(permutation_pvalues(obs_nc, null_nc).upper)
    else:
        p_nc = 1.0 if B else None
    return AttributeRecourse(attribute, tuple(out), hi_g, lo_g, observed, p, None, obs_nc, p_nc)
