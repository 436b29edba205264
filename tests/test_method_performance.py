"""Overall performance: values equal scikit-learn's, intervals as stated (simulated coverage),
decisions-only audits, and its place at the top of the report and in results.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import PredictionsAdapter
from audit.core.dataset import DatasetSpec, build_audit_data
from audit.core.method import RunContext
from audit.methods.performance import Performance, PerformanceConfig


def run(df: pd.DataFrame, task: str = "binary", seed: int = 0, **cfg):
    data = build_audit_data(df, DatasetSpec(target="y", predictions="pred", task=task, features=("x",)))
    return Performance().run(PredictionsAdapter(task=task, column="pred"), data,
                             PerformanceConfig(**cfg), RunContext.default(seed))


def scored(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < .3).astype(int)
    return pd.DataFrame({"y": y, "pred": np.clip(rng.normal(.3 + .3 * y, .2), 0, 1), "x": 0.0})


def test_binary_metrics_equal_scikit_learns_and_each_interval_holds_its_value():
    from sklearn import metrics as skm

    df = scored()
    r = run(df, n_bootstrap=300)
    y, s = df.y.to_numpy(), df.pred.to_numpy()
    yhat = (s >= .5).astype(int)
    m = r.metrics
    assert m["accuracy"].value == pytest.approx(skm.accuracy_score(y, yhat))
    assert m["balanced_accuracy"].value == pytest.approx(skm.balanced_accuracy_score(y, yhat))
    assert m["auc"].value == pytest.approx(skm.roc_auc_score(y, s))
    assert m["log_loss"].value == pytest.approx(skm.log_loss(y, s))
    assert m["brier"].value == pytest.approx(skm.brier_score_loss(y, s))
    for k, e in m.items():
        if k != "ece":
            assert e.lower <= e.value <= e.upper, k
    assert m["accuracy"].method == "Clopper–Pearson (exact)" and m["accuracy"].level == 0.95
    assert m["log_loss"].method == "percentile bootstrap, 300 resamples of the rows"
    assert m["auc"].method.startswith("Clopper–Pearson interval of the AUC as a proportion of min(")
    # known answer: the Clopper-Pearson limits are beta quantiles; AUC's with k·AUC successes of
    # k = min(positives, negatives) trials
    from scipy.stats import beta

    x, n = int((y == yhat).sum()), len(y)
    assert m["accuracy"].lower == pytest.approx(beta.ppf(.025, x, n - x + 1))
    assert m["accuracy"].upper == pytest.approx(beta.ppf(.975, x + 1, n - x))
    k = min(y.sum(), len(y) - y.sum())
    xa = m["auc"].value * k
    assert (m["auc"].lower, m["auc"].upper) == pytest.approx((beta.ppf(.025, xa, k - xa + 1),
                                                              beta.ppf(.975, xa + 1, k - xa)))
    assert r.interval_at("auc", .9)[0] == pytest.approx(beta.ppf(.05, xa, k - xa + 1))


def test_ece_has_no_interval_but_a_calibration_test_against_calibrated_outcomes():
    rng = np.random.default_rng(5)
    s = rng.random(400)
    calibrated = pd.DataFrame({"y": (rng.random(400) < s).astype(int), "pred": s, "x": 0.0})
    r = run(calibrated, n_bootstrap=499)
    e, t = r.metrics["ece"], r.calibration
    assert e.lower is None and e.upper is None and e.value > 0
    assert t.ece == pytest.approx(e.value) and t.n_sim == 499 and t.p_value > 0.05
    note = r.metric_notes["ece"]
    assert not e.has_interval and "biased upward" in note and f"p = {t.p_value:.3g}" in note
    overconfident = calibrated.assign(pred=np.where(s > .5, 1 - (1 - s) / 3, s / 3))
    assert run(overconfident, n_bootstrap=499).calibration.p_value == pytest.approx(1 / 500)
    assert run(calibrated, n_bootstrap=0).calibration is None


def test_decisions_only_audit_names_the_metrics_that_need_scores():
    df = scored()
    df["pred"] = (df.pred >= .5).astype(int)
    r = run(df)
    assert not r.has_scores and r.metrics["accuracy"].value is not None
    assert r.metrics["balanced_accuracy"].lower is not None
    for k in ("auc", "log_loss", "brier", "ece"):
        assert r.metrics[k].value is None and k in r.score_metrics
        assert "needs scores" in r.metrics[k].undefined_reason
    assert any("labels without scores" in n for n in r.notes)


def test_accuracy_of_one_keeps_an_interval_below_it():
    df = pd.DataFrame({"y": [0, 1] * 10, "pred": [0, 1] * 10, "x": 0.0})
    e = run(df).metrics["accuracy"]
    assert e.value == 1.0 and e.upper == 1.0 and e.lower == pytest.approx(0.025 ** (1 / 20))


def test_regression_and_multiclass_equal_scikit_learns():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    n = 800
    y = rng.normal(10, 3, n)
    reg = pd.DataFrame({"y": y, "pred": y + rng.normal(.5, 1, n), "x": 0.0})
    m = run(reg, "regression", n_bootstrap=200).metrics
    assert m["r2"].value == pytest.approx(skm.r2_score(reg.y, reg.pred))
    assert m["rmse"].value == pytest.approx(np.sqrt(skm.mean_squared_error(reg.y, reg.pred)))
    assert m["mae"].value == pytest.approx(skm.mean_absolute_error(reg.y, reg.pred))
    assert m["mean_error"].lower < 0.5 < m["mean_error"].upper
    # multiclass: macro one-vs-rest AUC from class probabilities
    from audit.core.adapter import ModelAdapter, Predictions

    k = 3
    yc = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[yc]
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

    class Fixed(ModelAdapter):
        def predictions(self, data):
            return Predictions(P.argmax(1), P)

    mc = pd.DataFrame({"y": np.array(["a", "b", "c"])[yc], "x": 0.0})
    data = build_audit_data(mc, DatasetSpec(target="y", task="multiclass", features=("x",)))
    r = Performance().run(Fixed(task="multiclass", n_classes=3), data, PerformanceConfig(n_bootstrap=200),
                          RunContext.default(0))
    m = r.metrics
    assert m["accuracy"].value == pytest.approx(skm.accuracy_score(yc, P.argmax(1)))
    assert m["balanced_accuracy"].value == pytest.approx(skm.balanced_accuracy_score(yc, P.argmax(1)))
    assert m["auc"].value == pytest.approx(skm.roc_auc_score(yc, P, multi_class="ovr", average="macro"))
    assert m["log_loss"].value == pytest.approx(skm.log_loss(yc, P))
    for key, e in m.items():
        if key != "ece":
            assert e.lower <= e.value <= e.upper, key
    # top-label ECE: the calibration test on (top probability, top class right)
    from audit.stats.calibration import binned_ece

    hit = (P.argmax(1) == yc).astype(int)
    assert m["ece"].value == pytest.approx(binned_ece(P.max(1), hit, 10)[0])
    assert m["ece"].lower is None and r.calibration.ece == pytest.approx(m["ece"].value)


def test_report_opens_with_performance_and_results_json_has_it(tmp_path):
    from audit.config import AuditPlan
    from audit.report.render import render_html
    from audit.runner import run_audit

    df = scored(400).assign(g=lambda d: np.where(np.arange(len(d)) % 2, "A", "B"))
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        'name = "p"\n[model]\npredictions = "pred"\n[data]\npath = "d.csv"\ntarget = "y"\n'
        'sensitive = ["g"]\n[methods.performance]\nn_bootstrap = 200\n'
        '[methods.fairness]\nn_bootstrap = 0\nn_permutations = 0\nwhat_if = false\n', encoding="utf-8")
    report = run_audit(AuditPlan.load(tmp_path / "audit.toml"))
    doc = json.loads(report.json_bytes())
    perf = doc["methods"]["performance"]["result"]
    assert perf["metrics"]["accuracy"]["method"] == "Clopper–Pearson (exact)"
    assert perf["labels"]["accuracy"] == "accuracy" and perf["metrics"]["accuracy"]["level"] == 0.95
    assert perf["confidence"] == 0.95 and perf["n_bootstrap"] == 200
    html = render_html(report)
    assert html.index("Overall performance") < html.index("Group fairness")
    assert "percentile bootstrap, 200 resamples of the rows" in html
    assert "Binned calibration error is biased upward" in html
    assert f"Monte Carlo p-value of \"the model is calibrated\" {perf['calibration']['p_value']:.3f}" in html
    assert any(f.method == "performance" and "accuracy" in f.text for f in report.findings)


def _coverage(reps: int, n: int, acc: float, seed: int, base: float = 0.4) -> dict[str, float]:
    """Share of simulated data sets whose interval holds the true value, per metric; and, per
    metric, the share marked unreliable (key ``<metric>_unreliable``)."""
    rng = np.random.default_rng(seed)
    hits: dict[str, int] = {}
    # scores: y ~ Bernoulli(base); s = Φ-free logistic separation; truth by a 10^6-row draw
    def draw(m, r):
        y = (r.random(m) < base).astype(int)
        correct = r.random(m) < acc
        pred = np.where(correct, y, 1 - y)
        s = np.clip(np.where(pred == 1, .5 + .5 * r.random(m), .5 * r.random(m)), 0, 1)
        return y, s
    from sklearn import metrics as skm

    yb, sb = draw(1_000_000, np.random.default_rng(12345))
    pb = (sb >= .5).astype(int)
    truth = {"accuracy": acc, "balanced_accuracy": skm.balanced_accuracy_score(yb, pb),
             "brier": float(np.mean((sb - yb) ** 2)), "auc": skm.roc_auc_score(yb, sb),
             "log_loss": skm.log_loss(yb, np.clip(sb, 1e-15, 1 - 1e-15))}
    for i in range(reps):
        y, s = draw(n, rng)
        if y.min() == y.max():
            continue
        r = run(pd.DataFrame({"y": y, "pred": s, "x": 0.0}), seed=seed + i, n_bootstrap=200)
        for k, t in truth.items():
            e = r.metrics[k]
            if e.lower is None:
                continue
            hits.setdefault(k, 0)
            hits[k] += e.lower <= t <= e.upper
            hits[f"{k}_unreliable"] = hits.get(f"{k}_unreliable", 0) + (k in r.unreliable)
    return {k: v / reps for k, v in hits.items()}


@pytest.mark.slow
@pytest.mark.parametrize("n, acc, base", [(20, 0.7, 0.4), (20, 0.99, 0.4), (100, 0.95, 0.4), (400, 0.995, 0.4),
                                          (400, 0.8, 0.4), (100, 0.8, 0.05), (400, 0.8, 0.05),
                                          (200, 0.9, 0.03)])
def test_interval_coverage_over_small_n_rare_positives_and_accuracy_near_one(n, acc, base):
    """Exact (Clopper-Pearson) accuracy, MOVER balanced accuracy and the AUC's interval
    (Clopper–Pearson of the AUC as a proportion of the smaller class) cover at least nominally
    (3 Monte Carlo SE of slack) in every cell, rare positives and AUC near 1 included. The
    bootstrap intervals (log loss, Brier) are approximate: with 10 or more rows of each class and
    100 rows, at least 0.85 while the accuracy is at most 0.95. Below 10 rows of a class or 50
    rows they are far too narrow and must then be marked unreliable in most data sets (a data
    set's own counts decide, so not in all); the AUC's only below 5 rows of a class."""
    reps = 300
    cov = _coverage(reps, n, acc, seed=n + int(acc * 1000), base=base)
    slack = 3 * np.sqrt(.95 * .05 / reps)
    assert cov["accuracy"] >= .95 - slack, cov
    assert cov["balanced_accuracy"] >= .95 - slack, cov
    assert cov["auc"] >= .95 - slack, cov
    if min(base, 1 - base) * n < 10 or n < 50:
        for k in ("log_loss", "brier"):
            assert cov[f"{k}_unreliable"] >= .8, cov
    else:
        for k in ("auc", "log_loss", "brier"):
            assert cov[f"{k}_unreliable"] <= .05, cov
        assert cov["brier"] >= .85, cov
        if acc <= .95:
            assert cov["log_loss"] >= .85, cov


def _few_positives(k: int) -> pd.DataFrame:
    y = np.r_[np.ones(k, int), np.zeros(200 - k, int)]
    s = np.clip(np.r_[np.full(k, .7), np.full(200 - k, .2)] + np.linspace(-.1, .1, 200), 0, 1)
    return pd.DataFrame({"y": y, "pred": s, "x": 0.0})


def test_intervals_with_few_rows_of_a_class_are_marked_unreliable_in_table_and_finding():
    """The bootstrap intervals (log loss, Brier) below 10 rows of a class; the AUC's below 5,
    where its error rates were not simulated."""
    r = run(_few_positives(6), n_bootstrap=200)
    for k in ("log_loss", "brier"):
        assert "unreliable: 200 rows, 6 in the smallest class" in r.unreliable[k]
    assert "accuracy" not in r.unreliable and "auc" not in r.unreliable
    r = run(_few_positives(4), n_bootstrap=200)
    assert "unreliable: 4 in the smallest class" in r.unreliable["auc"]
    text = Performance().findings(r, PerformanceConfig())[0].text
    assert "unreliable: too few rows of a class" in text
    assert "auc" not in run(scored(400), n_bootstrap=200).unreliable


def test_scores_read_the_wrong_way_round_raise_an_alert_and_sound_scores_do_not():
    df = scored()
    sound = run(df, n_bootstrap=200)
    assert not [f for f in Performance().findings(sound, PerformanceConfig()) if f.level == "alert"]
    flipped = df.assign(pred=1 - df.pred)  # e.g. [model] classes given in the wrong order
    r = run(flipped, n_bootstrap=200)
    alerts = [f.text for f in Performance().findings(r, PerformanceConfig()) if f.level == "alert"]
    assert len(alerts) == 1 and "worse than chance" in alerts[0] and "positive_label" in alerts[0]
