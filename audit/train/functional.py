"""Batched retraining of arbitrary torch modules from the same initial weights.

The response-permutation test retrains one architecture ``B + 1`` times from the same θ₀ on
different targets (slot 0: the real ones) with the identical schedule. This module does that as
one tensor program for any ``nn.Module``:

- every parameter is stacked along a new leading axis ``[B, ...]``; first choice, the module's
  torch.fx graph is rewritten for stacked parameters (:mod:`audit.train.traced`, ``mode ==
  "graph"``: a convolution becomes one grouped convolution, a Linear one batched matmul, an
  LSTM a batched step loop); when it cannot be traced, the module is evaluated with
  ``torch.func.functional_call`` under ``torch.func.vmap`` (``mode == "vmap"``);
- ``aten::lstm`` has no vmap batching rule, so every ``nn.LSTM`` in a copy of the module is swapped
  for :class:`UnrolledLSTM`, the same equations written out step by step with matmuls and
  elementwise gates (which vmap batches), keeping the parameter names;
- when vmap still fails (an op without a batching rule), a loop over the networks inside one
  autograd graph is the fallback (``mode == "loop"``): still one optimizer over stacked tensors,
  correct, just not faster.

One optimizer (Adam/AdamW/SGD, all elementwise) updates the stacked tensors, and the loss is the
*sum* of per-network mean losses, so every network gets exactly the update it would get alone
(no cross-network reductions: no gradient clipping, no shared statistics). :func:`train_sequential`
is the plain loop (one module, one optimizer per network) used to check that.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
>>> X = torch.randn(20, 3); Y = torch.randn(5, 20)
>>> from audit.train.recipe import Recipe
>>> rec = Recipe.from_mapping({"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 8,
...                            "loss": "mse"}, source="doc")
>>> fit = train_functional(net, dict(net.state_dict()), X, Y, rec)
>>> fit.params["0.weight"].shape, fit.mode
(torch.Size([5, 4, 3]), 'graph')
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.errors import InvalidConfigError
from audit.train.recipe import Recipe

# --------------------------------------------------------------------------------------------
# A vmap-able LSTM
# --------------------------------------------------------------------------------------------


def _unrolled_lstm_class() -> type:
    import torch
    from torch import nn

    class UnrolledLSTM(nn.Module):
        """``nn.LSTM``'s equations written out (gates [i, f, g, o]; c = σ(f)c + σ(i)tanh(g);
        h = σ(o)tanh(c)) with the same parameter names, so ``vmap`` can batch it.
        Unidirectional, no projection; inter-layer dropout is not applied."""

        def __init__(self, lstm: Any) -> None:
            super().__init__()
            self.num_layers, self.hidden_size = lstm.num_layers, lstm.hidden_size
            self.batch_first, self.bias = lstm.batch_first, lstm.bias
            for name, p in lstm.named_parameters(recurse=False):
                self.register_parameter(name, p)

        def forward(self, x: Any, hx: Any = None) -> Any:
            if self.batch_first:
                x = x.transpose(0, 1)                                   # (T, N, F)
            T, N = x.shape[0], x.shape[1]
            hs, cs = [], []
            for layer in range(self.num_layers):
                W_ih = getattr(self, f"weight_ih_l{layer}")
                W_hh = getattr(self, f"weight_hh_l{layer}")
                pre = x @ W_ih.T
                if self.bias:
                    pre = pre + getattr(self, f"bias_ih_l{layer}") + getattr(self, f"bias_hh_l{layer}")
                if hx is None:
                    h = x.new_zeros(N, self.hidden_size)
                    c = x.new_zeros(N, self.hidden_size)
                else:
                    h, c = hx[0][layer], hx[1][layer]
                outs = []
                for t in range(T):
                    gates = pre[t] + h @ W_hh.T
                    i, f, g, o = gates.chunk(4, dim=-1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    outs.append(h)
                x = torch.stack(outs)
                hs.append(h)
                cs.append(c)
            out = x.transpose(0, 1) if self.batch_first else x
            return out, (torch.stack(hs), torch.stack(cs))

    return UnrolledLSTM


def vmappable_copy(module: Any) -> tuple[Any, list[str]]:
    """A deep copy of ``module`` with every unidirectional ``nn.LSTM`` swapped for the written-out
    recurrence; returns the copy and the swapped submodules' names."""
    from torch import nn

    Unrolled = _unrolled_lstm_class()
    mod = copy.deepcopy(module)
    swapped = []
    for name, sub in list(mod.named_modules()):
        for cname, child in list(sub.named_children()):
            if isinstance(child, nn.LSTM) and not child.bidirectional and not getattr(child, "proj_size", 0):
                setattr(sub, cname, Unrolled(child))
                swapped.append(f"{name}.{cname}".lstrip("."))
    return mod, swapped


