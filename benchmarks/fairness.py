"""Benchmark: the whole fairness method against its fairlearn MetricFrame-based equivalent.

``audit-suite``: ``Fairness().run`` as an audit runs it (binary classifier with scores, two
sensitive attributes and their intersection, 1,000 bootstrap resamples, threshold curves and the
what-if), every count-based cell from per-group confusion counts (``np.bincount``).
``fairlearn``: the same quantities the way the method computed them before issue 17 — per-group
metrics through ``MetricFrame`` (selection rate, TPR, FPR, FNR, TNR, PPV, NPV, accuracy,
balanced accuracy, base rate, AUC) for each attribute set, its row bootstrap
(``MetricFrame(n_boot=...)``, a few resamples timed and scaled to 1,000, it says so), and
``ThresholdOptimizer`` on all rows. Both run here in the same process on the same data; the
ratio is printed with ``os.getloadavg()`` (the machine is shared: compare ratios, not times).

``--bootstrap-only``: the older comparison of the stratified count bootstrap alone against
``MetricFrame(n_boot)`` (README's table).

Usage: python benchmarks/fairness.py [--rows 100000 1000000] [--boot 1000] [--fairlearn-boot 2]
       python benchmarks/fairness.py --bootstrap-only [--rows 1000000] [--groups 10]
"""

from __future__ import annotations

import argparse
import os
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


def method_data(rows: int, seed: int = 0):
    """An AuditData of decisions with scores: sex (2 groups) and race (5 groups, smallest 3 %)."""
    import pandas as pd

    from audit.core.adapter import PredictionsAdapter
    from audit.core.dataset import DatasetSpec, build_audit_data

    rng = np.random.default_rng(seed)
    sex = rng.choice(["Female", "Male"], rows)
    race = rng.choice(["White", "Black", "Asian", "Other", "Amer-Indian"], rows, p=[.6, .2, .1, .07, .03])
    y = (rng.random(rows) < np.where(sex == "Male", .3, .2)).astype(int)
    score = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1).round(4)
    df = pd.DataFrame({"sex": sex, "race": race, "y": y, "score": score, "x": 0.0})
    data = build_audit_data(df, DatasetSpec(target="y", sensitive=("sex", "race"), predictions="score",
                                            task="binary", features=("x",)))
    return df, data, PredictionsAdapter(task="binary", column="score")


def ours_method(data, model, n_boot: int) -> tuple[float, object]:
    from audit.core.method import RunContext
    from audit.methods.fairness import Fairness, FairnessConfig

    start = time.perf_counter()
    result = Fairness().run(model, data, FairnessConfig(n_bootstrap=n_boot), RunContext.default(0))
    return time.perf_counter() - start, result


