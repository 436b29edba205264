"""Durability, safety and determinism of whole CLI runs (issue 12, "Losing data").

- ``--overwrite`` replaces only a folder this tool wrote (marker, nothing foreign); never an
  input, a folder holding one, the current or home folder, a link, a file ([report] out alike).
- The output location is checked before any method runs (parent a file, names too long,
  read-only or full disk); a late I/O error exits 2 with path and cause, the old report intact.
- One writer per folder: a second run fails at once (exit 2); a killed run's lock never blocks.
- A run killed while rendering or between the two renames of the swap is recovered by the next
  run before it does any work; only the hidden ``.name.partial-<pid>-<token>`` /
  ``.name.old-<pid>-<token>`` folders that the killed run's lock file names, holding only report
  files and no input, are moved or removed; look-alike folders are never touched.
- The lock file is never followed, truncated or deleted unless it is a lock file of this tool.
- ``audit check --junit`` refuses an input, a link, a folder or a foreign file before the audit
  and writes the file atomically.
- Rendering is pure: results.json is the same whichever formats are written.
- The same config and seed give byte-identical results.json apart from the timestamp.
- ``[data] max_rows`` sampling is stated in the report with its size and seed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from audit.cli import app

SHARED = Path(__file__).resolve().parent / "bad_inputs" / "_shared"  # a tiny pretrained model
DEAD_PID = 2**31 - 2  # above any pid_max, so never a live process


@pytest.fixture
def no_methods(monkeypatch):
    """Proves a refusal comes before the audit: running any method fails the test."""
    def ran(*args, **kwargs):
        raise AssertionError("the audit ran although the output folder could not be written")
    monkeypatch.setattr("audit.runner._run_methods", ran)


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
def slow_pdf(html):  # stands in for a long PDF render (nothing is written before it ends)
    marker.write_text("rendering")
    time.sleep(120)
render.render_pdf = slow_pdf
sys.argv = ["audit", *sys.argv[2:]]
from audit.cli import main
main()
"""


@pytest.mark.slow  # a subprocess: ~15-30 s on the 2-core machine
def test_sigkill_while_rendering_keeps_the_previous_report_and_its_lock_does_not_block(case, tmp_path):
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

    # The previous report is untouched; rendering happens before anything is written, so the
    # killed run left only its lock file, whose lock died with it.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == [".r.lock", "r"]

    # The dead run's lock does not block the next run, which writes a complete report.
    again = _cli("run", cfg, "--out", str(out), "-q", "--methods", "fairness", "--format", "json",
                 "--overwrite")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]
    assert sorted(p.name for p in out.iterdir()) == [".audit-report", "results.json"]


TOKEN = "0123456789abcdef"


def _killed_runs_lock(root: Path, name: str, pid: int = DEAD_PID, token: str = TOKEN) -> Path:
    """The lock file a run killed by SIGKILL leaves: it names that run's PID and token."""
    lock = root / f".{name}.lock"
    lock.write_text(json.dumps({"schema": "audit-suite/lock@1", "pid": pid, "token": token}) + "\n")
    return lock


def _marked_report(folder: Path, results: str = "{}") -> Path:
    folder.mkdir()
    (folder / "results.json").write_text(results)
    (folder / ".audit-report").write_text('{"schema": "audit-suite/report-folder@1"}')
    return folder


def test_a_killed_runs_own_leftovers_are_recovered_and_nothing_else_is_touched(case, tmp_path, no_methods):
    root = tmp_path / "reports"
    root.mkdir()
    _killed_runs_lock(root, "r")
    aside = _marked_report(root / f".r.old-{DEAD_PID}-{TOKEN}", "old")  # killed between the renames
    (root / f".r.partial-{DEAD_PID}-{TOKEN}").mkdir()  # its work folder, not yet complete
    (root / f".r.partial-{DEAD_PID}-{TOKEN}" / "results.json").write_text("half")
    # Look-alikes the killed run did not write: another token, hand-made names, foreign files.
    _marked_report(root / f".r.old-{DEAD_PID}-{'f' * 16}", "someone's copy")
    _marked_report(root / ".r.old-2023", "backup")
    (root / ".r.old-2023" / "thesis.txt").write_text("backup")
    (root / ".r.partial-7-mine").mkdir()
    (root / ".r.partial-7-mine" / "notes.txt").write_text("notes")
    keep = {k: v for k, v in _tree(root).items() if not k.startswith((f".r.old-{DEAD_PID}-{TOKEN}",
                                                                        f".r.partial-{DEAD_PID}-{TOKEN}",
                                                                        ".r.lock"))}
    # The old report is moved back before any method runs, then protected like any other
    # (exit 2 without --overwrite); the work folder is deleted; the look-alikes stay as they were.
    res = _cli("run", str(case / "audit.toml"), "--out", str(root / "r"), "-q", "--methods", "fairness")
    _refused(res, "already exists")
    assert (root / "r" / "results.json").read_text() == "old" and not aside.exists()
    after = _tree(root)
    assert {k: v for k, v in after.items() if not k.startswith("r")} == keep


