"""Paired differences of two binary classifiers on the same rows: performance, every disparity,
McNemar's test and the decisions that change.

Every change is challenger − champion, with a paired interval (one set of resampled rows for
both models) and a paired sign-flip permutation test (:mod:`audit.stats.paired`): for accuracy
and AUC the percentile bootstrap interval of the change; for a disparity the projection interval
(its change's range over a simultaneous box of the champion's group rates and their paired
changes, rows resampled within the attribute's groups as the fairness method resamples), since a
max − min is not smooth where groups tie. Groups smaller than the fairness method's
``min_group_size`` are left out of the disparities of both models, as in the fairness audit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.compare.options import CompareOptions
from audit.compare.results import Change, DecisionChange
from audit.core.results import Estimate
from audit.stats.bootstrap import (
    group_codes,
    percentile_interval,
    rate_counts,
    rates_from_cells,
    weighted_auc,
    weighted_calibration,
)
from audit.stats.multiplicity import holm
from audit.stats.paired import (
    McNemar,
    auc_rows,
    coordinate_error,
    ece_rows,
    exact_change_bound,
    exact_share_bound,
    mcnemar,
    paired_bootstrap,
    projection_interval,
    ratio_pieces,
    ratio_projection,
    sign_flip_pvalue,
    simultaneous_box,
    spread_pieces,
    swap_masks,
)
from audit.stats.proportions import group_interval

BOOTSTRAP = "paired percentile bootstrap (the same resampled rows for both models)"
#: The percentile bootstrap of the accuracy and AUC changes is approximate: the largest share
#: of samples in which one bound of its 95% interval missed the true change (nominal 2.5%),
#: simulated over the cells of tests/test_compare_stats.py::
#: test_performance_change_bounds_err_at_most_the_stated_rate (README, "Comparing two models");
#: measured up to 3.85% (accuracy) and 6.3% (AUC: 40-60 positives, AUCs near 0.97 -> 0.95),
#: stated here with a Monte Carlo margin. A verdict resting on such a bound says so, with this
#: number, instead of "at most 2.5%".
BOOTSTRAP_ONE_SIDED_ERROR = {"accuracy": 0.039, "auc": 0.065}
PROJECTION = ("range of the change over a simultaneous box of the champion's group rates and their paired "
              "changes (studentized bootstrap, the same rows resampled within the attribute's groups for "
              "both models; each bound errs at most (1 − level)/2 as far as the bootstrap holds its level), conservative")
RATIO_PROJECTION = ("range of the change of the ratio over a simultaneous box of the champion's group rates and "
                    "their paired changes and the challenger's rates (studentized bootstrap, the same rows resampled "
                    "within the attribute's groups for both models; bounded piece by piece, each bound "
                    "errs at most (1 − level)/2 as far as the bootstrap holds its level), conservative")
AUC_GAP = "auc_difference"
AUC_PROJECTION = ("range of the change of the AUC gap over a simultaneous box of the champion's group AUCs and "
                  "their paired changes (studentized bootstrap, the same rows resampled within the attribute's "
                  "groups for both models), conservative")
SIGN_FLIP = "paired permutation test (each row's two outputs swapped with probability 1/2), two-sided"
#: Fewer events than this (a group's rows counted in a compared rate's numerator, or not; an
#: outcome class; discordant rows) and a bootstrap of the rates under-covers (the percentile
#: interval of a disparity change covered 0.74 with ~1 selected row in a group of 40, 0.88 with
#: ~6 of 300; a studentized box collapses where a rate's resamples barely vary). Such a change
#: gets no interval, and says why; a group where fewer rows *change* (between the models) gets
#: an exact bound of its change instead (covered 0.40 at 3 changed rows of 300 before).
MIN_EVENTS = 10
FEW_CHANGED = (f"; where fewer than {MIN_EVENTS} rows of a group change in a compared rate (none included), that "
               "group's change is bounded exactly instead (Clopper–Pearson bounds of the shares of rows that "
               "change, each spending its share of the box's error)")
FEW_CHANGED_AUC = (f"; where fewer than {MIN_EVENTS} rows of a group change score (none included), that group's "
                   "AUC change is bounded exactly instead (at most the sum of Clopper–Pearson bounds of the shares "
                   "of its positive and negative rows whose score changed)")
#: An AUC change gets no interval when (smaller class) × (1 − the larger AUC) is below this:
#: near AUC 1 the percentile bootstrap of the change covered 0.85 (60 positives, AUC 0.99: 0.6
#: there), 0.93 at 1.6 and 4 (simulations in tests/test_compare_stats.py and by hand).
AUC_MIN_MISRANKED = 1
PERFORMANCE_LABELS = {"accuracy": "accuracy", "auc": "ROC AUC",
                      "ece": "expected calibration error (ECE)"}


@dataclass(frozen=True)
class Paired:
    """The two models' outputs on the same rows (binary task)."""

    y: np.ndarray                       # (n,) 0/1
    champion: np.ndarray                # (n,) 0/1 decisions
    challenger: np.ndarray
    champion_scores: np.ndarray | None  # (n,) probabilities of the positive class
    challenger_scores: np.ndarray | None


