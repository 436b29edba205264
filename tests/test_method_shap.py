"""Known-answer tests of the SHAP method: exact values of linear models, additivity, planted
importance, the explainer fall-backs and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import as_adapter
from audit.core.dataset import DatasetSpec, build_audit_data
from audit.core.method import RunContext
from audit.errors import DataValidationError, InvalidConfigError
from audit.methods.shap import Shap, ShapConfig
from tests.conftest import fit_torch_mlp, make_frame

torch = pytest.importorskip("torch")

@pytest.fixture(autouse=True)
def _one_thread():
    """As the runner does: on these small models one intra-op thread is much faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAST = dict(n_bootstrap=200, kernel_n_rows=20, n_rows=200)


def _linear_data(n: int = 120, seed: int = 0, task: str = "binary"):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(2, 1.5, n), "b": rng.normal(-1, 0.5, n),
                          "job": rng.choice(["clerk", "exec", "tech"], n)})
    frame["y"] = rng.integers(0, 2, n) if task == "binary" else rng.normal(size=n)
    return build_audit_data(frame, DatasetSpec(target="y", task=task))


def _linear_net(width: int, seed: int = 1):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(width, 1))
    return net.eval()


def _expected_linear(data, w: np.ndarray, rows) -> np.ndarray:
    """w·(x − E[x]) per encoded column, summed per raw feature (E over every audited row)."""
    X = data.X.astype(np.float64)
    contrib = w[None, :] * (X[list(rows)] - X.mean(axis=0))
    return data.encoding.aggregate(contrib, "sum")


@pytest.mark.parametrize("explainer", ["deep", "exact"])
def test_deep_and_exact_shap_of_a_linear_logit_model_are_w_times_x_minus_mean(explainer):
    data = _linear_data()
    net = _linear_net(data.X.shape[1])
    w = net[0].weight.detach().double().numpy()[0]
    cfg = ShapConfig(explainer=explainer, scale="logit", background_size=10_000, **FAST)  # every row
    r = Shap().run(as_adapter(net), data, cfg, RunContext.default(0))
    assert r.explainer == explainer and r.scale == "logit"
    np.testing.assert_allclose(r.values, _expected_linear(data, w, r.rows), atol=2e-5)
    assert r.additivity_max_error < 1e-4


def test_deep_shap_of_a_linear_regression_net_is_exact():
    data = _linear_data(task="regression")
    net = _linear_net(data.X.shape[1], seed=3)
    w = net[0].weight.detach().double().numpy()[0]
    r = Shap().run(as_adapter(net, task="regression"), data,
                   ShapConfig(explainer="deep", background_size=10_000, **FAST), RunContext.default(0))
    assert r.scale == "value" and r.explained == "the predicted value"
    np.testing.assert_allclose(r.values, _expected_linear(data, w, r.rows), atol=2e-5)


def test_kernel_shap_of_sklearn_linear_regression_is_exact():
    from sklearn.linear_model import LinearRegression

    data = _linear_data(task="regression")
    y = data.X @ np.array([1.5, -2.0, 0.3, 0.0, 0.7])
    est = LinearRegression().fit(data.X, y)
    cfg = ShapConfig(explainer="kernel", kernel_background_size=10_000, **FAST)
    r = Shap().run(as_adapter(est, task="regression"), data, cfg, RunContext.default(0))
    assert r.explainer == "kernel"
    # 3 raw features: every coalition is enumerated, so KernelSHAP is exact here.
    np.testing.assert_allclose(r.values, _expected_linear(data, est.coef_, r.rows), atol=1e-5)
    assert r.additivity_ok


def test_additivity_holds_for_the_mlp_on_string_categoricals(frame, encoding):
    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    assert not pd.api.types.is_numeric_dtype(data.frame["job"])  # raw strings; shap gets encoded arrays
    r = Shap().run(as_adapter(net), data, ShapConfig(explainer="deep", **FAST), RunContext.default(0))
    assert r.explainer == "deep" and r.explained == "P(>50K)"
    assert r.features == ("age", "hours", "job") and r.values.shape == (200, 3)
    assert r.additivity_max_error < 1e-5 and r.additivity_ok and r.additivity_tolerance == 0.01
    np.testing.assert_allclose(r.outputs, as_adapter(net).output(data.X[list(r.rows)]), atol=1e-6)
    # mean |SHAP| is computed after summing the one-hot columns of 'job' per row
    assert r.global_importance["job"].value == pytest.approx(np.abs(r.values[:, 2]).mean())
    assert r.ranking[0] in {"age", "job"} and r.ranking[-1] == "hours"


def test_planted_dominant_feature_ranks_first_with_separated_interval():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"weak": rng.normal(size=n), "dominant": rng.normal(size=n),
                          "noise": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    data = build_audit_data(frame, DatasetSpec(target="y"))
    net = torch.nn.Sequential(torch.nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.3, 3.0, 0.05]]))
        net[0].bias.zero_()
    r = Shap().run(as_adapter(net), data, ShapConfig(**FAST), RunContext.default(0))
    assert r.ranking == ("dominant", "weak", "noise")
    dominant, weak = r.global_importance["dominant"], r.global_importance["weak"]
    assert dominant.lower > weak.upper
    assert dominant.lower <= dominant.value <= dominant.upper and dominant.level == r.confidence


