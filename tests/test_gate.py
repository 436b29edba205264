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

FAST = "[methods.fairness]\nn_boot = 300\nn_permutations = 99\nwhat_if = false\n"


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
