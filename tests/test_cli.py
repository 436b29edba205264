"""The command line: exit codes, one-line errors (never a traceback), files written."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from audit.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_run_writes_the_report_files_and_exits_zero(model_dir):
    out = model_dir / "out"
    result = _run("run", str(model_dir / "audit.toml"), "--out", str(out), "-q", "-m", "surrogate,fairness")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".audit-report", "report.html", "results.json"]
    doc = json.loads((out / "results.json").read_text())
    assert doc["methods"]["surrogate"]["status"] == "ok"


def test_flags_override_the_config(model_dir):
    out = model_dir / "out"
    result = _run("run", str(model_dir / "audit.toml"), "--out", str(out), "--methods", "surrogate",
                  "--seed", "7", "--format", "json", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["methods"]) == ["surrogate"] and doc["provenance"]["seed"] == 7
    assert json.loads(result.stdout)["failed_methods"] == []


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text and text.startswith("error:")
    return text


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda t: t.replace('path = "data.csv"', 'path = "nope.csv"'), "does not exist"),
        (lambda t: t.replace('target = "income"', 'target = "incme"'), "Did you mean 'income'"),
        (lambda t: t.replace('[data]', 'colour = "red"\n[data]'), "Unknown key 'colour' in [model]"),
        (lambda t: t.replace('seed = 0', 'seed = "zero"'), "'seed' value must be int"),
        (lambda t: t + '\n[methods.surogate]\n', "Did you mean 'surrogate'"),
        (lambda t: t + '\n[methods.surrogate]\nmax_deph = 3\n', "Did you mean 'max_depth'"),
        (lambda t: t.replace('task = "binary"', 'task = "ranking"'), "'task' must be one of"),
        (lambda t: t.replace("[model]", "[model"), "not valid TOML"),
    ],
)
def test_config_and_input_errors_exit_2_with_one_line(model_dir, edit, fragment):
    cfg = model_dir / "audit.toml"
    cfg.write_text(edit(cfg.read_text()))
    text = _error_line(_run("run", str(cfg), "--out", str(model_dir / "out")))
    assert fragment in text
    assert not (model_dir / "out").exists()


def test_bad_data_values_exit_2_naming_column_and_rows(model_dir):
    data = model_dir / "data.csv"
    lines = data.read_text().splitlines()
    lines[3] = lines[3].replace("clerk", "pilot").replace("exec", "pilot").replace("tech", "pilot")
    data.write_text("\n".join(lines) + "\n")
    text = _error_line(_run("run", str(model_dir / "audit.toml"), "--out", str(model_dir / "out")))
    assert "'job'" in text and "'pilot'" in text and "first at row 3 (rows counted from 1, the header not counted)" in text


def test_model_width_mismatch_exits_2(model_dir):
    enc = json.loads((model_dir / "encoding.json").read_text())
    enc["features"] = [f for f in enc["features"] if f["name"] != "hours"]
    (model_dir / "encoding.json").write_text(json.dumps(enc))
    text = _error_line(_run("run", str(model_dir / "audit.toml"), "--out", str(model_dir / "out")))
    assert "expects 5 input columns but the encoded data has 4" in text


def test_pickle_without_trust_exits_2_and_trust_is_recorded(model_dir, frame, encoding):
    from sklearn.linear_model import LogisticRegression

    est = LogisticRegression().fit(encoding.encode(frame), frame.income)
    (model_dir / "model.pkl").write_bytes(pickle.dumps(est))
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text().replace('path = "model.safetensors"', 'path = "model.pkl"')
                   .replace('architecture = "architecture.json"\n', ""))
    text = _error_line(_run("run", str(cfg), "--out", str(model_dir / "out")))
    assert "--trust-code" in text
    ok = _run("run", str(cfg), "--out", str(model_dir / "out"), "--trust-code", "-q", "-m", "surrogate")
    assert ok.exit_code == 0, ok.output
    prov = json.loads((model_dir / "out" / "results.json").read_text())["provenance"]
    assert prov["trust_code"] is True and prov["trust_pickle"] is True
    assert [c["path"] for c in prov["code_ran"]] == [str(model_dir / "model.pkl")]
    # --trust-pickle, the former name, is the same flag
    again = _run("run", str(cfg), "--out", str(model_dir / "out2"), "--trust-pickle", "-q", "-m", "surrogate")
    assert again.exit_code == 0, again.output


def test_existing_output_is_kept_unless_overwrite(model_dir):
    out = model_dir / "out"
    assert _run("run", str(model_dir / "audit.toml"), "--out", str(out), "-q", "-m", "surrogate").exit_code == 0
    before = (out / "results.json").read_bytes()
    text = _error_line(_run("run", str(model_dir / "audit.toml"), "--out", str(out)))
    assert "--overwrite" in text and (out / "results.json").read_bytes() == before
    assert _run("run", str(model_dir / "audit.toml"), "--out", str(out), "--overwrite", "-q",
                "-m", "surrogate").exit_code == 0


def test_unknown_method_and_format_flags_exit_2(model_dir):
    assert "Did you mean 'fairness'" in _error_line(
        _run("run", str(model_dir / "audit.toml"), "--methods", "fairnes"))
    assert "formats" in _error_line(_run("run", str(model_dir / "audit.toml"), "--format", "docx"))


def test_methods_lists_every_registered_method():
    from audit.registry import METHODS

    result = _run("methods")
    assert result.exit_code == 0
    for m in METHODS:
        assert m.name in result.output


def test_version_and_module_entry_point():
    assert _run("--version").output.startswith("audit-suite ")
    proc = subprocess.run([sys.executable, "-m", "audit", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("audit-suite ")


def _wide(*args: str):
    """A run whose rich tables fit on one line per row (COLUMNS is read by rich)."""
    return runner.invoke(app, list(args), env={"COLUMNS": "3000"}, catch_exceptions=False)


@pytest.mark.parametrize("name", ["fairness", "surrogate", "shap", "counterfactuals", "connection_weights"])
def test_methods_name_lists_each_option_with_type_default_bounds_and_help(name):
    from audit.registry import METHODS

    method = next(m for m in METHODS if m.name == name)
    result = _wide("methods", name)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: " ".join(line.split()) for line in result.output.splitlines() if line.strip()}
    for o in method.Config.options():
        row = rows[o.name]
        for part in (o.type, o.default, o.bounds or "-", o.help):
            assert part in row, (o.name, part, row)
    text = " ".join(result.output.split())
    assert f"tasks: {', '.join(sorted(method.tasks))}" in text
    assert f"modalities: {', '.join(sorted(method.modalities))}" in text


def test_methods_name_shows_bounds_from_option_bounds():
    row = next(line for line in _wide("methods", "surrogate").output.splitlines() if line.split()[:1] == ["max_depth"])
    assert "1 to 64" in row  # OPTION_BOUNDS["max_depth"]
    row = next(line for line in _wide("methods", "fairness").output.splitlines() if line.split()[:1] == ["n_bootstrap"])
    assert "0 to 100,000" in row and "1000" in row


def test_methods_unknown_name_suggests_the_nearest_and_exits_2():
    result = _wide("methods", "fairnes")
    assert result.exit_code == 2
    assert "Did you mean 'fairness'?" in result.output and "Traceback" not in result.output
    markup = _wide("methods", "[bold]shap[/bold]")
    assert markup.exit_code == 2 and "'[bold]shap[/bold]'" in markup.output


def test_every_square_bracket_in_a_help_text_survives_in_help_output():
    import re

    import typer

    root = typer.main.get_command(app)
    seen = {}
    for name, command in root.commands.items():
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        tokens = set(re.findall(r"\[[^\]\s]+\]", " ".join(texts)))
        output = " ".join(_wide(name, "--help").output.split())
        for token in tokens:
            assert token in output, (name, token)
        seen[name] = tokens
    assert "[gate]" in seen["check"] and "[methods.NAME]" in seen["methods"]
    assert "[gate]" in " ".join(_wide("check", "--help").output.split())


def test_cli_turns_off_the_libraries_own_tqdm_bars(monkeypatch):
    """shap's explainers draw tqdm bars; the CLI reports progress itself (plain lines in a log)."""
    import os
    import subprocess
    import sys

    from audit import cli

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(cli, "app", lambda: None)
    cli.main()
    assert os.environ["TQDM_DISABLE"] == "1"
    probe = subprocess.run([sys.executable, "-c", "import tqdm; print(tqdm.tqdm(range(3)).disable)"],
                           env={**os.environ}, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "True"


@pytest.mark.parametrize("command", ["run", "check", "compare"])
def test_an_unexpected_exception_is_an_internal_error_exit_4_with_the_traceback_in_a_log(
        model_dir, monkeypatch, capsys, tmp_path, command):
    """A bug (here: workers running other code broke the counts' shapes) never leaves the CLI as
    a Python traceback with exit 1, which `audit check` users read as a breach."""
    import tempfile

    from audit import cli, runner

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together with shapes (2,1000) (2,1000,4)")

    monkeypatch.setattr(runner, "run_audit", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = str(model_dir / "audit.toml")
    args = {"run": [config, "--out", str(tmp_path / "out")], "check": [config],
            "compare": [config, config, "--out", str(tmp_path / "cmp")]}[command]
    if command == "check":
        text = (model_dir / "audit.toml").read_text()
        (model_dir / "audit.toml").write_text(text + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.5 }\n')
    monkeypatch.setattr(sys, "argv", ["audit", command, *args, "-q"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 4
    assert "internal error" in err and "Traceback" not in err
    logs = list(tmp_path.glob("audit-internal-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err.replace("\n", "")
    assert "Traceback" in logs[0].read_text() and "broadcast" in logs[0].read_text()


def test_each_methods_progress_line_gives_the_seconds_recorded_in_provenance_plan(model_dir, monkeypatch):
    """One clock per method: the "finished in" line is the runner's measurement, not the time
    until the next line (which also counted a Ray shutdown or the report's writing)."""
    import re
    import time

    import audit.report.render as render

    original = render.write_report

    def slow_write(*args, **kwargs):  # work after the last method must not count as its time
        time.sleep(0.3)
        return original(*args, **kwargs)

    monkeypatch.setattr(render, "write_report", slow_write)
    out = model_dir / "out"
    result = runner.invoke(app, ["run", str(model_dir / "audit.toml"), "--out", str(out), "-m", "surrogate,fairness",
                                 "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = dict(re.findall(r"\] (\w+): finished in ([0-9.]+) s", result.stderr))
    plan = json.loads((out / "results.json").read_text())["provenance"]["plan"]["methods"]
    recorded = {m["method"]: m["actual_seconds"] for m in plan if m["method"] in ("surrogate", "fairness")}
    assert set(shown) == set(recorded) and len(shown) == 2
    for name, seconds in recorded.items():  # the same number, printed to 0.1 s
        assert abs(float(shown[name]) - seconds) <= 0.05 + 1e-3, (name, shown[name], seconds)


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_a_signal_during_a_local_run_ends_it_by_that_signal_and_leaves_no_report_folder(model_dir, name):
    """SIGTERM or SIGINT (Ctrl-C) while the methods run: the process ends by that signal, the
    same as on Ray (tests/test_ray.py), never with a result's code (0-4), and no report folder."""
    script = (
        "import os, signal, sys\n"
        "from audit import cli, runner\n"
        "real = runner.run_audit\n"
        "def signalled(*a, **k):\n"
        f"    os.kill(os.getpid(), signal.SIG{name})\n"
        "    return real(*a, **k)\n"
        "runner.run_audit = signalled\n"
        "sys.argv = ['audit', *sys.argv[1:]]\n"
        "cli.main()\n")
    proc = subprocess.run([sys.executable, "-c", script, "run", str(model_dir / "audit.toml"), "--out",
                           str(model_dir / "out"), "--backend", "local"], capture_output=True, text=True,
                          cwd=model_dir, timeout=120)
    signum = getattr(__import__("signal"), f"SIG{name}")
    assert proc.returncode == -signum, proc.stderr[-2000:]
    assert f"received SIG{name}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (model_dir / "out").exists() and not list(model_dir.glob(".out*"))
