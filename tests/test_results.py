"""The shared result vocabulary (audit.core.results): Estimates serialise with their level and
method, Attributions regroup per-element values the way each method's values add up, and the
template macros take the interval's level from the result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.core.method import to_jsonable
from audit.core.modalities import ImageLayout, SequenceLayout
from audit.core.results import Attributions, Estimate, estimates


def test_estimate_serialises_every_field_and_undefined_is_not_zero():
    e = Estimate(0.4, 0.3, float("nan"), level=0.9, method="Wilson score interval")
    assert to_jsonable(e) == {"value": 0.4, "lower": 0.3, "upper": None, "level": 0.9,
                              "method": "Wilson score interval", "undefined_reason": None}
    missing = Estimate(None, undefined_reason="no positives in the group")
    assert not missing.defined and not missing.has_interval
    json.dumps(to_jsonable(missing), allow_nan=False)


def test_an_estimate_without_an_interval_has_null_level_and_method_in_json():
    """README: `level` and `method` are both null without an interval (never "")."""
    for e in (Estimate(1.0), Estimate.of(1.0, None, None, level=0.95, method="bootstrap"),
              estimates(["a"], [1.0], [np.nan], [np.nan], level=0.95, method="bootstrap")["a"]):
        doc = json.loads(json.dumps(to_jsonable(e), allow_nan=False))
        assert doc == {"value": 1.0, "lower": None, "upper": None, "level": None, "method": None,
                       "undefined_reason": None}


def test_estimates_keep_an_interval_only_where_both_ends_are_finite():
    out = estimates(["a", "b"], [1.0, 2.0], [0.5, np.nan], [1.5, np.nan], level=0.95, method="bootstrap")
    assert out["a"] == Estimate(1.0, 0.5, 1.5, 0.95, "bootstrap")
    assert out["b"] == Estimate(2.0)  # no interval: no level or method either


def _element_attributions(layout, values, **kw) -> Attributions:
    names = tuple(layout.columns)
    return Attributions(key="m", label="M", short="M", origin="test", features=names, grouping="element",
                        explains="output", explained="f", importance=estimates(names, np.abs(values).mean(0)),
                        values=values, rows=np.arange(len(values)), **kw)


def test_additive_values_are_summed_per_patch_and_repeated_group_values_averaged():
    lay = ImageLayout(1, 4, 4, patch=2)
    values = np.arange(32, dtype=float).reshape(2, 16)
    summed = _element_attributions(lay, values).grouped(lay, "patch")
    assert summed.features == tuple(lay.groups("patch")) and summed.grouping == "patch"
    np.testing.assert_allclose(summed.values[0], [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15])
    assert summed.importance["patch[0-1,0-1]"].value == pytest.approx((10 + 74) / 2)
    occluded = _element_attributions(lay, np.ones((1, 16)), window="patch")
    assert np.allclose(occluded.grouped(lay, "patch").values, 1.0)  # the group's value, not 4x it
    gradients = _element_attributions(lay, -values, how="mean_abs").grouped(lay, "patch")
    assert gradients.values[0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))


def test_values_at_another_window_do_not_split_into_a_grouping():
    lay = SequenceLayout(("a", "b"), 3)
    by_lag = _element_attributions(lay, np.ones((2, 6)), window="lag")
    assert by_lag.grouped(lay, "feature") is None
    assert by_lag.grouped(lay, "lag").values.shape == (2, 3)
    assert _element_attributions(lay, np.ones((2, 6)), window="cell").grouped(lay, "feature") is not None


def test_reordered_follows_names_and_refuses_other_features():
    a = Attributions(key="m", label="M", short="M", origin="t", features=("x", "y"), grouping="feature",
                     explains="output", explained="f", importance=estimates(["x", "y"], [1.0, 2.0]),
                     values=np.array([[1.0, 2.0]]), rows=np.array([0]))
    b = a.reordered(["y", "x"])
    assert b.features == ("y", "x") and b.values.tolist() == [[2.0, 1.0]]
    assert b.importance_vector().tolist() == [2.0, 1.0]
    assert a.reordered(["x", "z"]) is None


def test_the_recompute_hook_is_not_written_to_results_json():
    a = Attributions(key="m", label="M", short="M", origin="t", features=("x",), grouping="feature",
                     explains="output", explained="f", importance=estimates(["x"], [1.0]),
                     recompute=lambda *a, **k: np.zeros((1, 1)))
    assert "recompute" not in to_jsonable(a)


def _macro(name: str, *args) -> str:
    from audit.report.render import _environment, templates_dir

    module = _environment(str(templates_dir())).get_template("macros.html.j2").module
    return str(getattr(module, name)(*args))


def test_macros_take_the_level_from_the_estimate():
    e = Estimate(0.5, 0.25, 0.75, level=0.9, method="percentile bootstrap")
    assert _macro("level", e) == "90%"
    assert _macro("level", Estimate(0.5, 0.4, 0.6, level=0.995, method="x")) == "99.5%"
    assert "0.250 – 0.750" in _macro("interval", e) and "90% interval: percentile bootstrap" in _macro("interval", e)
    assert _macro("estimate", e).startswith("0.500 <span")
    assert _macro("interval", Estimate(0.5)) == "—" and _macro("level", Estimate(0.5)) == ""
    assert 'title="group &lt;too&gt; small"' in _macro("estimate", Estimate(None, undefined_reason="group <too> small"))
    assert _macro("pvalue", 0.0004) == "&lt; 0.001" and _macro("pvalue", None) == "—"


def test_results_diff_finds_renamed_numbers_and_reports_changed_ones():
    """scripts/results_diff.py: old numbers are found under their renamed keys, list elements
    by their names (an element added before another does not move it)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "results_diff.py"
    spec = importlib.util.spec_from_file_location("results_diff", path)
    diff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diff)
    old = {"methods": {"shap": {"result": {"global_importance": {"age": 0.5}, "importance_low": {"age": 0.4},
                                           "importance_high": {"age": 0.6}}},
                       "agreement": {"result": {"deletion": [{"key": "shap", "strategy": "baseline", "auc": 0.3}]}}}}
    new = {"methods": {"shap": {"result": {"global_importance": {"age": {"value": 0.5, "lower": 0.4, "upper": 0.6,
                                                                         "level": 0.95}}}},
                       "agreement": {"result": {"deletion": [{"key": "gradcam", "strategy": "baseline", "auc": 0.2},
                                                             {"key": "shap", "strategy": "baseline", "auc": 0.3}]}}}}
    problems, added = diff.compare(old, new)
    assert problems == [] and sorted(added) == ["methods.agreement.result.deletion.gradcam:baseline.auc",
                                                "methods.shap.result.global_importance.age.level"]
    new["methods"]["shap"]["result"]["global_importance"]["age"]["upper"] = 0.7
    problems, _ = diff.compare(old, new)
    assert problems == ["changed: methods.shap.result.importance_high.age = 0.6 -> "
                        "methods.shap.result.global_importance.age.upper = 0.7"]


def test_results_diff_of_two_new_shaped_reports_renames_nothing():
    """Two results.json files already in the Estimate shape: equal numbers are no problem (the
    renames apply only to paths that the new file lacks)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "results_diff.py"
    spec = importlib.util.spec_from_file_location("results_diff", path)
    diff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diff)
    doc = {"methods": {"shap": {"result": {"global_importance": {"age": {"value": 0.5, "lower": 0.4,
                                                                         "upper": 0.6, "level": 0.95}}}}}}
    assert diff.compare(doc, doc) == ([], [])
