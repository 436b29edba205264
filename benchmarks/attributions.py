"""Time the attribution methods on the bundled Adult MLP (not a test; prints ratios).

Run from the repository root:  .venv/bin/python benchmarks/attributions.py [--rows 1000]

What is timed (the same 1,000 audited rows, drawn with seed 0; background/statistics from the
training data, as in an audit):
- global attributions with the shap method's default for this MLP (DeepLIFT through shap's DeepExplainer, 100 background rows, plus its per-run deviation check against exact Shapley values), whole method
  (explainer + bootstrap intervals) and explainer alone;
- GradientExplainer (expected gradients, 200 samples per row) on a subset of rows, scaled;
- KernelSHAP (the baseline; raw-feature groups, 50 background rows, shap's automatic number of
  samples) on a subset of rows, scaled to the full row count -- the scaling is stated;
- LIME per explanation (5,000 samples), as the method runs it;
- captum (the saliency method): each attribution method on the same rows, and the whole method.
Each is measured with torch.set_num_threads(1) and (2): the thread count matters on 2 cores.
Timings are wall-clock on whatever else the machine is doing: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows explained by global SHAP")
    parser.add_argument("--kernel-rows", type=int, default=20, help="rows KernelSHAP is timed on")
    parser.add_argument("--gradient-rows", type=int, default=100, help="rows GradientExplainer is timed on")
    parser.add_argument("--lime-rows", type=int, default=40, help="LIME explanations timed")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    args = parser.parse_args()
    print(machine())

    import numpy as np
    import torch

    from audit.config import AuditPlan
    from audit.core.method import RunContext
    from audit.methods.lime import Lime, LimeConfig
    from audit.methods.shap import Shap, ShapConfig
    from audit.runner import load_inputs

    config = ROOT / "examples" / "adult_mlp" / "audit.toml"
    if not (ROOT / "examples" / "adult_mlp" / "model.safetensors").is_file():
        sys.exit("examples/adult_mlp/model.safetensors is missing: train the example first.")
    inputs = load_inputs(AuditPlan.load(config))
    data, model = inputs.data, inputs.model
    rows = np.sort(np.random.default_rng(0).choice(data.n_rows, min(args.rows, data.n_rows), replace=False))
    sub = data.subset(rows)
    ctx = dataclasses.replace(RunContext.default(0), train=inputs.train)
    print(f"Adult MLP ({model.description}); {len(rows):,} of {data.n_rows:,} test rows; "
          f"{os.cpu_count()} CPUs visible; torch {torch.__version__}")

    # warm up imports and allocators so the first measurement is not charged for them
    Shap().run(model, sub.subset(np.arange(10)), ShapConfig(n_bootstrap=0), ctx)

    def timed(fn):
        """Wall seconds, and the process's CPU seconds (less sensitive to other load on the
        machine; with 2 threads it adds both threads' time, spinning included)."""
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        timed.cpu = time.process_time() - cpu
        return time.perf_counter() - start, out

    table: dict[int, dict[str, float]] = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        res: dict[str, float] = {}
        t, r = timed(lambda: Shap().run(model, sub, ShapConfig(n_rows=len(rows)), ctx))
        assert r.explainer == "deep"
        res["deep_method_s"] = t
        res["deep_method_cpu_s"] = timed.cpu
        res["deep_explainer_s"] = r._seconds
        res["deep_additivity"] = r.additivity_max_error

        g = sub.subset(np.arange(min(args.gradient_rows, len(rows))))
        t, r = timed(lambda: Shap().run(model, g, ShapConfig(explainer="gradient", n_bootstrap=0), ctx))
        res["gradient_per_row_s"] = r._seconds / g.n_rows
        res["gradient_cpu_per_row_s"] = timed.cpu / g.n_rows

        k = sub.subset(np.arange(min(args.kernel_rows, len(rows))))
        t, r = timed(lambda: Shap().run(model, k, ShapConfig(explainer="kernel", kernel_n_rows=k.n_rows,
                                                               n_bootstrap=0), ctx))
        assert r.explainer == "kernel"
        res["kernel_per_row_s"] = r._seconds / k.n_rows
        res["kernel_cpu_per_row_s"] = timed.cpu / k.n_rows

        cfg = LimeConfig(n_random=0, n_seeds=2, n_global_rows=args.lime_rows, n_bootstrap=0)
        t, r = timed(lambda: Lime().run(model, data, cfg, ctx))
        res["lime_per_expl_s"] = r._seconds / r._n_explanations
        res["lime_method_s"] = t
        res["lime_cpu_per_expl_s"] = timed.cpu / r._n_explanations

        # captum (the saliency method): each attribution method on the same rows, and the method.
        from audit.methods.saliency import Saliency, SaliencyConfig

        t, sal = timed(lambda: Saliency().run(model, sub, SaliencyConfig(n_rows=len(rows)), ctx))
        res["captum_method_s"] = t
        res["captum_method_cpu_s"] = timed.cpu
        for m, secs in sal._seconds.items():
            res[f"captum_{m}_s"] = secs
        table[threads] = res

        n = len(rows)
        print(f"\n== torch.set_num_threads({threads})")
        print(f"  DeepLIFT (shap DeepExplainer), {n:,} rows: explainer {res['deep_explainer_s']:.2f} s "
              f"({1000 * res['deep_explainer_s'] / n:.2f} ms/row); whole method incl. bootstrap "
              f"{res['deep_method_s']:.2f} s (target < 5 s; CPU {res['deep_method_cpu_s']:.2f} s); "
              f"additivity max error "
              f"{res['deep_additivity']:.1e}")
        print(f"  SHAP GradientExplainer: {1000 * res['gradient_per_row_s']:.1f} ms/row "
              f"(CPU {1000 * res['gradient_cpu_per_row_s']:.1f}; timed on {g.n_rows} rows) -> "
              f"{res['gradient_per_row_s'] * n:.1f} s for {n:,} rows (scaled)")
        print(f"  KernelSHAP baseline: {1000 * res['kernel_per_row_s']:.1f} ms/row (timed on {k.n_rows} "
              f"rows; CPU {1000 * res['kernel_cpu_per_row_s']:.1f} ms/row) -> {res['kernel_per_row_s'] * n:.1f} s "
              f"for {n:,} rows (scaled linearly)")
        print(f"  LIME: {1000 * res['lime_per_expl_s']:.1f} ms per explanation (CPU "
              f"{1000 * res['lime_cpu_per_expl_s']:.1f} ms; 5,000 samples; "
              f"{r._n_explanations} explanations); whole method {res['lime_method_s']:.2f} s")
        print(f"  captum, {n:,} rows: " + "; ".join(
            f"{m} {1000 * res[f'captum_{m}_s'] / n:.2f} ms/row" for m in
            ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap",
             "occlusion")) + f"; whole saliency method {res['captum_method_s']:.2f} s "
              f"(CPU {res['captum_method_cpu_s']:.2f} s)")
        print(f"  ratio KernelSHAP / captum Integrated Gradients per row: "
              f"{res['kernel_per_row_s'] / (res['captum_integrated_gradients_s'] / n):.0f}x [{machine()}]")
        print(f"  ratio KernelSHAP / DeepExplainer per row: "
              f"{res['kernel_per_row_s'] / (res['deep_explainer_s'] / n):.0f}x [{machine()}]")

    print(f"\nat the end: {machine()}")
    if len(table) > 1:
        t1, *others = sorted(table)
        for t2 in others:
            print(f"\n== {t2} threads / {t1} thread (>1 means {t2} threads is slower)")
            for key, label in (("deep_explainer_s", "DeepExplainer"), ("gradient_per_row_s", "GradientExplainer"),
                               ("kernel_per_row_s", "KernelSHAP"), ("lime_per_expl_s", "LIME"),
                               ("captum_integrated_gradients_s", "captum IG"),
                               ("captum_gradient_shap_s", "captum GradientSHAP"),
                               ("captum_method_s", "saliency method")):
                print(f"  {label:18s} {table[t2][key] / table[t1][key]:.2f}")


if __name__ == "__main__":
    main()
