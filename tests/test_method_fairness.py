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

FAST = dict(n_bootstrap=200, n_permutations=99, what_if=False)


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
    assert dp.p_value < 0.001 and dp.p_adjusted == pytest.approx(dp.p_value)  # one comparison: no correction
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
    assert c.metrics["tpr"].value is None and "no positive" in c.metrics["tpr"].undefined_reason
    assert c.metrics["tpr"].lower is None
    assert c.metrics["fpr"].value == pytest.approx(0.25)
    # TPR gap among A and B only as a point estimate; C is named as left out
    eo = res.disparities["equal_opportunity_difference"]
    assert eo.value == pytest.approx(0.3)
    assert eo.excluded_undefined == ("C",)
    assert eo.undefined_why == ("C: TPR undefined (no positive outcomes in the group)",)
    doc = json.loads(json.dumps(r.to_json()))
    assert doc["attributes"]["g"]["groups"][2]["metrics"]["tpr"]["value"] is None


def test_undefined_rate_of_a_judged_group_is_unknown_so_the_interval_allows_any_value():
    """C (40 rows, no positives) has an undefined TPR: its true TPR is unknown, anywhere in
    [0, 1], so the upper bound of every TPR difference is 1 and the lower bound of every TPR
    ratio 0 (before, C was dropped and the bound came from A and B alone, and the gate passed);
    the bound away from parity still comes from A and B. The note names only the rate that is
    undefined (C's FPR is defined) and says what that does to the interval."""
    df = planted_frame()
    extra = pd.DataFrame({"g": "C", "y": [0] * 40, "pred": [1] * 10 + [0] * 30})
    extra["x"] = 0.0
    base = run(df).attributes["g"].disparities
    res = run(pd.concat([df, extra], ignore_index=True)).attributes["g"]
    d = res.disparities
    for k in ("equal_opportunity_difference", "equalized_odds_difference"):
        assert d[k].estimate.upper == 1.0 and base[k].estimate.upper < 0.6
    assert d["equal_opportunity_difference"].estimate.lower == pytest.approx(base["equal_opportunity_difference"].estimate.lower, abs=0.05)
    for k in ("equal_opportunity_ratio", "equalized_odds_ratio"):
        assert d[k].estimate.lower == 0.0 and base[k].estimate.lower > 0
    # defined everywhere: unaffected
    assert d["demographic_parity_difference"].estimate.upper < 1 and not d["demographic_parity_difference"].excluded_undefined
    eo_note = [n for n in res.notes if "equalized odds difference" in n]
    assert eo_note and eo_note[0].startswith("TPR undefined for C (no positive outcomes in the group)")
    assert "FPR undefined" not in eo_note[0] and "upper bound is 1" in eo_note[0]


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
    assert r.n_tests == 3 * 7  # selection, TPR+FPR, TPR, PPV, accuracy, FPR alone, NPV
    fig = Fairness().figures(r, None)
    assert {"rates:a", "curves:a", "calibration:a", "rates:a*b"} <= set(fig)


def test_group_ece_has_no_interval_but_a_calibration_test_per_group():
    rng = np.random.default_rng(4)
    n = 1200
    g = np.where(np.arange(n) % 2, "calibrated", "overconfident")
    s = rng.random(n)
    y = (rng.random(n) < s).astype(int)
    pred = np.where(g == "calibrated", s, np.clip(0.5 + 2 * (s - 0.5), 0, 1))
    r = run(pd.DataFrame({"g": g, "y": y, "pred": pred, "x": 0.0}), n_bootstrap=299)
    cal, over = r.attributes["g"].groups
    from audit.stats.calibration import binned_ece

    for row in (cal, over):
        e = row.metrics["ece"]
        assert e.lower is None and e.upper is None
        m = g == row.group
        assert e.value == pytest.approx(binned_ece(pred[m], y[m], 10)[0])
        assert row.calibration.test.ece == pytest.approx(e.value) and row.calibration.test.n_sim == 299
    assert cal.calibration.test.p_value > 0.05
    assert over.calibration.test.p_value == pytest.approx(1 / 300)
    assert run(pd.DataFrame({"g": g, "y": y, "pred": pred, "x": 0.0}), n_bootstrap=0).attributes["g"] \
        .groups[0].calibration.test is None


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
    with pytest.raises(InvalidConfigError, match="n_bootstrap"):
        FairnessConfig.from_dict({"n_bootstrap": 10}, method="fairness")
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
        'sensitive = ["g"]\n[methods.fairness]\nn_bootstrap = 200\nn_permutations = 99\n'
        '[gate]\n"fairness.g.demographic_parity_difference" = { max = 0.1 }\n', encoding="utf-8")
    report = run_audit(AuditPlan.load(tmp_path / "audit.toml"))
    assert report.outcome("fairness").ok
    res = report.outcome("fairness").result
    assert res.attributes["g"].disparities["demographic_parity_difference"].value == pytest.approx(0.3)
    assert report.gate.outcome == "fail"
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
                                                                             "n_bootstrap": 400}})
    texts = [f for f in report.findings if "selection-rate gap" in f.text]
    assert texts, "the spread should be described"
    assert all(f.level == "info" and "clearly above" not in f.text and "differ between" not in f.text
               and "point estimate" in f.text for f in texts), texts
    assert not any("Selection rates differ" in f.text for f in report.findings)
    d = report.outcome("fairness").result.attributes["g"].disparities["demographic_parity_difference"]
    assert d.estimate.lower < 0.1 < d.estimate.value  # the honest interval reaches below the limit


def frame_from_cells(groups: dict[str, tuple[int, int, int, int]], attr: str = "g") -> pd.DataFrame:
    """Rows with exactly the given (tn, fp, fn, tp) counts per group."""
    parts = []
    for name, (tn, fp, fn, tp) in groups.items():
        y = [0] * tn + [0] * fp + [1] * fn + [1] * tp
        p = [0] * tn + [1] * fp + [0] * fn + [1] * tp
        parts.append(pd.DataFrame({attr: name, "y": y, "pred": p}))
    df = pd.concat(parts, ignore_index=True)
    df["x"] = 0.0
    return df