def test_same_seed_same_values_and_rows_are_a_stated_sample(frame, encoding):
    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    a = Shap().run(as_adapter(net), data, ShapConfig(n_rows=50, n_bootstrap=50), RunContext.default(7))
    b = Shap().run(as_adapter(net), data, ShapConfig(n_rows=50, n_bootstrap=50), RunContext.default(7))
    assert a.rows == b.rows and a.sampled and len(a.rows) == 50
    np.testing.assert_array_equal(a.values, b.values)
    assert a.global_importance == b.global_importance
    assert any("50 of the 600 rows" in n for n in a.notes)


def test_background_larger_than_the_data_is_clipped_with_a_note():
    data = _linear_data(n=40)
    r = Shap().run(as_adapter(_linear_net(data.X.shape[1])), data,
                   ShapConfig(background_size=500, n_bootstrap=0), RunContext.default(0))
    assert r.background_size == 40
    assert any("asked for 500 rows" in n and "all 40 rows were used" in n for n in r.notes)


def test_model_without_gradients_falls_back_to_kernel_with_a_note(frame, encoding):
    from sklearn.linear_model import LogisticRegression

    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    est = LogisticRegression(max_iter=500).fit(data.X, data.y)
    r = Shap().run(as_adapter(est), data, ShapConfig(explainer="deep", **FAST), RunContext.default(0))
    assert r.explainer == "kernel" and len(r.rows) == 20
    assert any("needs a differentiable torch model" in n for n in r.notes)
    assert r.additivity_ok


def test_tree_explainer_for_sklearn_forests(frame, encoding):
    from sklearn.ensemble import RandomForestClassifier

    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    est = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(data.X, data.y)
    r = Shap().run(as_adapter(est), data, ShapConfig(explainer="tree", background_size=50, n_rows=100, n_bootstrap=50),
                   RunContext.default(0))
    assert r.explainer == "tree" and r.additivity_max_error < 1e-6
    assert r.ranking[0] in {"age", "job"}


def test_tree_explainer_additivity_for_boosting_and_bootstrapped_forest_regression(frame, encoding):
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor

    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    gbm = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(data.X, data.y)
    cfg = ShapConfig(explainer="tree", background_size=50, n_rows=100, n_bootstrap=0)
    r = Shap().run(as_adapter(gbm), data, dataclasses.replace(cfg, scale="probability"), RunContext.default(0))
    assert r.explainer == "tree" and r.additivity_max_error < 1e-6
    np.testing.assert_allclose(r.outputs, gbm.predict_proba(data.X[list(r.rows)])[:, 1], atol=1e-9)
    # by default a boosted classifier is explained on its margin (the log-odds), where Tree SHAP is exact
    r = Shap().run(as_adapter(gbm), data, cfg, RunContext.default(0))
    assert r.scale == "logit" and r.explained == "the log-odds of >50K" and r.additivity_max_error < 1e-6
    np.testing.assert_allclose(r.outputs, gbm.decision_function(data.X[list(r.rows)]), atol=1e-6)
    # bootstrapped, fully grown trees on float32 inputs: without the float32 threshold fix,
    # shap's interventional Tree SHAP sent rows down the wrong branch (errors of ~20 here)
    reg = build_audit_data(frame.assign(v=np.arange(len(frame), dtype=float)),
                           DatasetSpec(target="v", task="regression", features=("age", "hours", "job")),
                           encoding)
    rf = RandomForestRegressor(n_estimators=10, random_state=0).fit(reg.X, reg.y)
    r = Shap().run(as_adapter(rf, task="regression"), reg,
                   ShapConfig(explainer="tree", background_size=50, n_rows=200, n_bootstrap=0), RunContext.default(0))
    assert r.explainer == "tree" and r.additivity_max_error < 1e-3 and r.additivity_ok


def test_additivity_failure_is_a_flagged_finding_not_a_silent_pass():
    class Squares(torch.nn.Module):
        """x² through a functional op DeepLIFT cannot see: its rule is then not exact."""

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x ** 2)

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80), "y": [0, 1] * 40})
    data = build_audit_data(frame, DatasetSpec(target="y"))
    torch.manual_seed(0)
    model = as_adapter(Squares().eval(), task="regression")
    cfg = ShapConfig(explainer="deep", n_bootstrap=0, additivity_tolerance=1e-3)
    r = Shap().run(model, data, cfg, RunContext.default(0))
    assert r.explainer == "deep" and not r.additivity_ok
    levels = [f.level for f in Shap().findings(r, cfg) if "do not add up" in f.text]
    assert levels and levels[0] in {"warning", "alert"}