@pytest.mark.parametrize("target_exists", [True, False])
def test_folders_named_like_leftovers_are_never_moved_or_deleted(case, tmp_path, target_exists):
    root = tmp_path / "q3"
    out = root / "reports"
    root.mkdir()
    if target_exists:
        _report(case, out)
    backup = root / ".reports.old-2023"
    backup.mkdir()
    (backup / "thesis.txt").write_text("backup")
    (root / ".reports.partial-7-mine").mkdir()
    (root / ".reports.partial-7-mine" / "notes.txt").write_text("notes")
    _marked_report(root / ".reports.old-1", "a copy of a report the user keeps")
    _marked_report(root / f".reports.old-{DEAD_PID}-{TOKEN}", "a copy under a name of ours")
    before = {k: v for k, v in _tree(root).items() if not k.startswith("reports")}
    _report(case, out, "--overwrite")
    assert {k: v for k, v in _tree(root).items() if not k.startswith("reports")} == before
    assert sorted(p.name for p in out.iterdir()) == [".audit-report", "results.json"]


def test_a_config_folder_named_like_a_leftover_is_never_touched(case, tmp_path):
    # The red team's worst case: the run's own config folder carries a leftover's name, and the
    # lock file of a "killed run" names it, so only the input check stands between it and rmtree.
    cfg_dir = tmp_path / f".rep.old-{DEAD_PID}-{TOKEN}"
    shutil.copytree(case, cfg_dir)
    _killed_runs_lock(tmp_path, "rep")
    before = _tree(cfg_dir)
    res = _cli("run", str(cfg_dir / "audit.toml"), "--out", str(tmp_path / "rep"), "-q", "--methods",
               "surrogate", "--format", "json", "--overwrite")
    assert res.exit_code == 0, res.output
    assert _tree(cfg_dir) == before
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [".audit-report", "results.json"]


def test_leftovers_that_hold_or_are_an_input_are_never_touched(tmp_path):
    from audit.report.output import clean_stale

    aside = _marked_report(tmp_path / f".r.old-{DEAD_PID}-{TOKEN}", "{}")  # only report files ...
    partial = _marked_report(tmp_path / f".r.partial-{DEAD_PID}-{TOKEN}", "{}")
    before = _tree(tmp_path)
    # ... but the run reads them (e.g. [data] path = ".r.old-.../results.json")
    inputs = [("data", str(aside / "results.json")), ("model", str(partial / "results.json"))]
    clean_stale(tmp_path / "r", (DEAD_PID, TOKEN), inputs=inputs)
    assert _tree(tmp_path) == before
    # Only the work folder is no input: it alone is deleted; the input is neither moved nor deleted.
    clean_stale(tmp_path / "r", (DEAD_PID, TOKEN), inputs=inputs[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == [aside.name]
    assert _tree(aside) == {k[len(aside.name) + 1:]: v for k, v in before.items() if k.startswith(aside.name + "/")}


# --- The lock file -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["link_to_victim", "link_to_sibling", "dangling_link", "foreign_file",
                                  "empty_file", "folder", "fifo", "old_format_pid"])
