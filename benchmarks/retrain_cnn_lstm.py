"""Cost of retraining the bundled CNN and LSTM B = 99 times (the response-permutation null),
against the compute floor measured in the same run.

Each null network starts from the example's theta_0 (``model_init.safetensors``), sees the
training labels permuted (one permutation per network) and follows the example's own recipe
(training.json, as ``attribution_significance`` reads it). Two ways are timed, on the same cores:

- sequential: :func:`audit.train.functional.train_sequential`, one ``nn.Module`` and one
  ``torch.optim`` optimizer per network (what a plain loop does), the networks shared out over
  the same worker threads as the batched run, one torch thread each;
- batched: :func:`audit.train.functional.train_functional`, the code the audit runs.

The floor is FLOPs x B / R: FLOPs counted analytically from the layer shapes (convolution
2 Cin Cout k^2 Hout Wout per sample, Linear 2 in out, LSTM gates 2 4H (I + H) per step per sample,
x3 for forward + backward, times the samples the schedule visits), R the fp32 rate of a
1024 x 1024 torch matmul on the same number of threads, timed in this run before and after each
case (the best of several repeats, the higher of the two: a peak, so the floor is a strict one). Only ratios are meaningful: on a shared machine
the load average (printed before and after) moves every number.

A second floor, printed beside it and never instead of it: the same FLOPs at the rate of the
model's own products (:func:`products`: each convolution as patches x filters, each Linear layer,
each LSTM layer's gate product per time step, at one optimizer step's rows), timed as batched
matmuls over one block of networks on one thread and multiplied by the workers. It says how
fast those shapes can go on this CPU, which the 1024 x 1024 matmul does not. ``--profile`` prints
the self CPU time per operation of one block (the block size the trainer uses at the largest B,
one thread) against the floor's share of that block's step, as the README's table.

What the profiles showed (torch.profiler, one thread, B = 100; a prefix of each schedule)
-----------------------------------------------------------------------------------------
* CNN under ``vmap``: ReLU's backward (30 %), zero fills (14 %), max pooling (11 % + 15 %
  backward) on the strided layouts vmap leaves, the convolutions only ~26 %. oneDNN's grouped
  convolution itself runs near the matmul rate on channels-last maps (forward 70-80 GFLOP/s on
  one thread against 80 for the matmul) but 2.5x slower on NCHW, and max pooling 5x slower.
  Hence :mod:`audit.train.traced`: feature maps of the B networks as the channels of one
  channels-last batch, the first convolution (shared input) as one wide product that lands in
  channels-last order, ReLU moved after the pooling, and the input gradient of the grouped
  convolution as a forward convolution with flipped filters (59 vs 35 GFLOP/s for oneDNN's
  backward-data kernel). Then glibc returning the 26 MB temporaries to the system at every
  step and faulting them in again cost ~20 % (the trainer now keeps freed memory while it runs).
  What remains: the grouped convolution's three passes at 50-70 GFLOP/s and ~10 elementwise /
  layout passes over the feature maps per step.
* CNN in the traced program (B = 13 per block, as at B = 99): the gradient reaching the pooled
  maps through the (B, N, ...) view of the classifier arrived strided in network order, where
  max pooling's backward ran 9x (6.2 vs 0.7 ms) and ReLU's 2x slower than on channels-last
  memory; it is now made channels-last first. torch.optim.Adam's default on CPU is a loop of
  ~10 operations per parameter: the batched trainer uses its fused kernel (same update to
  round-off). At B = 13 on one thread the convolutions' three passes are the largest part of a
  step (35 % before these two changes); max pooling (forward, the zero fill and scatter of its
  backward), the classifier's products and the layout copies most of the rest.
* LSTM (H = 16, 5 inputs, 8 steps, 135 windows, full batch): the gate products are tiny
  (K = 22), so the elementwise gate arithmetic and per-operation dispatch cost more than the
  products: under ``vmap`` or autograd over an unrolled loop ~75 operations per step, half the
  time in ``aten::mul``. The hand-written backward through time (one product per step over
  ``[x_t, 1, h_{t-1}]``, one product for all steps' weight gradient, gate derivatives taken
  while the gates are in cache) cut the operations to ~20 per time step, but the rest is
  memory-bound elementwise work over (B, N, H) arrays that the floor does not count.
  torch 2.13's CPU tanh is no slower than sigmoid (9.8 vs 12.7 us on a (13, 16, 135) slab), so
  the gates use it directly (the former 2 sigmoid(2x) - 1 took three extra passes), and the
  backward's per-step product covers the recurrent rows only (the input gradient of all steps is
  one product): ~10 % each way. Computing every gate-derivative factor for all steps at once
  after the loop (fewer, larger operations) was slower: those passes leave the cache.
* Issue 17 round (one thread, one block of 13 networks as at B = 99, A/B in one process): the
  LSTM's buffers now live in a per-thread workspace reused by every step (a call owns it from
  forward to backward), each step's views are made once per workspace (slicing was ~5 % of a
  step), the gates are ordered i, f, o, g (one sigmoid over 3H rows), h is written straight into
  the next product's input block: 50 steps 233-256 ms against 273-320 ms before (15 %, same
  parameters to 2.4e-7). Measured and dropped: a max pooling + ReLU of three ``torch.maximum``
  and first-maximum masks (2.7-3.6 ms against 0.9-1.05 ms for ``max_pool2d`` + ReLU, forward
  and backward of (64, 208, 8, 8)); the convolution's bias gradient inside oneDNN's
  ``convolution_backward`` (971 against 934 us with a separate sum); the LSTM's weight gradient
  as per-step ``baddbmm`` (620 us) or per-network ``mm`` (450 us) against one ``bmm`` (395 us);
  the same loops under TorchScript, 9 % faster than the Python loop but ``torch.jit.script`` is
  deprecated in torch 2.13. oneDNN's grouped convolution on (64, 8G, 8, 8) channels-last maps,
  one thread: forward 169 GFLOP/s, input gradient as a flipped forward 92 (its native kernel 85),
  weight gradient 161, flat from G = 4 to 50; NCHW forward 39. torch.compile was not tried: it
  needs a C++ compiler, which CI's machine is not known to have (``.ci/run`` installs none).

Usage: python benchmarks/retrain_cnn_lstm.py [--B 8,32,99] [--repeats 3] [--workers 2] [--seq-networks 10] [--full]
       [--profile | --profile-only]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit.train.functional import (batched_module, train_functional,  # noqa: E402
                                    train_sequential)
from audit.train.recipe import Recipe  # noqa: E402
from _common import machine  # noqa: E402


def _import(example: str, cls: str):
    """The example's model class (model.py in its folder)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_bench_{example}", ROOT / "examples" / example / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, cls)


