"""Batched gradient search for differentiable models.

All rows are optimised at once. Numeric features move in the model's encoded units; each
mutable categorical is relaxed to a softmax over its permitted levels (disallowed levels get no
mass), so the model sees a mixture of level encodings during the search. The loss per row is

    lam_i * relu(margin - s_i(x)) + sum_j w_ij |raw_j(x) - raw_j(x0)| / MAD_j
                                  + sum_g w_ig * categorical_cost * (1 - q_g[original level])

where ``s_i`` is the logit distance past the decision threshold towards the target class. Every
``check_every`` steps the current point is *hardened* (argmax level, integers rounded, ranges
clipped) and scored by the real model; the cheapest valid hardened point per row is kept, and
``lam`` doubles for rows that are not yet valid. The relaxed point is never returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.methods._cf.refine import Scorer
from audit.methods._cf.space import Space


def gradient_search(space: Space, model: ModelAdapter, scorer: Scorer, num0: np.ndarray,
                    cat0: np.ndarray, *, lo: np.ndarray, hi: np.ndarray,
                    masks: Sequence[np.ndarray], weights: np.ndarray, steps: int = 300,
                    learning_rate: float = 0.05, margin: float = 0.5, check_every: int = 20,
                    batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (num, cat, found): the cheapest valid hardened point per row (the original row
    where none was found)."""
    import torch

    n = len(num0)
    best_num, best_cat = num0.copy(), cat0.copy()
    found = np.zeros(n, bool)
    # Measured here: one intra-op thread beats two for these small batched models (and avoids
    # oversubscription when other processes share the cores); restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            bn, bc, bf = _search_batch(space, model, scorer, num0[sl], cat0[sl], lo[sl], hi[sl],
                                       [m[sl] for m in masks], weights[sl], steps, learning_rate,
                                       margin, check_every)
            best_num[sl], best_cat[sl], found[sl] = bn, bc, bf
    finally:
        torch.set_num_threads(threads)
    return best_num, best_cat, found


