"""The report: self-contained, injection-proof HTML; a PDF that fetches nothing; atomic writes."""

from __future__ import annotations

import http.server
import json
import re
import threading

import numpy as np
import pytest

from audit.errors import ReportRenderError
from audit.report.render import render_html, render_pdf, write_report
from audit.runner import audit_model
from tests.conftest import make_frame

HOSTILE = ["<script>alert('x')</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
           "{{ 7*191*1009 }}", "file:///etc/passwd"]


@pytest.fixture(scope="module")
def hostile_report():
    """A report whose column names, category values and title are hostile strings."""
    frame = make_frame(300)
    frame = frame.rename(columns={"hours": HOSTILE[0], "job": HOSTILE[1]})
    frame[HOSTILE[1]] = frame[HOSTILE[1]].map({"clerk": HOSTILE[2], "exec": HOSTILE[3], "tech": HOSTILE[4]})
    frame["sex"] = frame["sex"].map({"Female": HOSTILE[1], "Male": HOSTILE[0]})
    report = audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), frame, target="income",
                         positive_label=">50K", sensitive=["sex"], name="hostile")
    report.title = f"Audit {HOSTILE[0]} {HOSTILE[3]}"
    return report


def test_html_is_self_contained(hostile_report):
    html = render_html(hostile_report)
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "<link" not in html.lower()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(?:href|src)=\"(?:https?:|file:|//)", html)


def test_user_strings_are_escaped_never_live_markup(hostile_report):
    html = render_html(hostile_report)
    for s in (HOSTILE[0], HOSTILE[1]):
        assert s not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "{{ 7*191*1009 }}" in html and ">1349033<" not in html  # shown literally, not evaluated
    assert 'href="javascript:' not in html


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"body { color: red }")

    def log_message(self, *args):
        pass


def test_pdf_renderer_fetches_no_url_and_embeds_no_local_file():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/probe"
    try:
        html = (f'<html><head><link rel="stylesheet" href="{url}.css"></head><body><p>x</p>'
                f'<img src="{url}.png"><img src="file:///etc/passwd">'
                f'<object data="file:///etc/passwd"></object>'
                f'<div style="background: url({url}-bg)"></div></body></html>')
        pdf = render_pdf(html)
    finally:
        server.shutdown()
    assert pdf.startswith(b"%PDF")
    assert _Recorder.hits == []
    assert b"root:x:0" not in pdf


def test_pdf_of_a_report_renders_and_keeps_text(hostile_report):
    pdf = render_pdf(render_html(hostile_report))
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000


def test_existing_report_is_never_overwritten_by_accident(hostile_report, tmp_path):
    out = tmp_path / "r"
    write_report(hostile_report, out, formats=("json",))
    before = (out / "results.json").read_bytes()
    with pytest.raises(ReportRenderError, match="already exists"):
        write_report(hostile_report, out, formats=("json",))
    assert (out / "results.json").read_bytes() == before


def test_failed_render_leaves_the_previous_report_and_no_partial_output(hostile_report, tmp_path, monkeypatch):
    out = tmp_path / "r"
    write_report(hostile_report, out, formats=("json", "html"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(html):
        raise ReportRenderError("simulated PDF failure")

    monkeypatch.setattr("audit.report.render.render_pdf", boom)
    with pytest.raises(ReportRenderError):
        write_report(hostile_report, out, formats=("json", "html", "pdf"), overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_overwrite_replaces_the_report_completely(hostile_report, tmp_path):
    out = tmp_path / "r"
    write_report(hostile_report, out, formats=("json", "html"))
    write_report(hostile_report, out, formats=("json",), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".audit-report", "results.json"]


def test_results_json_holds_the_reported_numbers_under_stable_keys(hostile_report):
    doc = json.loads(hostile_report.json_bytes())
    assert list(doc) == ["schema", "name", "title", "model", "data", "findings", "methods",
                         "limitations", "provenance"]
    surrogate = doc["methods"]["surrogate"]
    assert surrogate["status"] == "ok"
    assert surrogate["result"]["fidelity"] == hostile_report.outcome("surrogate").result.fidelity
    prov = doc["provenance"]
    assert {"seed", "command", "timestamp", "packages", "files", "trust_pickle"} <= set(prov)


def test_same_seed_gives_identical_results_json_apart_from_the_timestamp(hostile_report):
    frame = make_frame(300)
    runs = [audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), frame, target="income",
                        positive_label=">50K", sensitive=["sex"]).to_json() for _ in range(2)]
    for r in runs:
        r["provenance"].pop("timestamp")
        r["provenance"].pop("audit_suite_commit")  # changes if someone commits between the runs
        r["provenance"].pop("plan")  # measured seconds: estimates and actual times differ per run
    assert json.dumps(runs[0]) == json.dumps(runs[1])


def test_a_figure_that_fails_to_draw_is_a_limitation_not_a_broken_report(hostile_report, monkeypatch):
    from audit.methods.surrogate import Surrogate

    def broken(self, result, data):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(Surrogate, "figures", broken)
    html = render_html(hostile_report)
    assert "Figures of &#39;Global surrogate tree&#39; could not be drawn: no canvas." in html


def test_run_audit_leaves_the_callers_torch_thread_count_alone():
    import torch

    torch.set_num_threads(2)
    try:
        audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), make_frame(100), target="income",
                    positive_label=">50K", methods=["surrogate"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_a_method_the_data_cannot_support_is_skipped_and_the_others_still_run(monkeypatch):
    from audit.errors import DataValidationError
    from audit.methods.surrogate import Surrogate

    def refuse(self, model, data, config, ctx):
        raise DataValidationError("the model never predicts the target class")

    monkeypatch.setattr(Surrogate, "run", refuse)
    report = audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), make_frame(200), target="income",
                         positive_label=">50K", sensitive=["sex"], methods=["surrogate", "fairness"],
                         method_options={"fairness": {"n_bootstrap": 100, "n_permutations": 99}})
    skipped = report.outcome("surrogate").result
    assert not skipped.failed and "never predicts" in skipped.reason
    assert report.outcome("fairness").ok


