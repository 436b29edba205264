"""Known-answer tests of the fairness method: planted gaps, undefined metrics, label types,
intersections, small groups, bad input, audits from precomputed predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import PredictionsAdapter
from audit.core.dataset import DatasetSpec, build_audit_data
from audit.core.method import RunContext
from audit.errors import DataValidationError, InvalidConfigError
from audit.methods.fairness import Fairness, FairnessConfig

FAST = dict(n_boot=200, n_permutations=99, what_if=False)


def planted_frame() -> pd.DataFrame:
    """Group A: 100 rows, 50 positives; 60 selected (40 TP, 20 FP).
    Group B: 100 rows, 50 positives; 30 selected (25 TP, 5 FP). Exact rates by construction."""
    def group(name, tp, fp, fn, tn):
        y = [1] * tp + [0] * fp + [1] * fn + [0] * tn
        p = [1] * tp + [1] * fp + [0] * fn + [0] * tn
        return pd.DataFrame({"g": name, "y": y, "pred": p})
    df = pd.concat([group("A", 40, 20, 10, 30), group("B", 25, 5, 25, 45)], ignore_index=True)
    df["x"] = np.arange(len(df), dtype=float)
    return df


def run(df: pd.DataFrame, *, sensitive=("g",), positive=None, task="binary", **cfg):
    data = build_audit_data(df, DatasetSpec(target="y", sensitive=tuple(sensitive), positive_label=positive,
                                            predictions="pred", task=task, features=("x",)))
    model = PredictionsAdapter(task=task, column="pred")
    return Fairness().run(model, data, FairnessConfig(**{**FAST, **cfg}), RunContext.default(0))


def test_planted_gaps_measured_exactly():
    r = run(planted_frame())
    res = r.attributes["g"]
    a, b = res.groups
    assert a.metrics["selection_rate"].value == pytest.approx(0.6)
    assert b.metrics["selection_rate"].value == pytest.approx(0.3)
    assert a.metrics["tpr"].value == pytest.approx(0.8) and b.metrics["tpr"].value == pytest.approx(0.5)
    assert a.metrics["fpr"].value == pytest.approx(0.4) and b.metrics["fpr"].value == pytest.approx(0.1)
    assert a.metrics["ppv"].value == pytest.approx(40 / 60) and b.metrics["ppv"].value == pytest.approx(25 / 30)
    d = {k: v.value for k, v in res.disparities.items()}
    assert d["demographic_parity_difference"] == pytest.approx(0.3)
    assert d["demographic_parity_ratio"] == pytest.approx(0.5)
    assert d["disparate_impact_ratio"] == pytest.approx(0.5)
    assert d["equal_opportunity_difference"] == pytest.approx(0.3)
    assert d["equalized_odds_difference"] == pytest.approx(0.3)
    assert d["equalized_odds_ratio"] == pytest.approx(min(0.5 / 0.8, 0.1 / 0.4))
    assert d["predictive_parity_difference"] == pytest.approx(25 / 30 - 40 / 60)
    assert d["accuracy_difference"] == pytest.approx(0.7 - 0.7)
    assert res.four_fifths_fail == ("B",)
    dp = res.disparities["demographic_parity_difference"]
    assert dp.estimate.lower < 0.3 < dp.estimate.upper
    # known answer: MOVER on Clopper-Pearson limits of 60/100 vs 30/100 (one pair, m = 1)
    assert (dp.estimate.lower, dp.estimate.upper) == pytest.approx((0.1369, 0.4305), abs=5e-4)
    assert dp.p_value < 0.001 and dp.p_adjusted == pytest.approx(2 * dp.p_value)
    assert dp.significance == "significant after correction" and dp.n_comparisons == 1
    assert dp.family == "equal selection rates"
    assert res.disparities["equalized_odds_difference"].n_comparisons == 2  # TPR and FPR
    # every group metric has an interval around its value
    for g in res.groups:
        e = g.metrics["selection_rate"]
        assert e.lower <= e.value <= e.upper


def test_matches_fairlearn_with_numeric_labels():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    df = planted_frame()
    r = run(df)
    d = r.attributes["g"].disparities
    assert d["demographic_parity_difference"].value == pytest.approx(
        demographic_parity_difference(df.y, df.pred, sensitive_features=df.g))
    assert d["equalized_odds_difference"].value == pytest.approx(
        equalized_odds_difference(df.y, df.pred, sensitive_features=df.g))


def test_reference_group():
    df = planted_frame()
    df = pd.concat([df, planted_frame().assign(g="C")], ignore_index=True)
    r = run(df, reference={"g": "B"})
    res = r.attributes["g"]
    assert res.reference == "B"
    assert res.disparities["demographic_parity_difference"].value == pytest.approx(0.3)
    assert res.impact_ratios == pytest.approx({"A": 2.0, "B": 1.0, "C": 1.5})  # C: 0.45 / 0.3
    with pytest.raises(InvalidConfigError, match="Groups: A, B, C"):
        run(df, reference={"g": "D"})
    with pytest.raises(InvalidConfigError, match="Did you mean 'g'"):
        run(df, reference={"gg": "B"})


def test_undefined_stays_undefined():
    df = planted_frame()
    extra = pd.DataFrame({"g": "C", "y": [0] * 40, "pred": [1] * 10 + [0] * 30})  # no positives
    extra["x"] = 0.0
    r = run(pd.concat([df, extra], ignore_index=True))
    res = r.attributes["g"]
    c = res.groups[2]
    assert c.metrics["tpr"].value is None and "no positive" in c.metrics["tpr"].undefined
    assert c.metrics["tpr"].lower is None
    assert c.metrics["fpr"].value == pytest.approx(0.25)
    # TPR gap among A and B only; C is named as left out
    eo = res.disparities["equal_opportunity_difference"]
    assert eo.value == pytest.approx(0.3)
    assert eo.excluded_undefined == ("C",)
    doc = json.loads(json.dumps(r.to_json()))
    assert doc["attributes"]["g"]["groups"][2]["metrics"]["tpr"]["value"] is None


def test_string_boolean_and_01_labels_agree():
    base = planted_frame()
    text = base.assign(y=np.where(base.y == 1, "yes", "no"), pred=np.where(base.pred == 1, "yes", "no"))
    boolean = base.assign(y=base.y.astype(bool), pred=base.pred.astype(bool))
    results = [run(base), run(text, positive="yes"), run(boolean)]
    keys = ["demographic_parity_difference", "equalized_odds_ratio", "predictive_parity_difference"]
    ref = [results[0].attributes["g"].disparities[k].estimate for k in keys]
    for r in results[1:]:
        assert [r.attributes["g"].disparities[k].estimate for k in keys] == ref
    assert results[1].positive_label == "yes"


def test_too_small_groups_get_no_numbers():
    df = planted_frame()
    tiny = pd.DataFrame({"g": "T", "y": [1, 0, 1], "pred": [1, 1, 1], "x": 0.0})
    r = run(pd.concat([df, tiny], ignore_index=True), min_group_size=30)
    res = r.attributes["g"]
    t = res.groups[2]
    assert t.too_small and t.count == 3
    assert all(e.value is None for e in t.metrics.values())
    dp = res.disparities["demographic_parity_difference"]
    assert dp.value == pytest.approx(0.3) and dp.excluded_small == ("T",)


def test_intersections_and_scores():
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"a": rng.choice(["p", "q"], n), "b": rng.choice(["u", "v", "w"], n)})
    df["y"] = (rng.random(n) < 0.4).astype(int)
    df["pred"] = np.clip(0.3 * df.y + rng.random(n) * 0.7, 0, 1)
    df["x"] = 0.0
    r = run(df, sensitive=("a", "b"), what_if=True)
    assert list(r.attributes) == ["a", "b", "a*b"]
    ab = r.attributes["a*b"]
    assert len(ab.groups) == 6 and ab.groups[0].group == "p × u"
    assert r.has_scores and ab.groups[0].metrics["auc"].value is not None
    assert ab.groups[0].calibration is not None
    a = r.attributes["a"]
    assert a.curves is not None and len(a.curves.thresholds) == 51
    assert {w.constraint for w in a.what_if} == {"demographic_parity", "equalized_odds"}
    for w in a.what_if:
        assert w.error is None and w.disparity_after is not None
    # AUC matches scikit-learn per group
    from sklearn.metrics import roc_auc_score

    m = (df.a == "p").to_numpy()
    assert a.groups[0].metrics["auc"].value == pytest.approx(roc_auc_score(df.y[m], df.pred[m]))
    assert r.n_tests == 3 * 5
    fig = Fairness().figures(r, None)
    assert {"rates:a", "curves:a", "calibration:a", "rates:a*b"} <= set(fig)


def test_regression_and_multiclass():
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({"g": np.repeat(["A", "B"], n // 2), "x": 0.0})
    df["y"] = rng.normal(size=n)
    df["pred"] = df.y + np.where(df.g == "A", 0.5, 0.0)
    r = run(df, task="regression")
    res = r.attributes["g"]
    assert res.disparities["mean_error_difference"].value == pytest.approx(0.5)
    assert res.disparities["mean_error_difference"].p_value < 0.05
    assert res.disparities["mae_difference"].value == pytest.approx(0.5)
    mc = pd.DataFrame({"g": np.repeat(["A", "B"], 100), "x": 0.0,
                       "y": np.tile(["c0", "c1", "c2", "c3"], 50)})
    mc["pred"] = np.where(mc.g == "A", mc.y, "c0")
    r = run(mc, task="multiclass")
    d = r.attributes["g"].disparities
    assert d["accuracy_difference"].value == pytest.approx(0.75)
    assert d["demographic_parity_difference"].value == pytest.approx(0.75)


def test_bad_sensitive_input():
    df = planted_frame()
    with pytest.raises(InvalidConfigError, match="single group"):
        run(df.assign(g="A"))
    many = df.assign(g=[f"v{i}" for i in range(len(df))])
    with pytest.raises(InvalidConfigError, match="bins"):
        run(many)
    missing = df.astype({"g": object})
    missing.loc[[3, 7, 9], "g"] = None
    with pytest.raises(DataValidationError, match="3 row"):
        run(missing)
    spec = DatasetSpec(target="y", sensitive=("g",), predictions="pred", features=("x",),
                       missing_sensitive="group")
    data = build_audit_data(missing, spec)
    r = Fairness().run(PredictionsAdapter(task="binary", column="pred"), data,
                       FairnessConfig(**FAST, min_group_size=1), RunContext.default(0))
    assert [g.group for g in r.attributes["g"].groups] == ["A", "B", "missing"]
    assert r.attributes["g"].groups[2].count == 3


def test_config_validation():
    with pytest.raises(InvalidConfigError, match="n_boot"):
        FairnessConfig.from_dict({"n_boot": 10}, method="fairness")
    with pytest.raises(InvalidConfigError, match="confidence"):
        FairnessConfig.from_dict({"confidence": 1.5}, method="fairness")
    cfg = FairnessConfig.from_dict({"intersections": [["a", "b"]], "reference": {"a": "x"}}, method="fairness")
    assert cfg.intersections == (("a", "b"),)


def test_audit_without_a_model(tmp_path):
    """A CSV of decisions, outcomes and groups is enough for the full fairness section."""
    from audit.config import AuditPlan
    from audit.report.render import render_html
    from audit.runner import run_audit

    df = planted_frame()
    df["score"] = np.where(df.pred == 1, 0.8, 0.2)
    df.to_csv(tmp_path / "decisions.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        'name = "csv"\n[model]\npredictions = "score"\n[data]\npath = "decisions.csv"\ntarget = "y"\n'
        'sensitive = ["g"]\n[methods.fairness]\nn_boot = 200\nn_permutations = 99\n'
        '[gate]\n"fairness.g.demographic_parity_difference" = { max = 0.1 }\n', encoding="utf-8")
    report = run_audit(AuditPlan.load(tmp_path / "audit.toml"))
    assert report.outcome("fairness").ok
    res = report.outcome("fairness").result
    assert res.attributes["g"].disparities["demographic_parity_difference"].value == pytest.approx(0.3)
    assert report.gate["outcome"] == "fail"
    html = render_html(report)
    assert "Deployment gate" in html and "breach" in html
    assert any(f.method == "gate" for f in report.findings)


def test_noise_inflated_max_min_gap_is_not_reported_as_a_real_gap():
    """Many small groups and no real difference: the max-min spread sits above the limit by
    chance. Its interval (joint pairwise intervals, not the percentile interval of the spread,
    which would lie entirely above the limit) reaches below it, so there is no warning."""
    import numpy as np
    import pandas as pd

    from audit.runner import audit_model

    rng = np.random.default_rng(4)
    n_groups, size = 14, 40
    frame = pd.DataFrame({"x": rng.normal(size=n_groups * size),
                          "g": np.repeat([f"g{i}" for i in range(n_groups)], size)})
    frame["y"] = rng.integers(0, 2, len(frame))
    report = audit_model(lambda X: (X[:, 0] > 0).astype(float), frame, target="y", sensitive=["g"],
                         methods=["fairness"], method_options={"fairness": {"n_permutations": 199,
                                                                             "n_boot": 400}})
    texts = [f for f in report.findings if "Selection rates differ" in f.text]
    assert texts, "the spread should be described"
    assert all(f.level == "info" and "clearly above" not in f.text for f in texts), texts
    d = report.outcome("fairness").result.attributes["g"].disparities["demographic_parity_difference"]
    assert d.estimate.lower < 0.1 < d.estimate.value  # the honest interval reaches below the limit
