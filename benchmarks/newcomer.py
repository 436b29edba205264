"""A newcomer's default audit of ordinary scikit-learn models, through the CLI (not a test).

An outside trial found a default audit of a 300-row scikit-learn model took 84 minutes with no
estimate. This script does what a newcomer does: fit a model on the German credit data
(benchmarks/data/german_credit.csv, label ``risk``, sensitive ``sex`` and an age group derived
here), save it with skops (the trusted types listed in the config), write an audit.toml that
sets no method options, and run ``audit run`` with the default methods and the default time
budget. For each model it prints the plan the CLI printed before any work, the wall time, the
3-minute target, and the machine's load average (the machine is shared: read the wall times
against the load, and against the plan's own estimate in the same run).

Models: (a) Pipeline(ColumnTransformer(OneHotEncoder, StandardScaler), HistGradientBoosting),
(b) a 300-tree RandomForest in the same pipeline, (c) an XGBoost classifier in the same pipeline.

Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/newcomer.py [--rows 300] [--models hgb,rf,xgb]
        [--budget 3m] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "german_credit.csv"
TARGET_SECONDS = 180
CATEGORICAL = ["sex", "job", "housing", "saving_accounts", "checking_account", "purpose"]
NUMERIC = ["credit_amount", "duration", "age"]


def make_model(kind: str):  # noqa: ANN201
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if kind == "hgb":
        clf = HistGradientBoostingClassifier(random_state=0)
    elif kind == "rf":
        clf = RandomForestClassifier(n_estimators=300, random_state=0, n_jobs=1)
    elif kind == "xgb":
        from xgboost import XGBClassifier

        clf = XGBClassifier(n_estimators=200, max_depth=4, n_jobs=1, random_state=0)
    else:
        raise SystemExit(f"unknown model {kind!r}: choose from hgb, rf, xgb")
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                             ("num", StandardScaler(), NUMERIC)])
    return Pipeline([("pre", pre), ("clf", clf)])


def prepare(folder: Path, kind: str, rows: int) -> Path:
    """Fit the model on the rows not audited, save it with skops, write data, encoding, config."""
    import pandas as pd
    import skops.io as sio

    from audit.core.dataset import Encoding

    frame = pd.read_csv(DATA, dtype={"job": str})
    frame["age_group"] = pd.cut(frame["age"], [0, 25, 40, 60, 200], labels=["<25", "25-39", "40-59", "60+"]).astype(str)
    audited = frame.sample(n=min(rows, len(frame)), random_state=0)
    train = frame.drop(audited.index)
    features = CATEGORICAL + NUMERIC
    model = make_model(kind).fit(train[features], train["risk"])
    sio.dump(model, folder / "model.skops")
    trusted = [t for t in sio.get_untrusted_types(file=folder / "model.skops")]
    (folder / "encoding.json").write_text(json.dumps(Encoding.fit(frame[features]).to_dict()))
    audited.to_csv(folder / "data.csv", index=False)
    train.to_csv(folder / "train.csv", index=False)
    (folder / "audit.toml").write_text(
        f'name = "newcomer_{kind}"\n\n[model]\npath = "model.skops"\nencoding = "encoding.json"\n'
        f'raw_input = true\ntask = "binary"\ntrusted_types = {json.dumps(trusted)}\n\n'
        f'[data]\npath = "data.csv"\ntrain_path = "train.csv"\ntarget = "risk"\npositive_label = 1\n'
        f'features = {json.dumps(features)}\nsensitive = ["sex", "age_group"]\n\n'
        '[report]\nformats = ["html", "json"]\n')
    return folder / "audit.toml"


def run_cli(config: Path, out: Path, budget: str | None) -> tuple[int, float, list[str], str]:
    cmd = [sys.executable, "-m", "audit", "run", str(config), "--out", str(out), "--overwrite"]
    if budget:
        cmd += ["--budget", budget]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    plan = []
    for line in proc.stderr.splitlines():
        if line.startswith("plan (") or (plan and line.startswith("  ")):
            plan.append(line)
        elif plan:
            break
    return proc.returncode, wall, plan, proc.stderr


def verdict(rc: int, wall: float) -> str:
    if rc == 2:
        return "not run: the plan did not fit the budget (exit 2)"
    return "met" if wall <= TARGET_SECONDS else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300, help="rows audited (the outside trial: 300)")
    ap.add_argument("--models", default="hgb,rf,xgb")
    ap.add_argument("--budget", default=None, help="passed to --budget (default: the CLI's default)")
    ap.add_argument("--keep", type=Path, default=None, help="keep configs and reports here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    base = args.keep or Path(tempfile.mkdtemp(prefix="newcomer-"))
    print(f"load average before: {os.getloadavg()}; usable cores: {len(os.sched_getaffinity(0))}")
    summary = []
    for kind in args.models.split(","):
        folder = base / kind
        folder.mkdir(parents=True, exist_ok=True)
        config = prepare(folder, kind, args.rows)
        rc, wall, plan, err = run_cli(config, folder / "report", args.budget)
        print(f"\n=== {kind}: exit {rc}, wall {wall:.0f} s (target {TARGET_SECONDS} s: "
              f"{verdict(rc, wall)}), load average {os.getloadavg()}")
        print("\n".join(plan) or err[-2000:])
        results = folder / "report" / "results.json"
        if results.exists():
            rec = json.loads(results.read_text())["provenance"].get("plan", {})
            for m in rec.get("methods", []):
                print(f"    {m['method']:<26} estimated {m['estimated_seconds']:8.1f} s   actual "
                      f"{m['actual_seconds'] or 0:8.1f} s   model rows planned {m['model_rows']:>11,} "
                      f"performed {(m['performed'] or {}).get('model_rows', 0):>11,}")
            est = rec.get("estimated_total_seconds")
            if est:
                print(f"    total: estimated {est:.0f} s, wall {wall:.0f} s (ratio wall/estimate {wall / est:.2f})")
        summary.append((kind, rc, wall))
    print("\nsummary (target 180 s per model):")
    for kind, rc, wall in summary:
        print(f"  {kind:<4} exit {rc}  wall {wall:6.0f} s  {verdict(rc, wall)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