def matmul_rate(threads: int, n: int = 1024, repeats: int = 7) -> float:
    """Best fp32 GFLOP/s of an n x n matmul on ``threads`` torch threads."""
    return matmul_rates(threads, n, repeats)[0]


def matmul_rates(threads: int, n: int = 1024, repeats: int = 7) -> tuple[float, float]:
    """Best fp32 GFLOP/s of an n x n matmul on ``threads`` torch threads, by wall time and per
    core by CPU time (this process's user + system seconds, which other processes' load
    inflates much less than the wall clock)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(5):
            a @ b
        best = min(best, (time.perf_counter() - t0) / 5)
        best_cpu = min(best_cpu, (time.process_time() - c0) / 5)
    torch.set_num_threads(prev)
    return 2 * n ** 3 / best / 1e9, 2 * n ** 3 / best_cpu / 1e9


def cnn_flops_per_sample(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one sample, from the layer shapes (convolutions and Linear layers)."""
    total = 0
    hooks = []

    def conv(m, inp, out):
        nonlocal total
        cin, cout = m.in_channels, m.out_channels
        k = m.kernel_size[0] * m.kernel_size[1]
        total += 2 * (cin // m.groups) * cout * k * out.shape[-2] * out.shape[-1]

    def lin(m, inp, out):
        nonlocal total
        total += 2 * m.in_features * m.out_features

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(lin))
    with torch.no_grad():
        net(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total


def products(net: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, int, int, int, int]]:
    """The model's matrix products for one optimizer step on the rows ``x``, as
    ``(layer, M, K, N, times)`` per network: a convolution as its patches times its filters
    ``(rows Hout Wout, Cin k^2 / groups, Cout)``, a Linear layer ``(rows, in, out)``, an LSTM
    layer's gates per time step ``(rows, I + H, 4H)`` T times."""
    found = []
    hooks = []

    def conv(name):
        def hook(m, inp, out):
            k = m.kernel_size[0] * m.kernel_size[1]
            found.append((name, out.shape[0] * out.shape[-2] * out.shape[-1], m.in_channels // m.groups * k,
                          m.out_channels, 1))
        return hook

    def lin(name):
        def hook(m, inp, out):
            found.append((name, inp[0].numel() // m.in_features, m.in_features, m.out_features, 1))
        return hook

    def lstm(name):
        def hook(m, inp, out):
            x0 = inp[0]
            T, rows = (x0.shape[1], x0.shape[0]) if m.batch_first else (x0.shape[0], x0.shape[1])
            for layer in range(m.num_layers):
                width = m.input_size if layer == 0 else m.hidden_size
                found.append((f"{name} layer {layer}", rows, width + m.hidden_size, 4 * m.hidden_size, T))
        return hook

    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv(name)))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(lin(name)))
        elif isinstance(m, torch.nn.LSTM):
            hooks.append(m.register_forward_hook(lstm(name)))
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return found


