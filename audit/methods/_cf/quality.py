"""Quality of a set of counterfactuals: validity, proximity, sparsity, plausibility, diversity
and constraint violations. Shared by the method and the benchmark (so the baseline is measured
by exactly the same code)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.methods._cf.space import Space


@dataclass(frozen=True)
class Quality:
    """Quality of the counterfactuals of one run.

    Proximity, sparsity and plausibility describe each row's cheapest counterfactual;
    diversity compares the counterfactuals of the same row.
    """

    n_rows: int                          # rows searched
    n_counterfactuals: int               # counterfactuals returned (all confirmed valid)
    validity: float | None               # share of rows with at least one valid counterfactual
    confirmed: float | None              # share of returned counterfactuals the real model confirms
    mean_cost: float | None              # MAD-L1 + categorical cost of the cheapest
    proximity_numeric: float | None      # mean MAD-scaled L1 over numeric features
    proximity_categorical: float | None  # mean share of categorical features changed
    sparsity: float | None               # mean number of features changed
    share_at_most_two: float | None      # share changing at most two features
    rare_level_share: float | None       # share using a level rarer than min_level_share
    inside_observed_range: float | None  # share whose changed numeric values lie in the observed range
    nn_distance: float | None            # mean distance to the nearest real row of the target class
    nn_distance_real: float | None       # the same for real rows of that class (reference scale)
    nn_distance_original: float | None   # the same for the original rows
    per_row: float | None                # mean counterfactuals per row that has one
    diversity_distance: float | None     # mean pairwise distance between a row's counterfactuals
    diversity_jaccard: float | None      # mean Jaccard distance of their changed-feature sets
    violations: int                      # constraint violations among returned ones (must be 0)
    share_by_changes: tuple[float, ...] | None = None  # share of rows changing 1, 2, 3, 4+ features


def mixed_distance_nn(space: Space, num: np.ndarray, cat: np.ndarray, ref_num: np.ndarray,
                      ref_cat: np.ndarray, *, exclude_self: bool = False, chunk: int = 256) -> np.ndarray:
    """Distance from each row to its nearest reference row, in the cost metric (numeric
    MAD-L1 plus ``categorical_cost`` per differing categorical)."""
    out = np.empty(len(num))
    if len(ref_num) == 0 and len(ref_cat) == 0:
        return np.full(len(num), np.nan)
    a_num = (num / space.mad).astype(np.float32) if space.num else np.zeros((len(num), 0), np.float32)
    r_num = (ref_num / space.mad).astype(np.float32) if space.num else np.zeros((len(ref_cat), 0), np.float32)
    for s in range(0, len(num), chunk):
        d = np.abs(a_num[s:s + chunk, None, :] - r_num[None, :, :]).sum(axis=2)
        if space.cat:
            d += space.categorical_cost * (cat[s:s + chunk, None, :] != ref_cat[None, :, :]).sum(axis=2)
        if exclude_self:
            d[d == 0] = np.inf  # the row itself (and exact duplicates)
        out[s:s + chunk] = d.min(axis=1)
    return out


def measure(space: Space, num0: np.ndarray, cat0: np.ndarray, cf_row: np.ndarray,
            cf_num: np.ndarray, cf_cat: np.ndarray, cf_valid: np.ndarray, *,
            ref_num: np.ndarray, ref_cat: np.ndarray, rng: np.random.Generator,
            max_reference: int = 4000, sparsity_weight: float = 0.0) -> Quality:
    """Quality of counterfactuals ``cf_*`` of the searched rows ``num0``/``cat0``.

    ``cf_row`` gives each counterfactual's row; ``ref_*`` are real rows the model assigns to
    the target class (subsampled to ``max_reference`` for the nearest-neighbour distances).
    Each row's *chosen* counterfactual is the one with the lowest cost plus ``sparsity_weight``
    per changed feature (the search's own criterion; 0: the cheapest).
    """
    n = len(num0)
    m = len(cf_row)
    viol = int(space.violations(cf_num, cf_cat, num0[cf_row], cat0[cf_row]).sum()) if m else 0
    if m == 0:
        return Quality(n, 0, 0.0 if n else None, None, None, None, None, None, None, None, None,
                       None, None, None, None, None, None, viol)
    cost = space.cost(cf_num, cf_cat, num0[cf_row], cat0[cf_row])
    # chosen (cheapest after the sparsity penalty) valid counterfactual per row
    n_ch_all = space.changed(cf_num, cf_cat, num0[cf_row], cat0[cf_row]).sum(axis=1)
    key = np.where(cf_valid, cost + sparsity_weight * n_ch_all, np.inf)
    order = np.lexsort((key, cf_row))
    first = order[np.r_[True, cf_row[order][1:] != cf_row[order][:-1]]]
    best = first[np.isfinite(key[first])]
    rows_with = np.unique(cf_row[cf_valid])
    b_num, b_cat, b_row = cf_num[best], cf_cat[best], cf_row[best]
    changed = space.changed(b_num, b_cat, num0[b_row], cat0[b_row])
    n_changed = changed.sum(axis=1)
    prox_num = space.num_cost(b_num, num0[b_row]) if space.num else np.zeros(len(best))
    prox_cat = ((b_cat != cat0[b_row]).mean(axis=1) if space.cat else np.zeros(len(best)))
    rare = np.zeros(len(best), bool)
    for g, s in enumerate(space.cat):
        is_rare = s.share[b_cat[:, g]] < space.min_level_share
        rare |= is_rare & (b_cat[:, g] != cat0[b_row, g])
    inside = space.inside_observed(b_num, num0[b_row])
    nn = nn_real = nn_orig = None
    if len(ref_num) or len(ref_cat):
        k = len(ref_num) if space.num else len(ref_cat)
        pick = rng.choice(k, min(k, max_reference), replace=False)
        rn = ref_num[pick] if space.num else np.zeros((len(pick), 0))
        rc = ref_cat[pick] if space.cat else np.zeros((len(pick), 0), np.int64)
        if len(best):
            nn = float(np.mean(mixed_distance_nn(space, b_num, b_cat, rn, rc)))
        sub = rng.choice(len(pick), min(len(pick), 500), replace=False)
        d_real = mixed_distance_nn(space, rn[sub], rc[sub], rn, rc, exclude_self=True)
        d_real = d_real[np.isfinite(d_real)]
        nn_real = float(np.mean(d_real)) if d_real.size else None
        nn_orig = float(np.mean(mixed_distance_nn(space, num0, cat0, rn, rc))) if n else None
    # diversity among the valid counterfactuals of rows with several
    dists, jacc = [], []
    valid_idx = np.flatnonzero(cf_valid)
    ch_all = space.changed(cf_num, cf_cat, num0[cf_row], cat0[cf_row])
    for r in np.unique(cf_row[valid_idx]):
        idx = valid_idx[cf_row[valid_idx] == r]
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                dists.append(float(space.cost(cf_num[[i]], cf_cat[[i]], cf_num[[j]], cf_cat[[j]])[0]))
                u = ch_all[i] | ch_all[j]
                jacc.append(float(1 - (ch_all[i] & ch_all[j]).sum() / u.sum()) if u.any() else 0.0)

    def mean(x: np.ndarray) -> float | None:
        return float(np.mean(x)) if len(x) else None

    per_row = np.bincount(cf_row[cf_valid], minlength=n)[rows_with]
    return Quality(
        n_rows=n, n_counterfactuals=int(cf_valid.sum()),
        validity=float(len(rows_with) / n) if n else None,
        confirmed=float(cf_valid.mean()),
        mean_cost=mean(cost[best]), proximity_numeric=mean(prox_num),
        proximity_categorical=mean(prox_cat), sparsity=mean(n_changed),
        share_at_most_two=mean(n_changed <= 2), rare_level_share=mean(rare),
        inside_observed_range=mean(inside), nn_distance=nn, nn_distance_real=nn_real,
        nn_distance_original=nn_orig, per_row=mean(per_row),
        diversity_distance=mean(np.array(dists)), diversity_jaccard=mean(np.array(jacc)),
        violations=viol,
        share_by_changes=(tuple(float(np.mean(n_changed == k)) for k in (1, 2, 3))
                          + (float(np.mean(n_changed >= 4)),)) if len(n_changed) else None)