def _search_batch(space: Space, model: ModelAdapter, scorer: Scorer, num0: np.ndarray,
                  cat0: np.ndarray, lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray],
                  weights: np.ndarray, steps: int, lr: float, margin: float,
                  check_every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    n = len(num0)
    dtype = torch.float32
    X0 = torch.from_numpy(space.encode(num0, cat0))
    target = scorer.target
    task = model.task
    thr = float(np.clip(model.threshold, 1e-6, 1 - 1e-6))
    thr_logit = float(np.log(thr) - np.log1p(-thr))

    # numeric variables in encoded units, boxed per row ({x0} ∪ [lo, hi] relaxed to its hull)
    num_cols = [s.col for s in space.num]
    movable = lo <= hi
    u0 = np.column_stack([s.to_encoded(num0[:, j]) for j, s in enumerate(space.num)]) if space.num else np.zeros((n, 0))
    lo_e = np.column_stack([s.to_encoded(np.where(movable[:, j], lo[:, j], num0[:, j]))
                            for j, s in enumerate(space.num)]) if space.num else np.zeros((n, 0))
    hi_e = np.column_stack([s.to_encoded(np.where(movable[:, j], hi[:, j], num0[:, j]))
                            for j, s in enumerate(space.num)]) if space.num else np.zeros((n, 0))
    lo_t = torch.from_numpy(np.minimum(lo_e, u0)).to(dtype)
    hi_t = torch.from_numpy(np.maximum(hi_e, u0)).to(dtype)
    u0_t = torch.from_numpy(u0).to(dtype)
    u = u0_t.clone().requires_grad_(True)
    scale = torch.tensor([s.scale for s in space.num], dtype=dtype)
    center = torch.tensor([s.center for s in space.num], dtype=dtype)
    is_log = torch.tensor([s.log1p for s in space.num], dtype=torch.bool)
    mad = torch.tensor(space.mad if space.num else np.zeros(0), dtype=dtype)
    raw0 = torch.from_numpy(num0).to(dtype)
    w_num = torch.from_numpy(weights[:, [s.fi for s in space.num]]).to(dtype)

    # categorical variables: logits over permitted levels of groups some row may change
    live = [g for g, m in enumerate(masks) if (m.sum(axis=1) > 1).any()]
    logits, Es, neg, orig_idx, w_cat = [], [], [], [], []
    for g in live:
        m = masks[g]
        init = np.where(m, 0.0, -1e4)
        init[np.arange(n), cat0[:, g]] = 2.0
        logits.append(torch.tensor(init, dtype=dtype, requires_grad=True))
        neg.append(torch.from_numpy(np.where(m, 0.0, -1e4)).to(dtype))
        Es.append(torch.from_numpy(space.cat[g].E).to(dtype))
        orig_idx.append(torch.from_numpy(cat0[:, g]))
        w_cat.append(torch.from_numpy(weights[:, space.cat[g].fi]).to(dtype))

    opt = _Adam([u], lr, [*logits], 4 * lr)
    lam = torch.ones(n, dtype=dtype)
    best_cost = np.full(n, np.inf)
    best_num, best_cat = num0.copy(), cat0.copy()
    rows = torch.arange(n)

    def raw_of(z: torch.Tensor) -> torch.Tensor:
        t = z * scale + center
        return torch.where(is_log, torch.expm1(t.clamp(max=30.0)), t)

    def harden() -> None:
        with torch.no_grad():
            num = raw_of(u).double().numpy()
            cat = cat0.copy()
            for k, g in enumerate(live):
                cat[:, g] = torch.argmax(logits[k] + neg[k], dim=1).numpy()
        num, cat = space.project(num, cat, num0, cat0, lo, hi, masks)
        margin_real = scorer.margin(num, cat)
        ok = margin_real >= 1e-3
        robust = margin_real >= margin / 2
        cost = space.cost(num, cat, num0, cat0, weights)
        # Prefer points with slack past the boundary: the sparsity pass can then revert the
        # small helper changes, and the shrink pass moves the rest back to the boundary.
        key = np.where(robust, cost, 1e6 + cost)
        better = ok & (key < best_cost)
        best_cost[better] = key[better]
        best_num[better], best_cat[better] = num[better], cat[better]
        lam.mul_(torch.from_numpy(np.where(ok, 1.0, 2.0)).to(dtype)).clamp_(max=1e4)

    for step in range(1, steps + 1):
        parts = []
        X = X0.clone()
        if num_cols:
            X[:, num_cols] = u
        for k, g in enumerate(live):
            q = torch.softmax(logits[k] + neg[k], dim=1)
            X[:, space.cat[g].cols] = q @ Es[k]
            parts.append(w_cat[k] * space.categorical_cost * (1 - q[rows, orig_idx[k]]))
        p = model.forward(X).clamp(1e-7, 1 - 1e-7)
        if task == "binary":
            z = torch.log(p[:, 1]) - torch.log(p[:, 0]) - thr_logit
            s = z if target == 1 else -z
        else:
            logp = torch.log(p)
            other = logp.clone()
            other[:, target] = -torch.inf
            s = logp[:, target] - other.max(dim=1).values
        hinge = torch.relu(margin - s)
        dist = (w_num * (raw_of(u) - raw0).abs() / mad).sum(dim=1) if num_cols else torch.zeros(n)
        for part in parts:
            dist = dist + part
        loss = (lam * hinge + dist).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            if num_cols:
                u.copy_(torch.maximum(torch.minimum(u, hi_t), lo_t))
        if step % check_every == 0 or step == steps:
            harden()
    return best_num, best_cat, np.isfinite(best_cost)


class _Adam:
    """Plain Adam (Kingma & Ba) over two parameter groups. torch.optim.Adam would do, but its
    first step imports torch._dynamo (about 3 s here), longer than the whole search."""

    def __init__(self, first: list, lr1: float, second: list, lr2: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        import torch

        self.params = [(p, lr1) for p in first] + [(p, lr2) for p in second]
        self.m = [torch.zeros_like(p) for p, _ in self.params]
        self.v = [torch.zeros_like(p) for p, _ in self.params]
        self.b1, self.b2, self.eps, self.t = betas[0], betas[1], eps, 0

    def zero_grad(self) -> None:
        for p, _ in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        with torch.no_grad():
            for (p, lr), m, v in zip(self.params, self.m, self.v, strict=True):
                if p.grad is None:
                    continue
                g = p.grad
                m.mul_(self.b1).add_(g, alpha=1 - self.b1)
                v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
                p.sub_(lr * (m / c1) / ((v / c2).sqrt() + self.eps))
