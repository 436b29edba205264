"""B copies of a torch module evaluated as one program, from its ``torch.fx`` graph.

:mod:`audit.train.functional` retrains one architecture ``B`` times at once. ``vmap`` does that
for any module but leaves its batched dimension wherever its batching rules put it, and on CPU
that layout costs more than the arithmetic: for the bundled digits CNN, ReLU's backward, max
pooling and the zero fills of strided temporaries took 55 % of a step and the convolutions 26 %
(``benchmarks/retrain_cnn_lstm.py`` says what was measured). Here the module is traced once with
``torch.fx`` and each call in its graph is replaced by one operation over all ``B`` networks with
a layout chosen for it:

- convolution feature maps of the ``B`` networks are the channels of one image batch,
  ``(N, B*C, H, W)`` in channels-last memory: a convolution of the shared input is one ordinary
  convolution with ``B*C_out`` filters, later ones are one grouped convolution (``groups=B``),
  and activations and pooling (per channel) run on that batch unchanged;
- everything else is ``(B, N, ...)``: a Linear layer is one batched matrix product (one wide
  product when its input is shared), elementwise arithmetic broadcasts a shared operand;
- an ``nn.LSTM`` runs :class:`BatchedLSTM`: the input projections of all time steps and all
  networks as one product, then the recurrence as one batched product per step, with a
  hand-written backward through time (autograd's per-step bookkeeping over ~40 small operations
  per step would cost more than the products);
- a ReLU whose only use is a max pooling is applied after the pooling (max commutes with a
  non-decreasing function; the gradient reaches the same element, ties included), on a tensor a
  quarter the size.

Anything outside this vocabulary (a parameter used directly, shape arithmetic, an unknown module
with parameters, dropout) raises :class:`Unsupported` and the caller falls back to ``vmap``;
:func:`audit.train.functional.batched_module` also checks every traced program against the
module itself on two networks with different weights before using it.
"""

from __future__ import annotations

import operator
from typing import Any

# Parameter-free modules / functions that act on every channel (and every sample) separately:
# valid on the stacked (N, B*C, H, W) layout as they are.
_CHANNELWISE_MODULES = ("ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus",
                        "Hardtanh", "Identity", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                        "AdaptiveMaxPool2d")
_ELEMENTWISE_METHODS = ("add", "sub", "mul", "div", "neg", "relu", "sigmoid", "tanh", "exp", "log", "abs",
                        "pow", "clamp", "__add__", "__mul__", "__sub__", "__truediv__")


class Unsupported(Exception):
    """The module's graph uses something the traced program cannot batch (fall back to vmap)."""


class _Net:
    """A per-network value: a tensor ``(B, N, ...)``."""

    __slots__ = ("t",)

    def __init__(self, t: Any) -> None:
        self.t = t


class _Sequence(_Net):
    """An LSTM's output sequence ``(B, N, T, H)`` or ``(B, T, N, H)`` with its last step kept apart
    as ``(B, N, H)``: indexing the last step (``out[:, -1]``, the usual head) takes it without
    a gradient for every step (a zero fill and a copy of T steps, and T additions, per backward)."""

    __slots__ = ("last", "time_dim", "steps")

    def __init__(self, t: Any, last: Any, time_dim: int, steps: int) -> None:
        super().__init__(t)
        self.last, self.time_dim, self.steps = last, time_dim, steps

    def last_step(self, idx: tuple) -> Any:
        """The last step when ``idx`` (in the module's coordinates, no network axis) selects it
        and nothing else, else None."""
        if len(idx) <= self.time_dim or len(idx) > 3:
            return None
        for d, i in enumerate(idx):
            if d == self.time_dim:
                if isinstance(i, bool) or not isinstance(i, int) or i not in (-1, self.steps - 1):
                    return None
            elif i != slice(None):
                return None
        return self.last


class _Maps:
    """Convolution feature maps of ``B`` networks as the channels of one batch: ``(N, B*C, H, W)``."""

    __slots__ = ("t", "B")

    def __init__(self, t: Any, B: int) -> None:
        self.t, self.B = t, B


