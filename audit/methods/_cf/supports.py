"""Exhaustive, batched search over the smallest supports (model-agnostic).

For every row it tries each single change and each pair of changes: every permitted level of
every categorical (alone and with every permitted level of another categorical); every numeric
feature moved to each point of an ``NUM_GRID``-point grid over its permitted range; and for
every numeric feature and direction the smallest move that flips the prediction (bisection from
the end of the row's permitted range), alone, on top of each categorical change and on top of
each other numeric feature's grid point. Counterfactuals with one or two changes are what a
person can act on, and gradient or genetic searches under an L1 cost tend to add small helper
changes instead; this search finds the sparse ones directly.

:func:`third_change` then looks for three-change counterfactuals around a found one that
changes more: every pair of its changes plus one further move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audit.methods._cf.refine import SAFETY, Scorer
from audit.methods._cf.space import Space

# Points of the grid over each numeric feature's permitted range tried as single changes and as
# the first change of numeric-numeric pairs.
NUM_GRID = 8

# Candidates scored together: rows are searched in chunks of about this many candidates, so that
# a model with a high cost per call (a scikit-learn pipeline) is called a few times for all rows
# while the arrays stay small enough to be fast (Adult MLP: about 57 rows per chunk, and 4x this
# budget was 2x slower there; German credit: about 175 rows per chunk).
MAX_CANDIDATES = 100_000


def small_supports(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, *,
                   lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray],
                   weights: np.ndarray, sparsity_weight: float, pairs: bool = True,
                   steps: int = 12,
                   max_candidates: int = MAX_CANDIDATES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (num, cat, penalised cost) of the best one- or two-change counterfactual per row;
    the cost is +inf (and the row unchanged) where none flips the prediction.

    Rows are searched in chunks of about ``max_candidates`` candidates (a row's candidates are
    independent of its chunk, so the chunking changes how many model calls there are, not the
    result)."""
    n = len(num0)
    best_num, best_cat = num0.copy(), cat0.copy()
    best = np.full(n, np.inf)
    for rows in _chunks(_candidate_counts(space, masks, pairs, n), max_candidates):
        cand_row, cand_num, cand_cat = _candidates(space, scorer, num0, cat0, rows, lo, hi, masks,
                                                   pairs, steps)
        if cand_row.size == 0:
            continue
        _keep_cheapest(space, scorer, num0, cat0, weights, sparsity_weight, cand_row, cand_num,
                       cand_cat, best, best_num, best_cat)
    return best_num, best_cat, best


