"""Paired differences of two binary classifiers on the same rows: performance, every disparity,
McNemar's test and the decisions that change.

Every change is challenger − champion, with a paired percentile bootstrap interval (one set of
resampled rows for both models; within the groups of the attribute for disparities, as the
fairness method resamples) and a paired sign-flip permutation test (:mod:`audit.stats.paired`).
Groups smaller than the fairness method's ``min_group_size`` are left out of the disparities of
both models, as in the fairness audit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.compare.options import CompareOptions
from audit.compare.results import Change, DecisionChange, Estimate
from audit.stats.bootstrap import group_codes, percentile_interval, rates_from_cells, weighted_auc, weighted_calibration
from audit.stats.multiplicity import holm
from audit.stats.paired import (
    auc_rows,
    ece_rows,
    mcnemar,
    McNemar,
    normalised_ranks,
    paired_bootstrap,
    sign_flip_pvalue,
    swap_masks,
)
from audit.stats.proportions import group_interval

BOOTSTRAP = "paired percentile bootstrap (the same resampled rows for both models)"
STRATIFIED = BOOTSTRAP[:-1] + ", resampled within the attribute's groups)"
SIGN_FLIP = "paired permutation test (each row's two outputs swapped with probability 1/2), two-sided"
RANK_FLIP = SIGN_FLIP[:-len(", two-sided")] + " on each model's normalised ranks, two-sided"
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
    x = float(x)
    return x if np.isfinite(x) else None


def _change(metric: str, label: str, a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray,
            p: float | None, options: CompareOptions, method: str, test: str, *,
            undefined: str | None = None, excluded_small: tuple[str, ...] = ()) -> Change:
    """A change with its interval; undefined when either model's value is."""
    value = b - a
    if not np.isfinite(value):
        why = undefined or "undefined for at least one model"
        return Change(metric, label, _f(a), _f(b), Estimate(None, None, None, options.confidence, method, why),
                      None, None, test, excluded_small)
    lo, hi = (None, None)
    why = None
    if options.n_boot:
        lo_a, hi_a = percentile_interval((boot_b - boot_a)[:, None], options.confidence)
        lo, hi = _f(lo_a[0]), _f(hi_a[0])
        if lo is None:
            why = "more than 10% of the resamples were undefined: too unstable for an interval"
    else:
        why = "n_boot = 0: no interval"
    return Change(metric, label, _f(a), _f(b), Estimate(_f(value), lo, hi, options.confidence, method, why),
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
    if options.n_boot:
        with np.errstate(all="ignore"):
            boot_a, boot_b = paired_bootstrap(stat, np.zeros(n, np.int64), 1, options.n_boot, rng)
    else:
        boot_a = boot_b = np.full((0, point_a.size), np.nan)
    names = ["accuracy"] + (["auc", "ece"] if scored else [])
    pvals = [None] * len(names)
    if options.n_permutations:
        d = cb - ca
        ra = rb = None
        if scored:
            ra, rb = normalised_ranks(sa), normalised_ranks(sb)
        nulls = []
        for m in swap_masks(n, options.n_permutations, rng):
            sign = np.where(m, -1.0, 1.0)
            row = [(sign * d).mean(axis=1)]  # swapping row i flips the sign of its difference
            if scored:
                row.append(auc_rows(np.where(m, ra, rb), y) - auc_rows(np.where(m, rb, ra), y))
                row.append(ece_rows(np.where(m, sa, sb), y, bins) - ece_rows(np.where(m, sb, sa), y, bins))
            nulls.append(np.column_stack(row))
        null = np.concatenate(nulls)
        pvals = list(sign_flip_pvalue(point_b - point_a, null))
    out = {}
    for j, name in enumerate(names):
        test = RANK_FLIP if name == "auc" else SIGN_FLIP
        out[name] = _change(name, PERFORMANCE_LABELS[name], point_a[j], point_b[j], boot_a[:, j],
                            boot_b[:, j], pvals[j] if options.n_permutations else None, options,
                            BOOTSTRAP, test if options.n_permutations else "not tested (n_permutations = 0)",
                            undefined="needs both positive and negative outcomes" if name == "auc" else None)
    out = _adjust(out)
    return out, mcnemar(ca.astype(bool), cb.astype(bool))


def _adjust(changes: dict[str, Change]) -> dict[str, Change]:
    """Holm-adjusted p-values over one family of changes."""
    import dataclasses

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


def overall_changes(p: Paired, confidence: float) -> DecisionChange:
    """The decisions that change over all rows."""
    return decision_changes(np.zeros(p.y.size, dtype=np.int64), p, confidence)[2][0]


def compare_disparities(name: str, values: np.ndarray, p: Paired, metrics: Sequence[str],
                        options: CompareOptions, rng: np.random.Generator,
                        reference: str | None = None) -> AttributeComparison:
    """The change of every disparity in ``metrics`` for one attribute or intersection."""
    from audit.methods.fairness import BINARY_DISPARITIES, binary_disparities

    levels, codes, groups = decision_changes(values, p, options.confidence)
    G = len(levels)
    counts = np.bincount(codes, minlength=G)
    small = counts < options.min_group_size
    ref = None
    if reference is not None:
        lv = [str(v) for v in levels]
        ref = lv.index(reference) if reference in lv and not small[lv.index(reference)] else None
    y = p.y.astype(np.int64)
    cell_a = codes * 4 + 2 * y + p.champion.astype(np.int64)
    cell_b = codes * 4 + 2 * y + p.challenger.astype(np.int64)
    fav = options.favourable

    def disparities(cells: np.ndarray) -> np.ndarray:
        """(b, G*4) cell counts -> (b, len(metrics)) disparities over the judged groups."""
        with np.errstate(all="ignore"):
            rates = rates_from_cells(cells.reshape(len(cells), G, 4))
            if fav == "negative":
                rates["favourable_rate"] = 1 - rates["selection_rate"]
            rates = {k: np.where(small, np.nan, v) for k, v in rates.items()}
            d = binary_disparities(rates, ref)
        return np.column_stack([d[m] for m in metrics])

    def onehot(cell: np.ndarray) -> np.ndarray:
        out = np.zeros((cell.size, G * 4))
        out[np.arange(cell.size), cell] = 1.0
        return out

    oa, ob = onehot(cell_a), onehot(cell_b)
    point_a = disparities(oa.sum(axis=0)[None])[0]
    point_b = disparities(ob.sum(axis=0)[None])[0]
    k = len(metrics)
    if options.n_boot:
        boot_a, boot_b = paired_bootstrap(lambda w: (disparities(w @ oa), disparities(w @ ob)),
                                          codes, G, options.n_boot, rng)
    else:
        boot_a = boot_b = np.full((0, k), np.nan)
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
    small_names = tuple(str(levels[g]) for g in np.flatnonzero(small))
    test = SIGN_FLIP if options.n_permutations else "not tested (n_permutations = 0)"
    changes = {m: _change(m, BINARY_DISPARITIES[m][0], point_a[j], point_b[j], boot_a[:, j], boot_b[:, j],
                          pvals[j], options, STRATIFIED, test,
                          undefined=("fewer than two judged groups with a defined rate" if (~small).sum() >= 2
                                     else f"fewer than two groups of at least {options.min_group_size} rows"),
                          excluded_small=small_names)
               for j, m in enumerate(metrics)}
    return AttributeComparison(name, groups, small_names, changes)


def adjust_fairness(attributes: Mapping[str, AttributeComparison]) -> dict[str, AttributeComparison]:
    """Holm over every disparity change tested (one family for the whole fairness comparison)."""
    import dataclasses

    flat = {(a, m): c for a, res in attributes.items() for m, c in res.disparities.items()}
    adjusted = _adjust({f"{a}\0{m}": c for (a, m), c in flat.items()})
    out = {}
    for a, res in attributes.items():
        out[a] = dataclasses.replace(res, disparities={m: adjusted[f"{a}\0{m}"] for m in res.disparities})
    return out


__all__ = ["AttributeComparison", "Paired", "adjust_fairness", "compare_disparities", "compare_performance",
           "decision_changes", "overall_changes"]
