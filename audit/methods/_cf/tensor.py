"""Counterfactuals for images and sequences: a diagnostic of model sensitivity, not recourse.

For each searched row, a batched gradient search looks for the smallest change to the model's
input (L1 in the model's input units, every element clipped to the range observed in the
audited data) that either flips a classifier to a target class (by default each row's second
most likely class) or moves a regression forecast past ``prediction + shift``. A sparsity pass
then reverts the smallest changes while the outcome holds (bisection on how many are reverted).
Every result is re-checked by the real model's own prediction; rows without a valid one are
reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.core.adapter import ModelAdapter

SAFETY = 1e-3


@dataclass(frozen=True)
class TensorSearch:
    X: np.ndarray            # (n, D) counterfactual inputs (model units); the original where none
    valid: np.ndarray        # (n,) bool, checked by the real model
    target: np.ndarray       # (n,) target class (classification) or threshold (regression)
    before: np.ndarray       # (n,) score of the target (probability or forecast) before
    after: np.ndarray        # (n,) and after


def scores(model: ModelAdapter, X: np.ndarray, target: np.ndarray, shape: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(margin past the goal, score): margin >= 0 means the goal is reached. ``X`` is flat;
    ``shape`` the model's per-row input shape."""
    X = np.asarray(X, dtype=np.float32).reshape(len(X), *(shape or (-1,)))
    if model.task == "regression":
        y = np.asarray(model.predict(X), dtype=float).reshape(len(X))
        return y - target, y
    p = np.clip(model.predict_proba(X), 1e-12, 1.0)
    rows = np.arange(len(X))
    logp = np.log(p)
    other = logp.copy()
    other[rows, target.astype(int)] = -np.inf
    return logp[rows, target.astype(int)] - other.max(axis=1), p[rows, target.astype(int)]


def search(model: ModelAdapter, X0: np.ndarray, *, target: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           shape: tuple[int, ...] = (), steps: int = 200, learning_rate: float = 0.05, margin: float = 0.5,
           check_every: int = 20, revert_steps: int = 10) -> TensorSearch:
    import torch

    n, D = X0.shape
    x0 = torch.from_numpy(X0.astype(np.float32))
    x = x0.clone().requires_grad_(True)
    lo_t = torch.from_numpy(lo.astype(np.float32))
    hi_t = torch.from_numpy(hi.astype(np.float32))
    tgt = torch.from_numpy(target.astype(np.float32))
    lam = torch.ones(n)
    best = X0.copy()
    best_cost = np.full(n, np.inf)
    m_slack = margin if model.task != "regression" else 0.0
    opt_m = torch.zeros_like(x)
    opt_v = torch.zeros_like(x)
    rows = torch.arange(n)
    for step in range(1, steps + 1):
        out = model.forward(x.reshape(n, *(shape or (-1,))))
        if model.task == "regression":
            s = out.reshape(n) - tgt
        else:
            logp = torch.log(out.clamp(1e-7, 1.0))
            other = logp.clone()
            other[rows, tgt.long()] = -torch.inf
            s = logp[rows, tgt.long()] - other.max(dim=1).values
        loss = (lam * torch.relu(m_slack + 1e-2 - s) + (x - x0).abs().sum(dim=1)).sum()
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():  # Adam
            opt_m.mul_(0.9).add_(g, alpha=0.1)
            opt_v.mul_(0.999).addcmul_(g, g, value=0.001)
            x.sub_(learning_rate * (opt_m / (1 - 0.9 ** step)) / ((opt_v / (1 - 0.999 ** step)).sqrt() + 1e-8))
            x.copy_(torch.maximum(torch.minimum(x, hi_t), lo_t))
        if step % check_every == 0 or step == steps:
            cand = x.detach().numpy().copy()
            marg, _ = scores(model, cand, target, shape)
            ok = marg >= SAFETY
            cost = np.abs(cand - X0).sum(axis=1)
            better = ok & (cost < best_cost)
            best[better], best_cost[better] = cand[better], cost[better]
            lam.mul_(torch.from_numpy(np.where(ok, 1.0, 2.0).astype(np.float32))).clamp_(max=1e4)
    found = np.isfinite(best_cost)
    best = _revert_smallest(model, X0, best, found, target, revert_steps, shape)
    marg, after = scores(model, best, target, shape)
    valid = found & (marg >= 0)
    _, before = scores(model, X0, target, shape)
    return TensorSearch(np.where(valid[:, None], best, X0), valid, target, before, after)


def _revert_smallest(model: ModelAdapter, X0: np.ndarray, X: np.ndarray, found: np.ndarray,
                     target: np.ndarray, steps: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Per row, revert the largest number k of its smallest changes that keeps the goal
    (bisection on k, all rows at once)."""
    d = np.abs(X - X0)
    order = np.argsort(d, axis=1)                      # smallest change first
    n_changed = (d > 0).sum(axis=1)
    first_changed = d.shape[1] - n_changed             # index in `order` of the first changed
    a = np.zeros(len(X), int)                          # k known to keep the goal
    b = n_changed.copy() + 1                           # k known to lose it (all reverted = original)
    rank = np.empty_like(order)
    rank[np.arange(len(X))[:, None], order] = np.arange(d.shape[1])[None, :]

    def reverted(k: np.ndarray) -> np.ndarray:
        keep_orig = (rank < (first_changed + k)[:, None])
        return np.where(keep_orig, X0, X)

    for _ in range(int(np.ceil(np.log2(d.shape[1] + 2))) if steps else 0):
        mid = (a + b) // 2
        trial = reverted(mid)
        ok = scores(model, trial, target, shape)[0] >= SAFETY
        a = np.where(ok & found, mid, a)
        b = np.where(ok & found, b, mid)
    return np.where(found[:, None], reverted(a), X)
