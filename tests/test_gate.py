"""The deployment gate: key validation, verdicts on confidence bounds, every exit code, outputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.errors import InvalidConfigError
from audit.gate import parse_gate

FAST = "[methods.fairness]\nn_bootstrap = 300\nn_permutations = 99\nwhat_if = false\n"


def write_case(tmp_path, sizes, rates, gate: str, *, extra: str = "", seed: int = 0):
    """Decisions CSV with exact selection rates per group, plus an audit.toml with [gate]."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, (n, r) in enumerate(zip(sizes, rates, strict=True)):
        k = int(round(n * r))
        pred = np.r_[np.ones(k), np.zeros(n - k)].astype(int)
        y = (rng.random(n) < 0.5).astype(int)
        parts.append(pd.DataFrame({"group": f"g{i}", "y": y, "pred": pred}))
    pd.concat(parts, ignore_index=True).to_csv(tmp_path / "d.csv", index=False)
    cfg = tmp_path / "audit.toml"
    cfg.write_text('name = "gate"\n[model]\npredictions = "pred"\n[data]\npath = "d.csv"\n'
                   f'target = "y"\nsensitive = ["group"]\n{FAST}{extra}[gate]\n{gate}\n', encoding="utf-8")
    return cfg


DP = '"fairness.group.demographic_parity_difference"'


def check(cfg, *args):
    return CliRunner().invoke(app, ["check", str(cfg), "--quiet", *args])


def test_exit_0_pass(tmp_path):
    cfg = write_case(tmp_path, [2000, 2000], [0.40, 0.41], f"{DP} = {{ max = 0.10 }}")
    res = check(cfg)
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "gate gate: pass" in res.output


def test_exit_1_breach_and_json(tmp_path):
    cfg = write_case(tmp_path, [1000, 1000], [0.7, 0.3], f"{DP} = {{ max = 0.10 }}")
    res = check(cfg, "--json")
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    v = doc["verdicts"][0]
    assert v["status"] == "breach" and v["lower"] > 0.1 and v["value"] == pytest.approx(0.4)
    assert doc["exit_code"] == 1 and doc["outcome"] == "fail"


def test_inconclusive_fail_or_warn_and_junit(tmp_path):
    # a true gap of 0.10 on 150 rows per group: the interval straddles 0.10
    cfg = write_case(tmp_path, [150, 150], [0.45, 0.35], f"{DP} = {{ max = 0.10 }}")
    junit = tmp_path / "out" / "gate.xml"
    res = check(cfg, "--junit", str(junit))
    assert res.exit_code == 1, res.output
    assert "INCONCLUSIVE" in res.output
    root = ET.parse(junit).getroot()
    case = root.find("testsuite/testcase")
    assert case.get("name") == "fairness.group.demographic_parity_difference"
    assert case.find("failure") is not None
    res = check(cfg, "--inconclusive", "warn", "--junit", str(junit))
    assert res.exit_code == 0, res.output
    assert "INCONCLUSIVE (warn)" in res.output
    assert ET.parse(junit).getroot().find("testsuite/testcase/skipped") is not None


def test_exit_3_small_group_is_insufficient_evidence(tmp_path):
    cfg = write_case(tmp_path, [2000, 2000, 10], [0.4, 0.41, 0.4], f"{DP} = {{ max = 0.10 }}")
    res = check(cfg)
    assert res.exit_code == 3, res.output
    assert "INSUFFICIENT" in res.output and "g2" in res.output
    # ignoring small groups judges on the larger ones
    cfg = write_case(tmp_path, [2000, 2000, 10], [0.4, 0.41, 0.4],
                     f'{DP} = {{ max = 0.10, small_groups = "ignore" }}')
    assert check(cfg).exit_code == 0
    # a breach among the judged groups is a breach even with a small group
    cfg = write_case(tmp_path, [1000, 1000, 10], [0.7, 0.3, 0.4], f"{DP} = {{ max = 0.10 }}")
    assert check(cfg).exit_code == 1


def test_exit_3_when_only_one_group_is_large_enough(tmp_path):
    cfg = write_case(tmp_path, [500, 20], [0.4, 0.4], f"{DP} = {{ max = 0.10 }}")
    res = check(cfg)
    assert res.exit_code == 3, res.output


