"""Train many small fully connected networks at once, as one tensor program.

The randomization tests of :mod:`audit.methods.connection_weights` retrain the same network
hundreds of times on the same inputs ``X`` with different targets (a permuted response) or a
permuted input column. Because ``X`` is shared, the first layers of all ``B`` networks form one
"wide" layer: ``X @ [W1_1 ... W1_B]`` is a single matrix product of shape ``[D, B*H]``. Later
layers are per-network batched products. Gradients are written out by hand (no autograd graph),
which keeps every temporary under our control and lets the optimizer run over one flat buffer.

Independence of the networks: the loss is the *sum of per-network mean losses*, and nothing
reduces across networks (no global gradient clipping, no shared schedulers, no BatchNorm), so
network ``b`` follows exactly the trajectory it would follow when trained alone. A plain
sequential reference loop (:func:`train_looped`, ``torch.nn`` + ``torch.optim``) implements the
same recipe and a test checks that the two agree to float tolerance.

Mostly-zero inputs (one-hot encodings) skip the dense product: each mini-batch is stored as
embedding-bag index lists, and both the forward product and the first layer's weight gradient
become gather-and-sum operations over the non-zeros.

Work is split into chunks of networks whose per-step temporaries stay near ``chunk_mb``
(cache-sized chunks measured fastest on CPU), and chunks are spread over ``n_workers`` threads,
each running torch with one intra-op thread (measured here: one worker per core, one thread
each, beats one worker with two threads).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.errors import InvalidConfigError
from audit.train.recipe import Recipe

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "elu", "gelu", "silu")


# --------------------------------------------------------------------------------------------
# Architecture (the recipe is audit.train.recipe.Recipe, shared with the functional trainer)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPSpec:
    """A fully connected network: layer widths ``(D, H1, ..., O)`` and one activation per hidden
    layer (``activations[l]`` follows layer ``l``); the last layer is linear (logits/values)."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    slopes: tuple[float, ...] = ()  # negative slope (leaky_relu) or alpha (elu), per hidden layer

    def __post_init__(self) -> None:
        if len(self.sizes) < 2:
            raise InvalidConfigError("An MLP needs at least an input and an output width.")
        if len(self.activations) != len(self.sizes) - 2:
            raise InvalidConfigError(
                f"An MLP with sizes {self.sizes} needs {len(self.sizes) - 2} hidden activations. "
                f"Got {len(self.activations)} instead.")
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise InvalidConfigError(f"Activation {a!r} is not supported by the batched trainer; "
                                         f"supported: {', '.join(ACTIVATIONS)}.")
        if not self.slopes:
            object.__setattr__(self, "slopes", tuple(
                0.01 if a == "leaky_relu" else 1.0 for a in self.activations))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def n_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.sizes, self.sizes[1:]))


@dataclass
class Weights:
    """Stacked weights of ``B`` networks: ``W[l]`` is ``[B, in, out]`` (input-major, i.e. the
    transpose of torch's ``Linear.weight``), ``b[l]`` is ``[B, out]``."""

    W: list[np.ndarray]
    b: list[np.ndarray]

    @property
    def n_networks(self) -> int:
        return int(self.W[0].shape[0])

    def take(self, idx: Any) -> Weights:
        return Weights([w[idx] for w in self.W], [b[idx] for b in self.b])

    def broadcast(self, n: int) -> Weights:
        if self.n_networks == n:
            return self
        if self.n_networks != 1:
            raise ValueError(f"cannot broadcast {self.n_networks} initial networks to {n}")
        return Weights([np.repeat(w, n, 0) for w in self.W], [np.repeat(b, n, 0) for b in self.b])


