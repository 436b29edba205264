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
