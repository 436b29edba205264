"""Time the Olden–Jackson null networks: the batched trainer against a sequential loop.

999 permutations (+ the observed network in slot 0) of the Adult MLP: all 32,561 training rows,
107 encoded inputs, 16 sigmoid hidden units, one logit, mini-batches of 256 for 5 epochs of Adam
(lr 0.01, weight decay 1e-4), every network starting from the same θ₀. The loop trains the same
networks one after another with torch.nn + torch.optim (one intra-op thread, measured fastest on
small networks); it is linear in B, so it is timed on a subset and scaled — the output says so.
Both run in this process, on the same data, and their weights are compared on the subset.

Usage::

    python benchmarks/permutation_test.py                 # B = 999, loop timed on 20 networks
    python benchmarks/permutation_test.py --loop-subset 1000   # time the whole loop (~4 min)
    python benchmarks/permutation_test.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import machine, ratio_line  # noqa: E402
from audit.core.dataset import Encoding, read_table  # noqa: E402
from audit.train.batched import (MLPSpec, PermutedTargets, torch_default_init,  # noqa: E402
                                 train_batched, train_looped)
from audit.train.recipe import Recipe  # noqa: E402

PEAK_GFLOPS_PER_CORE = 97.0   # one core's fp32 matmul peak measured on the 2-core machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=999, help="permutations (networks = B + 1)")
    parser.add_argument("--loop-subset", type=int, default=20, help="networks the loop is timed on")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=str, default="auto", help="CPU threads for the batched trainer ('auto' = one per core)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    print(machine())
    torch.set_num_threads(1)
    here = ROOT / "examples" / "adult_mlp"
    enc = Encoding.load(here / "encoding.json")
    frame = read_table(here / "data" / "adult_train.csv.gz", na_values=["?"])
    X = enc.encode(frame)
    y = (frame["income"].astype(str).str.strip() == ">50K").to_numpy(np.float32)
    n, d = X.shape
    spec = MLPSpec((d, 16, 1), ("sigmoid",))
    recipe = Recipe(loss="bce", optimizer="adam", lr=0.01, weight_decay=1e-4, epochs=args.epochs, batch_size=256)
    theta0 = torch_default_init(spec, 0)
    seeds = np.concatenate([[-1], np.random.default_rng(0).integers(0, 2**62, size=args.B)])
    targets = PermutedTargets(y, seeds)
    nets = args.B + 1
    workers = None if args.workers == "auto" else int(args.workers)
    print(f"Adult MLP: {n:,} rows x {d} inputs, 16 sigmoid hidden units; {args.epochs} epochs of Adam, "
          f"batch 256; B = {args.B} permutations + the observed network = {nets} networks; "
          f"{os.cpu_count()} CPU cores; torch {torch.__version__}")

    t0 = time.perf_counter()
    c0 = time.process_time()
    fit = train_batched(X, targets, spec, recipe, theta0, schedule_seed=0, device=args.device, n_workers=workers)
    batched_s = time.perf_counter() - t0
    batched_cpu = time.process_time() - c0
    steps = args.epochs * -(-n // 256)
    flops = 2 * 2 * n * d * 16 * args.epochs * nets          # first layer forward + weight gradient
    print(f"batched: {batched_s:.1f} s wall ({batched_cpu:.1f} s CPU) on {fit.device}, "
          f"{fit.n_workers} worker thread(s), chunks of {fit.chunk_size} networks, {steps} steps per chunk; "
          f"{len(np.flatnonzero(fit.diverged))} diverged; dense-equivalent first-layer throughput "
          f"{flops / batched_s / 1e9:.0f} GFLOP/s "
          f"({100 * flops / batched_s / 1e9 / (PEAK_GFLOPS_PER_CORE * (fit.n_workers if args.device == 'cpu' else 1)):.0f}% "
          f"of {fit.n_workers if args.device == 'cpu' else 1} core(s)' fp32 matmul peak; the sparse one-hot path does fewer real FLOPs)")

    k = min(args.loop_subset, nets)
    t0 = time.perf_counter()
    c0 = time.process_time()
    loop = train_looped(X, targets, spec, recipe, theta0, schedule_seed=0, networks=range(k))
    loop_k = time.perf_counter() - t0
    loop_s = loop_k * nets / k
    loop_cpu = (time.process_time() - c0) * nets / k
    scaled = "" if k == nets else f" (timed on {k} networks: {loop_k:.1f} s, scaled linearly to {nets})"
    print(f"loop:    {loop_s:.1f} s wall ({loop_cpu:.1f} s CPU){scaled}")
    diff = max(float(np.abs(fit.weights.W[l][:k] - loop.weights.W[l]).max()) for l in range(2))
    print(f"agreement on the {k} looped networks: max |weight difference| = {diff:.2e}")
    print(ratio_line("wall, loop / batched", loop_s, batched_s)
          + "   (targets: batched < 15 s on the 2-core machine, ratio >= 10x)")
    # CPU time is less inflated by other processes than wall time; the batched side's CPU time
    # sums its worker threads, so this ratio is the work saved, not counting the second core.
    print(ratio_line("CPU, loop / batched", loop_cpu, batched_cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