def test_a_lock_path_that_is_not_our_lock_file_is_refused_and_left_as_it_was(case, tmp_path, kind, no_methods):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    work = tmp_path / "lk"
    work.mkdir()
    lock = work / ".x.lock"
    if kind == "link_to_victim":
        lock.symlink_to(victim)
    elif kind == "link_to_sibling":
        (work / "important.txt").write_text("important")
        lock.symlink_to("important.txt")
    elif kind == "dangling_link":
        lock.symlink_to(tmp_path / "would-be-created")
    elif kind == "foreign_file":
        lock.write_text("precious2")
    elif kind == "empty_file":
        lock.write_text("")
    elif kind == "folder":
        lock.mkdir()
        (lock / "keep.txt").write_text("keep")
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.write_text("12345\n")
    before = _tree(tmp_path)
    res = _cli("run", str(case / "audit.toml"), "--out", str(work / "x"), "-q", "--methods", "fairness",
               "--overwrite")
    _refused(res, "cannot be locked", repr(str(lock)), "not a lock file of audit-suite",
             "Move", "away")
    assert _tree(tmp_path) == before
    assert os.path.islink(lock) == ("link" in kind)
    assert not (tmp_path / "would-be-created").exists()


def test_a_lock_file_is_released_only_if_it_is_still_ours(tmp_path):
    from audit.report.output import reserve_output

    out = tmp_path / "r"
    with reserve_output(out, overwrite=False):
        lock = tmp_path / ".r.lock"
        doc = json.loads(lock.read_text())
        assert doc["schema"] == "audit-suite/lock@1" and doc["pid"] == os.getpid()
        lock.unlink()  # replaced by someone else's file while the run holds the old one
        lock.write_text("someone else's")
    assert lock.read_text() == "someone else's"  # not deleted on release


def _without_timings(raw: bytes) -> bytes:
    """results.json with the measured clock times of provenance.plan (the unit costs, the cores
    the load left free, each method's estimated and actual seconds, the seconds spent loading and
    the estimate for writing the report, which grows with the formats asked for) blanked: everything else,
    the plan's counted work included, must be byte-identical."""
    keys = rb"estimated_seconds|actual_seconds|estimated_total_seconds|seconds_per_row|seconds_per_call|" \
           rb"seconds_per_gradient_row|seconds_per_gradient_call|" \
           rb"seconds_per_refit|cores|loading_seconds|estimated_writing_seconds"
    return re.sub(rb'"(' + keys + rb')": [-0-9.eE+]+', rb'"\1": 0', raw)


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
        docs.append(_without_timings(raw))
    assert docs[0] == docs[1]


# The only fields of results.json that two runs of one audit may differ in: the clock and the
# checkout (which can move while tests run), and the measured times of provenance.plan. Every
# finding, reason, note and number elsewhere must be byte-identical (a time belongs there).
RUN_DEPENDENT = ("provenance.timestamp", "provenance.audit_suite_commit",
                 "provenance.plan.loading_seconds", "provenance.plan.estimated_writing_seconds",
                 "provenance.plan.estimated_total_seconds", "provenance.plan.unit_costs",
                 "provenance.plan.methods[].estimated_seconds", "provenance.plan.methods[].actual_seconds",
                 "provenance.plan.over_budget[].estimated_seconds")


def _without_run_dependent(doc: dict) -> bytes:
    """``doc`` with exactly the RUN_DEPENDENT fields removed (each must be there to remove)."""
    def drop(node, keys: list[str]) -> None:
        key, rest = keys[0], keys[1:]
        items = node[key[:-2]] if key.endswith("[]") else None
        if items is not None:
            for item in items:
                drop(item, rest)
        elif rest:
            drop(node[key], rest)
        else:
            del node[key]

    doc = json.loads(json.dumps(doc))
    for path in RUN_DEPENDENT:
        drop(doc, path.split("."))
    return json.dumps(doc, indent=1).encode()


def _several_methods(model_dir: Path) -> Path:
    """The toy MLP's audit.toml with its training recipe and small settings for the methods that
    retrain or sample (connection weights, the attribution test, SHAP, LIME, counterfactuals)."""
    from tests.conftest import ROW_SHARDED

    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text().replace(
        "[data]", '[model.training]\nloss = "bce"\noptimizer = "adam"\nlr = 0.05\nepochs = 3\n'
                  'batch_size = 64\nweight_decay = 1e-3\nn_restarts = 2\nseed = 0\n\n[data]')
        + "\n[methods.connection_weights]\nn_permutations = 39\nper_input = 2\nper_input_permutations = 19\n"
        + "\n[methods.attribution_significance]\nenabled = true\nn_permutations = 19\nn_rows = 40\nig_steps = 8\n"
        + "".join(ROW_SHARDED.values()))
    return cfg


