"""Fairness of a binary classifier for one attribute set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audit import execution
from audit.methods.fairness.config import BINARY_DISPARITIES, METRIC_LABELS, FairnessConfig
from audit.methods.fairness.formulas import (
    IMPACT_TEST,
    SCORE_DISPARITIES,
    SCORE_INTERVAL,
    SCORE_TEST,
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
    percentile_interval,
    rate_counts,
    rates_from_cells,
)
from audit.stats.auc import AUC_GAP_INTERVAL, AUC_INTERVAL, MIN_PER_CLASS, auc_bounds, auc_gap_interval
from audit.stats.calibration import histogram_calibration_test
from audit.stats.counts import GroupTable, calibration_bins, histogram_auc, threshold_rates
from audit.stats.fairness_tests import min_detectable_difference
from audit.stats.proportions import GROUP_METHOD, group_interval


#: Streamed, each group's AUC interval is widened by the histogram's bound (see _analyse_binary).
HISTOGRAM_AUC = "; widened by the score histogram's bound on the exact AUC"


def auc_gap_method(*, streamed: bool) -> str:
    """How the AUC difference's interval is computed, as its Estimate and the report state it."""
    return AUC_GAP_INTERVAL + (HISTOGRAM_AUC if streamed else "")


def _with_favourable(rates: dict[str, np.ndarray], favourable: str) -> dict[str, np.ndarray]:
    sel = rates["selection_rate"]
    return {**rates, "favourable_rate": sel if favourable == "positive" else 1 - sel}


class _GroupResampling:
    """One group's calibration test (binomial draws of its score bins): a chunk of
    :func:`audit.execution.map`."""

    def __init__(self, table: GroupTable, n_boot: int, calibration_bins: int, seed: int) -> None:
        self.table, self.n_boot, self.calibration_bins, self.seed = table, n_boot, calibration_bins, seed

    def __call__(self, g: int) -> object:
        rng, t = execution.chunk_rng(self.seed, g), self.table
        return histogram_calibration_test(t.hist[g].sum(axis=(0, 1)), t.hist[g, 1].sum(axis=0), t.score_sum[g],
                                          n_bins=self.calibration_bins, n_sim=self.n_boot, rng=rng)


