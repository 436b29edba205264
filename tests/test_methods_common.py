"""Checks every registered method must pass, without branching on a method's name.

Every method runs on the fixtures it supports: a torch MLP on toy tabular data with a training
recipe, a scikit-learn MLP, planted images and planted sequences. A skip is allowed only where
``EXPECTED_SKIPS`` lists it, with the reason; every partial that ran is rendered. Methods that
are expensive by default get cheaper options from ``FAST_OPTIONS`` (one table); nothing else is
special-cased.
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
    "attribution_significance": {"enabled": True, "n_permutations": 19, "n_rows": 20, "ig_steps": 4},
    "permutation_significance": {"n_permutations": 19, "n_repeats": 2, "n_jobs": 1},
    "counterfactual_sensitivity": {"max_search_rows": 20},
    "fairness": {"n_bootstrap": 200, "n_permutations": 199},
    "shap": {"n_rows": 100, "n_bootstrap": 100, "kernel_n_rows": 10, "kernel_nsamples": 100,
             "gradient_n_rows": 50, "gradient_nsamples": 50},
    "lime": {"num_samples": 500, "n_seeds": 2, "n_global_rows": 20, "n_bootstrap": 100},
    "saliency": {"n_rows": 200, "n_bootstrap": 50},
    "counterfactuals": {"max_search_rows": 60, "n_bootstrap": 200, "n_permutations": 199},
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


def _violations(method):
    """For every option with a declared rule, the first of a few plain values the rule refuses."""
    import typing

    hints = typing.get_type_hints(method.Config)
    for name, rule in method.Config.constraints().items():
        hint = hints[name]
        listed = typing.get_origin(hint) in (tuple, list)
        kinds = set(typing.get_args(hint)[:1] if listed else typing.get_args(hint) or (hint,)) - {type(None)}
        candidates = {int: [-1, 0, 1, 2, 50, 10**12], float: [-1.0, 0.0, 0.5, 1.0, 2.0, 1e12]}
        values = next((candidates[k] for k in (int, float) if k in kinds), ["no_such_value"])
        bad = next((v for v in values if not rule.allows(v)), None)
        if bad is not None:
            yield name, rule, [bad] if listed else bad


VIOLATIONS = [(m, name, rule, bad) for m in METHODS for name, rule, bad in _violations(m)]


@pytest.mark.parametrize("method, option, rule, value", VIOLATIONS,
                         ids=lambda x: getattr(x, "name", x) if not hasattr(x, "allows") else "")
def test_a_value_outside_an_options_declared_rule_is_one_sentence_naming_option_section_and_file(
        method, option, rule, value):
    from audit.core.method import option_message

    with pytest.raises(InvalidConfigError) as info:
        method.Config.from_dict({option: value}, method=method.name, source="a.toml")
    assert str(info.value) == option_message(option, rule.rule(), value, section=f"[methods.{method.name}]",
                                             source="a.toml")


def test_the_declared_rules_cover_every_method():
    assert {m.name for m, *_ in VIOLATIONS} == {m.name for m in METHODS}


RENAMED = [(m, old, new) for m in METHODS for old, new in m.Config.renamed.items()]


@pytest.mark.parametrize("method, old, new", RENAMED, ids=lambda x: getattr(x, "name", x))
def test_an_old_option_name_is_an_error_that_names_the_new_one(method, old, new):
    assert new in {o.name for o in method.Config.options()} and old not in {o.name for o in method.Config.options()}
    with pytest.raises(InvalidConfigError, match=rf"The '{old}' option in \[methods.{method.name}\] of a.toml was "
                                                 rf"renamed '{new}' .*write {new} = 100"):
        method.Config.from_dict({old: 100}, method=method.name, source="a.toml")


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_option_has_one_line_help_in_the_config_docstring(method: type[AuditMethod]):
    """`audit methods NAME` prints it: a docstring line "name : help" on the Config class."""
    missing = [o.name for o in method.Config.options() if not o.help]
    assert not missing, f"add 'name : help' lines to {method.Config.__name__}'s docstring for {missing}"


def _plan(model_dir: Path, **changes) -> AuditPlan:
    plan = AuditPlan.load(model_dir / "audit.toml")
    options = {m.name: _fast(m.name) for m in METHODS}
    return plan.with_overrides(method_options=options, **changes)


# ---- every method on a fixture it supports ------------------------------------------------------

# The recipe the retraining methods refit the toy models with ([model.training]).
RECIPE = {"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 64}
FIXTURES = ("torch_mlp", "sklearn_mlp", "images", "sequences")

# (fixture, method) -> (a fragment of the skip reason, why skipping is right there). Any other
# skip fails, and so does an entry whose method runs: the table must stay true.
_NO_SKLEARN = ("refittable scikit-learn", "it refits scikit-learn estimators; torch models are "
                                          "retrained by connection_weights and attribution_significance")
_NO_RECOURSE = ("recourse needs named, actionable features", "images and sequences get the "
                                                              "counterfactual_sensitivity diagnostic instead")
_NO_SENSITIVITY = ("tabular data gets actionable counterfactuals", "tabular rows get recourse "
                                                                   "(counterfactuals) instead")
_NO_SENSITIVE = ("no sensitive attributes", "the planted arrays carry no sensitive attribute; fairness "
                                            "runs on both tabular fixtures")
EXPECTED_SKIPS: dict[tuple[str, str], tuple[str, str]] = {
    ("torch_mlp", "counterfactual_sensitivity"): _NO_SENSITIVITY,
    ("torch_mlp", "permutation_significance"): _NO_SKLEARN,
    ("sklearn_mlp", "saliency"): ("needs a model with gradients", "a scikit-learn MLP has no gradients"),
    ("sklearn_mlp", "counterfactual_sensitivity"): _NO_SENSITIVITY,
    ("sklearn_mlp", "attribution_significance"): ("needs a torch model it can retrain",
                                                  "it retrains torch modules; permutation_significance "
                                                  "tests scikit-learn estimators"),
    ("images", "fairness"): _NO_SENSITIVE,
    ("images", "counterfactuals"): _NO_RECOURSE,
    ("images", "connection_weights"): ("needs a fully connected network",
                                       "Olden's weights describe fully connected networks; the CNN is not one"),
    ("images", "permutation_significance"): _NO_SKLEARN,
    ("sequences", "fairness"): _NO_SENSITIVE,
    ("sequences", "counterfactuals"): _NO_RECOURSE,
    ("sequences", "connection_weights"): ("not available for sequence data",
                                          "Olden's weights are per input column of tabular data"),
    ("sequences", "permutation_significance"): _NO_SKLEARN,
    ("torch_mlp", "gradcam"): ("not available for tabular data", "Grad-CAM weighs a CNN's convolutional maps"),
    ("sklearn_mlp", "gradcam"): ("needs a model with gradients", "Grad-CAM needs a torch CNN"),
    ("sequences", "gradcam"): ("not defined for regression tasks", "Grad-CAM explains a predicted class"),
}


def _torch_mlp(tmp_path_factory, *_):
    """A small torch MLP on toy tabular data, with training data and a training recipe."""
    from audit.core.dataset import Encoding
    from tests.conftest import make_frame, write_model_dir

    d = tmp_path_factory.mktemp("toy")
    frame = make_frame(400)
    training = "".join(f"{k} = {json.dumps(v)}\n" for k, v in RECIPE.items())
    write_model_dir(d, frame, Encoding.fit(frame[["age", "hours", "job"]]),
                    'name = "toy"\n[model]\npath = "model.safetensors"\narchitecture = "architecture.json"\n'
                    f'encoding = "encoding.json"\n[model.training]\n{training}[data]\npath = "data.csv"\n'
                    'train_path = "train.csv"\ntarget = "income"\npositive_label = ">50K"\nsensitive = ["sex"]\n')
    frame.to_csv(d / "train.csv", index=False)
    return run_audit(_plan(d))


def _sklearn_mlp(*_):
    """A scikit-learn MLPClassifier on the same toy data, through the Python API."""
    from sklearn.neural_network import MLPClassifier

    from audit.core.dataset import Encoding
    from audit.runner import audit_model
    from tests.conftest import make_frame

    frame = make_frame(400)
    enc = Encoding.fit(frame[["age", "hours", "job"]])
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=200, random_state=0)
    est.fit(enc.encode(frame), frame.income == ">50K")
    return audit_model(est, frame, target="income", positive_label=">50K", sensitive=["sex"],
                       features=["age", "hours", "job"], encoding=enc, train_frame=frame,
                       method_options={m.name: _fast(m.name) for m in METHODS})


def _planted(model, data):
    from audit.core.loading import ModelSpec
    from audit.runner import LoadedInputs

    plan = AuditPlan(name="planted", seed=0, model=ModelSpec(task=data.task, training=RECIPE), data=data.spec,
                     data_path="", method_options={m.name: _fast(m.name) for m in METHODS})
    return run_audit(plan, inputs=LoadedInputs(model, data, None, [], []))


_BUILD = {"torch_mlp": _torch_mlp, "sklearn_mlp": _sklearn_mlp,
          "images": lambda _, images, __: _planted(*images),
          "sequences": lambda _, __, sequences: _planted(*sequences)}


@pytest.fixture(scope="module")
def reports(tmp_path_factory, planted_images, planted_sequences):
    """Each fixture's report, built on first use (the torch MLP's twice: "torch_mlp#2")."""
    cache: dict = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = _BUILD[kind.split("#")[0]](tmp_path_factory, planted_images, planted_sequences)
        return cache[kind]
    return get


def test_every_expected_skip_has_a_reason_and_every_method_has_a_fixture_it_runs_on():
    for (kind, name), (fragment, why) in EXPECTED_SKIPS.items():
        assert kind in FIXTURES and name in {m.name for m in METHODS} and fragment and why
    for m in METHODS:
        assert any((kind, m.name) not in EXPECTED_SKIPS for kind in FIXTURES), f"{m.name} runs on no fixture"


@pytest.mark.parametrize("kind", FIXTURES)
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_method_runs_or_skips_exactly_as_the_table_says(method, kind, reports):
    outcome = reports(kind).outcome(method.name)
    assert outcome is not None
    expected = EXPECTED_SKIPS.get((kind, method.name))
    if isinstance(outcome.result, Skipped):
        assert not outcome.result.failed, outcome.result.reason
        assert expected is not None, f"unexpected skip of {method.name} on {kind}: {outcome.result.reason}"
        assert expected[0] in outcome.result.reason, outcome.result.reason
        return
    assert expected is None, f"{method.name} ran on {kind}: remove its EXPECTED_SKIPS entry"
    assert isinstance(outcome.result, MethodResult)
    json.dumps(outcome.result.to_json(), allow_nan=False)
    for finding in method().findings(outcome.result, outcome.config):
        assert isinstance(finding, Finding) and finding.level in ("info", "warning", "alert")
    from matplotlib.figure import Figure

    import matplotlib.pyplot as plt

    for fig in method().figures(outcome.result, reports(kind).data).values():
        assert isinstance(fig, Figure)
        plt.close(fig)


@pytest.mark.parametrize("kind", FIXTURES)
def test_every_partial_that_ran_renders_under_its_title(kind, reports):
    import re

    from audit.report.render import render_html

    report = reports(kind)
    html = render_html(report)
    sections = dict(re.findall(r'<section id="method-(\w+)" class="method">(.*?)</section>', html, re.S))
    for method in METHODS:
        if isinstance(report.outcome(method.name).result, Skipped):
            continue
        title, partial = sections[method.name].split("</h2>", 1)
        assert title.strip() == f"<h2>{method.title}", method.name
        # the runner's own "Skipped: ..." line is not the partial; the partial says something
        assert not partial.strip().startswith('<p class="skipped">'), method.name
        assert len(partial.strip()) > 100, f"{method.name}'s partial rendered nothing"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_method_is_deterministic_for_a_seed(method, reports):
    first, second = reports("torch_mlp"), reports("torch_mlp#2")
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


@pytest.mark.parametrize("kind", FIXTURES)
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_attributions_follow_the_shared_vocabulary(method, kind, reports):
    """Whatever a method attributes reaches other methods only as Attributions: unique keys,
    one global Estimate per feature, per-row values shaped (rows, features)."""
    from audit.core.results import Attributions, Estimate

    result = reports(kind).outcome(method.name).result
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