def _slow_clock(monkeypatch, *, but: object = None) -> None:
    """Every duration measured from now on reads 1,000 times longer (except in the module
    ``but``): a time that leaked into a finding, reason or result would then differ between two
    runs even when both round to 0 s."""
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: 1000.0 * real())
    if but is not None:
        monkeypatch.setattr(but, "time", SimpleNamespace(perf_counter=real))


SEVERAL = ("fairness,performance,surrogate,connection_weights,attribution_significance,shap,lime,saliency,"
           "counterfactuals,agreement")


def test_two_runs_of_several_methods_give_results_json_identical_but_for_the_named_timings(model_dir, tmp_path,
                                                                                          monkeypatch):
    cfg = _several_methods(model_dir)
    docs = []
    for run in range(2):
        if run:
            _slow_clock(monkeypatch)
        res = _cli("run", str(cfg), "--out", str(tmp_path / f"out{run}"), "-q", "--methods", SEVERAL,
                   "--format", "json", "--full")
        assert res.exit_code == 0, res.output
        doc = json.loads((tmp_path / f"out{run}" / "results.json").read_text())
        assert all(m["status"] == "ok" for m in doc["methods"].values()), doc["methods"]
        docs.append(_without_run_dependent(doc))
    assert docs[0] == docs[1]


def test_two_runs_of_an_audit_lowered_to_fit_its_budget_differ_only_in_the_named_timings(model_dir, monkeypatch):
    """A budget lowers the sample sizes and leaves a costly method out; with the unit costs held
    fixed (the one measured input of the plan) the two reports may differ only in their timings."""
    import dataclasses

    import audit.runner as runner
    from audit.config import AuditPlan
    from audit.core.cost import UnitCosts

    monkeypatch.setattr(runner, "measure_unit_costs", lambda model, X, **kw: UnitCosts(
        per_row=2e-4, per_call=1e-3, grad_per_row=2e-4, grad_per_call=1e-3, cores=1))
    plan = dataclasses.replace(AuditPlan.load(_several_methods(model_dir)), budget=30.0, formats=("json",))
    docs = []
    for run in range(2):
        if run:  # the plan counts the time spent loading against the budget: the runner's clock stays
            _slow_clock(monkeypatch, but=runner)
        doc = runner.run_audit(plan).to_json()
        docs.append(_without_run_dependent(doc))
    record = doc["provenance"]["plan"]
    assert record["lowered"] and record["over_budget"], record
    assert any("not run" in (m.get("reason") or "") for m in doc["methods"].values()), doc["methods"]
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


# --- Which folders a report may replace -------------------------------------------------------

def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders): a folder's full state."""
    return {str(p.relative_to(root)): (f"-> {os.readlink(p)}" if p.is_symlink() else
                                        None if p.is_dir() else
                                        p.read_bytes() if p.is_file() else "special")
            for p in sorted(root.rglob("*"))}


def _refused(res, *fragments: str) -> str:
    text = res.output.strip()
    assert res.exit_code == 2, text
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return text


def test_overwrite_never_replaces_the_folder_that_holds_the_config(case, no_methods):
    before = _tree(case.parent)
    res = _cli("run", str(case / "audit.toml"), "--out", str(case), "-q", "--overwrite")
    _refused(res, repr(str(case)), "holds the run's config", "choose a new one with --out")
    assert _tree(case.parent) == before


@pytest.mark.parametrize("out", [".", "..", "data.csv", "/", "ABS_PARENT"])
def test_report_out_in_the_config_may_not_be_an_input_or_an_ancestor(case, out, no_methods):
    out = str(case.parent) if out == "ABS_PARENT" else out
    cfg = case / "audit.toml"
    cfg.write_text(cfg.read_text().replace('formats = ["json"]', f'formats = ["json"]\nout = "{out}"'))
    before = _tree(case.parent)
    res = _cli("run", str(cfg), "-q", "--overwrite", "--methods", "surrogate")
    _refused(res, "A report folder is replaced as a whole")
    assert _tree(case.parent) == before


def _report(case: Path, out: Path, *extra: str) -> None:
    res = _cli("run", str(case / "audit.toml"), "--out", str(out), "-q", "--methods", "surrogate",
               "--format", "json", *extra)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("intruder", ["notes.txt", "figures/", "report.html/"])
