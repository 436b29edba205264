"""The fixed cost of the CLI: heavy libraries load only when a selected method or output uses them.

Each check runs in a fresh interpreter (this test session has torch loaded already) and reads
``sys.modules`` when the command has finished, so an eager import added anywhere on the path
(the package, the registry, a method module, the runner, the report) fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.report.render import render_html, write_report
from audit.runner import audit_model
from tests.conftest import make_frame

ROOT = Path(__file__).resolve().parents[1]
EXPLAINERS = ("torch", "shap", "captum", "lime")  # what a decisions-only audit never needs
EVERY_HEAVY = (*EXPLAINERS, "sklearn", "scipy", "fairlearn", "matplotlib", "weasyprint")

# Runs the CLI as `audit <args>` and prints, at exit, which of the named modules were loaded.
_PROBE = """
import atexit, json, sys
names = json.loads(sys.argv[1])
atexit.register(lambda: print("LOADED=" + json.dumps([m for m in names if m in sys.modules]),
                              file=sys.stderr))
sys.argv = ["audit", *sys.argv[2:]]
from audit.cli import main
main()
"""


def loaded_by(*cli_args: str, cwd: Path = ROOT) -> tuple[list[str], subprocess.CompletedProcess]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(EVERY_HEAVY), *cli_args],
                          capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
                          timeout=600)
    line = [x for x in proc.stderr.splitlines() if x.startswith("LOADED=")]
    assert line, proc.stderr[-2000:]
    return json.loads(line[-1].removeprefix("LOADED=")), proc


@pytest.fixture(scope="module")
def decisions_config(tmp_path_factory) -> Path:
    """A decisions-only audit: the model's decisions in a column, no model file."""
    folder = tmp_path_factory.mktemp("decisions")
    rng = np.random.default_rng(0)
    n = 2000
    group = rng.choice(["a", "b", "c"], n)
    y = (rng.random(n) < 0.3).astype(int)
    pred = np.where(rng.random(n) < 0.8, y, 1 - y)
    pd.DataFrame({"group": group, "x": rng.normal(size=n), "y": y, "pred": pred}).to_csv(
        folder / "d.csv", index=False)
    (folder / "audit.toml").write_text(
        'name = "decisions"\n[model]\npredictions = "pred"\n'
        '[data]\npath = "d.csv"\ntarget = "y"\nsensitive = ["group"]\n'
        '[methods.fairness]\nn_permutations = 99\n'
        '[gate]\n"fairness.group.demographic_parity_difference" = { max = 0.5 }\n', encoding="utf-8")
    return folder / "audit.toml"


def test_import_audit_cli_loads_no_heavy_library():
    code = (f"import sys, audit.cli; print([m for m in {list(EVERY_HEAVY)!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [("--help",), ("methods",)], ids=["help", "methods"])
def test_help_and_methods_load_no_heavy_library(args):
    loaded, proc = loaded_by(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert loaded == []


def test_decisions_only_run_never_imports_torch_shap_captum_or_lime(decisions_config, tmp_path):
    """The whole run with every method selected (those that need a model are skipped): loading,
    fairness, performance and the surrogate tree, the gate, HTML, PDF and JSON."""
    loaded, proc = loaded_by("run", str(decisions_config), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"report.html", "report.pdf", "results.json"}
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    ran = sorted(k for k, m in results["methods"].items() if m.get("status") == "ok")
    assert ran == ["fairness", "performance", "surrogate"] and len(results["methods"]) > 2
    assert "weasyprint" in loaded and "matplotlib" in loaded  # the probe sees what did load
    assert not set(EXPLAINERS) & set(loaded), loaded


def test_decisions_only_gate_check_never_imports_torch_or_the_report_libraries(decisions_config):
    loaded, proc = loaded_by("check", str(decisions_config), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "scipy" in loaded  # the probe sees what did load (the fairness method needs scipy.stats)
    assert not {*EXPLAINERS, "matplotlib", "weasyprint"} & set(loaded), loaded


def test_each_figure_is_drawn_once_for_html_and_pdf_together(tmp_path, monkeypatch):
    """write_report renders the HTML once and hands the same document to WeasyPrint."""
    from audit.methods.surrogate import Surrogate

    frame = make_frame(200)
    report = audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), frame, target="income",
                         positive_label=">50K", sensitive=["sex"], methods=["surrogate"])
    calls = []
    drawn = Surrogate.figures
    monkeypatch.setattr(Surrogate, "figures", lambda self, r, d: calls.append(1) or drawn(self, r, d))
    write_report(report, tmp_path / "out", formats=("html", "pdf", "json"))
    assert len(calls) == 1
    assert (tmp_path / "out" / "report.pdf").read_bytes().startswith(b"%PDF")


def test_templates_are_compiled_once_per_process(monkeypatch):
    import jinja2

    frame = make_frame(100)
    report = audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), frame, target="income",
                         positive_label=">50K", sensitive=["sex"], methods=["surrogate"])
    render_html(report)  # compiles whatever this process has not compiled yet
    compiled = []
    original = jinja2.Environment.compile
    monkeypatch.setattr(jinja2.Environment, "compile",
                        lambda self, *a, **k: compiled.append(a[1] if len(a) > 1 else None) or original(self, *a, **k))
    render_html(report)
    assert compiled == []


def test_public_names_are_resolved_on_first_use_and_import_audit_stays_light():
    code = ("import sys, audit; light = 'pandas' not in sys.modules and 'numpy' not in sys.modules; "
            "from audit import run_audit, AuditPlan, render_html; "
            "print(light, sorted(audit._EXPORTS) == sorted(audit.__all__), set(audit.__all__) <= set(dir(audit)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["True", "True", "True"]
