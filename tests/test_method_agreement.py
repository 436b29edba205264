"""Cross-method agreement: a planted dominant feature comes first for every method, the
randomization sanity check flags a model whose attributions ignore its weights, deletion
curves in both replacement strategies, and black boxes without gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import CallableAdapter, TorchAdapter
from audit.core.dataset import DatasetSpec, Encoding, build_audit_data
from audit.core.method import RunContext
from audit.errors import InvalidConfigError
from audit.methods.agreement import (Agreement, AgreementConfig, _rowwise_spearman, deletion_curves,
                                     permutation_importance, sanity_check)
from audit.methods.saliency import Saliency, SaliencyConfig, baseline_row
from tests.conftest import captum_explainers

FAST_SAL = SaliencyConfig(n_rows=200, n_bootstrap=0, smoothgrad_samples=5, gradient_shap_samples=10,
                          n_background=30, n_selected=0)
FAST = AgreementConfig(n_rows=300, n_repeats=2, n_bootstrap=50, sanity_rows=60,
                       faithfulness_rows=60, faithfulness_background=5)


def _planted_data(n: int = 500, seed: int = 0):
    """age dominates the planted model; hours and job matter a little; noise not at all."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.normal(40, 12, n).round(), "hours": rng.normal(40, 8, n).round(1),
                          "job": rng.choice(["clerk", "exec", "tech"], n), "noise": rng.normal(size=n)})
    frame["y"] = rng.integers(0, 2, n)
    enc = Encoding.fit(frame[["age", "hours", "job", "noise"]])
    return build_audit_data(frame, DatasetSpec(target="y"), enc)


def _planted_mlp(data):
    """A hand-set MLP whose logit is about 3·age + 0.4·hours + 0.3·[job = exec]."""
    import torch

    d = data.X.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(d, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    w = torch.zeros(2, d)
    cols = data.encoding.columns
    w[0, cols.index("age")] = 1.0
    w[1, cols.index("hours")] = 0.4
    w[1, cols.index("job=exec")] = 0.3
    with torch.no_grad():
        net[0].weight.copy_(w)
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[3.0, 1.0]]))
        net[2].bias.zero_()
    return TorchAdapter(task="binary", module=net)


def _run_planted(with_other_methods: bool):
    data = _planted_data()
    model = _planted_mlp(data)
    earlier = {"saliency": Saliency().run(model, data, FAST_SAL, RunContext.default(1))}
    if with_other_methods:  # SHAP and LIME join when they are installed in this tree
        for modname, cls, small in (
                ("audit.methods.shap", "Shap", {"n_rows": 100, "n_bootstrap": 20, "background_size": 30}),
                ("audit.methods.lime", "Lime", {"n_global_rows": 15, "num_samples": 500, "n_bootstrap": 20,
                                                "n_seeds": 2, "n_random": 1})):
            try:
                mod = __import__(modname, fromlist=[cls])
            except ImportError:
                continue
            method = getattr(mod, cls)
            fields = {f.name for f in dataclasses.fields(method.Config)}
            cfg = method.Config(**{k: v for k, v in small.items() if k in fields})
            earlier[method.name] = method().run(model, data, cfg, RunContext.default(2))
    result = Agreement().run(model, data, FAST, RunContext(rng=np.random.default_rng(3), earlier=earlier))
    return model, data, result


@pytest.fixture(scope="module")
def planted():
    return _run_planted(with_other_methods=False)


def _assert_age_first(result):
    for ranking in result.rankings:
        assert ranking.ranks["age"] == 1.0, (ranking.key, ranking.ranks)
        assert ranking.ranks["noise"] >= 3.0, (ranking.key, ranking.ranks)
    assert result.consensus[0].feature == "age" and result.consensus[0].position == 1


@pytest.mark.slow
def test_planted_dominant_feature_ranks_first_with_shap_and_lime():
    _, _, result = _run_planted(with_other_methods=True)
    _assert_age_first(result)