def test_the_stylesheet_is_inlined_verbatim(hostile_report):
    from audit.report.render import templates_dir

    css = (templates_dir() / "static" / "report.css").read_text(encoding="utf-8")
    assert css in render_html(hostile_report)


# ---- user strings: bidi isolation per value, literal text in figures (issue 12) ------------

RLO, RLE, LRO, LRI, RLI = "\u202e", "\u202b", "\u202d", "\u2066", "\u2067"
FAST = {"fairness": {"n_bootstrap": 200, "n_permutations": 0, "what_if": False}}


def _gap_report(level: str = "Female", column: str = "sex"):
    """A planted selection-rate gap (the model scores age; the first group is 25 years
    younger), so the fairness findings name the group in the middle of a sentence."""
    frame = make_frame(400)
    young = frame["sex"] == "Female"
    frame.loc[young, "age"] = frame.loc[young, "age"] - 25
    frame["sex"] = frame["sex"].map({"Female": level, "Male": "Male"})
    frame = frame.rename(columns={"sex": column})
    return audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), frame, target="income",
                       positive_label=">50K", sensitive=[column], methods=["fairness"],
                       method_options=FAST)


def _isolated_everywhere(html: str, value: str) -> None:
    from audit.core.text import FSI, PDI

    hits = [i for i in range(len(html)) if html.startswith(value, i)]
    assert hits
    for i in hits:
        assert html[i - 1] == FSI, ascii(html[max(0, i - 40):i + 40])
        assert html[i + len(value)] == PDI, ascii(html[max(0, i - 40):i + 40])


@pytest.mark.parametrize("control", [RLO, RLE, LRO, LRI, RLI])
def test_isolate_fragments_closes_each_value_before_the_next_word(control):
    from audit.core.text import FSI, PDI, isolate_fragments

    value = f"{control}elameF"
    out = isolate_fragments(f"the selection rate of {value} (sex) is below 80%", [value])
    assert out == f"the selection rate of {FSI}{value}{PDI} (sex) is below 80%"
    # a longer value that contains a shorter one is isolated once, as a whole
    both = isolate_fragments(f"{value}*Male{control} and {value}", [value, f"{value}*Male{control}"])
    assert both == f"{FSI}{value}*Male{control}{PDI} and {FSI}{value}{PDI}"


def test_an_unterminated_override_in_a_level_ends_with_the_level_in_finding_sentences():
    """"... the selection rate of <level> (sex) is below ...": in the HTML the override closes
    right after the level, so the words that follow it are not reversed."""
    level = f"{RLO}elameF"
    report = _gap_report(level)
    composed = [f.text for f in report.findings if level in f.text and not f.text.endswith(level)]
    assert composed, [f.text for f in report.findings]  # the sentence this test is about
    _isolated_everywhere(render_html(report), level)


def test_an_unterminated_override_in_a_column_name_ends_with_the_name():
    name = f"se{RLO}x"
    _isolated_everywhere(render_html(_gap_report(column=name)), name)


def test_visible_spells_out_controls_and_keeps_letters_of_every_script():
    from audit.core.text import visible, xml_text

    assert visible("sex\x1b[2J\x07\r\n\t") == "sex\\x1b[2J\\x07\\x0d\\x0a\\x09"
    assert visible(f"a{RLO}b\u2069\u200fc\x85") == "a\\u202eb\\u2069\\u200fc\\x85"
    letters = "\u05de\u05d2\u05d3\u05e8 \u0627\u0644\u062c\u0646\u0633 \u00e9\u4e2d \U0001f600"
    assert visible(letters) == letters
    assert xml_text("a\ud800b\ufffe") == "a\\ud800b\\ufffe"