def test_multiclass_explains_the_predicted_class():
    rng = np.random.default_rng(0)
    n = 150
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "y": rng.choice(["x", "y", "z"], n)})
    data = build_audit_data(frame, DatasetSpec(target="y", task="multiclass"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    model = as_adapter(net, task="multiclass")
    logit = Shap().run(model, data, ShapConfig(explainer="deep", scale="logit", n_bootstrap=0),
                       RunContext.default(0))
    assert logit.explainer == "deep" and logit.additivity_max_error < 1e-5
    assert logit.explained_class == tuple(str(data.classes[c]) for c in model.predict(data.X))
    prob = Shap().run(model, data, ShapConfig(explainer="deep", n_bootstrap=0, gradient_n_rows=30),
                      RunContext.default(0))
    assert prob.explainer == "gradient" and any("Softmax" in n for n in prob.notes)
    assert len(prob.rows) == 30 and prob.sampled  # the slower explainer has its own row budget
    assert prob.additivity_max_error < 0.2  # expected gradients: only approximately additive
    assert prob.deviation.reference == "exact" and prob.label == "Expected gradients (GradientExplainer)"
    exact = Shap().run(model, data, ShapConfig(n_bootstrap=0), RunContext.default(0))   # 2 features: exact
    assert exact.explainer == "exact" and exact.additivity_max_error < 1e-6
    assert exact.explained_class == logit.explained_class


def test_rows_with_missing_values_are_rejected_with_their_count():
    frame = make_frame(50)
    frame.loc[[3, 7], "hours"] = np.nan
    with pytest.raises(DataValidationError, match=r"missing \(NaN\) values in 2 row\(s\)"):
        build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K", sensitive=("sex",)))
    data = _linear_data(n=30)
    X = data.X.copy()
    X[[1, 4, 9], 0] = np.nan
    bad = dataclasses.replace(data, X=X)
    with pytest.raises(DataValidationError, match=r"3 row\(s\), first at row 2 \(rows counted from 1"):
        Shap().run(as_adapter(_linear_net(X.shape[1])), bad, ShapConfig(), RunContext.default(0))


def test_config_validation_and_figures(frame, encoding):
    with pytest.raises(InvalidConfigError, match=r"'n_rows' option in \[methods.shap\] must be from 1"):
        ShapConfig.from_dict({"n_rows": 0}, method="shap")
    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    r = Shap().run(as_adapter(net), data, ShapConfig(n_rows=60, n_bootstrap=20), RunContext.default(0))
    figs = Shap().figures(r, data)
    assert {"beeswarm", "dependence_0", "waterfall_0"} <= set(figs)
    import matplotlib.pyplot as plt

    for f in figs.values():
        plt.close(f)
    assert r.to_json()["global_importance"].keys() == set(r.features)


@pytest.mark.slow
def test_deep_and_kernel_shap_agree_on_the_mlp(frame, encoding):
    """Two independent estimators of the same (interventional) SHAP values on the same rows and
    background: DeepLIFT's rule is not exact SHAP for a ReLU network, but close to it."""
    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    sub = data.subset(np.arange(30))
    cfg = dict(n_bootstrap=0, background_size=40, kernel_background_size=40, n_rows=30, kernel_n_rows=30)
    deep = Shap().run(as_adapter(net), sub, ShapConfig(explainer="deep", **cfg), RunContext.default(0))
    kern = Shap().run(as_adapter(net), sub, ShapConfig(explainer="kernel", **cfg), RunContext.default(0))
    assert deep.rows == kern.rows and deep.explainer == "deep" and kern.explainer == "kernel"
    np.testing.assert_allclose(deep.base_values, kern.base_values, atol=1e-6)  # same background
    corr = np.corrcoef(deep.values.ravel(), kern.values.ravel())[0, 1]
    assert corr > 0.95
    assert deep.ranking[0] == kern.ranking[0]


def test_kernel_with_a_kmeans_background_states_it_and_stays_additive(frame, encoding):
    from sklearn.linear_model import LogisticRegression

    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    est = LogisticRegression(max_iter=500).fit(data.X, data.y)
    cfg = ShapConfig(explainer="kernel", background="kmeans", kernel_background_size=8, kernel_n_rows=10,
                     n_bootstrap=0)
    r = Shap().run(as_adapter(est), data, cfg, RunContext.default(0))
    assert r.explainer == "kernel" and r.background_kind == "kmeans" and r.background_size == 8
    assert r.additivity_ok and r.additivity_max_error < 1e-6
    # 3 raw features: KernelSHAP enumerates every coalition, so it equals the exact values over the
    # weighted centres (the check weights them too)
    assert r.deviation.reference == "exact" and r.deviation.max_abs < 1e-6 and r.deviation.within_tolerance


# --------------------------------------------------------------------------------------------
# Known answers against brute-force interventional Shapley values (issue 11, part 4)
# --------------------------------------------------------------------------------------------


def _groups(data):
    return [np.asarray(v) for v in data.encoding.groups.values()]


def test_exact_shapley_reproduces_the_closed_form_of_a_product_and_a_linear_term():
    """f = x0·x1 + 2·x2 against a skewed background: φ0 = ½[(x0·b̄1 − mean(b0·b1)) + (x0·x1 − b̄0·x1)],
    φ1 symmetric, φ2 = 2(x2 − b̄2), with groups {0}, {1}, {2, 3} (column 3 is ignored by f)."""
    from audit.methods.shap import exact_shapley

    rng = np.random.default_rng(3)
    bg = np.column_stack([rng.exponential(size=50), rng.normal(1, 2, 50), rng.normal(size=50), rng.normal(size=50)])
    X = rng.normal(size=(6, 4))
    values, base = exact_shapley(lambda Z: Z[:, 0] * Z[:, 1] + 2 * Z[:, 2], X, bg,
                                 [np.array([0]), np.array([1]), np.array([2, 3])])
    b0, b1, b01 = bg[:, 0].mean(), bg[:, 1].mean(), (bg[:, 0] * bg[:, 1]).mean()
    x0, x1 = X[:, 0].astype(np.float32).astype(float), X[:, 1].astype(np.float32).astype(float)
    phi0 = 0.5 * ((x0 * b1 - b01) + (x0 * x1 - b0 * x1))
    phi1 = 0.5 * ((x1 * b0 - b01) + (x0 * x1 - x0 * b1))
    phi2 = 2 * (X[:, 2] - bg[:, 2].mean())
    np.testing.assert_allclose(values[:, :, 0], np.column_stack([phi0, phi1, phi2]), atol=1e-5)
    assert base[0] == pytest.approx(b01 + 2 * bg[:, 2].mean(), abs=1e-5)


@pytest.mark.parametrize("kind", ["forest", "boosting_regression"])
def test_tree_explainer_uses_all_400_background_rows_and_equals_brute_force_shapley(kind):
    """shap's default masker silently kept 100 of 400 background rows (values off by ~0.02);
    every row is used now, and the values are the exact interventional Shapley values."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

    from audit.methods.shap import exact_shapley
    from audit.report.render import _environment, templates_dir

    frame = make_frame(400)
    frame["job"] = frame.job.map({"clerk": 0, "exec": 1, "tech": 2})  # numeric: one column per player
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K", sensitive=("sex",)))
    if kind == "forest":
        est = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(data.X, data.y)
        model, f = as_adapter(est), (lambda Z: est.predict_proba(Z)[:, 1])
    else:  # boosting is exact on its raw scale (regression); see the next test for probabilities
        est = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(data.X, data.y)
        model, f = as_adapter(est, task="regression"), est.predict
    cfg = ShapConfig(explainer="tree", background_size=400, n_rows=40, n_bootstrap=0)
    r = Shap().run(model, data, cfg, RunContext.default(0))
    assert r.explainer == "tree" and r.background_size == 400  # every audited row is background
    assert Shap().run(model, data, dataclasses.replace(cfg, explainer="auto"),
                      RunContext.default(0)).explainer == "tree"  # numeric features: tree is exact and fast
    X = data.X[list(r.rows)]
    truth, base = exact_shapley(f, X, data.X, _groups(data))
    np.testing.assert_allclose(r.values, truth[:, :, 0], atol=1e-6)
    assert r.base_value == pytest.approx(base[0], abs=1e-9) and r.additivity_max_error < 1e-6
    assert r.deviation is None and r.to_json()["background_size"] == 400
    assert r.to_json()["label"] == "Interventional Tree SHAP (TreeExplainer)"
    html = _environment(str(templates_dir())).get_template("partials/shap.html.j2").render(
        r=r, cfg=cfg, figs={}, report=None)
    assert "400 background rows" in " ".join(html.split())


@pytest.mark.parametrize("case", ["one_hot", "boosted_probability"])
def test_inexact_tree_shap_is_checked_against_brute_force_raw_feature_shapley(case, frame, encoding):
    """Tree SHAP's players are the encoded columns (a one-hot sum is additive but not the
    categorical's Shapley value), and a boosted classifier's probabilities are not exact in shap:
    the deviation is measured and stated; explainer = "exact" gives the exact values."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    if case == "one_hot":
        data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
        est = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(data.X, data.y)
    else:
        num = frame.assign(job=frame.job.map({"clerk": 0, "exec": 1, "tech": 2}))
        data = build_audit_data(num, DatasetSpec(target="income", positive_label=">50K", sensitive=("sex",)))
        est = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(data.X, data.y)
    cfg = ShapConfig(background_size=200, n_rows=60, n_bootstrap=0,
                     scale="auto" if case == "one_hot" else "probability")
    r = Shap().run(as_adapter(est), data, cfg, RunContext.default(0))
    d = r.deviation
    assert r.explainer == "tree" and d is not None and d.reference == "exact" and r.additivity_ok
    assert len(d.rows) == cfg.check_n_rows
    assert d.max_abs > 1e-3   # measured: ~0.01 (one-hot), ~0.09 (boosted probabilities)
    assert ("one-hot" in d.why) == (case == "one_hot") and ("boosted" in d.why) == (case != "one_hot")
    exact = Shap().run(as_adapter(est), data, dataclasses.replace(cfg, explainer="exact"), RunContext.default(0))
    assert exact.deviation is None and exact.additivity_max_error < 1e-6
    pos = [exact.rows.index(i) for i in d.rows]
    assert np.abs(exact.values[pos] - r.values[pos]).max() == pytest.approx(d.max_abs, abs=1e-9)
    # a check that would not fit the tree budget is skipped with the reason, not run for minutes
    small = Shap().run(as_adapter(est), data, dataclasses.replace(cfg, exact_max_evaluations=2000),
                       RunContext.default(0))
    assert small.deviation is None and "over its check budget" in small.deviation_skipped


def _tanh_mlp(seed: int = 3):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    with torch.no_grad():  # steep units: DeepLIFT's rescale rule is far from Shapley there
        net[0].weight.mul_(4)
        net[2].weight.mul_(4)
    return net.eval()


def _four_normals(n: int = 300):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(4)})
    frame["y"] = rng.integers(0, 2, n)
    return build_audit_data(frame, DatasetSpec(target="y"))