def shape_rate(prods: list[tuple[str, int, int, int, int]], networks: int, repeats: int = 5) -> float:
    """GFLOP/s of the model's own products (forward shapes) as batched matmuls over ``networks``
    networks on one thread: their FLOPs over the best time of the products one after another."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    mats = [(torch.randn(networks, M, K), torch.randn(networks, K, N), t) for _, M, K, N, t in prods]
    flops = sum(2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2] * t for a, b, t in mats)

    def once() -> None:
        for a, b, t in mats:
            for _ in range(t):
                torch.bmm(a, b)

    once()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            once()
        best = min(best, (time.perf_counter() - t0) / 10)
    torch.set_num_threads(prev)
    return flops / best / 1e9


def cnn_case() -> dict:
    ex = ROOT / "examples" / "digits_cnn"
    doc = json.loads((ex / "training.json").read_text())
    recipe = Recipe.from_mapping(doc, source="training.json")
    with np.load(ex / "data" / "digits_train.npz") as z:
        X = torch.from_numpy(z["X"].astype(np.float32) / doc["data"]["pixel_scale"])
        y = torch.from_numpy(z["y"].astype(np.int64))
    fit, _ = recipe.fit_rows(len(X))
    X, y = X[fit], y[fit]
    net = _import("digits_cnn", "DigitsCNN")()
    per_sample = cnn_flops_per_sample(net, tuple(X.shape[1:]))
    return {"name": "digits_cnn", "net": net, "X": X, "y": y, "recipe": recipe,
            "theta0": load_file(str(ex / "model_init.safetensors")),
            "flops_per_epoch": 3 * per_sample * len(X), "unit": "epochs",
            "detail": f"{per_sample / 1e3:.1f} kFLOP forward per sample, {len(X)} rows x {recipe.epochs} epochs"}


def lstm_case() -> dict:
    from audit.core.dataset import DatasetSpec, Encoding
    from audit.core.modalities import SequenceSpec, build_sequence_data

    ex = ROOT / "examples" / "macro_lstm"
    cfg = json.loads((ex / "training.json").read_text())
    desc = cfg["data"]  # what the model was trained on
    data = build_sequence_data(
        SequenceSpec(path=str(ex / "data" / "macro_quarterly.csv"), window=desc["window"], horizon=desc["horizon"],
                     time_column="date", time_range=("", desc["train_end"])),
        DatasetSpec(target=desc["target"], features=tuple(desc["features"]), task="regression"),
        encoding=Encoding.load(ex / "encoding.json"))
    # the recipe as examples/macro_lstm/audit.toml completes it
    recipe = Recipe.from_mapping(cfg | {"batch_size": "full", "loss": "mse", "loss_scale": "target_scale"},
                                 source="training.json")
    X = torch.from_numpy(data.X)
    y = torch.from_numpy(data.y.astype(np.float32))
    net = _import("macro_lstm", "MacroLSTM")(n_features=len(desc["features"]),
                                            target_index=desc["features"].index(desc["target"]))
    H, I, T = net.lstm.hidden_size, net.lstm.input_size, X.shape[1]
    per_sample = 2 * 4 * H * (I + H) * T + 2 * H * 1
    return {"name": "macro_lstm", "net": net, "X": X, "y": y, "recipe": recipe,
            "theta0": load_file(str(ex / "model_init.safetensors")),
            "flops_per_epoch": 3 * per_sample * len(X), "unit": "steps",
            "detail": f"{per_sample / 1e3:.1f} kFLOP forward per sample, {len(X)} windows x {recipe.epochs} full-batch steps"}


def _sequential(case: dict, recipe: Recipe, Y: torch.Tensor, networks: list[int], workers: int) -> list:
    """train_sequential over ``networks``, shared out over ``workers`` threads (one torch thread each)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(nets: list[int]) -> list:
        torch.set_num_threads(1)
        return train_sequential(case["net"], case["theta0"], case["X"], Y, recipe, networks=nets)

    shares = [networks[w::workers] for w in range(workers) if networks[w::workers]]
    with ThreadPoolExecutor(max_workers=len(shares)) as pool:
        parts = list(pool.map(one, shares))
    out = {}
    for share, part in zip(shares, parts):
        out.update(zip(share, part))
    return [out[b] for b in networks]


