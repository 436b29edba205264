"""The bad-input corpus (tests/bad_inputs/): every case through the real CLI.

Each case is a folder holding the files that differ from ``tests/bad_inputs/_shared`` and an
``expect.toml`` (see ``tests/bad_inputs/_generate.py``). An input error must end in exit code 2
with one line that starts with ``error:`` and contains every expected fragment (file, column,
rows, fix), and no output folder; a run that is expected to succeed must flag the problem
(fragments in results.json). Never a traceback, never a silent wrong number.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.cli import app

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
SHARED = CORPUS / "_shared"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
DEFAULT_METHODS = "fairness,surrogate"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 100


def _stage(case: str, tmp_path: Path) -> tuple[Path, dict]:
    work = tmp_path / "case"
    shutil.copytree(SHARED, work)
    src = CORPUS / case
    for f in src.iterdir():
        if f.name not in ("expect.toml", "delete.txt"):
            shutil.copy(f, work / f.name)
    if (src / "delete.txt").exists():
        for name in (src / "delete.txt").read_text().split():
            (work / name).unlink()
    return work, tomllib.loads((src / "expect.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, tmp_path):
    work, expect = _stage(case, tmp_path)
    for module in expect.get("requires", []):
        pytest.importorskip(module, reason=f"optional dependency {module} is not installed")
    out = tmp_path / "out"
    args = ["run", str(work / "audit.toml"), "--out", str(out), "-q",
            "--methods", expect.get("methods", DEFAULT_METHODS), *expect.get("flags", [])]
    if expect.get("command") == "check":  # the deployment gate: `audit check CONFIG`
        args = ["check", str(work / "audit.toml"), "-q", *expect.get("flags", [])]
    # catch_exceptions=False: anything but an AuditError escapes and fails the test with its
    # traceback (a bug), instead of passing as some exit code.
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    text = result.output.strip()
    assert "Traceback" not in text
    # nothing from a user string reaches the terminal raw: no escape sequences, no bidi controls
    assert not {"\x1b", "\x07", "\u202e", "\u202b", "\u2066"} & set(text), ascii(text)
    assert result.exit_code == expect["exit"], text
    if expect["exit"] == 2:
        assert text.startswith("error:") and "\n" not in text, text
        for fragment in expect["fragments"]:
            assert fragment in text, f"{fragment!r} not in {text!r}"
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    else:
        doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
        haystack = json.dumps(doc, ensure_ascii=False)
        for fragment in expect["fragments"]:
            assert fragment in haystack, f"{fragment!r} not in results.json"
        for fragment in expect.get("absent", []):
            assert fragment not in haystack, f"{fragment!r} in results.json"
        # no method may have failed with an internal error on a bad input
        assert not [m for m, v in doc["methods"].items() if v.get("status") == "failed"], \
            {m: v.get("reason") for m, v in doc["methods"].items()}


def test_bidi_overrides_in_names_cannot_reorder_the_report():
    """A right-to-left override in a column or category name (unterminated) is isolated: in
    the HTML every such character sits inside FSI ... PDI, so it cannot reverse the text
    that follows it on the reader's screen."""
    import numpy as np

    from audit.report.render import render_html
    from audit.runner import audit_model
    from tests.conftest import make_frame

    rlo = "\u202e"
    frame = make_frame(200).rename(columns={"hours": f"hours{rlo}sruoh"})
    frame["sex"] = frame["sex"].map({"Female": f"{rlo}elameF", "Male": "Male"})
    report = audit_model(lambda X: 1 / (1 + np.exp(-X[:, 0])), frame, target="income",
                         positive_label=">50K", sensitive=["sex"], methods=["fairness", "surrogate"])
    html = render_html(report)
    positions = [i for i, c in enumerate(html) if c == rlo]
    assert positions
    for i in positions:
        before = html[:i]
        assert before.rfind("\u2068") > before.rfind("\u2069"), html[max(0, i - 80):i + 20]
        after = html[i:]
        assert "\u2069" in after
