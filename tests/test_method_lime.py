"""Known-answer tests of the LIME method: planted linear models, raw categorical handling,
row selection, stability and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import as_adapter
from audit.core.dataset import DatasetSpec, Encoding, build_audit_data
from audit.core.method import RunContext
from audit.errors import DataValidationError, InvalidConfigError
from audit.methods.lime import Lime, LimeConfig, from_raw, to_raw
from tests.conftest import fit_torch_mlp

FAST = dict(num_samples=1000, n_seeds=3, n_global_rows=20, n_bootstrap=100)


@pytest.fixture(autouse=True)
def _one_thread():
    """As the runner does: on these small models one intra-op thread is much faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _planted(n: int = 400, seed: int = 0, task: str = "regression"):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(0, 1, n), "x2": rng.normal(5, 2, n),
                          "x3": rng.normal(0, 1, n)})
    frame["y"] = rng.normal(size=n) if task == "regression" else rng.integers(0, 2, n)
    return build_audit_data(frame, DatasetSpec(target="y", task=task))


COEF = np.array([3.0, -1.0, 0.4])  # per raw unit; times sd (1, 2, 1): 3, -2, 0.4


def test_lime_recovers_signs_and_ranking_of_a_linear_regression():
    data = _planted()
    model = as_adapter(lambda X: to_raw(data.encoding, X) @ COEF, task="regression")
    r = Lime().run(model, data, LimeConfig(discretize=False, **FAST), RunContext.default(0))
    assert r.ranking == ("x1", "x2", "x3")
    for sel in r.selected:
        signs = np.sign([sel.weights[f] for f in ("x1", "x2", "x3")])
        assert signs.tolist() == [1.0, -1.0, 1.0]
        assert sel.fidelity > 0.99  # a linear model is exactly linear around every row
    # without discretization LIME's weight is the slope per training standard deviation
    sd = np.std(to_raw(data.encoding, data.X), axis=0)
    w = np.array([r.selected[0].weights[f] for f in ("x1", "x2", "x3")])
    np.testing.assert_allclose(w, COEF * sd, rtol=0.05)


def test_lime_with_quartile_bins_ranks_a_planted_logistic_model():
    data = _planted(task="binary")

    def f(X):
        z = to_raw(data.encoding, X) @ COEF - COEF[1] * 5
        return 1 / (1 + np.exp(-z))

    r = Lime().run(as_adapter(f), data, LimeConfig(**FAST), RunContext.default(0))
    assert r.ranking == ("x1", "x2", "x3")
    assert r.explained == "P(1)"
    # the row with the highest P(1) sits in x1's top bin and x2's bottom bin
    top = next(s for s in r.selected if s.reason == "most confident 1")
    assert top.weights["x1"] > 0 and top.weights["x2"] > 0
    assert top.conditions["x1"].startswith("x1 >")


def test_raw_representation_round_trips_onehot_ordinal_and_log1p():
    from audit.core.dataset import CategoricalFeature, NumericFeature

    enc = Encoding((NumericFeature("gain", 1.0, 2.0, "log1p"), CategoricalFeature("job", ("a", "b", "c")),
                    CategoricalFeature("grade", ("lo", "mid", "hi"), "ordinal", center=1.0, scale=0.5),
                    NumericFeature("age", 40.0, 10.0, integer=True)))
    frame = pd.DataFrame({"gain": [0, 10, 5000], "job": ["c", "a", "b"], "grade": ["hi", "lo", "mid"],
                          "age": [20, 35, 71]})
    X = enc.encode(frame)
    Z = to_raw(enc, X)
    np.testing.assert_allclose(Z[:, 1], [2, 0, 1])
    np.testing.assert_allclose(Z[:, 0], [0, 10, 5000], rtol=1e-5)
    np.testing.assert_allclose(from_raw(enc, Z), X, atol=1e-6)


def test_string_categoricals_are_explained_by_level_and_rows_chosen_reproducibly(frame, encoding):
    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    cfg = LimeConfig(**FAST)
    a = Lime().run(as_adapter(net), data, cfg, RunContext.default(3))
    b = Lime().run(as_adapter(net), data, cfg, RunContext.default(3))
    assert [s.row for s in a.selected] == [s.row for s in b.selected]
    np.testing.assert_array_equal(a.values, b.values)
    reasons = [s.reason for s in a.selected]
    assert reasons[:3] == ["most confident <=50K", "most confident >50K", "most borderline"]
    assert reasons.count("random") == 3
    p = as_adapter(net).output(data.X)
    assert a.selected[1].row == int(np.argmax(p)) and a.selected[2].row == int(np.argmin(np.abs(p - 0.5)))
    for s in a.selected:
        assert s.conditions["job"] == f"job={data.frame['job'][s.row]}"
        assert 0 <= s.stability_min <= s.stability <= 1 and len(s.top_sets) == 3
        assert np.isfinite(s.fidelity)
    assert a.values.shape == (len(a.rows), 3) and len(a.rows) == 6 + 20
    assert set(a.global_importance) == {"age", "hours", "job"}
    assert a.ranking[-1] == "hours"  # the planted rule ignores hours


