"""Fairness of a regression model for one attribute set."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from audit.methods.fairness.config import METRIC_LABELS, REGRESSION_DISPARITIES, FairnessConfig
from audit.methods.fairness.formulas import _disparity_bounds, _f, _mask_groups, _quiet, spread_difference
from audit.methods.fairness.groups import _groups
from audit.methods.fairness.results import AttributeResult, Disparity, Estimate, GroupRow, significance
from audit.stats.bootstrap import BOOTSTRAP_DISPARITY, group_codes, percentile_interval, row_weights, weighted_means
from audit.stats.fairness_tests import min_detectable_mean_difference
from audit.stats.multiplicity import holm
from audit.stats.permutation import permutation_pvalues


def _analyse_regression(cols: Sequence[str], values: np.ndarray, y: np.ndarray, yhat: np.ndarray,
                        config: FairnessConfig, ref_name: str | None,
                        rng: np.random.Generator) -> AttributeResult:
    levels, codes = group_codes(values)
    name, levels, G, counts, small, judged, ref = _groups(
        cols, levels, np.bincount(codes, minlength=len(levels)), config, ref_name)
    keys = ("mean_prediction", "mean_error", "mae")
    cols_vals = np.column_stack([yhat, yhat - y, np.abs(yhat - y)])
    # per-group means from sums (np.bincount; fairlearn's MetricFrame gives the same, slowly)
    point = {k: np.bincount(codes, cols_vals[:, j], minlength=G) / np.maximum(counts, 1)
             for j, k in enumerate(keys)}
    B = config.n_bootstrap
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
            rows_out.append(GroupRow.too_small_to_judge(lv, counts[g], keys))
            continue
        metrics = {k: Estimate.of(_f(point[k][g]), _f(intervals[k][0][g]) if B else None,
                                  _f(intervals[k][1][g]) if B else None, level=config.confidence,
                                  method=f"percentile bootstrap, {B:,} resamples") for k in keys}
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
        # that permutation_pvalues can rank it)
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
        raw[k] = (_f(permutation_pvalues(observed_t[base], null[base]).upper)
                  if null is not None and v is not None else None)
        why = None if v is not None else f"fewer than two groups with at least {config.min_group_size} rows"
        disparities[k] = Disparity(k, label, Estimate.of(v, lo, hi, level=config.confidence,
                                                         method=BOOTSTRAP_DISPARITY.format(B=B),
                                                         undefined_reason=why), raw[k], None,
                                   "group labels shuffled over all rows; statistic: the largest "
                                   "pairwise Welch t" if raw[k] is not None else None,
                                   judged_names, small_names)
    # One family per attribute: its regression disparities, Holm-adjusted together.
    tested = [k for k, p in raw.items() if p is not None]
    for k, adj in zip(tested, holm([raw[k] for k in tested]), strict=True):
        disparities[k] = dataclasses.replace(
            disparities[k], p_adjusted=_f(adj), family="regression disparities (Holm)",
            n_comparisons=len(tested), significance=significance(raw[k], _f(adj), config.alpha))
    notes = [f"No detectable gap for the {METRIC_LABELS[k]}: it does not vary over the judged rows (SD 0), where "
             "the power approximation would say 0, as if any gap were detected."
             for j, k in enumerate(keys) if not sds[j] > 0]
    if small.any():
        notes.append(f"{int(small.sum())} group(s) with fewer than {config.min_group_size} rows are "
                     "too small to judge and left out of the disparities.")
    return AttributeResult(name, tuple(cols), str(levels[ref]) if ref is not None else None,
                           tuple(rows_out), disparities, {}, (), tuple(notes), None, (), bounds_at)
