"""Known-answer and property tests of the counterfactual method.

Golden values are analytic: for a linear model the cheapest counterfactual in the MAD-scaled L1
metric is a weighted L1 projection onto the decision boundary, which moves only the feature
with the largest |w_j| * MAD_j / scale_j by exactly the logit deficit it has to cover.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import CallableAdapter, TorchAdapter
from audit.core.dataset import DatasetSpec, Encoding, build_audit_data
from audit.core.method import RunContext
from audit.errors import InvalidConfigError
from audit.methods.counterfactuals import Counterfactuals, CounterfactualsConfig

torch = pytest.importorskip("torch")

FAST = dict(n_bootstrap=99, n_permutations=99, n_examples=3)


def _linear_torch(enc: Encoding, weights: dict[str, float], bias: float) -> TorchAdapter:
    lin = torch.nn.Linear(len(enc.columns), 1)
    with torch.no_grad():
        lin.weight.zero_()
        for name, w in weights.items():
            lin.weight[0, enc.columns.index(name)] = w
        lin.bias.fill_(bias)
    return TorchAdapter(task="binary", module=lin)


def _numeric_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(5.0, 2.0, n), "x2": rng.normal(0.0, 3.0, n),
                         "x3": rng.gamma(2.0, 1.5, n), "g": rng.choice(["a", "b"], n)})


def _run(model, data, **kw):
    cfg = CounterfactualsConfig(**{**FAST, **kw})
    return Counterfactuals().run(model, data, cfg, RunContext.default(0))


def _closed_form(data, enc, weights, bias, mutable):
    """Expected cost and feature of the cheapest flip of each searched row (weighted L1)."""
    Z = data.X.astype(float)
    logit = bias + sum(w * Z[:, enc.columns.index(k)] for k, w in weights.items())
    mad = {}
    for k in mutable:
        x = data.frame[k].to_numpy()
        mad[k] = np.median(np.abs(x - np.median(x)))
    rate = {k: abs(weights[k]) * mad[k] / enc.feature(k).scale for k in mutable}  # logit per unit cost
    best = max(rate, key=rate.get)
    return logit, best, -logit / rate[best]


@pytest.mark.parametrize("search", ["gradient", "genetic"])
def test_linear_single_feature_matches_projection(search):
    df = _numeric_frame()
    data = build_audit_data(df, DatasetSpec(target=None, features=("x1", "x2", "x3"), sensitive=("g",)))
    enc = data.encoding
    weights, bias = {"x1": 1.2, "x2": -0.7, "x3": 0.4}, -0.3
    torch_model = _linear_torch(enc, weights, bias)
    model = torch_model if search == "gradient" else CallableAdapter(
        task="binary", fn=lambda X: torch_model.predict_proba(X)[:, 1])
    res = _run(model, data, search=search, immutable=("x2", "x3"), n_counterfactuals=1)
    logit, feat, cost = _closed_form(data, enc, weights, bias, ["x1"])
    rows = np.array([r.row for r in res.rows])
    assert all(r.found for r in res.rows)
    np.testing.assert_array_equal(rows, np.flatnonzero(logit < 0))
    z_star = -(bias + weights["x2"] * data.X[rows, 1] + weights["x3"] * data.X[rows, 2]) / weights["x1"]
    x_star = z_star * enc.feature("x1").scale + enc.feature("x1").center
    by_row = {c.row: c for c in res.counterfactuals if c.rank == 0}
    found = np.array([float(by_row[r].changes[0].counterfactual) for r in rows])
    assert all(len(by_row[r].changes) == 1 and by_row[r].changes[0].feature == "x1" for r in rows)
    # 4 significant digits in the text, the 1e-3 logit safety margin and bisection to 2**-10
    np.testing.assert_allclose(found, x_star, rtol=2e-3, atol=0.01)
    np.testing.assert_allclose([by_row[r].cost for r in rows], cost[rows], rtol=0.01, atol=0.01)
    assert res.quality.violations == 0 and res.quality.validity == 1.0


def test_linear_weighted_l1_moves_only_the_cheapest_feature():
    df = _numeric_frame(seed=1)
    data = build_audit_data(df, DatasetSpec(target=None, features=("x1", "x2", "x3"), sensitive=("g",)))
    enc = data.encoding
    weights, bias = {"x1": 0.5, "x2": 1.5, "x3": 0.6}, -0.5
    res = _run(_linear_torch(enc, weights, bias), data, n_counterfactuals=1, sparsity_weight=0.0)
    logit, feat, cost = _closed_form(data, enc, weights, bias, ["x1", "x2", "x3"])
    best = {c.row: c for c in res.counterfactuals if c.rank == 0}
    rows = np.flatnonzero(logit < 0)
    assert set(best) == set(rows.tolist())
    got = np.array([best[r].cost for r in rows])
    np.testing.assert_allclose(got, cost[rows], rtol=0.02, atol=0.01)
    assert all([c.feature for c in best[r].changes] == [feat] for r in rows)


# ---- constraints: a property test over random rows, constraints and a random MLP ----------------

def _mixed_data(seed: int = 0, n: int = 240):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.integers(18, 70, n),
        "hours": rng.integers(10, 60, n),
        "gain": np.where(rng.random(n) < 0.8, 0, rng.integers(100, 20000, n)),
        "edu": rng.choice(["low", "mid", "high"], n, p=[0.3, 0.5, 0.2]),
        "job": rng.choice(["a", "b", "c", "d"], n),
        "sex": rng.choice(["F", "M"], n),
    })
    enc = Encoding.fit(df[["age", "hours", "gain", "edu", "job", "sex"]])
    feats = list(enc.features)
    feats[2] = type(feats[2])("gain", center=2.0, scale=3.0, transform="log1p", integer=True)
    enc = Encoding(tuple(feats))
    data = build_audit_data(df, DatasetSpec(target=None, sensitive=("sex",)), enc)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(len(enc.columns), 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].bias.zero_()
        logits = net(torch.from_numpy(data.X))[:, 0]
        net[2].bias.fill_(-float(torch.quantile(logits, 0.7)))  # about 30% predicted positive
    return data, TorchAdapter(task="binary", module=net)


def _check_constraints(res, data, immutable, monotone):
    frame = data.frame
    enc = data.encoding
    for cf in res.counterfactuals:
        for ch in cf.changes:
            assert ch.feature not in immutable, ch
            f = enc.feature(ch.feature)
            original = frame[ch.feature].iloc[cf.row]
            if f.type == "categorical":
                assert ch.counterfactual in f.levels
                assert ch.original == str(original)
            else:
                new = float(ch.counterfactual.replace(",", ""))
                assert new == round(new)  # integer features stay integers
                if monotone.get(ch.feature) == "increase":
                    assert new > float(original), ch
                if monotone.get(ch.feature) == "decrease":
                    assert new < float(original), ch
    assert res.quality.violations == 0


def test_constraints_hold_on_mixed_data():
    data, model = _mixed_data()
    monotone = {"age": "increase", "hours": "decrease"}
    res = _run(model, data, monotone=monotone, immutable=("job",), n_counterfactuals=2)
    assert res.n_searched > 0 and res.quality.validity > 0.5
    assert "sex" in res.immutable  # sensitive attributes are immutable by default
    _check_constraints(res, data, {"job", "sex"}, monotone)
    assert len(res.rows) == res.n_searched  # every searched row reported


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000),
       imm=st.sets(st.sampled_from(["age", "hours", "gain", "edu", "job"]), max_size=3),
       mono=st.dictionaries(st.sampled_from(["age", "hours", "gain"]),
                            st.sampled_from(["increase", "decrease"]), max_size=2),
       search=st.sampled_from(["gradient", "genetic"]))
def test_property_immutable_and_monotone_never_violated(seed, imm, mono, search):
    data, model = _mixed_data(seed=seed % 7, n=120)
    mono = {k: v for k, v in mono.items() if k not in imm}
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(data.n_rows, 60, replace=False))
    sub = data.subset(rows)
    try:
        res = Counterfactuals().run(model, sub, CounterfactualsConfig(
            immutable=tuple(sorted(imm)), monotone=mono, search=search, n_counterfactuals=2,
            steps=60, generations=4, population=24, **FAST), RunContext.default(seed))
    except InvalidConfigError as exc:  # a constraint no sampled row can satisfy is an error
        assert "cannot be satisfied" in str(exc) or "never predicts" in str(exc)
        return
    _check_constraints(res, sub, set(imm) | {"sex"}, mono)
    assert all(r.found == (r.cost is not None) for r in res.rows)


def test_categorical_outputs_are_real_levels_and_rare_levels_excluded():
    data, model = _mixed_data(seed=3)
    res = _run(model, data, min_level_share=0.25, n_counterfactuals=3)
    # "high" (20%) and each job level (~25%) are below or near the share; "high" must never appear
    assert "high" in res.excluded_levels.get("edu", ())
    for cf in res.counterfactuals:
        for ch in cf.changes:
            if ch.feature == "edu":
                assert ch.counterfactual in ("low", "mid")
    assert res.quality.rare_level_share == 0.0


# ---- recourse fairness ---------------------------------------------------------------------

def _gap_data(gap: float, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = np.repeat(["A", "B"], n // 2)
    x = rng.normal(0, 1, n) - np.where(g == "B", gap, 0.0)
    df = pd.DataFrame({"x": x, "z": rng.normal(0, 1, n), "g": g})
    data = build_audit_data(df, DatasetSpec(target=None, features=("x", "z"), sensitive=("g",)))
    model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-4 * (X[:, 0] - 0.8))))
    return data, model


def test_planted_recourse_gap_is_detected():
    data, model = _gap_data(gap=1.0)
    method = Counterfactuals()
    cfg = CounterfactualsConfig(n_counterfactuals=1, n_bootstrap=199, n_permutations=199)
    res = method.run(model, data, cfg, RunContext.default(0))
    (rec,) = res.recourse
    by = {g.group: g for g in rec.groups}
    assert by["B"].mean_cost.value > by["A"].mean_cost.value
    assert rec.highest == "B" and rec.p_value is not None and rec.p_value < 0.01
    e = by["B"].mean_cost
    assert e.lower <= e.value <= e.upper and e.level == 0.95
    texts = [f.text for f in method.findings(res, cfg)]
    assert any("Recourse gap" in t and "'B'" in t for t in texts)


def test_no_gap_when_groups_are_alike():
    data, model = _gap_data(gap=0.0, seed=5)
    method = Counterfactuals()
    cfg = CounterfactualsConfig(n_counterfactuals=1, n_bootstrap=99, n_permutations=199)
    res = method.run(model, data, cfg, RunContext.default(1))
    (rec,) = res.recourse
    assert rec.p_value is not None and rec.p_value > 0.05
    assert not any("Recourse gap" in f.text for f in method.findings(res, cfg))


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"immutable": ("x1",), "monotone": {"x1": "increase"}}, "immutable"),
    ({"monotone": {"x1": "up"}}, "increase"),
    ({"immutable": ("nope",)}, "not a model feature"),
    ({"ranges": {"x1": [5, 1]}}, "empty"),
    ({"ranges": {"x1": [1000, 2000]}}, "cannot be satisfied"),
    ({"target_class": "maybe"}, "target_class"),
])
def test_bad_constraints_raise_clear_errors(options, message):
    df = _numeric_frame(n=80)
    data = build_audit_data(df, DatasetSpec(target=None, features=("x1", "x2", "x3"), sensitive=("g",)))
    model = _linear_torch(data.encoding, {"x1": 1.0}, -0.2)
    with pytest.raises(InvalidConfigError, match=message):
        cfg = CounterfactualsConfig.from_dict({**options, "n_permutations": 9}, method="counterfactuals")
        Counterfactuals().run(model, data, cfg, RunContext.default(0))


def test_target_class_never_predicted_is_an_error():
    df = _numeric_frame(n=80)
    data = build_audit_data(df, DatasetSpec(target=None, features=("x1", "x2", "x3"), sensitive=("g",)))
    model = CallableAdapter(task="binary", fn=lambda X: np.full(len(X), 0.01))
    with pytest.raises(InvalidConfigError, match="never predicts"):
        _run(model, data)


def test_rows_without_counterfactual_are_reported():
    # x may rise to at most encoded 1.0 and z is immutable: rows with z_enc < -0.2 cannot flip
    data, _ = _gap_data(gap=0.0, n=200)
    model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-4 * (X[:, 0] + X[:, 1] - 0.8))))
    fx = data.encoding.feature("x")
    cap = 1.0 * fx.scale + fx.center
    res = _run(model, data, ranges={"x": [-10.0, cap]}, immutable=("z",), n_counterfactuals=1)
    missing = [r for r in res.rows if not r.found]
    z = data.X[[r.row for r in res.rows], 1]
    assert missing and len(res.rows) == res.n_searched
    z_of = dict(zip([r.row for r in res.rows], z, strict=True))
    assert all(z_of[r.row] < -0.19 for r in missing)
    assert {r.row for r in res.rows if z_of[r.row] < -0.21} <= {r.row for r in missing}
    assert all(r.cost is None and r.reason for r in missing)
    assert res.quality.validity == pytest.approx(1 - len(missing) / res.n_searched)


# ---- result and report -------------------------------------------------------------------------

def test_result_is_json_and_renders_with_highlighted_changes():
    from audit.report.render import _environment, fmt_number, templates_dir  # noqa: F401

    rng = np.random.default_rng(0)
    n = 150
    df = pd.DataFrame({"x": rng.normal(0, 1, n), "c": rng.choice(["<b>bold</b>", "plain"], n),
                       "g": rng.choice(["a", "b"], n)})
    data = build_audit_data(df, DatasetSpec(target=None, features=("x", "c"), sensitive=("g",)))
    enc = data.encoding
    model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-(2 * X[:, 0] + 2 * X[:, enc.columns.index("c=<b>bold</b>")] - 1.5))))
    method = Counterfactuals()
    cfg = CounterfactualsConfig(**FAST, min_level_share=0.0)
    res = method.run(model, data, cfg, RunContext.default(0))
    json.dumps(res.to_json())
    figs = {k: "data:image/png;base64," for k in method.figures(res, data)}
    html = _environment(str(templates_dir())).get_template("partials/counterfactuals.html.j2").render(
        r=res, cfg=cfg, figs=figs, report=None)
    assert 'class="cf-changed"' in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_predict_only_models_use_the_genetic_search():
    data, _ = _gap_data(gap=0.5, n=120)
    model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-4 * (X[:, 0] - 0.8))))
    res = _run(model, data, n_counterfactuals=2)
    assert res.search == "genetic" and res.quality.validity == 1.0


def test_sparsity_weight_prefers_one_change_over_cheaper_two_and_reports_distribution():
    """x1 alone flips at a cost of ~2 MADs; x2 plus x3 together flip more cheaply. A weight of 0
    chooses by cost (two changes), the default L0 price chooses the single change."""
    df = _numeric_frame(400, seed=3)
    data = build_audit_data(df, DatasetSpec(target=None, features=("x1", "x2", "x3"), sensitive=("g",)))
    enc = data.encoding
    model = _linear_torch(enc, {"x1": 1.0, "x2": 1.4, "x3": 1.4}, -1.5)
    by_cost = _run(model, data, n_counterfactuals=1, sparsity_weight=0.0)
    sparse = _run(model, data, n_counterfactuals=1)
    assert sparse.quality.sparsity <= by_cost.quality.sparsity
    assert sparse.quality.validity == 1.0 and sparse.quality.violations == 0
    dist = sparse.quality.share_by_changes
    assert dist is not None and len(dist) == 4 and abs(sum(dist) - 1) < 1e-9
    assert dist[0] == pytest.approx(sum(r.n_changed == 1 for r in sparse.rows) / len(sparse.rows))


# ---- one definition of "inside the observed range" ----------------------------------------------

def _range_problem(x1_train_max: float):
    """Training rows with x1 in [0, x1_train_max] and x2 in [0, 1]; audited rows whose x2 lies far
    outside the training range. The model looks at x1 only."""
    import dataclasses

    rng = np.random.default_rng(3)
    train_df = pd.DataFrame({"x1": rng.uniform(0, x1_train_max, 400), "x2": rng.uniform(0, 1, 400)})
    audit_df = pd.DataFrame({"x1": rng.uniform(0, 6, 150), "x2": rng.uniform(5, 9, 150)})
    spec = DatasetSpec(target=None, features=("x1", "x2"))
    train = build_audit_data(train_df, spec)
    data = build_audit_data(audit_df, spec, train.encoding)
    enc = train.encoding
    w = enc.feature("x1").scale  # logit = x1 - 5 in raw units
    model = _linear_torch(enc, {"x1": w}, enc.feature("x1").center - 5.0)
    ctx = dataclasses.replace(RunContext.default(0), train=train)
    return model, data, train, ctx


def test_inside_observed_range_judges_changed_values_as_the_guard_does():
    model, data, train, ctx = _range_problem(x1_train_max=10.0)
    res = Counterfactuals().run(model, data, CounterfactualsConfig(**FAST, n_counterfactuals=1), ctx)
    assert res.n_searched > 50 and res.quality.validity == 1.0
    # every audited x2 lies outside the training range, yet no counterfactual changes it: the
    # guard held for every counterfactual, and the reported share says so
    assert all(c.feature == "x1" for cf in res.counterfactuals for c in cf.changes)
    assert all(float(c.counterfactual) <= train.frame["x1"].max() for cf in res.counterfactuals
               for c in cf.changes)
    assert res.quality.inside_observed_range == 1.0


def test_inside_observed_range_drops_when_the_guard_is_off():
    # training x1 only reaches 4, so a flip needs x1 > 5: outside the observed range
    model, data, train, ctx = _range_problem(x1_train_max=4.0)
    res = Counterfactuals().run(model, data, CounterfactualsConfig(**FAST, n_counterfactuals=1,
                                                                   clip_to_observed=False), ctx)
    assert res.quality.validity == 1.0
    assert res.quality.inside_observed_range == 0.0


def test_listed_tasks_are_exactly_the_tasks_it_runs_on():
    """`audit methods` prints ``tasks``: a task listed there must not be skipped."""
    df = _numeric_frame(60)
    df["y"] = (df.x1 > 5).astype(int)
    method = Counterfactuals()
    model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-X[:, 0])))
    reg = CallableAdapter(task="regression", fn=lambda X: X[:, 0])
    binary = build_audit_data(df, DatasetSpec(target="y", features=("x1", "x2")))
    regression = build_audit_data(df.assign(y=df.x3), DatasetSpec(target="y", features=("x1", "x2"),
                                                                   task="regression"))
    cfg = CounterfactualsConfig()
    assert "regression" not in method.tasks
    assert method.skip_reason(model, binary, cfg) is None
    assert "classifiers only" in method.skip_reason(reg, regression, cfg)


# ---- batched model calls ---------------------------------------------------------------------

def _supports_setup(n_rows: int):
    from audit.methods._cf.refine import Scorer
    from audit.methods._cf.space import Constraints, Space

    data, _ = _mixed_data(seed=1, n=300)
    rng = np.random.default_rng(0)
    w = rng.normal(size=data.X.shape[1]).astype(np.float32)
    calls = []

    def fn(X):
        calls.append(len(X))
        return 1 / (1 + np.exp(-((X * w).sum(axis=1) - 1.0)))  # row by row: no batch effects

    model = CallableAdapter(task="binary", fn=fn)
    space = Space(data.encoding, data.X, Constraints(immutable=("sex",)))
    num0, cat0 = space.split(data.X[:n_rows])
    lo, hi = space.numeric_bounds(num0, search=True)
    masks = space.level_masks(cat0, search=True)
    kw = dict(lo=lo, hi=hi, masks=masks, weights=np.ones((n_rows, space.n_features)), sparsity_weight=1.0)
    return space, Scorer(model, space, 1), num0, cat0, kw, calls


def test_small_supports_calls_the_model_per_step_not_per_row_and_chunks_do_not_change_results():
    from audit.methods._cf.supports import small_supports

    space, scorer, num0, cat0, kw, calls = _supports_setup(20)
    few = small_supports(space, scorer, num0, cat0, **kw)
    n_few = len(calls)
    space, scorer, num0, cat0, kw, calls = _supports_setup(120)
    many = small_supports(space, scorer, num0, cat0, **kw)
    assert len(calls) == n_few  # six times the rows, the same number of model calls
    for a, b in zip(few, many, strict=True):
        np.testing.assert_array_equal(a, b[:20])
    calls.clear()
    one_by_one = small_supports(space, scorer, num0, cat0, **kw, max_candidates=1)
    assert len(calls) == 120 * n_few  # one chunk per row
    assert np.isfinite(many[2]).sum() > 60
    for a, b in zip(many, one_by_one, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- [data] sensitive_sources ---------------------------------------------------------------------

def _age_group(age):
    return np.where(np.asarray(age, float) < 30, "under 30", "30 or over")


def _age_problem():
    """The model's decision leans on age more cheaply than on x; age_group is derived from age."""
    rng = np.random.default_rng(5)
    n = 600
    df = pd.DataFrame({"age": rng.integers(18, 70, n), "x": rng.normal(0, 1, n)})
    df["age_group"] = _age_group(df.age)
    spec = DatasetSpec(target=None, features=("age", "x"), sensitive=("age_group",),
                       sensitive_sources={"age_group": ["age"]})
    data = build_audit_data(df, spec)
    enc = data.encoding
    a, x = enc.feature("age"), enc.feature("x")
    # logit = 0.15 (age - 40) + 0.8 x - 0.5, written on the encoded columns
    model = _linear_torch(enc, {"age": 0.15 * a.scale, "x": 0.8 * x.scale},
                          0.15 * (a.center - 40) + 0.8 * x.center - 0.5)
    return model, data


