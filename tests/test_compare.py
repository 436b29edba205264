"""audit compare / audit.compare_models: known answers, the gate, data mismatch, the report."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.compare import compare_models
from audit.compare.paired import Paired, compare_disparities, compare_performance
from audit.compare.options import CompareOptions, parse_compare
from audit.errors import InvalidConfigError
from audit.stats.paired import mcnemar, sign_flip_pvalue

FAST = "[methods.fairness]\nn_bootstrap = 200\nn_permutations = 99\nwhat_if = false\n"
COMPARE = "[compare]\nn_bootstrap = 400\nn_permutations = 199\n"


def planted(n: int = 20000, extra: int = 1000, seed: int = 1) -> pd.DataFrame:
    """Scores of a champion and of a challenger that equals it except for ``extra`` negatives
    of group g = "a" pushed over the threshold (a planted selection-rate gap in g only)."""
    rng = np.random.default_rng(seed)
    g = rng.choice(["a", "b"], n)
    h = rng.choice(["u", "v", "w"], n)
    x = rng.normal(size=n)
    y = (x + rng.normal(size=n) > 0).astype(int)
    sa = 1 / (1 + np.exp(-2 * x))
    sb = sa.copy()
    if extra:
        idx = rng.choice(np.flatnonzero((g == "a") & (sa < 0.5)), extra, replace=False)
        sb[idx] = 0.6
    return pd.DataFrame({"x": x, "g": g, "h": h, "y": y, "sa": sa, "sb": sb})


def write_pair(tmp_path, frame: pd.DataFrame, gate: str = "", *, champion: str = "sa",
               challenger: str = "sb", data_b: str = "d.csv") -> tuple:
    frame.to_csv(tmp_path / "d.csv", index=False)
    common = '[data]\npath = "{}"\ntarget = "y"\nsensitive = ["g", "h"]\n' + FAST
    a = tmp_path / "champion.toml"
    b = tmp_path / "challenger.toml"
    a.write_text(f'name = "champ"\n[model]\npredictions = "{champion}"\n' + common.format("d.csv"), encoding="utf-8")
    b.write_text(f'name = "chall"\n[model]\npredictions = "{challenger}"\n' + common.format(data_b) + COMPARE
                 + (f"[compare.gate]\n{gate}\n" if gate else ""), encoding="utf-8")
    return a, b


def compare_cli(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args), "--quiet", "--format", "html,json"])


GATE = ('"fairness.g.demographic_parity_difference" = { max_increase = 0.02 }\n'
        '"fairness.h.demographic_parity_difference" = { max_increase = 0.03 }\n'
        '"performance.accuracy" = { max_decrease = 0.05 }\n'
        '"performance.auc" = { max_decrease = 0.02 }\n')


def test_two_copies_of_one_model_give_zero_changes_intervals_at_zero_and_a_passing_gate(tmp_path):
    a, b = write_pair(tmp_path, planted(n=4000, extra=0), GATE)
    out = tmp_path / "out"
    res = compare_cli(a, b, "--out", out, "--junit", tmp_path / "j.xml")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    changes = list(doc["performance"].values()) + [c for a in doc["fairness"].values()
                                                    for c in a["disparities"].values()]
    assert len(changes) == 3 + 3 * 10
    for c in changes:
        assert c["change"]["value"] == 0.0 and c["p_value"] == 1.0
        if c["metric"] == "ece":  # binned ECE is biased: a test, never an interval (nor an interval method)
            assert c["change"]["lower"] is None and c["change"]["method"] is None
            assert "biased upward" in c["change"]["undefined_reason"]
            continue
        assert c["change"]["lower"] <= 0.0 <= c["change"]["upper"]
    assert doc["decisions"]["changed"] == 0 and doc["mcnemar"]["p_value"] == 1.0
    assert doc["decisions"]["group"] == "all rows"
    negative_zero = re.compile(r"[-−]0\.0+(?![0-9])")  # never "-0.000", in any output
    for text in ((out / "report.html").read_text(), (out / "results.json").read_text(), res.output):
        assert not negative_zero.search(text), negative_zero.search(text)
    assert doc["gate"]["outcome"] == "pass" and doc["gate"]["counts"]["pass"] == 4
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "0"


def test_a_planted_disparity_in_one_attribute_is_caught_by_its_rule_and_by_no_other(tmp_path):
    a, b = write_pair(tmp_path, planted(), GATE)
    res = compare_cli(a, b, "--out", tmp_path / "out", "--json")
    assert res.exit_code == 1, res.output
    verdicts = {v["key"]: v for v in json.loads(res.output)["gate"]["verdicts"]}
    assert verdicts["fairness.g.demographic_parity_difference"]["status"] == "breach"
    assert verdicts["fairness.g.demographic_parity_difference"]["lower"] > 0.02
    for key in ("fairness.h.demographic_parity_difference", "performance.accuracy", "performance.auc"):
        assert verdicts[key]["status"] == "pass", verdicts[key]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    by_group = {g["group"]: g for g in doc["fairness"]["g"]["groups"]}
    assert by_group["a"]["changed"] == by_group["a"]["to_positive"] == 1000 and by_group["b"]["changed"] == 0
    assert doc["decisions"]["changed"] == 1000
    # the planted gap: 1000 extra positive decisions among group a's rows
    dp = doc["fairness"]["g"]["disparities"]["demographic_parity_difference"]
    n_a = by_group["a"]["rows"]
    assert abs(dp["challenger"] - dp["champion"] - dp["change"]["value"]) < 1e-12
    assert abs(dp["change"]["value"] - 1000 / n_a) <= dp["champion"] + 1e-12  # |gap + 0.1| − |gap|


def test_one_config_with_two_model_tables_compares_like_two_configs(tmp_path):
    frame = planted(n=4000, extra=200)
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = tmp_path / "pair.toml"
    cfg.write_text('name = "pair"\n[models.champion]\npredictions = "sa"\n[models.challenger]\npredictions = "sb"\n'
                   '[data]\npath = "d.csv"\ntarget = "y"\nsensitive = ["g", "h"]\n' + FAST + COMPARE
                   + "[compare.gate]\n" + GATE, encoding="utf-8")
    res = compare_cli(cfg, "--out", tmp_path / "one")
    assert res.exit_code in (1, 3), res.output
    a, b = write_pair(tmp_path, frame, GATE)
    compare_cli(a, b, "--out", tmp_path / "two")
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["performance"] == two["performance"] and one["fairness"] == two["fairness"]


def test_configs_on_different_rows_exit_2_and_write_nothing(tmp_path):
    frame = planted(extra=0)
    other = frame.copy()
    other.loc[7, "y"] = 1 - other.loc[7, "y"]  # one outcome differs
    other.to_csv(tmp_path / "other.csv", index=False)
    a, b = write_pair(tmp_path, frame, data_b="other.csv")
    res = compare_cli(a, b, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert "not audited on the same rows" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()
    shuffled = frame.iloc[::-1]
    shuffled.to_csv(tmp_path / "other.csv", index=False)
    res = compare_cli(a, b, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "differ in content or order" in res.output


@pytest.mark.parametrize("gate, fragment", [
    ('"fairness.sx.demographic_parity_difference" = { max_increase = 0.02 }', "does not cover"),
    ('"fairness.g.demographic_parity_diff" = { max_increase = 0.02 }', "demographic_parity_difference"),
    ('"fairness.g.auc_ratio" = { max_increase = 0.02 }', "Disparities:"),
    ('"performance.ece" = { max_increase = 0.01 }', "Performance metrics: accuracy, auc"),
    ('"performance.auc" = { max = 0.02 }', "unknown option 'max'"),
    ('"performance.auc" = { max_decrease = -0.01 }', "at least 0"),
    ('"model.auc" = { max_decrease = 0.01 }', "Unknown [compare.gate] key"),
    ('"counterfactuals.g.c.median_cost_change" = { max_increase = 0.5 }', "group 'c' of 'g', which does not occur"),
])
def test_a_malformed_compare_gate_exits_2_before_any_audit(tmp_path, gate, fragment):
    a, b = write_pair(tmp_path, planted(n=400, extra=0), gate)
    res = compare_cli(a, b, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert fragment in res.output
    assert not (tmp_path / "out").exists()


def test_the_html_report_shows_every_change_and_escapes_user_strings(tmp_path):
    frame = planted(n=4000, extra=400)
    frame["g"] = frame["g"].map({"a": "<script>alert(1)</script>", "b": "b&b"})
    frame.loc[frame["h"] == "w", "y"] = 0  # group w of h: one outcome class, so no AUC
    gate = '"fairness.g.demographic_parity_difference" = { max_increase = 0.02 }\n'
    a, b = write_pair(tmp_path, frame, gate)
    res = compare_cli(a, b, "--out", tmp_path / "out")
    assert res.exit_code == 1, res.output
    html = (tmp_path / "out" / "report.html").read_text()
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "b&amp;b" in html
    for section in ("Non-inferiority gate: fail", "Decisions that change", "Disparities", "What drives the decisions"):
        assert section in html
    dp = doc["fairness"]["g"]["disparities"]["demographic_parity_difference"]["change"]
    assert f"{dp['value']:,.4f}" in html and f"{dp['lower']:,.4f}" in html
    assert doc["data"]["row_sha256"] in html
    assert doc["mcnemar"]["p_value"] < 0.001  # a p-value below 0.001 is "p < 0.001"
    assert "equal accuracy: p &lt; 0.001" in html and "p = &lt;" not in html
    left_out = doc["fairness"]["h"]["disparities"]["auc_difference"]["excluded_undefined"]
    assert left_out == ["w (one outcome class only: no AUC)"]
    assert "its interval and its test: w (one outcome class only: no AUC)." in html
    assert not re.search(r"\bnan\b", html, re.IGNORECASE)
    assert "percentile bootstrap is approximate" in html and "6.5% for AUC" in html


def test_compare_models_is_the_python_twin_and_compares_importances():
    from sklearn.linear_model import LogisticRegression

    from audit import compare_models
    from audit.core.dataset import Encoding

    rng = np.random.default_rng(3)
    n = 1200
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(5)})
    frame["g"] = rng.choice(["a", "b"], n)
    frame["y"] = (frame.x0 + 0.5 * frame.x1 + rng.normal(size=n) > 0).astype(int)
    features = [f"x{i}" for i in range(5)]
    X = Encoding.fit(frame[features]).encode(frame)  # what compare_models hands the models
    champion = LogisticRegression().fit(X, frame.y)
    challenger = LogisticRegression().fit(X[:, ::-1] * [1, 1, 1, 1, 1], frame.y)  # trained on reversed columns
    challenger.coef_ = challenger.coef_[:, ::-1].copy()  # the same model with its columns put back
    challenger.coef_[0, 0] *= 0.3  # ...then leaning less on x0
    r = compare_models(champion, challenger, frame, target="y", sensitive=["g"], features=features,
                       methods=["performance", "shap"], method_options={"shap": {"n_rows": 150, "n_bootstrap": 200}},
                       compare={"n_bootstrap": 200, "n_permutations": 99,
                                "gate": {"performance.accuracy": {"max_decrease": 0.2}}})
    acc = r.performance["accuracy"]
    assert acc.change.value == pytest.approx(acc.challenger - acc.champion)
    pa, pb = champion.predict(X), challenger.predict(X)
    assert r.decisions.changed == int(np.sum(pa != pb))
    assert r.decisions.to_positive == int(np.sum((pa == 0) & (pb == 1)))
    imp = r.importance["shap"]
    assert imp.features == tuple(features) and imp.paired_rows == 150
    assert imp.spearman.lower is not None and imp.spearman.lower <= imp.spearman.value <= imp.spearman.upper
    # x0 dominates the champion; the challenger leans on it less, so its share of importance drops
    assert imp.champion[0] / sum(imp.champion) > imp.challenger[0] / sum(imp.challenger)
    assert r.gate is not None and r.gate.verdicts[0].status == "pass"
    assert json.loads(r.json_bytes())["schema"] == "audit-suite/compare@1"


def test_paired_statistics_on_hand_made_decisions():
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0] * 10)
    a = y.copy()
    b = y.copy()
    b[:8] = 1 - b[:8]  # the challenger errs on the first 8 rows only
    p = Paired(y, a, b, None, None)
    opts = CompareOptions(n_bootstrap=300, n_permutations=999)
    perf, mc = compare_performance(p, opts, np.random.default_rng(0))
    assert perf["accuracy"].change.value == pytest.approx(-8 / 80)
    assert (mc.champion_only, mc.challenger_only) == (8, 0)
    assert mc.p_value == pytest.approx(2 * 0.5 ** 8) and "exact" in mc.method
    # every swap of the 8 discordant rows is equally likely: P(|T*| >= 8/80) = 2 / 2^8
    assert perf["accuracy"].p_value == pytest.approx(2 / 256, abs=0.012)


def test_sign_flip_pvalue_counts_the_observed_statistic_and_ties():
    assert sign_flip_pvalue(np.array([0.5]), np.array([[0.5], [-0.5], [0.1], [0.0]]))[0] == pytest.approx(3 / 5)
    assert np.isnan(sign_flip_pvalue(np.array([np.nan]), np.zeros((4, 1))))[0]


def test_mcnemar_switches_to_the_chi_square_with_many_discordant_rows():
    a = np.r_[np.ones(40), np.zeros(20)].astype(bool)
    b = ~a
    r = mcnemar(a, b)
    assert r.method.startswith("chi-square") and r.statistic == pytest.approx((20 - 1) ** 2 / 60)


def test_compare_options_are_validated():
    with pytest.raises(InvalidConfigError, match="n_bootstrap"):
        parse_compare({"n_bootstrap": 5})
    with pytest.raises(InvalidConfigError, match="renamed 'n_bootstrap'"):
        parse_compare({"n_boot": 500})
    for key, huge in (("calibration_bins", 10**9), ("n_bootstrap", 10**8), ("n_permutations", 10**8)):
        with pytest.raises(InvalidConfigError, match=key):  # bounded: memory and time
            parse_compare({key: huge})
    with pytest.raises(InvalidConfigError, match=r"no option 'gates'. Did you mean 'gate'\?"):
        parse_compare({"gates": {}})
    with pytest.raises(InvalidConfigError, match="disparities"):
        parse_compare({"disparities": ["auc_ratio"]})
    with pytest.raises(InvalidConfigError, match=r"set it in \[methods.fairness\]"):
        parse_compare({"min_group_size": 5})


@pytest.mark.parametrize("option, value", [("confidence", 1.0), ("confidence", "high"), ("n_bootstrap", 50),
                                           ("n_permutations", 10), ("calibration_bins", 1), ("disparities", [])])
def test_compare_options_get_the_same_message_shape_as_every_method_option(option, value):
    """[compare] is validated by the declarative option bounds (OPTION_BOUNDS, Interval/Options/
    Either): "The 'x' option in [compare] must be <rule>. Got <value> instead."."""
    from audit.core.method import option_message

    with pytest.raises(InvalidConfigError) as err:
        parse_compare({option: value})
    text = str(err.value)
    assert text.startswith(f"The {option!r} option in [compare] must be ") and text.endswith(f"Got {value!r} instead.")
    if option == "confidence" and value == 1.0:  # the very rule every method's confidence has
        from audit.core.method import OPTION_BOUNDS

        assert text == option_message(option, OPTION_BOUNDS[option].rule(), value, section="[compare]")


def test_a_one_class_group_is_named_as_left_out_of_the_auc_gap_its_test_and_its_verdict_never_nan():
    from audit.compare.gate import judge, parse_compare_gate
    from audit.compare.results import Change
    from audit.stats.paired import auc_rows

    rng = np.random.default_rng(3)
    g = np.r_[["A"] * 400, ["B"] * 400, ["C"] * 60]
    y = np.r_[rng.integers(0, 2, 800), np.zeros(60, int)]  # C: negatives only, no AUC
    sa = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.3, g.size), 0, 1)
    sb = np.clip(sa + rng.normal(0, 0.05, g.size), 0, 1)
    p = Paired(y, (sa >= 0.5).astype(int), (sb >= 0.5).astype(int), sa, sb)
    gap = compare_disparities("g", g, p, ["auc_difference"], CompareOptions(n_bootstrap=200, n_permutations=99),
                              rng).disparities["auc_difference"]
    assert gap.excluded_undefined == ("C (one outcome class only: no AUC)",)
    a, b = (np.ptp([auc_rows(s[None, g == k], y[g == k])[0] for k in "AB"]) for s in (sa, sb))
    assert gap.champion == pytest.approx(a) and gap.challenger == pytest.approx(b)
    assert gap.change.lower is not None and gap.p_value is not None
    rules = parse_compare_gate({"fairness.g.auc_difference": {"max_increase": 0.5}}, sets=[("g",)])
    strict = judge(rules, {rules[0].key: gap}).verdicts[0]
    assert strict.status == "insufficient" and "left out: C (one outcome class only" in strict.message
    rules = parse_compare_gate({"fairness.g.auc_difference": {"max_increase": 0.5, "small_groups": "ignore"}},
                               sets=[("g",)])
    lenient = judge(rules, {rules[0].key: gap}).verdicts[0]
    assert lenient.status == "pass" and "over the other groups (left out: C" in lenient.message
    assert not any("nan" in str(v).lower() for v in (strict.message, lenient.message, gap))
    # one group left with both classes: no gap, and the message says why, not nan
    y2 = np.where(g == "B", 1, y)
    only = compare_disparities("g", g, dataclasses.replace(p, y=y2), ["auc_difference"],
                               CompareOptions(n_bootstrap=0, n_permutations=0), rng).disparities["auc_difference"]
    assert isinstance(only, Change) and only.change.value is None and "nan" not in only.change.undefined_reason
    assert "both outcomes" in only.change.undefined_reason and len(only.excluded_undefined) == 2


def test_a_verdict_on_a_bootstrap_performance_interval_says_it_is_approximate_with_the_simulated_error():
    from audit.compare.gate import judge, parse_compare_gate
    from audit.compare.paired import BOOTSTRAP_ONE_SIDED_ERROR

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 600)
    sa = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.3, y.size), 0, 1)
    sb = np.clip(sa + rng.normal(0, 0.1, y.size), 0, 1)  # dozens of rows change decision
    rules = parse_compare_gate({"performance.auc": {"max_decrease": 0.05},
                                "performance.accuracy": {"max_decrease": 0.05}}, sets=[])
    for b, exact_accuracy in ((sb, False), (sa.copy(), True)):
        p = Paired(y, (sa >= 0.5).astype(int), (b >= 0.5).astype(int), sa, b)
        perf, _ = compare_performance(p, CompareOptions(n_bootstrap=200, n_permutations=0), rng)
        for r, v in zip(rules, judge(rules, {r.key: perf[r.metric] for r in rules}).verdicts):
            assert v.status == "pass", v.message
            if r.metric == "accuracy" and exact_accuracy:
                # no discordant row: an exact Clopper-Pearson interval, whose bound does err at most 2.5%
                assert "at most 2.50% of the time" in v.message and "approximate" not in v.message
            else:
                assert perf[r.metric].change.method.startswith("paired percentile bootstrap")
                assert "approximate" in v.message and "at most 2.50%" not in v.message
                assert f"up to {BOOTSTRAP_ONE_SIDED_ERROR[r.metric]:.1%}" in v.message, v.message


def test_small_groups_are_left_out_and_the_gate_says_insufficient():
    rng = np.random.default_rng(0)
    g = np.r_[["a"] * 500, ["b"] * 500, ["c"] * 10]
    y = rng.integers(0, 2, g.size)
    a = rng.integers(0, 2, g.size)
    res = compare_disparities("g", g, Paired(y, a, a.copy(), None, None), ["demographic_parity_difference"],
                              CompareOptions(n_bootstrap=200, n_permutations=99), rng)
    assert res.too_small == ("c",)
    from audit.compare.gate import judge, parse_compare_gate

    rules = parse_compare_gate({"fairness.g.demographic_parity_difference": {"max_increase": 0.05}}, sets=[("g",)])
    verdict = judge(rules, {rules[0].key: res.disparities["demographic_parity_difference"]}).verdicts[0]
    assert verdict.status == "insufficient" and "too small" in verdict.message


def test_two_saved_reports_compare_like_their_configs_and_say_what_needs_the_models(tmp_path):
    frame = planted(n=4000, extra=200)
    a, b = write_pair(tmp_path, frame, GATE)
    for cfg in (a, b):  # both audits save their per-row predictions
        cfg.write_text(cfg.read_text().replace("[compare]", "[report]\nsave_predictions = true\n[compare]")
                       if "[compare]" in cfg.read_text() else cfg.read_text() + "[report]\nsave_predictions = true\n")
    for cfg, out in ((a, "ra"), (b, "rb")):
        res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / out), "--quiet", "--format", "json",
                                       "--methods", "performance,fairness"])
        assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "ra" / "results.json").read_text())["predictions"]
    assert saved["file"] == "predictions.parquet" and saved["rows"] == 4000
    res = compare_cli(tmp_path / "ra" / "results.json", tmp_path / "rb", b, "--out", tmp_path / "cmp")
    live = compare_cli(a, b, "--out", tmp_path / "live", "--methods", "performance,fairness")
    assert res.exit_code == live.exit_code == 1, res.output
    from_saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    from_models = json.loads((tmp_path / "live" / "results.json").read_text())
    assert from_saved["data"]["row_sha256"] == saved["rows_sha256"]
    for key in ("performance", "mcnemar", "decisions", "fairness", "gate"):
        assert from_saved[key] == from_models[key], key
    assert any("predictions.parquet does not hold the features" in n for n in from_saved["limitations"])


def test_a_saved_report_without_predictions_cannot_be_compared(tmp_path):
    a, b = write_pair(tmp_path, planted(n=400, extra=0))
    for cfg, out in ((a, "ra"), (b, "rb")):
        CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / out), "--quiet", "--format", "json",
                                 "--methods", "performance"])
    res = compare_cli(tmp_path / "ra", tmp_path / "rb", "--out", tmp_path / "cmp")
    assert res.exit_code == 2 and "save_predictions = true" in res.output
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("groups, rates, ref", [(2, 1, None), (3, 2, None), (4, 1, 0), (5, 2, None)])
def test_projection_interval_is_the_range_of_the_change_over_the_box(groups, rates, ref):
    """Every sampled point of the box (vertices included) lies in the interval, and the
    interval's ends are reached up to the sampling's resolution."""
    from audit.stats.paired import projection_interval, spread_pieces

    rng = np.random.default_rng(groups * 10 + rates)
    d = groups * rates
    L = spread_pieces(groups, rates, ref)
    for _ in range(5):
        lo_r = rng.uniform(0.1, 0.6, d)
        hi_r = lo_r + rng.uniform(0, 0.1, d)
        lo_c = rng.uniform(-0.1, 0.05, d)
        hi_c = lo_c + rng.uniform(0, 0.08, d)
        lo, hi = projection_interval(L, lo_r, hi_r, lo_c, hi_c)
        u = rng.random((200_000, 2 * d))
        u[:50_000] = u[:50_000] > 0.5  # vertices
        r = lo_r + u[:, :d] * (hi_r - lo_r)
        c = lo_c + u[:, d:] * (hi_c - lo_c)
        change = (L @ (r + c).T).max(axis=0) - (L @ r.T).max(axis=0)
        assert lo - 1e-9 <= change.min() and change.max() <= hi + 1e-9
        assert change.min() - lo < 0.01 and hi - change.max() < 0.01


def test_a_regression_task_is_refused_with_exit_2(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"g": rng.choice(["a", "b"], 200), "y": rng.normal(size=200), "pa": rng.normal(size=200),
                  "pb": rng.normal(size=200)}).to_csv(tmp_path / "d.csv", index=False)
    for name, col in (("a", "pa"), ("b", "pb")):
        (tmp_path / f"{name}.toml").write_text(f'[model]\npredictions = "{col}"\ntask = "regression"\n[data]\n'
                                               'path = "d.csv"\ntarget = "y"\nsensitive = ["g"]\n', encoding="utf-8")
    res = compare_cli(tmp_path / "a.toml", tmp_path / "b.toml", "--out", tmp_path / "out")
    assert res.exit_code == 2 and "binary classifiers" in res.output and not (tmp_path / "out").exists()


def test_a_group_too_small_to_judge_makes_the_gate_exit_3(tmp_path):
    frame = planted(n=4000, extra=0)
    frame.loc[:11, "g"] = "tiny"  # 12 rows: below min_group_size, left out and named
    a, b = write_pair(tmp_path, frame, '"fairness.g.demographic_parity_difference" = { max_increase = 0.05 }')
    res = compare_cli(a, b, "--out", tmp_path / "out", "--json")
    assert res.exit_code == 3, res.output
    verdict = json.loads(res.output)["gate"]["verdicts"][0]
    assert verdict["status"] == "insufficient" and "tiny" in verdict["message"]


def _saved_pair(tmp_path, n=400):
    a, b = write_pair(tmp_path, planted(n=n, extra=0))
    for cfg, out in ((a, "ra"), (b, "rb")):
        cfg.write_text(cfg.read_text() + "[report]\nsave_predictions = true\n")
        res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / out), "--quiet", "--format", "json",
                                       "--methods", "performance,fairness"])
        assert res.exit_code == 0, res.output
    return tmp_path / "ra", tmp_path / "rb"


def _rewrite(folder, frame=None, **doc_changes):
    """Change a saved report's predictions and/or results.json, keeping the recorded SHA-256 true."""
    import hashlib

    from audit.report.predictions import parquet_bytes

    doc = json.loads((folder / "results.json").read_text())
    if frame is not None:
        raw = parquet_bytes(frame)
        (folder / "predictions.parquet").write_bytes(raw)
        doc["predictions"]["sha256"] = hashlib.sha256(raw).hexdigest()
    for key, value in doc_changes.items():
        doc[key] = value
    (folder / "results.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("case", ["scores_over_1", "nan_score", "fewer_rows", "no_sensitive", "decisions_0_2",
                                  "not_parquet"])
