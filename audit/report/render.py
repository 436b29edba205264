"""Render an :class:`AuditReport` to self-contained HTML, PDF and JSON, atomically.

Safety rules kept here:

- jinja2 autoescapes every value and fails on undefined names (StrictUndefined); templates
  never use ``|safe`` on user data. Figures are PNG data URIs made from our own bytes.
- WeasyPrint gets a URL fetcher that refuses everything except ``data:`` URIs: the HTML carries
  its CSS inline, so nothing else is needed, and a path or URL smuggled in through the data
  (``file:///etc/passwd``, an internal address) is never fetched.
- Output is written to a temporary folder beside the target and renamed into place, so a failed
  run leaves no partial report and an existing report is replaced only when asked.
"""

from __future__ import annotations

import base64
import io
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

from audit.core.text import FSI, PDI, has_bidi, isolate_fragments, user_strings
from audit.errors import MissingDependencyError, ReportRenderError
from audit.report.model import AuditReport


def templates_dir() -> Path:
    """The templates folder: inside an installed wheel, else the repository's copy."""
    packaged = Path(__file__).resolve().parents[1] / "_templates"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "templates"
    if repo.is_dir():
        return repo
    raise ReportRenderError("The report templates are missing from this installation of audit-suite.")


def fmt_number(value: Any, digits: int = 3) -> str:
    """Numbers for people: fixed digits, '—' for undefined."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return "—"
    if x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.{max(1, digits - 1)}e}"
    return f"{x:,.{digits}f}"


def fmt_pvalue(value: Any) -> str:
    if value is None:
        return "—"
    x = float(value)
    if not math.isfinite(x):
        return "—"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    x = float(value)
    return "—" if not math.isfinite(x) else f"{100 * x:.{digits}f}%"


@cache
def _environment(folder: str) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,  # a newline after a block tag is a space in prose: keep it
        lstrip_blocks=True,
        finalize=_isolate_bidi,
    )
    env.filters.update(num=fmt_number, pvalue=fmt_pvalue, pct=fmt_pct)
    return env


# The user strings with bidi controls of the report being rendered (see render_html).
_FRAGMENTS: ContextVar[tuple[str, ...]] = ContextVar("bidi_fragments", default=())


def _isolate_bidi(value: Any) -> Any:
    """Isolate bidi controls in every rendered value (jinja ``finalize``).

    Escaping leaves U+202E (right-to-left override) and friends alone, so a column or category
    named with one would reverse the text after it on the reader's screen ("Trojan source" in
    a report). Each user value inside a composed sentence (a finding, a gate message) is wrapped
    in FSI ... PDI (what ``<bdi>`` does) so an unterminated override ends with its value, and
    the whole string is isolated as well. Strings without such characters, i.e. nearly all,
    are passed through unchanged.
    """
    if isinstance(value, str) and has_bidi(value):
        import markupsafe

        if isinstance(value, markupsafe.Markup):
            frags = [markupsafe.escape(f) for f in _FRAGMENTS.get()]
            return markupsafe.Markup(FSI + isolate_fragments(str(value), frags) + PDI)
        return FSI + isolate_fragments(value, _FRAGMENTS.get()) + PDI
    return value


def figure_uri(fig: Any, *, dpi: int = 150) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed, also when drawing fails)."""
    import matplotlib.pyplot as plt

    from audit.core.plots import plain_text

    buf = io.BytesIO()
    try:
        plain_text(fig)  # user names with "$" are text, never mathtext
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None})  # no version string: identical bytes across runs
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _Figures(dict):
    """A method's figures by name; a figure that was not drawn is None, not an error, so a
    partial's ``{% if figs.x %}`` works under StrictUndefined."""

    def __missing__(self, key: str) -> None:
        return None


def _figures(report: AuditReport) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for o in report.outcomes:
        if o.ok and report.data is not None:
            # A figure must never take the report down with it: a failure (in the method's
            # figures() or in drawing one figure) becomes a stated note, the rest is kept.
            drawn = _Figures()
            try:
                figs = o.method.figures(o.result, report.data)
            except Exception as exc:
                report.limitations.append(f"Figures of '{o.title}' could not be drawn: {exc}.")
                figs = {}
            for k, f in figs.items():
                try:
                    drawn[k] = figure_uri(f)
                except Exception as exc:
                    report.limitations.append(
                        f"Figure '{k}' of '{o.title}' could not be drawn: {exc}.")
            out[o.name] = drawn
        else:
            out[o.name] = _Figures()
    return out


