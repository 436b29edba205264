"""Model-agnostic batched genetic search (any model with predict_proba).

Every row keeps a population of candidates; all candidates of all rows are scored in one
``predict_proba`` call per generation. A candidate changes a few mutable features to values
drawn from the reference data (clipped into the row's permitted range) or near the original
value; children come from uniform crossover between elite parents, a mutation (one feature
gets a new value) and a *revert* move (one changed feature goes back to the original), which
pushes towards sparse counterfactuals. Fitness is the cost for valid candidates and a large
constant plus the remaining distance to the boundary for invalid ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audit.methods._cf.refine import SAFETY, Scorer
from audit.methods._cf.space import Space

_INVALID = 1e6


def genetic_search(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, *,
                   lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray],
                   weights: np.ndarray, ref_num: np.ndarray, rng: np.random.Generator,
                   population: int = 60, generations: int = 12,
                   max_changes: int = 3, chunk: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (num, cat, found) for every row: the fittest valid candidate, or the original."""
    n = len(num0)
    out_num, out_cat = num0.copy(), cat0.copy()
    found = np.zeros(n, bool)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        a, b, c = _search(space, scorer, num0[sl], cat0[sl], lo[sl], hi[sl], [m[sl] for m in masks],
                          weights[sl], ref_num, rng, population, generations, max_changes)
        out_num[sl], out_cat[sl], found[sl] = a, b, c
    return out_num, out_cat, found


def movable_features(space: Space, lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """(n, n_features) bool: which features each row may change at all."""
    n = len(lo)
    out = np.zeros((n, space.n_features), bool)
    for j, s in enumerate(space.num):
        out[:, s.fi] = lo[:, j] <= hi[:, j]
    for g, s in enumerate(space.cat):
        out[:, s.fi] = masks[g].sum(axis=1) > 1
    return out


def sample_values(space: Space, fi: int, rows: np.ndarray, num0: np.ndarray, cat0: np.ndarray,
                  lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray], ref_num: np.ndarray,
                  rng: np.random.Generator, *, local: float = 0.5, by_share: bool = True) -> np.ndarray:
    """New values of feature ``fi`` for the given rows (within their permitted range / levels).

    Numerics: with probability ``local`` a step of a few MADs from the original value, else a
    reference value; both clipped into the row's range. Categoricals: a permitted level other
    than the original, weighted by its share in the reference rows (``by_share``) or uniform.
    """
    kind, j = space.kind[fi]
    m = rows.size
    if kind == "num":
        s = space.num[j]
        x0 = num0[rows, j]
        step = rng.standard_normal(m) * s.mad * rng.exponential(1.5, m)
        far = ref_num[rng.integers(0, len(ref_num), m), j]
        v = np.where(rng.random(m) < local, x0 + step, far)
        v = np.clip(v, lo[rows, j], hi[rows, j])
        return np.round(v) if s.integer else v
    s = space.cat[j]
    allowed = masks[j][rows].copy()
    allowed[np.arange(m), cat0[rows, j]] = False
    w = allowed * (s.share[None, :] + 1e-9 if by_share else 1.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1), 0)
    u = rng.random((m, 1))
    pick = (np.cumsum(w, axis=1) < u).sum(axis=1)
    pick = np.minimum(pick, len(s.levels) - 1)
    return np.where(total[:, 0] > 0, pick, cat0[rows, j])


def _assign(space: Space, num: np.ndarray, cat: np.ndarray, idx: np.ndarray, fi: int,
            values: np.ndarray) -> None:
    kind, j = space.kind[fi]
    if kind == "num":
        num[idx, j] = values
    else:
        cat[idx, j] = values