def test_saved_predictions_are_held_to_the_live_checks_and_refused_with_exit_2(tmp_path, case):
    ra, rb = _saved_pair(tmp_path)
    frame = pd.read_parquet(ra / "predictions.parquet")
    if case == "scores_over_1":
        frame["score"] = frame["score"] * 50
    elif case == "nan_score":
        frame.loc[:4, "score"] = np.nan
    elif case == "fewer_rows":
        frame = frame.iloc[:100]
    elif case == "no_sensitive":
        frame = frame.drop(columns=[c for c in frame.columns if c.startswith("sensitive:")])
    elif case == "decisions_0_2":
        frame["decision"] = frame["decision"] * 2
    if case == "not_parquet":
        import hashlib

        (ra / "predictions.parquet").write_bytes(b"PAR1 not really")
        doc = json.loads((ra / "results.json").read_text())
        doc["predictions"]["sha256"] = hashlib.sha256(b"PAR1 not really").hexdigest()
        (ra / "results.json").write_text(json.dumps(doc))
    else:
        _rewrite(ra, frame)
    res = compare_cli(ra, rb, "--out", tmp_path / "cmp")
    assert res.exit_code == 2, res.output
    assert "predictions file" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "cmp").exists()
    text = " ".join(res.output.split())
    if case in ("scores_over_1", "nan_score", "decisions_0_2"):  # a bad value: its first row, counted from 1
        assert "(rows counted from 1, the header not counted)" in text, text
    if case == "nan_score":
        assert "'nan' in 5 row(s), first at row 1 " in text, text