def render_html(report: AuditReport) -> str:
    """The report as one self-contained HTML document."""
    folder = templates_dir()
    env = _environment(str(folder))
    from markupsafe import Markup

    # Our own stylesheet, not user data: escaping it would turn its quotes into entities, which
    # <style> does not decode, and silently drop rules (e.g. the font family).
    css = Markup((folder / "static" / "report.css").read_text(encoding="utf-8"))
    figures = _figures(report)
    token = _FRAGMENTS.set(user_strings(report.data))
    try:
        return env.get_template("report.html.j2").render(report=report, css=css, figures=figures,
                                                          json=report.to_json())
    except Exception as exc:
        raise ReportRenderError(f"The HTML report could not be rendered: {type(exc).__name__}: {exc}") from exc
    finally:
        _FRAGMENTS.reset(token)


def safe_url_fetcher() -> Any:
    """A WeasyPrint URL fetcher that serves ``data:`` URIs and refuses everything else."""
    try:
        from weasyprint import URLFetcher
    except (ImportError, OSError) as exc:
        raise MissingDependencyError(
            f"WeasyPrint is needed for the PDF report but could not be loaded ({exc}). Install "
            "the system's Pango library (Debian: libpango-1.0-0), or pass --format html,json.") from None

    class DataOnlyFetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> Any:
            if not url.lower().startswith("data:"):
                raise ValueError(f"audit-suite refuses to fetch {url[:80]!r}: reports embed all assets")
            return super().fetch(url, headers)

    return DataOnlyFetcher(timeout=1, allowed_protocols=["data"], allow_redirects=False)


def render_pdf(html: str) -> bytes:
    """The PDF: WeasyPrint over the same HTML, with network and file access refused."""
    fetcher = safe_url_fetcher()
    from weasyprint import HTML

    try:
        return HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf()
    except Exception as exc:
        raise ReportRenderError(f"The PDF report could not be rendered: {type(exc).__name__}: {exc}") from exc


def write_report(report: AuditReport, out_dir: str | Path, *, formats: Iterable[str],
                 overwrite: bool = False) -> dict[str, Path]:
    """Render and write ``report.html``, ``report.pdf``, ``results.json`` into ``out_dir``.

    Everything is rendered into a temporary sibling folder first; only a complete set of files
    is renamed into place. An existing ``out_dir`` is replaced only with ``overwrite=True``, and
    even then the old report stays intact until the new one is complete.
    """
    out_dir = Path(out_dir)
    formats = tuple(formats)
    _clean_stale(out_dir)  # first: it may move back a report that a killed run had moved aside
    if out_dir.exists() and not overwrite:
        raise ReportRenderError(
            f"The output folder {str(out_dir)!r} already exists. Pass --overwrite to replace it, "
            "or choose another folder with --out.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # The pid in the name tells a later run whether the writer is still alive (see _clean_stale).
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-{os.getpid()}-", dir=out_dir.parent))
    try:
        files: dict[str, Path] = {}
        html = render_html(report) if ("html" in formats or "pdf" in formats) else None
        if "json" in formats:
            (tmp / "results.json").write_bytes(report.json_bytes())
            files["json"] = out_dir / "results.json"
        if html is not None and "html" in formats:
            (tmp / "report.html").write_text(html, encoding="utf-8")
            files["html"] = out_dir / "report.html"
        if html is not None and "pdf" in formats:
            (tmp / "report.pdf").write_bytes(render_pdf(html))
            files["pdf"] = out_dir / "report.pdf"
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out_dir)
        return files
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else: leave its folders alone
    return True


def _clean_stale(target: Path) -> None:
    """Remove what a killed run (SIGKILL, power loss) left beside ``target``.

    ``.name.partial-<pid>-*`` folders of dead processes are incomplete renders: removed. A
    ``.name.old-<pid>`` folder of a dead process is a previous report moved aside by
    :func:`_swap_into_place`; if the kill came before the new report took its place, it is
    the only copy, so it is moved back instead of removed. Folders of live processes (a
    concurrent run) and of other names are never touched.
    """
    import re

    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(partial|old)-(\d+)(?:-.*)?$")
    try:
        siblings = sorted(target.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        m = pattern.match(p.name)
        if m is None or not p.is_dir() or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not target.exists():
            os.replace(p, target)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _swap_into_place(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an old ``target`` is moved aside first and removed last."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["render_html", "render_pdf", "safe_url_fetcher", "templates_dir", "write_report"]