def test_deeplift_on_a_tanh_mlp_passes_additivity_but_deviates_from_exact_shapley_and_is_flagged():
    from audit.methods.shap import exact_shapley

    data = _four_normals()
    net = _tanh_mlp()
    cfg = ShapConfig(explainer="deep", background_size=10_000, n_rows=100, n_bootstrap=0, check_n_rows=20)
    r = Shap().run(as_adapter(net), data, cfg, RunContext.default(0))
    assert r.explainer == "deep" and r.label == "DeepLIFT (DeepExplainer)"
    assert r.additivity_ok and r.additivity_max_error < 1e-5     # additivity does not reveal it
    d = r.deviation
    assert d is not None and d.reference == "exact" and len(d.rows) == 20 and set(d.rows) <= set(r.rows)
    # the reported deviation is the real one: recompute exact values on those rows (background = all rows)
    f = lambda Z: torch.sigmoid(net(torch.as_tensor(Z))).detach().double().numpy()  # noqa: E731
    truth, _ = exact_shapley(f, data.X[list(d.rows)], data.X, _groups(data))
    pos = [r.rows.index(i) for i in d.rows]
    diff = np.abs(r.values[pos] - truth[:, :, 0])
    assert d.max_abs == pytest.approx(diff.max(), abs=1e-6) and d.mean_abs == pytest.approx(diff.mean(), abs=1e-6)
    assert d.max_abs > 0.1 >= 5 * cfg.deviation_tolerance and not d.within_tolerance
    assert not d.top_agree and d.top_method[:2] == d.top_reference[:2][::-1]  # top two swapped
    warn = [f for f in Shap().findings(r, cfg) if "not Shapley values" in f.text]
    assert len(warn) == 1 and warn[0].level == "warning" and "DeepLIFT (DeepExplainer)" in warn[0].text
    exact = Shap().run(as_adapter(net), data, dataclasses.replace(cfg, explainer="exact"), RunContext.default(0))
    assert exact.deviation is None and exact.ranking[:2] == d.top_reference[:2]