@pytest.mark.parametrize("change", [{"name": "../../escaped"}, {"name": "/abs/escaped"},
                                    {"predictions_file": "../other/predictions.parquet"},
                                    {"predictions_file": "/dev/zero"}, {"seed": "abc"}, {"data": []}])
def test_a_saved_report_cannot_name_paths_outside_its_folder_or_break_the_comparison(tmp_path, change):
    ra, rb = _saved_pair(tmp_path)
    doc = json.loads((ra / "results.json").read_text())
    if "predictions_file" in change:
        doc["predictions"]["file"] = change["predictions_file"]
    elif "seed" in change:
        doc["provenance"]["seed"] = change["seed"]
    else:
        doc.update(change)
    (ra / "results.json").write_text(json.dumps(doc))
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        res = compare_cli(ra, rb)  # no --out: the default folder is reports/<names>
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and not (tmp_path / "reports").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before


def test_the_predictions_read_are_inputs_the_comparison_never_overwrites(tmp_path):
    ra, rb = _saved_pair(tmp_path)
    res = compare_cli(ra, rb, "--out", tmp_path / "cmp")
    assert res.exit_code == 0, res.output
    files = json.loads((tmp_path / "cmp" / "results.json").read_text())["provenance"]["files"]
    assert {f["role"] for f in files} >= {"champion predictions", "challenger predictions"}
    res = compare_cli(ra, rb, "--out", ra, "--overwrite")  # onto an input report: refused
    assert res.exit_code == 2 and (ra / "predictions.parquet").is_file()


