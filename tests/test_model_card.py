"""Model cards from evidence (audit/report/card.py, templates/model_card.md.j2).

The card is checked from the outside: it is parsed as Markdown (markdown-it-py, CommonMark +
tables) and as text, every number on a line that names a results.json key is compared with
the values under that key, and the front matter is read with ``yaml.safe_load``.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from audit.cli import app
from audit.config import AuditPlan
from audit.errors import InvalidConfigError
from audit.report.card import CARD_FIELDS, md_block, md_inline, render_card, to_yaml

SHARED = Path(__file__).resolve().parent / "bad_inputs" / "_shared"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# A number as the card writes one: 1,234 / -0.5 / 9.86e-04 / 95%
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?")
HEX = re.compile(r"\b[0-9a-f]{12,64}\b")
CARD = {
    "description": "A small MLP fitted to a planted rule.",
    "owners": ["The audit-suite developers"],
    "license": "mit",
    "intended_use": "Testing audit-suite.\n\nNothing else.",
    "out_of_scope_uses": ["Decisions about people"],
    "training_data": "The same planted rule.",
    "ethical_considerations": "None beyond the test.",
    "recommendations": "Do not deploy.",
    "front_matter": True,
    "tags": ["test"],
}


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[str, dict]:
    """A real audit with performance, fairness, SHAP, LIME and a gate, and its model card."""
    work = tmp_path_factory.mktemp("card") / "case"
    shutil.copytree(SHARED, work)
    cfg = work / "audit.toml"
    cfg.write_text(cfg.read_text().replace('formats = ["json"]', 'formats = ["json", "card"]')
                   + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.5 }\n'
                   + "\n[card]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in CARD.items()),
                   encoding="utf-8")
    out = work / "out"
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "-q", "--full",
                                   "--methods", "performance,fairness,shap,lime"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return (out / "model_card.md").read_text(encoding="utf-8"), json.loads((out / "results.json").read_text())


def _resolve(doc, key: str):
    node = doc
    for raw in key.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _numbers_under(node) -> list[float]:
    """Every number at or below a results.json node: numeric leaves, list lengths, and numbers
    written inside its strings (an interval's description, a quoted finding)."""
    out: list[float] = []
    if isinstance(node, bool) or node is None:
        return out
    if isinstance(node, (int, float)):
        return [float(node)]
    if isinstance(node, str):
        return [_parse(m) for m in NUMBER.findall(HEX.sub("", node))]
    if isinstance(node, list):
        out.append(float(len(node)))
    for v in (node.values() if isinstance(node, dict) else node):
        out += _numbers_under(v)
    return out


def _parse(token: str) -> float:
    value = float(token.rstrip("%").replace(",", ""))
    return value / 100 if token.endswith("%") else value


def _tolerance(token: str) -> float:
    """Half a unit of the last digit shown (0.970 -> 0.0005; 9.86e-04 -> 0.005e-04)."""
    mantissa, _, exp = token.rstrip("%").partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    scale = 10.0 ** int(exp) if exp else 1.0
    tol = 0.5 * 10.0 ** -decimals * scale
    return tol / 100 if token.endswith("%") else tol


def _body(card: str) -> str:
    return card.split("\n---\n", 1)[1] if card.startswith("---\n") else card


def test_every_number_on_a_measured_line_equals_the_results_json_key_it_names(run):
    card, results = run
    checked = 0
    for line in _body(card).splitlines():
        keys = [k.replace("\\|", "|") for _, k in re.findall(r"(`+)(/[^`]*)\1", line)]
        if not keys:
            continue
        # the values under each key, and digits of the names in the key itself (px[2,5])
        allowed = [x for k in keys for x in [*_numbers_under(_resolve(results, k)), *_numbers_under(k)]]
        text = HEX.sub("", re.sub(r"`+/[^`]*`+", "", line))
        for token in NUMBER.findall(text):
            value, tol = _parse(token), _tolerance(token)
            assert any(abs(value - a) <= tol * (1 + 1e-9) for a in allowed), (token, keys, line)
            checked += 1
    assert checked > 100  # performance, groups, disparities, gate, attributions, findings
    for key in ("/methods/performance/result/metrics/accuracy", "/gate/verdicts/0",
                "/methods/fairness/result/attributes/sex/groups/0",
                "/methods/shap/result/global_importance/job"):
        assert f"`{key}`" in card


def test_card_quotes_every_interval_the_results_hold(run):
    """Measured values come WITH their intervals: each performance metric and disparity whose
    results have bounds shows both, rounded as the card rounds."""
    from audit.report.render import fmt_number

    card, results = run
    rows = {k: line for line in card.splitlines() for k in re.findall(r"`(/[^`]*)`", line)}
    perf = results["methods"]["performance"]["result"]["metrics"]
    for name, m in perf.items():
        line = rows[f"/methods/performance/result/metrics/{name}"]
        if m["lower"] is not None:
            assert f"{fmt_number(m['lower'])}–{fmt_number(m['upper'])}" in line
    dp = results["methods"]["fairness"]["result"]["attributes"]["sex"]["disparities"]["demographic_parity_difference"]
    line = rows["/methods/fairness/result/attributes/sex/disparities/demographic_parity_difference"]
    assert f"{fmt_number(dp['estimate']['lower'])}–{fmt_number(dp['estimate']['upper'])}" in line


def test_front_matter_is_yaml_with_the_measured_metrics(run):
    card, results = run
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("\n---\n", 1)[0][4:])
    assert meta["license"] == "mit" and meta["tags"] == ["audit-suite", "test"]
    (entry,) = meta["model-index"]
    assert entry["name"] == results["name"]
    (res,) = entry["results"]
    assert res["task"]["type"] == "tabular-classification"
    assert res["dataset"] == {"type": "data.csv", "name": "data.csv"}
    perf = results["methods"]["performance"]["result"]["metrics"]
    hf = {"roc_auc": "auc", "brier_score": "brier"}
    by_type = {m["type"]: m for m in res["metrics"]}
    for name, m in perf.items():
        metric = next(v for k, v in by_type.items() if hf.get(k, k) == name)
        assert metric["value"] == m["value"] and metric["verified"] is False
    dp = results["methods"]["fairness"]["result"]["attributes"]["sex"]["disparities"]["demographic_parity_difference"]
    assert by_type["demographic_parity_difference"]["value"] == dp["estimate"]["value"]
    assert "sex" in by_type["demographic_parity_difference"]["name"]