def test_deeplift_deviation_is_measured_and_labelled_in_every_run_on_a_sigmoid_mlp(frame, encoding):
    from audit.report.render import _environment, templates_dir

    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    cfg = ShapConfig(explainer="deep", n_rows=100, n_bootstrap=0)
    r = Shap().run(as_adapter(net), data, cfg, RunContext.default(0))
    d = r.deviation
    assert d.reference == "exact" and len(d.rows) == cfg.check_n_rows and d.reference_spread is None
    assert 0 <= d.mean_abs <= d.max_abs and d.within_tolerance == (d.max_abs <= d.tolerance)
    js = r.to_json()
    assert js["label"] == "DeepLIFT (DeepExplainer)" and js["deviation"]["max_abs"] == d.max_abs
    assert {"mean_abs", "top_feature_agreement", "top_method", "top_reference"} <= set(js["deviation"])
    html = " ".join(_environment(str(templates_dir())).get_template("partials/shap.html.j2").render(
        r=r, cfg=cfg, figs={}, report=None).split())
    assert "DeepLIFT (DeepExplainer)" in html and "not Shapley values" in html
    assert f"{d.max_abs:.4f}" in html and "SHAP values split" not in html
    b = Shap().run(as_adapter(net), data, cfg, RunContext.default(0))
    assert b.deviation == d  # the checked rows and the reference are seeded


def test_deeplift_deviation_falls_back_to_kernel_shap_when_exact_is_over_budget(frame, encoding):
    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    cfg = ShapConfig(explainer="deep", n_rows=60, n_bootstrap=0, background_size=50, check_n_rows=4,
                     exact_max_evaluations=100, check_nsamples=64)
    r = Shap().run(as_adapter(net), data, cfg, RunContext.default(0))
    d = r.deviation
    assert d.reference == "kernel" and "KernelSHAP" in d.reference_label
    # 3 raw features: 64 samples enumerate every coalition, so KernelSHAP is exact and both runs agree
    assert d.reference_spread < 1e-6
    exact = dataclasses.replace(cfg, exact_max_evaluations=10**9)
    assert Shap().run(as_adapter(net), data, exact, RunContext.default(0)).deviation.max_abs == pytest.approx(
        d.max_abs, abs=1e-6)


def test_auto_uses_exact_values_when_affordable_and_deeplift_with_a_measured_deviation_otherwise(frame, encoding):
    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    from audit.report.render import _environment, templates_dir

    small = Shap().run(as_adapter(net), data, ShapConfig(n_rows=50, n_bootstrap=0), RunContext.default(0))
    assert small.explainer == "exact" and small.deviation is None and small.additivity_max_error < 1e-5
    html = " ".join(_environment(str(templates_dir())).get_template("partials/shap.html.j2").render(
        r=small, cfg=ShapConfig(), figs={}, report=None).split())
    assert "exact interventional Shapley values of the raw features" in html and "DeepLIFT" not in html
    assert "all 2<sup>3</sup> coalitions" in html and "Distance from Shapley values" not in html
    big = Shap().run(as_adapter(net), data, ShapConfig(n_rows=50, n_bootstrap=0, exact_max_evaluations=1000),
                     RunContext.default(0))
    assert big.explainer == "deep" and big.deviation is not None
    assert any("DeepLIFT (DeepExplainer)" in f.text for f in Shap().findings(big, ShapConfig()))


def test_exact_explainer_over_budget_is_a_config_error_naming_the_cost():
    data = _four_normals(50)
    cfg = ShapConfig(explainer="exact", exact_max_evaluations=1000)
    with pytest.raises(InvalidConfigError,
                       match=r"2\^p × background rows × rows = 40,000 .* exact_max_evaluations = 1,000"):
        Shap().run(as_adapter(_tanh_mlp()), data, cfg, RunContext.default(0))
    with pytest.raises(InvalidConfigError, match=r"'check_n_rows' option in \[methods.shap\] must be from 1"):
        ShapConfig.from_dict({"check_n_rows": 0}, method="shap")


def test_agreement_names_the_explainer_that_ran_never_plain_shap_for_deeplift(frame, encoding):
    from audit.methods.agreement import Agreement, AgreementConfig

    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    deep = Shap().run(as_adapter(net), data, ShapConfig(explainer="deep", n_rows=60, n_bootstrap=0),
                      RunContext.default(0))
    ctx = dataclasses.replace(RunContext.default(0), earlier={"shap": deep})
    cfg = AgreementConfig(n_rows=60, n_repeats=1, n_bootstrap=0, sanity_check=False, faithfulness_rows=20)
    r = Agreement().run(as_adapter(net), data, cfg, ctx)
    ranking = next(m for m in r.rankings if m.key == "shap")
    assert ranking.label == "DeepLIFT (DeepExplainer)" and r.short["shap"] == "DeepLIFT"
    assert {c.label for c in r.deletion if c.key == "shap"} == {"DeepLIFT (DeepExplainer)"}
    assert any("DeepLIFT (DeepExplainer)" in f.text for f in Agreement().findings(r, cfg))