def test_overwrite_refuses_a_report_folder_holding_anything_else(case, tmp_path, intruder, no_methods):
    out = tmp_path / "r"
    out.mkdir()
    (out / "results.json").write_bytes(b'{\n  "schema": "audit-suite/results@1"}')
    if intruder.endswith("/"):
        (out / intruder).mkdir()
        (out / intruder / "keep.png").write_bytes(b"png")
    else:
        (out / intruder).write_text("my notes")
    before = _tree(out)
    res = _cli("run", str(case / "audit.toml"), "--out", str(out), "-q", "--overwrite")
    _refused(res, f"that audit-suite did not write ('{intruder.rstrip('/')}')", "even with --overwrite")
    assert _tree(out) == before


def test_overwrite_refuses_a_folder_that_is_not_recognisably_a_report(case, tmp_path, no_methods):
    out = tmp_path / "r"
    out.mkdir()
    (out / "results.json").write_text('{"my": "own results"}')  # same name, not this tool's schema
    res = _cli("run", str(case / "audit.toml"), "--out", str(out), "-q", "--overwrite")
    _refused(res, "is not recognisably an audit-suite report")
    assert (out / "results.json").read_text() == '{"my": "own results"}'

    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    res = _cli("run", str(case / "audit.toml"), "--out", str(link), "-q", "--overwrite")
    _refused(res, "is a symbolic link")