MATH = ["a$^$b", "$\\frac{$", "$\\frac{", "x_1$ and $\\undefined$"]


def test_mathtext_in_user_names_raises_in_plain_matplotlib():
    """The hazard is real: with mathtext on, savefig raises on such a name."""
    import io

    import matplotlib

    from audit.core.plots import pyplot

    plt = pyplot()
    with matplotlib.rc_context({"text.parse_math": True}):
        fig, ax = plt.subplots()
        ax.set_title(MATH[0])
        with pytest.raises(ValueError):
            fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def test_figures_with_mathtext_names_are_drawn_as_literal_text():
    import base64

    import matplotlib

    from audit.core.plots import pyplot
    from audit.report.render import figure_uri

    # texts created while mathtext was on (as a library or a style context may do)
    plt = pyplot()
    with matplotlib.rc_context({"text.parse_math": True}):
        fig, ax = plt.subplots()
        ax.barh(range(len(MATH)), [1, 2, 3, 4], label=MATH[1])
        ax.set_yticks(range(len(MATH)), labels=MATH)
        ax.set_title(f"Rates by {MATH[0]}")
        ax.legend()
    png = base64.b64decode(figure_uri(fig).split(",", 1)[1])
    assert png.startswith(b"\x89PNG")


def test_a_figure_matplotlib_cannot_save_is_a_stated_note_and_the_report_is_written(
        monkeypatch, tmp_path):
    """savefig refuses a 10-million-pixel-high figure: the HTML is still written and names the
    missing figure (a note of this rendering: results.json, the same whichever formats are
    written, holds results only); the other figures of the method are kept."""
    from audit.core.plots import new_figure
    from audit.methods.fairness import Fairness

    def figures(self, result, data):
        huge, ax = new_figure()
        ax.plot([0, 1], [0, 1])
        huge.set_size_inches(6.5, 70000)
        fine, ax = new_figure()
        ax.plot([0, 1], [0, 1])
        return {"huge": huge, "fine": fine}

    monkeypatch.setattr(Fairness, "figures", figures)
    report = _gap_report()
    files = write_report(report, tmp_path / "out", formats=("html", "json"))
    html = files["html"].read_text(encoding="utf-8")
    assert "Figure &#39;huge&#39; of &#39;Group fairness&#39; could not be drawn: Image size" in html
    assert "could not be drawn" not in files["json"].read_text(encoding="utf-8")
    assert "Figure &#39;fine&#39;" not in html and "figs.fine" not in html


@pytest.mark.slow
def test_every_methods_figures_draw_names_with_mathtext(tmp_path):
    """Every registered method on a torch MLP whose feature, level and group names are mathtext
    ("a$^$b", "$\\frac{$", ...): every figure is drawn, none becomes a 'could not be drawn'."""
    from audit.config import AuditPlan
    from audit.core.dataset import Encoding
    from audit.registry import METHODS
    from audit.runner import run_audit
    from tests.conftest import write_model_dir
    from tests.test_methods_common import FAST_OPTIONS

    frame = make_frame(400).rename(columns={"hours": "a$^$b", "job": "$\\frac{$"})
    frame["$\\frac{$"] = frame["$\\frac{$"].map({"clerk": "$x$", "exec": "$\\frac{$", "tech": "t$"})
    frame["sex"] = frame["sex"].map({"Female": "$\\frac{$", "Male": "x_1$ and $\\undefined$"})
    write_model_dir(tmp_path, frame, Encoding.fit(frame[["age", "a$^$b", "$\\frac{$"]]),
                    'name = "math"\n[model]\npath = "model.safetensors"\narchitecture = "architecture.json"\n'
                    'encoding = "encoding.json"\n[data]\npath = "data.csv"\ntrain_path = "data.csv"\n'
                    'target = "income"\npositive_label = ">50K"\nsensitive = ["sex"]\n')
    plan = AuditPlan.load(tmp_path / "audit.toml").with_overrides(
        method_options={m.name: FAST_OPTIONS.get(m.name, {}) for m in METHODS})
    report = run_audit(plan)
    html = render_html(report)
    assert not [n for n in report.limitations if "could not be drawn" in n], report.limitations
    assert html.count("data:image/png;base64,") >= 10


def test_a_p_value_in_a_sentence_reads_p_less_than_and_no_template_writes_p_equals_before_one():
    """One helper words a p-value in text: "p < 0.001", never "p = < 0.001"."""
    import re
    from pathlib import Path

    from audit.report.render import fmt_p_is

    assert (fmt_p_is(0.0004), fmt_p_is(0.0123), fmt_p_is(None)) == ("p < 0.001", "p = 0.012", "p = —")
    templates = Path(__file__).resolve().parent.parent / "templates"
    for path in templates.rglob("*.j2"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"p = \{\{[^}]*pvalue", text), path