def run_case(case: dict, B: int, units: int, workers: int, seq_networks: int, rate: float) -> dict:
    import dataclasses

    recipe = dataclasses.replace(case["recipe"], epochs=units)
    rng = np.random.default_rng(12345)
    y = case["y"]
    Y = torch.stack([y] + [y[torch.from_numpy(rng.permutation(len(y)))] for _ in range(B - 1)])
    k = min(seq_networks, B)
    # warm-up outside the timing (first-call allocations, tracing)
    train_functional(case["net"], case["theta0"], case["X"], Y[:2], dataclasses.replace(recipe, epochs=1), n_workers=1)
    t0, c0 = time.perf_counter(), time.process_time()
    seq = _sequential(case, recipe, Y, list(range(k)), workers)
    t_seq = (time.perf_counter() - t0) * B / k
    cpu_seq = (time.process_time() - c0) * B / k
    # the one-off set-up of a batched run (tracing, the probe against the module) is paid once,
    # not once per timed epoch, so it is left out of the scaling: timed where train_functional
    # calls it, in the same run (a separate timing, under load, could exceed the whole run)
    import audit.train.functional as functional

    setups = []

    def timed_setup(*a, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return batched_module(*a, **kw)
        finally:
            setups.append((time.perf_counter() - t0, time.process_time() - c0))

    functional.batched_module = timed_setup
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        fit = train_functional(case["net"], case["theta0"], case["X"], Y, recipe, n_workers=workers)
        t_total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
    finally:
        functional.batched_module = batched_module
    setup, cpu_setup = map(sum, zip(*setups))
    t_bat, cpu_bat = t_total - setup, cpu_total - cpu_setup
    diff = max(float((fit.params[n][b] - seq[b][n]).abs().max()) for b in range(k) for n in seq[b])
    flops = case["flops_per_epoch"] * units * B
    # the second floor: the model's own products, batched over a block, one thread per worker
    rows = case["X"][: case["recipe"].step_rows(len(case["X"]))]
    srate = shape_rate(products(case["net"], rows), block_size(B)) * workers
    return {"sequential_s": t_seq, "batched_s": t_bat, "floor_s": flops / (rate * 1e9), "flops": flops,
            "shape_floor_s": flops / (srate * 1e9), "shape_rate": srate, "cpu_seq": cpu_seq, "cpu_bat": cpu_bat,
            "mode": fit.mode, "max_param_diff": diff, "seq_timed": k, "setup_s": setup}


def block_size(B: int) -> int:
    """Networks per block in train_functional at B (its blocks are what a worker runs)."""
    from audit.train.functional import _BLOCKS, _MIN_NETWORKS

    return min(B, max(_MIN_NETWORKS, -(-B // _BLOCKS)))


def profile_block(case: dict, B: int, units: int, rate: float, workers: int, top: int = 14) -> None:
    """Self CPU time per operation of one block of networks (the size the trainer uses at B) on
    one thread, per optimizer step, against the floor's share of that step (the block's FLOPs at
    1/workers of the matmul rate R); markdown rows for the README."""
    import dataclasses

    from torch.profiler import ProfilerActivity, profile

    from audit.train.functional import _keep_freed_memory, _train_part, batched_module

    size = block_size(B)
    recipe = dataclasses.replace(case["recipe"], epochs=units)
    rng = np.random.default_rng(12345)
    y = case["y"]
    Y = torch.stack([y] + [y[torch.from_numpy(rng.permutation(len(y)))] for _ in range(size - 1)])
    net, theta0, X = case["net"], case["theta0"], case["X"]
    fwd = batched_module(net, theta0, X[:4])
    names = [k for k, _ in net.named_parameters()]
    steps = len(recipe.batches(len(X)))
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _keep_freed_memory():
            _train_part(fwd, names, theta0, X, Y, recipe, None)
            t0 = time.perf_counter()
            _train_part(fwd, names, theta0, X, Y, recipe, None)
            wall = (time.perf_counter() - t0) / steps
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                _train_part(fwd, names, theta0, X, Y, recipe, None)
    finally:
        torch.set_num_threads(prev)
    floor = case["flops_per_epoch"] * units * size / steps / (rate / workers * 1e9)
    ops = sorted(((e.key, e.self_cpu_time_total / 1e3 / steps, e.count / steps) for e in prof.key_averages()),
                 key=lambda r: -r[1])
    total = sum(r[1] for r in ops)
    print(f"\n{case['name']}: one block of {size} networks (B = {B}), one thread, {steps} steps; unprofiled "
          f"{wall * 1e3:.2f} ms per step = {wall / floor:.1f}x the floor's share {floor * 1e3:.2f} ms "
          f"(R = {rate:.0f} GFLOP/s over {workers} threads); profiled self CPU sums to {total:.2f} ms per step")
    print("| operation | calls per step | self CPU ms per step | share | x floor |")
    print("|---|---|---|---|---|")
    for key, ms, calls in ops[:top]:
        print(f"| `{key}` | {calls:.0f} | {ms:.3f} | {ms / total:.0%} | {ms / (floor * 1e3):.2f} |")
    rest = ops[top:]
    ms = sum(r[1] for r in rest)
    print(f"| {len(rest)} other operations | {sum(r[2] for r in rest):.0f} | {ms:.3f} | {ms / total:.0%} | "
          f"{ms / (floor * 1e3):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", default="99", help="network counts, comma-separated (e.g. 8,32,99)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of every (model, B); the summary gives the range")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="threads (one torch thread each) for both ways; the floor uses as many")
    ap.add_argument("--cnn-epochs", type=int, default=2)
    ap.add_argument("--lstm-steps", type=int, default=100)
    ap.add_argument("--seq-networks", type=int, default=10,
                    help="networks timed sequentially (the cost per network is the same for all; scaled to B)")
    ap.add_argument("--full", action="store_true", help="time the full schedules (slow)")
    ap.add_argument("--only", choices=("digits_cnn", "macro_lstm"))
    ap.add_argument("--profile", action="store_true",
                    help="then profile one block of networks at the largest B (per operation, against the floor)")
    ap.add_argument("--profile-only", action="store_true", help="the profile alone, no timings")
    args = ap.parse_args()
    Bs = [int(b) for b in args.B.split(",")]
    rate = matmul_rate(args.workers)
    print(f"B = {args.B} networks, {args.workers} worker(s) x 1 torch thread, torch {torch.__version__}; "
          f"{machine()} at the start")
    print(f"fp32 matmul 1024x1024 on {args.workers} thread(s): {rate:.0f} GFLOP/s (best of 7, this run)")
    summary: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for case_fn, short in ((cnn_case, args.cnn_epochs), (lstm_case, args.lstm_steps)):
        case = case_fn()
        if (args.only and case["name"] != args.only) or args.profile_only:
            continue
        full = case["recipe"].epochs
        units = full if args.full else min(short, full)
        k = full / units
        per_net = case["flops_per_epoch"] * full
        print(f"\n{case['name']}: {case['detail']}; FLOPs per network per schedule (x3 fwd+bwd): "
              f"{per_net / 1e9:.2f} GFLOP; timed {units} of {full} {case['unit']} (full schedule = x{k:g})")
        for _ in range(args.repeats):
            for B in Bs:
                rate, core = matmul_rates(args.workers)  # the floor from the rate just before this case
                r = run_case(case, B, units, args.workers, args.seq_networks, rate)
                # the rate again after the timings: on a shared machine it moves, and so does the floor
                after, core_after = matmul_rates(args.workers)
                r["floor_s"] *= rate / max(rate, after)
                rate, core = max(rate, after), max(core, core_after)
                # CPU seconds against the floor's CPU seconds (the FLOPs at one core's rate): the
                # work's efficiency, steadier under load than wall time; idle cores do not count
                over_cpu = r["cpu_bat"] / (r["flops"] / (core * 1e9))
                seq_over_bat = r["sequential_s"] / r["batched_s"]
                over_floor = r["batched_s"] / r["floor_s"]
                over_shape = r["batched_s"] / r["shape_floor_s"]
                summary.setdefault((case["name"], B), []).append((seq_over_bat, over_floor, rate, over_shape,
                                                                  r["shape_rate"], r["cpu_seq"] / r["cpu_bat"],
                                                                  over_cpu, core))
                print(f"  B = {B:3d}: floor {k * r['floor_s']:.1f} s at {rate:.0f} GFLOP/s | batched ({r['mode']}) "
                      f"{k * r['batched_s'] + r['setup_s']:.1f} s (set-up {r['setup_s']:.1f} s) = {over_floor:.2f}x floor "
                      f"({r['flops'] / r['batched_s'] / 1e9:.1f} GFLOP/s) | sequential {k * r['sequential_s']:.1f} s "
                      f"(timed on {r['seq_timed']}, scaled) = {r['sequential_s'] / r['floor_s']:.2f}x floor | "
                      f"sequential / batched {seq_over_bat:.2f}x | max |param diff| {r['max_param_diff']:.1e} | "
                      f"second floor, the model's own products ({r['shape_rate']:.0f} GFLOP/s): "
                      f"{k * r['shape_floor_s']:.1f} s, batched = {over_shape:.2f}x it | CPU time: batched "
                      f"{k * r['cpu_bat']:.1f} s = {over_cpu:.2f}x the floor's at {core:.0f} GFLOP/s per core, "
                      f"sequential {k * r['cpu_seq']:.1f} s, sequential / batched {r['cpu_seq'] / r['cpu_bat']:.2f}x "
                      f"[{machine()}]")
    print(f"\nsummary over {args.repeats} run(s) (ranges), {machine()} at the end:")
    for (name, B), rows in summary.items():
        sb, of, rt, os_, sr, cs, oc, cr = zip(*rows)
        print(f"  {name:<10} B = {B:3d}: sequential / batched {min(sb):.2f}-{max(sb):.2f}x, "
              f"batched {min(of):.2f}-{max(of):.2f}x the floor (matmul {min(rt):.0f}-{max(rt):.0f} GFLOP/s), "
              f"{min(os_):.2f}-{max(os_):.2f}x the second floor (own products {min(sr):.0f}-{max(sr):.0f} GFLOP/s); "
              f"CPU time: sequential / batched {min(cs):.2f}-{max(cs):.2f}x, batched {min(oc):.2f}-{max(oc):.2f}x "
              f"the floor's (matmul {min(cr):.0f}-{max(cr):.0f} GFLOP/s per core)")
    if args.profile or args.profile_only:
        for case_fn, short in ((cnn_case, 1), (lstm_case, args.lstm_steps)):
            case = case_fn()
            if args.only and case["name"] != args.only:
                continue
            profile_block(case, max(Bs), min(short, case["recipe"].epochs), matmul_rate(args.workers), args.workers)


if __name__ == "__main__":
    main()