@pytest.mark.parametrize("gate, message", [
    ('"fairness.group.demographic_parity_diference" = { max = 0.1 }', "Did you mean 'demographic_parity_difference'"),
    ('"fairness.grup.demographic_parity_difference" = { max = 0.1 }', "Did you mean 'group'"),
    ('"fairnes.group.demographic_parity_difference" = { max = 0.1 }', "fairness.<attribute>.<metric>"),
    (f'{DP} = {{ maximum = 0.1 }}', "Did you mean 'max'"),
    (f'{DP} = {{ max = "low" }}', "must be a number"),
    (f'{DP} = {{ max = 0.1, inconclusive = "maybe" }}', "inconclusive"),
])
def test_exit_2_invalid_gate_keys(tmp_path, gate, message):
    cfg = write_case(tmp_path, [100, 100], [0.4, 0.4], gate)
    res = check(cfg)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_exit_2_no_gate_and_missing_config(tmp_path):
    cfg = write_case(tmp_path, [100, 100], [0.4, 0.4], "")
    res = check(cfg)
    assert res.exit_code == 2 and "no [gate]" in res.output
    assert check(tmp_path / "nope.toml").exit_code == 2


def test_parse_gate_intersections_and_synonyms():
    rules = parse_gate({"fairness.race×sex.equalized_odds_ratio": {"min": 0.8},
                        "fairness.sex*race.disparate_impact_ratio": {"min": 0.8, "max": 1.25},
                        "inconclusive": "warn"},
                       sensitive=["sex", "race"], task="binary")
    assert [r.attribute for r in rules] == ["sex*race", "sex*race"]
    assert all(r.inconclusive == "warn" for r in rules)
    with pytest.raises(InvalidConfigError, match="intersections"):
        parse_gate({"fairness.sex*race*age.demographic_parity_difference": {"max": 0.1}},
                   sensitive=["sex", "race", "age"], task="binary")
    with pytest.raises(InvalidConfigError, match="regression"):
        parse_gate({"fairness.sex.demographic_parity_difference": {"max": 0.1}},
                   sensitive=["sex"], task="regression")