def _age_changes(res, data):
    moved_age, moved_group = 0, 0
    for cf in res.counterfactuals:
        for c in cf.changes:
            if c.feature == "age":
                moved_age += 1
                old = data.frame["age"][cf.row]
                moved_group += _age_group([old])[0] != _age_group([float(c.counterfactual.replace(",", ""))])[0]
    return moved_age, moved_group


@pytest.mark.parametrize("search", ["gradient", "genetic"])
def test_sources_of_a_sensitive_attribute_never_change(search):
    model, data = _age_problem()
    res = _run(model, data, search=search, n_counterfactuals=2)
    assert res.quality.validity > 0.5 and len(res.counterfactuals) > 100
    assert "age" in res.immutable and res.sensitive_sources == {"age_group": ("age",)}
    assert _age_changes(res, data) == (0, 0)
    assert res.source_changed_share == 0.0


def test_sources_may_change_only_when_explicitly_allowed():
    model, data = _age_problem()
    res = _run(model, data, n_counterfactuals=1, sensitive_sources_immutable=False)
    moved_age, moved_group = _age_changes(res, data)
    # age is the cheaper route here: without the rule counterfactuals use it and move rows
    # out of their age group -- the failure the default prevents
    assert moved_age > 50 and moved_group > 10
    assert "age" not in res.immutable and res.source_changed_share > 0.5