# --------------------------------------------------------------------------------------------
# Batched forward
# --------------------------------------------------------------------------------------------


@dataclass
class BatchedModule:
    """``forward(params, x)`` for stacked parameters ``{name: [B, ...]}``: ``x`` shared
    ``(N, ...)`` or per network ``(B, N, ...)`` -> ``(B, N, ...)``."""

    module: Any
    buffers: dict[str, Any]
    mode: str                    # "graph" | "vmap" | "loop"
    swapped: list[str]
    traced: Any = None           # the TracedBatched program (mode "graph")

    def __call__(self, params: Mapping[str, Any], x: Any, *, per_network: bool = False) -> Any:
        import torch
        from torch.func import functional_call, vmap

        def one(p: Mapping[str, Any], xb: Any) -> Any:
            return functional_call(self.module, {**p, **self.buffers}, (xb,))

        if self.mode == "graph":
            return self.traced(dict(params), x, per_network=per_network)
        if self.mode == "vmap":
            return vmap(one, in_dims=(0, 0 if per_network else None), randomness="different")(dict(params), x)
        B = next(iter(params.values())).shape[0]
        return torch.stack([one({k: v[b] for k, v in params.items()}, x[b] if per_network else x)
                            for b in range(B)])


def batched_module(module: Any, theta0: Mapping[str, Any], example: Any, *, mode: str = "auto") -> BatchedModule:
    """Wrap ``module`` for stacked parameters: the traced program of :mod:`audit.train.traced`
    (``"graph"``), else ``vmap``, else a loop over the networks, each probed on ``example`` (a small
    input batch) with two networks of different weights against the module itself, outputs and
    parameter gradients; ``mode`` forces one of them (``"auto"``: the first that passes)."""
    import torch

    from audit.train.traced import TracedBatched, Unsupported

    names = [k for k, _ in module.named_parameters()]
    buffers = {k: v for k, v in theta0.items() if k not in names}
    if mode == "loop":
        return BatchedModule(module, buffers, "loop", [])
    candidates = []
    if mode in ("auto", "graph"):
        try:
            candidates.append(BatchedModule(module, buffers, "graph", [], TracedBatched(module, buffers)))
        except Unsupported:
            pass
    if mode in ("auto", "vmap"):
        mod, swapped = vmappable_copy(module)
        candidates.append(BatchedModule(mod, buffers, "vmap", swapped))
    gen = torch.Generator().manual_seed(0)
    other = {k: theta0[k] + 0.1 * torch.randn(theta0[k].shape, generator=gen) for k in names}
    refs = []
    for state in ({k: theta0[k] for k in names}, other):
        p = {k: v.detach().clone().requires_grad_(True) for k, v in state.items()}
        xi = example.detach().clone().requires_grad_(True)
        out = module_call(module, {**theta0, **p}, xi)
        (out * out).sum().backward()
        refs.append((out.detach(), {k: v.grad for k, v in p.items()}, xi.grad))

    def close(a: Any, b: Any) -> bool:
        return a is not None and b is not None and torch.allclose(a, b, rtol=1e-3, atol=1e-5)

    def passes(bm: BatchedModule) -> bool:
        # shared inputs (training) and per-network inputs with input gradients (Integrated Gradients)
        for per_network in (False, True):
            probe = {k: torch.stack([theta0[k], other[k]]).requires_grad_(True) for k in names}
            xi = example.detach().clone().expand(2, *example.shape).clone().requires_grad_(True) \
                if per_network else example
            out = bm(probe, xi, per_network=per_network)
            (out * out).sum().backward()
            for b in range(2):
                if not (close(out[b], refs[b][0]) and all(close(probe[k].grad[b], refs[b][1][k]) for k in names)):
                    return False
                if per_network and refs[b][2] is not None and not close(xi.grad[b], refs[b][2]):
                    return False
        return True

    for bm in candidates:
        try:
            if passes(bm):
                return bm
        except Exception:  # noqa: BLE001 - whatever a user's module raises, the next candidate is tried
            pass
    return BatchedModule(module, buffers, "loop", [])