def test_planted_dominant_feature_ranks_first_for_every_method(planted):
    _, _, result = planted
    keys = {r.key for r in result.rankings}
    assert {"permutation", "integrated_gradients", "saliency", "occlusion", "gradient_shap"} <= keys
    _assert_age_first(result)
    top = result.consensus[0]
    e = top.mean_rank
    assert e.has_interval and e.lower <= e.value <= e.upper and e.level == 0.95
    for a in result.spearman:
        assert result.spearman[a][a] == pytest.approx(1.0)


def test_sanity_check_passes_a_model_that_uses_its_weights(planted):
    _, _, result = planted
    s = result.sanity
    assert s is not None and result.sanity_skipped is None
    assert len(s.stages) == 2 and s.stages[-1].randomized == ("2 (Linear)", "0 (Linear)")
    assert "saliency" not in s.flagged
    assert s.output_change > 0


def test_sanity_check_flags_a_model_whose_attributions_ignore_its_weights():
    import torch

    class SumOfSquares(torch.nn.Module):
        """logit = w·Σx² + b: any weight gives the same ranking of |attributions| (∝ x², x² − b²)."""

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def forward(self, x):
            return self.lin((x ** 2).sum(dim=1, keepdim=True))

    data = _planted_data(200)
    torch.manual_seed(0)
    model = TorchAdapter(task="binary", module=SumOfSquares(), n_inputs=data.X.shape[1])
    base, _, _ = baseline_row(data, "mean_mode")
    keys = ("saliency", "input_x_gradient", "integrated_gradients")
    cfg = AgreementConfig(sanity_methods=keys)
    s = sanity_check(model, data, np.arange(60), cfg, attributions=captum_explainers(*keys),
                     baseline=base, background=data.X[:10], seed=0)
    assert set(s.flagged) == {"saliency", "input_x_gradient", "integrated_gradients"}
    assert all(v is not None and v > 0.8 for v in s.final_row_spearman.values())
    finding = [f for f in Agreement().findings(_with_sanity(s), cfg) if "Sanity check failed" in f.text]
    assert finding and finding[0].level == "alert"


def _with_sanity(s):
    from audit.methods.agreement import AgreementResult

    blank = {f.name: None for f in dataclasses.fields(AgreementResult)}
    blank.update(features=(), rankings=(), short={}, sources={}, missing={}, spearman={}, kendall={},
                 consensus_methods=(), consensus=(), deletion=(), deletion_order={}, notes=(),
                 sanity=s)
    return AgreementResult(**blank)


def test_deletion_curves_with_both_strategies_known_answer():
    """A linear model: removing the dominant feature first drops the score more than last."""
    data = _planted_data(200)
    w = np.zeros(data.X.shape[1])
    w[data.encoding.columns.index("age")] = 5.0
    model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-X @ w)))
    base, _, _ = baseline_row(data, "mean_mode")
    rows = np.arange(50)
    F = len(data.feature_names)
    age = data.feature_names.index("age")
    good = np.tile([age] + [j for j in range(F) if j != age], (50, 1))
    bad = np.tile([j for j in range(F) if j != age] + [age], (50, 1))
    cg = deletion_curves(model, data, rows, good, baseline=base, background=data.X[100:110])
    cb = deletion_curves(model, data, rows, bad, baseline=base, background=data.X[100:110])
    for strategy in ("baseline", "background"):
        assert cg[strategy].shape == (F + 1,)
        assert cg[strategy][0] == pytest.approx(cb[strategy][0])
        assert cg[strategy][-1] == pytest.approx(cb[strategy][-1])
        assert cg[strategy].sum() < cb[strategy].sum()
    # With every feature at the baseline (age at its mean: logit 0), the score is 1/2.
    assert cg["baseline"][-1] == pytest.approx(0.5, abs=0.02)


def test_faithfulness_reports_both_strategies(planted):
    _, _, result = planted
    assert result.deletion_skipped is None
    strategies = {c.strategy for c in result.deletion}
    assert strategies == {"baseline", "background"}
    for c in result.deletion:
        assert len(c.score) == len(result.features) + 1
        if c.key in ("integrated_gradients", "permutation"):
            assert c.ratio is not None and c.ratio < 1, c  # better than a random order
    assert set(result.deletion_order) == {"baseline", "background"}


