"""Surrogate tree: a planted tree is recovered exactly, and rules read in raw units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import CallableAdapter
from audit.core.dataset import DatasetSpec, Encoding, build_audit_data
from audit.core.method import RunContext
from audit.errors import InvalidConfigError
from audit.methods.surrogate import Surrogate, SurrogateConfig


def _planted(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 80, n), "job": rng.choice(["clerk", "exec", "tech"], n),
                          "noise": rng.normal(size=n)})
    frame["y"] = rng.integers(0, 2, n)
    enc = Encoding.fit(frame[["age", "job", "noise"]])
    data = build_audit_data(frame, DatasetSpec(target="y"), enc)

    def rule(X: np.ndarray) -> np.ndarray:  # a depth-2 tree: age > 40 and job != clerk
        raw = enc.decode(X)
        return ((raw["age"].to_numpy(float) > 40) & (raw["job"].to_numpy() != "clerk")).astype(float)

    return CallableAdapter(task="binary", fn=rule), data


def test_planted_tree_is_recovered_with_fidelity_one_and_raw_unit_rules():
    model, data = _planted()
    result = Surrogate().run(model, data, SurrogateConfig(), RunContext.default())
    assert result.fidelity == 1.0
    assert result.chosen_depth == 2
    conditions = {c for rule in result.rules for c in rule.conditions}
    assert "age ≤ 40" in conditions and "age ≥ 41" in conditions
    assert {"job = clerk", "job ≠ clerk"} <= conditions
    assert result.feature_importance["noise"] == 0.0
    assert all(rule.purity == 1.0 for rule in result.rules)


def test_regression_fidelity_is_r2_against_the_model_output():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.uniform(0, 10, 1000), "y": rng.normal(size=1000)})
    data = build_audit_data(frame, DatasetSpec(target="y", task="regression"))
    model = CallableAdapter(task="regression", fn=lambda X: np.where(X[:, 0] > 0, 3.0, -1.0))
    result = Surrogate().run(model, data, SurrogateConfig(), RunContext.default())
    assert result.fidelity_metric == "r2" and result.fidelity == pytest.approx(1.0)
    assert result.chosen_depth == 1


def test_fixed_max_depth_skips_the_sweep():
    model, data = _planted()
    result = Surrogate().run(model, data, SurrogateConfig(max_depth=1), RunContext.default())
    assert result.depths == (1,) and result.chosen_depth == 1 and result.fidelity < 1.0


def test_same_seed_gives_the_same_tree():
    model, data = _planted()
    a = Surrogate().run(model, data, SurrogateConfig(), RunContext.default(3))
    b = Surrogate().run(model, data, SurrogateConfig(), RunContext.default(3))
    assert a.to_json() == b.to_json()


@pytest.mark.parametrize("options", [{"depths": [0]}, {"test_fraction": 0.95}, {"max_depth": -1},
                                     {"depths": "3"}])
def test_invalid_options_are_config_errors(options):
    with pytest.raises(InvalidConfigError):
        SurrogateConfig.from_dict(options, method="surrogate")


def test_predictions_only_data_without_features_is_skipped_with_a_reason():
    frame = pd.DataFrame({"y": [0, 1] * 20, "score": np.linspace(0, 1, 40), "g": ["a", "b"] * 20})
    from audit.core.adapter import PredictionsAdapter

    data = build_audit_data(frame, DatasetSpec(target="y", predictions="score", sensitive=("g",), features=()))
    model = PredictionsAdapter(task="binary", column="score")
    assert "no feature columns" in Surrogate().skip_reason(model, data, SurrogateConfig())


# ---- which rows fit, choose and judge the tree --------------------------------------------------

def _assert_fidelity_of(result, model, data):
    """The reported fidelity is the chosen tree's agreement on exactly the held-out rows."""
    test = result._rows["test"]
    labels = model.predictions(data).labels
    tree_says = result._tree.predict(data.X[test])
    assert result.fidelity == float(np.mean(tree_says == labels[test]))


def test_without_training_data_fit_validation_and_held_out_rows_are_disjoint():
    model, data = _planted()
    result = Surrogate().run(model, data, SurrogateConfig(), RunContext.default(3))
    fit, val, test = (set(result._rows[k].tolist()) for k in ("fit", "validation", "test"))
    assert not (fit & val) and not (fit & test) and not (val & test)
    assert fit | val | test == set(range(data.n_rows))
    assert (len(fit), len(val), len(test)) == (result.n_train, result.n_validation, result.n_test)
    assert result.n_test == 600 and result.n_validation == 350
    assert result.fit_source == "the audited rows not held out"
    _assert_fidelity_of(result, model, data)
    # the depth is the shallowest within tolerance of the best *validation* fidelity
    best = max(result.validation_fidelity)
    first = next(d for d, f in zip(result.depths, result.validation_fidelity, strict=True) if f >= best - 0.01)
    assert result.chosen_depth == first


def test_with_training_data_the_tree_never_sees_the_audited_rows():
    """Training rows cover x in [-1, 1], where the model flips at 0; the audited rows lie in
    [2, 3], where it flips at 2.5. A tree fitted (or its depth chosen) on the audited rows would
    find the 2.5 split and agree on ~100% of them; fitted on the training rows, it cannot."""
    import dataclasses

    rng = np.random.default_rng(0)
    spec = DatasetSpec(target=None, features=("x", "z"))
    train = build_audit_data(pd.DataFrame({"x": rng.uniform(-1, 1, 1500), "z": rng.normal(size=1500)}), spec)
    data = build_audit_data(pd.DataFrame({"x": rng.uniform(2, 3, 800), "z": rng.normal(size=800)}), spec,
                            train.encoding)
    enc = train.encoding

    def fn(X):
        x = enc.decode(X)["x"].to_numpy(float)
        return np.where(x < 1.5, x > 0, x > 2.5).astype(float)

    model = CallableAdapter(task="binary", fn=fn)
    ctx = dataclasses.replace(RunContext.default(0), train=train)
    result = Surrogate().run(model, data, SurrogateConfig(), ctx)
    assert result.fit_source == "the training data (train_path)"
    assert result.n_test == data.n_rows and result.n_train + result.n_validation == train.n_rows
    assert result.validation_fidelity[result.depths.index(result.chosen_depth)] == 1.0
    assert 0.4 < result.fidelity < 0.6  # the audited rows' own split was never learnt
    _assert_fidelity_of(result, model, data)
    # the same rows without training data: the tree learns their split
    alone = Surrogate().run(model, data, SurrogateConfig(), RunContext.default(0))
    assert alone.fidelity > 0.98
