"""The bundled CNN and LSTM examples audit end to end, and image data with per-example sensitive
attributes flows through the runner (fairness applies unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.config import AuditPlan
from audit.report.render import render_html
from audit.runner import load_inputs, run_audit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _plan(name: str, methods: tuple[str, ...] | None = ("surrogate", "fairness")) -> AuditPlan:
    plan = AuditPlan.load(EXAMPLES / name / "audit.toml")
    return plan.with_overrides(methods=methods)


def test_digits_cnn_audit_produces_a_report():
    inputs = load_inputs(_plan("digits_cnn"))
    assert inputs.data.X.shape == (540, 1, 8, 8) and inputs.data.modality == "image"
    # the shipped weights reproduce the accuracy the model card states
    acc = float(np.mean(inputs.model.predict(inputs.data.X) == inputs.data.y))
    assert acc == pytest.approx(json.loads((EXAMPLES / "digits_cnn/metrics.json").read_text())["accuracy"])
    report = run_audit(_plan("digits_cnn"), inputs=inputs)
    sur = report.outcome("surrogate").result
    assert sur.fidelity_metric == "agreement" and 0.5 < sur.fidelity <= 1.0
    assert all(name.startswith("patch[") for name in sur.feature_importance)
    assert "no sensitive attributes" in report.outcome("fairness").result.reason
    html = render_html(report)
    assert "Global surrogate tree" in html and "patch[" in html
    assert "impurity decrease from each input region" in html
    assert "importance_map" in _figure_names(inputs.data, sur)
    assert any(f["role"] == "architecture" and f["path"].endswith("model.py") for f in inputs.files)


def test_macro_lstm_audit_produces_a_report():
    inputs = load_inputs(_plan("macro_lstm"))
    data = inputs.data
    assert data.X.shape == (194, 8, 5) and data.modality == "sequence" and data.task == "regression"
    assert data.frame["target_time"].iloc[0] == "1961-04-01"
    # a window's last unemployment value is the quarter before its target
    raw = pd.read_csv(EXAMPLES / "macro_lstm/data/macro_quarterly.csv")
    assert data.y[0] == raw.loc[raw.date == "1961-04-01", "unemp"].item()
    report = run_audit(_plan("macro_lstm"), inputs=inputs)
    sur = report.outcome("surrogate").result
    assert sur.fidelity_metric == "r2" and sur.fidelity > 0.5
    assert "unemp[t-1]" in sur.feature_importance
    assert report.data_summary["features"] == ["unemp", "gdp_growth", "inv_growth", "infl", "tbilrate"]
    assert "Global surrogate tree" in render_html(report)
    assert "importance_map" in _figure_names(data, sur)


def _figure_names(data, result) -> list[str]:
    from audit.core.plots import pyplot
    from audit.methods.surrogate import Surrogate

    figs = Surrogate().figures(result, data)
    for fig in figs.values():
        pyplot().close(fig)
    return list(figs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_cnn", "macro_lstm"])
def test_example_cli_run_writes_every_format(name, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    result = CliRunner().invoke(app, ["run", str(EXAMPLES / name / "audit.toml"), "--out",
                                      str(tmp_path / name), "-q", "--full"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == [".audit-report", "model_card.md", "report.html",
                                                                  "report.pdf", "results.json"]
    doc = json.loads((tmp_path / name / "results.json").read_text())
    assert doc["methods"]["surrogate"]["status"] == "ok"
    assert not [m for m, r in doc["methods"].items() if r.get("status") == "failed"]


TINY_CNN = '''
import torch
from torch import nn

class Tiny(nn.Module):
    """Logit of class 1 = mean brightness of the left half minus the right half."""
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, 1, 4, 4))
    def forward(self, x):
        s = (x * self.w).sum(dim=(1, 2, 3))
        return torch.stack([-s, s], dim=1)
'''


def _image_project(folder: Path, *, cls_source: str, weight: float) -> Path:
    """A user's folder: PNGs + labels.csv with a sensitive column, model.py, weights, audit.toml."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "imgs").mkdir()
    rng = np.random.default_rng(1)
    rows = []
    for i in range(80):
        img = rng.integers(0, 100, (4, 4))
        bright_left = i % 2 == 0
        if bright_left:
            img[:, :2] += 150
        else:
            img[:, 2:] += 150
        Image.fromarray(img.astype(np.uint8), mode="L").save(folder / "imgs" / f"{i}.png")
        rows.append({"file": f"{i}.png", "label": int(bright_left), "site": "north" if i < 40 else "south"})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    (folder / "model.py").write_text(cls_source)
    w = torch.zeros(1, 1, 4, 4)
    w[..., :2], w[..., 2:] = weight, -weight
    save_file({"w": w}, str(folder / "model.safetensors"))
    (folder / "audit.toml").write_text(
        'name = "tiny"\n[model]\npath = "model.safetensors"\narchitecture = "model:Tiny"\n'
        'task = "binary"\n[data]\nmodality = "image"\npath = "imgs"\nlabels = "labels.csv"\n'
        'target = "label"\nsensitive = ["site"]\nchannels = 1\nscaling = { scale = 255 }\n'
        'patch_size = 2\n[report]\nformats = ["html", "json"]\n')
    return folder