def test_permutation_importance_moves_one_hot_groups_together():
    data = _planted_data(300)
    job = data.encoding.groups["job"]
    seen = []

    def f(X):
        seen.append(X[:, job].sum(axis=1))
        return 1 / (1 + np.exp(-X[:, data.encoding.columns.index("age")]))

    model = CallableAdapter(task="binary", fn=f)
    imp = permutation_importance(model, data, np.arange(300), 3, np.random.default_rng(0))
    assert all(np.allclose(s, 1.0) for s in seen)  # every shuffled row has exactly one level
    means = dict(zip(data.feature_names, imp.mean(axis=0), strict=True))
    assert means["age"] > 0.05 and means["hours"] == means["job"] == means["noise"] == 0.0


def test_black_box_gets_permutation_and_skips_the_sanity_check():
    data = _planted_data(200)
    w = np.zeros(data.X.shape[1])
    w[data.encoding.columns.index("age")] = 2.0
    model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-X @ w)))
    assert Agreement().skip_reason(model, data, FAST) is None
    result = Agreement().run(model, data, FAST, RunContext.default(0))
    assert [r.key for r in result.rankings] == ["permutation"]
    assert result.sanity is None and "gradients" in result.sanity_skipped
    assert "integrated_gradients" in result.missing and "shap" in result.missing
    assert result.consensus[0].feature == "age"


def test_rowwise_spearman_ignores_features_zero_in_both():
    a = np.array([[0.0, 0.0, 1.0, 2.0, 3.0]])
    b = np.array([[0.0, 0.0, 3.0, 2.0, 1.0]])
    assert _rowwise_spearman(a, b) == pytest.approx(-1.0)


def test_sanity_check_by_default_reruns_the_attributions_that_ask_for_it(planted):
    _, _, result = planted
    assert result.sanity.methods == ("saliency", "input_x_gradient", "integrated_gradients", "gradient_shap")
    assert result.sanity.labels["gradient_shap"] == "GradientSHAP (captum)"


def test_sanity_check_names_the_methods_when_none_of_them_ran():
    data = _planted_data(200)
    model = _planted_mlp(data)
    earlier = {"saliency": Saliency().run(model, data, FAST_SAL, RunContext.default(1))}
    cfg = dataclasses.replace(FAST, sanity_methods=("lrp",))
    result = Agreement().run(model, data, cfg, RunContext(rng=np.random.default_rng(0), earlier=earlier))
    assert result.sanity is None and "lrp" in result.sanity_skipped


def test_config_validation():
    with pytest.raises(InvalidConfigError, match=r"'n_rows' option in \[methods.agreement\] must be from 1"):
        AgreementConfig.from_dict({"n_rows": 0}, method="agreement")


def test_figures_and_json(planted):
    import json

    _, data, result = planted
    figs = Agreement().figures(result, data)
    assert {"correlation", "consensus", "sanity", "deletion"} <= set(figs)
    json.dumps(result.to_json(), allow_nan=False)


