"""Error rates of the permutation machinery, measured by simulation (the numbers in the README and
the report partials come from here).

Part ``maxt``: family-wise error of Westfall–Young step-down max-T under an exactly exchangeable
null (B + 1 i.i.d. rows of m = 5 correlated statistics, normal or log-normal; row 0 plays the
observed), at B = 19, 99, 999: standardizing by the permuted draws alone (the code before the
fix) against standardizing by all B + 1 draws (the fix). Pure numpy, about a minute.

Part ``olden``: size of the Olden–Jackson randomization test (two-sided, alpha = 0.05, B = 99,
y independent of X, 60 rows, 3 inputs, one hidden layer of 3 sigmoid units, 10 restarts) with

- ``before``: θ₀ = the restart with the lowest validation loss on the real outcome, null networks
  retrained from θ₀ (the procedure before the fix, written out here from the same building
  blocks because the library no longer offers it);
- ``first``: the library's default, θ₀ = the first restart (chosen without the outcome);
- ``per_network``: the library's option, every null network keeps its own best restart.

Part ``noise``: the same network on data where x0 carries signal and x2 is pure noise; how
often x2 is marked significant (BH, alpha 0.05) by the response-permutation test, and how far
its p-values are from uniform (they answer "y is unrelated to every input", which is false).

Each rate is printed with its Monte Carlo standard error (for the per-input rates, from the
per-replication means, so the correlation between a data set's inputs is accounted for).

Usage::

    python benchmarks/permutation_size.py maxt
    python benchmarks/permutation_size.py olden --reps 300 --modes before,first
    python benchmarks/permutation_size.py noise --reps 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rate(hits: np.ndarray) -> str:
    """``mean (MC s.e.)`` of per-replication rates."""
    hits = np.asarray(hits, dtype=float)
    se = hits.std(ddof=1) / np.sqrt(len(hits)) if len(hits) > 1 else float("nan")
    return f"{hits.mean():.4f} ({se:.4f})"


def part_maxt(args: argparse.Namespace) -> None:
    from audit.stats.multiplicity import _maxt

    print("max-T family-wise error, two-sided, alpha 0.05, m = 5 correlated statistics, exchangeable null")
    print(f"{'B':>5} {'null':>10} {'reps':>6}  {'before (null-only SD)':>22}  {'after (B+1 draws)':>20}")
    for B, reps in ((19, args.reps_maxt), (99, args.reps_maxt), (999, max(1, args.reps_maxt // 5))):
        for dist in ("normal", "lognormal"):
            rng = np.random.default_rng([B, len(dist)])
            before, after = np.zeros(reps), np.zeros(reps)
            for i in range(reps):
                z = rng.normal(size=(B + 1, 5)) + 0.7 * rng.normal(size=(B + 1, 1))
                if dist == "lognormal":
                    z = np.exp(z)
                before[i] = (_maxt(z[0], z[1:], "two-sided", include_observed=False) <= 0.05).any()
                after[i] = (_maxt(z[0], z[1:], "two-sided", include_observed=True) <= 0.05).any()
            print(f"{B:>5} {dist:>10} {reps:>6}  {rate(before):>22}  {rate(after):>20}", flush=True)


def _setup(seed: int, signal: bool):
    import pandas as pd

    from audit.core.dataset import DatasetSpec, build_audit_data

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 3))
    y = (1.0 * X[:, 0] if signal else 0.0) + rng.normal(size=60)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    frame["y"] = y
    return build_audit_data(frame, DatasetSpec(target="y", task="regression")), rng


EPOCHS = [15]     # set from --epochs


def _library(data, rng, selection: str, n_restarts: int, B: int):
    from audit.core.method import RunContext
    from audit.methods.connection_weights import ConnectionWeightsConfig, _Network, randomization_test
    from audit.train.batched import MLPSpec, Weights
    from audit.train.recipe import Recipe

    spec = MLPSpec((3, 3, 1), ("sigmoid",))
    recipe = Recipe(loss="mse", lr=0.05, epochs=EPOCHS[0], batch_size=60, weight_decay=1e-3, n_restarts=n_restarts,
                    validation_fraction=0.2)
    net = _Network("torch", spec, Weights([np.zeros((1, 3, 3)), np.zeros((1, 3, 1))],
                                          [np.zeros((1, 3)), np.zeros((1, 1))]), "mse", "value", ("y",))
    cfg = ConnectionWeightsConfig(n_permutations=B, per_input=0, selection=selection, n_workers=1)
    r = randomization_test(None, data, net, recipe, "benchmark", cfg, RunContext(rng=rng))
    return np.array([t.p_two_sided for t in r.inputs]), np.array([t.p_bh for t in r.inputs])


def _before(data, rng, n_restarts: int, B: int):
    """The pre-fix procedure: θ₀ = best restart by validation loss on the real y."""
    from audit.methods.connection_weights import _loss_values, olden_importance
    from audit.stats.multiplicity import benjamini_hochberg
    from audit.stats.permutation import permutation_pvalues
    from audit.train.batched import (FixedTargets, MLPSpec, PermutedTargets, forward_many,
                                     torch_default_init, train_batched)

    spec = MLPSpec((3, 3, 1), ("sigmoid",))
    recipe = Recipe(loss="mse", lr=0.05, epochs=EPOCHS[0], batch_size=60, weight_decay=1e-3, n_restarts=n_restarts,
                    validation_fraction=0.2)
    X = data.X.astype(np.float32)
    y = data.y.astype(np.float32)
    fit, val = (np.sort(rows) for rows in recipe.fit_rows(len(X)))
    scale = X[fit].std(0).astype(np.float64)
    inits = [torch_default_init(spec, recipe.seed + r) for r in range(n_restarts)]
    losses = []
    for r in range(n_restarts):
        f = train_batched(X[fit], FixedTargets(y[fit], 1), spec, recipe, inits[r], schedule_seed=recipe.seed + r,
                          n_workers=1)
        losses.append(_loss_values(forward_many(f.weights, spec, X[val]), y[val], "mse")[0])
    best = int(np.nanargmin(losses))
    seeds = np.concatenate([[-1], rng.integers(0, 2**62, size=B)])
    f = train_batched(X[fit], PermutedTargets(y[fit], seeds), spec, recipe, inits[best],
                      schedule_seed=recipe.seed + best, n_workers=1)
    cw = olden_importance(f.weights, scale=scale, mode="value")[:, :, 0]
    p = permutation_pvalues(cw[0], cw[1:]).two_sided
    return p, benjamini_hochberg(p)


def part_olden(args: argparse.Namespace, signal: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    modes = args.modes.split(",")
    what = "x2 is pure noise, x0 carries signal" if signal else "y independent of X"
    EPOCHS[0] = args.epochs
    print(f"Olden–Jackson test, two-sided, alpha 0.05, B = {args.B}, {args.restarts} restarts, {args.epochs} "
          f"full-batch epochs, {what}, {args.reps} data sets")
    for mode in modes:
        t0 = time.perf_counter()
        raw, bh, pvals = [], [], []
        for s in range(args.reps):
            data, rng = _setup(5000 + s, signal)
            p, q = _before(data, rng, args.restarts, args.B) if mode == "before" else \
                _library(data, rng, mode, args.restarts, args.B)
            pvals.append(p)
            raw.append(np.mean(p <= 0.05) if not signal else float(p[2] <= 0.05))
            bh.append(np.mean(q <= 0.05) if not signal else float(q[2] <= 0.05))
        pvals = np.array(pvals)
        if signal:
            from scipy.stats import kstest

            ks = kstest(pvals[:, 2], "uniform")
            print(f"{mode:>12}: x2 flagged after BH {rate(bh)}, p <= 0.05 unadjusted {rate(raw)}; "
                  f"x2's p-values: median {np.median(pvals[:, 2]):.3f}, KS distance from uniform "
                  f"{ks.statistic:.3f} (p = {ks.pvalue:.2g}); x0 p <= 0.05 in {np.mean(pvals[:, 0] <= 0.05):.3f}; "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        else:
            print(f"{mode:>12}: size (per input) {rate(raw)}; any input after BH {rate(np.array(bh) > 0)}; "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["maxt", "olden", "noise"])
    parser.add_argument("--reps-maxt", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--B", type=int, default=99)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15, help="full-batch Adam steps (lr 0.05)")
    parser.add_argument("--modes", default="before,first,per_network")
    args = parser.parse_args(argv)
    print(machine())
    if args.part == "maxt":
        part_maxt(args)
    else:
        part_olden(args, signal=args.part == "noise")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
