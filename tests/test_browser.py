"""The HTML report in a real browser: headless Chromium with every network request trapped.

Chromium runs with the flags that work on these machines (no sandbox as root, no GPU, no
background networking) and with ``--proxy-server`` pointing at a local recording server, so any
http(s) request the page makes -- an image, a stylesheet, a font -- arrives there instead of the
network. Console messages are read from Chromium's log (``--enable-logging=stderr``): the report
has no scripts and a strict Content-Security-Policy, so *any* console line (an error, a CSP
violation) is a failure. A canary page checks that the harness does see both.

Skipped only when no Chromium is installed locally; CI installs Debian's (``.ci/run``).
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")

SHARED = Path(__file__).resolve().parent / "bad_inputs" / "_shared"
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "ci-artifacts"  # gitignored
# Chromium's own housekeeping requests (component updates, time sync, sign-in), which some
# builds send despite --disable-background-networking. A report never names these hosts.
_BROWSER_HOSTS = re.compile(r"(^|[./])(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)(:\d+)?($|/)")


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def _record(self) -> None:
        target = self.path
        host = target.split("://", 1)[-1].split("/", 1)[0]
        if not _BROWSER_HOSTS.search(host):
            _Recorder.hits.append(f"{self.command} {target}")
        self.send_response(404 if self.command != "CONNECT" else 403)
        self.end_headers()

    do_GET = do_POST = do_HEAD = do_CONNECT = _record

    def log_message(self, *args):  # noqa: D102
        pass


@pytest.fixture(scope="module")
def proxy():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _chromium(url: str, proxy, tmp: Path, *, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """Load ``url``; return the DOM after load (or '' for a screenshot run) and console lines."""
    _Recorder.hits.clear()
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--disable-extensions", "--no-pings",
            "--disable-domain-reliability", "--disable-client-side-phishing-detection",
            f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
            "--log-level=0", f"--proxy-server=http://127.0.0.1:{proxy.server_port}",
            "--proxy-bypass-list=<-loopback>", "--window-size=1280,2400"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=90)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def _rendered_offline(url: str, proxy, tmp: Path, artifact: str) -> str:
    """Load ``url`` twice (screenshot, then DOM): no console line, no request, a non-blank page
    kept as a CI artifact. Returns the DOM the browser built."""
    from PIL import Image, ImageStat

    shot = tmp / artifact
    _, console_shot = _chromium(url, proxy, tmp, screenshot=shot)
    requests_during_screenshot = list(_Recorder.hits)
    dom, console = _chromium(url, proxy, tmp)
    assert console == [] and console_shot == [], console + console_shot
    assert _Recorder.hits == [] and requests_during_screenshot == []
    img = Image.open(shot).convert("L")
    assert img.size[0] >= 1000 and ImageStat.Stat(img).stddev[0] > 5
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / artifact)
    return dom


def test_harness_sees_console_messages_and_requests(proxy, tmp_path):
    page = tmp_path / "canary.html"
    page.write_text('<html><body><p>x</p><script>console.error("canary-error")</script>'
                    '<img src="http://report-canary.invalid/pixel.png"></body></html>')
    dom, console = _chromium(page.as_uri(), proxy, tmp_path)
    assert any("canary-error" in line for line in console)
    assert any("report-canary.invalid" in hit for hit in _Recorder.hits)
    assert "<p>x</p>" in dom


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """A report with every registered method (a small sample keeps it quick)."""
    work = tmp_path_factory.mktemp("browser") / "case"
    shutil.copytree(SHARED, work)
    cfg = work / "audit.toml"
    cfg.write_text(cfg.read_text().replace('target = "income"', 'target = "income"\nmax_rows = 80')
                   .replace('formats = ["json"]', 'formats = ["html", "json"]'))
    out = work / "out"
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "-q"], catch_exceptions=False)
    assert res.exit_code in (0, 4), res.output  # 4: a method failed; its section must still show
    return out


def test_report_in_headless_chromium(report_dir, proxy, tmp_path):
    from PIL import Image

    from audit.registry import METHODS

    dom = _rendered_offline((report_dir / "report.html").as_uri(), proxy, tmp_path, "browser-report.png")

    # the DOM as the browser built it: every method has its section; every method that ran
    # shows at least one figure, and every image is an embedded PNG that decodes
    doc = json.loads((report_dir / "results.json").read_text())
    sections = dict(re.findall(r'<section id="method-([\w-]+)"[^>]*>(.*?)</section>', dom, re.S))
    for method in METHODS:
        assert method.name in sections, f"no section for {method.name}"
        status = doc["methods"][method.name]["status"]
        imgs = re.findall(r"<img\b[^>]*>", sections[method.name])
        if status == "ok":
            assert imgs, f"{method.name} ran but shows no figure"
    srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', dom)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as fig:
            assert fig.size[0] > 10 and fig.size[1] > 10
    assert not re.search(r"<(?:script|link|iframe|object|embed)\b", dom, re.I)


def test_notebook_display_in_headless_chromium(proxy, tmp_path):
    """``AuditReport._repr_html_`` as Jupyter shows it (inside a page of its own): no request,
    no console line, no script or external URL; the title, the executive summary, the gate and
    the method table are there, and every figure is an embedded PNG that decodes."""
    from PIL import Image

    from audit.config import AuditPlan
    from audit.runner import run_audit

    work = tmp_path / "case"
    shutil.copytree(SHARED, work)
    cfg = work / "audit.toml"
    cfg.write_text(cfg.read_text() + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.5 }\n')
    plan = AuditPlan.load(cfg).with_overrides(methods=("performance", "fairness", "surrogate"))
    report = run_audit(plan)
    fragment = report._repr_html_()
    assert not re.search(r"<(?:script|link|iframe|object|embed)\b|https?:|url\(|@import", fragment, re.I)
    assert not re.search(r"\b(?:src|href)\s*=\s*\"(?!data:image/png;base64,)", fragment, re.I)
    page = tmp_path / "notebook.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{fragment}</body></html>',
                    encoding="utf-8")
    dom, console = _chromium(page.as_uri(), proxy, tmp_path)
    assert console == [] and _Recorder.hits == []
    assert f"<h2>{report.title}</h2>" in dom and "Executive summary" in dom
    assert "Deployment gate: pass" in dom and "sex.demographic_parity_difference" in dom
    for o in report.outcomes:
        assert o.title in dom
    srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', dom)
    assert len(srcs) >= 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as fig:
            assert fig.size[0] > 10 and fig.size[1] > 10


def test_comparison_report_in_headless_chromium(proxy, tmp_path):
    """The ``audit compare`` report: no request, no console line, no script; every section, the
    gate's verdicts and the per-group decisions are in the DOM the browser built, and a user
    string (a group named like markup) shows as text."""
    import numpy as np
    import pandas as pd

    from audit.compare import compare_models
    from audit.compare.report import write_comparison

    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["<b>bold</b>", "b"], n)})
    df["y"] = (df.x + rng.normal(size=n) > 0).astype(int)
    champion = lambda X: 1 / (1 + np.exp(-2 * X[:, 0]))  # noqa: E731
    challenger = lambda X: 1 / (1 + np.exp(-1.5 * X[:, 0] - 0.2))  # noqa: E731
    result = compare_models(champion, challenger, df, target="y", sensitive=["g"], methods=["performance", "shap"],
                            method_options={"shap": {"n_rows": 40, "background_size": 20}},
                            compare={"n_bootstrap": 200, "n_permutations": 99,
                                     "gate": {"performance.auc": {"max_decrease": 0.05},
                                              "fairness.g.demographic_parity_difference": {"max_increase": 0.1}}})
    out = tmp_path / "cmp"
    write_comparison(result, out, formats=["html"])
    dom = _rendered_offline((out / "report.html").as_uri(), proxy, tmp_path, "browser-compare.png")
    for section in ("summary", "performance", "decisions", "fairness", "importance", "limitations", "provenance"):
        assert re.search(rf'<section id="{section}"', dom), section
    assert f"Non-inferiority gate: {result.gate.outcome}" in dom
    for v in result.gate.verdicts:
        assert v.rule.replace(">", "&gt;").replace("<", "&lt;") in dom
    assert "&lt;b&gt;bold&lt;/b&gt;" in dom and "<b>bold</b>" not in dom
    assert "ROC AUC" in dom and "shap" in dom
    assert not re.search(r"<(?:script|link|iframe|object|embed|img)\b", dom, re.I)