def test_png_folder_audit_with_sensitive_attribute(tmp_path):
    folder = _image_project(tmp_path / "proj", cls_source=TINY_CNN, weight=1.0)
    plan = AuditPlan.load(folder / "audit.toml").with_overrides(methods=("fairness", "surrogate"))
    report = run_audit(plan)
    fair = report.outcome("fairness")
    assert fair.ok, fair.result
    groups = {g.group: g for g in fair.result.attributes["site"].groups}
    assert set(groups) == {"north", "south"} and groups["north"].count == 40
    acc = groups["north"].metrics["accuracy"]
    assert getattr(acc, "value", acc) == pytest.approx(1.0)
    assert report.outcome("surrogate").result.fidelity == pytest.approx(1.0)


def test_two_folders_with_the_same_module_name_do_not_shadow_each_other(tmp_path):
    a = _image_project(tmp_path / "a", cls_source=TINY_CNN, weight=1.0)
    flipped = TINY_CNN.replace("torch.stack([-s, s]", "torch.stack([s, -s]")
    b = _image_project(tmp_path / "b", cls_source=flipped, weight=1.0)
    ya = load_inputs(AuditPlan.load(a / "audit.toml"))
    yb = load_inputs(AuditPlan.load(b / "audit.toml"))
    pa, pb = ya.model.predict(ya.data.X), yb.model.predict(yb.data.X)
    assert np.array_equal(pa, 1 - pb) and np.array_equal(pa, ya.data.y)


# ---- retraining the bundled networks (attribution_significance's null) ------------------------

def _bundled(name: str):
    """The example's model, θ₀, fitting rows and recipe, as attribution_significance reads them."""
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from audit.train.recipe import Recipe

    plan = AuditPlan.load(EXAMPLES / name / "audit.toml")
    inputs = load_inputs(plan)
    train = inputs.train
    doc = json.loads((EXAMPLES / name / "training.json").read_text())
    doc |= dict(plan.method_options.get("attribution_significance", {}).get("recipe", {}))
    recipe = Recipe.from_mapping(doc, source="training.json",
                                 loss="mse" if name == "macro_lstm" else "cross_entropy")
    fit, _ = recipe.fit_rows(len(train.X))
    X = torch.from_numpy(np.ascontiguousarray(train.X[fit], dtype=np.float32))
    y = train.y[fit]
    y = torch.from_numpy(y.astype(np.float32) if name == "macro_lstm" else y.astype(np.int64))
    theta0 = load_file(str(EXAMPLES / name / "model_init.safetensors"))
    short = dataclasses.replace(recipe, epochs=1 if name == "digits_cnn" else 30)
    return inputs.model.module, theta0, X, y, short


def _permuted(y, B: int):
    import torch

    rng = np.random.default_rng(0)
    return torch.stack([y] + [y[torch.from_numpy(rng.permutation(len(y)))] for _ in range(B - 1)])