def test_a_comparison_without_a_gate_says_nothing_was_judged_in_report_json_and_terminal(tmp_path):
    ra, rb = _saved_pair(tmp_path)
    res = compare_cli(ra, rb, "--out", tmp_path / "cmp")
    assert res.exit_code == 0, res.output
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "Non-inferiority gate: none" in html and "No gate rules: nothing was judged" in html
    assert "[compare.gate]" in html and "No gate rules: nothing was judged" in " ".join(res.output.split())
    doc = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert doc["gate"]["outcome"] == "no gate rules" and "[compare.gate]" in doc["gate"]["note"]


def test_the_comparison_report_renders_as_pdf(tmp_path):
    a, b = write_pair(tmp_path, planted(n=600, extra=0))
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--quiet",
                                   "--format", "pdf"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (tmp_path / "out" / "results.json").exists()


def test_saved_predictions_that_decompress_past_the_memory_budget_are_refused_before_reading(tmp_path,
                                                                                            monkeypatch):
    """The Parquet footer's estimate, not the file's size, is held to the budget: 400,000 rows of
    one repeated value take well under 1 MB on disk and tens of MB once read."""
    from audit.core.limits import ENV_VAR

    ra, rb = _saved_pair(tmp_path)
    frame = pd.read_parquet(ra / "predictions.parquet")
    big = frame.iloc[np.zeros(400_000, dtype=int)].reset_index(drop=True)
    big["row"] = 0
    _rewrite(ra, big)
    assert (ra / "predictions.parquet").stat().st_size < 1 << 20
    monkeypatch.setenv(ENV_VAR, "24MiB")
    res = compare_cli(ra, rb, "--out", tmp_path / "cmp")
    assert res.exit_code == 2, res.output
    assert "predictions.parquet" in res.output and "400,000 rows" in res.output and "memory budget" in res.output
    assert not (tmp_path / "cmp").exists()