def test_authors_sections_are_quoted_and_missing_ones_marked(run):
    card, results = run
    for key, value in CARD.items():
        if CARD_FIELDS[key].section != "front_matter":
            assert md_block(value) in card
    assert "**Missing:**" not in card
    bare = render_card({k: v for k, v in results.items() if k != "card"})
    expected = [k for k, f in CARD_FIELDS.items() if f.expected]
    assert bare.count("**Missing:**") == len(expected) == 8
    for key in expected:
        assert f"add `{key}` to the `[card]` table" in bare
    assert "** (from the authors):" not in bare and not bare.startswith("---")  # nothing invented


def test_a_card_value_cannot_inject_headings_html_links_or_tables(run):
    _, results = run
    hostile = ("# Heading\n<script>alert(1)</script>\n<img src=x onerror=y>\n\n"
               "[click](javascript:alert(1)) ![i](http://evil.example/i.png) <http://evil.example> "
               "https://evil.example www.evil.example a@evil.example $x^2$ `code` **bold** ~~s~~ "
               "&amp; [^1]\n| a | b |\n|---|---|\n=====\n    indented code\n1. list\n- item\n> quote\n"
               "```\nfence\n```\n\u202eevil\x1b[2J")
    card = {k: hostile for k, f in CARD_FIELDS.items() if f.kind == "text" and f.section != "front_matter"}
    card["out_of_scope_uses"] = [hostile, "1. two"]
    clean = render_card(results, {})
    dirty = render_card({**results, "card": card})
    md = _markdown()

    def structure(text: str) -> tuple[list, list]:
        tokens = md.parse(text)
        heads = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
        kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
        return heads, sorted(kinds)

    heads_clean, _ = structure(clean)
    heads_dirty, kinds = structure(dirty)
    assert heads_dirty == [*heads_clean, "Notes (from the authors)"]
    assert not {"html_block", "html_inline", "link_open", "image", "fence", "code_block",
                "blockquote_open", "ordered_list_open", "hr", "s_open"} & set(kinds)
    assert "http://" not in dirty and "https://" not in dirty and "\u202e" not in dirty and "\x1b" not in dirty
    assert md.render(dirty).count("<table>") == md.render(clean).count("<table>")
    # the words are all still there, as text
    assert "alert(1)" in md.render(dirty) and "\\u202eevil" in md.render(dirty)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_md_inline_renders_as_exactly_the_text_given(text):
    """Whatever the string, Markdown shows it as written (whitespace collapsed, invisible
    controls spelled out) and makes nothing of it: one paragraph of plain text."""
    from audit.core.text import visible

    shown = md_inline(text)
    tokens = MarkdownIt("commonmark").parse(f"x {shown}")
    if not " ".join(text.split()):
        return
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"], (text, shown)
    children = tokens[1].children
    assert {c.type for c in children} <= {"text"}, (text, shown)
    assert "".join(c.content for c in children) == "x " + visible(" ".join(text.split())).strip()


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.integers(-10**6, 10**6) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(min_size=1, max_size=10), kids, max_size=3), max_leaves=12))
def test_front_matter_yaml_reads_back_as_written(value):
    doc = {"model-index": value}
    assert yaml.safe_load(to_yaml(doc)) == doc