def test_multiclass_explains_each_rows_predicted_class():
    import torch

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=90), "b": rng.normal(size=90),
                          "y": rng.choice(["x", "y", "z"], 90)})
    data = build_audit_data(frame, DatasetSpec(target="y", task="multiclass"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3)).eval()
    model = as_adapter(net, task="multiclass")
    r = Lime().run(model, data, LimeConfig(**FAST), RunContext.default(0))
    pred = model.predict(data.X)
    for s in r.selected:
        assert s.label == data.classes[pred[s.row]]
    assert any(s.reason == "most borderline" for s in r.selected)


def test_rows_with_missing_values_are_rejected_with_their_count():
    data = _planted(n=50)
    X = data.X.copy()
    X[[2, 5], 1] = np.inf
    bad = dataclasses.replace(data, X=X)
    with pytest.raises(DataValidationError, match=r"LIME cannot explain .* 2 row\(s\)"):
        Lime().run(as_adapter(lambda X: X[:, 0], task="regression"), bad, LimeConfig(), RunContext.default(0))


def test_config_validation_findings_and_figures():
    with pytest.raises(InvalidConfigError, match=r"'n_seeds' option in \[methods.lime\] must be from 2 to 1,000 \(stability compares runs\). Got 1"):
        LimeConfig.from_dict({"n_seeds": 1}, method="lime")
    data = _planted(n=120, task="binary")
    rng = np.random.default_rng(1)
    noise = as_adapter(lambda X: rng.uniform(size=len(X)))  # no local structure at all
    cfg = LimeConfig(**FAST)
    r = Lime().run(noise, data, cfg, RunContext.default(0))
    texts = " ".join(f.text for f in Lime().findings(r, cfg))
    assert "fit poorly" in texts
    figs = Lime().figures(r, data)
    assert "global" in figs and "row_0" in figs
    import matplotlib.pyplot as plt

    for f in figs.values():
        plt.close(f)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_batched_model_calls_give_the_per_row_explanations(task, frame, encoding, monkeypatch):
    """Many rows' samples scored in one call give exactly lime's row-by-row explanations (the
    model here scores each row independently, as the batching assumes)."""
    import audit.methods.lime as lime_module

    data = build_audit_data(frame, DatasetSpec(target=None, task=task), encoding)
    w = np.random.default_rng(1).normal(size=data.X.shape[1])
    calls = []

    def fn(X):
        calls.append(len(X))
        z = (X * w).sum(axis=1)
        return 1 / (1 + np.exp(-z)) if task == "binary" else z

    model = as_adapter(fn, task=task)
    cfg = LimeConfig(num_samples=500, n_seeds=3, n_global_rows=12, n_bootstrap=0, discretize=True)
    batched = Lime().run(model, data, cfg, RunContext.default(7))
    n_batched = len(calls)
    calls.clear()
    monkeypatch.setattr(lime_module, "_SAMPLER", "_no_such_sampler")  # lime's own per-row path
    per_row = Lime().run(model, data, cfg, RunContext.default(7))
    assert len(calls) == batched._n_explanations + 1 > 20  # one per explanation, one to select rows
    assert n_batched == 2  # every explanation's samples in one call, one to select rows
    np.testing.assert_array_equal(batched.values, per_row.values)
    np.testing.assert_array_equal(batched.fidelity, per_row.fidelity)
    assert batched.selected == per_row.selected
    assert batched.rows == per_row.rows


def test_report_numbers_rows_as_in_the_file_under_a_row_sample(model_dir, frame):
    """[data] max_rows audits a sample: a selected row is named by its row in the data file
    (from 1, the header not counted), in results.json and the report, never by its position in
    the sample."""
    import json

    from typer.testing import CliRunner

    from audit.cli import app

    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text().replace('target = "income"', 'target = "income"\nmax_rows = 150')
                   + "\n[methods.lime]\nnum_samples = 500\nn_seeds = 2\nn_global_rows = 5\nn_bootstrap = 50\n")
    out = model_dir / "out"
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "-q", "--methods", "lime",
                                   "--format", "json,html"])
    assert res.exit_code == 0, res.output
    selected = json.loads((out / "results.json").read_text())["methods"]["lime"]["result"]["selected"]
    html = (out / "report.html").read_text()
    moved = 0
    for s in selected:
        in_file = frame.iloc[s["row_number"] - 1]
        assert (int(s["values"]["age"]), float(s["values"]["hours"]), s["values"]["job"]) == \
            (int(in_file.age), float(in_file.hours), in_file.job), s
        moved += s["row_number"] != s["row"] + 1
        assert f'<td class="num">{s["row_number"]}</td>' in html
    assert moved, "a sample of 150 of 600 rows keeps every selected row at its own position"
