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
           "{{ 7*7 }}", "file:///etc/passwd"]


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
    assert "{{ 7*7 }}" in html and ">49<" not in html  # shown literally, not evaluated
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
                         method_options={"fairness": {"n_boot": 100, "n_permutations": 99}})
    skipped = report.outcome("surrogate").result
    assert not skipped.failed and "never predicts" in skipped.reason
    assert report.outcome("fairness").ok


def test_the_stylesheet_is_inlined_verbatim(hostile_report):
    from audit.report.render import templates_dir

    css = (templates_dir() / "static" / "report.css").read_text(encoding="utf-8")
    assert css in render_html(hostile_report)