def _analyse_binary(cols: Sequence[str], table: GroupTable, config: FairnessConfig, ref_name: str | None,
                    rng: np.random.Generator, *, exact_auc: np.ndarray | None = None,
                    favourable: str = "positive", favourable_label: str | None = None) -> AttributeResult:
    """Everything for one attribute set from its count table (and score histogram).

    ``exact_auc`` (per group, from the rows) replaces the histogram's AUC where the rows were at
    hand; without it each group's AUC is the histogram's, within its stated bound."""
    name, levels, G, counts, small, judged, ref = _groups(cols, table.levels, table.counts, config, ref_name)
    cells = table.cells
    point = _with_favourable(rates_from_cells(cells), favourable)
    B = config.n_bootstrap
    boot = _with_favourable(rates_from_cells(bootstrap_cells(cells, B, rng)), favourable) if B else None
    notes: list[str] = []
    scores = table.hist is not None

    # Score-based metrics from each group's histogram: AUC (its interval from the AUC and the
    # smaller class alone, audit.stats.auc: no resampling) and calibration (exact; no interval
    # for the upward-biased ECE, a Monte Carlo test against calibrated outcomes instead).
    auc_point = np.full(G, np.nan)
    ece_point = np.full(G, np.nan)
    auc_bound = np.full(G, np.nan)
    auc_k = np.zeros(G)  # rows of the group's smaller class
    calib: dict[int, Calibration] = {}
    if scores:
        edges = tuple(np.linspace(0, 1, config.calibration_bins + 1).round(6).tolist())
        scored = [g for g in range(G) if not small[g] and counts[g] > 0]
        # Each group's calibration test (0.3 s per 1,000 draws at 1,000 score bins) is a chunk of
        # the execution layer, drawn from its own stream (the run's and the group's index), so
        # a Ray cluster takes the groups in parallel and every backend draws the same numbers.
        tests = dict(zip(scored, execution.map(_GroupResampling(table, B, config.calibration_bins,
                                                                int(rng.integers(2**63))), scored, n_jobs=1),
                         strict=True)) if B else {}
        for g in scored:
            by_outcome = table.by_outcome(g)
            auc_hist, auc_bound[g] = histogram_auc(by_outcome)
            auc_point[g] = exact_auc[g] if exact_auc is not None else auc_hist
            auc_k[g] = by_outcome.sum(axis=0).min()
            cnt, pos, ssum = calibration_bins(table, g, config.calibration_bins)
            ece_point[g] = np.abs(ssum - pos).sum() / cnt.sum()
            test = tests.get(g)
            with np.errstate(all="ignore"):
                ms, fp = ssum / cnt, pos / cnt
            calib[g] = Calibration(edges, tuple(int(c) for c in cnt), tuple(_f(v) for v in ms),
                                   tuple(_f(v) for v in fp), test)

    all_point = {**point, "auc": auc_point, "ece": ece_point}
    # Streamed, the rows' exact AUC is only known within the histogram's bound of its AUC: each
    # AUC interval is the union of the intervals over that range (audit.stats.auc.auc_bounds).
    auc_within = 0.0 if exact_auc is not None else np.nan_to_num(auc_bound)
    auc_how = AUC_INTERVAL + ("" if exact_auc is not None else HISTOGRAM_AUC)
    # Fewer than MIN_PER_CLASS rows of a class: the interval's error rates were not simulated
    # there, so the group gets no AUC interval and its AUC counts as unknown in the AUC gap.
    few_auc = judged & np.isfinite(auc_point) & (auc_k < MIN_PER_CLASS)
    reasons = {**RATE_METRICS, "auc": "needs both positive and negative outcomes in the group",
               "ece": None, "favourable_rate": None}
    metric_keys = (list(RATE_METRICS) + (["favourable_rate"] if favourable == "negative" else [])
                   + (["auc", "ece"] if scores else []))
    # Proportions: exact (Clopper-Pearson) intervals from the counts; the rest: percentile bootstrap.
    counts_of = favourable_counts(rate_counts(cells), favourable)
    intervals = {k: group_interval(*counts_of[k], config.confidence, GROUP_METHOD) for k in counts_of}
    if B:
        intervals.update({k: percentile_interval(boot[k], config.confidence)
                          for k in metric_keys if k not in counts_of and k not in ("auc", "ece")})
    if scores:
        lo_auc, hi_auc = auc_bounds(np.where(few_auc, np.nan, auc_point), auc_k, config.confidence,
                                    within=auc_within)
        intervals["auc"] = (lo_auc, hi_auc)
    alpha = 1 - config.confidence
    scored = score_disparities(cells, ref, config.confidence, judged, favourable=favourable)

    # Power note: the smallest gap between this group and its best partner (the reference, or
    # the largest other group) that the pairwise score test at its corrected level detects.
    pooled = rates_from_cells(cells[judged].sum(axis=0))
    family_of_mdd = {"selection_rate": "demographic_parity_difference",
                     "tpr": "equal_opportunity_difference"}
    for k in family_of_mdd:
        if pooled[k] in (0.0, 1.0):
            notes.append(f"No detectable gap for {METRIC_LABELS[k]}: it is {pooled[k]:.0f} in every judged "
                         "group together, where the power approximation has no variance (it would say 0, "
                         "as if any gap were detected); the data cannot show how large a gap would be seen.")
    beyond: dict[str, list[str]] = {k: [] for k in family_of_mdd}  # a detectable gap above 1
    rows_out = []
    for g, lv in enumerate(levels):
        if small[g]:
            rows_out.append(GroupRow.too_small_to_judge(lv, counts[g], metric_keys))
            continue
        metrics = {}
        for k in metric_keys:
            v = _f(all_point[k][g])
            lo, hi = (intervals[k][0][g], intervals[k][1][g]) if k in intervals else (None, None)
            why = None if v is not None else (reasons.get(k) or "undefined")
            how = (f"Clopper–Pearson ({GROUP_METHOD})" if k in counts_of else auc_how if k == "auc"
                   else f"percentile bootstrap, {B:,} resamples")
            metrics[k] = Estimate.of(v, _f(lo), _f(hi), level=config.confidence, method=how,
                                     undefined_reason=why)
        mdd = {}
        for k, key in family_of_mdd.items():
            den = counts_of[k][1] * judged
            m = int(scored[key][4])
            partners = [ref] if ref is not None and ref != g else [h for h in np.flatnonzero(judged) if h != g]
            n_other = max((den[h] for h in partners), default=0)
            mdd[k] = _f(min_detectable_difference(float(pooled[k]), den[g], n_other,
                                                  alpha=alpha / max(m, 1), power=config.power))
            if mdd[k] is not None and mdd[k] > 1:  # no gap of rates is that large
                beyond[k].append(str(lv))
                mdd[k] = None
        rows_out.append(GroupRow(str(lv), int(counts[g]), False, metrics, mdd, calib.get(g)))

    for k, gs in beyond.items():
        if gs:
            notes.append(f"No detectable gap for {METRIC_LABELS[k]} in {', '.join(gs[:5])}"
                         f"{' …' if len(gs) > 5 else ''}: too few rows for even a gap of 1 to be detected "
                         f"with {config.power:.0%} probability (the approximation gives more than 1).")

    # Disparities over the judged groups.
    masked_point = _mask_groups(all_point, judged)
    disp_point = binary_disparities(masked_point, ref)
    disp_point["auc_difference"] = spread_difference(masked_point["auc"], ref)
    names = [k for k in BINARY_DISPARITIES if k != "auc_difference" or scores]
    judged_names = tuple(str(levels[g]) for g in np.flatnonzero(judged))
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    disparities: dict[str, Disparity] = {}
    n_judged = int(judged.sum())

    def bounds_at(k: str, level: float) -> tuple[float | None, float | None]:
        if k in SCORE_DISPARITIES:
            lo, hi, *_ = score_disparities(cells, ref, level, judged, keys=[k], test=False,
                                           favourable=favourable)[k]
            return _f(lo), _f(hi)
        # the AUC gap: a judged group without an AUC (one outcome only) or with too few rows of
        # a class for its interval is unknown, so the upper bound is 1 (as for the rates)
        lo, hi = auc_gap_interval(np.where(few_auc, np.nan, masked_point["auc"]), auc_k, ref, level,
                                  within=auc_within, counted=judged)
        return _f(lo), _f(hi)

    for k in names:
        label, base = BINARY_DISPARITIES[k]
        bases = base.split(",")
        if favourable_label is not None and k in ("demographic_parity_difference",
                                                  "demographic_parity_ratio", "disparate_impact_ratio"):
            label, bases = f"{label}, favourable outcome ({favourable_label})", ["favourable_rate"]
        undefined_in = {b: [str(levels[g]) for g in np.flatnonzero(judged) if not np.isfinite(all_point[b][g])]
                        for b in bases}
        # a group whose AUC has no interval is as unknown to the AUC gap as an undefined one
        unbounded = np.flatnonzero(few_auc) if k == "auc_difference" else []
        undefined_groups = tuple(sorted({g for gs in undefined_in.values() for g in gs}
                                        | {str(levels[g]) for g in unbounded}))
        undefined_why = (tuple(f"{g}: {METRIC_LABELS.get(b, b)} undefined ({reasons.get(b) or 'no value'})"
                               for b in bases for g in undefined_in[b])
                         + tuple(f"{levels[g]}: AUC without an interval ({_few_auc_text(auc_k[g])})"
                                 for g in unbounded))
        v = _f(disp_point[k])
        lo = hi = p_raw = p_adj = m = None
        family = test = None
        if v is not None and k in SCORE_DISPARITIES:
            lo_, hi_, p_adj_, p_raw_, m_ = scored[k]
            lo, hi, p_adj, p_raw, m = _f(lo_), _f(hi_), _f(p_adj_), _f(p_raw_), int(m_)
            family = SCORE_DISPARITIES[k][0]
            test = IMPACT_TEST if k == "disparate_impact_ratio" and ref is not None else SCORE_TEST
        elif v is not None:  # the AUC gap
            lo, hi = bounds_at(k, config.confidence)
        why = None
        if v is None:
            why = (f"fewer than two groups with at least {config.min_group_size} rows"
                   if n_judged < 2 else
                   "the reference group's rate is undefined" if ref is not None and not np.isfinite(all_point[bases[0]][ref])
                   else "fewer than two groups with a defined value, or a ratio of zero rates")
        how = SCORE_INTERVAL if k in SCORE_DISPARITIES else auc_gap_method(streamed=exact_auc is None)
        disparities[k] = Disparity(k, label, Estimate.of(v, lo, hi, level=config.confidence, method=how,
                                                         undefined_reason=why), p_raw, p_adj, test,
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

    if few_auc.any():
        names_few = ", ".join(f"{levels[g]} ({_few_auc_text(auc_k[g])})" for g in np.flatnonzero(few_auc))
        notes.append(f"AUC without an interval for {names_few}: the interval's error rates were "
                     f"simulated from {MIN_PER_CLASS} rows of each class upwards. In the AUC difference "
                     "these groups count as unknown, so its upper bound is 1 and a gate rule on it "
                     "cannot pass (insufficient evidence, unless the other groups already breach).")

    ratios = impact_ratios(masked_point["favourable_rate"], ref)
    impact = {str(levels[g]): _f(ratios[g]) for g in range(G) if judged[g]}
    four_fifths = tuple(g for g, r in impact.items() if r is not None and r < 0.8)

    curves = None
    what_if: tuple[WhatIf, ...] = ()
    if scores and len(cols) == 1:
        curves = _threshold_curves(table, judged)
        if config.what_if and n_judged >= 2:
            what_if = _what_if(table, judged, max_rows=config.what_if_rows, rng=rng)
    bound = None
    if scores and exact_auc is None and np.isfinite(auc_bound[judged]).any():
        bound = float(np.nanmax(auc_bound[judged]))
        notes.append(f"AUC from a histogram of {table.n_bins:,} score bins (the rows were read in batches, "
                     f"not kept): each group's AUC is within {bound:.1e} of the exact value (pairs of "
                     "rows in one bin count as ties), and the AUC intervals (each group's and the AUC "
                     "difference's) are widened by each group's bound so that they hold whatever the exact "
                     "value; every other number is what the rows in memory give.")
    if small.any():
        notes.append(f"{int(small.sum())} group(s) with fewer than {config.min_group_size} rows are "
                     "too small to judge and left out of the disparities.")
    return AttributeResult(name, tuple(cols), str(levels[ref]) if ref is not None else None,
                           tuple(rows_out), disparities, impact, four_fifths,
                           tuple(dict.fromkeys(notes)), curves, what_if, bounds_at, bound)


def _few_auc_text(k: float) -> str:
    return f"{int(k)} row{'s' if k != 1 else ''} of its smaller outcome class, fewer than {MIN_PER_CLASS}"


def _threshold_curves(table: GroupTable, judged: np.ndarray, n_points: int = 51) -> ThresholdCurves:
    """Selection rate, TPR and FPR of each judged group as the threshold moves over [0, 1], at
    ``n_points`` edges of the score histogram (exact there: a row counts when its score is at
    least the threshold)."""
    step = max(1, table.n_bins // (n_points - 1))
    edges = np.arange(0, table.n_bins + 1, step)
    curves = {table.levels[g]: {k: tuple(_f(v) for v in r) for k, r in threshold_rates(table, g, step).items()}
              for g in np.flatnonzero(judged)}
    return ThresholdCurves(tuple(float(v) for v in (edges / table.n_bins).round(4)), curves)