def test_images_say_why_the_distance_from_shapley_values_is_not_measured(planted_images):
    from audit.report.render import _environment, templates_dir

    model, data = planted_images
    cfg = ShapConfig(gradient_n_rows=10, background_size=10, gradient_nsamples=20, n_bootstrap=0)
    r = Shap().run(model, data, cfg, RunContext.default())
    assert r.explainer == "deep" and r.deviation is None and "not measured" in r.deviation_skipped
    assert r.label == "DeepLIFT (DeepExplainer)"
    html = " ".join(_environment(str(templates_dir())).get_template("partials/shap.html.j2").render(
        r=r, cfg=cfg, figs={}, report=None).split())
    assert "DeepLIFT attributions, not Shapley values" in html and "Distance from Shapley values: not measured" in html


# --------------------------------------------------------------------------------------------
# Tree models inside Pipelines, XGBoost / LightGBM / HistGradientBoosting (issue 13)
# --------------------------------------------------------------------------------------------

GERMAN = "benchmarks/data/german_credit.csv"


def _german(n: int = 300):
    from pathlib import Path

    frame = pd.read_csv(Path(__file__).resolve().parents[1] / GERMAN).iloc[:n]
    data = build_audit_data(frame, DatasetSpec(target="risk", positive_label="1"))
    raw = data.encoding.decode(data.X)
    cats = [c for c in data.feature_names if not pd.api.types.is_numeric_dtype(raw[c])]
    return data, raw, cats


def _tree_pipeline(kind: str, cats: list[str], encoder: str):
    import lightgbm
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    enc = OneHotEncoder(handle_unknown="ignore") if encoder == "onehot" else OrdinalEncoder()
    est = {"hgb": HistGradientBoostingClassifier(max_iter=20, random_state=0),
           "rf": RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0),
           "xgb": xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1),
           "lgbm": lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1, n_jobs=1)}[kind]
    ct = ColumnTransformer([("cat", enc, cats), ("num", StandardScaler(), ["age", "duration"])],
                           remainder="passthrough")
    return make_pipeline(ct, est)


@pytest.mark.parametrize("kind", ["hgb", "rf", "xgb", "lgbm"])
def test_tree_shap_of_a_pipeline_with_one_column_per_raw_feature_equals_brute_force_raw_shapley(kind):
    """Ordinal-encoded categoricals, scaled and passed-through numerics: every column the tree
    model reads depends on one raw feature, so the values are the raw features' exact
    interventional Shapley values of the pipeline (in its margin for boosted models)."""
    from audit.methods.shap import exact_shapley

    data, raw, cats = _german()
    pipe = _tree_pipeline(kind, cats, "ordinal").fit(raw, data.y)
    model = as_adapter(pipe, encoding=data.encoding, raw_input=True)
    cfg = ShapConfig(n_rows=6, background_size=30, n_bootstrap=0)
    r = Shap().run(model, data, cfg, RunContext.default(0))
    assert r.explainer == "tree" and r.deviation is None and "Pipeline" in r.tree_model
    assert r.scale == ("probability" if kind == "rf" else "logit")
    assert r.summed_columns["purpose"] == ("cat__purpose",) and r.summed_columns["job"] == ("remainder__job",)
    assert r.additivity_max_error < 2e-5
    p = lambda Z: model.output(Z)  # noqa: E731
    f = p if kind == "rf" else (lambda Z: np.log(p(Z) / (1 - p(Z))))
    # the same seeded draw of rows and background rows as the method's
    from audit.methods.shap import _draw

    rows, _, bg, _, _ = _draw("tree", data, data.X, "the audited data", cfg, RunContext.default(0), [])
    assert tuple(int(i) for i in rows) == r.rows
    truth, base = exact_shapley(f, data.X[list(r.rows)], bg, [np.asarray(g) for g in data.encoding.groups.values()])
    np.testing.assert_allclose(r.values, truth[:, :, 0], atol=2e-5)
    assert r.base_value == pytest.approx(base[0], abs=1e-6)


@pytest.mark.parametrize("kind", ["hgb", "xgb", "lgbm"])
def test_tree_shap_of_a_one_hot_pipeline_sums_columns_per_raw_feature_and_measures_the_gap(kind):
    data, raw, cats = _german()
    pipe = _tree_pipeline(kind, cats, "onehot").fit(raw, data.y)
    cfg = ShapConfig(n_rows=40, background_size=30, n_bootstrap=0, check_n_rows=2)
    r = Shap().run(as_adapter(pipe, encoding=data.encoding, raw_input=True), data, cfg, RunContext.default(0))
    assert r.explainer == "tree" and r.additivity_ok and r.additivity_max_error < 2e-5
    assert r.summed_columns["housing"] == ("cat__housing_free", "cat__housing_own", "cat__housing_rent")
    assert r.summed_columns["age"] == ("num__age",)
    assert any("sum of its columns' values" in n for n in r.notes)
    # one-hot sums are additive but not the categorical's Shapley value: the gap is measured
    assert r.deviation is not None and r.deviation.reference == "exact" and "one-hot" in r.deviation.why
    js = r.to_json()
    assert js["explainer"] == "tree" and js["summed_columns"]["sex"] == ["cat__sex_female", "cat__sex_male"]