def test_a_constraint_on_a_fixed_source_is_a_clear_error():
    model, data = _age_problem()
    with pytest.raises(InvalidConfigError, match="source of the sensitive attribute 'age_group'"):
        _run(model, data, monotone={"age": "increase"})


@pytest.mark.parametrize(("sources", "fragment"), [
    ('{ age_grup = ["age"] }', "not a sensitive attribute. Did you mean 'age_group'?"),
    ('{ age_group = ["agee"] }', "names the column 'agee', which is not in 'data.csv'. Did you mean 'age'?"),
    ('{ age_group = [] }', "must be a non-empty list of column names"),
    ('["age"]', "'sensitive_sources' value must be dict"),
])
def test_bad_sensitive_sources_exit_2_with_the_fix(tmp_path, sources, fragment):
    from typer.testing import CliRunner

    from audit.cli import app

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"age": rng.integers(18, 70, 50), "x": rng.normal(size=50)})
    df["age_group"] = _age_group(df.age)
    df["y"] = rng.integers(0, 2, 50)
    df["score"] = rng.random(50)
    df.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        '[model]\npredictions = "score"\n[data]\npath = "data.csv"\ntarget = "y"\n'
        f'sensitive = ["age_group"]\nsensitive_sources = {sources}\n')
    result = CliRunner().invoke(app, ["run", str(tmp_path / "audit.toml"), "--out", str(tmp_path / "out"),
                                      "-q", "-m", "fairness"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and fragment in " ".join(result.output.split())


def test_the_plan_says_its_row_count_is_an_estimate_from_the_outcome_and_the_result_says_how_many_were_searched():
    """The plan comes before any prediction: with an outcome column it says "about N rows
    (estimated from the outcome column)", N the rows with a negative outcome; the search then
    covers the rows the model predicts unfavourable, which the result counts exactly."""
    df = _numeric_frame(200)
    df["y"] = (df.x1 > 6).astype(int)
    enc = Encoding.fit(df[["x1", "x2", "x3"]])
    f = enc.feature("x1")
    model = _linear_torch(enc, {"x1": 1.0}, -(4.0 - f.center) / f.scale)  # 1 above x1 = 4; the outcome: x1 > 6
    data = build_audit_data(df, DatasetSpec(target="y", features=("x1", "x2", "x3"), sensitive=("g",)), enc)
    cfg = CounterfactualsConfig(**FAST)
    negative = int((df.y == 0).sum())
    plan = Counterfactuals().plan(model, data, cfg, RunContext.default(0))
    assert f"about {min(negative, cfg.max_search_rows):,} rows (estimated from the outcome column)" in plan.description
    res = _run(model, data)
    assert res.n_unfavourable == int((df.x1 <= 4).sum()) != negative  # the search's own count differs
    unlabelled = build_audit_data(df.drop(columns="y"), DatasetSpec(target=None, features=("x1", "x2", "x3"),
                                                                   sensitive=("g",)), enc)
    assert f"at most {min(200, cfg.max_search_rows):,} rows" in Counterfactuals().plan(
        model, unlabelled, cfg, RunContext.default(0)).description
