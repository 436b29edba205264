"""The fixed cost of ``audit run``: this checkout against a baseline commit, in the same run.

A decisions-only audit (the model's decisions in a column, no model file; four groups, seeded)
with fairness only, written as HTML + PDF + JSON, is timed as a CLI command in a fresh
interpreter (imports included, as a user pays them):

- ``full``: ``--rows`` rows (default 100,000);
- ``fixed``: the same command on 100 rows, the cost that does not grow with the data (imports,
  loading, rendering the report); its share of ``full`` is printed;
- ``json``: the 100-row command writing results.json only (no figures, HTML or PDF), so the
  difference to ``fixed`` is what rendering the report costs;
- ``help``: ``audit --help``.

Each command runs under this checkout and under ``--baseline`` (a git commit, default the last
one before the lazy imports), extracted with ``git archive`` into a temporary folder and run
with the same interpreter; the runs alternate (baseline, this, baseline, ...) ``--repeats``
times and the median is reported, so both sides see the same load. The ratio baseline / this
is printed with the load average and the core count, for wall time and for CPU time (user +
system of the command and its children, less inflated than wall time when others share the
machine).

Usage::

    python benchmarks/fixed_cost.py [--rows 100000] [--repeats 3] [--baseline d384842]
    python benchmarks/fixed_cost.py --baseline none        # this checkout only
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import machine, ratio_line

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "d384842"  # the last commit before the lazy imports (torch imported by every run)

CONFIG = """name = "fixed_cost"
[model]
predictions = "pred"
[data]
path = "{data}"
target = "y"
sensitive = ["group"]
"""


def write_case(folder: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    group = rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1])
    y = (rng.random(rows) < 0.3).astype(int)
    pred = np.where(rng.random(rows) < 0.8, y, 1 - y)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"group": group, "y": y, "pred": pred}).to_csv(folder / "d.csv", index=False)
    (folder / "audit.toml").write_text(CONFIG.format(data="d.csv"), encoding="utf-8")
    return folder / "audit.toml"


def checkout(ref: str, into: Path) -> Path:
    """The tree of ``ref`` (a commit of this repository) extracted into ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def timed(tree: Path, args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the command and everything it started)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "audit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"audit {' '.join(args)} under {tree} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", default=BASELINE, help="git commit to compare with, or 'none'")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trees = {"this checkout": ROOT}
        if args.baseline != "none":
            try:
                trees = {f"baseline {args.baseline}": checkout(args.baseline, work / "baseline"), **trees}
            except (subprocess.CalledProcessError, FileNotFoundError) as exc:
                print(f"baseline {args.baseline!r} not available ({exc}); timing this checkout only")
        cases = {"full": write_case(work / "full", args.rows), "fixed": write_case(work / "fixed", 100)}
        commands = {
            f"audit run, {args.rows:,} rows": ["run", str(cases["full"]), "--methods", "fairness",
                                               "--out", str(work / "out"), "--overwrite", "--quiet"],
            "audit run, 100 rows (fixed cost)": ["run", str(cases["fixed"]), "--methods", "fairness",
                                                 "--out", str(work / "out"), "--overwrite", "--quiet"],
            "audit run, 100 rows, JSON only": ["run", str(cases["fixed"]), "--methods", "fairness",
                                               "--format", "json", "--out", str(work / "out"),
                                               "--overwrite", "--quiet"],
            "audit --help": ["--help"],
        }
        print(f"decisions-only audit, fairness only, HTML + PDF + JSON; {args.repeats} alternating "
              f"repeats, median; {sys.executable}")
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.repeats):
            for cmd, cli in commands.items():
                for i, (tree, path) in enumerate(trees.items()):
                    # each tree writes its own folder: one writes files the other does not know
                    own = [str(work / f"out-{i}") if a == str(work / "out") else a for a in cli]
                    times.setdefault((cmd, tree), []).append(timed(path, own, cwd=work))
        wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
        for cmd in commands:
            for tree in trees:
                runs = ", ".join(f"{w:.2f}" for w, _ in times[(cmd, tree)])
                print(f"{cmd:<34} {tree:<20} wall {wall[(cmd, tree)]:6.2f} s, CPU {cpu[(cmd, tree)]:6.2f} s"
                      f"  (wall of each run: {runs})")
        full, fixed = list(commands)[:2]
        json_only = list(commands)[2]
        for tree in trees:
            print(f"{tree}: rendering the report (HTML + PDF) costs {wall[(fixed, tree)] - wall[(json_only, tree)]:.2f} s "
                  f"wall, {cpu[(fixed, tree)] - cpu[(json_only, tree)]:.2f} s CPU of the 100-row run")
            print(f"{tree}: fixed cost {wall[(fixed, tree)]:.2f} s wall = "
                  f"{100 * wall[(fixed, tree)] / wall[(full, tree)]:.0f}% of the {args.rows:,}-row run "
                  f"(CPU: {100 * cpu[(fixed, tree)] / cpu[(full, tree)]:.0f}%)")
        if len(trees) == 2:
            base, ours = trees
            for cmd in commands:
                print(ratio_line(f"wall, {cmd}, {base} / this checkout", wall[(cmd, base)],
                                 wall[(cmd, ours)], digits=2))
                print(ratio_line(f"CPU, {cmd}, {base} / this checkout", cpu[(cmd, base)],
                                 cpu[(cmd, ours)], digits=2))
    print(machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
