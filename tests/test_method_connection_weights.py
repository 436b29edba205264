"""Known answers for connection-weight importance and the Olden–Jackson randomization test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import SklearnAdapter, TorchAdapter
from audit.core.dataset import DatasetSpec, build_audit_data
from audit.core.method import RunContext
from audit.errors import CapabilityError, InvalidConfigError
from audit.methods.connection_weights import (ConnectionWeights, ConnectionWeightsConfig,
                                              connection_contributions, garson_importance,
                                              kendall_w, olden_importance)
from audit.train.batched import MLPSpec, Weights

# A hand-set network: 3 inputs, 2 hidden units, 1 output.
W1 = np.array([[1.0, -2.0], [0.5, 1.0], [0.0, 3.0]])
W2 = np.array([[2.0], [-1.0]])


def _w(*Ws):
    return Weights([np.asarray(W, float)[None] for W in Ws], [np.zeros((1, np.shape(W)[1])) for W in Ws])


def test_olden_equals_the_hand_computation():
    # CW_i = sum_j w_ij v_j: input 0: 1*2 + (-2)(-1) = 4; input 1: 0.5*2 + 1*(-1) = 0; input 2: -3
    cw = olden_importance(_w(W1, W2))[0, :, 0]
    assert cw.tolist() == pytest.approx([4.0, 0.0, -3.0])
    c = connection_contributions(_w(W1, W2))[0, :, :, 0]
    assert np.allclose(c, [[2.0, 2.0], [1.0, -1.0], [0.0, -3.0]])
    assert c.sum(1) == pytest.approx(cw)
    # inputs on a common scale: multiplying x_i's sd into its importance
    scaled = olden_importance(_w(W1, W2), scale=np.array([2.0, 1.0, 0.5]))[0, :, 0]
    assert scaled.tolist() == pytest.approx([8.0, 0.0, -1.5])


def test_olden_for_two_hidden_layers_is_the_product_of_the_weight_matrices():
    W2b = np.array([[1.0, 0.0], [2.0, -1.0]])
    W3 = np.array([[1.0], [3.0]])
    cw = olden_importance(_w(W1, W2b, W3))[0, :, 0]
    assert cw == pytest.approx((W1 @ W2b @ W3)[:, 0])
    c = connection_contributions(_w(W1, W2b, W3))[0, :, :, 0]
    assert c.sum(1) == pytest.approx(cw)


def test_garson_equals_the_hand_computation():
    # P = |w||v|: [[2, 2], [1, 1], [0, 3]]; column sums 3, 6; Q = [[2/3, 1/3], [1/3, 1/6], [0, 1/2]]
    # S = [1, 0.5, 0.5], RI = S / 2
    ri = garson_importance(_w(W1, W2))[0]
    assert ri.tolist() == pytest.approx([0.5, 0.25, 0.25])
    with pytest.raises(InvalidConfigError, match="one hidden layer"):
        garson_importance(_w(W1, np.eye(2), W2))


def test_softmax_importances_are_class_centred():
    V = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
    cw = olden_importance(_w(W1, V), mode="centred")[0]
    assert cw.sum(1) == pytest.approx(np.zeros(3))
    # adding a vector to every class's output weights changes nothing identifiable
    shifted = olden_importance(_w(W1, V + np.array([[5.0], [-2.0]])), mode="centred")[0]
    assert shifted == pytest.approx(cw)


def test_kendall_w_is_one_for_identical_rankings():
    assert kendall_w(np.array([[1, 2, 3], [10, 20, 30]])) == pytest.approx(1.0)
    assert kendall_w(np.array([[1, 2, 3], [3, 2, 1]])) == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [{"n_permutations": 18}, {"n_permutations": 99.5},
                                 {"n_permutations": 38},          # two-sided: 2/(B+1) > 0.05
                                 {"n_permutations": 98, "alpha": 0.01}, {"selection": "best"},
                                 {"per_input_permutations": 5}, {"alpha": 1.5}])
def test_bad_config_is_refused(bad):
    with pytest.raises(InvalidConfigError):
        ConnectionWeightsConfig.from_dict(bad, method="connection_weights")


# ---- end to end on planted data -----------------------------------------------------------------

BETA = np.array([1.0, -0.6, 0.35, 0.15, 0.0])     # decreasing effects, the last one null


def planted(n=400, seed=0, beta=BETA):
    """Olden, Joy & Death (2004) style: correlated normal predictors, y linear in them."""
    rng = np.random.default_rng(seed)
    d = len(beta)
    cov = 0.3 + 0.7 * np.eye(d)
    X = rng.multivariate_normal(np.zeros(d), cov, size=n)
    y = X @ beta + 0.5 * rng.normal(size=n)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    frame["y"] = y
    return frame


def _torch_regressor(d, hidden=4, seed=0):
    import torch

    from audit.core.adapter import build_mlp

    torch.manual_seed(seed)
    return build_mlp({"type": "mlp", "input_dim": d, "hidden": [hidden], "activation": "sigmoid",
                      "output_dim": 1, "output": "identity"})


RECIPE = {"loss": "mse", "optimizer": "adam", "lr": 0.05, "epochs": 60, "batch_size": 400,
          "weight_decay": 1e-3, "validation_fraction": 0.25, "seed": 0}


def _run(frame, model, options, task="regression", target="y", train=None):
    spec = DatasetSpec(target=target, task=task)
    data = build_audit_data(frame, spec)
    adapter = model if not hasattr(model, "parameters") else TorchAdapter(task=task, module=model, output_kind="identity" if task == "regression" else "logit")
    cfg = ConnectionWeightsConfig.from_dict(options, method="connection_weights")
    ctx = RunContext(rng=np.random.default_rng(0), train=train)
    method = ConnectionWeights()
    assert method.skip_reason(adapter, data, cfg) is None
    return method, method.run(adapter, data, cfg, ctx), data, cfg


def test_planted_effects_are_found_and_the_report_renders():
    frame = planted(n=800)  # x2 (beta 0.35) sits near the 5 % line at n = 400 on some CPUs
    method, r, data, cfg = _run(frame, _torch_regressor(5), {
        "n_permutations": 99, "n_restarts": 3, "per_input": 2, "per_input_permutations": 39,
        "recipe": RECIPE})
    by = {t.name: t for t in r.inputs}
    for strong in ("x0", "x1", "x2"):
        assert by[strong].p_bh <= 0.05, by[strong]
    assert by["x0"].importance > 0 and by["x1"].importance < 0      # signs kept
    assert r.n_null_used == 99 and r.diverged == ()
    assert r.garson_available and by["x0"].garson is not None
    assert len(r.per_input_features) == 2 and r.features[0].per_input_p is not None
    assert "no training data" in " ".join(r.notes).lower()                  # fell back to audited rows
    assert r.recipe["weight_decay"] == 1e-3
    top = [f.text for f in method.findings(r, cfg) if f.text.startswith("Largest connection-weight")]
    assert len(top) == 1 and "retrains from θ₀" in top[0] and "submitted model's own weights" in top[0]
    figs = method.figures(r, data)
    assert set(figs) == {"importance", "null", "diagram"}
    html = _render(r, cfg, figs)
    assert "the outcome is unrelated to every input" in html.replace("\n", " ")
    assert "x0" in html


def _render(result, cfg, figs):
    from audit.report.render import _environment, templates_dir

    env = _environment(str(templates_dir()))
    uris = {k: "data:image/png;base64,AAAA" for k in figs}
    return env.get_template("partials/connection_weights.html.j2").render(r=result, cfg=cfg, figs=uris, report=None)


def test_olden_ranks_planted_effects_better_than_garson():
    from scipy.stats import spearmanr

    from audit.train.batched import FixedTargets, torch_default_init, train_batched
    from audit.train.recipe import Recipe

    truth = np.abs(BETA)
    rho_olden, rho_garson = [], []
    for seed in range(4):
        frame = planted(seed=seed)
        X = frame[[f"x{i}" for i in range(5)]].to_numpy(np.float32)
        X = (X - X.mean(0)) / X.std(0)
        y = frame["y"].to_numpy(np.float32)
        spec = MLPSpec((5, 4, 1), ("sigmoid",))
        recipe = Recipe(loss="mse", lr=0.05, epochs=60, batch_size=400, weight_decay=1e-3)
        inits = [torch_default_init(spec, s) for s in range(10)]
        init = Weights([np.concatenate([i.W[l] for i in inits]) for l in range(2)],
                       [np.concatenate([i.b[l] for i in inits]) for l in range(2)])
        fit = train_batched(X, FixedTargets(y, 10), spec, recipe, init, schedule_seed=seed)
        cw = np.abs(olden_importance(fit.weights)[:, :, 0])
        ga = garson_importance(fit.weights)
        rho_olden += [spearmanr(c, truth).statistic for c in cw]
        rho_garson += [spearmanr(g, truth).statistic for g in ga]
    assert np.mean(rho_olden) > np.mean(rho_garson)
    assert np.mean(rho_olden) > 0.9


def test_binary_torch_mlp_with_training_data_and_sklearn_mlp():
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "g": rng.choice(["u", "v", "w"], n)})
    frame["t"] = np.where(frame.a + (frame.g == "u") + 0.3 * rng.normal(size=n) > 0.5, "yes", "no")
    spec = DatasetSpec(target="t", positive_label="yes")
    data = build_audit_data(frame, spec)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=30, random_state=0, learning_rate_init=0.05)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(data.X, data.y)
    adapter = SklearnAdapter(task="binary", estimator=est)
    method = ConnectionWeights()
    cfg = ConnectionWeightsConfig(n_permutations=39, n_restarts=2, per_input=1, per_input_permutations=19)
    assert method.skip_reason(adapter, data, cfg) is None
    r = method.run(adapter, data, cfg, RunContext(rng=np.random.default_rng(0), train=data))
    assert r.model_kind == "sklearn" and r.recipe["decay_biases"] is False
    assert [f.feature for f in r.features] == ["a", "b", "g"]
    assert {t.name for t in r.inputs} == {"a", "b", "g=u", "g=v", "g=w"}
    assert set(r.refit_metrics) == {"accuracy", "ROC AUC"}
    assert r.inputs[0].p >= 2 / 40


def test_multiclass_softmax_is_class_centred():
    import torch

    rng = np.random.default_rng(4)
    n = 240
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["c"] = np.select([frame.a > 0.5, frame.b > 0], ["p", "q"], "r")
    data = build_audit_data(frame, DatasetSpec(target="c", task="multiclass"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    adapter = TorchAdapter(task="multiclass", module=net)
    cfg = ConnectionWeightsConfig(n_permutations=39, n_restarts=2, per_input=0,
                                  recipe={"optimizer": "adam", "lr": 0.05, "epochs": 5, "batch_size": 60})
    r = ConnectionWeights().run(adapter, data, cfg, RunContext(rng=np.random.default_rng(0)))
    assert r.output_mode == "centred" and r.outputs == ("p", "q", "r")
    assert not r.garson_available and "one output" in r.garson_note
    imp = np.array([t.importance for t in r.inputs]).reshape(2, 3)
    assert imp.sum(1) == pytest.approx(np.zeros(2), abs=1e-9)


# ---- bad input ----------------------------------------------------------------------------------


def test_non_mlp_torch_model_is_skipped_with_the_reason():
    import torch

    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 2, 2)
            self.out = torch.nn.Linear(2 * 4, 1)

        def forward(self, x):
            return self.out(self.conv(x[:, None, :]).flatten(1))

    frame = planted(n=60)
    data = build_audit_data(frame, DatasetSpec(target="y", task="regression"))
    adapter = TorchAdapter(task="regression", module=Conv(), output_kind="identity")
    reason = ConnectionWeights().skip_reason(adapter, data, ConnectionWeightsConfig())
    assert reason is not None and "fully connected" in reason and "permutation_significance" in reason


def test_model_without_a_recipe_is_refused_naming_the_keys():
    frame = planted(n=80)
    data = build_audit_data(frame, DatasetSpec(target="y", task="regression"))
    adapter = TorchAdapter(task="regression", module=_torch_regressor(5), output_kind="identity")
    method = ConnectionWeights()
    with pytest.raises(CapabilityError, match="optimizer, lr, epochs, batch_size"):
        method.run(adapter, data, ConnectionWeightsConfig(n_permutations=39), RunContext.default())
    with pytest.raises(InvalidConfigError, match="lacks the key\\(s\\) 'lr', 'epochs'"):
        method.run(adapter, data, ConnectionWeightsConfig(n_permutations=39, recipe={"optimizer": "adam", "batch_size": 8}),
                   RunContext.default())


def test_result_is_reproducible_and_one_sided_option_works():
    frame = planted(n=120)
    opts = {"n_permutations": 39, "n_restarts": 2, "per_input": 1, "per_input_permutations": 19,
            "recipe": {**RECIPE, "epochs": 5}}
    _, r1, _, _ = _run(frame, _torch_regressor(5), opts)
    _, r2, _, _ = _run(frame, _torch_regressor(5), opts)
    assert r1.to_json() == r2.to_json()
    _, r3, _, _ = _run(frame, _torch_regressor(5), {**opts, "alternative": "observed"})
    for a, b in zip(r1.inputs, r3.inputs):
        assert b.p <= a.p + 1e-12 and b.p in (a.p_upper, a.p_lower)
    assert r3.alternative == "one-sided in the observed direction"


def test_recipe_comes_from_model_training_table():
    frame = planted(n=120)
    data = build_audit_data(frame, DatasetSpec(target="y", task="regression"))
    adapter = TorchAdapter(task="regression", module=_torch_regressor(5), output_kind="identity")
    ctx = RunContext(rng=np.random.default_rng(0), training={**RECIPE, "epochs": 3})
    r = ConnectionWeights().run(adapter, data, ConnectionWeightsConfig(n_permutations=39, n_restarts=2, per_input=0), ctx)
    assert r.recipe_source == "[model.training]" and r.recipe["epochs"] == 3


def test_a_recipe_without_validation_rows_compares_restarts_on_the_fitted_rows_and_says_so():
    frame = planted(n=120)
    data = build_audit_data(frame, DatasetSpec(target="y", task="regression"))
    adapter = TorchAdapter(task="regression", module=_torch_regressor(5), output_kind="identity")
    recipe = {k: v for k, v in RECIPE.items() if k != "validation_fraction"} | {"epochs": 3}
    r = ConnectionWeights().run(adapter, data, ConnectionWeightsConfig(n_permutations=39, n_restarts=2, per_input=0,
                                                                       recipe=recipe), RunContext.default(0))
    assert r.recipe["validation_fraction"] is None and "validation_fraction" in r.recipe_defaults
    assert any("compared by their loss on the fitted rows" in n for n in r.notes)


def test_a_loss_scale_the_mlp_trainer_cannot_apply_is_refused():
    frame = planted(n=60)
    data = build_audit_data(frame, DatasetSpec(target="y", task="regression"))
    adapter = TorchAdapter(task="regression", module=_torch_regressor(5), output_kind="identity")
    with pytest.raises(InvalidConfigError, match="sets 'loss_scale'"):
        ConnectionWeights().run(adapter, data, ConnectionWeightsConfig(n_permutations=39, n_restarts=2, per_input=0,
                                                                       recipe={**RECIPE, "loss_scale": 2.0}),
                                RunContext.default(0))


def test_diverging_null_networks_are_reported_and_excluded(monkeypatch):
    import audit.train.batched as tb

    real = tb.train_batched

    def flaky(*args, **kwargs):
        fit = real(*args, **kwargs)
        if fit.weights.n_networks > 10:           # the null batch: break networks 3 and 5
            for b in (3, 5):
                fit.weights.W[0][b, 0, 0] = np.nan
                fit.diverged[b] = True
        return fit

    monkeypatch.setattr(tb, "train_batched", flaky)
    frame = planted(n=120)
    method, r, _, _ = _run(frame, _torch_regressor(5), {"n_permutations": 39, "n_restarts": 2, "per_input": 0,
                                                         "recipe": {**RECIPE, "epochs": 5}})
    assert r.diverged == (2, 4)                      # indices among the null networks
    assert r.n_null_used == 37
    assert any("diverged" in f.text for f in method.findings(r, ConnectionWeightsConfig()))


@pytest.mark.slow
@pytest.mark.parametrize("selection", ["first", "per_network"])
def test_type_one_error_with_ten_restarts_is_within_the_monte_carlo_band(selection):
    """y independent of X, 10 restarts (where selecting θ₀ on the real y made the test
    conservative, size ~0.03): each input is rejected (two-sided, alpha 0.05) in about 5% of
    data sets. The band is 3 Monte Carlo standard errors of the per-data-set rejection share."""
    from audit.methods.connection_weights import _Network, randomization_test
    from audit.train.recipe import Recipe

    n_sets = 200 if selection == "first" else 120      # per_network trains 10x the networks
    shares = []
    recipe = Recipe(loss="mse", lr=0.05, epochs=15, batch_size=60, weight_decay=1e-3, n_restarts=10,
                    validation_fraction=0.2)
    cfg = ConnectionWeightsConfig(n_permutations=39, per_input=0, selection=selection, n_workers=1)
    spec = MLPSpec((3, 3, 1), ("sigmoid",))
    for s in range(n_sets):
        rng = np.random.default_rng(1000 + s)
        frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
        frame["y"] = rng.normal(size=60)
        data = build_audit_data(frame, DatasetSpec(target="y", task="regression"))
        net = _Network("torch", spec, _w(np.zeros((3, 3)), np.zeros((3, 1))), "mse", "value", ("y",))
        r = randomization_test(None, data, net, recipe, "test", cfg, RunContext(rng=rng))
        shares.append(np.mean([t.p_two_sided <= 0.05 for t in r.inputs]))
    rate = float(np.mean(shares))
    se = max(np.std(shares, ddof=1), np.sqrt(0.05 * 0.95 / 3)) / np.sqrt(n_sets)
    assert abs(rate - 0.05) <= 3 * se, (rate, se)

@pytest.mark.parametrize("selection", ["first", "per_network"])
def test_observed_network_is_the_null_map_at_the_identity_so_the_test_is_exact(selection):
    """Exactness needs the observed statistic to be computed by the same map as the null ones:
    rerunning the whole procedure on the outcome permuted as for null network b must give null
    b's importances as the observed ones. Before the fix θ₀ was the restart with the best
    validation loss on the real outcome, which a permuted outcome need not pick, so this failed
    and the test was conservative (size ~0.03 at 0.05, benchmarks/permutation_size.py)."""
    from audit.train.recipe import Recipe

    frame = planted(n=80, seed=5)
    opts = {"n_permutations": 39, "n_restarts": 3, "per_input": 0, "selection": selection,
            "recipe": {**RECIPE, "epochs": 10, "batch_size": 20}}
    _, r, _, _ = _run(frame, _torch_regressor(5), opts)
    flat_null, flat_obs = r._null
    assert r.selection == selection
    if selection == "first":
        assert r.selected_restart == 0 and r.null_restarts is None
    else:
        assert sum(r.null_restarts) == 39 and sum(c > 0 for c in r.null_restarts) >= 2   # selections differ
    seeds = np.random.default_rng(0).integers(0, 2**62, size=39)       # the test's own draws
    fit = np.sort(Recipe(validation_fraction=RECIPE["validation_fraction"], seed=RECIPE["seed"]).fit_rows(len(frame))[0])
    for b in (0, 7, 38):
        permuted = frame.copy()
        y = permuted["y"].to_numpy().copy()
        y[fit] = y[fit][np.random.default_rng(int(seeds[b])).permutation(len(fit))]
        permuted["y"] = y
        _, rb, _, _ = _run(permuted, _torch_regressor(5), opts)
        assert np.array([t.importance for t in rb.inputs]) == pytest.approx(flat_null[b], rel=1e-4, abs=1e-6)


def test_reachability_warns_when_b_cannot_make_a_lone_input_significant():
    frame = planted(n=120)
    # 5 two-sided tests at B = 99: a lone effect's BH floor is 5 * 2/100 = 0.10 > 0.05
    method, r, _, cfg = _run(frame, _torch_regressor(5), {"n_permutations": 99, "n_restarts": 2, "per_input": 0,
                                                           "recipe": {**RECIPE, "epochs": 5}})
    inputs_msg = [m for m in r.reachability if "encoded inputs" in m]
    assert len(inputs_msg) == 1 and "at least 199" in inputs_msg[0] and "0.1" in inputs_msg[0]
    assert any("connections" in m for m in r.reachability)            # 5 x 4 connections: needs 799
    assert not any("raw features" in m for m in r.reachability)       # 5 one-sided: 5/100 <= 0.05
    assert [f.text for f in method.findings(r, cfg) if f.level == "warning"][: len(r.reachability)] == list(r.reachability)
    assert "at least 199" in _render(r, cfg, {})


# ---- scikit-learn pipelines: scalers before the MLP ------------------------------------------


def _pipeline_data(n=300, seed=5):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n),
                          "g": rng.choice(["u", "v"], n)})
    frame["t"] = np.where(2 * frame.a - frame.b + (frame.g == "u") + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    frame["v"] = 2 * frame.a - frame.b + 0.1 * rng.normal(size=n)
    return frame


def _fit_quietly(est, X, y):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.mark.parametrize("scalers", [("standard",), ("minmax",), ("maxabs",), ("robust",),
                                     ("standard", "minmax"), ("passthrough", "robust")])
def test_folding_scalers_into_the_first_layer_reproduces_the_pipeline_exactly(scalers):
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

    from audit.methods.connection_weights import extract_network, fold_input_affine
    from audit.train.batched import forward_numpy

    make = {"standard": StandardScaler, "minmax": lambda: MinMaxScaler((-1, 2)), "maxabs": MaxAbsScaler,
            "robust": RobustScaler, "passthrough": lambda: "passthrough"}
    frame = _pipeline_data()
    for task, target, mlp in (("binary", "t", MLPClassifier(hidden_layer_sizes=(5, 3), max_iter=40, random_state=0)),
                              ("regression", "v", MLPRegressor(hidden_layer_sizes=(4,), max_iter=40, random_state=0))):
        data = build_audit_data(frame, DatasetSpec(target=target, task=task, positive_label="yes" if task == "binary" else None))
        # raw-looking scales so that the scaler matters: column j multiplied by 10**j, shifted
        X = data.X.astype(np.float64) * (10.0 ** np.arange(data.X.shape[1])) + 3.0
        pipe = _fit_quietly(make_pipeline(*(make[s]() for s in scalers), mlp), X, data.y)
        net = extract_network(SklearnAdapter(task=task, estimator=pipe), data)
        assert net.input_affine is not None
        z = forward_numpy(fold_input_affine(net.weights, net.input_affine), net.spec, X)
        if task == "binary":
            np.testing.assert_allclose(1 / (1 + np.exp(-z[:, 0])), pipe.predict_proba(X)[:, 1], atol=2e-6)
        else:
            np.testing.assert_allclose(z[:, 0], pipe.predict(X), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("step", ["quantile", "minmax_clip", "polynomial"])
def test_pipeline_steps_that_are_not_affine_scalers_are_skipped_with_the_reason(step):
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, QuantileTransformer

    frame = _pipeline_data()
    data = build_audit_data(frame, DatasetSpec(target="t", positive_label="yes"))
    first = {"quantile": QuantileTransformer(n_quantiles=50), "minmax_clip": MinMaxScaler(clip=True),
             "polynomial": PolynomialFeatures(2)}[step]
    pipe = _fit_quietly(make_pipeline(first, MLPClassifier(hidden_layer_sizes=(3,), max_iter=20, random_state=0)), data.X, data.y)
    adapter = SklearnAdapter(task="binary", estimator=pipe)
    reason = ConnectionWeights().skip_reason(adapter, data, ConnectionWeightsConfig(n_permutations=39))
    assert reason is not None and ("not a per-feature affine scaler" in reason or "clips" in reason)
    with pytest.raises(CapabilityError, match="not a plain MLP"):
        ConnectionWeights().run(adapter, data, ConnectionWeightsConfig(n_permutations=39), RunContext.default())


def test_standard_scaler_mlp_pipeline_end_to_end_gives_importances_on_the_encoded_inputs():
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from audit.methods.connection_weights import fold_input_affine

    from dataclasses import replace

    frame = _pipeline_data(n=400)
    data = build_audit_data(frame, DatasetSpec(target="t", positive_label="yes", features=("a", "b", "c", "g")))
    X = data.X * np.array([100.0, 1.0, 0.01, 1.0, 1.0], dtype=np.float32)   # scales the MLP never sees
    data = replace(data, X=X)
    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=15, random_state=0, learning_rate_init=0.05)
    pipe = _fit_quietly(make_pipeline(StandardScaler(), mlp), X, data.y)
    adapter = SklearnAdapter(task="binary", estimator=pipe)
    cfg = ConnectionWeightsConfig(n_permutations=39, n_restarts=1, per_input=0, scale="none")
    method = ConnectionWeights()
    assert method.skip_reason(adapter, data, cfg) is None
    r = method.run(adapter, data, cfg, RunContext(rng=np.random.default_rng(0), train=data))
    # the submitted model's importance (scale "none") = Olden's CW of the folded network
    sc = pipe[0]
    folded = fold_input_affine(_sk_weights(mlp), (1 / sc.scale_, -sc.mean_ / sc.scale_))
    expected = olden_importance(folded)[0, :, 0]
    np.testing.assert_allclose([t.submitted for t in r.inputs], expected, rtol=1e-5)
    # times the scaler's σ it is the MLP's own W1 W2 on the standardized inputs
    np.testing.assert_allclose(olden_importance(folded, scale=sc.scale_)[0, :, 0],
                               (mlp.coefs_[0] @ mlp.coefs_[1])[:, 0], rtol=1e-6)
    assert any("folded into the first layer" in n for n in r.notes)
    assert any("stopped at max_iter = 15" in n and "ConvergenceWarning" in n for n in r.notes)
    # the refitted network trained on the scaled inputs fits as well as the submitted one
    assert r.refit_metrics["accuracy"]["refit"] > 0.8


def _sk_weights(mlp):
    return Weights([np.asarray(c, np.float64)[None] for c in mlp.coefs_],
                   [np.asarray(c, np.float64)[None] for c in mlp.intercepts_])


def test_raw_input_scaler_mlp_pipeline_folds_the_decoding_too_and_runs():
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from audit.methods.connection_weights import extract_network, fold_input_affine
    from audit.train.batched import forward_numpy

    frame = _pipeline_data(n=300)
    frame["a"] = 50 + 10 * frame.a     # raw units the encoding standardizes
    numeric = ["a", "b", "c"]
    data = build_audit_data(frame, DatasetSpec(target="t", positive_label="yes", features=tuple(numeric)))
    pipe = _fit_quietly(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(4,), max_iter=50,
                                                                      random_state=0)), frame[numeric], data.y)
    adapter = SklearnAdapter(task="binary", estimator=pipe, encoding=data.encoding, raw=True)
    net = extract_network(adapter, data)
    z = forward_numpy(fold_input_affine(net.weights, net.input_affine), net.spec, data.X)
    np.testing.assert_allclose(1 / (1 + np.exp(-z[:, 0])), pipe.predict_proba(frame[numeric])[:, 1], atol=2e-6)
    r = ConnectionWeights().run(adapter, data, ConnectionWeightsConfig(n_permutations=39, n_restarts=1, per_input=0),
                                RunContext(rng=np.random.default_rng(0), train=data))
    assert [f.feature for f in r.features] == numeric
    # a categorical raw column cannot be folded: the reason says which
    data_cat = build_audit_data(frame, DatasetSpec(target="t", positive_label="yes", features=("a", "g")))
    pipe_cat = _fit_quietly(make_pipeline(MLPClassifier(hidden_layer_sizes=(2,), max_iter=5, random_state=0)),
                            data_cat.X, data_cat.y)
    with pytest.raises(CapabilityError, match="'g' is not a plain numeric column"):
        extract_network(SklearnAdapter(task="binary", estimator=pipe_cat, encoding=data_cat.encoding, raw=True),
                        data_cat)


def test_cli_runs_connection_weights_on_a_saved_standard_scaler_mlp_pipeline(tmp_path):
    import json

    import skops.io as sio
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from typer.testing import CliRunner

    from audit.cli import app
    from audit.core.dataset import Encoding

    frame = _pipeline_data(n=300)
    features = ["a", "b", "c", "g"]
    enc = Encoding.fit(frame[features])
    pipe = _fit_quietly(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(4,), max_iter=20,
                                                                      random_state=0)),
                        enc.encode(frame), frame.t)
    sio.dump(pipe, tmp_path / "model.skops")
    (tmp_path / "encoding.json").write_text(json.dumps(enc.to_dict()))
    frame.to_csv(tmp_path / "data.csv", index=False)
    trusted = sio.get_untrusted_types(file=str(tmp_path / "model.skops"))
    (tmp_path / "audit.toml").write_text(
        f'[model]\npath = "model.skops"\nencoding = "encoding.json"\ntrusted_types = {json.dumps(trusted)}\n\n'
        '[data]\npath = "data.csv"\ntarget = "t"\npositive_label = "yes"\nfeatures = ["a", "b", "c", "g"]\n\n'
        '[methods.connection_weights]\nn_permutations = 39\nn_restarts = 1\nper_input = 0\n\n'
        '[report]\nformats = ["html", "json"]\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(tmp_path / "audit.toml"), "--out", str(out), "-q",
                                      "-m", "connection_weights"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cw = json.loads((out / "results.json").read_text())["methods"]["connection_weights"]
    assert cw["status"] == "ok" and cw["result"]["model_kind"] == "sklearn"
    assert any("StandardScaler was folded into the first layer" in n for n in cw["result"]["notes"])
    assert any("stopped at max_iter = 20" in n for n in cw["result"]["notes"])
    assert "StandardScaler was folded into the first layer" in (out / "report.html").read_text()
