"""Exhaustive, batched search over the smallest supports (model-agnostic).

For every row it tries each single change and each pair made of a categorical change and one
more change: every permitted level of every categorical (alone and with every permitted
level of another categorical), and for every numeric feature and direction the smallest move
that flips the prediction (bisection from the end of the row's permitted range), alone and on
top of each categorical change. Counterfactuals with one or two changes are what a person can
act on, and gradient or genetic searches under an L1 cost tend to add small helper changes
instead; this search finds the sparse ones directly. Pairs of two numeric changes are left to
the gradient / genetic search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audit.methods._cf.refine import SAFETY, Scorer
from audit.methods._cf.space import Space


def small_supports(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, *,
                   lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray],
                   weights: np.ndarray, sparsity_weight: float, pairs: bool = True,
                   steps: int = 12, chunk: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (num, cat, penalised cost) of the best one- or two-change counterfactual per row;
    the cost is +inf (and the row unchanged) where none flips the prediction."""
    n = len(num0)
    best_num, best_cat = num0.copy(), cat0.copy()
    best = np.full(n, np.inf)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        cand_row, cand_num, cand_cat = _candidates(space, scorer, num0, cat0, rows, lo, hi, masks,
                                                   pairs, steps)
        if cand_row.size == 0:
            continue
        ok = scorer.accept(cand_num, cand_cat)
        cost = space.cost(cand_num, cand_cat, num0[cand_row], cat0[cand_row], weights[cand_row])
        cost += sparsity_weight * space.changed(cand_num, cand_cat, num0[cand_row], cat0[cand_row]).sum(axis=1)
        cost = np.where(ok, cost, np.inf)
        order = np.lexsort((cost, cand_row))
        first = order[np.r_[True, cand_row[order][1:] != cand_row[order][:-1]]]
        first = first[np.isfinite(cost[first])]
        r = cand_row[first]
        best[r] = cost[first]
        best_num[r], best_cat[r] = cand_num[first], cand_cat[first]
    return best_num, best_cat, best


def _candidates(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, rows: np.ndarray,
                lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray], pairs: bool,
                steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # categorical moves: (row, group, level) for every permitted level other than the original
    mv_row, mv_g, mv_lv = [], [], []
    for g, m in enumerate(masks):
        mm = m[rows].copy()
        mm[np.arange(rows.size), cat0[rows, g]] = False
        r, lv = np.nonzero(mm)
        mv_row.append(rows[r])
        mv_g.append(np.full(r.size, g))
        mv_lv.append(lv)
    mv_row_a = np.concatenate(mv_row) if mv_row else np.zeros(0, int)
    mv_g_a = np.concatenate(mv_g) if mv_g else np.zeros(0, int)
    mv_lv_a = np.concatenate(mv_lv) if mv_lv else np.zeros(0, int)

    out_row, out_num, out_cat = [], [], []
    # bases: the original row, and (for pairs) the row after one categorical move
    base_row = [rows]
    base_num = [num0[rows]]
    base_cat = [cat0[rows]]
    if mv_row_a.size:
        c = cat0[mv_row_a].copy()
        c[np.arange(mv_row_a.size), mv_g_a] = mv_lv_a
        out_row.append(mv_row_a)
        out_num.append(num0[mv_row_a])
        out_cat.append(c)
        if pairs:
            base_row.append(mv_row_a)
            base_num.append(num0[mv_row_a])
            base_cat.append(c)
            # categorical pairs: a second move in a later group of the same row
            for g in range(len(space.cat)):
                first = np.flatnonzero(mv_g_a == g)
                second = np.flatnonzero(mv_g_a > g)
                if first.size == 0 or second.size == 0:
                    continue
                same = mv_row_a[first][:, None] == mv_row_a[second][None, :]
                i, k = np.nonzero(same)
                a, b = first[i], second[k]
                cc = c[a].copy()
                cc[np.arange(a.size), mv_g_a[b]] = mv_lv_a[b]
                out_row.append(mv_row_a[a])
                out_num.append(num0[mv_row_a[a]])
                out_cat.append(cc)
    b_row = np.concatenate(base_row)
    b_num = np.concatenate(base_num)
    b_cat = np.concatenate(base_cat)
    # numeric moves on every base: the smallest flip towards each end of the permitted range
    for j, s in enumerate(space.num):
        for end in (hi, lo):
            e = end[b_row, j]
            movable = (lo[b_row, j] <= hi[b_row, j]) & np.isfinite(e) & (e != num0[b_row, j])
            idx = np.flatnonzero(movable)
            if idx.size == 0:
                continue
            r = b_row[idx]
            nm, ct = b_num[idx].copy(), b_cat[idx]
            nm[:, j] = e[idx]
            nm, _ = space.project(nm, ct, num0[r], cat0[r], lo[r], hi[r], [m[r] for m in masks])
            ok = scorer.accept(nm, ct)
            idx, r, ct, start = idx[ok], r[ok], ct[ok], nm[ok, j]
            if idx.size == 0:
                continue
            a = np.zeros(idx.size)
            b = np.ones(idx.size)
            x0 = num0[r, j]
            base = b_num[idx]
            for _ in range(steps):
                mid = (a + b) / 2
                trial = base.copy()
                trial[:, j] = x0 + mid * (start - x0)
                trial, _ = space.project(trial, ct, num0[r], cat0[r], lo[r], hi[r], [m[r] for m in masks])
                good = scorer.accept(trial, ct)
                b = np.where(good, mid, b)
                a = np.where(good, a, mid)
            final = base.copy()
            final[:, j] = x0 + b * (start - x0)
            final, _ = space.project(final, ct, num0[r], cat0[r], lo[r], hi[r], [m[r] for m in masks])
            out_row.append(r)
            out_num.append(final)
            out_cat.append(ct)
    if not out_row:
        return np.zeros(0, int), np.zeros((0, len(space.num))), np.zeros((0, len(space.cat)), int)
    return np.concatenate(out_row), np.concatenate(out_num), np.concatenate(out_cat)


__all__ = ["SAFETY", "small_supports"]