def test_a_saved_report_mixed_with_a_config_or_alone_gets_a_message_naming_the_forms(tmp_path):
    ra, rb = _saved_pair(tmp_path)
    for args in ((ra, tmp_path / "champion.toml"), (ra / "results.json",)):
        res = compare_cli(*args, "--out", tmp_path / "cmp")
        assert res.exit_code == 2 and "two saved reports" in res.output and "is a saved report" in res.output
        assert "TOML" not in res.output.split("Got")[1] and "folder" not in res.output.split("Got")[1]


def test_every_progress_and_plan_line_of_the_two_audits_names_its_model(tmp_path):
    a, b = write_pair(tmp_path, planted(n=600, extra=0))
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--format", "json",
                                   "--methods", "performance,fairness"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    progress = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("[") and "audit finished" not in ln]
    plan = [ln for ln in lines if not ln.startswith("[")]
    assert progress and plan
    for line in progress + plan:
        assert line.startswith(("champion: ", "challenger: ")), line
    for role in ("champion", "challenger"):
        assert f"{role}: fairness: started" in progress and any(ln.startswith(role) for ln in plan)


ODD = ["a&b", "p×q", "s*t", " edge "]  # attribute names holding a separator or edge spaces


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_attribute_names_with_separators_or_edge_spaces_are_named_in_gate_keys_by_quoting():
    """README "Gate keys": a quoted name is verbatim; an intersection joins quoted names with *;
    the same rule for [compare.gate] and [gate] (audit check)."""
    import tomllib

    from audit.gate import parse_gate

    rng = np.random.default_rng(3)
    n = 800
    df = pd.DataFrame({"x": rng.normal(size=n), **{a: rng.choice(["u", "v"], n) for a in ODD}})
    df["y"] = (df.x + rng.normal(size=n) > 0).astype(int)
    keys = [f"fairness.{_quoted(a)}.demographic_parity_difference" for a in ODD]
    keys.append(f"fairness.{_quoted('s*t')} × {_quoted('a&b')}.equalized_odds_difference")
    # written in a TOML file as literal keys
    toml = "".join(f"'{k}' = {{ max_increase = 0.5 }}\n" for k in keys)
    gate = tomllib.loads(toml)
    assert list(gate) == keys
    f = lambda X: 1 / (1 + np.exp(-2 * X[:, 0]))  # noqa: E731
    r = compare_models(f, f, df, target="y", sensitive=ODD, methods=["performance"], features=["x"],
                       compare={"n_bootstrap": 200, "n_permutations": 99, "gate": gate})
    judged = {v.key: v for v in r.gate.verdicts}
    assert list(judged) == keys and all(v.status == "pass" and v.value == 0.0 for v in judged.values())
    # results keys quote such names the same way, so they never collide with an intersection;
    # a rule is labelled with its key as written, quotes and all
    assert '"a&b"*"s*t"' in r.fairness and judged[keys[-1]].rule.startswith(keys[-1] + " increase < 0.5")
    # audit check's [gate] reads the same rule
    rules = parse_gate({k.replace("max_increase", "max"): {"max": 0.1} for k in keys}, sensitive=ODD, task="binary")
    assert [r_.attribute for r_ in rules][:4] == [_quoted(a) for a in ODD]
    # unquoted, the names split (or lose their spaces): an exit-2 message says how to quote
    for bad in ("fairness.a&b.demographic_parity_difference", 'fairness."a&b.demographic_parity_difference',
                'fairness."a&b"x.demographic_parity_difference'):
        with pytest.raises(InvalidConfigError, match="quot"):
            parse_compare_gate_for(bad, ODD)
        with pytest.raises(InvalidConfigError, match="quot"):
            parse_gate({bad: {"max": 0.1}}, sensitive=ODD, task="binary")


def parse_compare_gate_for(key: str, sensitive):
    from audit.compare.gate import parse_compare_gate
    from audit.methods.fairness import FairnessConfig, attribute_sets

    return parse_compare_gate({key: {"max_increase": 0.1}}, sets=attribute_sets(sensitive, FairnessConfig()))


def _cf_result(rows, attribute="g", groups=("a", "b"), search="gradient", mad=None):
    """A counterfactuals result as compare reads it: searched rows (row, found, cost) and the
    per-group mean cost its audit computed."""
    from types import SimpleNamespace

    from audit.core.results import Estimate
    from audit.methods._cf.recourse import AttributeRecourse, GroupRecourse
    from audit.methods.counterfactuals import RowOutcome

    outcomes = tuple(RowOutcome(r, r + 1, c is not None, c, 1 if c is not None else None, "" if c is not None else "none")
                     for r, c in rows)
    recourse = (AttributeRecourse(attribute, tuple(GroupRecourse(g, 0, 0, None, Estimate(1.0, 0.5, 1.5, 0.95, "pb"),
                                                                 Estimate(1.0), True) for g in groups),
                                  None, None, None, None, None, None, None),)
    return SimpleNamespace(rows=outcomes, recourse=recourse, search=search, mad=mad or {"x": 1.0})


def test_recourse_is_paired_on_rows_both_models_explained_and_the_rest_is_counted():
    from audit.compare.recourse import compare_recourse
    from audit.core.method import to_jsonable

    sensitive = pd.DataFrame({"g": ["a"] * 20 + ["b"] * 20})
    # rows 0-11 (a): explained for both, challenger costs 0.5 more; 12: lost; 13: gained; 14: neither;
    # 15-16 champion only; 17 challenger only; group b: rows 20-39 both explained, same cost
    champ = [(r, 1.0 + r / 10) for r in range(12)] + [(12, 2.0), (13, None), (14, None), (15, 1.0), (16, 1.0)]
    chall = [(r, 1.5 + r / 10) for r in range(12)] + [(12, None), (13, 3.0), (14, None), (17, 1.0)]
    champ += [(r, float(r)) for r in range(20, 40)]
    chall += [(r, float(r)) for r in range(20, 40)]
    a, b = _cf_result(champ), _cf_result(chall)
    rc = compare_recourse(a, b, sensitive, ["g"], confidence=0.95)
    ga, gb = rc.attributes["g"].groups
    assert (ga.group, ga.n_paired, ga.lost, ga.gained, ga.neither, ga.only_champion, ga.only_challenger) == \
        ("a", 12, 1, 1, 1, 2, 1)
    e = ga.paired.change
    assert (e.value, e.lower, e.upper) == pytest.approx((0.5, 0.5, 0.5)) and ga.paired.champion == pytest.approx(1.55)
    assert gb.n_paired == 20 and (gb.paired.change.value, gb.paired.change.lower) == (0.0, 0.0)
    assert ga.champion.lower == 0.5 and ga.challenger.value == 1.0  # each model's own cost, as its audit gave it
    assert "35 rows were searched for both models, 32 of them explained for both" in rc.note and "2 rows were searched for the champion only" in rc.note
    # the same from results as saved in results.json
    saved = compare_recourse(to_jsonable(vars(a)), to_jsonable(vars(b)), sensitive, ["g"], confidence=0.95)
    assert to_jsonable(saved) == to_jsonable(rc)
    # five paired rows are too few for a 95% interval of their median: a value, no interval, and why
    few = compare_recourse(_cf_result(champ[:5]), _cf_result(chall[:5]), sensitive, ["g"], confidence=0.95)
    e = few.attributes["g"].groups[0].paired.change
    assert e.value == pytest.approx(0.5) and e.lower is None and "too few" in e.undefined_reason
    # searches scaled by different MADs: not compared, and said so
    other = compare_recourse(a, _cf_result(chall, mad={"x": 2.0}), sensitive, ["g"], confidence=0.95)
    assert other.attributes == {} and "different MADs" in other.note


