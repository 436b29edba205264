"""Benchmark: the memory budget on CSV reading, and fairness with many groups (red-team items 8, 9).

Each measurement runs in a fresh subprocess and reports its peak RSS (resource.getrusage) above
the interpreter's baseline after imports, so it can be run against any checkout:

    PYTHONPATH=/path/to/checkout python benchmarks/scale_limits.py csv  [--rows 5000000]
    PYTHONPATH=/path/to/checkout python benchmarks/scale_limits.py pairs [--groups 1000]
    PYTHONPATH=/path/to/checkout python benchmarks/scale_limits.py fairness

``csv`` writes a CSV of four numeric columns and one column of unique short strings
(f"{i:x}"), then prints the budget's estimate (where the checkout has ``_scan_csv``) and the
peak of ``read_table`` with the budget lifted. ``pairs`` times ``disparity_score_interval``
over all pairs of ``--groups`` groups. ``fairness`` runs ``audit run --methods fairness`` on
5,000 rows with six sensitive attributes of 50 groups and prints time, peak RSS and the size
of results.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

PEAK = """
import resource, sys, time
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

CSV_CHILD = PEAK + """
from pathlib import Path
import audit.core.dataset as ds
from audit.core.limits import memory_limit
path = Path(sys.argv[1])
base = peak()
with memory_limit(1 << 40):
    if hasattr(ds, "_scan_csv"):
        t = time.time(); est, what = ds._scan_csv(path, ("sex",), (), 1 << 40)
        print(f"estimate {est / 2**20:.0f} MiB ({what}); scan {time.time() - t:.1f} s, "
              f"peak +{peak() - base:.0f} MiB")
    frame = ds.read_table(path, text=("sex",))
print(f"read_table: peak +{peak() - base:.0f} MiB over baseline; "
      f"frame memory_usage(deep=True) {frame.memory_usage(deep=True).sum() / 2**20:.0f} MiB")
"""

PAIRS_CHILD = PEAK + """
import numpy as np
import scipy.stats  # imported before the baseline
from audit.stats.proportions import disparity_score_interval
G = int(sys.argv[1])
rng = np.random.default_rng(0)
n = rng.integers(30, 60, G).astype(float)
x = rng.binomial(n.astype(int), 0.3).astype(float)
base = peak(); t = time.time()
lo, hi, p, p_raw, m = disparity_score_interval([(x, n)], "difference", None, 0.95)
print(f"{G:,} groups, {int(m):,} pairs: {time.time() - t:.1f} s, peak +{peak() - base:.0f} MiB")
"""

FAIRNESS_TOML = """name = "many_groups"
seed = 0
[model]
predictions = "score"
task = "binary"
[data]
path = "data.csv"
target = "y"
positive_label = "yes"
sensitive = ["s1", "s2", "s3", "s4", "s5", "s6"]
[report]
formats = ["json"]
"""

FAIRNESS_CHILD = PEAK + """
import json
from pathlib import Path
from typer.testing import CliRunner
from audit.cli import app
work = Path(sys.argv[1])
t = time.time()
res = CliRunner().invoke(app, ["run", str(work / "audit.toml"), "--out", str(work / "out"), "-q",
                               "--methods", "fairness"])
size = (work / "out" / "results.json").stat().st_size
skipped = json.loads((work / "out" / "results.json").read_text())["methods"]["fairness"]["result"].get("skipped", {})
print(f"exit {res.exit_code}, {time.time() - t:.1f} s, peak RSS {peak():.0f} MiB, results.json "
      f"{size / 2**20:.1f} MiB, {len(skipped)} intersections skipped")
"""


def child(code: str, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    print(done.stdout.strip() or done.stderr.strip()[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["csv", "pairs", "fairness"])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--groups", type=int, default=1000)
    args = parser.parse_args()
    print(machine())
    import numpy as np
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        if args.what == "csv":
            n = args.rows
            frame = pd.DataFrame({"x1": rng.integers(0, 100, n), "x2": rng.integers(0, 100, n),
                                  "sex": [f"{i:x}" for i in range(n)], "y": rng.integers(0, 2, n),
                                  "score": rng.random(n).round(3)})
            frame.to_csv(work / "data.csv", index=False)
            del frame
            print(f"{n:,} rows, {(work / 'data.csv').stat().st_size / 2**20:.0f} MiB of text")
            child(CSV_CHILD, str(work / "data.csv"))
        elif args.what == "pairs":
            child(PAIRS_CHILD, str(args.groups))
        else:
            n = 5000
            frame = pd.DataFrame({f"s{j}": [f"g{v}" for v in rng.integers(0, 50, n)] for j in range(1, 7)})
            frame["score"] = rng.random(n).round(4)
            frame["y"] = np.where(rng.random(n) < frame["score"], "yes", "no")
            frame.to_csv(work / "data.csv", index=False)
            (work / "audit.toml").write_text(FAIRNESS_TOML)
            start = time.time()
            child(FAIRNESS_CHILD, str(work))
            print(f"(wall {time.time() - start:.1f} s)")
    print(machine())


if __name__ == "__main__":
    main()
