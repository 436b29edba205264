"""Durability and determinism of whole CLI runs.

- A run killed with SIGKILL while it renders leaves the previous report intact; what it leaves
  behind is a hidden ``.name.partial-<pid>-*`` folder, which the next run removes.
- A report that a killed run had already moved aside (``.name.old-<pid>``) is moved back.
- The same config and seed give byte-identical results.json apart from the timestamp.
- ``[data] max_rows`` sampling is stated in the report with its size and seed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.cli import app

SHARED = Path(__file__).resolve().parent / "bad_inputs" / "_shared"  # a tiny pretrained model
DEAD_PID = 2**31 - 2  # above any pid_max, so never a live process


@pytest.fixture
def case(tmp_path: Path) -> Path:
    work = tmp_path / "case"
    shutil.copytree(SHARED, work)
    return work


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


_SLOW_PDF = """
import pathlib, sys, time
import audit.report.render as render
marker = pathlib.Path(sys.argv[1])
def slow_pdf(html):  # stands in for a long PDF render, after json and html are written
    marker.write_text("rendering")
    time.sleep(120)
render.render_pdf = slow_pdf
sys.argv = ["audit", *sys.argv[2:]]
from audit.cli import main
main()
"""


def test_sigkill_while_rendering_keeps_the_previous_report(case, tmp_path):
    out = tmp_path / "reports" / "r"
    cfg = str(case / "audit.toml")
    first = _cli("run", cfg, "--out", str(out), "-q", "--methods", "fairness", "--format", "json,html")
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    marker = tmp_path / "rendering"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PDF, str(marker), "run", cfg, "--out", str(out), "-q",
         "--methods", "fairness", "--format", "json,html,pdf", "--overwrite", "--seed", "1"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the run never reached rendering"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    # The previous report is untouched, and nothing new is visible as a report.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    leftovers = [p for p in out.parent.iterdir() if p != out]
    assert leftovers and all(p.name.startswith(f".r.partial-{proc.pid}-") for p in leftovers)
    assert not any((p / "report.pdf").exists() for p in leftovers)

    # The next run removes the dead run's partial folder and writes a complete report.
    again = _cli("run", cfg, "--out", str(out), "-q", "--methods", "fairness", "--format", "json",
                 "--overwrite")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_stale_folders_are_cleaned_and_a_moved_aside_report_is_restored(case, tmp_path):
    from audit.report.render import _clean_stale

    root = tmp_path / "reports"
    root.mkdir()
    (root / f".r.partial-{DEAD_PID}-abc").mkdir()
    live = root / f".r.partial-{os.getpid()}-xyz"  # a concurrent run that is still writing
    live.mkdir()
    other = root / f".s.partial-{DEAD_PID}-abc"  # another report's leftovers
    other.mkdir()
    aside = root / f".r.old-{DEAD_PID}"  # killed between the two renames of _swap_into_place
    aside.mkdir()
    (aside / "results.json").write_text("{}")
    _clean_stale(root / "r")
    assert sorted(p.name for p in root.iterdir()) == sorted(["r", live.name, other.name])
    assert (root / "r" / "results.json").read_text() == "{}"

    # Through the CLI: the report is moved back and then protected like any other (exit 2
    # without --overwrite), never silently replaced.
    shutil.rmtree(root / "r")
    aside.mkdir()
    (aside / "results.json").write_text("{}")
    res = _cli("run", str(case / "audit.toml"), "--out", str(root / "r"), "-q", "--methods", "fairness")
    assert res.exit_code == 2 and "already exists" in res.output
    assert (root / "r" / "results.json").read_text() == "{}" and not aside.exists()


def test_same_seed_gives_identical_results_json_through_the_cli(case, tmp_path):
    out = tmp_path / "out"
    args = ["run", str(case / "audit.toml"), "--out", str(out), "-q", "--methods",
            "fairness,surrogate", "--format", "json", "--seed", "3", "--overwrite"]
    docs = []
    for _ in range(2):
        res = _cli(*args)
        assert res.exit_code == 0, res.output
        raw = (out / "results.json").read_bytes()
        # The commit of the checkout can move between the runs when people commit while the
        # tests run (never in CI); the timestamp always moves. Nothing else may differ.
        raw = re.sub(rb'"(timestamp|audit_suite_commit)": "[^"]*"', rb'"\1": ""', raw)
        docs.append(raw)
    assert docs[0] == docs[1]


def test_max_rows_sampling_is_stated_in_the_report(case, tmp_path):
    cfg = case / "audit.toml"
    cfg.write_text(cfg.read_text().replace('target = "income"', 'target = "income"\nmax_rows = 50'))
    out = tmp_path / "out"
    res = _cli("run", str(cfg), "--out", str(out), "-q", "--methods", "fairness",
               "--format", "json,html", "--seed", "5")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["data"]["rows"] == 50
    note = "random sample of 50 of the 120 rows of the data file (seed 5)"
    assert any(note in n for n in doc["limitations"])
    assert note in (out / "report.html").read_text()