def test_recourse_change_of_two_models_is_reported_gated_and_rendered():
    """Both audits run counterfactuals: per group each model's cost, the paired change with an
    interval on the rows both explained, a gate rule on it, and the report's section."""
    from sklearn.linear_model import LogisticRegression

    from audit.compare.report import render_comparison

    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "g": rng.choice(["a", "b"], n)})
    df["y"] = (df.x1 + 0.5 * df.x2 + rng.normal(size=n) > 0).astype(int)
    X = df[["x1", "x2"]].to_numpy()
    m1 = LogisticRegression().fit(X, df.y)
    m2 = LogisticRegression(C=0.05).fit(X[:300], df.y[:300])
    gate = {"counterfactuals.g.a.median_cost_change": {"max_increase": 1.0},
            'counterfactuals."g"."b".median_cost_change': {"max_decrease": 0.0}}
    r = compare_models(m1, m2, df, target="y", sensitive=["g"], features=["x1", "x2"], methods=["counterfactuals"],
                       method_options={"counterfactuals": {"max_search_rows": 200}},
                       compare={"n_bootstrap": 300, "n_permutations": 99, "gate": gate})
    groups = {g.group: g for g in r.recourse.attributes["g"].groups}
    assert set(groups) == {"a", "b"}
    for g in groups.values():
        e = g.paired.change
        assert g.n_paired >= 30 and e.lower <= e.value <= e.upper and e.level == 0.95
        assert g.champion.lower is not None and g.challenger.lower is not None
    verdicts = {v.key: v for v in r.gate.verdicts}
    assert verdicts["counterfactuals.g.a.median_cost_change"].status == "pass"
    assert verdicts['counterfactuals."g"."b".median_cost_change'].value == groups["b"].paired.change.value
    doc = json.loads(r.json_bytes())
    assert doc["recourse"]["attributes"]["g"]["groups"][0]["n_paired"] == groups["a"].n_paired
    html = render_comparison(r)
    assert '<section id="recourse">' in html and "median per-row change" in html
    assert not any("Counterfactual recourse is not compared" in n for n in r.limitations)
    with pytest.raises(InvalidConfigError, match="counterfactuals.<attribute>.<group>.median_cost_change"):
        compare_models(m1, m2, df, target="y", sensitive=["g"], methods=["performance"],
                       compare={"gate": {"counterfactuals.g.a.cost": {"max_increase": 1.0}}})
    # without counterfactuals in both audits the report says why recourse is not compared
    r2 = compare_models(m1, m2, df, target="y", sensitive=["g"], methods=["performance"],
                        compare={"n_bootstrap": 100, "n_permutations": 0})
    assert r2.recourse.attributes == {} and "did not run for the champion and challenger" in r2.recourse.note


def _saved_counterfactual_pair(tmp_path):
    """The bundled MLP audited twice with counterfactuals and save_predictions: (a, b, configs' folder)."""
    import shutil
    from pathlib import Path

    shared = Path(__file__).resolve().parent / "bad_inputs" / "_shared"
    work = tmp_path / "case"
    shutil.copytree(shared, work)
    text = (work / "audit.toml").read_text().replace('target = "income"', 'target = "income"\nmax_rows = 300')
    text = text.replace('formats = ["json"]', 'formats = ["json"]\nsave_predictions = true')
    text += "[methods.counterfactuals]\nmax_search_rows = 120\n"
    for name in ("a", "b"):
        (work / f"{name}.toml").write_text(text.replace('name = "bad"', f'name = "{name}"'), encoding="utf-8")
        res = CliRunner().invoke(app, ["run", str(work / f"{name}.toml"), "--out", str(tmp_path / name), "-q",
                                       "--methods", "counterfactuals"])
        assert res.exit_code == 0, res.output
    return tmp_path / "a", tmp_path / "b", work


def test_two_copies_of_one_model_have_zero_recourse_change_from_configs_and_from_saved_reports(tmp_path):
    """The same network audited twice: every group's median cost change is 0 with interval
    [0, 0] on the rows both searches explained, and two saved reports give what the configs give."""
    a, b, work = _saved_counterfactual_pair(tmp_path)
    res = compare_cli(a, b, "--out", tmp_path / "saved")
    assert res.exit_code == 0, res.output
    live = compare_cli(work / "a.toml", work / "b.toml", "--out", tmp_path / "live", "--methods", "counterfactuals")
    assert live.exit_code == 0, live.output
    saved = json.loads((tmp_path / "saved" / "results.json").read_text())["recourse"]
    assert saved == json.loads((tmp_path / "live" / "results.json").read_text())["recourse"]
    groups = saved["attributes"]["sex"]["groups"]
    assert groups and sum(g["n_paired"] for g in groups) > 20
    for g in groups:
        assert (g["lost"], g["gained"], g["only_champion"], g["only_challenger"]) == (0, 0, 0, 0)
        e = g["paired"]["change"]
        assert e["value"] == 0.0 and (e["lower"], e["upper"]) in ((0.0, 0.0), (None, None))