@pytest.mark.parametrize(("table", "message"), [
    ({"intnded_use": "x"}, "Unknown key 'intnded_use' in [card]. Did you mean 'intended_use'?"),
    ({"license": 3}, "The [card] 'license' must be non-empty text"),
    ({"owners": ["a", ""]}, "The [card] 'owners' must be non-empty text"),
    ({"front_matter": "yes"}, "The [card] 'front_matter' must be true or false. Got 'yes' instead."),
    ({"tags": "x"}, "The [card] 'tags' must be a list of non-empty strings"),
    ({"notes": "x" * 20_001}, "of at most 20,000 characters"),
])
def test_card_table_is_validated_like_every_table(table, message):
    with pytest.raises(InvalidConfigError) as err:
        AuditPlan.from_dict({"data": {"path": "d.csv"}, "model": {"predictions": "p"}, "card": table},
                            base_dir=Path("/tmp"))
    assert message in str(err.value)


def test_a_bad_card_table_is_exit_2_before_any_work(tmp_path):
    work = tmp_path / "case"
    shutil.copytree(SHARED, work)
    cfg = work / "audit.toml"
    cfg.write_text(cfg.read_text() + '\n[card]\nlicence = "mit"\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(work / "out"), "-q"])
    assert res.exit_code == 2
    assert "Unknown key 'licence' in [card]. Did you mean 'license'?" in res.output
    assert "Traceback" not in res.output and not (work / "out").exists()


def test_summary_has_one_row_per_measured_quantity_with_its_key(run):
    """report.summary()'s rows are the card's quantities: each value and bound equals results.json
    at the row's key."""
    import pandas as pd

    from audit.report.card import SUMMARY_COLUMNS, summary_rows

    _, results = run
    frame = pd.DataFrame(summary_rows(results), columns=list(SUMMARY_COLUMNS))
    assert list(frame.columns) == ["method", "what", "finding", "value", "lower", "upper", "level", "interval",
                                   "test", "verdict", "group", "key"]
    assert {"performance", "fairness", "gate", "shap", "lime"} <= set(frame.method)
    disparities = frame[frame.key.str.contains("/disparities/")]
    assert len(disparities) and disparities.test.notna().any()
    for row in disparities.itertuples():  # the interval column says how the interval was made, not the test
        est = _resolve(results, row.key).get("estimate", {})
        interval = row.interval if isinstance(row.interval, str) else None  # pandas reads a null as NaN
        assert interval == est.get("method") and row.interval != row.test
    for row in frame[frame.finding.notna()].itertuples():
        node = _resolve(results, row.key)
        assert (row.finding, row.verdict, row.what) == (node["text"], node["level"], "finding")
    for row in frame[frame.finding.isna()].itertuples():
        node = _resolve(results, row.key)
        node = node.get("estimate", node) if isinstance(node, dict) else node
        value = node["value"] if isinstance(node, dict) else node
        assert value == row.value or (value is None and pd.isna(row.value))


def test_audit_card_rewrites_the_card_from_results_json_and_a_newer_card_table(run, tmp_path):
    card, results = run
    res_path = tmp_path / "results.json"
    res_path.write_text(json.dumps(results), encoding="utf-8")
    cfg = tmp_path / "audit.toml"
    cfg.write_text('[card]\nintended_use = "Changed after the run."\n', encoding="utf-8")
    out = tmp_path / "model_card.md"
    res = CliRunner().invoke(app, ["card", str(res_path)])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8") == card  # the stored [card] table: the same card
    res = CliRunner().invoke(app, ["card", str(res_path), "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "\nChanged after the run.\n" in out.read_text(encoding="utf-8")
    assert "**Missing:** Owners" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", ["not_ours", "bad_json", "other_schema", "wrong_shape", "is_input"])
def test_audit_card_refuses_bad_input_with_exit_2(run, tmp_path, case):
    _, results = run
    res_path = tmp_path / "results.json"
    res_path.write_text(json.dumps(results), encoding="utf-8")
    out = tmp_path / "card.md"
    if case == "not_ours":
        out.write_text("# My own notes\n", encoding="utf-8")
    elif case == "bad_json":
        res_path.write_text("{", encoding="utf-8")
    elif case == "other_schema":
        res_path.write_text(json.dumps({**results, "schema": "x"}), encoding="utf-8")
    elif case == "wrong_shape":
        res_path.write_text(json.dumps({**results, "methods": {"performance": {"status": "ok", "result": 3}}}),
                            encoding="utf-8")
    elif case == "is_input":
        out = res_path
    before = res_path.read_bytes()
    res = CliRunner().invoke(app, ["card", str(res_path), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output
    assert res_path.read_bytes() == before
    if case == "not_ours":
        assert out.read_text(encoding="utf-8") == "# My own notes\n"


def test_model_card_is_written_by_default():
    plan = AuditPlan.from_dict({"data": {"path": "d.csv"}, "model": {"predictions": "p"}}, base_dir=Path("/tmp"))
    assert plan.formats == ("html", "pdf", "json", "card")


def test_notebook_display_and_summary_of_an_in_memory_audit():
    """The Python API's report shows itself in Jupyter with escaped names, and summary() is a
    DataFrame of the measured quantities whose numbers are results.json's."""
    import numpy as np
    import pandas as pd

    import audit

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=200), "g": rng.choice(["<script>alert(1)</script>", "b"], 200)})
    df["y"] = (df.x + rng.normal(size=200) > 0).astype(int)
    report = audit.audit_model(lambda X: 1 / (1 + np.exp(-2 * X[:, 0])), df, target="y", sensitive=["g"],
                               methods=["performance", "fairness"], card={"intended_use": "A test."},
                               name="<script>alert(1)</script>")
    html = report._repr_html_()
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "Executive summary" in html and "data:image/png;base64," in html
    frame = report.summary()
    assert isinstance(frame, pd.DataFrame) and frame["value"].dtype == "float64"
    # every sentence the display states is a row of the frame, with its level
    import html as html_lib

    shown = [(lv, html_lib.unescape(re.sub(r"<[^>]+>", "", t)).strip()) for lv, t in
             re.findall(r'<li class="finding (\w+)"><span class="level">\w+</span>(.*?)</li>', html, re.S)]
    assert shown and len(shown) == len(report.findings)
    rows = set(zip(frame.verdict[frame.finding.notna()], frame.finding.dropna()))
    assert all((lv, " ".join(t.split())) in {(v, " ".join(f.split())) for v, f in rows} for lv, t in shown)
    results = report.to_json()
    acc = frame.set_index("key").loc["/methods/performance/result/metrics/accuracy"]
    assert acc.value == results["methods"]["performance"]["result"]["metrics"]["accuracy"]["value"]
    assert acc.level == 0.95 and acc.lower < acc.value < acc.upper
    assert results["card"] == {"intended_use": "A test."} and "\nA test.\n" in report.model_card()
    with pytest.raises(InvalidConfigError, match="Unknown key 'owner' in \\[card\\]"):
        audit.audit_model(lambda X: X[:, 0] * 0 + 0.5, df, target="y", methods=["performance"],
                          card={"owner": "x"})


def test_example_cards_are_generated_from_their_audits():
    """Each bundled MODEL_CARD.md is the generator's output: it quotes the [card] table of its
    audit.toml as the generator renders it, and measured lines name results.json keys."""
    for folder in sorted(p for p in EXAMPLES.iterdir() if (p / "audit.toml").exists()):
        card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
        table = tomllib.loads((folder / "audit.toml").read_text(encoding="utf-8"))["card"]
        assert "Written by audit-suite" in card and "`/methods/performance/result/metrics/" in card, folder
        for key, value in table.items():
            if CARD_FIELDS[key].section != "front_matter":
                assert md_block(value) in card, (folder.name, key)
        if table.get("front_matter"):
            meta = yaml.safe_load(card.split("\n---\n", 1)[0][4:])
            assert meta["model-index"][0]["name"] == folder.name


def test_readme_names_every_card_key():
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Model cards from evidence", 1)[1].split("\n### ", 1)[0]
    assert {k for k in CARD_FIELDS if f"`{k}`" not in section} == set()
    expected = [k for k, f in CARD_FIELDS.items() if f.expected]
    assert ", ".join(f"`{k}`" for k in expected) in " ".join(section.split())