def dp_finding(groups):
    r = run(frame_from_cells(groups))
    cfg = FairnessConfig(**FAST)
    texts = [f.text for f in Fairness().findings(r, cfg)
             if "Selection rates differ" in f.text or "selection-rate gap" in f.text]
    return r.attributes["g"].disparities["demographic_parity_difference"], " ".join(texts)


def test_findings_word_the_three_cases_of_a_test():
    """'significant after correction', 'raw p small but not significant after correction' (only
    the correction for 45 pairs removes it) and 'no evidence of a gap at this sample size' (only
    when even the raw p is large); never the last for the first two."""
    d, text = dp_finding({"A": (20, 30, 20, 30), "B": (35, 15, 35, 15)})
    assert d.significance == "significant after correction" and "no correction" in text
    assert "correcting" not in text and "No evidence" not in text  # one comparison: nothing corrected
    d, text = dp_finding({f"g{i}": (20, 30, 20, 30) for i in range(2)} | {"B": (35, 15, 35, 15)})
    assert d.significance == "significant after correction" and "significant after correcting for the 3" in text
    groups = {f"g{i}": (21, 9, 21, 9) for i in range(9)} | {"g9": (15, 15, 15, 15)}
    d, text = dp_finding(groups)
    assert d.n_comparisons == 45 and d.p_value < 0.05 <= d.p_adjusted
    assert d.significance == "raw p small but not significant after correction"
    assert "not significant after correcting for the 45 comparisons" in text and "No evidence" not in text
    d, text = dp_finding({"A": (15, 5, 15, 5), "B": (12, 8, 13, 7)})
    assert d.p_value > 0.05 and d.significance == "no evidence of a gap at this sample size"
    assert "No evidence of a gap at this sample size" in text


def test_a_gap_that_is_not_significant_is_never_worded_as_groups_differing():
    """The outside statistician's case: a fair model on 2 x 30 rows has a selection-rate gap above
    dp_warn = 0.1 as a point estimate with probability 0.37; the finding must say it is the
    observed point estimate, not that selection rates differ."""
    d, text = dp_finding({"A": (10, 5, 10, 5), "B": (12, 3, 12, 3)})  # 10/30 vs 6/30
    assert d.value == pytest.approx(0.1 + 1 / 30) and d.significance != "significant after correction"
    assert "differ between" not in text
    assert text.startswith("The observed selection-rate gap between groups of g is 0.133 "
                           "(demographic parity difference, point estimate;")
    groups = {f"g{i}": (21, 9, 21, 9) for i in range(9)} | {"g9": (15, 15, 15, 15)}
    d, text = dp_finding(groups)  # raw p small, not significant after correction
    assert d.significance == "raw p small but not significant after correction"
    assert "differ between" not in text and "The observed selection-rate gap" in text


def test_many_attributes_do_not_make_a_large_gap_unreportable():
    """The issue's case: four sensitive attributes (50 tests under the old global Holm at
    B = 999: smallest attainable adjusted p 0.050, nothing could qualify). A sex gap of ~0.29 on
    2,000 rows is significant after correction: families are per attribute and criterion and the
    score test has no permutation floor."""
    rng = np.random.default_rng(2)
    n = 2000
    df = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "race": rng.choice(list("abcde"), n),
                       "age": rng.choice(["18-30", "31-45", "46-60", "60+"], n),
                       "region": rng.choice(["n", "s", "w"], n)})
    df["y"] = (rng.random(n) < 0.4).astype(int)
    df["pred"] = (rng.random(n) < np.where(df.sex == "m", 0.55, 0.26)).astype(int)
    df["x"] = 0.0
    r = run(df, sensitive=("sex", "race", "age", "region"), intersections=[])
    d = r.attributes["sex"].disparities["demographic_parity_difference"]
    assert d.value > 0.25 and d.significance == "significant after correction" and d.p_adjusted < 1e-6
    texts = [f.text for f in Fairness().findings(r, FairnessConfig(**FAST)) if "sex" in f.text]
    assert any("significant after correcting" in t for t in texts) and not any("not evidence of a real" in t for t in texts)


def test_small_group_does_not_mask_a_large_gap_and_gate_agrees():
    """COMPAS-like: reference group R, a large FPR gap for group A (z ~ 11), and a 31-row group
    with 8 positives. The old permutation statistic (raw largest gap) was dominated by the small
    group (Holm p = 1, 'not evidence of a real gap') while the gate said breach. Now the finding
    and the verdict come from the same intervals: both say there is a gap."""
    from audit.gate import evaluate, parse_gate

    groups = {"R": (1100, 330, 250, 320), "A": (800, 650, 450, 1100), "O": (18, 5, 3, 5)}
    r = run(frame_from_cells(groups), reference={"g": "R"})
    eo = r.attributes["g"].disparities["equalized_odds_difference"]
    assert eo.significance == "significant after correction" and eo.estimate.lower > 0.1
    rules = parse_gate({"fairness.g.equalized_odds_difference": {"max": 0.10, "small_groups": "ignore"}},
                       sensitive=["g"], task="binary")
    verdict = evaluate(rules, r, confidence=0.95).verdicts[0]
    assert verdict.status == "breach" and "at most 2.50% of the time" in verdict.message
    texts = [f.text for f in Fairness().findings(r, FairnessConfig(**FAST)) if "Error rates" in f.text]
    assert texts and "significant after correcting" in texts[0] and "clearly above" in texts[0]


