"""Checks every registered method must pass, without branching on a method's name.

Methods that are expensive by default get cheaper options from ``FAST_OPTIONS`` (one table,
with the reason); nothing else is special-cased.
"""

from __future__ import annotations

import json
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import audit.methods
from audit.config import AuditPlan
from audit.core.method import AuditMethod, Finding, MethodConfig, MethodResult, Skipped
from audit.errors import InvalidConfigError
from audit.registry import METHODS
from audit.report.render import templates_dir
from audit.runner import run_audit

ROOT = Path(__file__).resolve().parents[1]

# method name -> options that keep the common checks quick (defaults are sized for real audits).
FAST_OPTIONS: dict[str, dict] = {
    "connection_weights": {"n_permutations": 39, "n_restarts": 2, "per_input": 1,
                           "per_input_permutations": 19},
    "attribution_significance": {"enabled": True, "n_permutations": 19, "n_rows": 20, "ig_steps": 4,
                                 "recipe": {"optimizer": "adam", "lr": 0.01, "epochs": 1,
                                            "batch_size": 128}},
    "fairness": {"n_boot": 200, "n_permutations": 199},
    "shap": {"n_rows": 100, "n_bootstrap": 100},
    "lime": {"num_samples": 500, "n_seeds": 2, "n_global_rows": 20, "n_bootstrap": 100},
    "saliency": {"n_rows": 200, "n_bootstrap": 50},
    "counterfactuals": {"max_rows": 60, "n_bootstrap": 200, "n_permutations": 199},
    "agreement": {"n_rows": 200, "n_bootstrap": 50, "sanity_rows": 100, "faithfulness_rows": 100},
}


def _fast(name: str) -> dict:
    return FAST_OPTIONS.get(name, {})


def test_every_method_module_is_registered_tested_and_has_a_template():
    modules = {m.name for m in pkgutil.iter_modules(audit.methods.__path__) if not m.name.startswith("_")}
    registered = {m.name for m in METHODS}
    assert modules == registered, "register every module in audit/registry.py (and nothing else)"
    for name in registered:
        assert (ROOT / "tests" / f"test_method_{name}.py").is_file(), f"tests/test_method_{name}.py is missing"
        assert (templates_dir() / "partials" / f"{name}.html.j2").is_file(), f"partial for {name} is missing"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_method_declares_its_interface(method: type[AuditMethod]):
    assert method.name and method.title and isinstance(method.requires, frozenset)
    assert issubclass(method.Config, MethodConfig)
    default = method.Config.from_dict({}, method=method.name)
    assert default == method.Config()
    with pytest.raises(InvalidConfigError, match="has no option 'no_such_option'"):
        method.Config.from_dict({"no_such_option": 1}, method=method.name)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_option_has_one_line_help_in_the_config_docstring(method: type[AuditMethod]):
    """`audit methods NAME` prints it: a docstring line "name : help" on the Config class."""
    missing = [o.name for o in method.Config.options() if not o.help]
    assert not missing, f"add 'name : help' lines to {method.Config.__name__}'s docstring for {missing}"


def _plan(model_dir: Path, **changes) -> AuditPlan:
    plan = AuditPlan.load(model_dir / "audit.toml")
    options = {m.name: _fast(m.name) for m in METHODS}
    return plan.with_overrides(method_options=options, **changes)


@pytest.fixture(scope="module")
def toy_reports(tmp_path_factory):
    """Two runs of every method with the same seed on a small torch MLP."""
    from audit.core.dataset import Encoding
    from tests.conftest import make_frame, write_model_dir

    d = tmp_path_factory.mktemp("toy")
    frame = make_frame(400)
    write_model_dir(d, frame, Encoding.fit(frame[["age", "hours", "job"]]),
                    'name = "toy"\n[model]\npath = "model.safetensors"\narchitecture = "architecture.json"\n'
                    'encoding = "encoding.json"\n[data]\npath = "data.csv"\ntrain_path = "train.csv"\n'
                    'target = "income"\npositive_label = ">50K"\nsensitive = ["sex"]\n')
    frame.to_csv(d / "train.csv", index=False)
    plan = _plan(d)
    return d, run_audit(plan), run_audit(plan)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_method_runs_on_a_torch_mlp_and_its_result_is_json(method, toy_reports):
    _, report, _ = toy_reports
    outcome = report.outcome(method.name)
    assert outcome is not None
    assert not (isinstance(outcome.result, Skipped) and outcome.result.failed), outcome.result
    if isinstance(outcome.result, Skipped):
        assert outcome.result.reason
        return
    assert isinstance(outcome.result, MethodResult)
    json.dumps(outcome.result.to_json(), allow_nan=False)
    for finding in method().findings(outcome.result, outcome.config):
        assert isinstance(finding, Finding) and finding.level in ("info", "warning", "alert")
    from matplotlib.figure import Figure

    for fig in method().figures(outcome.result, report.data).values():
        assert isinstance(fig, Figure)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_method_is_deterministic_for_a_seed(method, toy_reports):
    _, first, second = toy_reports
    assert first.outcome(method.name).to_json() == second.outcome(method.name).to_json()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_method_without_a_queryable_model_is_skipped_with_a_reason_or_runs(method, tmp_path):
    """Precomputed predictions: methods needing more than predictions say why they skip."""
    from tests.conftest import make_frame

    frame = make_frame(300)
    frame["score"] = np.clip((frame.age - 18) / 62, 0, 1)
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        '[model]\npredictions = "score"\n[data]\npath = "data.csv"\ntarget = "income"\n'
        'positive_label = ">50K"\nsensitive = ["sex"]\nfeatures = ["age", "hours", "job"]\n')
    plan = _plan(tmp_path, methods=(method.name,))
    outcome = run_audit(plan).outcome(method.name)
    if isinstance(outcome.result, Skipped):
        assert not outcome.result.failed, outcome.result.reason
        assert method.requires - {"predictions"}, "a method needing only predictions must run"
    else:
        json.dumps(outcome.result.to_json(), allow_nan=False)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_attributions_follow_the_shared_vocabulary(method, toy_reports):
    """Whatever a method attributes reaches other methods only as Attributions: unique keys,
    one global Estimate per feature, per-row values shaped (rows, features)."""
    from audit.core.results import Attributions, Estimate

    _, report, _ = toy_reports
    result = report.outcome(method.name).result
    if isinstance(result, Skipped):
        return
    attributions = result.attributions()
    assert len({(a.key, a.grouping) for a in attributions}) == len(attributions)
    for a in attributions:
        assert isinstance(a, Attributions) and a.label and a.short and a.origin
        assert set(a.importance) == set(a.features)
        assert all(isinstance(e, Estimate) for e in a.importance.values())
        if a.values is not None:
            assert a.values.shape == (len(a.rows), len(a.features))
