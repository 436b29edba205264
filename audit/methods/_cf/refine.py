"""Model-agnostic pieces shared by both searches: scoring against the real model, the sparsity
pass (revert every change not needed for the flip) and the shrink pass (move each remaining
numeric change back towards the original as far as the flip allows)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.methods._cf.space import Space

# Searches accept a candidate only this far past the decision boundary (logit units), so that a
# counterfactual stays valid under float32 rounding when it is scored again.
SAFETY = 1e-3


def margin_from_proba(p: np.ndarray, target: int, task: str, threshold: float) -> np.ndarray:
    """How far past the decision boundary towards ``target`` each row is (>= 0: predicted
    ``target``), in logit units."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    if task == "binary":
        thr = float(np.clip(threshold, 1e-12, 1 - 1e-12))
        z = np.log(p[:, 1]) - np.log1p(-p[:, 1]) - (np.log(thr) - np.log1p(-thr))
        # the model predicts 1 when p1 >= threshold: z >= 0 is class 1, z < 0 class 0
        return z if target == 1 else -z - 1e-12
    logp = np.log(p)
    other = logp.copy()
    other[:, target] = -np.inf
    return logp[:, target] - other.max(axis=1)


class Scorer:
    """Scores raw candidates with the real model and counts the rows it scored."""

    def __init__(self, model: ModelAdapter, space: Space, target: int) -> None:
        self.model, self.space, self.target = model, space, int(target)
        self.task = model.task
        self.n_scored = 0

    def proba(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        X = self.space.encode(num, cat)
        self.n_scored += len(X)
        return self.model.predict_proba(X)

    def margin(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        if len(num) == 0:
            return np.zeros(0)
        return margin_from_proba(self.proba(num, cat), self.target, self.task, self.model.threshold)

    def accept(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        return self.margin(num, cat) >= SAFETY


def _revert_one(space: Space, num0: np.ndarray, cat0: np.ndarray, num: np.ndarray, cat: np.ndarray,
                rows: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate k is row ``rows[k]`` with feature ``feats[k]`` alone set back to its original."""
    cn, cc = num[rows].copy(), cat[rows].copy()
    for fi in np.unique(feats):
        sel = feats == fi
        kind, j = space.kind[fi]
        if kind == "num":
            cn[sel, j] = num0[rows[sel], j]
        else:
            cc[sel, j] = cat0[rows[sel], j]
    return cn, cc


def sparsify(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray,
             num: np.ndarray, cat: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedily revert changed features while the flip holds.

    Each round scores every single-feature revert of every row in one batch and applies, per
    row, the valid revert that leaves the most margin past the boundary (the change the flip
    needs least); rows stop when no revert keeps the flip.
    """
    num, cat = num.copy(), cat.copy()
    active = found.copy()
    for _ in range(space.n_features):
        if not active.any():
            break
        changed = space.changed(num, cat, num0, cat0) & active[:, None]
        rows, feats = np.nonzero(changed)
        if rows.size == 0:
            break
        cn, cc = _revert_one(space, num0, cat0, num, cat, rows, feats)
        marg = scorer.margin(cn, cc)
        ok = marg >= SAFETY
        saving = np.where(ok, marg, -np.inf)
        best = np.full(len(num), -np.inf)
        np.maximum.at(best, rows, saving)
        pick = np.flatnonzero((saving == best[rows]) & ok)
        # one revert per row per round (the first of ties)
        _, first = np.unique(rows[pick], return_index=True)
        pick = pick[first]
        if pick.size == 0:
            break
        num[rows[pick]] = cn[pick]
        cat[rows[pick]] = cc[pick]
        active = np.zeros(len(num), bool)
        active[rows[pick]] = True
    return num, cat


def shrink(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, num: np.ndarray,
           cat: np.ndarray, found: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           masks: Sequence[np.ndarray], *, steps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Bisect each changed numeric feature back towards the original value, one feature at a
    time (largest change first), keeping the flip: the result lies on the decision boundary
    up to 2**-steps of the change (and integer rounding)."""
    num = num.copy()
    if not space.num:
        return num, cat
    order = np.argsort(-(np.abs(num - num0) / space.mad).sum(axis=0))
    for j in order:
        rows = np.flatnonzero(found & (np.abs(num[:, j] - num0[:, j]) > 1e-6 * space.mad[j]))
        if rows.size == 0:
            continue
        a = np.zeros(rows.size)          # fraction known invalid (0 = original value)
        b = np.ones(rows.size)           # fraction known valid
        start = num[rows, j].copy()
        for _ in range(steps):
            mid = (a + b) / 2
            trial = num[rows].copy()
            trial[:, j] = num0[rows, j] + mid * (start - num0[rows, j])
            trial, _ = space.project(trial, cat[rows], num0[rows], cat0[rows], lo[rows], hi[rows],
                                     [m[rows] for m in masks])
            ok = scorer.accept(trial, cat[rows])
            b = np.where(ok, mid, b)
            a = np.where(ok, a, mid)
        final = num[rows].copy()
        final[:, j] = num0[rows, j] + b * (start - num0[rows, j])
        final, _ = space.project(final, cat[rows], num0[rows], cat0[rows], lo[rows], hi[rows],
                                 [m[rows] for m in masks])
        ok = scorer.accept(final, cat[rows])  # rounding can undo a bisection step: keep if valid
        num[rows[ok]] = final[ok]
    return num, cat


def revert_margins(space: Space, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray,
                   num: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """(n, n_features): the margin left when each changed feature alone is reverted (+inf for
    unchanged features). A low value marks a change the flip depends on."""
    out = np.full((len(num), space.n_features), np.inf)
    changed = space.changed(num, cat, num0, cat0)
    rows, feats = np.nonzero(changed)
    if rows.size == 0:
        return out
    cn, cc = _revert_one(space, num0, cat0, num, cat, rows, feats)
    out[rows, feats] = scorer.margin(cn, cc)
    return out


def restrict(space: Space, keep: np.ndarray, cat0: np.ndarray, lo: np.ndarray, hi: np.ndarray,
             masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Limits that freeze every feature outside ``keep`` (n, n_features bool)."""
    lo, hi = lo.copy(), hi.copy()
    out = []
    for j, s in enumerate(space.num):
        frozen = ~keep[:, s.fi]
        lo[frozen, j], hi[frozen, j] = np.inf, -np.inf
    for g, s in enumerate(space.cat):
        frozen = np.flatnonzero(~keep[:, s.fi])
        m = masks[g].copy()
        m[frozen] = False
        m[frozen, cat0[frozen, g]] = True
        out.append(m)
    return lo, hi, out