@pytest.mark.slow
def test_a_breach_always_comes_with_a_significant_gap():
    """Property over random decision tables (2–6 groups, 30–400 rows, thresholds 0.02–0.15):
    whenever a max rule on a difference breaches, the disparity's test says significant."""
    from audit.gate import evaluate, parse_gate

    rng = np.random.default_rng(8)
    keys = ["demographic_parity_difference", "equalized_odds_difference",
            "equal_opportunity_difference", "predictive_parity_difference",
            "false_positive_rate_difference", "false_negative_rate_difference"]
    breaches = 0
    for _ in range(6):
        G = int(rng.integers(2, 7))
        groups = {}
        for i in range(G):
            n = int(rng.integers(30, 400))
            pos = rng.binomial(n, 0.4)
            tp = rng.binomial(pos, rng.uniform(0.3, 0.9))
            fp = rng.binomial(n - pos, rng.uniform(0.05, 0.4))
            groups[f"g{i}"] = (n - pos - fp, fp, pos - tp, tp)
        r = run(frame_from_cells(groups))
        for t in (0.02, 0.05, 0.15):
            rules = parse_gate({f"fairness.g.{k}": {"max": t} for k in keys}, sensitive=["g"], task="binary")
            for rule, v in zip(rules, evaluate(rules, r, confidence=0.95).verdicts, strict=True):
                d = r.attributes["g"].disparities[rule.metric]
                if v.status == "breach":
                    breaches += 1
                    assert d.significance == "significant after correction", (groups, rule, v)
    assert breaches >= 5


def test_two_groups_are_tested_at_alpha_not_alpha_over_two():
    """One comparison is not corrected: the adjusted p is the raw two-sided score p (it was
    doubled, so two groups were tested at about α/2: outside simulation, twogroups/). Equal
    selection rates of 0.3 in two groups of 200, 4,000 data sets: the rate of adjusted p < 0.05
    is within the Monte Carlo band of 0.05 and above 0.035 (doubling gave about 0.025)."""
    from audit.methods.fairness import score_disparities

    rng = np.random.default_rng(2)
    sizes = np.array([200, 200])
    sel = rng.binomial(sizes, 0.3, size=(4000, 2))
    cells = np.stack([sizes - sel, sel, 0 * sel, 0 * sel], axis=-1)
    lo, hi, p_adj, p_raw, m = score_disparities(cells, None, 0.95, keys=["demographic_parity_difference"])[
        "demographic_parity_difference"]
    assert np.all(m == 1) and np.allclose(p_adj, p_raw)
    size, band = np.mean(p_adj < 0.05), 3 * np.sqrt(0.05 * 0.95 / 4000)
    assert 0.035 < size <= 0.05 + band
    assert np.mean(lo > 0) <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 4000)  # the interval keeps α/2
    # twogroups/: 80 vs 102 of 200 selected, p = 0.032: significant, while the interval reaches 0;
    # the finding says both and why
    d, text = dp_finding({"F": (60, 40, 60, 40), "M": (49, 51, 49, 51)})
    assert d.significance == "significant after correction" and d.estimate.lower == 0
    assert "one comparison, so no correction: p = 0.032" in text and "interval still reaches 0" in text


def test_power_note_is_the_corrected_pairwise_test_and_its_real_power_is_as_stated():
    """The detectable gap is the normal-approximation gap of the pairwise test at its corrected
    level α/m against the best partner. Simulating the real procedure at that planted gap gives
    the power the report states: 0.62–0.78 for a 30-row group beside a 3,000-row one at a rate of
    0.3 (measured 0.71 with 4,000 data sets), near the nominal 0.8 for groups of 300 (0.85)."""
    from audit.methods.fairness import score_disparities
    from audit.stats.fairness_tests import min_detectable_difference

    groups = {"big": (1050, 450, 1050, 450), "small": (10, 5, 11, 4)}
    r = run(frame_from_cells(groups))
    small = r.attributes["g"].groups[1]
    assert small.mdd["selection_rate"] == pytest.approx(
        min_detectable_difference(0.3, 30, 3000, alpha=0.05, power=0.8))  # one comparison
    rng = np.random.default_rng(0)
    for sizes, p0, lo, hi in (([3000, 30], 0.3, 0.62, 0.78), ([300, 300, 300], 0.2, 0.78, 0.90)):
        sizes = np.array(sizes)
        m = len(sizes) * (len(sizes) - 1) // 2
        gap = min_detectable_difference(p0, sizes[-1], sizes[0], alpha=0.05 / m, power=0.8)
        p = np.full(len(sizes), p0)
        p[-1] += gap
        sel = rng.binomial(sizes, p, size=(2000, len(sizes)))
        cells = np.stack([sizes - sel, sel, 0 * sel, 0 * sel], axis=-1)
        p_adj = score_disparities(cells, None, 0.95, keys=["demographic_parity_difference"])[
            "demographic_parity_difference"][2]
        assert lo <= np.mean(p_adj < 0.05) <= hi


def test_regression_permutation_statistic_is_not_driven_by_a_small_noisy_group():
    """Two groups of 2,000 rows whose mean error differs by 0.15 (Welch t ~ 4.7) and a 31-row
    group with no gap: the raw max − min statistic's null is dominated by the small group's
    noise (its permutation p was 0.30–0.42 on three seeds of this design); the largest pairwise
    Welch t is not, and the real gap is significant after Holm over the attribute's family."""
    rng = np.random.default_rng(5)
    sizes, shift, sd = (2000, 2000, 31), (0.15, 0.0, 0.0), (1.0, 1.0, 1.0)
    parts = []
    for i, (n, mu, s) in enumerate(zip(sizes, shift, sd, strict=True)):
        y = rng.normal(size=n)
        parts.append(pd.DataFrame({"g": f"g{i}", "y": y, "pred": y + rng.normal(mu, s, n)}))
    df = pd.concat(parts, ignore_index=True)
    df["x"] = 0.0
    r = run(df, task="regression", n_permutations=199)
    d = r.attributes["g"].disparities["mean_error_difference"]
    assert d.p_value <= 0.01 and d.p_adjusted <= 0.03 and d.n_comparisons == 3
    assert d.significance == "significant after correction" and "Welch t" in d.test