def test_a_pipeline_step_that_mixes_raw_features_falls_back_with_a_note():
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    data, raw, cats = _german(200)
    pipe = _tree_pipeline("hgb", cats, "onehot")
    pipe = make_pipeline(pipe[0], PCA(4, random_state=0), pipe[-1]).fit(raw, data.y)
    cfg = ShapConfig(n_rows=5, background_size=10, n_bootstrap=0)
    r = Shap().run(as_adapter(pipe, encoding=data.encoding, raw_input=True), data, cfg, RunContext.default(0))
    assert r.explainer == "exact" and r.summed_columns is None and r.additivity_max_error < 1e-6
    assert any("PCA step combines the raw features" in n and "was used instead" in n for n in r.notes)


@pytest.mark.parametrize("kind", ["hgb_multiclass", "xgb_regression", "lgbm_binary", "xgb_booster", "lgbm_booster"])
def test_boosted_models_on_encoded_input_are_explained_on_their_margin_additively(kind):
    import lightgbm
    import xgboost
    from sklearn.ensemble import HistGradientBoostingClassifier

    from audit.methods.shap import _find_tree

    data, raw, cats = _german()
    y = data.y
    if kind == "hgb_multiclass":
        task, y = "multiclass", np.digitize(raw["credit_amount"], [1500, 4000])
        frame = pd.read_csv(__import__("pathlib").Path(__file__).resolve().parents[1] / GERMAN).iloc[:300]
        data = build_audit_data(frame.assign(risk=np.array(["low", "mid", "high"])[y]),
                                DatasetSpec(target="risk", task="multiclass"))
        est = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(data.X, data.y)
    elif kind == "xgb_regression":
        task = "regression"
        frame = pd.read_csv(__import__("pathlib").Path(__file__).resolve().parents[1] / GERMAN).iloc[:300]
        data = build_audit_data(frame, DatasetSpec(target="credit_amount", task="regression"))
        est = xgboost.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1).fit(data.X, data.y)
    else:
        task = "binary"
        est = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1, n_jobs=1).fit(data.X, y)
    if kind == "xgb_booster":   # a bare Booster, as a loader of XGBoost model files exposes it
        booster = xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(data.X, y).get_booster()
        adapter = as_adapter(lambda X: booster.predict(xgboost.DMatrix(X)))
        adapter.booster = booster
        assert _find_tree(adapter).boosted and _find_tree(adapter).name == "xgboost.Booster"
        model = adapter
    elif kind == "lgbm_booster":
        booster = est.booster_
        adapter = as_adapter(lambda X: booster.predict(X))
        adapter.booster = booster
        assert _find_tree(adapter).name == "lightgbm.Booster"
        model = adapter
    else:
        model = as_adapter(est, task=task)
    cfg = ShapConfig(n_rows=50, background_size=40, n_bootstrap=0, check_n_rows=2)
    r = Shap().run(model, data, cfg, RunContext.default(0))
    # XGBoost sums its trees in float32: ~1e-7 relative to outputs in the thousands (regression)
    assert r.explainer == "tree" and r.additivity_max_error < (1e-6 * np.std(r.outputs) if task == "regression"
                                                               else 2e-5)
    assert r.scale == {"multiclass": "margin", "regression": "value", "binary": "logit"}[task]
    if task == "multiclass":
        assert "raw margin" in r.explained and r.explained_class is not None


