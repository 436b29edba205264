"""Error rates of ``[gate]`` performance rules whose threshold is the true value.

For each cell (metric, true value, rows) it draws ``--reps`` data sets, runs the performance
method on each (``n_bootstrap`` = 0: accuracy's, balanced accuracy's and AUC's intervals need no
resampling) and judges
a ``min`` and a ``max`` rule placed at the true value: the share of data sets in which each
passes is the gate's false-pass rate on that side (nominal at most (1 − c)/2 = 2.5 % at c = 0.95).

- accuracy: each row right with probability ``truth``, half the rows positive;
- balanced accuracy: TPR = truth + 0.02, FPR = 1 − truth + 0.02, so (1 + TPR − FPR) / 2 = truth;
- AUC: 30 % positives, binormal scores (positives shifted by ``mu``), AUC = Φ(mu / √2).

Usage: python benchmarks/gate_performance.py [--reps 600] [--only accuracy|balanced_accuracy|auc]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.core.adapter import PredictionsAdapter  # noqa: E402
from audit.core.dataset import DatasetSpec, build_audit_data  # noqa: E402
from audit.core.method import RunContext  # noqa: E402
from audit.gate import GateRule, evaluate  # noqa: E402
from audit.methods.performance import Performance, PerformanceConfig  # noqa: E402


def accuracy(truth: float):
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < 0.5).astype(int)
        return y, np.where(rng.random(n) < truth, y, 1 - y)
    return draw


def balanced_accuracy(truth: float):
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < 0.5).astype(int)
        right = np.where(y == 1, rng.random(n) < truth + 0.02, rng.random(n) < truth - 0.02)
        return y, np.where(right, y, 1 - y)
    return draw


def auc(mu: float):
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < 0.3).astype(int)
        return y, 1 / (1 + np.exp(-(rng.normal(size=n) + mu * y - mu / 2)))
    return draw


def rates(metric: str, truth: float, n: int, draw, reps: int, n_bootstrap: int) -> tuple[float, float]:
    rng = np.random.default_rng(n)
    rules = [GateRule(f"performance.{metric}", None, metric, min=truth, section="performance"),
             GateRule(f"performance.{metric}", None, metric, max=truth, section="performance")]
    passes = np.zeros(2)
    for _ in range(reps):
        y, pred = draw(rng, n)
        data = build_audit_data(pd.DataFrame({"y": y, "pred": pred, "x": 0.0}),
                                DatasetSpec(target="y", predictions="pred", features=("x",)))
        result = Performance().run(PredictionsAdapter(task="binary", column="pred"), data,
                                   PerformanceConfig(n_bootstrap=n_bootstrap),
                                   RunContext.default(int(rng.integers(1 << 30))))
        passes += [v.status == "pass" for v in evaluate(rules, result, confidence=0.95).verdicts]
    return tuple(passes / reps)  # type: ignore[return-value]


def main() -> None:
    from scipy.stats import norm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=600)
    parser.add_argument("--only", choices=["accuracy", "balanced_accuracy", "auc"])
    args = parser.parse_args()
    cells = [("accuracy", t, n, accuracy(t), 0) for n in (30, 200, 2000) for t in (0.5, 0.97)]
    cells += [("balanced_accuracy", t, n, balanced_accuracy(t), 0) for n in (30, 200, 2000) for t in (0.75, 0.95)]
    cells += [("auc", float(norm.cdf(mu / np.sqrt(2))), n, auc(mu), 0)
              for mu in (1.0, 2.5, np.sqrt(2) * norm.ppf(0.995)) for n in (100, 400, 2000)]
    se = np.sqrt(0.025 * 0.975 / args.reps)
    print(f"| metric | true value | rows | false pass of min | false pass of max |  (reps {args.reps}, MC SE {se:.3f})")
    for metric, truth, n, draw, B in cells:
        if args.only and metric != args.only:
            continue
        low, high = rates(metric, truth, n, draw, args.reps, B)
        print(f"| {metric} | {truth:.3f} | {n:,} | {low:.3f} | {high:.3f} |", flush=True)


if __name__ == "__main__":
    main()