@dataclass(frozen=True)
class AttributeComparison:
    """One attribute (or intersection): every disparity's change and the decisions that changed."""

    name: str
    groups: tuple[DecisionChange, ...]
    too_small: tuple[str, ...]
    disparities: dict[str, Change] = field(default_factory=dict)


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x) + 0.0  # + 0.0: never a negative zero
    return x if np.isfinite(x) else None


def _change(metric: str, label: str, a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray,
            p: float | None, options: CompareOptions, method: str, test: str, *,
            undefined: str | None = None, excluded_small: tuple[str, ...] = (),
            no_interval: str | None = None) -> Change:
    """A change with its interval; undefined when either model's value is, and without an
    interval (``no_interval`` says why) where the bootstrap is known to under-cover."""
    value = b - a
    if not np.isfinite(value):
        why = undefined or "undefined for at least one model"
        return Change(metric, label, _f(a), _f(b), Estimate(None, undefined_reason=why),
                      None, None, test, excluded_small)
    lo, hi = (None, None)
    why = None
    if no_interval:
        why = no_interval
    elif options.n_bootstrap:
        lo_a, hi_a = percentile_interval((boot_b - boot_a)[:, None], options.confidence)
        lo, hi = _f(lo_a[0]), _f(hi_a[0])
        if lo is None:
            why = "more than 10% of the resamples were undefined: too unstable for an interval"
    else:
        why = "n_bootstrap = 0: no interval"
    given = lo is not None and hi is not None
    return Change(metric, label, _f(a), _f(b), Estimate(_f(value), lo if given else None, hi if given else None,
                                                        options.confidence if given else None,
                                                        method if given else None, why),
                  _f(p), None, test, excluded_small)