def test_grouped_kernel_shap_equals_shap_kernel_explainer_value_for_value():
    """The fast path is the same estimator: same coalitions from the same seed, same weights.
    Rows go in shards of _KERNEL_SHARD, each drawing from its own seed (chunk_rng of the
    method's seed and the shard's index)."""
    import shap
    from shap.utils._legacy import DenseData

    from audit.execution import chunk_rng
    from audit.methods.shap import _KERNEL_SHARD, _kernel_values

    rng = np.random.default_rng(0)
    groups = [np.arange(i, i + 3) for i in range(0, 24, 3)] + [np.array([24])]
    W = rng.normal(size=(25, 2))
    f = lambda Z: np.tanh(Z @ W)  # noqa: E731
    bg, X = rng.normal(size=(15, 25)), rng.normal(size=(_KERNEL_SHARD + 4, 25))
    X[1, groups[2]] = 0.0
    bg[:, groups[2]] = 0.0      # a group equal to the whole background does not vary: value 0
    names = [f"g{i}" for i in range(len(groups))]
    mine, base = _kernel_values(f, X, bg, None, groups, names, 200, "identity", 7)
    ref = []
    for shard in (slice(0, _KERNEL_SHARD), slice(_KERNEL_SHARD, None)):
        np.random.seed(int(chunk_rng(7, shard.start // _KERNEL_SHARD).integers(2**31 - 1)))
        sv = shap.KernelExplainer(f, DenseData(bg, names, groups)).shap_values(X[shard], nsamples=200,
                                                                               l1_reg=False, silent=True)
        ref.append(np.asarray(sv))
    np.testing.assert_allclose(mine, np.concatenate(ref), rtol=1e-12, atol=1e-12)
    assert np.all(mine[1, 2] == 0) and np.abs(mine[:, 2]).max() > 0
    np.testing.assert_allclose(base, f(bg).mean(axis=0), atol=1e-12)


def test_grouped_kernel_shap_enumerating_every_coalition_equals_brute_force_shapley():
    from audit.methods.shap import _kernel_values, exact_shapley

    rng = np.random.default_rng(1)
    groups = [np.array([0, 1]), np.array([2]), np.array([3, 4, 5]), np.array([6])]
    f = lambda Z: Z[:, 0] * Z[:, 2] + np.sin(Z[:, 3] * Z[:, 6]) + Z[:, 1] ** 2  # noqa: E731
    bg, X = rng.normal(size=(12, 7)), rng.normal(size=(5, 7))
    values, _ = _kernel_values(f, X, bg, None, groups, list("abcd"), 100, "identity", 0)   # 2^4 - 2 <= 100
    truth, _ = exact_shapley(lambda Z: f(Z.astype(float)), X, bg, groups)
    np.testing.assert_allclose(values, truth, atol=1e-5)


def test_cli_audit_of_a_skops_histgb_pipeline_on_raw_columns_uses_tree_shap_summed_per_raw_feature(tmp_path):
    """`audit run` on a skops-saved Pipeline(ColumnTransformer(one-hot), HistGradientBoosting)
    that reads raw data-frame columns: results.json says TreeExplainer explained the final
    estimator, and each raw feature's values are the sums of its one-hot columns' Tree SHAP
    values, computed here independently with shap on the pipeline's own transform."""
    import json

    import shap
    import skops.io as sio
    from typer.testing import CliRunner

    from audit.cli import app

    _, _, cats = _german(120)
    csv = pd.read_csv(__import__("pathlib").Path(__file__).resolve().parents[1] / GERMAN).iloc[:120]
    pipe = _tree_pipeline("hgb", cats, "onehot").fit(csv.drop(columns="risk"), csv.risk)
    sio.dump(pipe, tmp_path / "model.skops")
    csv.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        'name = "hgb"\nseed = 0\n[model]\npath = "model.skops"\nraw_input = true\ntask = "binary"\n'
        'trusted_types = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]\n'
        '[data]\npath = "data.csv"\ntarget = "risk"\npositive_label = "1"\n'
        '[methods.shap]\nn_rows = 1000\nbackground_size = 1000\nn_bootstrap = 0\ncheck_n_rows = 1\n'
        '[report]\nformats = ["json"]\n', encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(tmp_path / "audit.toml"), "--out", str(out), "-q", "-m", "shap"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())["methods"]["shap"]
    assert doc["status"] == "ok", doc
    r = doc["result"]
    assert r["explainer"] == "tree" and r["label"] == "Interventional Tree SHAP (TreeExplainer)"
    assert "HistGradientBoostingClassifier" in r["tree_model"] and "Pipeline" in r["tree_model"]
    assert r["summed_columns"]["purpose"][0].startswith("cat__purpose_") and r["additivity_max_error"] < 1e-5
    # independently: shap on the pipeline's transform of every row (all rows are the background)
    X = pipe[:-1].transform(csv.drop(columns="risk")).astype(float)
    ex = shap.TreeExplainer(pipe[-1], data=shap.maskers.Independent(X, max_samples=len(X)),
                            feature_perturbation="interventional", model_output="raw")
    cols = ex.shap_values(X[r["rows"]], check_additivity=False)
    names = list(pipe[:-1].get_feature_names_out())
    values = np.asarray(r["values"])
    for j, feat in enumerate(r["features"]):
        idx = [names.index(c) for c in r["summed_columns"][feat]]
        np.testing.assert_allclose(values[:, j], cols[:, idx].sum(axis=1), atol=1e-6)


def test_histgb_with_native_categorical_splits_is_not_given_to_tree_explainer():
    """shap's TreeExplainer does not read HistGradientBoosting's categorical bitset splits."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    data, raw, cats = _german(200)
    ct = ColumnTransformer([("cat", OrdinalEncoder(), cats)], remainder="passthrough")
    hgb = HistGradientBoostingClassifier(max_iter=10, categorical_features=list(range(len(cats))), random_state=0)
    pipe = make_pipeline(ct, hgb).fit(raw, data.y)
    cfg = ShapConfig(n_rows=5, background_size=10, n_bootstrap=0)
    r = Shap().run(as_adapter(pipe, encoding=data.encoding, raw_input=True), data, cfg, RunContext.default(0))
    assert r.explainer == "exact" and r.additivity_max_error < 1e-6
    assert any("native categorical" in n and "was used instead" in n for n in r.notes)


def test_tree_shap_traces_columns_through_imputer_selector_and_scaler_on_encoded_input():
    """A Pipeline on the encoded matrix (raw_input = false) that imputes, drops a column and
    scales: the kept columns map to their raw features, the dropped feature's value is 0, and the
    values equal brute-force raw-feature Shapley values."""
    from pathlib import Path

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from audit.methods.shap import _draw, exact_shapley

    frame = pd.read_csv(Path(__file__).resolve().parents[1] / GERMAN).iloc[:300]
    data = build_audit_data(frame, DatasetSpec(target="risk", positive_label="1",
                                               features=("job", "credit_amount", "duration", "age")))
    pipe = make_pipeline(SimpleImputer(), SelectKBest(f_classif, k=3), StandardScaler(),
                         RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)).fit(data.X, data.y)
    dropped = data.feature_names[int(np.flatnonzero(~pipe[1].get_support())[0])]
    cfg = ShapConfig(explainer="tree", n_rows=8, background_size=40, n_bootstrap=0)
    r = Shap().run(as_adapter(pipe), data, cfg, RunContext.default(0))
    assert r.explainer == "tree" and r.deviation is None and r.summed_columns[dropped] == ()
    assert np.all(r.values[:, data.feature_names.index(dropped)] == 0)
    rows, _, bg, _, _ = _draw("tree", data, data.X, "the audited data", cfg, RunContext.default(0), [])
    truth, _ = exact_shapley(lambda Z: pipe.predict_proba(Z)[:, 1], data.X[rows], bg,
                             [np.asarray(g) for g in data.encoding.groups.values()])
    np.testing.assert_allclose(r.values, truth[:, :, 0], atol=1e-6)
