"""Fairness of a multiclass classifier for one attribute set."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from audit.methods.fairness.config import MULTICLASS_DISPARITIES, FairnessConfig
from audit.methods.fairness.formulas import SCORE_INTERVAL, SCORE_TEST, _f, _mask_groups, spread_difference
from audit.methods.fairness.groups import _groups
from audit.methods.fairness.results import AttributeResult, Disparity, Estimate, GroupRow, significance
from audit.stats.bootstrap import multiclass_rates_from_cells
from audit.stats.counts import GroupTable
from audit.stats.proportions import GROUP_METHOD, disparity_score_interval, group_interval


def _analyse_multiclass(cols: Sequence[str], table: GroupTable, K: int, classes: Sequence[str],
                        config: FairnessConfig, ref_name: str | None) -> AttributeResult:
    name, levels, G, counts, small, judged, ref = _groups(cols, table.levels, table.counts, config, ref_name)
    cells = table.cells

    def named(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {("accuracy" if k == "accuracy" else f"selection_rate[{classes[int(k[15:-1])]}]"): v
                for k, v in r.items()}

    point = named(multiclass_rates_from_cells(cells, K))
    keys = list(point)
    c = cells.reshape(G, K, K)
    n_rows = c.sum(axis=(1, 2))
    # every multiclass rate is a proportion of the group's rows: exact per-group intervals
    num = {"accuracy": np.trace(c, axis1=1, axis2=2)}
    num.update({k: c[:, :, j].sum(axis=1) for j, k in enumerate(keys[1:])})
    intervals = {k: group_interval(num[k], n_rows, config.confidence, GROUP_METHOD) for k in keys}

    def disp(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = _mask_groups(rates, judged)
        sel = np.stack([spread_difference(m[k], ref) for k in keys if k != "accuracy"], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {"accuracy_difference": spread_difference(m["accuracy"], ref),
                    "demographic_parity_difference": np.nanmax(sel, axis=0)}

    dpoint = disp(point)
    rows_out = []
    for g, lv in enumerate(levels):
        if small[g]:
            rows_out.append(GroupRow.too_small_to_judge(lv, counts[g], keys))
            continue
        rows_out.append(GroupRow(str(lv), int(counts[g]), False,
                                 {k: Estimate.of(_f(point[k][g]), _f(intervals[k][0][g]),
                                                 _f(intervals[k][1][g]), level=config.confidence,
                                                 method=f"Clopper–Pearson ({GROUP_METHOD})")
                                  for k in keys}, {}))
    judged_names = tuple(str(levels[g]) for g in np.flatnonzero(judged))
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    n_judged = np.where(judged, n_rows, 0)
    # demographic parity here is the largest gap over the classes' selection rates: one family
    # of pairs × classes
    comps = {"accuracy_difference": [(num["accuracy"], n_judged)],
             "demographic_parity_difference": [(num[k], n_judged) for k in keys[1:]]}
    families = {"accuracy_difference": "equal accuracy",
                "demographic_parity_difference": "equal selection rate of every class"}

    def bounds_at(k: str, level: float) -> tuple[float | None, float | None]:
        lo, hi, *_ = disparity_score_interval(comps[k], "difference", ref, level)
        return _f(lo), _f(hi)

    disparities = {}
    alpha = 1 - config.confidence
    for k, (label, _) in MULTICLASS_DISPARITIES.items():
        v = _f(dpoint[k])
        lo = hi = p_adj = p_raw = m = None
        if v is not None:
            lo_, hi_, p_adj_, p_raw_, m_ = disparity_score_interval(comps[k], "difference", ref,
                                                                    config.confidence)
            lo, hi, p_adj, p_raw, m = _f(lo_), _f(hi_), _f(p_adj_), _f(p_raw_), int(m_)
        why = None if v is not None else f"fewer than two groups with at least {config.min_group_size} rows"
        disparities[k] = Disparity(k, label, Estimate.of(v, lo, hi, level=config.confidence,
                                                         method=SCORE_INTERVAL, undefined_reason=why),
                                   p_raw, p_adj,
                                   SCORE_TEST if p_raw is not None else None, judged_names,
                                   small_names, (), families[k] if p_raw is not None else None, m,
                                   significance(p_raw, p_adj, alpha))
    return AttributeResult(name, tuple(cols), str(levels[ref]) if ref is not None else None,
                           tuple(rows_out), disparities, {}, (), (), None, (), bounds_at)