def module_call(module: Any, state: Mapping[str, Any], x: Any) -> Any:
    from torch.func import functional_call

    return functional_call(module, dict(state), (x,))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _loss(out: Any, y: Any, recipe: Recipe, scale: Any) -> Any:
    """Per-network mean loss: ``out`` (B, n, k), ``y`` (B, n) -> (B,)."""
    import torch.nn.functional as F

    if recipe.loss == "ce":
        B, n, k = out.shape
        return F.cross_entropy(out.reshape(B * n, k), y.reshape(-1), reduction="none").reshape(B, n).mean(1)
    z = out.reshape(out.shape[0], out.shape[1])
    if recipe.loss == "bce":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(1)
    r = z - y
    if scale is not None:
        r = r / scale
    return (r * r).mean(1)


def _loss_scale(recipe: Recipe, theta0: Mapping[str, Any]) -> Any:
    if recipe.loss_scale is None or recipe.loss != "mse":
        return None
    if isinstance(recipe.loss_scale, str):
        if recipe.loss_scale not in theta0:
            raise InvalidConfigError(
                f"The 'loss_scale' of the training recipe names the buffer {recipe.loss_scale!r}, "
                f"which the model does not have. Buffers and parameters: {', '.join(sorted(theta0))}.")
        return theta0[recipe.loss_scale]
    return float(recipe.loss_scale)


def _optimizer(params: Mapping[str, Any], recipe: Recipe, *, fused: bool = False) -> Any:
    """The recipe's ``torch.optim`` optimizer over named parameters; with ``decay_biases``
    false, biases (``*.bias``, an LSTM's ``bias_ih_l0``...) are in a group without weight decay.
    ``fused``: Adam/AdamW's fused kernel (one pass per parameter instead of ~10 operations;
    the same update to float round-off)."""
    import torch

    groups: Any = list(params.values())
    if recipe.weight_decay and not recipe.decay_biases:
        bias = [n for n in params if n.rsplit(".", 1)[-1].startswith("bias")]
        groups = [{"params": [p for n, p in params.items() if n not in bias]},
                  {"params": [params[n] for n in bias], "weight_decay": 0.0}]
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps,
                                weight_decay=recipe.weight_decay, fused=fused or None)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps,
                                 weight_decay=recipe.weight_decay, fused=fused or None)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


@dataclass
class FunctionalFit:
    """Trained stacked parameters ``{name: [B, ...]}``; ``diverged[b]`` when network ``b``'s
    loss or weights became non-finite; ``loss[b]`` its mean loss at the last step."""

    params: dict[str, Any]
    buffers: dict[str, Any]
    loss: np.ndarray
    diverged: np.ndarray
    mode: str
    swapped: list[str]
    seconds: float
    forward: BatchedModule