def test_reads_olden_importance_from_a_connection_weights_result(planted):
    """The submitted model's |CW|, largest over a feature's columns, ranks like the others."""
    from types import SimpleNamespace

    from audit.methods.agreement import collect_sources
    from audit.methods.connection_weights import ConnectionWeightsResult

    model, data, _ = planted
    w1 = model.module[0].weight.detach().numpy().T          # (d, hidden)
    v = model.module[2].weight.detach().numpy().T           # (hidden, 1)
    cw = (w1 @ v)[:, 0]
    cols = data.encoding.columns
    feature_of = [data.feature_names[i] for i in data.encoding.column_feature]
    fake = SimpleNamespace(inputs=tuple(SimpleNamespace(name=c, feature=f, output="P", submitted=float(x))
                                        for c, f, x in zip(cols, feature_of, cw, strict=True)),
                           features=tuple(SimpleNamespace(feature=f, statistic=np.nan)
                                          for f in reversed(data.feature_names)),
                           scale="sd", outputs=("P",))
    attributions = ConnectionWeightsResult.attributions(fake)  # type: ignore[arg-type]
    sources, missing = collect_sources(list(attributions), data.feature_names)
    olden = next(s for s in sources if s.key == "connection_weights")
    assert "connection_weights" not in missing and olden.per_row is None
    assert data.feature_names[int(np.argmax(olden.importance))] == "age"
    assert olden.importance[data.feature_names.index("noise")] == 0.0
    assert olden.importance[data.feature_names.index("job")] == pytest.approx(0.3 * 1.0)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_runs_for_multiclass_and_regression(task):
    import torch

    data0 = _planted_data(300)
    frame = data0.frame.copy()
    if task == "multiclass":
        frame["y"] = np.where(frame.age > 50, "old", np.where(frame.age > 35, "mid", "young"))
    else:
        frame["y"] = frame.age * 0.1
    data = build_audit_data(frame, DatasetSpec(target="y", task=task), data0.encoding)
    d, k = data.X.shape[1], (3 if task == "multiclass" else 1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(d, 4), torch.nn.Tanh(), torch.nn.Linear(4, k))
    with torch.no_grad():
        net[0].weight[:, data.encoding.columns.index("age")] *= 8
    model = TorchAdapter(task=task, module=net, n_classes=k if k > 1 else 2,
                         output_kind="logit" if task == "multiclass" else "identity")
    sal = Saliency().run(model, data, dataclasses.replace(FAST_SAL, n_rows=80), RunContext.default(0))
    result = Agreement().run(model, data, FAST, RunContext(rng=np.random.default_rng(0),
                                                           earlier={"saliency": sal}))
    assert result.consensus[0].feature == "age"
    assert result.sanity is not None and {c.strategy for c in result.deletion} == {"baseline", "background"}
    import json

    json.dumps(result.to_json(), allow_nan=False)


def test_label_only_classifier_still_gets_permutation_importance():
    from sklearn.tree import DecisionTreeClassifier

    from audit.core.adapter import SklearnAdapter

    data = _planted_data(300)
    y = (data.X[:, data.encoding.columns.index("age")] > 0).astype(int)
    est = DecisionTreeClassifier(max_depth=2, random_state=0).fit(data.X, y)
    model = SklearnAdapter(task="binary", estimator=est)
    model.capabilities = model.capabilities - {"proba"}
    result = Agreement().run(model, data, FAST, RunContext.default(0))
    assert result.consensus[0].feature == "age"
    assert result.sanity is None and result.deletion


def _fake_source(key: str, data, rows: np.ndarray, seed: int):
    """A result exposing one attribution method's per-row values on ``rows``."""
    from types import SimpleNamespace

    from audit.core.results import Attributions, mean_abs_importance

    values = np.random.default_rng(seed).normal(size=(len(rows), len(data.feature_names)))
    a = Attributions(key=key, label=key, short=key, origin=f"test: {key}", features=tuple(data.feature_names),
                     grouping="feature", explains="output", explained="P(y)",
                     importance=mean_abs_importance(data.feature_names, values), values=values, rows=rows)
    return SimpleNamespace(attributions=lambda: (a,))


def test_a_compared_methods_deletion_curves_do_not_depend_on_which_others_are_compared(planted):
    """Sources draw their row subsample and random order from their own substream: adding a
    method (before or after) moves neither its neighbours' curves nor the shared-stream ones."""
    model, data, _ = planted
    cfg = dataclasses.replace(FAST, sanity_check=False)
    sal = Saliency().run(model, data, FAST_SAL, RunContext.default(1))
    one = {"new_a": _fake_source("new_a", data, np.arange(0, 400, 2), 1)}
    other = _fake_source("new_b", data, np.arange(100, 500), 2)

    def curves(earlier):
        r = Agreement().run(model, data, cfg, RunContext(rng=np.random.default_rng(3), earlier=earlier))
        return {(c.key, c.strategy): (c.score, c.random_score) for c in r.deletion}

    alone = curves({"saliency": sal, **one})
    crowded = curves({"saliency": sal, "new_b": other, **one})
    assert {k: v for k, v in crowded.items() if k[0] != "new_b"} == alone
    assert ("new_b", "baseline") in crowded and ("new_a", "baseline") in alone