def test_a_saved_report_with_damaged_counterfactual_rows_or_costs_is_refused_naming_the_key(tmp_path):
    """Every field compare reads from a saved results.json is checked: a row out of range (10**12,
    -1, which would pick the last row), not a number, null, a rows object, a cost that is not a
    finite number, a repeated group, a method that is not an object -> exit 2 naming file and key."""
    import shutil

    a, b, _ = _saved_counterfactual_pair(tmp_path)
    cases = {
        "rows[0].row": lambda r: r["rows"][0].__setitem__("row", 10**12),
        "rows[0].row = -1": lambda r: r["rows"][0].__setitem__("row", -1),
        "rows[0].row = 'abc'": lambda r: r["rows"][0].__setitem__("row", "abc"),
        "rows[0].row = None": lambda r: r["rows"][0].__setitem__("row", None),
        "rows[1].row": lambda r: r["rows"][1].__setitem__("row", r["rows"][0]["row"]),
        "result.rows = {": lambda r: r.__setitem__("rows", {"a": 1}),
        "rows[0].cost = 'abc'": lambda r: r["rows"][0].update(found=True, cost="abc"),
        "rows[0].found": lambda r: r["rows"][0].__setitem__("found", "yes"),
        "groups[1].group": lambda r: r["recourse"][0]["groups"].insert(1, dict(r["recourse"][0]["groups"][0])),
        "mean_cost": lambda r: r["recourse"][0]["groups"][0].__setitem__("mean_cost", {"value": "x"}),
        "result.mad": lambda r: r.__setitem__("mad", {"age": "wide"}),
    }
    for key, damage in cases.items():
        bad = tmp_path / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(b, bad)
        doc = json.loads((bad / "results.json").read_text())
        damage(doc["methods"]["counterfactuals"]["result"])
        (bad / "results.json").write_text(json.dumps(doc))
        res = compare_cli(a, bad, "--out", tmp_path / "out")
        text = " ".join(res.output.split())
        assert res.exit_code == 2 and "bad/results.json" in text and key in text, (key, text)
        assert not (tmp_path / "out").exists()
    doc = json.loads((b / "results.json").read_text())
    doc["methods"]["performance"] = "ok"
    (b / "results.json").write_text(json.dumps(doc))
    res = compare_cli(a, b, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "methods.performance" in res.output, res.output


def test_a_ratio_with_a_zero_denominator_is_undefined_with_a_reason_never_inf_or_nan(tmp_path):
    """The champion never selects anyone: its demographic parity ratio is 0/0. The change is
    undefined and says why, results.json has no inf or NaN, the report shows the reason."""
    frame = planted(n=2000, extra=0)
    frame["sa"] = 0.1  # every row below the threshold
    a, b = write_pair(tmp_path, frame)
    res = compare_cli(a, b, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    raw = (tmp_path / "out" / "results.json").read_text()
    assert "Infinity" not in raw and "NaN" not in raw
    doc = json.loads(raw)
    c = doc["fairness"]["g"]["disparities"]["demographic_parity_ratio"]
    assert c["champion"] is None and c["change"]["value"] is None and c["change"]["lower"] is None
    assert "0/0" in c["change"]["undefined_reason"] and "champion" in c["change"]["undefined_reason"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "so the ratio is 0/0" in html and not re.search(r"\b(?:inf|nan)\b", html, re.I)


def test_a_planted_ratio_drop_is_caught_by_a_ratio_rule():
    """A challenger that selects 1,000 more rows of group a: the demographic parity ratio moves
    and a max_decrease / max_increase rule on it judges the paired interval."""
    frame = planted(n=20000, extra=1000)
    f = {"sa": frame.sa.to_numpy(), "sb": frame.sb.to_numpy()}
    r = compare_models(lambda X: f["sa"][:len(X)], lambda X: f["sb"][:len(X)], frame[["x", "g", "h", "y"]],
                       target="y", sensitive=["g", "h"], features=["x"], methods=["performance"],
                       compare={"n_bootstrap": 300, "n_permutations": 99,
                                "gate": {"fairness.g.demographic_parity_ratio": {"max_decrease": 0.02},
                                         "fairness.h.demographic_parity_ratio": {"max_decrease": 0.2}}})
    change = r.fairness["g"].disparities["demographic_parity_ratio"]
    assert change.change.value < 0 and change.change.lower <= change.change.value <= change.change.upper
    verdicts = {v.key: v.status for v in r.gate.verdicts}
    assert verdicts == {"fairness.g.demographic_parity_ratio": "breach", "fairness.h.demographic_parity_ratio": "pass"}


def test_a_change_no_row_shows_gets_an_exact_interval_that_cannot_pass_a_tight_gate():
    """The challenger truly raises group a's selection rate by 0.005 (true demographic parity
    change +0.005 from a fair champion), but on this sample no decision changes. A bootstrap box
    pinned the change at [0, 0] and passed max_increase = 0.002; the exact bound of a group with
    no changed row covers the true change, and the rule is not passed."""
    from scipy.stats import norm

    def champ(X):
        return 1 / (1 + np.exp(-2 * X[:, 0]))

    def chall(X):
        return np.clip(champ(X) + 0.5 * ((X[:, 1] == 1) & (X[:, 0] > -0.0125) & (X[:, 0] <= 0)), 0, 1)

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=600), "ga": np.repeat([1.0, 0.0], 300)})
    df["g"] = np.where(df.ga == 1, "a", "b")
    df["y"] = (df.x + rng.normal(size=600) > 0).astype(int)
    r = compare_models(champ, chall, df, target="y", sensitive=["g"], features=["x", "ga"], methods=["performance"],
                       compare={"n_bootstrap": 300, "n_permutations": 99, "disparities": ["demographic_parity_difference"],
                                "gate": {"fairness.g.demographic_parity_difference": {"max_increase": 0.002}}})
    truth = norm.cdf(0) - norm.cdf(-0.0125)
    e = r.fairness["g"].disparities["demographic_parity_difference"].change
    assert r.decisions.changed == 0 and e.value == 0.0
    assert e.lower < 0 < truth < e.upper and "Clopper–Pearson" in e.method
    # |change| of each group <= its share of changed rows, at most -ln(error/4)/300 with none changed
    assert e.upper < 2 * 7 / 300
    assert r.gate.outcome != "pass"


@pytest.mark.parametrize("who, wording", [("everybody", "so the ratio is 0/0"), ("reference", "so the ratio is x/0")])
def test_an_undefined_impact_ratio_says_0_over_0_or_x_over_0_as_the_rates_are(who, wording):
    """Against reference group 2: if the challenger selects nobody the ratio is 0/0; if only the
    reference group gets nobody while others are selected it is x/0 (infinite), not 0/0."""
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], 100)
    y = (rng.random(300) < 0.5).astype(int)
    a = (rng.random(300) < np.array([0.3, 0.5, 0.4])[codes]).astype(int)
    b = np.zeros(300, int) if who == "everybody" else np.where(codes == 2, 0, a)
    res = compare_disparities("g", codes.astype(str), Paired(y, a, b, None, None), ["disparate_impact_ratio"],
                              CompareOptions(n_bootstrap=100, n_permutations=0), rng, reference="2")
    e = res.disparities["disparate_impact_ratio"].change
    assert e.value is None and e.lower is None
    assert wording in e.undefined_reason and "challenger" in e.undefined_reason
    assert ("0/0" in e.undefined_reason) == (who == "everybody")


@pytest.mark.parametrize("fairness", [{"favourable_label": "0"}, {"favourable": "negative"}])
def test_the_comparison_compares_the_favourable_outcome_the_fairness_audit_resolved(fairness):
    """Setting only favourable_label (the negative class) makes both the fairness audit and the
    comparison compare the rate of the negative decision: the champion's demographic parity
    ratio in the comparison is the audit's, and not the ratio of selection rates."""
    frame = planted(n=4000, extra=200)
    f = {"sa": frame.sa.to_numpy(), "sb": frame.sb.to_numpy()}
    options = {"fairness": {**fairness, "n_bootstrap": 100, "n_permutations": 0, "what_if": False}}
    r = compare_models(lambda X: f["sa"][:len(X)], lambda X: f["sb"][:len(X)], frame[["x", "g", "h", "y"]],
                       target="y", sensitive=["g"], features=["x"], methods=["fairness"], method_options=options,
                       compare={"n_bootstrap": 100, "n_permutations": 0, "disparities": ["demographic_parity_ratio"]})
    audited = next(o.result for o in r._reports[0].outcomes if o.name == "fairness")
    assert audited.favourable == "negative" and r.options.favourable == "negative"
    compared = r.fairness["g"].disparities["demographic_parity_ratio"].champion
    assert compared == pytest.approx(audited.attributes["g"].disparities["demographic_parity_ratio"].value)
    sel = frame.assign(d=frame.sa >= 0.5).groupby("g").d.mean()
    assert compared == pytest.approx((1 - sel).min() / (1 - sel).max())
    assert compared != pytest.approx(sel.min() / sel.max())


def test_two_saved_reports_compare_the_favourable_label_their_fairness_audit_resolved(tmp_path):
    """favourable_label alone (the negative class "0") in the champion's [methods.fairness]: the
    comparison of the saved reports compares the negative decision's rates, as the audit did."""
    frame = planted(n=2000, extra=100)
    a, b = write_pair(tmp_path, frame)
    for cfg, out in ((a, "ra"), (b, "rb")):
        cfg.write_text(cfg.read_text().replace("[methods.fairness]\n", '[methods.fairness]\nfavourable_label = "0"\n')
                       + "[report]\nsave_predictions = true\n")
        res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / out), "--quiet", "--format", "json",
                                       "--methods", "fairness"])
        assert res.exit_code == 0, res.output
    res = compare_cli(tmp_path / "ra", tmp_path / "rb", "--out", tmp_path / "cmp")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "cmp" / "results.json").read_text())
    audited = json.loads((tmp_path / "ra" / "results.json").read_text())["methods"]["fairness"]["result"]
    assert doc["options"]["favourable"] == "negative"
    compared = doc["fairness"]["g"]["disparities"]["demographic_parity_ratio"]["champion"]
    assert compared == pytest.approx(audited["attributes"]["g"]["disparities"]["demographic_parity_ratio"]["estimate"]["value"])


