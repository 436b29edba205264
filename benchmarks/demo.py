"""How long ``make demo`` takes: the three bundled examples audited as ``make demo`` runs them.

Each ``audit run examples/<name>/audit.toml`` runs in a fresh interpreter (imports included) and
writes its report into a temporary folder, not ``reports/``. Printed per example and in total:
wall time and CPU time (user + system of the command and everything it started), with the
load average and core count. There is no baseline: README
quotes this as an absolute time, so read it with the load it was measured under.

Usage::

    python benchmarks/demo.py [--examples adult_mlp,digits_cnn,macro_lstm]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", default="adult_mlp,digits_cnn,macro_lstm")
    args = ap.parse_args()
    print(machine())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    total_wall = total_cpu = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.examples.split(","):
            out = Path(tmp) / name
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "audit", "run", str(ROOT / "examples" / name / "audit.toml"),
                                   "--out", str(out), "--quiet", "--full"], cwd=ROOT, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if proc.returncode != 0:  # as make demo: any other exit stops it
                raise SystemExit(f"audit run {name} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
            methods = json.loads((out / "results.json").read_text(encoding="utf-8"))["methods"]
            print(f"{name:<12} wall {wall:6.1f} s, CPU {cpu:6.1f} s; {len(methods)} methods in the report")
            total_wall += wall
            total_cpu += cpu
    print(f"all examples: wall {total_wall:.1f} s ({total_wall / 60:.1f} min), CPU {total_cpu:.1f} s "
          f"({total_cpu / 60:.1f} min) [{machine()}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