def torch_default_init(spec: MLPSpec, seed: int) -> Weights:
    """PyTorch's default ``nn.Linear`` initialisation after ``torch.manual_seed(seed)``, layer by
    layer in order (the same draws as ``audit.core.adapter.build_mlp``)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    Ws, bs = [], []
    for i, o in zip(spec.sizes, spec.sizes[1:]):
        lin = nn.Linear(i, o)
        Ws.append(lin.weight.detach().numpy().T.copy()[None])
        bs.append(lin.bias.detach().numpy().copy()[None])
    return Weights(Ws, bs)


# --------------------------------------------------------------------------------------------
# Targets and input permutations
# --------------------------------------------------------------------------------------------


class Targets:
    """Per-network targets, produced one block of networks at a time (never all at once:
    999 permutations of 32,561 rows would be 130 MB)."""

    n_networks: int

    def block(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class PermutedTargets(Targets):
    """Network ``b`` gets ``y[perm_b]``; ``seeds[b] < 0`` means the identity (the observed
    network, by convention in slot 0). ``perm_b = default_rng(seeds[b]).permutation(n)``."""

    y: np.ndarray
    seeds: np.ndarray

    def __post_init__(self) -> None:
        self.n_networks = len(self.seeds)

    def permutation(self, b: int) -> np.ndarray:
        n = len(self.y)
        s = int(self.seeds[b])
        return np.arange(n) if s < 0 else np.random.default_rng(s).permutation(n)

    def block(self, start: int, stop: int) -> np.ndarray:
        return np.stack([self.y[self.permutation(b)] for b in range(start, stop)], axis=1)


@dataclass
class FixedTargets(Targets):
    """The same target vector for every network (random restarts), or an explicit ``[n, B]``."""

    y: np.ndarray
    n_networks: int = 1

    def block(self, start: int, stop: int) -> np.ndarray:
        if self.y.ndim == 2:
            return self.y[:, start:stop]
        return np.repeat(self.y[:, None], stop - start, axis=1)


@dataclass
class ColumnShuffle:
    """Permute the input columns ``columns`` (jointly, e.g. a one-hot group) by a per-network
    row permutation ``default_rng(seeds[b]).permutation(n)``; ``seeds[b] < 0`` = identity.

    Only those columns differ between networks, so ``X_b @ W1_b = X @ W1_b + Δ_b @ W1_b[cols]``
    with ``Δ_b = X_b[:, cols] - X[:, cols]``: the shared wide product survives and each network
    adds a rank-``len(cols)`` correction (the cheap per-input null)."""

    columns: Sequence[int]
    seeds: np.ndarray

    def block(self, X: np.ndarray, start: int, stop: int) -> np.ndarray:
        """``Δ`` for networks ``start:stop``, shape ``[n, stop-start, len(columns)]``."""
        cols = list(self.columns)
        base = X[:, cols]
        out = np.empty((X.shape[0], stop - start, len(cols)), dtype=np.float32)
        for j, b in enumerate(range(start, stop)):
            s = int(self.seeds[b])
            out[:, j, :] = 0.0 if s < 0 else base[np.random.default_rng(s).permutation(len(base))] - base
        return out


# --------------------------------------------------------------------------------------------
# The batched trainer
# --------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """Trained weights of every network plus what happened on the way.

    ``diverged[b]`` is True when network ``b``'s loss or weights became non-finite (its weights
    are then meaningless and must be excluded); ``loss[b]`` is its mean training loss over the
    last epoch.
    """

    weights: Weights
    loss: np.ndarray
    diverged: np.ndarray
    seconds: float
    chunk_size: int
    n_workers: int
    device: str


def batch_order(n: int, recipe: Recipe, schedule_seed: int) -> list[np.ndarray]:
    """Row order of every epoch: ``torch.randperm(n, generator)`` per epoch, the generator
    seeded once with ``schedule_seed`` (as ``examples/adult_mlp/train.py`` does)."""
    import torch

    gen = torch.Generator().manual_seed(int(schedule_seed))
    return [torch.randperm(n, generator=gen).numpy() for _ in range(recipe.epochs)]


def chunk_size_for(spec: MLPSpec, recipe: Recipe, n_rows: int, *, chunk_mb: float,
                   n_classes: int = 1) -> int:
    """Networks per chunk so that one step's hidden activation array (``[batch, B*H]`` float32)
    stays near ``chunk_mb`` megabytes."""
    rows = recipe.step_rows(n_rows)
    per_net = rows * (sum(spec.sizes[1:-1]) + spec.sizes[-1]) * 4
    return max(1, int(chunk_mb * 1e6 // max(per_net, 1)))


def train_batched(X: np.ndarray, targets: Targets, spec: MLPSpec, recipe: Recipe, init: Weights, *,
                  schedule_seed: int, shuffle: ColumnShuffle | None = None, device: str = "cpu",
                  chunk_mb: float = 2.0, memory_mb: float = 1024.0, n_workers: int | None = None,
                  sparse: bool | str = "auto",
                  progress: Callable[[int, int], None] | None = None) -> FitResult:
    """Train ``targets.n_networks`` networks of architecture ``spec`` on the shared inputs ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, D)
        Inputs shared by every network (float32).
    targets : Targets
        Per-network targets: 0/1 floats (``bce``), class indices (``ce``) or values (``mse``).
    spec : MLPSpec
    recipe : Recipe
    init : Weights
        Initial weights, one network (broadcast to all: the randomization test's θ₀) or one
        per network (random restarts).
    schedule_seed : int
        Seed of the mini-batch order, shared by every network.
    shuffle : ColumnShuffle, optional
        Per-network permutation of some input columns (the per-input null).
    device : str
        ``"cpu"`` or a CUDA device.
    chunk_mb : float
        Target size of one chunk's per-step temporaries (CPU); on CUDA chunks are 64× larger.
    memory_mb : float
        Budget for the chunks' row-sized arrays (per-network targets and shuffled columns) held
        at once by all workers; chunks shrink to stay within it.
    n_workers : int, optional
        Threads sharing the chunks (CPU). Default: one per core, at most the number of chunks.
    sparse : bool or "auto"
        Use gather-and-sum (embedding-bag) mini-batches for the first layer ("auto": when under 25% of ``X`` is
        non-zero, on CPU).

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(np.float32)
    >>> spec = MLPSpec((3, 4, 1), ("sigmoid",))
    >>> fit = train_batched(X, PermutedTargets(y, np.array([-1, 1, 2])), spec,
    ...                     Recipe(epochs=2, batch_size=16), torch_default_init(spec, 0), schedule_seed=0)
    >>> fit.weights.W[0].shape, bool(fit.diverged.any())
    ((3, 3, 4), False)
    """
    import os

    import torch

    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    if d != spec.sizes[0]:
        raise InvalidConfigError(f"The inputs have {d} columns but the network expects {spec.sizes[0]}.")
    B = targets.n_networks
    init = init.broadcast(B) if init.n_networks == 1 else init
    if init.n_networks != B:
        raise InvalidConfigError(f"{init.n_networks} initial networks were given for {B} networks.")
    cuda = str(device).startswith("cuda")
    n_out = spec.sizes[-1]
    chunk = chunk_size_for(spec, recipe, n, chunk_mb=chunk_mb * (64 if cuda else 1))
    # Per-chunk arrays that grow with the rows (targets, and the shuffled columns' differences)
    # must fit the memory budget together with the other workers' chunks.
    per_net_rows = n * 4 * (1 + (len(shuffle.columns) if shuffle is not None else 0))
    workers_guess = n_workers or (1 if cuda else (os.cpu_count() or 1))
    chunk = min(chunk, max(1, int(memory_mb * 1e6 // (per_net_rows * max(workers_guess, 1)))))
    chunk = max(1, min(chunk, B))
    if n_workers is None:
        n_workers = 1 if cuda else max(1, os.cpu_count() or 1)
    if not cuda and n_workers > 1:
        chunk = min(chunk, -(-B // n_workers))   # give every worker a share
    starts = list(range(0, B, chunk))
    n_workers = max(1, min(n_workers, len(starts)))
    orders = batch_order(n, recipe, schedule_seed)

    t0 = time.perf_counter()
    # A column of ones folds the first layer's bias into its weight matrix: the flat buffer holds
    # W1 [D, B*H] followed by b1 [B*H], i.e. exactly [W1; b1] of shape [D+1, B*H], so the forward
    # product and the weight gradient include the bias with no separate pass.
    Xt = torch.from_numpy(np.hstack([X, np.ones((n, 1), np.float32)])).to(device)
    density = float(np.count_nonzero(X) + n) / max(X.size + n, 1)
    use_sparse = (sparse is True) or (sparse == "auto" and density < 0.25 and not cuda)
    batches = _make_batches(Xt, orders, recipe.step_rows(n), use_sparse, device)
    done = [0]

    def run_chunk(start: int) -> tuple[int, list[np.ndarray], list[np.ndarray], np.ndarray]:
        stop = min(B, start + chunk)
        Y = targets.block(start, stop)
        delta = shuffle.block(X, start, stop) if shuffle is not None else None
        W, b, loss = _train_chunk(Xt, Y, delta, shuffle, spec, recipe, init.take(slice(start, stop)),
                                  batches, device, use_sparse)
        done[0] += stop - start
        if progress is not None:
            progress(done[0], B)
        return start, W, b, loss

    prev_threads = torch.get_num_threads()
    try:
        if n_workers > 1:
            torch.set_num_threads(1)
            with ThreadPoolExecutor(max_workers=n_workers) as pool:
                parts = list(pool.map(run_chunk, starts))
        else:
            if not cuda:
                torch.set_num_threads(1)
            parts = [run_chunk(s) for s in starts]
    finally:
        torch.set_num_threads(prev_threads)
    parts.sort(key=lambda p: p[0])
    Ws = [np.concatenate([p[1][l] for p in parts]) for l in range(spec.n_layers)]
    bs = [np.concatenate([p[2][l] for p in parts]) for l in range(spec.n_layers)]
    loss = np.concatenate([p[3] for p in parts])
    finite = np.isfinite(loss)
    for w, bb in zip(Ws, bs):
        finite &= np.isfinite(w).all(axis=(1, 2)) & np.isfinite(bb).all(axis=1)
    return FitResult(Weights(Ws, bs), loss, ~finite, time.perf_counter() - t0, chunk, n_workers,
                     str(device))


def _act_forward(z: Any, name: str, slope: float) -> Any:
    """Apply an activation in place where possible; returns the activation."""
    import torch
    import torch.nn.functional as F

    if name == "sigmoid":
        return z.sigmoid_()
    if name == "tanh":
        return z.tanh_()
    if name == "relu":
        return z.relu_()
    if name == "identity":
        return z
    if name == "leaky_relu":
        return F.leaky_relu(z, slope, inplace=True)
    if name == "softplus":
        return F.softplus(z)
    if name == "elu":
        return F.elu(z, slope)
    if name == "gelu":
        return F.gelu(z)
    if name == "silu":
        return F.silu(z)
    raise ValueError(name)  # pragma: no cover - validated by MLPSpec
    del torch


def _act_backward(g: Any, a: Any, z: Any, name: str, slope: float) -> Any:
    """``g * f'(z)`` given the activation ``a`` (and the pre-activation ``z`` where needed)."""
    import torch

    if name == "sigmoid":   # aten's fused kernels: g * a * (1 - a) in one pass
        return torch.ops.aten.sigmoid_backward(g, a)
    if name == "tanh":
        return torch.ops.aten.tanh_backward(g, a)
    if name == "relu":
        return torch.ops.aten.threshold_backward(g, a, 0.0)
    if name == "identity":
        return g
    if name == "leaky_relu":
        return g.mul_(torch.where(a > 0, 1.0, slope))
    if name == "softplus":
        return g.mul_(torch.sigmoid(z))
    if name == "elu":
        return g.mul_(torch.where(z > 0, torch.ones_like(a), a + slope))
    if name == "gelu":
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return g.mul_(cdf + z * pdf)
    if name == "silu":
        s = torch.sigmoid(z)
        return g.mul_(s * (1 + z * (1 - s)))
    raise ValueError(name)  # pragma: no cover


def _layer_forward(a: Any, W: Any, b: Any) -> Any:
    """``[nb, Bc, i] x [Bc, i, o] + [Bc, o] -> [nb, Bc, o]`` for per-network layers."""
    import torch

    if W.shape[2] == 1:  # one output: an elementwise product and a sum beat a batched gemv
        return (a * W[:, :, 0]).sum(2, keepdim=True).add_(b)
    return torch.bmm(a.transpose(0, 1), W).transpose(0, 1).add(b)


def _layer_backward(g: Any, a: Any, W: Any, gW: Any, gb: Any) -> Any:
    """Gradients of a per-network layer: fills ``gW``/``gb`` and returns the input gradient."""
    import torch

    torch.sum(g, 0, out=gb)
    if W.shape[2] == 1:
        torch.sum(a * g, 0, out=gW[:, :, 0])
        return g * W[:, :, 0]
    gt = g.transpose(0, 1)                                  # [Bc, nb, o]
    torch.bmm(a.transpose(0, 1).transpose(1, 2), gt, out=gW)
    return torch.bmm(gt, W.transpose(1, 2)).transpose(0, 1)


def _make_batches(Xt: Any, orders: list[np.ndarray], batch_size: int, sparse: bool,
                  device: str) -> list[list[tuple[Any, Any, Any]]]:
    """Every epoch's mini-batches as (row indices, X_batch, X_batch transposed), built once and
    shared by all chunks. Mostly-zero inputs (one-hot encodings: 13 of Adult's 107 columns are
    non-zero per row) are stored as embedding-bag index lists for the first layer."""
    import torch

    n = Xt.shape[0]
    batches: list[list[tuple[Any, Any, Any]]] = []
    for order in orders:
        order_t = torch.from_numpy(order).to(device)
        row = []
        for s0 in range(0, n, batch_size):
            idx = order_t[s0:s0 + batch_size]
            xb = Xt.index_select(0, idx)
            if sparse:
                row.append((idx, _bags(xb), _bags(xb.t().contiguous())))
            else:
                row.append((idx, xb, xb.t()))
        batches.append(row)
    return batches


def _bags(M: Any) -> tuple[Any, Any, Any]:
    """The rows of a mostly-zero matrix as ``embedding_bag`` bags: (column indices, row offsets,
    values). ``embedding_bag(cols, W, offsets, per_sample_weights=values, mode="sum")`` is then
    ``M @ W``: a gather-and-sum over the non-zeros, measured ~3x faster than a dense or CSR
    product for Adult's one-hot batches."""
    import torch

    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        csr = M.to_sparse_csr()
    return (csr.col_indices().to(torch.int64), csr.crow_indices()[:-1].to(torch.int64).contiguous(),
            csr.values().contiguous())


def _train_chunk(Xt: Any, Y: np.ndarray, delta: np.ndarray | None, shuffle: ColumnShuffle | None,
                 spec: MLPSpec, recipe: Recipe, init: Weights,
                 batches: list[list[tuple[Any, Any, Any]]], device: str, sparse: bool) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Train one chunk of networks with hand-written backpropagation and optimizer."""
    import torch
    import torch.nn.functional as F

    Bc = init.n_networks
    sizes = spec.sizes
    L = spec.n_layers
    n = Xt.shape[0]

    # One flat buffer for all parameters (and one each for gradients and optimizer state), so
    # the optimizer step is a handful of vectorized operations.
    shapes: list[tuple[int, ...]] = []
    for l in range(L):
        i, o = sizes[l], sizes[l + 1]
        shapes.append((i, Bc * o) if l == 0 else (Bc, i, o))   # weights: layer 0 is "wide"
        shapes.append((Bc * o,) if l == 0 else (Bc, o))         # biases
    numels = [math.prod(s) for s in shapes]
    total = sum(numels)
    P = torch.empty(total, dtype=torch.float32, device=device)
    G = torch.zeros_like(P)

    def views(buf: Any) -> list[Any]:
        out, off = [], 0
        for s, k in zip(shapes, numels):
            out.append(buf[off:off + k].view(s))
            off += k
        return out

    pv, gv = views(P), views(G)
    W1b = P[: (sizes[0] + 1) * Bc * sizes[1]].view(sizes[0] + 1, Bc * sizes[1])   # [W1; b1]
    G1b = G[: (sizes[0] + 1) * Bc * sizes[1]].view(sizes[0] + 1, Bc * sizes[1])
    for l in range(L):
        w = torch.from_numpy(np.ascontiguousarray(init.W[l], dtype=np.float32))   # [Bc, i, o]
        bb = torch.from_numpy(np.ascontiguousarray(init.b[l], dtype=np.float32))  # [Bc, o]
        if l == 0:
            pv[0].copy_(w.permute(1, 0, 2).reshape(sizes[0], Bc * sizes[1]))
            pv[1].copy_(bb.reshape(-1))
        else:
            pv[2 * l].copy_(w)
            pv[2 * l + 1].copy_(bb)
    weight_mask = None
    if recipe.weight_decay and not recipe.decay_biases:
        weight_mask = torch.zeros_like(P)
        for l, mv in enumerate(views(weight_mask)):
            if l % 2 == 0:
                mv.fill_(1.0)

    ce = recipe.loss == "ce"
    Yt = torch.from_numpy(np.ascontiguousarray(Y)).to(device)
    Yt = Yt.long() if ce else Yt.float()
    Dt = torch.from_numpy(delta).to(device) if delta is not None else None
    cols = torch.as_tensor(list(shuffle.columns), device=device) if shuffle is not None else None

    opt = recipe.optimizer
    wd = recipe.weight_decay
    m1 = torch.zeros_like(P) if opt in ("adam", "adamw") or recipe.momentum else None
    m2 = torch.zeros_like(P) if opt in ("adam", "adamw") else None
    beta1, beta2 = recipe.betas
    step = 0
    fused_fn = None
    fused: list[tuple[list[Any], list[Any], list[Any], list[Any], float]] | None = None
    if opt in ("adam", "adamw") and hasattr(torch, "_fused_adam_"):
        fused_fn = torch._fused_adam_ if opt == "adam" else torch._fused_adamw_
        mv1, mv2 = views(m1), views(m2)
        wsel = list(range(0, 2 * L, 2))
        bsel = list(range(1, 2 * L, 2))
        bias_decay = wd if recipe.decay_biases else 0.0
        if bias_decay == wd:
            fused = [([P], [G], [m1], [m2], wd)]
        else:
            fused = [([pv[i] for i in sel], [gv[i] for i in sel], [mv1[i] for i in sel],
                      [mv2[i] for i in sel], decay) for sel, decay in ((wsel, wd), (bsel, bias_decay))]
        step_t = torch.zeros((), dtype=torch.float32, device=device)
    loss_sum = torch.zeros(Bc, dtype=torch.float64, device=device)
    acts = spec.activations
    slopes = spec.slopes
    keep_z = [a in ("softplus", "elu", "gelu", "silu") for a in acts]
    H1 = sizes[1]

    for epoch, epoch_batches in enumerate(batches):
        last = epoch == len(batches) - 1
        if last:
            loss_sum.zero_()
        for idx, xb, xbt in epoch_batches:
            nb = idx.numel()
            yb = Yt.index_select(0, idx)
            # ---- forward ------------------------------------------------------------------
            a_list: list[Any] = [xb]
            z_list: list[Any] = [None]
            if sparse:
                z = F.embedding_bag(xb[0], W1b, xb[1], mode="sum", per_sample_weights=xb[2])
            else:
                z = torch.mm(xb, W1b)
            if Dt is not None:
                db_ = Dt.index_select(0, idx)                                  # [nb, Bc, k]
                w_rows = pv[0].index_select(0, cols).view(-1, Bc, sizes[1])    # [k, Bc, H]
                z = z.view(nb, Bc, sizes[1]).add_(torch.einsum("nbk,kbh->nbh", db_, w_rows))
            for l in range(1, L):
                zl = z.view(nb, Bc, sizes[l])
                z_list.append(zl.clone() if keep_z[l - 1] else None)
                a = _act_forward(zl, acts[l - 1], slopes[l - 1])
                a_list.append(a)
                z = _layer_forward(a, pv[2 * l], pv[2 * l + 1])                            # [nb, Bc, o]
            out = z.reshape(nb, Bc, sizes[-1])
            # ---- loss and its gradient (sum over networks of per-network means) ----------------
            if recipe.loss == "bce":
                o = out[:, :, 0]
                with torch.no_grad():
                    if last:
                        loss_sum += (torch.clamp_min(o, 0) - o * yb + torch.log1p(torch.exp(-o.abs()))).sum(0).double()
                dout = (torch.sigmoid(o) - yb).div_(nb).unsqueeze(2)
            elif recipe.loss == "mse":
                diff = out - yb.view(nb, Bc, -1)
                if last:
                    loss_sum += (diff * diff).sum((0, 2)).double() / sizes[-1]
                dout = diff.mul_(2.0 / (nb * sizes[-1]))
            else:
                logp = torch.log_softmax(out, dim=2)
                if last:
                    loss_sum -= logp.gather(2, yb.unsqueeze(2)).sum((0, 2)).double()
                dout = logp.exp_()
                dout.scatter_add_(2, yb.unsqueeze(2), torch.full_like(dout[:, :, :1], -1.0))
                dout.div_(nb)
            # ---- backward -----------------------------------------------------------------------
            g = dout                                                   # [nb, Bc, o]
            for l in range(L - 1, 0, -1):
                a_prev = a_list[l]                                     # [nb, Bc, i]
                g = _layer_backward(g, a_prev, pv[2 * l], gv[2 * l], gv[2 * l + 1])
                g = _act_backward(g, a_prev, z_list[l], acts[l - 1], slopes[l - 1])
            g2 = g.reshape(nb, Bc * H1)
            if sparse:
                G1b.copy_(F.embedding_bag(xbt[0], g2, xbt[1], mode="sum", per_sample_weights=xbt[2]))
            else:
                torch.mm(xbt, g2, out=G1b)
            if Dt is not None:
                corr = torch.einsum("nbk,nbh->kbh", db_, g.reshape(nb, Bc, H1))
                gv[0].view(sizes[0], Bc, H1).index_add_(0, cols, corr)
            # ---- optimizer (torch.optim semantics) ---------------------------------------------
            step += 1
            if fused is not None:
                # torch's own fused CPU/CUDA Adam kernel: one pass over each buffer.
                step_t += 1
                for plist, glist, alist, slist, decay in fused:
                    fused_fn(plist, glist, alist, slist, [], [step_t] * len(plist), amsgrad=False,
                             lr=recipe.lr, beta1=beta1, beta2=beta2, weight_decay=decay,
                             eps=recipe.eps, maximize=False, grad_scale=None, found_inf=None)
                continue
            if wd and opt != "adamw":
                if weight_mask is None:
                    G.add_(P, alpha=wd)
                else:
                    G.addcmul_(P, weight_mask, value=wd)
            if opt == "sgd":
                if recipe.momentum:
                    if step == 1:
                        m1.copy_(G)
                    else:
                        m1.mul_(recipe.momentum).add_(G)
                    P.add_(m1, alpha=-recipe.lr)
                else:
                    P.add_(G, alpha=-recipe.lr)
                continue
            if opt == "adamw" and wd:
                if weight_mask is None:
                    P.mul_(1 - recipe.lr * wd)
                else:
                    P.addcmul_(P, weight_mask, value=-recipe.lr * wd)
            m1.lerp_(G, 1 - beta1)
            m2.mul_(beta2).addcmul_(G, G, value=1 - beta2)
            bc1 = 1 - beta1 ** step
            bc2_sqrt = math.sqrt(1 - beta2 ** step)
            denom = (m2.sqrt() / bc2_sqrt).add_(recipe.eps)
            P.addcdiv_(m1, denom, value=-recipe.lr / bc1)

    loss = (loss_sum / n).float().cpu().numpy()
    Ws, bs = [], []
    for l in range(L):
        i, o = sizes[l], sizes[l + 1]
        if l == 0:
            Ws.append(pv[0].view(i, Bc, o).permute(1, 0, 2).cpu().numpy().copy())
            bs.append(pv[1].view(Bc, o).cpu().numpy().copy())
        else:
            Ws.append(pv[2 * l].cpu().numpy().copy())
            bs.append(pv[2 * l + 1].cpu().numpy().copy())
    return Ws, bs, loss


# --------------------------------------------------------------------------------------------
# The sequential reference
# --------------------------------------------------------------------------------------------


def build_module(spec: MLPSpec, weights: Weights | None = None, index: int = 0) -> Any:
    """An ``nn.Sequential`` for ``spec``, optionally loaded with network ``index`` of ``weights``."""
    import torch
    import torch.nn as nn

    layers: list[Any] = []
    for l, (i, o) in enumerate(zip(spec.sizes, spec.sizes[1:])):
        lin = nn.Linear(i, o)
        if weights is not None:
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights.W[l][index].T, dtype=np.float32)))
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(weights.b[l][index], dtype=np.float32)))
        layers.append(lin)
        if l < len(spec.activations):
            a, s = spec.activations[l], spec.slopes[l]
            layers.append({"identity": nn.Identity(), "relu": nn.ReLU(), "sigmoid": nn.Sigmoid(),
                           "tanh": nn.Tanh(), "leaky_relu": nn.LeakyReLU(s), "softplus": nn.Softplus(),
                           "elu": nn.ELU(s), "gelu": nn.GELU(), "silu": nn.SiLU()}[a])
    return nn.Sequential(*layers)


def train_looped(X: np.ndarray, targets: Targets, spec: MLPSpec, recipe: Recipe, init: Weights, *,
                 schedule_seed: int, networks: Sequence[int] | None = None,
                 shuffle: ColumnShuffle | None = None) -> FitResult:
    """The same training, one network after another with ``torch.nn`` and ``torch.optim``.

    The reference the batched trainer is tested against, and the baseline of the benchmark.
    ``networks`` restricts the run to some network indices (to time a subset).
    """
    import torch

    X = np.ascontiguousarray(X, dtype=np.float32)
    B = targets.n_networks
    init = init.broadcast(B) if init.n_networks == 1 else init
    networks = list(range(B)) if networks is None else list(networks)
    orders = batch_order(len(X), recipe, schedule_seed)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fair baseline on small networks (2 threads measured slower)
    try:
        return _looped(X, targets, spec, recipe, init, orders, networks, shuffle)
    finally:
        torch.set_num_threads(prev_threads)


def _looped(X: np.ndarray, targets: Targets, spec: MLPSpec, recipe: Recipe, init: Weights,
            orders: list[np.ndarray], networks: list[int], shuffle: ColumnShuffle | None) -> FitResult:
    import torch

    t0 = time.perf_counter()
    Ws = [np.zeros((len(networks), i, o), np.float32) for i, o in zip(spec.sizes, spec.sizes[1:])]
    bs = [np.zeros((len(networks), o), np.float32) for o in spec.sizes[1:]]
    losses = np.zeros(len(networks), np.float32)
    for j, b in enumerate(networks):
        y = targets.block(b, b + 1)[:, 0]
        Xb = X
        if shuffle is not None:
            Xb = X.copy()
            Xb[:, list(shuffle.columns)] += shuffle.block(X, b, b + 1)[:, 0, :]
        model = build_module(spec, init, b)
        params_decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
        params_bias = [p for name, p in model.named_parameters() if name.endswith("bias")]
        groups = [{"params": params_decay, "weight_decay": recipe.weight_decay},
                  {"params": params_bias, "weight_decay": recipe.weight_decay if recipe.decay_biases else 0.0}]
        if recipe.optimizer == "adam":
            optim = torch.optim.Adam(groups, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps)
        elif recipe.optimizer == "adamw":
            optim = torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps)
        else:
            optim = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)
        if recipe.loss == "bce":
            loss_fn = torch.nn.BCEWithLogitsLoss()
            yt = torch.from_numpy(np.asarray(y, dtype=np.float32))
        elif recipe.loss == "ce":
            loss_fn = torch.nn.CrossEntropyLoss()
            yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        else:
            loss_fn = torch.nn.MSELoss()
            yt = torch.from_numpy(np.asarray(y, dtype=np.float32))
        Xt = torch.from_numpy(Xb)
        total = 0.0
        for epoch, order in enumerate(orders):
            order_t = torch.from_numpy(order)
            total = 0.0
            step = recipe.step_rows(len(X))
            for s0 in range(0, len(X), step):
                idx = order_t[s0:s0 + step]
                optim.zero_grad(set_to_none=True)
                out = model(Xt[idx])
                if recipe.loss != "ce":
                    out = out.squeeze(1)
                loss = loss_fn(out, yt[idx])
                loss.backward()
                optim.step()
                total += loss.item() * len(idx)
        losses[j] = total / len(X)
        for l, lin in enumerate(m for m in model if isinstance(m, torch.nn.Linear)):
            Ws[l][j] = lin.weight.detach().numpy().T
            bs[l][j] = lin.bias.detach().numpy()
    finite = np.isfinite(losses)
    for w, bb in zip(Ws, bs):
        finite &= np.isfinite(w).all(axis=(1, 2)) & np.isfinite(bb).all(axis=1)
    return FitResult(Weights(Ws, bs), losses, ~finite, time.perf_counter() - t0, 1, 1, "cpu")


def forward_numpy(weights: Weights, spec: MLPSpec, X: np.ndarray, index: int = 0) -> np.ndarray:
    """Outputs (logits or values) of network ``index`` on ``X``, in float64."""
    import torch

    model = build_module(spec, weights, index).double()
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(X, dtype=np.float64))).numpy()


def forward_many(weights: Weights, spec: MLPSpec, X: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """Outputs of every network of ``weights`` on the shared rows ``X``: ``[B, n, out]``, float64.

    Used to score each of many networks on validation rows (e.g. the randomization test's null
    networks each picking their best restart) without building one module per network.

    Examples
    --------
    >>> spec = MLPSpec((3, 4, 1), ("sigmoid",))
    >>> w = torch_default_init(spec, 0)
    >>> X = np.ones((2, 3))
    >>> bool(np.allclose(forward_many(w, spec, X)[0], forward_numpy(w, spec, X)))
    True
    """
    import torch

    Xt = torch.from_numpy(np.asarray(X, dtype=np.float64))
    n = Xt.shape[0]
    out = []
    with torch.no_grad():
        for s in range(0, weights.n_networks, chunk):
            e = min(weights.n_networks, s + chunk)
            a = Xt[:, None, :].expand(n, e - s, Xt.shape[1])
            for l in range(len(weights.W)):
                W = torch.from_numpy(np.asarray(weights.W[l][s:e], dtype=np.float64))
                b = torch.from_numpy(np.asarray(weights.b[l][s:e], dtype=np.float64))
                a = _layer_forward(a, W, b)
                if l < len(spec.activations):
                    a = _act_forward(a, spec.activations[l], spec.slopes[l])
            out.append(a.transpose(0, 1).numpy())
    return np.concatenate(out) if out else np.empty((0, n, spec.sizes[-1]))


__all__ = [
    "ACTIVATIONS",
    "ColumnShuffle",
    "FitResult",
    "FixedTargets",
    "MLPSpec",
    "PermutedTargets",
    "Targets",
    "Weights",
    "batch_order",
    "build_module",
    "chunk_size_for",
    "forward_many",
    "forward_numpy",
    "torch_default_init",
    "train_batched",
    "train_looped",
]
