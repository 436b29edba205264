"""Fairness of a binary classifier for one attribute set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audit.methods.fairness.config import BINARY_DISPARITIES, METRIC_LABELS, FairnessConfig
from audit.methods.fairness.formulas import (
    IMPACT_TEST,
    SCORE_DISPARITIES,
    SCORE_TEST,
    _disparity_bounds,
    _f,
    _mask_groups,
    binary_disparities,
    favourable_counts,
    impact_ratios,
    score_disparities,
    spread_difference,
)
from audit.methods.fairness.groups import _groups
from audit.methods.fairness.results import (
    TOO_SMALL,
    AttributeResult,
    Calibration,
    Disparity,
    Estimate,
    GroupRow,
    ThresholdCurves,
    WhatIf,
    significance,
)
from audit.methods.fairness.what_if import _what_if
from audit.stats.bootstrap import (
    RATE_METRICS,
    bootstrap_cells,
    bootstrap_score_metrics,
    confusion_cells,
    percentile_interval,
    rate_counts,
    rates_from_cells,
    weighted_auc,
    weighted_calibration,
)
from audit.stats.calibration import calibration_test
from audit.stats.fairness_tests import min_detectable_difference
from audit.stats.proportions import GROUP_METHOD, group_interval


def _with_favourable(rates: dict[str, np.ndarray], favourable: str) -> dict[str, np.ndarray]:
    sel = rates["selection_rate"]
    return {**rates, "favourable_rate": sel if favourable == "positive" else 1 - sel}


def _analyse_binary(cols: Sequence[str], values: np.ndarray, y: np.ndarray, yhat: np.ndarray,
                    scores: np.ndarray | None, config: FairnessConfig, ref_name: str | None,
                    rng: np.random.Generator, *, favourable: str = "positive",
                    favourable_label: str | None = None) -> AttributeResult:
    name, levels, codes, G, counts, small, judged, ref = _groups(cols, values, config, ref_name)
    cells = confusion_cells(y, yhat, codes, G)
    point = _with_favourable(rates_from_cells(cells), favourable)
    B = config.n_boot
    boot = _with_favourable(rates_from_cells(bootstrap_cells(cells, B, rng)), favourable) if B else None
    notes: list[str] = []

    # Score-based metrics: AUC and calibration, bootstrapped with row weights within groups.
    auc_point = np.full(G, np.nan)
    ece_point = np.full(G, np.nan)
    auc_boot = np.full((B, G), np.nan) if B else None
    calib: dict[int, Calibration] = {}
    if scores is not None:
        edges = tuple(np.linspace(0, 1, config.calibration_bins + 1).round(6).tolist())
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(G + 1))
        for g in range(G):
            rows = order[bounds[g]:bounds[g + 1]]
            if small[g] or rows.size == 0:
                continue
            s, t = scores[rows], y[rows]
            ones = np.ones(rows.size)
            auc_point[g] = weighted_auc(s, t, ones)
            ece, cnt, ms, fp = weighted_calibration(s, t, ones, config.calibration_bins)
            ece_point[g] = ece[0]
            test = None
            if B:
                # AUC resampled from compressed score cells, re-centred on the exact estimate;
                # ECE (biased upward): no interval, a test against calibrated outcomes instead
                a_b, _, a_c, _ = bootstrap_score_metrics(s, t, B, rng, n_bins=config.calibration_bins)
                auc_boot[:, g] = a_b + (auc_point[g] - a_c) if np.isfinite(a_c) else a_b
                test = calibration_test(s, t, n_bins=config.calibration_bins, n_sim=B, rng=rng)
            calib[g] = Calibration(edges, tuple(int(c) for c in cnt[0]),
                                   tuple(_f(v) for v in ms[0]), tuple(_f(v) for v in fp[0]), test)

    all_point = {**point, "auc": auc_point, "ece": ece_point}
    all_boot = {**boot, "auc": auc_boot} if B else None
    reasons = {**RATE_METRICS, "auc": "needs both positive and negative outcomes in the group",
               "ece": None, "favourable_rate": None}
    metric_keys = (list(RATE_METRICS) + (["favourable_rate"] if favourable == "negative" else [])
                   + (["auc", "ece"] if scores is not None else []))
    # Proportions: exact (Clopper-Pearson) intervals from the counts; the rest: percentile bootstrap.
    counts_of = favourable_counts(rate_counts(cells), favourable)
    intervals = {k: group_interval(*counts_of[k], config.confidence, GROUP_METHOD) for k in counts_of}
    if B:
        intervals.update({k: percentile_interval(all_boot[k], config.confidence)
                          for k in metric_keys if k not in counts_of and k != "ece"})
    alpha = 1 - config.confidence
    scored = score_disparities(cells, ref, config.confidence, judged, favourable=favourable)

    # Power note: the smallest gap between this group and its best partner (the reference, or
    # the largest other group) that the pairwise score test at its corrected level detects.
    pooled = rates_from_cells(cells[judged].sum(axis=0))
    family_of_mdd = {"selection_rate": "demographic_parity_difference",
                     "tpr": "equal_opportunity_difference"}
    rows_out = []
    for g, lv in enumerate(levels):
        if small[g]:
            metrics = {k: Estimate(None, undefined=TOO_SMALL) for k in metric_keys}
            rows_out.append(GroupRow(str(lv), int(counts[g]), True, metrics, {}))
            continue
        metrics = {}
        for k in metric_keys:
            v = _f(all_point[k][g])
            lo, hi = (intervals[k][0][g], intervals[k][1][g]) if k in intervals else (None, None)
            why = None if v is not None else (reasons.get(k) or "undefined")
            metrics[k] = Estimate(v, _f(lo) if v is not None else None,
                                  _f(hi) if v is not None else None, why)
        mdd = {}
        for k, key in family_of_mdd.items():
            den = counts_of[k][1] * judged
            m = int(scored[key][4])
            partners = [ref] if ref is not None and ref != g else [h for h in np.flatnonzero(judged) if h != g]
            n_other = max((den[h] for h in partners), default=0)
            mdd[k] = _f(min_detectable_difference(float(pooled[k]), den[g], n_other,
                                                  alpha=alpha / (2 * max(m, 1)), power=config.power))
        rows_out.append(GroupRow(str(lv), int(counts[g]), False, metrics, mdd, calib.get(g)))

    # Disparities over the judged groups.
    masked_point = _mask_groups(all_point, judged)
    disp_point = binary_disparities(masked_point, ref)
    disp_point["auc_difference"] = spread_difference(masked_point["auc"], ref)
    masked_boot = _mask_groups(all_boot, judged) if B else None
    names = [k for k in BINARY_DISPARITIES if k != "auc_difference" or scores is not None]
    judged_names = tuple(str(levels[g]) for g in np.flatnonzero(judged))
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    disparities: dict[str, Disparity] = {}
    n_judged = int(judged.sum())

    def bounds_at(k: str, level: float) -> tuple[float | None, float | None]:
        if k in SCORE_DISPARITIES:
            lo, hi, *_ = score_disparities(cells, ref, level, judged, keys=[k], test=False,
                                           favourable=favourable)[k]
            return _f(lo), _f(hi)
        if masked_boot is None:
            return None, None
        bases_k = BINARY_DISPARITIES[k][1].split(",")
        lo, hi = _disparity_bounds(k, bases_k, masked_point, masked_boot, ref, level)
        if lo is not None and any(not np.isfinite(all_point[b][g]) for b in bases_k for g in np.flatnonzero(judged)):
            # a judged group's value is unknown (e.g. AUC without both outcomes): as for the rates
            lo, hi = (lo, 1.0) if k.endswith("_difference") else (0.0, hi)
        return lo, hi

    for k in names:
        label, base = BINARY_DISPARITIES[k]
        bases = base.split(",")
        if favourable_label is not None and k in ("demographic_parity_difference",
                                                  "demographic_parity_ratio", "disparate_impact_ratio"):
            label, bases = f"{label}, favourable outcome ({favourable_label})", ["favourable_rate"]
        undefined_in = {b: [str(levels[g]) for g in np.flatnonzero(judged) if not np.isfinite(all_point[b][g])]
                        for b in bases}
        undefined_groups = tuple(sorted({g for gs in undefined_in.values() for g in gs}))
        undefined_why = tuple(f"{g}: {METRIC_LABELS.get(b, b)} undefined ({reasons.get(b) or 'no value'})"
                              for b in bases for g in undefined_in[b])
        v = _f(disp_point[k])
        lo = hi = p_raw = p_adj = m = None
        family = test = None
        if v is not None and k in SCORE_DISPARITIES:
            lo_, hi_, p_adj_, p_raw_, m_ = scored[k]
            lo, hi, p_adj, p_raw, m = _f(lo_), _f(hi_), _f(p_adj_), _f(p_raw_), int(m_)
            family = SCORE_DISPARITIES[k][0]
            test = IMPACT_TEST if k == "disparate_impact_ratio" and ref is not None else SCORE_TEST
        elif v is not None and masked_boot is not None:
            lo, hi = bounds_at(k, config.confidence)
        why = None
        if v is None:
            why = (f"fewer than two groups with at least {config.min_group_size} rows"
                   if n_judged < 2 else
                   "the reference group's rate is undefined" if ref is not None and not np.isfinite(all_point[bases[0]][ref])
                   else "fewer than two groups with a defined value, or a ratio of zero rates")
        disparities[k] = Disparity(k, label, Estimate(v, lo, hi, why), p_raw, p_adj, test,
                                   judged_names, small_names, undefined_groups, family, m,
                                   significance(p_raw, p_adj, alpha), undefined_why)
        if undefined_groups and n_judged >= 2:
            what = "; ".join(f"{METRIC_LABELS.get(b, b)} undefined for {', '.join(gs)} ({reasons.get(b) or 'no value'})"
                             for b, gs in undefined_in.items() if gs)
            towards = "upper bound is 1" if k.endswith("_difference") else "lower bound is 0"
            notes.append(f"{what}: the {label} point estimate is over the other groups, but the true "
                         f"rate there is unknown (anywhere from 0 to 1), so its interval's {towards} "
                         "and a gate rule on it cannot pass (insufficient evidence, unless the other "
                         "groups already breach).")

    ratios = impact_ratios(masked_point["favourable_rate"], ref)
    impact = {str(levels[g]): _f(ratios[g]) for g in range(G) if judged[g]}
    four_fifths = tuple(g for g, r in impact.items() if r is not None and r < 0.8)

    curves = None
    what_if: tuple[WhatIf, ...] = ()
    if scores is not None and len(cols) == 1:
        curves = _threshold_curves(scores, y, codes, levels, judged)
        if config.what_if and n_judged >= 2:
            what_if = _what_if(scores, y, yhat, values, judged[codes], ref,
                               max_rows=config.what_if_rows, rng=rng)
    if small.any():
        notes.append(f"{int(small.sum())} group(s) with fewer than {config.min_group_size} rows are "
                     "too small to judge and left out of the disparities.")
    return AttributeResult(name, tuple(cols), str(levels[ref]) if ref is not None else None,
                           tuple(rows_out), disparities, impact, four_fifths,
                           tuple(dict.fromkeys(notes)), curves, what_if, bounds_at)


def _threshold_curves(scores: np.ndarray, y: np.ndarray, codes: np.ndarray, levels: np.ndarray,
                      judged: np.ndarray, n_points: int = 51) -> ThresholdCurves:
    """Selection rate, TPR and FPR of each judged group as the threshold moves over [0, 1]."""
    t = np.linspace(0, 1, n_points)
    curves = {}
    for g in np.flatnonzero(judged):
        s = scores[codes == g]
        yy = y[codes == g]

        def above(x: np.ndarray) -> tuple[float | None, ...]:
            if x.size == 0:
                return tuple(None for _ in t)
            xs = np.sort(x)
            return tuple(float(v) for v in (x.size - np.searchsorted(xs, t, side="left")) / x.size)
        curves[str(levels[g])] = {"selection_rate": above(s), "tpr": above(s[yy == 1]),
                                  "fpr": above(s[yy == 0])}
    return ThresholdCurves(tuple(float(v) for v in t.round(4)), curves)
