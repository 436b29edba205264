"""Benchmark: stratified bootstrap of every group rate metric and disparity.

audit-suite draws each group's confusion counts from a multinomial (exactly the row bootstrap
within groups); fairlearn's MetricFrame(n_boot=...) resamples rows and recomputes every metric.
Both run here on the same data; fairlearn's time for 1,000 resamples is extrapolated from a few
(it says so), because running all of them takes far too long.

Usage: python benchmarks/fairness.py [--rows 1000000] [--groups 10] [--boot 1000] [--fairlearn-boot 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def make_data(rows: int, groups: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.choice(groups, rows, p=rng.dirichlet(np.full(groups, 2.0)))
    base = rng.uniform(0.1, 0.5, groups)[g]
    y = (rng.random(rows) < base).astype(np.int64)
    yhat = np.where(rng.random(rows) < 0.8, y, 1 - y)
    return y, yhat, g


def ours(y: np.ndarray, yhat: np.ndarray, g: np.ndarray, n_boot: int) -> tuple[float, dict]:
    from audit.methods.fairness import binary_disparities
    from audit.stats.bootstrap import (
        bootstrap_cells,
        confusion_cells,
        group_codes,
        percentile_interval,
        rates_from_cells,
    )

    start = time.perf_counter()
    levels, codes = group_codes(g)
    cells = confusion_cells(y, yhat, codes, len(levels))
    rng = np.random.default_rng(0)
    boot = rates_from_cells(bootstrap_cells(cells, n_boot, rng))
    disp = binary_disparities(boot, None)
    intervals = {k: percentile_interval(v, 0.95) for k, v in {**boot, **disp}.items()}
    return time.perf_counter() - start, intervals


def fairlearn_boot(y: np.ndarray, yhat: np.ndarray, g: np.ndarray, n_boot: int) -> float:
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, precision_score

    metrics = {"selection_rate": selection_rate, "tpr": true_positive_rate,
               "fpr": false_positive_rate, "ppv": precision_score, "accuracy": accuracy_score}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_boot:
            MetricFrame(metrics=metrics, y_true=y, y_pred=yhat, sensitive_features=g,
                        n_boot=n_boot, ci_quantiles=[0.025, 0.975], random_state=0)
        else:  # the point estimates alone
            MetricFrame(metrics=metrics, y_true=y, y_pred=yhat, sensitive_features=g)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--fairlearn-boot", type=int, default=1,
                    help="resamples actually run with fairlearn (its time is scaled to --boot)")
    args = ap.parse_args()
    y, yhat, g = make_data(args.rows, args.groups)
    print(f"data: {args.rows:,} rows, {args.groups} groups (smallest {np.bincount(g).min():,} rows), "
          f"{args.boot:,} bootstrap resamples, 10 rate metrics + 10 disparities with 95% intervals")
    ours(y[:1000], yhat[:1000], g[:1000], 10)  # warm-up (imports)
    t_ours, intervals = ours(y, yhat, g, args.boot)
    dp = intervals["demographic_parity_difference"]
    print(f"audit-suite (multinomial count bootstrap): {t_ours:8.2f} s   "
          f"[DP difference 95% CI {float(dp[0]):.4f}-{float(dp[1]):.4f}]")
    t0 = fairlearn_boot(y, yhat, g, 0) if args.fairlearn_boot else 0.0
    if args.fairlearn_boot:
        t_fl = fairlearn_boot(y, yhat, g, args.fairlearn_boot)
        per = max(t_fl - t0, 1e-9) / args.fairlearn_boot
        est = t0 + per * args.boot
        print(f"fairlearn MetricFrame(n_boot={args.fairlearn_boot}) measured: {t_fl:8.2f} s "
              f"(n_boot=0: {t0:.2f} s); extrapolated to n_boot={args.boot}: {est:8.1f} s "
              f"(5 metrics only; scaled, not run)")
        print(f"ratio fairlearn / audit-suite: {est / t_ours:,.0f}x")
    target = 10.0
    verdict = "meets" if t_ours < target else "MISSES"
    print(f"target: {args.boot:,} resamples over {args.rows:,} rows in < {target:.0f} s -> {verdict}")


if __name__ == "__main__":
    main()