# ---- max_groups bounds intersections (red team: 6 x 50 groups took 85 s and wrote 105 MB) -------


def _many_groups_frame(n: int = 600, k: int = 8, seed: int = 0) -> pd.DataFrame:
    """Three attributes of ``k`` groups each, so every pair crosses into up to k² groups."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: [f"{c}{v}" for v in rng.integers(0, k, n)] for c in ("a", "b", "c")})
    df["y"] = rng.integers(0, 2, n)
    df["pred"] = rng.integers(0, 2, n)
    df["x"] = rng.normal(size=n)
    return df


def test_default_intersections_over_max_groups_are_skipped_with_the_reason():
    from audit.gate import evaluate, parse_gate

    df = _many_groups_frame()
    r = run(df, sensitive=("a", "b", "c"), max_groups=20)
    assert list(r.attributes) == ["a", "b", "c"]  # 8 groups each: analysed
    assert list(r.skipped) == ["a*b", "a*c", "b*c"]
    n_ab = df.groupby(["a", "b"]).ngroups
    assert r.skipped["a*b"] == f"{n_ab} groups, more than max_groups = 20"
    texts = [f.text for f in Fairness().findings(r, FairnessConfig(**FAST, max_groups=20))]
    assert any("3 intersection(s) not analysed" in t and "a × b" in t for t in texts), texts
    from audit.core.method import to_jsonable

    assert json.loads(json.dumps(to_jsonable(r)))["skipped"]["a*b"] == r.skipped["a*b"]
    # a gate rule on a skipped intersection is insufficient evidence, never a pass
    rules = parse_gate({"fairness.a*b.demographic_parity_difference": {"max": 0.1}},
                       sensitive=["a", "b", "c"], task="binary")
    verdict = evaluate(rules, r, confidence=0.95).verdicts[0]
    assert verdict.status == "insufficient" and "more than max_groups = 20" in verdict.message
    # under a bound the intersections hold, they are analysed as before
    wide = run(df, sensitive=("a", "b", "c"), max_groups=64)
    assert list(wide.attributes) == ["a", "b", "c", "a*b", "a*c", "b*c"] and not wide.skipped


def test_an_intersection_asked_for_by_name_over_max_groups_is_a_config_error():
    df = _many_groups_frame()
    with pytest.raises(InvalidConfigError, match=r"'a\*b' named in \[methods.fairness\] intersections "
                                                 r"has \d+ groups .*more than max_groups = 20"):
        run(df, sensitive=("a", "b", "c"), max_groups=20, intersections=(("a", "b"),))
    with pytest.raises(InvalidConfigError, match=r"'a\*b' named in reference has \d+ groups"):
        run(df, sensitive=("a", "b"), max_groups=20, reference={"a*b": "a0 × b0"})


def test_the_red_team_file_finishes_in_bounded_output():
    """5,000 rows, 6 attributes of 50 groups (max_groups' default): the 15 pairwise
    intersections (~2,150 groups each) are skipped, so the result holds 6 x 50 group rows."""
    rng = np.random.default_rng(0)
    n = 5000
    df = pd.DataFrame({f"s{j}": [f"g{v}" for v in rng.integers(0, 50, n)] for j in range(6)})
    df["y"] = rng.integers(0, 2, n)
    df["pred"] = rng.integers(0, 2, n)
    df["x"] = rng.normal(size=n)
    r = run(df, sensitive=tuple(f"s{j}" for j in range(6)), n_bootstrap=0)
    assert len(r.attributes) == 6 and len(r.skipped) == 15
    assert sum(len(a.groups) for a in r.attributes.values()) == 300


def test_the_report_names_the_skipped_intersections_and_why():
    from audit.report.render import render_html
    from audit.runner import audit_model

    df = _many_groups_frame().drop(columns="pred")
    df["y"] = np.where(df["y"] == 1, "yes", "no")
    report = audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), df, target="y", positive_label="yes",
                         sensitive=["a", "b"], methods=["fairness"],
                         method_options={"fairness": {**FAST, "max_groups": 20}})
    html = render_html(report)
    assert "Intersections not analysed" in html
    assert "and of their intersections" not in html  # none was analysed
    assert f"a × b: {df.groupby(['a', 'b']).ngroups} groups, more than max_groups = 20" in html


def test_the_same_intersection_listed_twice_in_any_order_is_a_config_error():
    """[["sex", "race"], ["race", "sex"]] would analyse one family twice (and count its tests
    twice): refused, naming both spellings."""
    from audit.methods.fairness import attribute_sets

    cfg = FairnessConfig(intersections=(("sex", "race"), ("race", "sex")))
    with pytest.raises(InvalidConfigError, match=r"\['race', 'sex'\] and \['sex', 'race'\].*once"):
        attribute_sets(["sex", "race"], cfg)
    assert attribute_sets(["sex", "race"], FairnessConfig(intersections=(("sex", "race"),))) == [
        ("sex",), ("race",), ("sex", "race")]


# ---- regression gaps make findings, worded in regression quantities ----------------------------


def _regression_frame(gap: float, n: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": np.repeat(["A", "B"], n), "x": 0.0})
    df["y"] = rng.normal(100, 50, 2 * n)
    df["pred"] = df.y + rng.normal(0, 60, 2 * n) + np.where(df.g == "A", gap, 0.0)
    return df


def test_a_planted_regression_gap_makes_a_finding_in_regression_words():
    """The outside trial's case: a mean-error gap of about 25 with a Holm p near 0.03 made no
    finding, because only demographic parity and equalized odds were read for findings."""
    cfg = {**FAST, "n_permutations": 199}
    df = _regression_frame(gap=25.3, seed=3)
    r = run(df, task="regression", n_permutations=199)
    d = r.attributes["g"].disparities["mean_error_difference"]
    assert d.significance == "significant after correction"
    found = Fairness().findings(r, FairnessConfig(**cfg))
    texts = [f.text for f in found if f.level == "warning"]
    assert any(t.startswith("Mean errors (prediction − true value) differ between groups of g: "
                            "mean error difference") for t in texts), texts
    for f in found:
        for word in ("TPR", "FPR", "Selection rate", "Error rates"):
            assert word not in f.text
        if f.level == "info":  # raw p small only: no claim that groups differ
            assert "differ between" not in f.text and f.text.startswith("The observed ")


@pytest.mark.slow
def test_no_regression_gap_makes_a_warning_at_most_at_the_tests_level():
    """No gap in any of the three regression quantities: a warning (significant after Holm over
    the three) comes at most at rate alpha = 0.05; 300 data sets, 3 binomial SE of slack."""
    cfg = FairnessConfig(**{**FAST, "n_bootstrap": 0})
    reps = 300
    warned = 0
    for seed in range(reps):
        r = run(_regression_frame(gap=0.0, n=60, seed=seed), task="regression", n_bootstrap=0)
        warned += any(f.level == "warning" for f in Fairness().findings(r, cfg))
    assert warned / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)


def _skewed_small_group_frame(seed: int) -> pd.DataFrame:
    """The outside statistician's regime: 30 rows whose errors are centred log-normal beside
    1,000 rows of normal errors with the same mean error (0) and the same MAE."""
    rng = np.random.default_rng(seed)
    m = np.exp(0.5)
    big = np.random.default_rng(0).lognormal(0, 1, 1_000_000) - m
    sd = np.mean(np.abs(big)) / np.sqrt(2 / np.pi)
    err = np.concatenate([rng.lognormal(0, 1, 30) - m, rng.normal(0, sd, 1000)])
    y = rng.normal(0, 1, 1030)
    return pd.DataFrame({"g": np.repeat(["S", "L"], [30, 1000]), "y": y, "pred": y + err, "x": 0.0})


def test_a_warning_beside_a_small_group_states_the_tests_hypothesis_and_measured_false_rate():
    cfg = FairnessConfig(**{**FAST, "n_bootstrap": 0})
    for seed in range(40):
        r = run(_skewed_small_group_frame(seed), task="regression", n_bootstrap=0, n_permutations=199)
        warnings = [f.text for f in Fairness().findings(r, cfg) if f.level == "warning"]
        if warnings:
            break
    assert warnings, "no false warning in 40 data sets (measured rate 0.135)"
    assert all("exact only when the groups' errors have the same distribution" in w
               and "under 100 rows (S)" in w and "0.135" in w for w in warnings), warnings
    r = run(_regression_frame(gap=40.0, n=150, seed=1), task="regression", n_bootstrap=0)
    big = [f.text for f in Fairness().findings(r, cfg) if f.level == "warning"]
    assert big and not any("same distribution" in w for w in big)  # no caveat for 150-row groups


@pytest.mark.slow
def test_false_warning_rate_for_a_small_skewed_group_is_the_one_the_report_states():
    """The report states 0.135 (1,000 data sets) for this regime, where shuffling group labels
    tests identical distributions rather than equal means; 300 data sets must agree with it
    within 3 binomial SE, and stay above the nominal 0.05 (or the statement must change)."""
    cfg = FairnessConfig(**{**FAST, "n_bootstrap": 0})
    reps = 300
    warned = sum(any(f.level == "warning" for f in Fairness().findings(
        run(_skewed_small_group_frame(100 + s), task="regression", n_bootstrap=0, n_permutations=199), cfg))
        for s in range(reps))
    se = np.sqrt(0.135 * 0.865 / reps)
    assert abs(warned / reps - 0.135) <= 3 * se, warned / reps


# ---- favourable outcome: adverse decisions read the right way ---------------------------------


def _risk_frame() -> pd.DataFrame:
    """COMPAS-like decisions only: "high" risk (the positive label) is the adverse decision.
    Group A: 100 rows, 60 "high"; group B: 100 rows, 30 "high". Favourable ("low") rates:
    A 0.4, B 0.7, so the disparate impact on the favourable outcome is 0.4 / 0.7 (A fails the
    four-fifths rule), while on the selection of "high" it would be 0.3 / 0.6 = 0.5 for B."""
    df = planted_frame()
    return df.assign(y=np.where(df.y == 1, "high", "low"), pred=np.where(df.pred == 1, "high", "low"))


def test_favourable_negative_class_makes_disparate_impact_read_the_favourable_rate():
    for option in ({"favourable_label": "low"}, {"favourable": "negative"}):
        r = run(_risk_frame(), positive="high", **option)
        res = r.attributes["g"]
        assert r.favourable == "negative" and r.favourable_label == "low"
        d = res.disparities
        assert d["disparate_impact_ratio"].value == pytest.approx(0.4 / 0.7)
        assert d["demographic_parity_ratio"].value == pytest.approx(0.4 / 0.7)
        assert d["demographic_parity_difference"].value == pytest.approx(0.3)  # symmetric
        assert res.impact_ratios == pytest.approx({"A": 0.4 / 0.7, "B": 1.0})
        assert res.four_fifths_fail == ("A",)
        assert "favourable outcome (low)" in d["disparate_impact_ratio"].label
        # its interval is the MOVER-R interval of the favourable counts (40/100 vs 70/100)
        e = d["disparate_impact_ratio"].estimate
        assert e.lower < 0.4 / 0.7 < e.upper < 0.8
        a = res.groups[0]
        assert a.metrics["favourable_rate"].value == pytest.approx(0.4)
        assert a.metrics["selection_rate"].value == pytest.approx(0.6)  # still the "high" rate
        assert r.labels["favourable_rate"] == "favourable outcome rate (low)"
        found = [f.text for f in Fairness().findings(r, FairnessConfig(**FAST))]
        assert any("Four-fifths rule: the rate of the favourable outcome (low) of A (g) is below 80% of "
                   "the group with the highest rate's (point estimate)." in t for t in found), found
    # with a reference group, the finding names it
    r = run(_risk_frame(), positive="high", reference={"g": "A"})
    found = [f.text for f in Fairness().findings(r, FairnessConfig(**FAST))]
    assert any("of B (g) is below 80% of the reference group's (A)" in t for t in found), found
    # the default reads the positive label as favourable: B fails on the "high" rate
    r = run(_risk_frame(), positive="high")
    assert r.attributes["g"].disparities["disparate_impact_ratio"].value == pytest.approx(0.5)
    assert r.attributes["g"].four_fifths_fail == ("B",) and r.favourable_label is None


def test_favourable_options_are_checked_against_the_classes_and_the_task():
    with pytest.raises(InvalidConfigError, match="Did you mean 'low'"):
        run(_risk_frame(), positive="high", favourable_label="lo")
    with pytest.raises(InvalidConfigError, match="Set only one of them"):
        run(_risk_frame(), positive="high", favourable_label="high", favourable="negative")
    df = planted_frame().assign(y=lambda d: d.y.astype(float), pred=lambda d: d.pred.astype(float))
    with pytest.raises(InvalidConfigError, match="binary classifiers"):
        run(df, task="regression", favourable="negative")


def test_favourable_outcome_is_named_in_the_report(tmp_path):
    from audit.config import AuditPlan
    from audit.report.render import render_html
    from audit.runner import run_audit

    _risk_frame().to_csv(tmp_path / "decisions.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        'name = "risk"\n[model]\npredictions = "pred"\n[data]\npath = "decisions.csv"\n'
        'target = "y"\npositive_label = "high"\nsensitive = ["g"]\n'
        '[methods.fairness]\nn_bootstrap = 0\nn_permutations = 0\nfavourable_label = "low"\n', encoding="utf-8")
    plan = AuditPlan.load(tmp_path / "audit.toml").with_overrides(methods=("fairness",))
    html = " ".join(render_html(run_audit(plan)).split())
    assert "favourable outcome: <strong>low</strong>" in html
    assert "Disparate impact (rate of the favourable outcome (low) relative to" in html


# ---- counts, not MetricFrame cells (issue 17): fairlearn stays the cross-check ----------------


def test_every_group_rate_and_regression_mean_equals_fairlearns_metricframe():
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_negative_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    rng = np.random.default_rng(7)
    n = 3000
    df = pd.DataFrame({"g": rng.choice(["b", "a", "c"], n, p=[.5, .3, .2]),
                       "h": rng.choice(["x", "y"], n), "x": 0.0})
    df["y"] = (rng.random(n) < np.where(df.g == "a", .3, .5)).astype(int)
    df["pred"] = np.where(rng.random(n) < .75, df.y, 1 - df.y)
    r = run(df, sensitive=("g", "h"))
    funcs = {"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
             "fnr": false_negative_rate, "tnr": true_negative_rate, "accuracy": accuracy_score,
             "balanced_accuracy": balanced_accuracy_score}
    for key, cols in (("g", ["g"]), ("g*h", ["g", "h"])):
        mf = MetricFrame(metrics=funcs, y_true=df.y, y_pred=df.pred, sensitive_features=df[cols]).by_group
        for row in r.attributes[key].groups:
            idx = tuple(row.group.split(" × ")) if len(cols) > 1 else row.group
            for k in funcs:
                assert row.metrics[k].value == pytest.approx(float(mf.loc[idx, k]), abs=1e-12), (key, row.group, k)
    reg = df.assign(y=rng.normal(size=n), pred=rng.normal(size=n))
    rr = run(reg, task="regression", n_permutations=0)
    mf = MetricFrame(metrics={"mean_prediction": lambda t, p: np.mean(p), "mean_error": lambda t, p: np.mean(p - t),
                              "mae": lambda t, p: np.mean(np.abs(p - t))},
                     y_true=reg.y, y_pred=reg.pred, sensitive_features=reg.g).by_group
    for row in rr.attributes["g"].groups:
        for k in ("mean_prediction", "mean_error", "mae"):
            assert row.metrics[k].value == pytest.approx(float(mf.loc[row.group, k]), abs=1e-12)


def test_what_if_sample_keeps_every_group_and_weights_back_to_their_sizes():
    from audit.methods.fairness import what_if_sample

    sizes = np.array([90_000, 9_000, 40])
    take = what_if_sample(sizes, 10_000)
    assert take.tolist() == [9088, 909, 40]  # proportional (ceil), at least 500 or all rows
    # weights n_g / k_g restore each group's share: the weighted mean of a per-group constant is exact
    value = np.array([0.9, 0.5, 0.1])
    assert np.average(value, weights=take * (sizes / take)) == pytest.approx(np.average(value, weights=sizes))
    assert what_if_sample(np.array([3000, 2000]), 10_000).tolist() == [3000, 2000]


def test_what_if_on_many_rows_is_fitted_on_a_stated_sample():
    rng = np.random.default_rng(2)
    n = 6000
    df = pd.DataFrame({"g": rng.choice(["A", "B"], n), "x": 0.0})
    df["y"] = (rng.random(n) < .4).astype(int)
    df["pred"] = np.clip(df.y * .3 + rng.random(n) * .7 + np.where(df.g == "A", .1, 0), 0, 1)
    r = run(df, what_if=True, what_if_rows=2000)
    w = r.attributes["g"].what_if[0]
    assert w.error is None and w.rows_total == n and 2000 <= w.rows_used < n
    assert w.disparity_after is not None and w.disparity_after < w.disparity_before


# ---- AUC: per-group intervals and the AUC gap without a bootstrap (outside simulation, stat3) ----

def scored_frame(spec, rng):
    """Calibrated scores per group: (name, rows, beta a, beta b); y ~ Bernoulli(score)."""
    parts = []
    for name, n, a, b in spec:
        s = rng.beta(a, b, n)
        parts.append(pd.DataFrame({"g": name, "y": (rng.random(n) < s).astype(int), "pred": s}))
    df = pd.concat(parts, ignore_index=True)
    df["x"] = 0.0
    return df


def test_group_auc_interval_is_the_van_dantzig_interval_of_its_rows_and_stays_within_0_1():
    """Each group's AUC interval is audit.stats.auc.auc_interval of the group's own rows (it was a
    re-centred bootstrap whose upper bound exceeded 1 in 2 × 15 calibrated rows: auc_above1.py),
    for 40 data sets of two 15-row groups."""
    from audit.stats.auc import AUC_INTERVAL, auc_interval, score_table

    for seed in range(40):
        df = scored_frame([("a", 15, 2, 2), ("b", 15, 2, 2)], np.random.default_rng(seed))
        r = run(df, min_group_size=5, n_bootstrap=0)
        for row in r.attributes["g"].groups:
            e = row.metrics["auc"]
            m = (df.g == row.group).to_numpy()
            table = score_table(df.pred[m].to_numpy(), df.y[m].to_numpy())
            if table[:, 1].sum() < 5 or table[:, 0].sum() < 5:
                assert e.lower is None  # not simulated below 5 rows of a class: no interval
                continue
            a, lo, hi = auc_interval(table, 0.95)
            assert (e.value, e.lower, e.upper) == pytest.approx((float(a), float(lo), float(hi)), abs=1e-12)
            assert 0 <= e.lower <= e.value <= e.upper <= 1 and e.method == AUC_INTERVAL


def test_auc_gap_with_a_group_too_thin_for_its_interval_is_insufficient_never_a_pass():
    """make_drop.py: group C (40 rows, 2 positives scored low, AUC 0.05) beside two groups of 400
    at AUC about 0.76. The bootstrap dropped C (its resamples lacked positives), gave the interval
    0.000–0.086 around a point estimate of 0.718 and passed `auc_difference <= 0.30`. Now C's AUC
    has no interval, the gap's upper bound is 1, its interval holds the point estimate, the note
    names C and the gate says insufficient evidence."""
    from audit.gate import GateRule, evaluate

    rng = np.random.default_rng(7)
    df = scored_frame([("A", 400, 2, 2), ("B", 400, 2, 2)], rng)
    c = pd.DataFrame({"g": "C", "y": [0] * 38 + [1, 1], "pred": np.r_[rng.uniform(0.2, 1.0, 38), 0.1, 0.25],
                      "x": 0.0})
    r = run(pd.concat([df, c], ignore_index=True))
    res = r.attributes["g"]
    d = res.disparities["auc_difference"]
    assert d.value > 0.6 and d.estimate.lower <= d.value <= d.estimate.upper == 1.0
    assert d.excluded_undefined == ("C",) and "fewer than 5" in d.undefined_why[0]
    assert res.groups[2].metrics["auc"].value < 0.1 and res.groups[2].metrics["auc"].lower is None
    assert any("AUC without an interval for C" in n for n in res.notes)
    v = evaluate([GateRule("fairness.g.auc_difference", "g", "auc_difference", max=0.30)], r,
                 confidence=0.95).verdicts[0]
    assert v.status == "insufficient" and "C: AUC without an interval" in v.message


def test_auc_gap_interval_and_its_label_are_the_same_in_results_report_and_gate():
    """One label for the AUC difference's interval: the Estimate's method, the result's
    gap_interval (results.json) and the report; the gate verdict states a guaranteed bound (not
    'approximate'); the interval is auc_gap_interval of the groups' exact AUCs."""
    from audit.gate import GateRule, evaluate
    from audit.methods.fairness.binary import auc_gap_method
    from audit.stats.auc import auc_gap_interval

    df = scored_frame([("A", 600, 2, 2), ("B", 300, 0.5, 0.5)], np.random.default_rng(3))
    r = run(df)
    d = r.attributes["g"].disparities["auc_difference"]
    assert d.estimate.method == r.gap_interval == auc_gap_method(streamed=False)
    assert "Bonferroni" in r.gap_interval and "bootstrap" not in r.gap_interval
    aucs = [g.metrics["auc"].value for g in r.attributes["g"].groups]
    ks = [min(((df.g == n) & (df.y == 1)).sum(), ((df.g == n) & (df.y == 0)).sum()) for n in ("A", "B")]
    lo, hi = auc_gap_interval(np.array(aucs), np.array(ks), None, 0.95)
    assert (d.estimate.lower, d.estimate.upper) == pytest.approx((float(lo), float(hi)), abs=1e-12)
    assert json.loads(json.dumps(r.to_json()))["gap_interval"] == r.gap_interval
    v = evaluate([GateRule("fairness.g.auc_difference", "g", "auc_difference", max=0.9)], r, confidence=0.95).verdicts[0]
    assert v.status == "pass" and "at most 2.50%" in v.message and "approximate" not in v.message


def test_streamed_auc_interval_is_widened_by_the_histogram_bound():
    """From a score histogram alone the rows' exact AUC is known only within the stated bound, so
    each group's interval is the union over that range: it contains the interval of every AUC
    the rows could have, and its method says so."""
    from audit.methods.fairness.binary import _analyse_binary
    from audit.stats.auc import auc_bounds
    from audit.stats.counts import GroupTable, histogram_auc

    rng = np.random.default_rng(1)
    n = 300
    s = rng.random(n)
    y = (rng.random(n) < s).astype(np.int64)
    codes = np.repeat([0, 1], n // 2)
    table = GroupTable.from_rows(("a", "b"), codes, y, (s >= 0.5).astype(np.int64), s, n_bins=10)
    cfg = FairnessConfig(**{**FAST, "n_bootstrap": 0, "score_bins": 10, "calibration_bins": 10})
    res = _analyse_binary(["g"], table, cfg, None, np.random.default_rng(0))
    for g, row in enumerate(res.groups):
        e = row.metrics["auc"]
        by = table.by_outcome(g)
        a, bound = histogram_auc(by)
        lo, hi = auc_bounds(np.array(a), by.sum(axis=0).min(), 0.95, within=bound)
        assert bound > 0.01 and (e.lower, e.upper) == pytest.approx((float(lo), float(hi)))
        for exact in (a - bound, a, a + bound):
            x_lo, x_hi = auc_bounds(np.array(exact), by.sum(axis=0).min(), 0.95)
            assert e.lower <= x_lo + 1e-12 and x_hi <= e.upper + 1e-12
        assert "histogram" in e.method
    assert "histogram" in res.disparities["auc_difference"].estimate.method


def test_detectable_gap_is_not_available_when_the_pooled_rate_is_0_or_1_or_it_exceeds_1():
    """mdd/: TPR is 1 in both groups, so p(1 − p) = 0 and the formula said 0.000, which reads as
    "any gap would be detected". It is None with a note; the selection rate's stays a number.
    A detectable gap above 1 (no gap of rates is that large) is None with a note too."""
    r = run(frame_from_cells({"A": (150, 60, 0, 90), "B": (20, 8, 0, 12)}))
    res = r.attributes["g"]
    for row in res.groups:
        assert row.mdd["tpr"] is None and row.mdd["selection_rate"] > 0
    assert any("No detectable gap for TPR" in n and "is 1 in every judged group" in n for n in res.notes)
    # 1 positive: even a TPR gap of 1 is detected with less than 80 % probability (drop/ said 1.052)
    r = run(frame_from_cells({"A": (150, 60, 30, 60), "B": (150, 60, 30, 60), "C": (20, 18, 0, 1)}))
    res = r.attributes["g"]
    assert res.groups[2].mdd["tpr"] is None and 0 < res.groups[0].mdd["tpr"] <= 1
    assert any("No detectable gap for TPR in C: too few rows for even a gap of 1" in n for n in res.notes)


def test_regression_gap_verdicts_say_approximate_and_name_their_bootstrap():
    """Regression disparities keep the bootstrap (each pair's gap ± a max-|z| quantile × its
    bootstrap SD): one label for it everywhere, and the gate's verdict on it says approximate."""
    from audit.gate import GateRule, evaluate
    from audit.stats.bootstrap import BOOTSTRAP_DISPARITY

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(["A", "B"], 200), "x": 0.0})
    df["y"] = rng.normal(size=400)
    df["pred"] = df.y + rng.normal(0, 0.3, 400)
    r = run(df, task="regression")
    d = r.attributes["g"].disparities["mean_error_difference"]
    assert d.estimate.method == r.gap_interval == BOOTSTRAP_DISPARITY.format(B=FAST["n_bootstrap"])
    v = evaluate([GateRule("fairness.g.mean_error_difference", "g", "mean_error_difference", max=5.0)], r,
                 confidence=0.95).verdicts[0]
    assert v.status == "pass" and "approximate" in v.message


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "streamed"), [
    ([(15, 2, 2)] * 2, False),                          # upper bounds above 1 (auc_above1.py)
    ([(1000, 2, 2), (1000, 2, 2), (40, 0.4, 8)], True),  # coverage 0.415, point outside 185 / 400
    ([(60, 0.3, 0.3)] * 3, True),                       # zero gap near AUC 0.95
], ids=["2x15-memory", "rare-streamed", "3x60-streamed"])
def test_auc_gap_through_the_method_holds_its_level_where_the_bootstrap_failed(spec, streamed):
    """Through _analyse_binary (in memory: exact AUCs; streamed: the 1,000-bin histogram),
    calibrated scores (rows, beta a, b per group), 200 data sets per cell: the outside
    simulation's cells where the bootstrap failed. Each bound beyond the true gap at most 2.5 %
    plus 3 Monte Carlo SEs; the point estimate always inside; every AUC interval inside [0, 1]."""
    from audit.methods.fairness.binary import _analyse_binary
    from audit.methods.fairness.method import _exact_auc
    from audit.stats.bootstrap import weighted_auc
    from audit.stats.counts import GroupTable

    rng = np.random.default_rng(11)
    reps = 200
    band = 0.025 + 3 * np.sqrt(0.025 * 0.975 / reps)
    cfg = FairnessConfig(min_group_size=5, n_bootstrap=0, what_if=False)
    truth = []
    for _, a, b in spec:
        s = rng.beta(a, b, 1_000_000)
        truth.append(float(weighted_auc(s, rng.random(s.size) < s, np.ones(s.size))))
    gap = max(truth) - min(truth)
    levels = tuple(f"g{i}" for i in range(len(spec)))
    lo_err = hi_err = 0
    for _ in range(reps):
        s = np.concatenate([rng.beta(a, b, n) for n, a, b in spec])
        y = (rng.random(s.size) < s).astype(np.int64)
        g = np.repeat(np.arange(len(spec)), [n for n, _, _ in spec])
        table = GroupTable.from_rows(levels, g, y, (s >= 0.5).astype(np.int64), s, n_bins=1000)
        exact = None if streamed else _exact_auc(s, y, g, table.counts < 5)
        res = _analyse_binary(["g"], table, cfg, None, rng, exact_auc=exact)
        e = res.disparities["auc_difference"].estimate
        assert e.lower <= e.value <= e.upper
        for row in res.groups:
            a = row.metrics["auc"]
            assert a.lower is None or 0 <= a.lower <= a.value <= a.upper <= 1
        lo_err += e.lower > gap + 1e-3  # the truths are Monte Carlo values (SE about 3e-4)
        hi_err += e.upper < gap - 1e-3
    assert lo_err / reps <= band and hi_err / reps <= band, (lo_err, hi_err)
