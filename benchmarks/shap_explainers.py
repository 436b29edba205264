"""What each SHAP explainer costs on the bundled Adult MLP, and how far DeepLIFT is from Shapley
values (not a test; prints times, ratios and deviations).

Run from the repository root:  .venv/bin/python benchmarks/shap_explainers.py [--rows 1000]

The shap method's default for a torch model follows what its report can promise: exact
interventional Shapley values when 2^p coalitions x background rows x explained rows fit in
``exact_max_evaluations`` (20 million model evaluations), else DeepLIFT with its deviation from
exact Shapley values measured on ``check_n_rows`` seeded rows in every run. Adult has p = 13 raw
model features and a 100-row background, so exact values for 1,000 rows would take 819 million
evaluations: this script times, on the same rows and background (one torch thread),

- the whole shap method with its default (DeepLIFT + the per-run deviation check, 10 rows exact);
- DeepLIFT (shap DeepExplainer) alone on every row;
- the deviation check alone (exact values of 10 rows);
- exact Shapley values (brute force) and KernelSHAP (2,048 coalitions per row, shap's default is
  2p + 2,048), each timed on --sample-rows rows and scaled linearly to --rows (stated);
and prints DeepLIFT's deviation from the exact values on those rows, and on a steep tanh MLP.
Timings are wall-clock on whatever else the machine is doing: compare ratios within one run.

``--kernel`` (issue 17) times only the project's KernelSHAP path (:func:`_kernel_values`) against
``shap.KernelExplainer`` called directly on the same grouped problem (raw features as groups of
encoded columns, same model function, rows, background, nsamples and seed), alternating the two
``--repeats`` times, and checks that their values are identical; on the Adult MLP (13 raw features,
one-hot groups) and on a raw-input scikit-learn Pipeline (ColumnTransformer + LogisticRegression)
of the German credit data. It also times the shap method's default on a HistGradientBoosting
Pipeline of the German credit data (TreeExplainer, issue 13) against KernelSHAP on the same rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows explained (as in the audit)")
    parser.add_argument("--sample-rows", type=int, default=10, help="rows exact/KernelSHAP are timed on")
    parser.add_argument("--kernel", action="store_true", help="only: project KernelSHAP vs shap directly")
    parser.add_argument("--nsamples", type=int, default=2048, help="KernelSHAP coalitions per row (--kernel)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timings per path (--kernel)")
    args = parser.parse_args()
    if args.kernel:
        kernel_vs_shap(args)
        return

    import numpy as np
    import torch

    from audit.config import AuditPlan
    from audit.core.method import RunContext
    from audit.methods.shap import (Shap, ShapConfig, _explain_torch, _explained_fn, _kernel_values,
                                    exact_shapley)
    from audit.runner import load_inputs

    torch.set_num_threads(1)
    config = ROOT / "examples" / "adult_mlp" / "audit.toml"
    if not (ROOT / "examples" / "adult_mlp" / "model.safetensors").is_file():
        sys.exit("examples/adult_mlp/model.safetensors is missing: train the example first.")
    inputs = load_inputs(AuditPlan.load(config))
    data, model = inputs.data, inputs.model
    ctx = dataclasses.replace(RunContext.default(0), train=inputs.train)
    cfg = ShapConfig(n_rows=args.rows)
    groups = [np.asarray(v) for v in data.encoding.groups.values()]
    print(f"Adult MLP ({model.description}); {len(groups)} raw model features; torch {torch.__version__}, 1 thread")

    Shap().run(model, data.subset(np.arange(50)), dataclasses.replace(cfg, n_bootstrap=10), ctx)  # warm-up
    t = time.perf_counter()
    r = Shap().run(model, data, cfg, ctx)
    whole = time.perf_counter() - t
    d = r.deviation
    print(f"shap method, default (auto -> {r.explainer}: {r.label}), {len(r.rows):,} rows, "
          f"{r.background_size} background rows: {whole:.1f} s (explainer alone {r._seconds:.1f} s)")

    rng = np.random.default_rng(0)
    bg = inputs.train.X[rng.choice(inputs.train.n_rows, r.background_size, replace=False)]
    X = data.X[list(r.rows)]
    f = _explained_fn(model, r.scale, bg)
    k = min(args.sample_rows, len(X))
    t = time.perf_counter()
    exact, _ = exact_shapley(f, X[:k], bg, groups)
    t_exact = (time.perf_counter() - t) / k
    t = time.perf_counter()
    _kernel_values(f, X[:k], bg, None, groups, data.feature_names, 2048, "identity", 0)
    t_kernel = (time.perf_counter() - t) / k
    print(f"deviation check alone (exact values of {len(d.rows)} rows): {t_exact * len(d.rows):.1f} s")
    print(f"exact Shapley values of {len(X):,} rows: {t_exact * len(X):.0f} s "
          f"({t_exact:.2f} s/row on {k} rows, scaled)")
    print(f"KernelSHAP (2,048 coalitions) of {len(X):,} rows: {t_kernel * len(X):.0f} s "
          f"({t_kernel:.2f} s/row on {k} rows, scaled)")
    print(f"ratio exact / DeepLIFT explainer: {t_exact * len(X) / r._seconds:.0f}x; "
          f"whole method with the check vs exact: {t_exact * len(X) / whole:.0f}x faster")

    enc, _, _ = _explain_torch(model, X[:k], bg, "deep", r.scale, cfg, ctx)   # same rows and background
    deep = data.encoding.aggregate(enc, "sum", axis=1)[:, :, 0]
    diff = np.abs(deep - exact[:, :, 0])
    print(f"Adult: DeepLIFT vs exact Shapley ({k} rows): max |diff| {diff.max():.4f}, mean {diff.mean():.5f}; "
          f"the audit's own check ({len(d.rows)} rows, {d.reference}): max {d.max_abs:.4f}, mean {d.mean_abs:.5f}, "
          f"top-feature agreement {d.top_feature_agreement:.0%}, top 3 {d.top_method} vs {d.top_reference}")

    # A steep tanh MLP (the tests' known case): DeepLIFT passes additivity but is far from Shapley.
    import pandas as pd

    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec, build_audit_data

    g = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": g.normal(size=300) for i in range(4)}).assign(y=g.integers(0, 2, 300))
    small = build_audit_data(frame, DatasetSpec(target="y"))
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[2].weight.mul_(4)
    t = Shap().run(as_adapter(net.eval()), small, ShapConfig(explainer="deep", background_size=300, n_rows=300,
                                                             n_bootstrap=0, check_n_rows=300), RunContext.default(0))
    print(f"tanh MLP (4 features, 300 rows): DeepLIFT additivity error {t.additivity_max_error:.1e}; vs exact "
          f"Shapley max |diff| {t.deviation.max_abs:.3f}, mean {t.deviation.mean_abs:.4f}, top 3 "
          f"{t.deviation.top_method} vs {t.deviation.top_reference}")


def _alternate(paths: dict, repeats: int) -> dict:
    """Median wall time of each path, run in turn ``repeats`` times (noise hits both alike)."""
    import statistics

    times: dict = {k: [] for k in paths}
    out = {}
    for _ in range(repeats):
        for k, fn in paths.items():
            t = time.perf_counter()
            out[k] = fn()
            times[k].append(time.perf_counter() - t)
    return {k: (statistics.median(v), out[k]) for k, v in times.items()}


def kernel_vs_shap(args) -> None:
    import os

    import numpy as np
    import pandas as pd
    import shap
    import torch
    from shap.utils._legacy import DenseData

    from audit.config import AuditPlan
    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec, build_audit_data
    from audit.core.method import RunContext
    from audit.methods.shap import Shap, ShapConfig, _explained_fn, _kernel_values

    torch.set_num_threads(1)
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()}; shap {shap.__version__}")
    problems = []
    if (ROOT / "examples" / "adult_mlp" / "model.safetensors").is_file():
        from audit.runner import load_inputs

        inputs = load_inputs(AuditPlan.load(ROOT / "examples" / "adult_mlp" / "audit.toml"))
        problems.append(("Adult MLP", inputs.data, inputs.model))
    frame = pd.read_csv(ROOT / "benchmarks" / "data" / "german_credit.csv")
    german = build_audit_data(frame, DatasetSpec(target="risk", positive_label="1"))
    raw = german.encoding.decode(german.X)
    cats = [c for c in german.feature_names if not pd.api.types.is_numeric_dtype(raw[c])]
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def pipeline(est):
        ct = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cats)],
                               remainder=StandardScaler())
        return make_pipeline(ct, est).fit(raw, german.y)

    logit = as_adapter(pipeline(LogisticRegression(max_iter=1000)), encoding=german.encoding, raw_input=True)
    problems.append(("German credit LogisticRegression Pipeline (raw input)", german, logit))
    rng = np.random.default_rng(0)
    for name, data, model in problems:
        groups = [np.asarray(v) for v in data.encoding.groups.values()]
        bg = data.X[rng.choice(data.n_rows, 50, replace=False)]
        X = data.X[rng.choice(data.n_rows, args.sample_rows, replace=False)]
        f = _explained_fn(model, "probability", bg)
        names = list(data.feature_names)

        def project():
            return _kernel_values(f, X, bg, None, groups, names, args.nsamples, "identity", 0)[0]

        def direct():
            # the project seeds each shard of _KERNEL_SHARD rows from (seed, shard index): the
            # direct call explains the same rows shard by shard with the same seeds
            from audit import execution
            from audit.methods.shap import _KERNEL_SHARD

            parts = []
            for r in execution.split_by(len(X), _KERNEL_SHARD):
                np.random.seed(int(execution.chunk_rng(0, r.start // _KERNEL_SHARD).integers(2**31 - 1)))
                explainer = shap.KernelExplainer(f, DenseData(bg.astype(float), names, groups))
                parts.append(np.asarray(explainer.shap_values(X[r.start:r.stop].astype(float),
                                                              nsamples=args.nsamples, l1_reg=False, silent=True)))
            return np.concatenate(parts, axis=0)

        res = _alternate({"project": project, "shap": direct}, args.repeats)
        (tp, vp), (ts, vs) = res["project"], res["shap"]
        print(f"{name}: {len(groups)} raw features as groups of {data.X.shape[1]} encoded columns, "
              f"{len(X)} rows x {args.nsamples} coalitions x {len(bg)} background rows")
        print(f"  project KernelSHAP {tp:.2f} s, shap.KernelExplainer directly {ts:.2f} s: ratio project/shap "
              f"{tp / ts:.2f} (median of {args.repeats}); "
              f"max |value difference| {np.abs(vp - vs.reshape(vp.shape)).max():.1e}")

    hgb = as_adapter(pipeline(HistGradientBoostingClassifier(max_iter=100, random_state=0)),
                     encoding=german.encoding, raw_input=True)
    cfg = ShapConfig(n_rows=300, kernel_n_rows=300, n_bootstrap=0)
    sub = german.subset(np.arange(300))
    t = time.perf_counter()
    tree = Shap().run(hgb, sub, cfg, RunContext.default(0))
    t_tree = time.perf_counter() - t
    t = time.perf_counter()
    kern = Shap().run(hgb, sub.subset(np.arange(10)), ShapConfig(explainer="kernel", n_bootstrap=0,
                                                                 kernel_n_rows=10), RunContext.default(0))
    t_kern = (time.perf_counter() - t) / 10 * 300
    print(f"German credit HistGradientBoosting Pipeline, 300 rows: shap method default ({tree.explainer}, "
          f"{tree.explained}) {t_tree:.1f} s (TreeExplainer alone {tree._seconds:.1f} s) incl. its exact check of "
          f"{len(tree.deviation.rows) if tree.deviation else 0} "
          f"rows; additivity max error {tree.additivity_max_error:.1e}. KernelSHAP path ({kern.explainer}) "
          f"{t_kern:.0f} s (timed on 10 rows, scaled): ratio {t_kern / t_tree:.0f}x")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