def train_functional(module: Any, theta0: Mapping[str, Any], X: Any, Y: Any, recipe: Recipe, *,
                     mode: str = "auto", chunk: int | None = None, n_workers: int | None = None,
                     device: str = "cpu",
                     progress: Callable[[int, int], None] | None = None) -> FunctionalFit:
    """Train ``B = len(Y)`` copies of ``module`` from ``theta0`` at once, network ``b`` on
    targets ``Y[b]`` (rows of ``X`` shared), with ``recipe``'s schedule.

    The networks train in blocks (:func:`audit.execution.map` chunks: at most ``_BLOCKS`` of at
    least ``_MIN_NETWORKS``, and at most ``chunk``, a memory bound); locally ``n_workers``
    threads (default: one per core) share the blocks of a traced program, each running torch on
    one thread (as in :mod:`audit.train.batched`), on Ray they are tasks. The blocks do not
    depend on the workers, so neither do the results. ``progress(done, total)`` counts blocks.
    With ``device`` a CUDA device each block trains there (one block at a time in this process;
    on Ray each task asks for one GPU) and its weights come back to the CPU.
    """
    import torch

    from audit import execution

    t0 = time.perf_counter()
    B = int(Y.shape[0])
    module.train()
    # built (traced, probed) once, before any worker starts: fx tracing patches torch globally
    fwd = batched_module(module, theta0, X[: min(4, len(X))], mode=mode)
    names = [k for k, _ in module.named_parameters()]
    # Blocks of networks whose size depends on B (and the memory bound ``chunk``) alone, never on
    # the workers: every network trains in the same company on every backend.
    size = min(chunk or B, max(_MIN_NETWORKS, -(-B // _BLOCKS)))
    part = _Part(module, theta0, X, Y, recipe, names, fwd, device)
    cuda = device != "cpu"
    with _keep_freed_memory():
        # functional_call (vmap, loop) swaps the module's tensors: in this process one block at a
        # time; so does one GPU
        parts = execution.map(part, execution.split_by(B, size), prefer="threads", gpus=1 if cuda else 0,
                              n_jobs=n_workers if fwd.mode == "graph" and not cuda else 1, progress=progress)
    module.eval()
    out = {k: torch.cat([p[0][k] for p in parts]) for k in names}
    last = torch.cat([p[1] for p in parts])
    bad = ~torch.isfinite(last)
    for v in out.values():
        bad |= ~torch.isfinite(v.reshape(B, -1)).all(1)
    return FunctionalFit(out, fwd.buffers, last.numpy().astype(float), bad.numpy(), fwd.mode, fwd.swapped,
                         time.perf_counter() - t0, fwd)


# Networks are trained in at most _BLOCKS blocks of at least _MIN_NETWORKS (a block's step is
# mostly per-operation overhead below a few networks; from 8 on, batched does fewer dispatched
# operations than sequential, tests/test_examples_cnn_lstm.py): the blocks are execution.map's chunks.
_BLOCKS = 8
_MIN_NETWORKS = 8


class _Part:
    """One block of networks (a ``range`` of ``Y``'s rows) trained by :func:`_train_part`; a chunk
    for :func:`audit.execution.map`. A Ray worker rebuilds the batched module (a traced program
    does not pickle) in the mode this process chose; on a CUDA ``device`` it rebuilds it there
    (once per process) from copies of the module, θ₀ and the data on that device."""

    def __init__(self, module: Any, theta0: Mapping[str, Any], X: Any, Y: Any, recipe: Recipe,
                 names: list[str], fwd: BatchedModule, device: str = "cpu") -> None:
        self.module, self.theta0, self.X, self.Y, self.recipe, self.names = module, theta0, X, Y, recipe, names
        self.mode, self.device = fwd.mode, device
        self._fwd = fwd if device == "cpu" else None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fwd": None}

    def __call__(self, block: range) -> tuple[dict[str, Any], Any]:
        import torch

        if self._fwd is None:
            if self.device != "cpu":  # once per process: the module, θ₀ and the data to the GPU
                self.module = copy.deepcopy(self.module).to(self.device)
                self.theta0 = {k: v.to(self.device) for k, v in self.theta0.items()}
                self.X = self.X.to(self.device)
            self._fwd = batched_module(self.module, self.theta0, self.X[: min(4, len(self.X))], mode=self.mode)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            params, last = _train_part(self._fwd, self.names, self.theta0, self.X,
                                       self.Y[block.start:block.stop].to(self.device), self.recipe, None)
        finally:
            torch.set_num_threads(prev)
        if self.device == "cpu":
            return params, last
        return {k: v.cpu() for k, v in params.items()}, last.cpu()


@contextlib.contextmanager
def _keep_freed_memory() -> Any:
    """While training, let glibc keep freed memory instead of returning it to the system.

    Every step allocates the same large temporaries (26 MB feature maps for the digits CNN at
    B = 100); when glibc trims them at ``free`` they are page-faulted in again on the next step,
    which cost ~20 % of the CNN's retraining time here. Afterwards the memory is released
    (``malloc_trim``) and the trim threshold set back to glibc's default. Elsewhere a no-op.
    """
    libc = None
    try:
        import ctypes
        import ctypes.util
        import platform

        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt(-1, 1 << 30)           # M_TRIM_THRESHOLD
            libc.mallopt(-3, 32 << 20)          # M_MMAP_THRESHOLD (glibc's maximum)
            libc.mallopt(-2, 256 << 20)         # M_TOP_PAD: grow the heap in large steps
    except (OSError, AttributeError):
        libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(-1, 128 << 10)
            libc.mallopt(-2, 128 << 10)
            libc.malloc_trim(0)


def _train_part(fwd: BatchedModule, names: list[str], theta0: Mapping[str, Any], X: Any, Y: Any,
                recipe: Recipe, progress: Callable[[int, int], None] | None) -> tuple[dict[str, Any], Any]:
    """Train ``len(Y)`` networks with one optimizer over their stacked parameters."""
    import torch

    B = int(Y.shape[0])
    params = {k: theta0[k].detach().unsqueeze(0).repeat(B, *[1] * theta0[k].ndim).clone().requires_grad_(True)
              for k in names}
    opt = _optimizer(params, recipe, fused=True)
    scale = _loss_scale(recipe, theta0)
    steps = recipe.batches(len(X))
    last = torch.zeros(B)
    for s, idx in enumerate(steps):
        xb, yb = (X, Y) if idx is None else (X[idx], Y[:, idx])
        opt.zero_grad(set_to_none=True)
        per = _loss(fwd(params, xb), yb, recipe, scale)
        # sum of per-network means: each network's gradient is its own; a non-finite network
        # must not poison the others, so its loss is masked out of the sum (reported as diverged)
        finite = torch.isfinite(per)
        per_sum = torch.where(finite, per, torch.zeros_like(per)).sum()
        per_sum.backward()
        for p in params.values():
            if p.grad is not None:
                p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        opt.step()
        last = torch.where(finite, per.detach(), torch.full_like(per.detach(), float("nan")))
        if progress is not None and (s % 20 == 0 or s == len(steps) - 1):
            progress(s + 1, len(steps))
    return {k: v.detach() for k, v in params.items()}, last


def train_sequential(module: Any, theta0: Mapping[str, Any], X: Any, Y: Any, recipe: Recipe,
                     networks: Any = None) -> list[dict[str, Any]]:
    """The plain loop: for each network, a fresh copy of ``module`` loaded with ``theta0`` and
    its own optimizer, trained on ``Y[b]`` with the same schedule (the reference for the
    batched trainer)."""
    import torch

    scale = _loss_scale(recipe, theta0)
    steps = recipe.batches(len(X))
    out = []
    for b in (range(len(Y)) if networks is None else networks):
        net = copy.deepcopy(module)
        net.load_state_dict(dict(theta0))
        net.train()
        opt = _optimizer(dict(net.named_parameters()), recipe)
        for idx in steps:
            xb, yb = (X, Y[b]) if idx is None else (X[idx], Y[b, idx])
            opt.zero_grad(set_to_none=True)
            _loss(net(xb)[None], yb[None], recipe, scale).sum().backward()
            opt.step()
        out.append({k: v.detach().clone() for k, v in net.named_parameters()})
    return out


def explained_output(out: Any, link: str, target: Any = None) -> Any:
    """The explained scalar per network and row from raw outputs ``(B, n, k)``: for
    ``link="softmax"``/``"sigmoid"`` the probability of ``target`` (``(B, n)`` class indices;
    default each network's own predicted class), for ``"identity"`` the first output."""
    import torch

    if link == "identity":
        return out.reshape(out.shape[0], out.shape[1], -1)[..., 0]
    if link == "sigmoid" and out.shape[-1] == 1:
        p1 = torch.sigmoid(out[..., 0])
        if target is None:
            target = (p1 > 0.5).long()
        return torch.where(target == 1, p1, 1 - p1)
    prob = torch.softmax(out, dim=-1)
    if target is None:
        target = out.argmax(-1)
    return prob.gather(-1, target[..., None])[..., 0]


def batched_integrated_gradients(fwd: BatchedModule, params: Mapping[str, Any], X: Any, baseline: Any, *,
                                 link: str, steps: int = 16, chunk_rows: int = 64) -> Any:
    """Integrated Gradients of every network at every row: ``(B, N, *X.shape[1:])``.

    The explained output is :func:`explained_output` (a classifier's probability of the class
    each network predicts at the row; a regressor's value). The path integral uses the midpoint
    rule with ``steps`` points; each network's gradient is taken with respect to its own copy
    of the inputs, in one backward pass for all networks.
    """
    import torch

    B = next(iter(params.values())).shape[0]
    alphas = (torch.arange(steps, dtype=X.dtype) + 0.5) / steps
    parts = []
    for s in range(0, len(X), chunk_rows):
        x = X[s:s + chunk_rows]
        n = len(x)
        with torch.no_grad():
            raw = fwd(params, x)                                                 # (B, n, k)
            target = None if link == "identity" else (
                (raw[..., 0] > 0).long() if raw.shape[-1] == 1 else raw.argmax(-1))
        diff = x - baseline
        path = baseline[None] + alphas.view(-1, *[1] * x.ndim) * diff[None]       # (m, n, ...)
        inp = path.reshape(steps * n, *x.shape[1:]).unsqueeze(0).repeat(B, *[1] * x.ndim)
        inp.requires_grad_(True)
        tgt = None if target is None else target.repeat(1, steps)
        with torch.enable_grad():
            val = explained_output(fwd(params, inp, per_network=True), link, tgt)  # (B, m n)
            (g,) = torch.autograd.grad(val.sum(), inp)
        g = g.reshape(B, steps, n, *x.shape[1:]).mean(1)
        parts.append((g * diff[None]).detach())
    return torch.cat(parts, dim=1)


__all__ = ["BatchedModule", "FunctionalFit", "batched_integrated_gradients",
           "batched_module", "explained_output", "train_functional", "train_sequential", "vmappable_copy"]
