"""Captum attributions: completeness of Integrated Gradients, exact one-hot grouping, known
answers on a linear model, occlusion by hand, and skipping models without gradients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import SklearnAdapter, TorchAdapter
from audit.core.dataset import DatasetSpec, Encoding, build_audit_data
from audit.core.method import RunContext
from audit.errors import InvalidConfigError
from audit.methods.saliency import (Saliency, SaliencyConfig, attribute, baseline_row,
                                    explain_rows, to_raw_features)
from tests.conftest import fit_torch_mlp, make_frame

FAST = SaliencyConfig(n_rows=150, n_bootstrap=20, smoothgrad_samples=5, gradient_shap_samples=10,
                      n_background=30)


@pytest.fixture(scope="module")
def mlp_case():
    frame = make_frame(400)
    enc = Encoding.fit(frame[["age", "hours", "job"]])
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K",
                                               sensitive=("sex",)), enc)
    net, _ = fit_torch_mlp(frame, enc)
    return TorchAdapter(task="binary", module=net), data


def _linear_case(weights=(2.0, -1.0, 0.5, 0.0, 3.0)):
    """Regression f(x) = w·x on age, hours, job (one-hot: clerk, exec, tech): known answers."""
    import torch

    frame = make_frame(300)
    frame["value"] = 0.0
    enc = Encoding.fit(frame[["age", "hours", "job"]])
    data = build_audit_data(frame, DatasetSpec(target="value", task="regression"), enc)
    lin = torch.nn.Linear(5, 1, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([weights], dtype=torch.float32))
        lin.bias.fill_(0.25)
    return TorchAdapter(task="regression", module=torch.nn.Sequential(lin), output_kind="identity"), data, np.array(weights)


def test_integrated_gradients_is_complete_within_its_delta(mlp_case):
    model, data = mlp_case
    rows = np.arange(60)
    base, _, _ = baseline_row(data, "mean_mode")
    fx = model.output(data.X[rows])
    fb = model.output(base)[0]
    worst = []
    for steps in (16, 256):
        cfg = SaliencyConfig(methods=("integrated_gradients",), ig_steps=steps)
        attr, delta, _ = explain_rows(model, data, rows, cfg, baseline=base, background=data.X[:10], seed=0)
        raw = to_raw_features(attr["integrated_gradients"], data.encoding, "integrated_gradients")
        gap = np.abs(raw.sum(axis=1) - (fx - fb))
        # Completeness: raw-feature attributions sum to f(x) - f(b) up to captum's delta
        # (plus float32 round-off), whatever the number of steps ...
        assert np.all(gap <= np.abs(delta) + 1e-5)
        worst.append(np.abs(delta).max())
    # ... and the delta shrinks as the integral gets more steps (this toy ReLU net is steep).
    assert worst[1] < 0.02 < worst[0]


def test_one_hot_grouping_is_exact_for_integrated_gradients(mlp_case):
    model, data = mlp_case
    rows = np.arange(40)
    base, _, _ = baseline_row(data, "mean_mode")
    cfg = SaliencyConfig(methods=("integrated_gradients", "occlusion"))
    attr, _, _ = explain_rows(model, data, rows, cfg, baseline=base, background=data.X[:10], seed=0)
    cols = attr["integrated_gradients"]
    raw = to_raw_features(cols, data.encoding, "integrated_gradients")
    for j, idx in enumerate(data.encoding.groups.values()):
        np.testing.assert_allclose(raw[:, j], cols[:, idx].sum(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(raw.sum(axis=1), cols.sum(axis=1), atol=1e-12)
    assert len(data.encoding.groups["job"]) == 3 and raw.shape == (40, 3)
    # Occlusion removes a raw feature's columns together: check one group by hand.
    occ = to_raw_features(attr["occlusion"], data.encoding, "occlusion")
    idx = data.encoding.groups["job"]
    X = data.X[rows].copy()
    X[:, idx] = base[0, idx]
    np.testing.assert_allclose(occ[:, 2], model.output(data.X[rows]) - model.output(X), atol=1e-6)


def test_linear_model_known_answers():
    model, data, w = _linear_case()
    rows = np.arange(20)
    base, _, _ = baseline_row(data, "mean_mode")
    cfg = SaliencyConfig(methods=("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad",
                                  "gradient_shap", "occlusion"), smoothgrad_samples=4,
                         gradient_shap_samples=8)
    attr, delta, _ = explain_rows(model, data, rows, cfg, baseline=base, background=data.X[:20], seed=0)
    X = data.X[rows].astype(float)
    np.testing.assert_allclose(attr["saliency"], np.broadcast_to(w, X.shape), atol=1e-6)
    np.testing.assert_allclose(attr["smoothgrad"], np.broadcast_to(w, X.shape), atol=1e-6)
    np.testing.assert_allclose(attr["input_x_gradient"], X * w, atol=1e-5)
    np.testing.assert_allclose(attr["integrated_gradients"], (X - base) * w, atol=1e-5)
    np.testing.assert_allclose(np.abs(delta), 0, atol=1e-5)
    # Occlusion of a linear model = w·(x - b) over the feature's columns.
    occ = to_raw_features(attr["occlusion"], data.encoding, "occlusion")
    ig = to_raw_features(attr["integrated_gradients"], data.encoding, "integrated_gradients")
    np.testing.assert_allclose(occ, ig, atol=1e-5)
    # Gradient-only methods keep the most sensitive one-hot column: |3.0| for job.
    sal = to_raw_features(attr["saliency"], data.encoding, "saliency")
    np.testing.assert_allclose(sal[:, 2], 3.0, atol=1e-6)


def test_attribute_works_on_any_input_shape():
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    x = torch.randn(5, 3, 4)
    attr, delta, _ = attribute(lambda t: torch.softmax(net(t), 1), x,
                               methods=("saliency", "integrated_gradients", "occlusion"),
                               baseline=torch.zeros(1, 3, 4), background=torch.zeros(4, 3, 4),
                               target=1)
    assert all(a.shape == (5, 3, 4) for a in attr.values())
    assert delta.shape == (5,)


def test_run_on_a_torch_mlp_reports_every_method_and_selected_rows(mlp_case):
    model, data = mlp_case
    result = Saliency().run(model, data, FAST, RunContext.default(0))
    assert set(result.global_importance) == set(FAST.methods)
    assert result.n_rows == 150 and result.sampled
    # This steep toy net needs more than 50 steps: the check must say so rather than pass.
    assert result.ig_delta is not None and not result.ig_delta.within_tolerance
    assert any(f.level == "warning" and "did not converge" in f.text
               for f in Saliency().findings(result, FAST))
    assert "P(>50K)" in result.explained
    assert len(result.rows) == FAST.n_selected
    assert result.rows[0].reason == "most confident positive"
    # The planted rule uses age and job only: hours must come last for the additive methods.
    for m in ("integrated_gradients", "occlusion", "gradient_shap"):
        imp = result.importance_values(m)
        assert min(imp, key=imp.get) == "hours", (m, imp)
    e = result.global_importance["integrated_gradients"]["age"]
    assert e.lower <= e.value <= e.upper and e.level == 0.95 and "bootstrap" in e.method
    assert result._per_row["integrated_gradients"].shape == (150, 3)
    figs = Saliency().figures(result, data)
    assert set(figs) == {"global", "rows"}


def test_multiclass_each_class():
    import torch

    frame = make_frame(200)
    frame["cls"] = np.where(frame.age > 55, "old", np.where(frame.age > 35, "mid", "young"))
    enc = Encoding.fit(frame[["age", "hours", "job"]])
    data = build_audit_data(frame, DatasetSpec(target="cls", task="multiclass"), enc)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    model = TorchAdapter(task="multiclass", module=net, n_classes=3)
    cfg = SaliencyConfig(n_rows=50, n_bootstrap=0, smoothgrad_samples=3, gradient_shap_samples=5,
                         n_background=10, multiclass_target="each", n_selected=2)
    result = Saliency().run(model, data, cfg, RunContext.default(0))
    assert result.per_class_importance is not None and len(result.per_class_importance) == 3
    assert len(result.baseline_output) == 3
    assert result._per_row["integrated_gradients"].shape == (50, 3)


def test_model_without_gradients_is_skipped_with_reason(mlp_case):
    from sklearn.linear_model import LogisticRegression

    _, data = mlp_case
    est = LogisticRegression().fit(data.X, data.y)
    model = SklearnAdapter(task="binary", estimator=est)
    reason = Saliency().skip_reason(model, data, SaliencyConfig())
    assert reason is not None and "gradients" in reason


def test_config_validation():
    with pytest.raises(InvalidConfigError, match=r"'methods' option in \[methods.saliency\] must be one of"):
        SaliencyConfig.from_dict({"methods": ["lrp"]}, method="saliency")
    with pytest.raises(InvalidConfigError, match=r"'n_rows' option in \[methods.saliency\] must be from 1"):
        SaliencyConfig.from_dict({"n_rows": 0}, method="saliency")
    cfg = SaliencyConfig.from_dict({"baseline": "zeros", "methods": ["saliency"]}, method="saliency")
    assert cfg.methods == ("saliency",)


def test_zero_baseline_is_stated(mlp_case):
    model, data = mlp_case
    cfg = SaliencyConfig(methods=("integrated_gradients",), baseline="zeros", n_rows=30, n_bootstrap=0,
                         n_selected=0)
    result = Saliency().run(model, data, cfg, RunContext.default(0))
    assert "all-zero" in result.baseline and result.rows == ()
    assert isinstance(pd.Series(result.importance_values("integrated_gradients")).sum(), float)
    assert not result.global_importance["integrated_gradients"]["age"].has_interval  # n_bootstrap = 0


def test_rows_with_missing_inputs_are_rejected_with_their_count(mlp_case):
    import dataclasses

    from audit.errors import DataValidationError

    model, data = mlp_case
    X = data.X.copy()
    X[[3, 7], 0] = np.nan
    bad = dataclasses.replace(data, X=X)
    with pytest.raises(DataValidationError, match="2 row"):
        Saliency().run(model, bad, FAST, RunContext.default(0))
