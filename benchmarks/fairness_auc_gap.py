"""Simulated error rates of the fairness method's AUC-gap interval (:func:`audit.stats.auc.auc_gap_interval`).

Each group is a data set of ``m`` positives and ``n`` negatives with scores drawn as in
benchmarks/auc_interval.py (binormal, a wide class, scores tied in 7 levels, or perfectly
separated); its exact AUC (ties one half) and smaller class feed the gap interval, max − min
over the groups or the largest gap to group 0 as the reference. The truth is the population gap
of the true AUCs. For each cell it prints, at 95 %, ``lo>D`` = P(lower bound above the true gap)
(a ``[gate]`` ``max`` rule at the true gap breaches falsely) and ``hi<D`` = P(upper bound below
it) (it passes falsely), each nominally at most 2.5 %, the mean width and ``lo>0``, how often
the interval excludes "no gap" (power, where the true gap is not 0); flagged (``!``) where
a rate exceeds 2.5 % by more than three Monte Carlo standard errors.

Usage: python benchmarks/fairness_auc_gap.py [--reps 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine  # noqa: E402
from auc_interval import tables, truth  # noqa: E402

from audit.stats.auc import auc_gap_interval  # noqa: E402
from audit.stats.bootstrap import auc_from_cells  # noqa: E402

#: cell -> (reference or None, groups as (rows of the rarer class, rows of the other, AUC, shape)).
#: Tiny groups (5–30 rows of a class), AUC 0.5–1, zero and planted gaps.
CELLS: dict[str, tuple[int | None, tuple[tuple[int, int, float, str], ...]]] = {
    "2 x 5+20 same 0.75": (None, ((5, 20, 0.75, "binormal"), (5, 20, 0.75, "binormal"))),
    "2 x 5+5 same 0.5": (None, ((5, 5, 0.5, "binormal"), (5, 5, 0.5, "binormal"))),
    "2 x 10+40 same 0.97": (None, ((10, 40, 0.97, "binormal"),) * 2),
    "2 x 30+30 same 0.995": (None, ((30, 30, 0.995, "binormal"),) * 2),
    "2 x 5+50 same 1": (None, ((5, 50, 1.0, "perfect"),) * 2),
    "2 x 10+90 same ties 0.9": (None, ((10, 90, 0.9, "ties"),) * 2),
    "3 x 30+100 same 0.9": (None, ((30, 100, 0.9, "binormal"),) * 3),
    "10 x 5+25 same 0.75": (None, ((5, 25, 0.75, "binormal"),) * 10),
    "300+30 vs 5+20 gap 0.75/0.9": (None, ((300, 1000, 0.9, "binormal"), (5, 20, 0.75, "binormal"))),
    "100+100 vs 30+30 gap 0.9/0.5": (None, ((100, 100, 0.9, "binormal"), (30, 30, 0.5, "binormal"))),
    "30+300 vs 10+100 gap 0.995/0.97": (None, ((30, 300, 0.995, "pos_wide"), (10, 100, 0.97, "neg_wide"))),
    "5+5 vs 5+5 gap 1/0.75": (None, ((5, 5, 1.0, "perfect"), (5, 5, 0.75, "binormal"))),
    "2 x 500+500 gap 0.8/0.9": (None, ((500, 500, 0.8, "binormal"), (500, 500, 0.9, "binormal"))),
    "2 x 100+2000 gap 0.97/0.995": (None, ((100, 2000, 0.97, "binormal"), (100, 2000, 0.995, "binormal"))),
    "ref 200+200; 5+30, 30+30 gap": (0, ((200, 200, 0.8, "binormal"), (5, 30, 0.8, "binormal"),
                                           (30, 30, 0.95, "binormal"))),
    "ref 30+30; 30+30 x 3 same 0.97": (0, ((30, 30, 0.97, "binormal"),) * 4),
    "ref 10+40; 100+100 gap 0.75/0.9": (0, ((10, 40, 0.75, "ties"), (100, 100, 0.9, "binormal"))),
}


def simulate(cell: str, reps: int, rng: np.random.Generator, confidence: float = 0.95
             ) -> tuple[float, float, float, float, float]:
    """(P(lower > true gap), P(upper < true gap), mean width, P(lower > 0), true gap) of one cell."""
    ref, groups = CELLS[cell]
    auc = np.empty((reps, len(groups)))
    k = np.empty(len(groups))
    theta = np.empty(len(groups))
    for g, (m, n, a, shape) in enumerate(groups):
        auc[:, g] = auc_from_cells(tables(rng, reps, m, n, a, shape))
        k[g] = min(m, n)
        theta[g] = truth(a, shape)
    gap = (theta.max() - theta.min() if ref is None else
           float(np.max(np.abs(np.delete(theta, ref) - theta[ref]))))
    lo, hi = auc_gap_interval(auc, k, ref, confidence)
    tol = 1e-12
    return (float(np.mean(lo > gap + tol)), float(np.mean(hi < gap - tol)), float(np.mean(hi - lo)),
            float(np.mean(lo > 0)), gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(machine())
    se = np.sqrt(0.025 * 0.975 / args.reps)
    flag = 0.025 + 3 * se
    print(f"reps {args.reps}; one-sided nominal 0.025, Monte Carlo SE {se:.4f}, flag above {flag:.4f}")
    rng = np.random.default_rng(args.seed)
    worst = [0.0, 0.0]
    for cell in CELLS:
        lo_err, hi_err, width, power, gap = simulate(cell, args.reps, rng)
        worst = [max(worst[0], lo_err), max(worst[1], hi_err)]
        mark = " !" if max(lo_err, hi_err) > flag else ""
        print(f"{cell:34s} gap {gap:.4f}  lo>D {lo_err:.4f}  hi<D {hi_err:.4f}  width {width:.3f}  lo>0 {power:.3f}{mark}")
    print(f"worst: lo>D {worst[0]:.4f}, hi<D {worst[1]:.4f}")


if __name__ == "__main__":
    main()
