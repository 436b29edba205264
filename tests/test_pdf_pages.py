"""The PDF read back by a real PDF toolchain (poppler): pages, figures, extractable text.

``pdftoppm`` renders every page to PNG, ``pdftotext`` extracts the text, ``pdfimages -list``
lists the embedded figures. One rendered page per report is copied to
``reports/ci-artifacts/`` (gitignored) for CI to keep. Skipped only when poppler-utils is not
installed locally; CI installs it (``.ci/run``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.cli import app

TOOLS = [shutil.which(t) for t in ("pdftoppm", "pdftotext", "pdfinfo", "pdfimages")]
pytestmark = pytest.mark.skipif(None in TOOLS, reason="poppler-utils is not installed (CI installs it)")

SHARED = Path(__file__).resolve().parent / "bad_inputs" / "_shared"
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "ci-artifacts"  # gitignored
METHODS = "fairness,surrogate"


@pytest.fixture(scope="module")
def pdf_report(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pdf") / "case"
    shutil.copytree(SHARED, work)
    out = work / "out"
    res = CliRunner().invoke(app, ["run", str(work / "audit.toml"), "--out", str(out), "-q",
                                   "--methods", METHODS, "--format", "pdf,json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout


def test_pdf_pages_render_with_figures_and_text(pdf_report, tmp_path):
    from PIL import Image, ImageStat

    pdf = pdf_report / "report.pdf"
    pages = int(re.search(r"^Pages:\s+(\d+)", _run("pdfinfo", str(pdf)), re.M).group(1))
    assert 3 <= pages <= 40

    _run("pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page"))
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) == pages
    for png in pngs:
        with Image.open(png) as im:
            assert im.size[0] > 100
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(pngs[0], ARTIFACTS / "pdf-report-page1.png")

    # Text is extractable: the title, every method's section title, the limitations.
    text = _run("pdftotext", "-layout", str(pdf), "-")
    doc = json.loads((pdf_report / "results.json").read_text())
    squash = re.sub(r"\s+", " ", text)
    for heading in (doc["title"], "Executive summary", "Limitations", "Provenance",
                    *(m["title"] for m in doc["methods"].values())):
        assert heading in squash, heading

    # Figures are embedded and not blank: extract them and measure pixel variance.
    listing = _run("pdfimages", "-list", str(pdf)).splitlines()[2:]
    assert len(listing) >= 2  # fairness and surrogate each draw at least one figure
    _run("pdfimages", "-png", str(pdf), str(tmp_path / "fig"))
    figs = sorted(tmp_path.glob("fig-*.png"))
    assert figs
    informative = 0
    for fig in figs:
        with Image.open(fig) as im:
            if im.mode in ("1", "L", "RGB", "RGBA", "P") and min(im.size) > 20:
                informative += ImageStat.Stat(im.convert("L")).stddev[0] > 5
    assert informative >= 2, "the figures in the PDF look blank"