def compare_performance(p: Paired, options: CompareOptions, rng: np.random.Generator
                        ) -> tuple[dict[str, Change], McNemar]:
    """Accuracy, AUC and ECE of both models, their changes, and McNemar's test."""
    y = p.y.astype(np.int64)
    n = y.size
    ca = (p.champion == y).astype(float)
    cb = (p.challenger == y).astype(float)
    scored = p.champion_scores is not None and p.challenger_scores is not None
    sa = None if not scored else np.asarray(p.champion_scores, float)
    sb = None if not scored else np.asarray(p.challenger_scores, float)
    bins = options.calibration_bins

    def stat(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tot = w.sum(axis=1)
        a = [w @ ca / tot]
        b = [w @ cb / tot]
        if scored:
            a += [weighted_auc(sa, y, w), weighted_calibration(sa, y, w, bins)[0]]
            b += [weighted_auc(sb, y, w), weighted_calibration(sb, y, w, bins)[0]]
        return np.column_stack(a), np.column_stack(b)

    point_a, point_b = (v[0] for v in stat(np.ones((1, n))))
    if options.n_bootstrap:
        with np.errstate(all="ignore"):
            boot_a, boot_b = paired_bootstrap(stat, np.zeros(n, np.int64), 1, options.n_bootstrap, rng)
    else:
        boot_a = boot_b = np.full((0, point_a.size), np.nan)
    names = ["accuracy"] + (["auc", "ece"] if scored else [])
    pvals = [None] * len(names)
    if options.n_permutations:
        d = cb - ca
        nulls = []
        for m in swap_masks(n, options.n_permutations, rng):
            sign = np.where(m, -1.0, 1.0)
            row = [(sign * d).mean(axis=1)]  # swapping row i flips the sign of its difference
            if scored:
                # the raw scores, not ranks: swapping ranks is not the group action under which the
                # data are exchangeable (size 0.062-0.075 at alpha 0.05 with tied scores)
                row.append(auc_rows(np.where(m, sa, sb), y) - auc_rows(np.where(m, sb, sa), y))
                row.append(ece_rows(np.where(m, sa, sb), y, bins) - ece_rows(np.where(m, sb, sa), y, bins))
            nulls.append(np.column_stack(row))
        null = np.concatenate(nulls)
        pvals = list(sign_flip_pvalue(point_b - point_a, null))
    out = {}
    smallest = int(min(y.sum(), n - y.sum()))
    for j, name in enumerate(names):
        test = SIGN_FLIP
        few = None
        if name == "ece":
            few = ("binned ECE is biased upward by an amount that depends on each model's scores, so a "
                   "bootstrap interval of its change would not hold its level; the permutation test is given")
        elif name != "accuracy" and smallest < MIN_EVENTS:
            few = (f"only {smallest} rows in the smaller outcome class: the bootstrap needs at least "
                   f"{MIN_EVENTS} (simulated coverage fell well below nominal with fewer)")
        elif name == "auc" and smallest * (1 - max(point_a[j], point_b[j])) < AUC_MIN_MISRANKED:
            few = (f"an AUC of {max(point_a[j], point_b[j]):.4f} with {smallest} rows in the smaller outcome "
                   f"class leaves fewer than {AUC_MIN_MISRANKED} misranked rows' worth of evidence: the "
                   "bootstrap interval of the change under-covers there (simulated 0.85 at AUC 0.99 with 60 "
                   "positives)")
        out[name] = _change(name, PERFORMANCE_LABELS[name], point_a[j], point_b[j], boot_a[:, j],
                            boot_b[:, j], pvals[j] if options.n_permutations else None, options,
                            BOOTSTRAP, test if options.n_permutations else "not tested (n_permutations = 0)",
                            undefined="needs both positive and negative outcomes" if name == "auc" else None,
                            no_interval=few)
    n10, n01 = int(np.sum((ca == 1) & (cb == 0))), int(np.sum((ca == 0) & (cb == 1)))
    if n10 + n01 < MIN_EVENTS:
        out["accuracy"] = dataclasses.replace(out["accuracy"], change=discordant_interval(n10, n01, n, options.confidence))
    out = _adjust(out)
    return out, mcnemar(ca.astype(bool), cb.astype(bool))


def discordant_interval(n10: int, n01: int, n: int, confidence: float) -> Estimate:
    """The accuracy change (n01 − n10) / n with a conservative exact interval, for when few rows
    are discordant (the bootstrap cannot see a discordance it never drew).

    The true change is p01 − p10, the probabilities that only the challenger (only the
    champion) is right; with Clopper–Pearson bounds of each at level 1 − (1 − c)/2, the
    interval [L01 − U10, U01 − L10] misses on each side with probability at most (1 − c)/2.

    Examples
    --------
    >>> e = discordant_interval(0, 0, 4000, 0.95)
    >>> e.value, e.lower < 0 < e.upper, round(e.upper, 5)
    (0.0, True, 0.00109)
    """
    lo, hi = group_interval(np.array([n01, n10]), np.array([n, n]), 1 - (1 - confidence) / 2)
    return Estimate(_f((n01 - n10) / n), _f(lo[0] - hi[1]), _f(hi[0] - lo[1]), confidence,
                    f"fewer than {MIN_EVENTS} discordant rows: Clopper–Pearson bounds of the two discordant "
                    "proportions (each at level 1 − (1 − c)/2), conservative")


def _adjust(changes: dict[str, Change]) -> dict[str, Change]:
    """Holm-adjusted p-values over one family of changes."""
    keys = [k for k, c in changes.items() if c.p_value is not None]
    if not keys:
        return changes
    adj = holm(np.array([changes[k].p_value for k in keys]))
    return {**changes, **{k: dataclasses.replace(changes[k], p_adjusted=_f(a)) for k, a in zip(keys, adj)}}


def decision_changes(values: np.ndarray, p: Paired, confidence: float
                     ) -> tuple[np.ndarray, np.ndarray, tuple[DecisionChange, ...]]:
    """Per group: rows, how many change decision (to positive, to negative), the share with its
    Clopper–Pearson interval. Returns the group levels, each row's code and the changes."""
    levels, codes = group_codes(values)
    G = len(levels)
    to_pos = np.bincount(codes, weights=(p.champion == 0) & (p.challenger == 1), minlength=G).astype(int)
    to_neg = np.bincount(codes, weights=(p.champion == 1) & (p.challenger == 0), minlength=G).astype(int)
    rows = np.bincount(codes, minlength=G)
    lo, hi = group_interval(to_pos + to_neg, rows, confidence)
    out = tuple(DecisionChange(str(lv), int(rows[g]), int(to_pos[g] + to_neg[g]), int(to_pos[g]), int(to_neg[g]),
                               Estimate(_f((to_pos[g] + to_neg[g]) / rows[g]), _f(lo[g]), _f(hi[g]), confidence,
                                        "Clopper–Pearson (exact)"))
                for g, lv in enumerate(levels))
    return levels, codes, out


#: The group name of the decisions that change over all rows.
ALL_ROWS = "all rows"


def overall_changes(p: Paired, confidence: float) -> DecisionChange:
    """The decisions that change over all rows (group :data:`ALL_ROWS`)."""
    return dataclasses.replace(decision_changes(np.zeros(p.y.size, dtype=np.int64), p, confidence)[2][0],
                               group=ALL_ROWS)


def compare_disparities(name: str, values: np.ndarray, p: Paired, metrics: Sequence[str],
                        options: CompareOptions, rng: np.random.Generator,
                        reference: str | None = None) -> AttributeComparison:
    """The change of every disparity in ``metrics`` (differences and ratios of group rates) for
    one attribute or intersection: point estimates, projection intervals, permutation tests."""
    from audit.methods.fairness.config import BINARY_DISPARITIES
    from audit.methods.fairness.formulas import SCORE_DISPARITIES, binary_disparities

    levels, codes, groups = decision_changes(values, p, options.confidence)
    G = len(levels)
    counts = np.bincount(codes, minlength=G)
    small = counts < options.min_group_size
    judged = np.flatnonzero(~small)
    ref = None
    if reference is not None:
        lv = [str(v) for v in levels]
        ref = lv.index(reference) if reference in lv and not small[lv.index(reference)] else None
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    auc_change = (auc_gap_change(codes, levels, judged, ref, p, options, rng, small_names)
                  if AUC_GAP in metrics else None)
    order = list(metrics)
    metrics = [m for m in metrics if m != AUC_GAP]
    if not metrics:
        return AttributeComparison(name, groups, small_names, {AUC_GAP: auc_change} if auc_change else {})
    y = p.y.astype(np.int64)
    cell_a = codes * 4 + 2 * y + p.champion.astype(np.int64)
    cell_b = codes * 4 + 2 * y + p.challenger.astype(np.int64)
    # the rates each disparity compares (demographic parity and disparate impact: the rate of
    # the favourable decision), and its kind: "difference", "ratio" or "impact"
    bases = {m: list(SCORE_DISPARITIES[m][1]) for m in metrics}
    kinds = {m: SCORE_DISPARITIES[m][2] for m in metrics}

    def rates(cells: np.ndarray) -> dict[str, np.ndarray]:
        """(b, G*4) cell counts -> rate -> (b, G), NaN for groups too small to judge."""
        with np.errstate(all="ignore"):
            r = rates_from_cells(cells.reshape(len(cells), G, 4))
        sel = r["selection_rate"]
        r["favourable_rate"] = sel if options.favourable == "positive" else 1 - sel
        return {k: np.where(small, np.nan, v) for k, v in r.items()}

    def disparities(cells: np.ndarray) -> np.ndarray:
        """(b, G*4) cell counts -> (b, len(metrics)) disparities over the judged groups."""
        with np.errstate(all="ignore"):
            d = binary_disparities(rates(cells), ref)
        return np.column_stack([d[m] for m in metrics])

    def stacked(cells: np.ndarray) -> np.ndarray:
        """(b, G*4) -> (b, T·Gj): every rate any metric compares, judged groups only."""
        r = rates(cells)
        return np.concatenate([r[k][:, judged] for k in rate_keys], axis=1)

    def onehot(cell: np.ndarray) -> np.ndarray:
        out = np.zeros((cell.size, G * 4))
        out[np.arange(cell.size), cell] = 1.0
        return out

    rate_keys = list(dict.fromkeys(k for m in metrics for k in bases[m]))
    oa, ob = onehot(cell_a), onehot(cell_b)
    point_a = disparities(oa.sum(axis=0)[None])[0]
    point_b = disparities(ob.sum(axis=0)[None])[0]
    k = len(metrics)
    pvals = np.full(k, np.nan)
    if options.n_permutations:
        disc = np.flatnonzero(cell_a != cell_b)  # only rows where the decisions differ can move a cell
        delta = ob[disc] - oa[disc]
        base_a, base_b = oa.sum(axis=0), ob.sum(axis=0)
        nulls = []
        for m in swap_masks(disc.size, options.n_permutations, rng):
            shift = m.astype(float) @ delta
            nulls.append(disparities(base_b - shift) - disparities(base_a + shift))
        pvals = sign_flip_pvalue(point_b - point_a, np.concatenate(nulls))
    test = SIGN_FLIP if options.n_permutations else "not tested (n_permutations = 0)"
    counts = {role: rate_counts(o.sum(axis=0).reshape(G, 4)) for role, o in (("champion", oa), ("challenger", ob))}

    def few_events(metric: str) -> str | None:
        """Why the interval cannot be trusted for this disparity (too few events), or None."""
        for base in bases[metric]:
            for role, c in counts.items():
                x, den = c["selection_rate" if base == "favourable_rate" else base]
                events = np.minimum(x, den - x)
                bad = [g for g in judged if events[g] < MIN_EVENTS]
                if bad:
                    g = bad[0]
                    return (f"group {levels[g]} has {int(events[g])} row(s) on one side of its {base} for the "
                            f"{role} ({int(x[g])} of {int(den[g])}): the bootstrap needs at least {MIN_EVENTS} "
                            "on each side for an interval that holds its level")
        return None

    # One paired, stratified bootstrap of every compared group rate and its change; each
    # disparity's interval is the range of its change over their simultaneous box.
    boxes: dict[str, Any] = {}
    exact_used: dict[str, bool] = {}
    if options.n_bootstrap and judged.size >= 2:
        ra0, rb0 = stacked(oa.sum(axis=0)[None])[0], stacked(ob.sum(axis=0)[None])[0]
        boot_a, boot_b = paired_bootstrap(lambda w: (stacked(w @ oa), stacked(w @ ob)), codes, G, options.n_bootstrap, rng)
        width = judged.size
        level = 1 - (1 - options.confidence) / 2
        for m in metrics:
            cols = np.concatenate([np.arange(width) + rate_keys.index(b) * width for b in bases[m]])
            point = np.r_[ra0[cols], rb0[cols] - ra0[cols]]
            draws = np.hstack([boot_a[:, cols], boot_b[:, cols] - boot_a[:, cols]])
            if kinds[m] != "difference":  # a ratio also bounds the challenger's own rates (see ratio_projection)
                point, draws = np.r_[point, rb0[cols]], np.hstack([draws, boot_b[:, cols]])
            error = coordinate_error(level, point.size)
            exact = [_exact_rate_change(b, codes, judged, oa, ob, options.favourable, error) for b in bases[m]]
            lo_x, hi_x = (np.full(point.size, np.nan) for _ in range(2))
            lo_x[cols.size:2 * cols.size] = np.concatenate([e[0] for e in exact])
            hi_x[cols.size:2 * cols.size] = np.concatenate([e[1] for e in exact])
            exact_used[m] = bool(np.isfinite(lo_x).any())
            boxes[m] = simultaneous_box(point, draws, level, exact=(lo_x, hi_x))
    ref_j = None if ref is None else int(np.searchsorted(judged, ref))
    changes = {}
    for j, m in enumerate(metrics):
        label = BINARY_DISPARITIES[m][0]
        value = point_b[j] - point_a[j]
        compared = {role: np.concatenate([rates(o.sum(axis=0)[None])[b][0, judged] for b in bases[m]])
                    for role, o, v in (("champion", oa, point_a[j]), ("challenger", ob, point_b[j])) if not np.isfinite(v)}
        undefined = (_undefined_ratio(m, kinds[m], compared, ref_j)
                     if kinds[m] != "difference" and judged.size >= 2 else
                     "fewer than two judged groups with a defined rate" if judged.size >= 2
                     else f"fewer than two groups of at least {options.min_group_size} rows")
        if not np.isfinite(value):
            e = Estimate(None, undefined_reason=undefined)
        elif not options.n_bootstrap:
            e = Estimate(_f(value), undefined_reason="n_bootstrap = 0: no interval")
        elif few_events(m):
            e = Estimate(_f(value), undefined_reason=few_events(m))
        elif boxes.get(m) is None:
            e = Estimate(_f(value), undefined_reason="more than 10% of the resamples left a rate undefined: too "
                         "unstable for an interval")
        else:
            d, n_rates = judged.size, len(bases[m])
            lo, hi = boxes[m]
            k = d * n_rates
            box = (lo[:k], hi[:k], lo[k:2 * k], hi[k:2 * k])
            if kinds[m] == "difference":
                lo_v, hi_v = projection_interval(spread_pieces(d, n_rates, ref_j), *box)
                method = PROJECTION
            else:
                impact = kinds[m] == "impact"
                lo_v, hi_v = ratio_projection(ratio_pieces(d, n_rates, ref_j, impact=impact), *box,
                                              at_most_one=not (impact and ref_j is not None),
                                              lo_other=lo[2 * k:], hi_other=hi[2 * k:])
                method = RATIO_PROJECTION
            method += FEW_CHANGED if exact_used.get(m) else ""
            e = Estimate(_f(value), _f(min(lo_v, value)), _f(max(hi_v, value)), options.confidence, method)
        changes[m] = Change(m, label, _f(point_a[j]), _f(point_b[j]), e, _f(pvals[j]), None, test, small_names)
    if auc_change is not None:
        changes[AUC_GAP] = auc_change
    return AttributeComparison(name, groups, small_names, {m: changes[m] for m in order})


def _exact_rate_change(rate: str, codes: np.ndarray, judged: np.ndarray, oa: np.ndarray, ob: np.ndarray,
                       favourable: str, error: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact bounds (each missing with probability at most ``error``) of the change of ``rate``
    in every judged group where fewer than :data:`MIN_EVENTS` rows change, NaN elsewhere (the
    bootstrap's). ``oa``/``ob``: each row's one-hot cell (n, G·4) under either model.

    A rate over rows fixed by the outcome (selection, TPR, FPR, accuracy, ...) changes by
    p_up − p_down, the shares of its rows that enter or leave its numerator
    (:func:`exact_change_bound`). A rate over the rows a model selects (PPV, NPV) changes by at
    most (share of the group's rows whose decision changed) / (the champion's share of the
    rate's rows): |ΔPPV| = |(q01 − PPV·p01) − (q10 − PPV·p10)| / P(B = 1) <= (p01 + p10) / P(A = 1)
    in the notation of the cells; each of the two one-sided bounds spends half the error."""
    from audit.methods.fairness.formulas import favourable_counts

    G = oa.shape[1] // 4
    ca = favourable_counts(rate_counts(oa.reshape(len(oa), G, 4)), favourable)[rate]
    cb = favourable_counts(rate_counts(ob.reshape(len(ob), G, 4)), favourable)[rate]
    xa, da, xb, db = (v.sum(axis=1) for v in (*ca, *cb))  # each row's own group column only
    n_rows = np.bincount(codes, minlength=G)[judged]
    lo, hi = np.full(judged.size, np.nan), np.full(judged.size, np.nan)

    def per_group(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=mask, minlength=G)[judged].astype(np.int64)

    if rate in ("ppv", "npv"):
        changed = per_group(oa.argmax(axis=1) != ob.argmax(axis=1))
        few = changed < MIN_EVENTS
        share = exact_share_bound(changed, n_rows, error / 2)
        den = group_interval(per_group(da), n_rows, 1 - error)[0]  # one-sided error/2 below
        with np.errstate(all="ignore"):
            bound = np.where(den > 0, np.minimum(share / den, 1.0), 1.0)
        return np.where(few, -bound, lo), np.where(few, bound, hi)
    up = per_group((da == 1) & (xa == 0) & (xb == 1))
    down = per_group((da == 1) & (xa == 1) & (xb == 0))
    few = up + down < MIN_EVENTS
    low, high = exact_change_bound(up, down, per_group(da), error)
    return np.where(few, low, lo), np.where(few, high, hi)


def auc_gap_change(codes: np.ndarray, levels: np.ndarray, judged: np.ndarray, ref: int | None, p: Paired,
                   options: CompareOptions, rng: np.random.Generator, small_names: tuple[str, ...]) -> Change:
    """The change of the AUC gap between groups (max − min of the judged groups' AUCs, or the
    largest |group − reference|): its projection interval over a simultaneous box of the
    champion's group AUCs and their paired changes (rows resampled within groups, the same for
    both models), and its paired permutation test (each row's two raw scores swapped: exact
    under exchangeability of the scores on every row, ties included)."""
    from audit.methods.fairness.formulas import spread_difference

    label = "AUC difference (largest gap between groups' AUCs)"
    no_test = "not tested (n_permutations = 0)"
    test = SIGN_FLIP if options.n_permutations else no_test
    if p.champion_scores is None or p.challenger_scores is None:
        return Change(AUC_GAP, label, None, None, Estimate(None, undefined_reason="needs both models' scores"),
                      None, None, "not tested (no scores)", small_names)
    y = p.y.astype(np.int64)
    sa, sb = np.asarray(p.champion_scores, float), np.asarray(p.challenger_scores, float)
    # a group with one outcome class has no AUC for either model: it is left out of the gap, its
    # change, interval and test, and named (never an AUC of nan in a message)
    positives = np.bincount(codes, weights=y, minlength=len(levels))
    counts = np.bincount(codes, minlength=len(levels))
    one_class = [g for g in judged if positives[g] in (0, counts[g])]
    excluded = tuple(f"{levels[g]} (one outcome class only: no AUC)" for g in one_class)
    if ref is not None and ref in one_class:
        why = f"the reference group {levels[ref]} has one outcome class only, so it has no AUC and no gap is defined"
        return Change(AUC_GAP, label, None, None, Estimate(None, undefined_reason=why), None, None, test, small_names,
                      excluded_undefined=excluded)
    if judged.size - len(one_class) < 2:
        why = (f"fewer than two groups of at least {options.min_group_size} rows" if judged.size < 2 else
               "fewer than two judged groups have both outcomes, so no AUC gap is defined")
        return Change(AUC_GAP, label, None, None, Estimate(None, undefined_reason=why), None, None, test, small_names,
                      excluded_undefined=excluded)
    judged = np.setdiff1d(judged, one_class)
    rows = [np.flatnonzero(codes == g) for g in judged]

    def aucs(scores: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Each judged group's AUC, (b, Gj): of one score vector under weights ``w`` (b, n), or
        of each row of a score matrix (b, n)."""
        if scores.ndim == 2:
            return np.column_stack([auc_rows(scores[:, r], y[r]) for r in rows])
        return np.column_stack([weighted_auc(scores[r], y[r], np.ones((1, r.size)) if w is None else w[:, r])
                                for r in rows])

    def gap(v: np.ndarray) -> np.ndarray:
        return spread_difference(v, None if ref is None else int(np.searchsorted(judged, ref)))

    with np.errstate(all="ignore"):
        pa, pb = aucs(sa)[0], aucs(sb)[0]
        a, b = float(gap(pa[None])[0]), float(gap(pb[None])[0])
    pval = None
    if options.n_permutations:
        nulls = []
        for m in swap_masks(y.size, options.n_permutations, rng):
            with np.errstate(all="ignore"):
                nulls.append(gap(aucs(np.where(m, sa, sb))) - gap(aucs(np.where(m, sb, sa))))
        pval = _f(sign_flip_pvalue(np.array([b - a]), np.concatenate(nulls)[:, None])[0])
    why = None
    y_g = [(int(y[r].sum()), int(r.size - y[r].sum())) for r in rows]
    for g, (pos, neg), auc_a, auc_b in zip(judged, y_g, pa, pb):
        smaller = min(pos, neg)
        if smaller < MIN_EVENTS or smaller * (1 - max(auc_a, auc_b)) < AUC_MIN_MISRANKED:
            why = (f"group {levels[g]} has {smaller} row(s) in its smaller outcome class and AUC up to "
                   f"{max(auc_a, auc_b):.3f}: a bootstrap of group AUCs needs at least {MIN_EVENTS} rows of each class "
                   f"and {AUC_MIN_MISRANKED} misranked row's worth of evidence for an interval that holds its level")
            break
    if why is None and not options.n_bootstrap:
        why = "n_bootstrap = 0: no interval"
    if why is None:
        with np.errstate(all="ignore"):
            boot_a, boot_b = paired_bootstrap(lambda w: (aucs(sa, w), aucs(sb, w)), codes, len(levels),
                                              options.n_bootstrap, rng)
        level = 1 - (1 - options.confidence) / 2
        d = judged.size
        # |ΔAUC| <= P(a positive's score changed) + P(a negative's did): a pair's ranking can
        # change only if one of its rows did; exact where the bootstrap sees too few changes
        moved = sa != sb
        k_pos = np.array([int((moved[r] & (y[r] == 1)).sum()) for r in rows])
        k_neg = np.array([int((moved[r] & (y[r] == 0)).sum()) for r in rows])
        n_pos, n_neg = np.array(y_g).T
        error = coordinate_error(level, 2 * d)
        bound = np.minimum(exact_share_bound(k_pos, n_pos, error / 2) + exact_share_bound(k_neg, n_neg, error / 2), 1.0)
        few = k_pos + k_neg < MIN_EVENTS
        lo_x = np.r_[np.full(d, np.nan), np.where(few, -bound, np.nan)]
        hi_x = np.r_[np.full(d, np.nan), np.where(few, bound, np.nan)]
        box = simultaneous_box(np.r_[pa, pb - pa], np.hstack([boot_a, boot_b - boot_a]), level, exact=(lo_x, hi_x))
        method = AUC_PROJECTION + (FEW_CHANGED_AUC if few.any() else "")
        if box is None:
            why = "more than 10% of the resamples left a group's AUC undefined: too unstable for an interval"
    if why is not None:
        e = Estimate(_f(b - a), undefined_reason=why)
    else:
        d = judged.size
        lo, hi = box
        lo_v, hi_v = projection_interval(spread_pieces(d, 1, None if ref is None else int(np.searchsorted(judged, ref))),
                                         lo[:d], hi[:d], lo[d:], hi[d:])
        e = Estimate(_f(b - a), _f(min(lo_v, b - a)), _f(max(hi_v, b - a)), options.confidence, method)
    return Change(AUC_GAP, label, _f(a), _f(b), e, pval, None, test, small_names, excluded_undefined=excluded)


def _undefined_ratio(metric: str, kind: str, compared: Mapping[str, np.ndarray], ref: int | None) -> str:
    """Why a ratio disparity (or its change) is undefined, never inf: ``compared`` holds, for each
    model whose ratio is undefined, its compared rates of the judged groups (``ref`` indexes the
    reference among them). A zero denominator over a zero numerator is 0/0 (no group gets the
    outcome); the reference group's rate 0 under another group's positive rate is x/0 (infinite)."""
    against_ref = kind == "impact" and ref is not None
    why = []
    for role, r in compared.items():
        if np.isnan(r).any():
            why.append(f"a compared group's rate is undefined for the {role} (no rows in its denominator)")
        elif against_ref and (np.delete(r, ref) > 0).any():
            why.append(f"the reference group's rate is 0 for the {role} while another group's is not, so the ratio "
                       "is x/0 (infinite)")
        else:
            den = "the reference group's rate" if against_ref else "the largest compared group rate"
            why.append(f"{den} is 0 for the {role}, so the ratio is 0/0 (no group gets the outcome the {metric} "
                       "compares)")
    return f"undefined: {'; '.join(why) or 'a model has no defined ratio'}; the difference of rates is defined"


def adjust_fairness(attributes: Mapping[str, AttributeComparison]) -> dict[str, AttributeComparison]:
    """Holm over every disparity change tested (one family for the whole fairness comparison)."""
    flat = {(a, m): c for a, res in attributes.items() for m, c in res.disparities.items()}
    adjusted = _adjust({f"{a}\0{m}": c for (a, m), c in flat.items()})
    out = {}
    for a, res in attributes.items():
        out[a] = dataclasses.replace(res, disparities={m: adjusted[f"{a}\0{m}"] for m in res.disparities})
    return out


__all__ = ["AttributeComparison", "Paired", "adjust_fairness", "compare_disparities", "compare_performance",
           "decision_changes", "overall_changes"]