@pytest.mark.parametrize("name", ["digits_cnn", "macro_lstm"])
def test_bundled_network_batched_retraining_equals_sequential(name):
    """Every network of the batched (traced) program follows its own trajectory: the parameters
    after training equal torch.nn + torch.optim one network at a time, to float round-off."""
    import torch

    from audit.train.functional import train_functional, train_sequential

    module, theta0, X, y, recipe = _bundled(name)
    Y = _permuted(y, 3)
    fit = train_functional(module, theta0, X, Y, recipe, n_workers=1)
    assert fit.mode == "graph" and not fit.diverged.any()
    seq = train_sequential(module, theta0, X, Y, recipe)
    for b in range(3):
        for k in seq[b]:
            torch.testing.assert_close(fit.params[k][b], seq[b][k], rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("name", ["digits_cnn", "macro_lstm"])
def test_bundled_network_batched_retraining_does_less_work_than_sequential_at_B_8(name):
    """The work counts behind "batched beats sequential from B = 8": per epoch (CNN) or step
    (LSTM), the same floating-point operations (torch's FlopCounterMode, forward and backward)
    in fewer dispatched operations. The time itself is measured by benchmarks/retrain_cnn_lstm.py."""
    import dataclasses

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from audit.train.functional import batched_module, train_functional, train_sequential, vmappable_copy

    import math

    import torch

    def conv_backward_flops(grad_out, x, w, *args, out_shape=None):
        # torch's formula ignores `groups` for the weight gradient (counts B x too much for a
        # grouped convolution); each requested gradient costs as much as the forward
        output_mask = args[7]
        return 2 * math.prod(grad_out) * math.prod(w[1:]) * (int(output_mask[0]) + int(output_mask[1]))

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    module, theta0, X, y, recipe = _bundled(name)
    X, y = X[:256], y[:256]
    Y = _permuted(y, 8)
    batched_module(module, theta0, X[:4])               # trace and probe outside the counts
    # the LSTM written out as matrix products (aten::lstm has no FLOP formula), for the FLOP count
    unrolled = vmappable_copy(module)[0]
    counts = {}
    for way, mod, fn in (("batched", module, lambda m, r: train_functional(m, theta0, X, Y, r, n_workers=1)),
                         ("sequential", module, lambda m, r: train_sequential(m, theta0, X, Y, r)),
                         ("unrolled", unrolled, lambda m, r: train_sequential(m, theta0, X, Y, r))):
        per_length = []
        for epochs in (1, 3):                           # the difference: two epochs, no set-up
            Count.n = 0
            with FlopCounterMode(display=False, custom_mapping={
                    torch.ops.aten.convolution_backward: conv_backward_flops}) as flops, Count():
                fn(mod, dataclasses.replace(recipe, epochs=epochs))
            per_length.append((Count.n, flops.get_total_flops()))
        counts[way] = tuple(b - a for a, b in zip(*per_length))
    (ops_b, flops_b), (ops_s, _), (_, flops_s) = counts["batched"], counts["sequential"], counts["unrolled"]
    # no extra arithmetic beyond the LSTM's bias column (K = 22 instead of 21) and its input-gradient
    # product over all K rows (22 instead of 16)
    assert flops_b <= 1.2 * flops_s
    assert ops_b < ops_s                     # per epoch / step, probe and tracing excluded


@pytest.mark.parametrize("case", ["cnn_case", "lstm_case"])
def test_retraining_benchmark_second_floor_counts_the_same_flops_as_the_first(case):
    """benchmarks/retrain_cnn_lstm.py's second floor times the model's own products: found from
    the module by hooks, they must add up to the analytic FLOPs of the first floor (per step)."""
    from tests.conftest import load_benchmark

    bench = load_benchmark("retrain_cnn_lstm")
    c = getattr(bench, case)()
    rows = c["X"][: c["recipe"].step_rows(len(c["X"]))]
    prods = bench.products(c["net"], rows)
    assert prods and all(min(p[1:]) >= 1 for p in prods)
    per_step = sum(2 * M * K * N * t for _, M, K, N, t in prods)
    analytic = c["flops_per_epoch"] / 3 / len(c["X"]) * len(rows)   # forward FLOPs of one step's rows
    assert per_step == pytest.approx(analytic, rel=1e-12)
    assert bench.block_size(99) == 13 and bench.block_size(8) == 8
