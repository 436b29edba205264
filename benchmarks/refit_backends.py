"""Which local backend of audit.execution suits scikit-learn refits: processes or threads?
(not a test; prints wall times and ratios against one worker, measured in the same run).

Runs permutation_significance's refit pipeline (clone, fit, score permuted copies) on the German
credit data for a pipeline model, through ``audit.execution.map`` with one worker (the baseline),
two processes (loky, which pays a worker start-up that imports audit-suite) and two threads.

Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refit_backends.py [--refits 40] [--model hgb|rf|lr]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refits", type=int, default=40)
    ap.add_argument("--model", default="hgb")
    args = ap.parse_args()

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from audit import execution
    from audit.core.dataset import DatasetSpec, build_audit_data
    from audit.methods.permutation_significance import _pipeline
    from benchmarks.newcomer import CATEGORICAL, NUMERIC, make_model

    frame = pd.read_csv(ROOT / "benchmarks" / "data" / "german_credit.csv", dtype={"job": str})
    data = build_audit_data(frame, DatasetSpec(target="risk", features=tuple(CATEGORICAL + NUMERIC),
                                               positive_label=1), None)
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y)
    if args.model == "lr":
        est = LogisticRegression(max_iter=500)
        to_input = None
    else:  # the pipeline consumes the raw frame, as with [model] raw_input = true
        est = make_model(args.model)
        to_input = data.encoding.decode
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    held, fit = np.sort(order[:300]), np.sort(order[300:])
    perms = np.stack([rng.permutation(300) for _ in range(5)])
    groups = list(data.groups.values())
    ys = [y[rng.permutation(len(y))] for _ in range(args.refits)]

    def job(yb: np.ndarray) -> np.ndarray:
        return _pipeline(est, X, yb, fit, held, groups, perms, "accuracy",
                         (lambda A: to_input(A.astype(np.float32))) if to_input else (lambda A: A))

    print(f"{args.refits} refits of {type(est).__name__} on {len(fit)} rows; load average {os.getloadavg()}; "
          f"usable cores {execution.usable_cores()}")
    times = {}
    results = {}
    for name, jobs, backend in [("one worker (baseline)", 1, "processes"), ("2 processes", 2, "processes"),
                                ("2 threads", 2, "threads")]:
        t0 = time.perf_counter()
        results[name] = np.vstack(execution.map(job, ys, n_jobs=jobs, prefer=backend))
        times[name] = time.perf_counter() - t0
    base = times["one worker (baseline)"]
    for name, t in times.items():
        same = np.array_equal(results[name], results["one worker (baseline)"], equal_nan=True)
        print(f"  {name:<22} {t:7.1f} s   speed-up ×{base / t:4.2f}   identical results: {same}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