def _candidate_counts(space: Space, masks: Sequence[np.ndarray], pairs: bool, n: int) -> np.ndarray:
    """An upper bound on the candidates :func:`_candidates` makes for each of the ``n`` rows."""
    moves = sum((m.sum(axis=1) - 1 for m in masks), np.zeros(n, np.int64))
    n_num = len(space.num)
    grid = NUM_GRID * n_num if pairs else 0
    bases = 1 + (moves + grid if pairs else 0)
    return moves + (moves * moves // 2 if pairs else 0) + grid + 2 * n_num * bases


def _chunks(counts: np.ndarray, budget: int) -> list[np.ndarray]:
    """Consecutive row ranges holding at most ``budget`` candidates (at least one row each)."""
    out, start, total = [], 0, 0
    for i, c in enumerate(counts):
        if i > start and total + c > budget:
            out.append(np.arange(start, i))
            start, total = i, 0
        total += int(c)
    if len(counts):
        out.append(np.arange(start, len(counts)))
    return out


def _candidates(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, rows: np.ndarray,
                lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray], pairs: bool,
                steps: int, grid: int = NUM_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # categorical moves: (row, group, level) for every permitted level other than the original
    mv_row_a, mv_g_a, mv_lv_a = _cat_moves(space, cat0[rows], rows, masks)
    out_row, out_num, out_cat = [], [], []
    # bases: the original row, and (for pairs) the row after one categorical move or after one
    # numeric move to a point of a grid over its permitted range
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
    if pairs and grid > 0:
        # numeric grid points: single changes (interior values an end-point bisection misses
        # when the model is not monotone) and bases for numeric-numeric pairs
        g_row, g_num = _numeric_grid(space, num0, rows, lo, hi, grid)
        if g_row.size:
            g_num, g_cat = space.project(g_num, cat0[g_row], num0[g_row], cat0[g_row], lo[g_row], hi[g_row],
                                         [m[g_row] for m in masks])
            out_row.append(g_row)
            out_num.append(g_num)
            out_cat.append(g_cat)
            base_row.append(g_row)
            base_num.append(g_num)
            base_cat.append(g_cat)
    r, nm, ct = _numeric_moves(space, scorer, num0, cat0, np.concatenate(base_row), np.concatenate(base_num),
                               np.concatenate(base_cat), lo, hi, masks, steps)
    out_row.append(r)
    out_num.append(nm)
    out_cat.append(ct)
    return np.concatenate(out_row), np.concatenate(out_num), np.concatenate(out_cat)


def _cat_moves(space: Space, base_cat: np.ndarray, b_row: np.ndarray,
               masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base index, group, level) for every permitted level other than the base's own."""
    mv_b, mv_g, mv_lv = [], [], []
    for g, m in enumerate(masks):
        mm = m[b_row].copy()
        mm[np.arange(b_row.size), base_cat[:, g]] = False
        b, lv = np.nonzero(mm)
        mv_b.append(b_row[b])
        mv_g.append(np.full(b.size, g))
        mv_lv.append(lv)
    if not mv_b:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(mv_b), np.concatenate(mv_g), np.concatenate(mv_lv)


def _numeric_grid(space: Space, num0: np.ndarray, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row with one numeric feature moved to each of ``grid`` evenly spaced points of its
    permitted range (the original value excluded)."""
    out_row, out_num = [], []
    t = np.linspace(0.0, 1.0, grid)
    for j in range(len(space.num)):
        a, b = lo[rows, j], hi[rows, j]
        ok = (a <= b) & np.isfinite(a) & np.isfinite(b)
        r = rows[ok]
        if r.size == 0:
            continue
        vals = a[ok, None] + t[None, :] * (b[ok] - a[ok])[:, None]
        rr = np.repeat(r, grid)
        nm = num0[rr].copy()
        nm[:, j] = vals.ravel()
        keep = np.abs(nm[:, j] - num0[rr, j]) > 1e-6 * space.mad[j]
        out_row.append(rr[keep])
        out_num.append(nm[keep])
    if not out_row:
        return np.zeros(0, int), np.zeros((0, len(space.num)))
    return np.concatenate(out_row), np.concatenate(out_num)


def _numeric_moves(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, b_row: np.ndarray,
                   b_num: np.ndarray, b_cat: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   masks: Sequence[np.ndarray], steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On every base: for each numeric feature the base leaves at its original value and each
    end of its permitted range, the smallest move that flips (bisection from the end).

    Every (base, feature, end) bisection runs at once: one model call per bisection step for
    all of them (the bisections are independent, so this only batches the calls)."""
    take, feat, ends = [], [], []
    for j, s in enumerate(space.num):
        for end in (hi, lo):
            e = end[b_row, j]
            movable = ((lo[b_row, j] <= hi[b_row, j]) & np.isfinite(e) & (e != num0[b_row, j])
                       & (np.abs(b_num[:, j] - num0[b_row, j]) <= 1e-6 * s.mad))
            idx = np.flatnonzero(movable)
            take.append(idx)
            feat.append(np.full(idx.size, j))
            ends.append(e[idx])
    idx = np.concatenate(take) if take else np.zeros(0, int)
    if idx.size == 0:
        return np.zeros(0, int), np.zeros((0, len(space.num))), np.zeros((0, len(space.cat)), int)
    j, e = np.concatenate(feat), np.concatenate(ends)
    r = b_row[idx]
    lim = (num0[r], cat0[r], lo[r], hi[r], [m[r] for m in masks])
    k = np.arange(idx.size)
    nm, ct = b_num[idx].copy(), b_cat[idx]
    nm[k, j] = e
    nm, _ = space.project(nm, ct, *lim)
    ok = scorer.accept(nm, ct)
    idx, r, ct, j, start = idx[ok], r[ok], ct[ok], j[ok], nm[ok, j[ok]]
    if idx.size == 0:
        return np.zeros(0, int), np.zeros((0, len(space.num))), np.zeros((0, len(space.cat)), int)
    lim = (num0[r], cat0[r], lo[r], hi[r], [m[r] for m in masks])
    k = np.arange(idx.size)
    a = np.zeros(idx.size)
    b = np.ones(idx.size)
    x0 = num0[r, j]
    base = b_num[idx]
    for _ in range(steps):
        mid = (a + b) / 2
        trial = base.copy()
        trial[k, j] = x0 + mid * (start - x0)
        trial, _ = space.project(trial, ct, *lim)
        good = scorer.accept(trial, ct)
        b = np.where(good, mid, b)
        a = np.where(good, a, mid)
    final = base.copy()
    final[k, j] = x0 + b * (start - x0)
    final, _ = space.project(final, ct, *lim)
    return r, final, ct


def third_change(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, num: np.ndarray,
                 cat: np.ndarray, rows: np.ndarray, *, lo: np.ndarray, hi: np.ndarray,
                 masks: Sequence[np.ndarray], weights: np.ndarray, sparsity_weight: float,
                 steps: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three-change counterfactuals around a found one: for each of ``rows`` (whose current
    counterfactual ``num``/``cat`` changes more than three features), every pair of its changes
    is kept and every single further move (each permitted level, each numeric feature's smallest
    flipping move) is tried. Returns (num, cat, penalised cost) per row, +inf where none flips."""
    n = len(num0)
    best = np.full(n, np.inf)
    best_num, best_cat = num.copy(), cat.copy()
    if rows.size == 0:
        return best_num, best_cat, best
    changed = space.changed(num[rows], cat[rows], num0[rows], cat0[rows])
    b_row, b_num, b_cat = [], [], []
    for k, r in enumerate(rows):
        feats = np.flatnonzero(changed[k])
        for x in range(len(feats)):
            for y in range(x + 1, len(feats)):
                nm, ct = num0[r].copy(), cat0[r].copy()
                for fi in (feats[x], feats[y]):
                    kind, j = space.kind[fi]
                    if kind == "num":
                        nm[j] = num[r, j]
                    else:
                        ct[j] = cat[r, j]
                b_row.append(r)
                b_num.append(nm)
                b_cat.append(ct)
    if not b_row:
        return best_num, best_cat, best
    b_row_a, b_num_a, b_cat_a = np.array(b_row), np.array(b_num), np.array(b_cat)
    mv_b, mv_g, mv_lv = _cat_moves(space, b_cat_a, np.arange(len(b_row_a)), [m[b_row_a] for m in masks])
    c_num = b_num_a[mv_b]
    c_cat = b_cat_a[mv_b].copy()
    c_cat[np.arange(mv_b.size), mv_g] = mv_lv
    c_row = b_row_a[mv_b]
    r2, n2, k2 = _numeric_moves(space, scorer, num0, cat0, b_row_a, b_num_a, b_cat_a, lo, hi, masks, steps)
    cand_row = np.concatenate([c_row, r2])
    cand_num = np.concatenate([c_num, n2])
    cand_cat = np.concatenate([c_cat, k2])
    _keep_cheapest(space, scorer, num0, cat0, weights, sparsity_weight, cand_row, cand_num, cand_cat,
                   best, best_num, best_cat)
    return best_num, best_cat, best


def _keep_cheapest(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, weights: np.ndarray,
                   sparsity_weight: float, cand_row: np.ndarray, cand_num: np.ndarray,
                   cand_cat: np.ndarray, best: np.ndarray, best_num: np.ndarray,
                   best_cat: np.ndarray) -> None:
    """Score candidates with the real model and store, per row, the cheapest valid one (cost plus
    the sparsity price per changed feature) into ``best*`` in place."""
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

__all__ = ["SAFETY", "small_supports", "third_change"]