def _net(v: Any, B: int) -> Any:
    """``v`` as a ``(B, N, ...)`` tensor (shared values are broadcast)."""
    if isinstance(v, _Net):
        return v.t
    if isinstance(v, _Maps):
        N, BC, H, W = v.t.shape
        return _grad_channels_last(v.t).view(N, B, BC // B, H, W).transpose(0, 1)
    return v.expand(B, *v.shape)


_GRAD_CL: Any = None


def _grad_channels_last(t: Any) -> Any:
    """``t`` unchanged, its gradient made channels-last: the gradient that reaches feature maps
    through the ``(B, N, ...)`` view arrives strided in network order, and max pooling's and
    ReLU's backward kernels ran 9x and 2x slower on it than on channels-last memory."""
    global _GRAD_CL
    if _GRAD_CL is None:
        import torch

        class GradChannelsLast(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any) -> Any:
                return x.view_as(x)

            @staticmethod
            def backward(ctx: Any, g: Any) -> Any:
                return g.contiguous(memory_format=torch.channels_last)

        _GRAD_CL = GradChannelsLast
    return _GRAD_CL.apply(t) if t.requires_grad else t


def _maps(v: Any, B: int) -> Any:
    import torch

    if isinstance(v, _Maps):
        return v.t.contiguous(memory_format=torch.channels_last)
    t = v.t                                                     # (B, N, C, H, W)
    return t.transpose(0, 1).reshape(t.shape[1], B * t.shape[2], *t.shape[3:]).contiguous(
        memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------
# The LSTM recurrence with a hand-written backward
# --------------------------------------------------------------------------------------------

def _lstm_function() -> Any:
    import threading

    import torch

    # Free workspaces per thread and shape: every training step of a block reuses the same
    # buffers (still in cache, no allocation), and a workspace belongs to one call from its
    # forward until its backward has run, so calls never share one.
    free = threading.local()

    class BatchedLSTM(torch.autograd.Function):
        """One LSTM layer of ``B`` networks with a zero initial state. ``x`` (B, T, N, F) (may be a
        broadcast view), ``W`` (B, 4H, F+1+H) = ``[W_ih | b_ih + b_hh | W_hh]`` with the gates in
        the order i, f, o, g (sigmoid gates first: one sigmoid over 3H rows, one tanh over H).
        Returns every hidden state as ``(T, B, H, N)`` and the last one apart as ``(B, H, N)``.

        Everything is kept feature-major, ``(B, features, N)``: each step's gates are one batched
        product ``W [x_t; 1; h_{t-1}]`` (the column block kept in one buffer ``z``, into which each
        step writes its ``h``), each gate is a contiguous slab, and the weight gradient of all
        steps is one product.
        """

        @staticmethod
        def forward(ctx: Any, x: Any, W: Any, keep: bool) -> Any:
            B, T, N, F = x.shape
            H = W.shape[1] // 4
            ws = _take(free, (B, T, N, F, H, x.dtype, x.device), lambda: _LSTMWorkspace(x, B, T, N, F, H))
            ws.z[:, :F, :T] = x.permute(0, 3, 1, 2)
            one = ws.one
            # the views of every step are made once per workspace (each costs a dispatch)
            for t, (zt, a, s, i, f, o, g, da_s, da_g, c, c_prev, tc, h, otc) in enumerate(ws.forward_views):
                torch.bmm(W, zt, out=a)
                s.sigmoid_()
                g.tanh_()
                # each gate's derivative with respect to its pre-activation, while a is in cache:
                # sigmoid' = s (1 - s), tanh' = 1 - g^2
                torch.addcmul(s, s, s, value=-1.0, out=da_s)
                torch.addcmul(one, g, g, value=-1.0, out=da_g)
                torch.mul(i, g, out=c)
                if t:
                    c.addcmul_(f, c_prev)
                torch.tanh(c, out=tc)
                torch.mul(o, tc, out=h)
                torch.addcmul(o, h, tc, value=-1.0, out=otc)   # o (1 - tanh(c)^2), dc's factor
            hs = ws.z[:, F + 1:, 1:].permute(2, 0, 1, 3).contiguous()
            last = ws.z[:, F + 1:, T].clone()
            ctx.set_materialize_grads(False)             # an output nobody used has no gradient
            if keep:
                ctx.save_for_backward(W)
                ctx.ws, ctx.x_grad = ws, ctx.needs_input_grad[0]
            else:
                _give(free, ws)
            return hs, last

        @staticmethod
        def backward(ctx: Any, dhs: Any, dlast: Any) -> Any:
            (W,) = ctx.saved_tensors
            ws, ctx.ws = ctx.ws, None
            if ws is None:
                raise RuntimeError("The batched LSTM's backward can run once per forward "
                                   "(retain_graph is not supported).")
            if dhs is None and dlast is None:
                _give(free, ws)
                return None, None, None
            T, B, G, N = ws.acts.shape
            H = G // 4
            K = W.shape[2]
            F = K - H - 1
            dh, dc = ws.dh, ws.dc
            # the gradient arrives in its consumer's layout (e.g. (B, T, N, H) strides): one copy
            # makes every step's slice contiguous
            dhs = dhs.contiguous() if dhs is not None else None
            W_hT = W[:, :, F + 1:].transpose(1, 2)                          # (B, H, 4H)
            for t in range(T - 1, -1, -1):
                d, d_i, d_f, d_o, d_g, i, f, g, c_prev, tc, otc, da = ws.backward_views[t]
                if t == T - 1:
                    if dhs is None:
                        dh.copy_(dlast)
                    else:
                        torch.add(dhs[t], dlast, out=dh) if dlast is not None else dh.copy_(dhs[t])
                elif dhs is not None:
                    dh.add_(dhs[t])
                torch.mul(dh, tc, out=d_o)
                if t == T - 1:
                    torch.mul(dh, otc, out=dc)
                else:
                    dc.addcmul_(dh, otc)
                torch.mul(dc, g, out=d_i)
                if t:
                    torch.mul(dc, c_prev, out=d_f)
                else:
                    d_f.zero_()
                torch.mul(dc, i, out=d_g)
                d.mul_(da)
                if t:
                    dc.mul_(f)
                    torch.bmm(W_hT, d, out=dh)                             # (B, H, N)
            dGm = ws.dG.view(B, G, T * N)
            # the input gradient (Integrated Gradients) of all steps at once, as the weight gradient
            dx = (torch.bmm(W[:, :, :F].transpose(1, 2), dGm).view(B, F, T, N).permute(0, 2, 3, 1)
                  if ctx.x_grad else None)
            dW = torch.bmm(dGm, ws.z[:, :, :T].reshape(B, K, T * N).transpose(1, 2))   # (B, 4H, K)
            _give(free, ws)
            return dx, dW, None

    return BatchedLSTM


class _LSTMWorkspace:
    """The buffers of one batched LSTM call (forward and backward through time)."""

    def __init__(self, x: Any, B: int, T: int, N: int, F: int, H: int) -> None:
        self.key = (B, T, N, F, H, x.dtype, x.device)
        G, K = 4 * H, F + 1 + H
        self.z = x.new_empty(B, K, T + 1, N)     # [x_t; 1; h_{t-1}] for t = 0..T (h_T at the end)
        self.z[:, F] = 1.0
        self.z[:, F + 1:, 0] = 0.0
        self.acts = x.new_empty(T, B, G, N)
        self.dact = x.new_empty(T, B, G, N)
        self.cs, self.tcs, self.otc = (x.new_empty(T, B, H, N) for _ in range(3))
        self.dG = x.new_empty(B, G, T, N)
        self.dh, self.dc = x.new_empty(B, H, N), x.new_empty(B, H, N)
        self.one = x.new_ones(())
        z, acts, dact, cs, tcs, otc, dG = self.z, self.acts, self.dact, self.cs, self.tcs, self.otc, self.dG
        S = 3 * H                                  # gates i, f, o (sigmoid), then g (tanh)
        self.forward_views = [
            (z[:, :, t], acts[t], acts[t][:, :S], acts[t][:, :H], acts[t][:, H:2 * H], acts[t][:, 2 * H:S],
             acts[t][:, S:], dact[t][:, :S], dact[t][:, S:], cs[t], cs[t - 1] if t else None, tcs[t],
             z[:, F + 1:, t + 1], otc[t]) for t in range(T)]
        self.backward_views = [
            (dG[:, :, t], dG[:, :H, t], dG[:, H:2 * H, t], dG[:, 2 * H:S, t], dG[:, S:, t], acts[t][:, :H],
             acts[t][:, H:2 * H], acts[t][:, S:], cs[t - 1] if t else None, tcs[t], otc[t], dact[t])
            for t in range(T)]


def _take(free: Any, key: tuple, make: Any) -> Any:
    pools = free.__dict__.setdefault("pools", {})
    stack = pools.get(key)
    return stack.pop() if stack else make()


def _give(free: Any, ws: Any) -> None:
    pools = free.__dict__.setdefault("pools", {})
    pools.setdefault(ws.key, [])
    if len(pools[ws.key]) < 2:
        pools[ws.key].append(ws)
    while len(pools) > 4:                       # a few shapes per thread (the last batch, IG chunks)
        del pools[next(iter(pools))]


def _conv_function() -> Any:
    import torch
    import torch.nn.functional as F

    class GroupedConv(torch.autograd.Function):
        """A stride-1 grouped convolution whose input gradient is itself a forward convolution
        with the flipped, transposed filters: oneDNN's forward kernel on channels-last maps ran
        1.7x faster than its backward-data kernel here (59 vs 35 GFLOP/s, one thread)."""

        @staticmethod
        def forward(ctx: Any, x: Any, w: Any, b: Any, padding: tuple[int, int], groups: int) -> Any:
            ctx.save_for_backward(x, w)
            ctx.padding, ctx.groups, ctx.has_bias = padding, groups, b is not None
            return F.conv2d(x, w, b, 1, padding, 1, groups)

        @staticmethod
        def backward(ctx: Any, gy: Any) -> Any:
            x, w = ctx.saved_tensors
            G = ctx.groups
            gy = gy.contiguous(memory_format=torch.channels_last)
            dx = None
            if ctx.needs_input_grad[0]:
                co, ci, kh, kw = w.shape
                wt = w.view(G, co // G, ci, kh, kw).transpose(1, 2).flip(-1, -2).reshape(G * ci, co // G, kh, kw)
                dx = F.conv2d(gy, wt, None, 1, (kh - 1 - ctx.padding[0], kw - 1 - ctx.padding[1]), 1, G)
            _, dw, _ = torch.ops.aten.convolution_backward(
                gy, x, w, None, [1, 1], list(ctx.padding), [1, 1], False, [0, 0], G, (False, True, False))
            db = gy.sum((0, 2, 3)) if ctx.has_bias else None
            return dx, dw, db, None, None

    return GroupedConv


_CONV_FN: Any = None


_LSTM_FN: Any = None


def batched_lstm(lstm: Any, name: str, params: dict[str, Any], x: Any, B: int) -> tuple[Any, Any]:
    """``nn.LSTM``'s output ``(out, (h_n, c_n))`` for ``B`` networks; ``x`` shared or ``_Net``."""
    import torch

    global _LSTM_FN
    if _LSTM_FN is None:
        _LSTM_FN = _lstm_function()
    if lstm.bidirectional or getattr(lstm, "proj_size", 0) or (lstm.dropout and lstm.training
                                                                and lstm.num_layers > 1):
        raise Unsupported("bidirectional, projected or dropout LSTM")
    if isinstance(x, _Maps):
        raise Unsupported("LSTM on feature maps")
    xs = x.t if isinstance(x, _Net) else x
    if xs.ndim != (4 if isinstance(x, _Net) else 3):
        raise Unsupported("LSTM input must be batched (N, T, F)")
    H = lstm.hidden_size
    # to (B, T, N, F)
    if isinstance(x, _Net):
        seq = xs.transpose(1, 2) if lstm.batch_first else xs
    else:
        tm = xs.transpose(0, 1) if lstm.batch_first else xs                 # (T, N, F)
        seq = tm.expand(B, *tm.shape)
    hs_last = []
    for layer in range(lstm.num_layers):
        W_ih = params[f"{name}.weight_ih_l{layer}"]                     # (B, 4H, F)
        W_hh = params[f"{name}.weight_hh_l{layer}"]                     # (B, 4H, H)
        bias = (params[f"{name}.bias_ih_l{layer}"] + params[f"{name}.bias_hh_l{layer}"] if lstm.bias
                else W_ih.new_zeros(B, 4 * H))
        # gates reordered i, f, g, o -> i, f, o, g; autograd maps the gradient back
        W = torch.cat([W_ih, bias[..., None], W_hh], dim=2).index_select(1, _gate_rows(H, W_ih.device))
        keep = torch.is_grad_enabled() and (W.requires_grad or seq.requires_grad)
        hs, last = _LSTM_FN.apply(seq, W, keep)                         # (T, B, H, N), (B, H, N)
        seq = hs.permute(1, 0, 3, 2)                                    # (B, T, N, H)
        hs_last.append(last.transpose(1, 2))
    out = hs.permute(1, 3, 0, 2) if lstm.batch_first else hs.permute(1, 0, 3, 2)   # (B, N, T, H) / (B, T, N, H)
    h_n = torch.stack(hs_last, dim=1)                                   # (B, L, N, H)
    return (_Sequence(out, hs_last[-1], 1 if lstm.batch_first else 0, seq.shape[1]),
            (_Net(h_n), _CellUnavailable()))


def _gate_rows(H: int, device: Any) -> Any:
    import torch

    return torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]).to(device)


class _CellUnavailable:
    """The final cell state, which the batched LSTM does not return: using it is Unsupported."""


# --------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------

class TracedBatched:
    """``forward(params, x)`` for stacked parameters ``{name: [B, ...]}`` from ``module``'s fx graph.

    ``x`` is shared ``(N, ...)`` or, with ``per_network=True``, ``(B, N, ...)``; the result is
    ``(B, N, ...)``. Raises :class:`Unsupported` at construction when the module cannot be traced.
    """

    def __init__(self, module: Any, buffers: dict[str, Any]) -> None:
        import torch.fx

        try:
            self.gm = torch.fx.symbolic_trace(module)
        except Exception as e:  # noqa: BLE001 - any tracing failure means "use vmap"
            raise Unsupported(f"torch.fx cannot trace the module: {e}") from None
        self.modules = dict(self.gm.named_modules())
        self.buffers = buffers
        self.param_names = {k for k, _ in module.named_parameters()}
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise Unsupported("the module's forward takes more than one input")
        # ReLU modules/functions whose only user is a max pooling: applied after the pooling
        self.relu_after_pool: dict[Any, Any] = {}
        for node in self.gm.graph.nodes:
            if self._is_relu(node) and len(node.users) == 1:
                (user,) = node.users
                if (user.op == "call_module" and type(self.modules[user.target]).__name__ == "MaxPool2d"
                        and not self.modules[user.target].return_indices):
                    self.relu_after_pool[user] = node

    def _is_relu(self, node: Any) -> bool:
        import torch
        import torch.nn.functional as F

        if node.op == "call_module":
            return type(self.modules[node.target]).__name__ == "ReLU"
        if node.op == "call_function":
            return node.target in (torch.relu, F.relu) and not node.kwargs.get("inplace", False)
        return node.op == "call_method" and node.target == "relu"

    def __call__(self, params: dict[str, Any], x: Any, *, per_network: bool = False) -> Any:
        import torch.fx

        B = next(iter(params.values())).shape[0]
        env: dict[Any, Any] = {}
        skipped = set(self.relu_after_pool.values())
        for node in self.gm.graph.nodes:
            def load(a: Any) -> Any:
                return env[a]
            args = torch.fx.node.map_arg(node.args, load)
            kwargs = torch.fx.node.map_arg(node.kwargs, load)
            if node.op == "placeholder":
                env[node] = _Net(x) if per_network else x
            elif node.op == "get_attr":
                if node.target in self.param_names or node.target not in self.buffers:
                    raise Unsupported(f"direct use of {node.target!r}")
                env[node] = self.buffers[node.target]
            elif node in skipped:
                env[node] = args[0]
            elif node.op == "call_module":
                env[node] = self._module(node, args, kwargs, params, B)
            elif node.op in ("call_function", "call_method"):
                env[node] = self._function(node, args, kwargs, B)
            elif node.op == "output":
                out = args[0]
                if isinstance(out, (tuple, list)):
                    raise Unsupported("several outputs")
                return _net(out, B)
        raise Unsupported("no output")  # pragma: no cover

    # ---- modules --------------------------------------------------------------------------
    def _module(self, node: Any, args: tuple, kwargs: dict, params: dict[str, Any], B: int) -> Any:
        import torch
        import torch.nn.functional as F

        name = node.target
        sub = self.modules[name]
        kind = type(sub).__name__
        if kwargs or len(args) != 1:
            raise Unsupported(f"{name}: extra arguments")
        x = args[0]
        if kind == "Conv2d":
            if sub.padding_mode != "zeros":
                raise Unsupported("padding mode")
            w = params[f"{name}.weight"]
            w = w.reshape(B * w.shape[1], *w.shape[2:])
            b = params[f"{name}.bias"].reshape(-1) if sub.bias is not None else None
            if not isinstance(x, (_Net, _Maps)):
                if sub.groups != 1 or x.ndim != 4:
                    raise Unsupported("grouped convolution of a shared input")
                if not isinstance(sub.padding, str):
                    # one wide product of the shared patches with every network's filters, which
                    # lands in channels-last order: (N Ho Wo, Cin k k) @ (Cin k k, B Cout)
                    N, _, Hh, Ww = x.shape
                    (kh, kw), (ph, pw), (dh, dw), (sh, sw) = sub.kernel_size, sub.padding, sub.dilation, sub.stride
                    Ho, Wo = (Hh + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (Ww + 2 * pw - dw * (kw - 1) - 1) // sw + 1
                    cols = F.unfold(x, sub.kernel_size, sub.dilation, sub.padding, sub.stride)   # (N, Cin k k, L)
                    cols = cols.transpose(1, 2).reshape(N * Ho * Wo, -1)
                    Wm = w.reshape(w.shape[0], -1).T
                    y = torch.addmm(b, cols, Wm) if b is not None else cols @ Wm
                    return _Maps(y.view(N, Ho, Wo, -1).permute(0, 3, 1, 2), B)
                inp, groups = x.contiguous(memory_format=torch.channels_last), 1
            else:
                inp, groups = _maps(x, B), B * sub.groups
            pad = sub.padding
            if (groups > 1 and tuple(sub.stride) == (1, 1) and tuple(sub.dilation) == (1, 1)
                    and not isinstance(pad, str) and all(p <= k - 1 for p, k in zip(pad, sub.kernel_size))):
                global _CONV_FN
                if _CONV_FN is None:
                    _CONV_FN = _conv_function()
                y = _CONV_FN.apply(inp, w, b, tuple(pad), groups)
            else:
                y = F.conv2d(inp, w, b, sub.stride, pad, sub.dilation, groups)
            # channels-last throughout: oneDNN's grouped convolution and the pooling kernels are
            # several times faster on it (a 1-channel input makes oneDNN answer in NCHW)
            return _Maps(y.contiguous(memory_format=torch.channels_last), B)
        if kind == "Linear":
            W = params[f"{name}.weight"]                                   # (B, out, in)
            b = params.get(f"{name}.bias")
            if isinstance(x, _Maps):
                raise Unsupported("Linear on feature maps")
            if isinstance(x, _Net):
                t = x.t
                flat = t.reshape(B, -1, t.shape[-1])
                y = torch.bmm(flat, W.transpose(1, 2)) if b is None else torch.baddbmm(b[:, None, :], flat, W.transpose(1, 2))
                return _Net(y.view(*t.shape[:-1], W.shape[1]))
            out = W.shape[1]
            flat = x.reshape(-1, x.shape[-1])
            y = flat @ W.reshape(B * out, -1).T                             # one wide product
            if b is not None:
                y = y + b.reshape(-1)
            return _Net(y.view(-1, B, out).transpose(0, 1).reshape(B, *x.shape[:-1], out))
        if kind == "LSTM":
            return batched_lstm(sub, name, params, x, B)
        if any(True for _ in sub.parameters()) or any(True for _ in sub.buffers()):
            raise Unsupported(f"{name}: a {kind} module with parameters or buffers")
        if kind == "Dropout" or kind.startswith("Dropout"):
            if sub.training and sub.p > 0:
                raise Unsupported("dropout")
            return x
        if kind == "Flatten":
            return self._flatten(x, sub.start_dim, sub.end_dim, B)
        if kind in _CHANNELWISE_MODULES:
            if isinstance(x, _Maps):
                y = sub(x.t)
                if node in self.relu_after_pool:
                    y = torch.relu(y)
                return _Maps(y, B)
            if isinstance(x, _Net):
                t = x.t
                y = sub(t.reshape(-1, *t.shape[2:]))
                if node in self.relu_after_pool:
                    y = torch.relu(y)
                return _Net(y.view(*t.shape[:2], *y.shape[1:]))
            y = sub(x)
            return torch.relu(y) if node in self.relu_after_pool else y
        raise Unsupported(f"{name}: {kind}")

    def _flatten(self, x: Any, start: int, end: int, B: int) -> Any:
        if not isinstance(x, (_Net, _Maps)):
            return x.flatten(start, end)
        t = _net(x, B)
        nd = t.ndim - 1
        s = start if start >= 0 else nd + start
        e = end if end >= 0 else nd + end
        if s == 0:
            raise Unsupported("flatten over the batch")
        return _Net(t.flatten(s + 1, e + 1))

    # ---- functions and methods ------------------------------------------------------------
    def _function(self, node: Any, args: tuple, kwargs: dict, B: int) -> Any:
        import torch
        import torch.nn.functional as F

        fn = node.target
        batched = [a for a in list(args) + list(kwargs.values()) if isinstance(a, (_Net, _Maps, _CellUnavailable))]
        if any(isinstance(a, _CellUnavailable) for a in batched):
            raise Unsupported("the LSTM's final cell state")
        if not batched:                                                  # shared: evaluate as written
            if node.op == "call_method":
                return getattr(args[0], fn)(*args[1:], **kwargs)
            return fn(*args, **kwargs)
        if fn is operator.getitem:
            x, idx = args
            if isinstance(x, (tuple, list)):
                return x[idx]
            t = _net(x, B)
            idx = idx if isinstance(idx, tuple) else (idx,)
            if any(isinstance(i, (_Net, _Maps)) or not isinstance(i, (int, slice, type(None), type(Ellipsis)))
                   for i in idx):
                raise Unsupported("advanced indexing")
            last = x.last_step(idx) if isinstance(x, _Sequence) else None
            return _Net(last if last is not None else t[(slice(None), *idx)])
        name = fn if node.op == "call_method" else getattr(fn, "__name__", "")
        if fn in (torch.flatten,) or (node.op == "call_method" and fn == "flatten"):
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            return self._flatten(args[0], start, end, B)
        elementwise = (fn in (operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
                              torch.add, torch.sub, torch.mul, torch.div, torch.relu, torch.sigmoid,
                              torch.tanh, torch.exp, torch.abs, F.relu, F.gelu, F.silu, F.leaky_relu,
                              F.elu, F.softplus, torch.sigmoid)
                       or (node.op == "call_method" and name in _ELEMENTWISE_METHODS))
        if not elementwise or any(v is True for k, v in kwargs.items() if k == "inplace"):
            raise Unsupported(f"{name}")
        # a single batched operand keeps its layout (elementwise with scalars); otherwise (B, N, ...)
        only_maps = len(batched) == 1 and isinstance(batched[0], _Maps) and all(
            isinstance(a, (int, float, _Maps)) for a in list(args) + list(kwargs.values()))
        if only_maps:
            conv = lambda a: a.t if isinstance(a, _Maps) else a  # noqa: E731
        else:
            nd = max(_net(a, B).ndim for a in batched) - 1
            for a in list(args) + list(kwargs.values()):
                if hasattr(a, "ndim") and not isinstance(a, (_Net, _Maps)) and a.ndim > nd:
                    raise Unsupported("shared operand with more dimensions than the batched one")
            conv = lambda a: _net(a, B) if isinstance(a, (_Net, _Maps)) else a  # noqa: E731
        cargs = [conv(a) for a in args]
        ckw = {k: conv(v) for k, v in kwargs.items()}
        out = getattr(cargs[0], fn)(*cargs[1:], **ckw) if node.op == "call_method" else fn(*cargs, **ckw)
        if only_maps:
            return _Maps(out, B)
        return _Net(out)


__all__ = ["TracedBatched", "Unsupported", "batched_lstm"]