def test_overwrite_replaces_folders_this_tool_wrote_empty_ones_and_pre_marker_reports(case, tmp_path):
    out = tmp_path / "r"
    _report(case, out, "--seed", "1")
    marker = json.loads((out / ".audit-report").read_text())
    assert marker == {"schema": "audit-suite/report-folder@1", "files": ["results.json"]}
    _report(case, out, "--seed", "2", "--overwrite")
    assert json.loads((out / "results.json").read_text())["provenance"]["seed"] == 2

    (out / ".audit-report").unlink()  # a report written before the marker existed
    _report(case, out, "--seed", "3", "--overwrite")
    assert json.loads((out / "results.json").read_text())["provenance"]["seed"] == 3

    empty = tmp_path / "empty"
    empty.mkdir()
    _report(case, empty, "--overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "empty", "r"]


def test_the_current_and_home_folders_are_never_replaced(case, tmp_path, monkeypatch, no_methods):
    out = tmp_path / "r"
    out.mkdir()  # empty: replaceable in itself, but not while it is where the user stands
    monkeypatch.chdir(out)
    _refused(_cli("run", str(case / "audit.toml"), "--out", ".", "-q", "--overwrite"),
             "is the current folder")
    (out / "sub").mkdir()
    monkeypatch.chdir(out / "sub")
    _refused(_cli("run", str(case / "audit.toml"), "--out", "..", "-q", "--overwrite"),
             "holds the current folder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(out / "sub"))
    _refused(_cli("run", str(case / "audit.toml"), "--out", str(out / "sub"), "-q", "--overwrite"),
             "is the home folder")
    assert [p.name for p in out.iterdir()] == ["sub"] and not any((out / "sub").iterdir())


# --- The output location is checked before any method runs; late failures are clean ------------

def _statvfs(flag: int = 0, free: int = 1 << 30):
    return lambda path: SimpleNamespace(f_flag=flag, f_bavail=free // 4096, f_frsize=4096)


@pytest.mark.parametrize("where", ["parent_is_a_file", "name_300_chars", "parent_name_300_chars",
                                   "read_only_fs", "disk_full"])
def test_an_unwritable_output_location_is_refused_before_any_method_runs(
        case, tmp_path, monkeypatch, where, no_methods):
    (tmp_path / "afile").write_text("x")
    out = {"parent_is_a_file": tmp_path / "afile" / "r",
           "name_300_chars": tmp_path / ("n" * 300),
           "parent_name_300_chars": tmp_path / ("p" * 300) / "r"}.get(where, tmp_path / "r")
    if where == "read_only_fs":
        monkeypatch.setattr("audit.report.output._statvfs", _statvfs(flag=os.ST_RDONLY))
    if where == "disk_full":
        monkeypatch.setattr("audit.report.output._statvfs", _statvfs(free=100_000))
    expected = {"parent_is_a_file": "is a file, not a folder", "name_300_chars": "has a name of 300 bytes",
                "parent_name_300_chars": "is longer than 255 bytes",
                "read_only_fs": "is on a read-only file system", "disk_full": "only 0.1 MiB are free"}
    before = _tree(tmp_path)
    _refused(_cli("run", str(case / "audit.toml"), "--out", str(out), "-q"), expected[where])
    assert _tree(tmp_path) == before  # nothing created, no lock file left


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_a_write_error_after_the_audit_exits_2_with_path_and_cause_and_keeps_the_old_report(
        case, tmp_path, monkeypatch, code):
    import audit.report.output as output

    out = tmp_path / "r"
    _report(case, out, "--format", "json,html")
    before = _tree(tmp_path)
    written = []
    real = output._write_durable

    def failing(path, data):
        written.append(path.name)
        if len(written) == 2:
            raise OSError(code, os.strerror(code), str(path))
        real(path, data)

    monkeypatch.setattr(output, "_write_durable", failing)
    res = _cli("run", str(case / "audit.toml"), "--out", str(out), "-q", "--methods", "surrogate",
               "--format", "json,html", "--overwrite", "--seed", "4")
    text = _refused(res, "could not be written", os.strerror(code), errno.errorcode[code],
                    "report.html", "any previous report there is unchanged")
    assert ".r.partial-" in text  # the path that failed
    assert _tree(tmp_path) == before


def test_a_failed_final_rename_puts_the_old_report_back(case, tmp_path, monkeypatch):
    import audit.report.output as output

    out = tmp_path / "r"
    _report(case, out)
    before = _tree(tmp_path)

    def failing(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))

    monkeypatch.setattr(output, "rename_noreplace", failing)
    res = _cli("run", str(case / "audit.toml"), "--out", str(out), "-q", "--methods", "surrogate",
               "--format", "json", "--overwrite", "--seed", "4")
    _refused(res, "could not be written", "Input/output error (EIO)")
    assert _tree(tmp_path) == before


_KILL_IN_SWAP = """
import os, signal, sys
import audit.report.output as output
real = output.rename_noreplace
def crash(src, dst):  # the old report has been moved aside and the new one is not yet in place
    if any(p.name.startswith(f".{dst.name}.old-") for p in dst.parent.iterdir()):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
output.rename_noreplace = crash
sys.argv = ["audit", *sys.argv[1:]]
from audit.cli import main
main()
"""


@pytest.mark.slow  # a subprocess: ~10 s on the 2-core machine
@pytest.mark.parametrize("new_complete", [True, False])
def test_a_kill_in_the_swap_window_is_recovered_before_the_rerun_does_any_work(
        case, tmp_path, monkeypatch, new_complete):
    out = tmp_path / "r"
    _report(case, out, "--seed", "1")
    old = (out / "results.json").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_IN_SWAP, "run", str(case / "audit.toml"), "--out", str(out), "-q",
         "--methods", "surrogate", "--format", "json", "--overwrite", "--seed", "2"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not out.exists() and ".r.lock" in names
    assert [n for n in names if n.startswith(".r.old-")] and [n for n in names if n.startswith(".r.partial-")]
    if not new_complete:  # as if killed before the new report was complete
        for p in tmp_path.glob(".r.partial-*"):
            (p / ".audit-report").unlink()

    # The rerun (no --overwrite) finishes or undoes the swap first, so it says "already exists"
    # at once instead of after an audit, and leaves nothing hidden behind.
    monkeypatch.setattr("audit.runner._run_methods", lambda *a, **k: pytest.fail("the audit ran"))
    _refused(_cli("run", str(case / "audit.toml"), "--out", str(out), "-q"), "already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "r"]
    doc = json.loads((out / "results.json").read_bytes())
    assert doc["provenance"]["seed"] == (2 if new_complete else 1)
    if not new_complete:
        assert (out / "results.json").read_bytes() == old


# --- Concurrent runs ---------------------------------------------------------------------------

_HOLD_RENDER = """
import pathlib, sys, time
import audit.report.render as render
started, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
real = render.render_html
def held(report):  # holds the run between the audit and the write until the test releases it
    started.write_text("rendering")
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return real(report)
render.render_html = held
sys.argv = ["audit", *sys.argv[3:]]
from audit.cli import main
main()
"""


@pytest.mark.slow  # a subprocess: ~10 s on the 2-core machine
def test_a_second_run_to_the_same_folder_fails_at_once_while_the_first_is_running(
        case, tmp_path, no_methods):
    out = tmp_path / "r"
    started, release = tmp_path / "started", tmp_path / "release"
    first = subprocess.Popen(
        [sys.executable, "-c", _HOLD_RENDER, str(started), str(release), "run", str(case / "audit.toml"),
         "--out", str(out), "-q", "--methods", "surrogate", "--format", "json,html"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert first.poll() is None, first.stdout.read().decode()
            assert time.monotonic() < deadline, "the first run never reached rendering"
            time.sleep(0.05)
        for extra in ([], ["--overwrite"]):
            _refused(_cli("run", str(case / "audit.toml"), "--out", str(out), "-q", *extra),
                     f"is the output folder of another audit run that is still going (process {first.pid})")
        release.write_text("go")
        assert first.wait(60) == 0, first.stdout.read().decode()
    finally:
        if first.poll() is None:
            first.kill()
    assert sorted(p.name for p in out.iterdir()) == [".audit-report", "report.html", "results.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]


@pytest.mark.slow
def test_two_racing_processes_never_both_report_success(case, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "audit", "run", str(case / "audit.toml"), "--out", str(out), "-q",
           "--methods", "surrogate", "--format", "json"]
    procs = [subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    results = [(p.wait(120), p.stderr.read().decode()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert loser.startswith("error:") and ("is the output folder of another audit run" in loser
                                           or "already exists" in loser), loser
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "r"]
    assert json.loads((out / "results.json").read_text())["schema"] == "audit-suite/results@1"


# --- Rendering is pure -------------------------------------------------------------------------

def test_results_json_is_identical_whichever_formats_are_written(case, tmp_path, monkeypatch):
    from audit.methods.surrogate import Surrogate

    def broken(self, result, data):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(Surrogate, "figures", broken)  # a figure note appears in the HTML only
    docs = {}
    for fmt in ("json", "html,json", "pdf,json", "html,pdf,json"):
        out = tmp_path / fmt.replace(",", "_")
        res = _cli("run", str(case / "audit.toml"), "--out", str(out), "-q", "--methods",
                   "surrogate", "--format", fmt, "--seed", "3")
        assert res.exit_code == 0, res.output
        docs[fmt] = _without_timings(re.sub(rb'"(timestamp|audit_suite_commit|command)": "[^"]*"', rb'"\1": ""',
                                            (out / "results.json").read_bytes()))
    assert docs["json"] == docs["html,json"] == docs["pdf,json"] == docs["html,pdf,json"]
    assert b"could not be drawn" not in docs["json"]
    assert "could not be drawn: no canvas" in (tmp_path / "html_json" / "report.html").read_text()


def test_rendering_twice_gives_the_same_html_and_leaves_the_report_unchanged(monkeypatch):
    import numpy as np

    from audit.methods.surrogate import Surrogate
    from audit.report.render import render_html
    from audit.runner import audit_model
    from tests.conftest import make_frame

    monkeypatch.setattr(Surrogate, "figures", lambda self, result, data: 1 / 0)
    report = audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), make_frame(200), target="income",
                         positive_label=">50K", sensitive=["sex"], methods=["surrogate"])
    before = report.json_bytes()
    first, second = render_html(report), render_html(report)
    assert first == second and first.count("could not be drawn") == 1
    assert report.json_bytes() == before


def test_the_final_rename_never_replaces_anything_not_even_an_empty_folder(tmp_path):
    from audit.report.output import rename_noreplace

    src, dst = tmp_path / "new", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()  # plain os.rename would silently replace an empty folder
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dst)
    assert src.is_dir() and dst.is_dir()
    dst.rmdir()
    rename_noreplace(src, dst)
    assert dst.is_dir() and not src.exists()


def test_two_threads_of_one_process_cannot_hold_one_output_folder(tmp_path):
    import threading

    from audit.errors import ReportRenderError
    from audit.report.output import reserve_output

    out = tmp_path / "r"
    seen: list[str] = []
    with reserve_output(out, overwrite=False) as target:
        with reserve_output(out, overwrite=False) as again:  # the same thread may re-enter
            assert again == target

        def other():
            try:
                with reserve_output(out, overwrite=False):
                    seen.append("held")
            except ReportRenderError as exc:
                seen.append(str(exc))

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(seen) == 1 and "of another audit run in this process that is still going" in seen[0]
    assert not any(tmp_path.iterdir())  # the lock file is gone once released
    with reserve_output(out, overwrite=False):  # and the folder is free again
        pass


@pytest.mark.parametrize("out, why", [("data.csv", "is the run's data file"),
                                      (".", "holds the run's data"),
                                      ("images/r", "lies inside the run's images folder")])
def test_a_report_folder_may_not_be_hold_or_lie_inside_an_input(tmp_path, out, why):
    from audit.errors import ReportRenderError
    from audit.report.output import check_target, locate

    (tmp_path / "data.csv").write_text("x")
    (tmp_path / "images").mkdir()  # e.g. a folder of PNG files ([data] modality = "image")
    inputs = [("data", str(tmp_path / "data.csv")), ("images", str(tmp_path / "images"))]
    with pytest.raises(ReportRenderError, match=why):
        check_target(out, locate(tmp_path / out), overwrite=True, inputs=inputs)


# --- audit check --junit -----------------------------------------------------------------------

def _gate_case(case: Path) -> Path:
    cfg = case / "audit.toml"
    cfg.write_text(cfg.read_text() + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.9 }\n')
    return cfg


@pytest.mark.parametrize("junit, why", [
    ("data.csv", "is the run's data file"), ("audit.toml", "is the run's config file"),
    ("model.safetensors", "is the run's model file"), ("link.xml", "is a symbolic link"),
    ("dangling.xml", "is a symbolic link"), ("folder", "is a folder"), ("fifo.xml", "is not a regular file"),
    ("foreign.xml", "is not a JUnit file written by audit-suite"),
    ("other-junit.xml", "is not a JUnit file written by audit-suite"),
    ("entities.xml", "is not a JUnit file written by audit-suite"),
    ("notes.txt/gate.xml", "is a file, not a folder")])
def test_junit_path_that_is_an_input_a_link_or_a_foreign_file_is_refused_before_the_audit(
        case, tmp_path, junit, why, no_methods, monkeypatch):
    cfg = _gate_case(case)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (case / "link.xml").symlink_to(victim)
    (case / "dangling.xml").symlink_to(tmp_path / "would-be-created.xml")
    (case / "folder").mkdir()
    os.mkfifo(case / "fifo.xml")
    (case / "foreign.xml").write_text("my own notes, not XML")
    (case / "other-junit.xml").write_text('<testsuites name="pytest"><testsuite name="t"/></testsuites>')
    (case / "entities.xml").write_text('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "b">]>'
                                       '<testsuites name="audit-gate:bad"><testsuite/></testsuites>')
    (case / "notes.txt").write_text("notes")
    before = _tree(tmp_path)
    res = _cli("check", str(cfg), "--junit", str(case / junit), "-q")
    _refused(res, "The JUnit file", repr(str(case / junit)), why)
    assert _tree(tmp_path) == before
    # a relative path naming an input is the same file
    monkeypatch.chdir(case)
    _refused(_cli("check", "audit.toml", "--junit", "./data.csv", "-q"), "is the run's data file")
    assert _tree(tmp_path) == before


def test_junit_file_is_written_atomically_and_replaces_only_its_own_junit(case, tmp_path, monkeypatch):
    import xml.etree.ElementTree as ET

    cfg = _gate_case(case)
    junit = tmp_path / "ci" / "gate.xml"  # missing folders are created
    for _ in range(2):  # the second run replaces the first run's file: it is one of ours
        res = _cli("check", str(cfg), "--junit", str(junit), "-q")
        assert res.exit_code == 0, res.output
        root = ET.parse(junit).getroot()
        assert root.tag == "testsuites" and root.get("name") == "audit-gate:bad"
        assert sorted(p.name for p in junit.parent.iterdir()) == ["gate.xml"]  # no temp file left
    assert oct(junit.stat().st_mode & 0o777) == "0o644"
    # an interrupted write leaves the previous file whole
    previous = junit.read_bytes()

    def failing(path, data):  # the disk fills up while the new file is written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr("audit.report.output._write_durable", failing)
    res = _cli("check", str(cfg), "--junit", str(junit), "-q")
    _refused(res, "Could not write the JUnit file", "No space left on device")
    assert junit.read_bytes() == previous
    assert sorted(p.name for p in junit.parent.iterdir()) == ["gate.xml"]