def test_run_shows_gate_in_report(tmp_path):
    cfg = write_case(tmp_path, [1000, 1000], [0.7, 0.3], f"{DP} = {{ max = 0.10 }}")
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["run", str(cfg), "--quiet", "--out", str(out), "--format", "html,json",
                                   "--methods", "fairness"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["gate"]["verdicts"][0]["status"] == "breach"
    html = (out / "report.html").read_text()
    assert "Deployment gate: fail" in html


# ---- the gate cannot be defused; user strings in JUnit and on the terminal (issue 12) -------

@pytest.mark.parametrize("bound", ["max = nan", "max = inf", "min = -inf", "min = nan, max = 0.1",
                                   "max = +inf, min = 0.0"])
def test_exit_2_threshold_that_is_not_finite(tmp_path, bound):
    """nan compares false with everything (a rule that can never breach); inf tests nothing."""
    cfg = write_case(tmp_path, [100, 100], [0.7, 0.3], f"{DP} = {{ {bound} }}")
    res = check(cfg)
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "must be a finite number" in text
    assert "'fairness.group.demographic_parity_difference'" in text


@pytest.mark.parametrize("table, flags", [
    ('inconclusive = "warn"', ()),
    ('small_groups = "ignore"\ninconclusive = "fail"', ()),
    ('inconclusive = "fail"', ("--inconclusive", "warn")),  # the flag drops the table's option
])
def test_exit_2_gate_with_options_but_no_rules_never_passes(tmp_path, table, flags):
    cfg = write_case(tmp_path, [100, 100], [0.7, 0.3], table)
    res = check(cfg, *flags)
    assert res.exit_code == 2, res.output
    assert "no thresholds" in " ".join(res.output.split())


def test_parse_gate_refuses_empty_rules_and_non_finite_bounds():
    with pytest.raises(InvalidConfigError, match="no thresholds"):
        parse_gate({"inconclusive": "warn"}, sensitive=["sex"], task="binary")
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(InvalidConfigError, match="finite number"):
            parse_gate({"fairness.sex.demographic_parity_difference": {"max": bad}},
                       sensitive=["sex"], task="binary")


HOSTILE = "grp\x1b[31m\x07\x0b<\"[bold]\u202e"  # ESC sequence, BEL, VT, XML specials, markup, RLO
RAW = {"\x1b", "\x07", "\x0b", "\u202e"}


def test_control_characters_in_names_give_well_formed_junit_and_a_clean_terminal(tmp_path):
    """An attribute and group names with an escape sequence, BEL, a vertical tab (forbidden in
    XML 1.0), rich markup and an unterminated RLO: the JUnit file parses, shows the names with
    visible escapes, and the terminal gets no raw control character."""
    from audit.core.text import visible

    rng = np.random.default_rng(0)
    sizes = [1000, 1000, 10]  # the small group is named in the verdict's message
    frame = pd.concat([pd.DataFrame({HOSTILE: f"g{i}\x1b[2J\u202e", "y": rng.integers(0, 2, n),
                                     "pred": (rng.random(n) < 0.4).astype(int)})
                       for i, n in enumerate(sizes)], ignore_index=True)
    frame.to_csv(tmp_path / "d.csv", index=False)
    toml_name = HOSTILE.encode("unicode_escape").decode().replace('"', '\\"').replace("\\x", "\\u00")
    key = f'"fairness.{toml_name}.demographic_parity_difference"'
    cfg = tmp_path / "audit.toml"
    cfg.write_text('name = "gate"\n[model]\npredictions = "pred"\n[data]\npath = "d.csv"\n'
                   f'target = "y"\nsensitive = ["{toml_name}"]\n{FAST}[gate]\n{key} = {{ max = 0.5 }}\n',
                   encoding="utf-8")
    junit = tmp_path / "gate.xml"
    res = check(cfg, "--junit", str(junit))
    assert res.exit_code == 3, res.output
    assert not RAW & set(res.output), ascii(res.output)
    assert "[bold]" in res.output and "\\x1b[31m" in res.output and "\\u202e" in res.output

    raw = junit.read_text(encoding="utf-8")
    assert not RAW & set(raw)
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.get("name") == visible(f"fairness.{HOSTILE}.demographic_parity_difference")
    skipped = case.find("skipped").get("message")
    assert "g2\\x1b[2J\\u202e" in skipped
    detail = json.loads(case.find("system-out").text)  # the verdict itself, exactly as judged
    assert HOSTILE in detail["key"]


def test_to_junit_is_well_formed_for_every_code_point_xml_forbids():
    from audit.core.text import xml_text
    from audit.gate import GateResult, Verdict, to_junit

    nasty = "".join(map(chr, range(32))) + "\x7f\x85\ud800\udfff\ufffe\uffff<>&'\"]]>\u202e"
    v = Verdict(f"fairness.{nasty}.demographic_parity_difference", nasty, "breach", True, 0.4,
                0.3, 0.5, 0.95, f"{nasty} breached")
    root = ET.fromstring(to_junit(GateResult((v,)), name=nasty).encode("utf-8"))
    assert root.get("name") == xml_text(nasty)
    failure = root.find("testsuite/testcase/failure")
    assert failure.get("message") == xml_text(f"{nasty} breached")
    assert failure.text == f"{xml_text(nasty)}: {xml_text(nasty + ' breached')}"


def test_bonferroni_correction_judges_each_rule_at_its_share(tmp_path):
    """[gate] correction = "bonferroni": each of m rules is judged on its interval at level
    1 − 0.05/m, so the chance of any false breach over all rules stays at most 2.5 %."""
    rules = (f'{DP} = {{ max = 0.10 }}\n"fairness.group.demographic_parity_ratio" = {{ min = 0.5 }}\n'
             '"fairness.group.equalized_odds_difference" = { max = 0.5 }\n')
    cfg = write_case(tmp_path, [400, 400], [0.55, 0.35], rules)
    plain = json.loads(check(cfg, "--json").output)["verdicts"]
    cfg = write_case(tmp_path, [400, 400], [0.55, 0.35], 'correction = "bonferroni"\n' + rules)
    res = check(cfg, "--json")
    corrected = json.loads(res.output)["verdicts"]
    assert [v["confidence"] for v in plain] == [0.95] * 3
    assert [v["confidence"] for v in corrected] == [pytest.approx(1 - 0.05 / 3)] * 3
    for a, b in zip(plain, corrected, strict=True):
        assert b["lower"] < a["lower"] and b["upper"] > a["upper"] and a["value"] == b["value"]
    assert corrected[0]["status"] == "breach" and "at most 0.83% of the time" in corrected[0]["message"]


def test_exit_2_unknown_correction(tmp_path):
    cfg = write_case(tmp_path, [100, 100], [0.4, 0.4], f'correction = "holm"\n{DP} = {{ max = 0.1 }}')
    res = check(cfg)
    assert res.exit_code == 2 and "correction" in res.output and "bonferroni" in res.output


def write_rows(tmp_path, groups, gate: str, *, extra: str = ""):
    """Decisions CSV from exact confusion counts per group: name -> (tn, fp, fn, tp)."""
    parts = []
    for name, (tn, fp, fn, tp) in groups.items():
        y = np.r_[np.zeros(tn + fp), np.ones(fn + tp)].astype(int)
        pred = np.r_[np.zeros(tn), np.ones(fp), np.zeros(fn), np.ones(tp)].astype(int)
        parts.append(pd.DataFrame({"group": name, "y": y, "pred": pred}))
    pd.concat(parts, ignore_index=True).to_csv(tmp_path / "d.csv", index=False)
    cfg = tmp_path / "audit.toml"
    cfg.write_text('name = "gate"\n[model]\npredictions = "pred"\n[data]\npath = "d.csv"\n'
                   f'target = "y"\npositive_label = "1"\nsensitive = ["group"]\n'
                   f'[methods.fairness]\nn_bootstrap = 0\nwhat_if = false\n{extra}[gate]\n{gate}\n',
                   encoding="utf-8")
    return cfg


def test_a_judged_group_with_an_undefined_rate_is_insufficient_evidence_never_a_pass(tmp_path):
    """The statistician's repro (/tmp/sr2/undef2): A and B 3,000 rows (900 positives, TP 720,
    FP 210), C 40 rows with no positives and no positive decisions. C's TPR and PPV are unknown,
    not absent: before, both rules passed (95% CI 0.000 to 0.038, exit 0); now the interval's
    upper bound is 1 and the verdict is insufficient evidence naming C and why (exit 3)."""
    ab = (2100 - 210, 210, 180, 720)
    cfg = write_rows(tmp_path, {"A": ab, "B": ab, "C": (40, 0, 0, 0)},
                     '"fairness.group.equal_opportunity_difference" = { max = 0.10 }\n'
                     '"fairness.group.predictive_parity_difference" = { max = 0.10 }\n')
    res = check(cfg, "--json")
    assert res.exit_code == 3, res.output
    eo, pp = json.loads(res.output)["verdicts"]
    for v, rate, why in ((eo, "TPR", "no positive outcomes"), (pp, "PPV", "no positive decisions")):
        assert v["status"] == "insufficient" and v["value"] == pytest.approx(0.0) and v["upper"] == 1.0
        assert f"C: {rate} undefined ({why} in the group)" in v["message"], v["message"]
    # C's FPR is defined: the note names only the rate that is undefined
    res = CliRunner().invoke(app, ["check", str(cfg), "--junit", str(tmp_path / "g.xml")])
    assert "C: TPR undefined" in (tmp_path / "g.xml").read_text(encoding="utf-8")


def test_undefined_rate_in_a_group_does_not_hide_a_breach_among_the_others(tmp_path):
    """A breach among the groups that can be judged is still a breach (as with small groups)."""
    cfg = write_rows(tmp_path, {"A": (1900, 100, 200, 800), "B": (1900, 100, 700, 300),
                                "C": (40, 0, 0, 0)},
                     '"fairness.group.equal_opportunity_difference" = { max = 0.10 }\n')
    res = check(cfg, "--json")
    v = json.loads(res.output)["verdicts"][0]
    assert res.exit_code == 1 and v["status"] == "breach" and v["lower"] > 0.1, res.output


def test_disparate_impact_breach_above_the_reference_comes_with_a_significant_gap(tmp_path):
    """The statistician's repro (/tmp/sr2/di): A 5,000 rows with 165 selected (reference), B 30
    rows with 4 selected. Before: gate "breach … 95% CI 1.132 to 10.310" while the finding said
    "not significant after correcting (adjusted p = 0.067)". Now both bounds of the signed ratio
    take the Bonferroni level: the interval reaches below 1.1 and the verdict is inconclusive,
    in agreement with the test."""
    cfg = write_rows(tmp_path, {"A": (2400, 100, 2435, 65), "B": (13, 2, 13, 2)},
                     '"fairness.group.disparate_impact_ratio" = { min = 0.9, max = 1.1 }\n',
                     extra='reference = { group = "A" }\n')
    v = json.loads(check(cfg, "--json").output)["verdicts"][0]
    assert v["status"] == "inconclusive" and v["lower"] < 1.0 < v["upper"], v


def test_bonferroni_gate_message_names_its_level_and_the_findings_level(tmp_path):
    rules = (f'{DP} = {{ max = 0.10 }}\n"fairness.group.demographic_parity_ratio" = {{ min = 0.5 }}\n'
             '"fairness.group.equalized_odds_difference" = { max = 0.5 }\n')
    cfg = write_case(tmp_path, [400, 400], [0.55, 0.35], 'correction = "bonferroni"\n' + rules)
    v = json.loads(check(cfg, "--json").output)["verdicts"][0]
    assert "98.33% CI, Bonferroni over 3 rules; the report's findings use 95%" in v["message"]


# ---- each group rate's own disparity --------------------------------------------------------


def test_gate_judges_each_group_rate_on_its_own_score_interval(tmp_path):
    """A and B share TPR (0.8) but not FPR (0.05 vs 0.25) or FNR ratio: the FPR rules breach,
    the TPR rule passes, with the verdicts of the existing rules (interval vs threshold)."""
    groups = {"A": (1900, 100, 200, 800), "B": (1500, 500, 200, 800)}
    gate = ('"fairness.group.false_positive_rate_difference" = { max = 0.10 }\n'
            '"fairness.group.false_positive_rate_ratio" = { min = 0.8 }\n'
            '"fairness.group.true_positive_rate_difference" = { max = 0.10 }\n'
            '"fairness.group.false_negative_rate_ratio" = { min = 0.5 }\n'
            '"fairness.group.selection_rate_difference" = { max = 0.5 }\n')
    res = check(write_rows(tmp_path, groups, gate), "--json")
    assert res.exit_code == 1, res.output
    fpr_d, fpr_r, tpr_d, fnr_r, sel_d = json.loads(res.output)["verdicts"]
    assert fpr_d["status"] == "breach" and fpr_d["value"] == pytest.approx(0.20) and fpr_d["lower"] > 0.1
    assert fpr_r["status"] == "breach" and fpr_r["value"] == pytest.approx(0.2) and fpr_r["upper"] < 0.8
    assert tpr_d["status"] == "pass" and tpr_d["value"] == pytest.approx(0.0) and tpr_d["upper"] < 0.1
    assert fnr_r["status"] == "pass" and fnr_r["value"] == pytest.approx(1.0) and fnr_r["lower"] > 0.5
    assert sel_d["status"] == "pass" and sel_d["value"] == pytest.approx(1300 / 3000 - 900 / 3000)


def test_per_rate_intervals_are_the_newcombe_and_mover_intervals_of_the_two_groups():
    from audit.methods.fairness import score_disparities
    from audit.stats.proportions import MOVER_LIMITS, mover_ratio, newcombe_difference

    cells = np.array([[1900, 100, 200, 800], [1500, 500, 200, 800]])
    out = score_disparities(cells, None, 0.95)
    lo, hi = newcombe_difference(np.array([500]), np.array([2000]), np.array([100]), np.array([2000]),
                                 0.975, limits=MOVER_LIMITS)  # one pair, m = 1: away from parity at 1 − α/2
    assert out["false_positive_rate_difference"][0] == pytest.approx(max(lo[0], -hi[0]))
    r_lo, r_hi = mover_ratio(np.array([100]), np.array([2000]), np.array([500]), np.array([2000]), 0.975,
                              limits=MOVER_LIMITS)
    assert out["false_positive_rate_ratio"][1] == pytest.approx(r_hi[0])
    # FNR = 1 − TPR: the same null hypothesis, one family, one p-value
    assert out["false_negative_rate_difference"][2] == pytest.approx(out["true_positive_rate_difference"][2])


@pytest.mark.parametrize("metric, hint", [("false_positive_rate_diference", "false_positive_rate_difference"),
                                          ("false_negativ_rate_ratio", "false_negative_rate_ratio")])
def test_unknown_per_rate_gate_names_keep_their_did_you_mean(metric, hint):
    with pytest.raises(InvalidConfigError, match=f"Did you mean '{hint}'"):
        parse_gate({f"fairness.sex.{metric}": {"max": 0.1}}, sensitive=["sex"], task="binary")


# --- Options and gate rules are resolved once per run; results do not copy them ---------------

def _count_fairness_parses(monkeypatch) -> list[int]:
    from audit.methods.fairness import FairnessConfig

    calls = [0]
    original = FairnessConfig.from_dict.__func__

    def counted(cls, *args, **kwargs):
        calls[0] += 1
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(FairnessConfig, "from_dict", classmethod(counted))
    return calls


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_fairness_option_is_parsed_once_per_run_with_a_gate(tmp_path, monkeypatch, command):
    cfg = write_case(tmp_path, [300, 300], [0.4, 0.41], f"{DP} = {{ max = 0.10 }}")
    calls = _count_fairness_parses(monkeypatch)
    args = ["--methods", "fairness", "--format", "json", "--out", str(tmp_path / "r")] if command == "run" else []
    res = CliRunner().invoke(app, [command, str(cfg), "--quiet", *args])
    assert res.exit_code in (0, 3), res.output
    assert calls[0] == 1


def test_results_json_keeps_the_fairness_options_in_the_config_only(tmp_path):
    cfg = write_case(tmp_path, [300, 300], [0.4, 0.41], f"{DP} = {{ max = 0.10 }}")
    res = CliRunner().invoke(app, ["run", str(cfg), "--quiet", "--methods", "fairness", "--format", "json",
                                   "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    entry = json.loads((tmp_path / "r" / "results.json").read_text())["methods"]["fairness"]
    options = ("min_group_size", "confidence", "alpha", "power", "n_bootstrap", "n_permutations")
    assert all(k in entry["config"] for k in options)
    assert not [k for k in options if k in entry["result"]]
    assert entry["config"]["n_bootstrap"] == 300


def test_an_attribute_named_like_an_intersection_is_judged_on_its_own_column_not_the_intersection(tmp_path):
    """An attribute "a*b" and the intersection of a and b have distinct result keys ('"a*b"' and
    'a*b'), so neither overwrites the other and each gate rule judges what its key names."""
    rng = np.random.default_rng(0)
    n = 2000
    ab, a, b = (rng.integers(0, 2, n) for _ in range(3))
    pred = (rng.random(n) < np.where(ab == 1, 0.8, 0.2)).astype(int)  # only "a*b" matters
    pd.DataFrame({"a*b": ab.astype(str), "a": a.astype(str), "b": b.astype(str),
                  "y": rng.integers(0, 2, n), "pred": pred}).to_csv(tmp_path / "d.csv", index=False)
    cfg = tmp_path / "audit.toml"
    cfg.write_text('name = "coll"\n[model]\npredictions = "pred"\n[data]\npath = "d.csv"\ntarget = "y"\n'
                   f'sensitive = ["a*b", "a", "b"]\n{FAST}[gate]\n'
                   "'fairness.\"a*b\".demographic_parity_difference' = { max = 0.1 }\n"
                   "'fairness.a*b.demographic_parity_difference' = { max = 0.3 }\n", encoding="utf-8")
    res = check(cfg, "--json")
    assert res.exit_code == 1, res.output
    verdicts = {v["key"]: v for v in json.loads(res.output)["verdicts"]}
    column = verdicts['fairness."a*b".demographic_parity_difference']
    cross = verdicts["fairness.a*b.demographic_parity_difference"]
    assert column["status"] == "breach" and column["value"] > 0.5  # planted gap 0.6
    assert cross["status"] == "pass" and cross["value"] < 0.3


@pytest.mark.parametrize("key", ["fairness.sex*sex.demographic_parity_difference",
                                 'fairness."sex"*sex.demographic_parity_difference',
                                 "fairness.sex × race & sex.demographic_parity_difference"])
def test_a_gate_key_naming_an_attribute_twice_is_refused(key):
    from audit.compare.gate import parse_compare_gate
    from audit.methods.fairness import FairnessConfig, attribute_sets

    with pytest.raises(InvalidConfigError, match="names 'sex' twice"):
        parse_gate({key: {"max": 0.1}}, sensitive=["sex", "race"], task="binary")
    with pytest.raises(InvalidConfigError, match="names 'sex' twice"):
        parse_compare_gate({key: {"max_increase": 0.1}}, sets=attribute_sets(["sex", "race"], FairnessConfig()))


# ---- performance rules: "performance.<metric>" on the performance method's interval ----------


def write_accuracy_case(tmp_path, n_right: int, n_wrong: int, gate: str, *, scores: bool = False):
    """A decisions CSV with exactly ``n_right`` correct rows of ``n_right + n_wrong`` (half of
    each outcome; ``scores``: scores that rank every positive above every negative but one pair)."""
    n = n_right + n_wrong
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    pred = y.copy()
    pred[:n_wrong] = 1 - pred[:n_wrong]
    frame = pd.DataFrame({"group": np.where(np.arange(n) % 2, "a", "b"), "y": y, "pred": pred})
    if scores:
        frame["pred"] = np.clip(0.25 + 0.5 * y + np.linspace(-0.2, 0.2, n), 0, 1)
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = tmp_path / "audit.toml"
    cfg.write_text('name = "gate"\n[model]\npredictions = "pred"\n[data]\npath = "d.csv"\n'
                   f'target = "y"\npositive_label = "1"\nsensitive = ["group"]\n{FAST}'
                   f'[methods.performance]\nn_bootstrap = 200\n[gate]\n{gate}\n', encoding="utf-8")
    return cfg


def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    from scipy.stats import beta

    a = 1 - level
    return (beta.ppf(a / 2, k, n - k + 1) if k else 0.0), (beta.ppf(1 - a / 2, k + 1, n - k) if k < n else 1.0)


@pytest.mark.parametrize("threshold, status, code", [(0.85, "pass", 0), (0.9, "inconclusive", 1), (0.93, "breach", 1)])
def test_a_performance_accuracy_rule_is_judged_on_its_exact_interval_with_junit(tmp_path, threshold, status, code):
    """Accuracy 0.9 on 1,000 rows: its Clopper–Pearson interval (0.880, 0.918) clears 0.85,
    straddles 0.9 and lies below 0.93."""
    cfg = write_accuracy_case(tmp_path, 900, 100, f'"performance.accuracy" = {{ min = {threshold} }}')
    junit = tmp_path / "gate.xml"
    res = check(cfg, "--json", "--junit", str(junit))
    assert res.exit_code == code, res.output
    v = json.loads(res.output)["verdicts"][0]
    assert v["key"] == "performance.accuracy" and v["rule"] == f"performance.accuracy >= {threshold:g}"
    assert v["status"] == status and v["value"] == pytest.approx(0.9) and v["confidence"] == 0.95
    assert (v["lower"], v["upper"]) == pytest.approx(_clopper_pearson(900, 1000, 0.95), abs=1e-9)
    if status != "inconclusive":
        assert "at most 2.50% of the time" in v["message"]
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.get("name") == "performance.accuracy"
    assert (case.find("failure") is not None) == (code == 1)


def test_performance_and_fairness_rules_share_one_gate_and_its_bonferroni_correction(tmp_path):
    rules = (f'correction = "bonferroni"\n{DP} = {{ max = 0.5 }}\n"performance.accuracy" = {{ min = 0.85 }}\n'
             '"performance.auc" = { min = 0.6 }\n')
    cfg = write_accuracy_case(tmp_path, 900, 100, rules, scores=True)
    res = check(cfg, "--json")
    verdicts = {v["key"]: v for v in json.loads(res.output)["verdicts"]}
    assert set(verdicts) == {"fairness.group.demographic_parity_difference", "performance.accuracy",
                             "performance.auc"}
    level = 1 - 0.05 / 3
    acc = verdicts["performance.accuracy"]
    assert acc["confidence"] == pytest.approx(level)
    k = round(acc["value"] * 1000)
    assert (acc["lower"], acc["upper"]) == pytest.approx(_clopper_pearson(k, 1000, level), abs=1e-9)
    auc = verdicts["performance.auc"]
    assert auc["status"] == "pass" and auc["confidence"] == pytest.approx(level)
    # the AUC's interval held its level by simulation (benchmarks/auc_interval.py), so its verdict
    # states the bound as accuracy's does
    assert "at most 0.83% of the time" in auc["message"] and "approximate" not in auc["message"]
    assert res.exit_code == 0, res.output


def test_a_performance_rule_on_an_unreliable_interval_is_insufficient_evidence(tmp_path):
    """Four positives: the AUC's interval is marked unreliable (its error rates were simulated
    from 5 rows of a class upwards), so it can neither pass nor breach."""
    y = np.r_[np.ones(4, int), np.zeros(196, int)]
    s = np.clip(np.r_[np.full(4, .7), np.full(196, .2)] + np.linspace(-.1, .1, 200), 0, 1)
    pd.DataFrame({"group": np.where(np.arange(200) % 2, "a", "b"), "y": y, "pred": s}).to_csv(
        tmp_path / "d.csv", index=False)
    cfg = tmp_path / "audit.toml"
    cfg.write_text('[model]\npredictions = "pred"\n[data]\npath = "d.csv"\ntarget = "y"\npositive_label = "1"\n'
                   f'sensitive = ["group"]\n{FAST}[gate]\n"performance.auc" = {{ min = 0.5 }}\n')
    res = check(cfg, "--json")
    assert res.exit_code == 3, res.output
    v = json.loads(res.output)["verdicts"][0]
    assert v["status"] == "insufficient" and "unreliable: 4 in the smallest class" in v["message"]


def test_audit_run_judges_a_performance_rule_only_when_the_performance_method_runs(tmp_path):
    cfg = write_accuracy_case(tmp_path, 900, 100, '"performance.accuracy" = { min = 0.85 }')
    for methods, status in (("fairness,performance", "pass"), ("fairness", "insufficient")):
        out = tmp_path / f"out-{status}"
        res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "-q", "--format", "json",
                                       "--methods", methods])
        assert res.exit_code == 0, res.output
        v = json.loads((out / "results.json").read_text())["gate"]["verdicts"][0]
        assert v["status"] == status, v
    assert "performance method was not selected" in v["message"]


@pytest.mark.parametrize("gate, message", [
    ('"performance.ece" = { max = 0.05 }', "has no interval"),
    ('"performance.acuracy" = { min = 0.8 }', "Did you mean 'accuracy'"),
    ('"performance.r2" = { min = 0.5 }', "for binary tasks"),
    ('"performance.auc" = { min = 0.8, small_groups = "ignore" }', "for fairness rules"),
    ('"performance.auc" = { min = nan }', "finite number"),
    ('"perf.auc" = { min = 0.8 }', "performance.<metric>"),
])
def test_exit_2_invalid_performance_rules(tmp_path, gate, message):
    cfg = write_accuracy_case(tmp_path, 90, 10, gate)
    res = check(cfg)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_a_performance_rule_on_a_streamed_audit_is_refused_before_reading_it(tmp_path):
    cfg = write_accuracy_case(tmp_path, 90, 10, '"performance.accuracy" = { min = 0.8 }')
    cfg.write_text(cfg.read_text().replace('path = "d.csv"\n', 'path = "d.csv"\nstream = true\n'))
    res = check(cfg)
    assert res.exit_code == 2, res.output
    assert "performance" in res.output and "[gate] rule" in " ".join(res.output.split())


@pytest.mark.slow
@pytest.mark.parametrize("n", [30, 200, 2000])
@pytest.mark.parametrize("metric, truth", [("accuracy", 0.5), ("accuracy", 0.97), ("balanced_accuracy", 0.75),
                                           ("balanced_accuracy", 0.95)])
def test_a_performance_rule_at_the_true_value_passes_or_breaches_at_most_its_error_rate(n, metric, truth):
    """When the true accuracy (or balanced accuracy) equals the threshold, neither ``min`` nor
    ``max`` may pass more than (1 − c)/2 = 2.5 % of the time (+ 3 Monte Carlo SE): each bound of
    the interval errs on its own side at most that often (a breach of ``min`` is a pass of
    ``max`` seen from the other side). Tiny samples and rates near 1 included: Clopper–Pearson is
    exact, MOVER is checked here."""
    from audit.core.adapter import PredictionsAdapter
    from audit.core.dataset import DatasetSpec, build_audit_data
    from audit.core.method import RunContext
    from audit.gate import GateRule, evaluate
    from audit.methods.performance import Performance, PerformanceConfig

    rng = np.random.default_rng(n)
    reps, pass_min, pass_max = 600, 0, 0
    rules = [GateRule(f"performance.{metric}", None, metric, min=truth, section="performance"),
             GateRule(f"performance.{metric}", None, metric, max=truth, section="performance")]
    for _ in range(reps):
        y = (rng.random(n) < 0.5).astype(int)
        if metric == "accuracy":
            right = rng.random(n) < truth
        else:  # TPR = truth + 0.02, FPR = 1 − truth + 0.02: (1 + TPR − FPR) / 2 = truth
            right = np.where(y == 1, rng.random(n) < truth + 0.02, rng.random(n) < truth - 0.02)
        pred = np.where(right, y, 1 - y)
        data = build_audit_data(pd.DataFrame({"y": y, "pred": pred, "x": 0.0}),
                                DatasetSpec(target="y", predictions="pred", features=("x",)))
        result = Performance().run(PredictionsAdapter(task="binary", column="pred"), data,
                                   PerformanceConfig(n_bootstrap=0), RunContext.default(0))
        low, high = evaluate(rules, result, confidence=0.95).verdicts
        pass_min += low.status == "pass"
        pass_max += high.status == "pass"
    slack = 3 * np.sqrt(0.025 * 0.975 / reps)
    assert pass_min / reps <= 0.025 + slack and pass_max / reps <= 0.025 + slack, (pass_min, pass_max)
