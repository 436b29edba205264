"""What the child-process check of XGBoost / LightGBM files costs (not a test; prints ratios).

Run from the repository root:  .venv/bin/python benchmarks/booster_load.py [--trees 200]

audit-suite parses and scores a booster file once in an isolated child process before loading it
(a crafted file crashed both libraries' C++ parsers in-process). Timed in the same run, each the
median of 3: the library's own load of the file in this process (the baseline), and
``audit.core.loading.load_model`` (child check + load); then scoring the German-credit-sized
matrix (1,000 rows) for scale. Wall-clock on whatever else the machine is doing: compare ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_seconds(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    import lightgbm
    import xgboost

    from audit.core.loading import ModelSpec, load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 20)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    with tempfile.TemporaryDirectory() as tmp:
        xgb_path, lgb_path = Path(tmp, "m.json"), Path(tmp, "m.txt")
        xgboost.XGBClassifier(n_estimators=args.trees, max_depth=4).fit(X, y).save_model(xgb_path)
        lightgbm.LGBMClassifier(n_estimators=args.trees, verbose=-1).fit(X, y).booster_.save_model(str(lgb_path))
        rows = []
        for name, path, direct in (
                ("XGBoost JSON", xgb_path, lambda: xgboost.Booster(model_file=str(xgb_path))),
                ("LightGBM text", lgb_path, lambda: lightgbm.Booster(model_file=str(lgb_path)))):
            base = median_seconds(direct)
            ours = median_seconds(lambda: load_model(ModelSpec(path=str(path)), encoding=None))
            rows.append((name, path.stat().st_size, base, ours))
    print(f"{args.trees} trees, 20 features")
    print(f"{'format':<15} {'file':>10} {'library load':>13} {'audit load':>11} {'ratio':>7}")
    for name, size, base, ours in rows:
        print(f"{name:<15} {size / 1e3:>8.0f}kB {base:>12.3f}s {ours:>10.3f}s {ours / base:>6.0f}x")
    print("The difference is the child process (interpreter start, library import, parse, 4 rows "
          "scored): a fixed cost per audit run.")


if __name__ == "__main__":
    main()
