"""How close the plan's estimates come to the run (not a test): estimate / actual per method.

Runs ``audit run --full -f json`` on the three bundled examples and on a scikit-learn pipeline
(German credit, OneHotEncoder + StandardScaler + HistGradientBoosting, 300 audited rows, built
as benchmarks/newcomer.py does, with ``n_permutations = 99`` so the refit test stays short) and
prints, for every method that ran, the plan's estimated seconds, the measured seconds and the
ratio actual / estimate, read from results.json (provenance.plan). Both numbers come from the
same run under the same load; the load average is printed with them.

Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plan_accuracy.py [--only adult_mlp,sklearn]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("adult_mlp", "digits_cnn", "macro_lstm")


def run(config: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "audit", "run", str(config), "--full", "-f", "json", "-q",
           "--out", str(out), "--overwrite"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode not in (0, 1):  # 1: a gate breached (the adult example's gate does)
        raise SystemExit(f"{config}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return json.loads((out / "results.json").read_text())["provenance"]["plan"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join((*EXAMPLES, "sklearn")))
    names = ap.parse_args().only.split(",")
    print(machine())
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name == "sklearn":
                sys.path.insert(0, str(ROOT / "benchmarks"))
                from newcomer import prepare

                folder = Path(tmp) / "sk"
                folder.mkdir()
                config = prepare(folder, "hgb", 300)
                with config.open("a") as fh:
                    fh.write("\n[methods.permutation_significance]\nn_permutations = 99\n")
            else:
                config = ROOT / "examples" / name / "audit.toml"
            plan = run(config, Path(tmp) / f"out_{name}")
            print(f"\n{name} (unit costs {plan['unit_costs']})")
            print(f"  {'method':28s} {'estimate s':>10s} {'actual s':>9s} {'actual/estimate':>15s}")
            for m in plan["methods"]:
                est, act = m["estimated_seconds"], m["actual_seconds"]
                if act is None:
                    continue
                r = act / est if est > 0 else float("inf")
                ratios.append((r, name, m["method"], est, act))
                print(f"  {m['method']:28s} {est:10.2f} {act:9.2f} {r:15.2f}")
            print(f"  {'total':28s} {plan['estimated_total_seconds']:10.2f} "
                  f"{sum(m['actual_seconds'] or 0 for m in plan['methods']):9.2f}")
    big = [x for x in ratios if max(x[3], x[4]) >= 1.0]  # sub-second methods: the ratio is noise
    outside = [x for x in big if not 0.5 <= x[0] <= 2.0]
    print(f"\nmethods taking or estimated at >= 1 s: {len(big)}, actual/estimate from "
          f"{min(x[0] for x in big):.2f} to {max(x[0] for x in big):.2f}; outside x2: "
          + (", ".join(f"{n}/{m} {r:.2f}" for r, n, m, _, _ in outside) or "none"))
    print(machine())


if __name__ == "__main__":
    main()