def test_compare_records_its_execution_like_audit_run_and_takes_the_same_backend_flags(tmp_path):
    a, b = write_pair(tmp_path, planted(n=600, extra=0))
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--format", "json",
                                   "-q", "--methods", "fairness", "--backend", "local"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["provenance"]["execution"]["backend"] == "local"
    assert doc["provenance"]["execution"]["cpus"] >= 1
    help_text = CliRunner().invoke(app, ["compare", "--help"]).output
    assert "--backend" in help_text and "--ray-address" in help_text
    # one backend for both audits: configs that disagree are a usage error before any work
    b.write_text(b.read_text() + '\n[execution]\nbackend = "ray"\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "o2"), "-q"])
    assert res.exit_code == 2 and "[execution] tables differ" in res.output and not (tmp_path / "o2").exists()


def test_a_rerun_of_compare_replaces_its_own_junit_file_and_either_command_replaces_the_other_s(tmp_path):
    """README: --junit behaves as in audit check: a rerun replaces the JUnit file audit-suite
    wrote (of audit check or audit compare), never any other file."""
    from audit.report.output import is_our_junit

    a, b = write_pair(tmp_path, planted(n=1000, extra=0), '"performance.accuracy" = { max_decrease = 0.05 }\n')
    junit = tmp_path / "c.xml"
    for run in range(2):  # the second run finds the first run's file and replaces it
        res = compare_cli(a, b, "--out", tmp_path / f"out{run}", "--junit", junit, "--methods", "performance")
        assert res.exit_code == 0, res.output
        assert ET.parse(junit).getroot().get("name") == "audit-compare:champ-vs-chall"
    assert is_our_junit(junit)
    gate_file = tmp_path / "g.xml"
    gate_file.write_text(junit.read_text().replace("audit-compare:", "audit-gate:"))
    assert is_our_junit(gate_file)
    for foreign in ('<testsuites name="pytest"><testsuite name="t"/></testsuites>',
                    '<testsuites name="audit-comparer"><testsuite/></testsuites>'):
        gate_file.write_text(foreign)
        assert not is_our_junit(gate_file)
        res = compare_cli(a, b, "--out", tmp_path / "out3", "--junit", gate_file, "--methods", "performance")
        assert res.exit_code == 2 and "is not a JUnit file written by audit-suite" in res.output
        assert gate_file.read_text() == foreign


def test_a_recourse_verdict_labels_its_costs_as_medians_on_the_paired_rows_and_its_change_as_the_median_per_row_change():
    """The gate line of a recourse rule shows two medians on the paired rows and the median of
    the per-row changes, which is not their difference: each says what it is. The note says
    whether the searches sampled rows, as their results record."""
    from types import SimpleNamespace

    from audit.compare.gate import judge, parse_compare_gate
    from audit.compare.recourse import compare_recourse

    sensitive = pd.DataFrame({"g": ["a"] * 20})
    champ = [(r, float(r)) for r in range(20)]
    chall = [(r, r + (3.0 if r % 2 else 0.1)) for r in range(20)]  # median change 1.55, medians 9.5 and 11.05
    rc = compare_recourse(_cf_result(champ, groups=("a",)), _cf_result(chall, groups=("a",)), sensitive, ["g"],
                          confidence=0.95)
    paired = rc.attributes["g"].groups[0].paired
    assert (paired.champion, paired.challenger, paired.change.value) == pytest.approx((9.5, 11.05, 1.55))
    rules = parse_compare_gate({'counterfactuals."g".a.median_cost_change': {"max_increase": 5.0}}, sets=[("g",)],
                               groups={"g": ["a"]})
    v = judge(rules, {rules[0].key: paired}).verdicts[0]
    assert v.message.startswith("median per-row change +1.5500 (paired 95% CI ")
    assert "; median cost on the 20 paired rows: champion 9.5000, challenger 11.0500)" in v.message
    assert v.rule == 'counterfactuals."g".a.median_cost_change increase < 5'  # the key as written, quotes kept
    assert "(all of them)" in rc.note and "sample" not in rc.note
    sampled = [SimpleNamespace(**{**vars(_cf_result(rows, groups=("a",))), "sampled": True}) for rows in (champ, chall)]
    assert "(for each model a seeded sample of them)" in compare_recourse(*sampled, sensitive, ["g"], confidence=0.95).note


KEY_ATTRIBUTES = ["grp.a", "s*t"]
KEY_GROUPS = {"grp.a": ["A", "B"], "s*t": ["u", "A*u"]}


@pytest.mark.parametrize("key, attribute, group", [
    ('counterfactuals."grp.a".A.median_cost_change', "grp.a", "A"),
    ("counterfactuals.grp.a.A.median_cost_change", "grp.a", "A"),  # bare dotted name: one reading names a group
    ('counterfactuals."s*t"."A*u".median_cost_change', "s*t", "A*u"),
    ('counterfactuals."s*t".u.median_cost_change', "s*t", "u"),
])
def test_a_recourse_key_reads_names_by_the_quoting_rule_of_gate(key, attribute, group):
    from audit.compare.gate import parse_compare_gate
    from audit.methods.fairness import FairnessConfig, attribute_sets

    rule, = parse_compare_gate({key: {"max_increase": 0.5}}, sets=attribute_sets(KEY_ATTRIBUTES, FairnessConfig()),
                               groups=KEY_GROUPS)
    assert (rule.attribute, rule.group, rule.text) == (attribute, group, f"{key} increase < 0.5")


@pytest.mark.parametrize("key, says, never", [
    ('counterfactuals."grp.a".C.median_cost_change', "names the group 'C' of 'grp.a', which does not occur", None),
    ('counterfactuals."grp.a"*"s*t"."A*u".median_cost_change', "recourse is compared per sensitive attribute, not "
     "for intersections", "unclosed quote"),
    ("counterfactuals.s*t.u.median_cost_change", "quote it in the key, e.g. 'counterfactuals.\"s*t\".<group>.", None),
    ('counterfactuals."s*t".A*u.median_cost_change', "quote a group name with *", None),
    ('fairness."grp.x".demographic_parity_difference', "Did you mean 'grp.a'?", "quote it"),
    ("fairness.s*t.demographic_parity_difference", "quote it in the key, e.g. 'fairness.\"s*t\".", None),
    ('counterfactuals."grp.a.A.median_cost_change', "unclosed quote", None),
])
def test_a_malformed_or_unknown_name_in_a_gate_key_is_one_usage_error_with_the_relevant_hint_only(key, says, never):
    """[gate] and [compare.gate] read names by one rule: an unquoted s*t is refused in both,
    with how to quote it; a hint about quoting appears only when the key split such a name."""
    from audit.compare.gate import parse_compare_gate
    from audit.gate import parse_gate
    from audit.methods.fairness import FairnessConfig, attribute_sets

    with pytest.raises(InvalidConfigError) as err:
        parse_compare_gate({key: {"max_increase": 0.5}}, sets=attribute_sets(KEY_ATTRIBUTES, FairnessConfig()),
                           groups=KEY_GROUPS)
    messages = [str(err.value)]
    if key.startswith("fairness."):
        with pytest.raises(InvalidConfigError) as err:
            parse_gate({key: {"max": 0.1}}, sensitive=KEY_ATTRIBUTES, task="binary")
        messages.append(str(err.value))
    for message in messages:
        assert says in message and (never is None or never not in message), message


def test_a_bare_dotted_name_read_two_ways_is_refused_and_told_to_quote():
    from audit.compare.gate import parse_compare_gate
    from audit.methods.fairness import FairnessConfig, attribute_sets

    sets = attribute_sets(["a", "a.b"], FairnessConfig())
    with pytest.raises(InvalidConfigError, match="can be read in 2 ways .*'counterfactuals.\"a\".\"b.c\"."):
        parse_compare_gate({"counterfactuals.a.b.c.median_cost_change": {"max_increase": 0.5}}, sets=sets,
                           groups={"a": ["b.c"], "a.b": ["c"]})
    rule, = parse_compare_gate({'counterfactuals."a.b".c.median_cost_change': {"max_increase": 0.5}}, sets=sets,
                               groups={"a": ["b.c"], "a.b": ["c"]})
    assert (rule.attribute, rule.group) == ("a.b", "c")