def fairlearn_method(df, n_boot: int, fairlearn_boot: int) -> tuple[float, str]:
    """MetricFrame per attribute set (+ its bootstrap, scaled) and ThresholdOptimizer on all rows."""
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_negative_rate,
        true_positive_rate,
    )
    from fairlearn.postprocessing import ThresholdOptimizer
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score, roc_auc_score

    from audit.methods.fairness.what_if import _score_model

    def npv(t, p):
        return precision_score(1 - t, 1 - p, zero_division=np.nan)

    metrics = {"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
               "fnr": false_negative_rate, "tnr": true_negative_rate,
               "ppv": lambda t, p: precision_score(t, p, zero_division=np.nan), "npv": npv,
               "accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score,
               "base_rate": lambda t, p: float(np.mean(t))}
    y = df.y.to_numpy()
    s = df.score.to_numpy()
    yhat = (s >= 0.5).astype(int)
    sets = [["sex"], ["race"], ["sex", "race"]]
    start = time.perf_counter()
    per_resample = boot_call = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, cols in enumerate(sets):
            sf = df[cols]
            t0 = time.perf_counter()
            MetricFrame(metrics=metrics, y_true=y, y_pred=yhat, sensitive_features=sf)
            t_point = time.perf_counter() - t0
            MetricFrame(metrics={"auc": roc_auc_score}, y_true=y, y_pred=s, sensitive_features=sf)
            if fairlearn_boot and i == 0:  # one set's resamples timed; every set costs the same rows
                t0 = time.perf_counter()
                MetricFrame(metrics=metrics, y_true=y, y_pred=yhat, sensitive_features=sf,
                            n_boot=fairlearn_boot, ci_quantiles=[0.025, 0.975], random_state=0)
                boot_call = time.perf_counter() - t0
                per_resample = max(boot_call - t_point, 0.0) / fairlearn_boot
        for col in ("sex", "race"):
            for constraint in ("demographic_parity", "equalized_odds"):
                opt = ThresholdOptimizer(estimator=_score_model(), constraints=constraint,
                                         predict_method="predict", prefit=True)
                opt.fit(np.round(s, 3)[:, None], y, sensitive_features=df[col])
                opt.predict(np.round(s, 3)[:, None], sensitive_features=df[col], random_state=0)
    measured = time.perf_counter() - start
    boot = per_resample * n_boot * len(sets)
    note = (f"{measured - boot_call:.1f} s run without its bootstrap + {boot:.0f} s bootstrap scaled from "
            f"{fairlearn_boot} resample(s) of one attribute set to {n_boot:,} x {len(sets)} sets"
            if fairlearn_boot else f"{measured:.1f} s run, no bootstrap")
    if fairlearn_boot and per_resample <= 0:
        note += ("; the resample's time was lost in the noise of a shared machine (the call with "
                 "n_boot was not slower than without), so the ratio is a LOWER BOUND")
    return measured - boot_call + boot, note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=None)
    ap.add_argument("--groups", type=int, default=10, help="--bootstrap-only: groups")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--fairlearn-boot", type=int, default=1,
                    help="resamples actually run with fairlearn (its time is scaled to --boot)")
    ap.add_argument("--bootstrap-only", action="store_true")
    args = ap.parse_args()
    if args.bootstrap_only:
        return bootstrap_only(args)
    print(f"load average (1, 5, 15 min) at start: {os.getloadavg()}")
    _, small, model = method_data(2_000)
    ours_method(small, model, 100)  # warm-up: imports (scipy, fairlearn) count for neither side
    fairlearn_method(method_data(2_000)[0], 100, 1)
    for rows in args.rows or [100_000, 1_000_000]:
        df, data, model = method_data(rows)
        t_ours, result = ours_method(data, model, args.boot)
        t_fl, note = fairlearn_method(df, args.boot, args.fairlearn_boot)
        dp = result.attributes["race"].disparities["demographic_parity_difference"].estimate
        print(f"{rows:>9,} rows: audit-suite whole method {t_ours:7.2f} s "
              f"[race DP {dp.value:.4f}, 95% CI {dp.lower:.4f}-{dp.upper:.4f}]; "
              f"fairlearn MetricFrame-based equivalent {t_fl:8.1f} s ({note}); "
              f"ratio fairlearn / audit-suite {t_fl / t_ours:,.1f}x; load average {os.getloadavg()}")


def bootstrap_only(args: argparse.Namespace) -> None:
    rows = (args.rows or [1_000_000])[0]
    y, yhat, g = make_data(rows, args.groups)
    print(f"data: {rows:,} rows, {args.groups} groups (smallest {np.bincount(g).min():,} rows), "
          f"{args.boot:,} bootstrap resamples, 10 rate metrics + 10 disparities with 95% intervals")
    ours(y[:1000], yhat[:1000], g[:1000], 10)  # warm-up (imports)
    # a run of a few hundredths of a second: one timing is at the mercy of the scheduler, so the
    # median of 5 (each printed)
    runs = [ours(y, yhat, g, args.boot) for _ in range(5)]
    times = sorted(t for t, _ in runs)
    t_ours, intervals = times[2], runs[0][1]
    dp = intervals["demographic_parity_difference"]
    print(f"audit-suite (multinomial count bootstrap): {t_ours:8.3f} s, median of 5 "
          f"({', '.join(f'{t:.3f}' for t in times)})   "
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
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