def _search(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, lo: np.ndarray,
            hi: np.ndarray, masks: Sequence[np.ndarray], weights: np.ndarray, ref_num: np.ndarray,
            rng: np.random.Generator, P: int, G: int, max_changes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(num0)
    F = space.n_features
    movable = movable_features(space, lo, hi, masks)
    # flat candidate arrays: candidate c belongs to row c // P
    owner = np.repeat(np.arange(n), P)
    num = np.repeat(num0, P, axis=0)
    cat = np.repeat(cat0, P, axis=0)
    k = rng.integers(1, max_changes + 1, n * P)
    keys = np.where(movable[owner], rng.random((n * P, F)), -1.0)
    order = np.argsort(-keys, axis=1)
    for r in range(min(max_changes, F)):
        fis = order[:, r]
        use = (k > r) & (keys[np.arange(n * P), fis] >= 0)
        for fi in np.unique(fis[use]):
            idx = np.flatnonzero(use & (fis == fi))
            vals = sample_values(space, fi, owner[idx], num0, cat0, lo, hi, masks, ref_num, rng)
            _assign(space, num, cat, idx, fi, vals)

    def fitness(nm: np.ndarray, ct: np.ndarray, own: np.ndarray) -> np.ndarray:
        nm, ct = space.project(nm, ct, num0[own], cat0[own], lo[own], hi[own], [m[own] for m in masks])
        marg = scorer.margin(nm, ct)
        cost = space.cost(nm, ct, num0[own], cat0[own], weights[own])
        return np.where(marg >= SAFETY, cost, _INVALID + np.maximum(0, -marg))

    fit = fitness(num, cat, owner).reshape(n, P)
    num = num.reshape(n, P, -1)
    cat = cat.reshape(n, P, -1)
    E = max(2, P // 4)
    for _ in range(G):
        elite = np.argsort(fit, axis=1)[:, :E]                      # (n, E)
        ar = np.arange(n)[:, None]
        e_num, e_cat, e_fit = num[ar, elite], cat[ar, elite], fit[ar, elite]
        C = P - E
        pa = elite[ar, rng.integers(0, E, (n, C))]
        pb = elite[ar, rng.integers(0, E, (n, C))]
        owner_c = np.repeat(np.arange(n), C)
        mix_n = rng.random((n, C, num.shape[2])) < 0.5
        mix_c = rng.random((n, C, cat.shape[2])) < 0.5
        c_num = np.where(mix_n, num[ar, pa], num[ar, pb]).reshape(n * C, -1)
        c_cat = np.where(mix_c, cat[ar, pa], cat[ar, pb]).reshape(n * C, -1)
        move = rng.random(n * C)
        # mutation: one movable feature gets a new value
        mutate = np.flatnonzero(move < 0.5)
        if mutate.size:
            keys = np.where(movable[owner_c[mutate]], rng.random((mutate.size, F)), -1.0)
            fis = np.argmax(keys, axis=1)
            ok = keys[np.arange(mutate.size), fis] >= 0
            for fi in np.unique(fis[ok]):
                idx = mutate[ok & (fis == fi)]
                vals = sample_values(space, fi, owner_c[idx], num0, cat0, lo, hi, masks, ref_num, rng)
                _assign(space, c_num, c_cat, idx, fi, vals)
        # revert: one changed feature goes back to the original value
        revert = np.flatnonzero(move >= 0.75)
        if revert.size:
            ch = space.changed(c_num[revert], c_cat[revert], num0[owner_c[revert]], cat0[owner_c[revert]])
            keys = np.where(ch, rng.random(ch.shape), -1.0)
            fis = np.argmax(keys, axis=1)
            ok = keys[np.arange(revert.size), fis] >= 0
            for fi in np.unique(fis[ok]):
                idx = revert[ok & (fis == fi)]
                kind, j = space.kind[fi]
                if kind == "num":
                    c_num[idx, j] = num0[owner_c[idx], j]
                else:
                    c_cat[idx, j] = cat0[owner_c[idx], j]
        c_fit = fitness(c_num, c_cat, owner_c).reshape(n, C)
        num = np.concatenate([e_num, c_num.reshape(n, C, -1)], axis=1)
        cat = np.concatenate([e_cat, c_cat.reshape(n, C, -1)], axis=1)
        fit = np.concatenate([e_fit, c_fit], axis=1)
    best = np.argmin(fit, axis=1)
    ar = np.arange(n)
    b_num, b_cat = num[ar, best], cat[ar, best]
    b_num, b_cat = space.project(b_num, b_cat, num0, cat0, lo, hi, masks)
    ok = fit[ar, best] < _INVALID
    return np.where(ok[:, None], b_num, num0), np.where(ok[:, None], b_cat, cat0), ok
