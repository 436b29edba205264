"""Render an :class:`AuditReport` to self-contained HTML, PDF and JSON, atomically.

Safety rules kept here:

- jinja2 autoescapes every value and fails on undefined names (StrictUndefined); templates
  never use ``|safe`` on user data. Figures are PNG data URIs made from our own bytes.
- WeasyPrint gets a URL fetcher that refuses everything except ``data:`` URIs: the HTML carries
  its CSS inline, so nothing else is needed, and a path or URL smuggled in through the data
  (``file:///etc/passwd``, an internal address) is never fetched.
- Rendering is pure: it never changes the report, so results.json is the same whichever
  formats are written. Writing (checks, lock, fsync, atomic swap) is ``audit.report.output``.
"""

from __future__ import annotations

import base64
import io
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.core.text import FSI, PDI, fixed, has_bidi, isolate_fragments, user_strings
from audit.errors import MissingDependencyError, ReportRenderError

if TYPE_CHECKING:  # render never imports the report model: the model's methods import render
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
    return fixed(x, f",.{digits}f")


def fmt_pvalue(value: Any) -> str:
    if value is None:
        return "—"
    x = float(value)
    if not math.isfinite(x):
        return "—"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def fmt_p_is(value: Any) -> str:
    """A p-value in a sentence: ``p = 0.012``, ``p < 0.001`` (never ``p = < 0.001``), ``p = —``."""
    text = fmt_pvalue(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    x = float(value)
    return "—" if not math.isfinite(x) else fixed(100 * x, f".{digits}f") + "%"


def environment() -> Any:
    """The jinja2 environment of every report template (autoescape, StrictUndefined, filters)."""
    return _environment(str(templates_dir()))


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
    env.filters.update(num=fmt_number, pvalue=fmt_pvalue, p_is=fmt_p_is, pct=fmt_pct)
    return env


# The user strings with bidi controls of the report being rendered (see render_html).
_FRAGMENTS: ContextVar[tuple[str, ...]] = ContextVar("bidi_fragments", default=())
#: Public name of the same variable: a renderer sets it to the user strings of what it renders.
BIDI_FRAGMENTS = _FRAGMENTS


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


def _figures(report: AuditReport, notes: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for o in report.outcomes:
        if o.ok and report.data is not None:
            # A figure must never take the report down with it: a failure (in the method's
            # figures() or in drawing one figure) becomes a stated note, the rest is kept.
            drawn = _Figures()
            try:
                figs = o.method.figures(o.result, report.data)
            except Exception as exc:
                notes.append(f"Figures of '{o.title}' could not be drawn: {exc}.")
                figs = {}
            for k, f in figs.items():
                try:
                    drawn[k] = figure_uri(f)
                except Exception as exc:
                    notes.append(f"Figure '{k}' of '{o.title}' could not be drawn: {exc}.")
            out[o.name] = drawn
        else:
            out[o.name] = _Figures()
    return out


def render_html(report: AuditReport) -> str:
    """The report as one self-contained HTML document."""
    from markupsafe import Markup

    # Our own stylesheet, not user data: escaping it would turn its quotes into entities, which
    # <style> does not decode, and silently drop rules (e.g. the font family).
    css = Markup((templates_dir() / "static" / "report.css").read_text(encoding="utf-8"))
    return _render("report.html.j2", report, "HTML report", css=css, json=report.to_json())


def render_notebook(report: AuditReport) -> str:
    """The report as an HTML fragment for Jupyter (``AuditReport._repr_html_``): title, executive
    summary, gate, method table and every figure, with the same escaping as the report."""
    return _render("notebook.html.j2", report, "notebook display")


def _render(template: str, report: AuditReport, what: str, **extra: Any) -> str:
    env = _environment(str(templates_dir()))
    notes: list[str] = []
    figures = _figures(report, notes)
    # The notes belong to this rendering only: the report itself (and results.json) stays as it was.
    shown = dataclasses.replace(report, limitations=[*report.limitations, *notes]) if notes else report
    token = _FRAGMENTS.set(user_strings(report.data))
    try:
        return env.get_template(template).render(report=shown, figures=figures, **extra)
    except Exception as exc:
        raise ReportRenderError(f"The {what} could not be rendered: {type(exc).__name__}: {exc}") from exc
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
    """Render and write ``report.html``, ``report.pdf``, ``results.json`` and ``model_card.md``
    (the formats asked for) into ``out_dir``.

    Everything is rendered first, then written and fsynced into a hidden folder beside the
    target and renamed into place, so a failed run leaves no partial output. An existing
    ``out_dir`` is replaced only with ``overwrite=True`` and only when it is an audit-suite
    report folder (never one holding the run's inputs or other files); the old report stays
    intact until the new one is complete. See :mod:`audit.report.output`.

    Examples
    --------
    >>> write_report(report, "reports/my_model", formats=("html", "json"))  # doctest: +SKIP
    {'json': PosixPath('reports/my_model/results.json'), 'html': ...}
    """
    formats = tuple(formats)
    extra = {}
    if report.predictions is not None:
        from audit.report.predictions import FILE, parquet_bytes

        extra[FILE] = parquet_bytes(report.predictions)
    if "card" in formats:
        extra["model_card.md"] = report.model_card().encode("utf-8")
    return write_rendered(out_dir, formats=formats, overwrite=overwrite, provenance=report.provenance,
                          html=lambda: render_html(report), json_bytes=report.json_bytes, extra=extra)


def write_rendered(out_dir: str | Path, *, formats: Iterable[str], overwrite: bool,
                   provenance: Mapping[str, Any], html: Callable[[], str],
                   json_bytes: Callable[[], bytes], extra: Mapping[str, bytes] | None = None) -> dict[str, Path]:
    """Write ``results.json`` (``json_bytes()``), ``report.html`` (``html()``) and ``report.pdf``
    (WeasyPrint over the same HTML) into ``out_dir``, atomically: everything is rendered first,
    inside :func:`audit.report.output.reserve_output`, then swapped into place. Used by audit
    reports and comparison reports alike. The folder may not be, hold or lie inside any file of
    ``provenance["files"]`` (the run's inputs). ``extra``: further files (name -> bytes), e.g.
    predictions.parquet, written with whichever formats."""
    from audit.report.output import place_report, reserve_output

    formats = tuple(formats)
    out_dir = Path(out_dir)
    inputs = [(str(f.get("role", "input")), str(f["path"]))
              for f in provenance.get("files", []) if f.get("path")]
    with reserve_output(out_dir, overwrite=overwrite, inputs=inputs) as target:
        contents: dict[str, bytes] = {}
        page = html() if ("html" in formats or "pdf" in formats) else None
        if "json" in formats:
            contents["results.json"] = json_bytes()
        if page is not None and "html" in formats:
            contents["report.html"] = page.encode("utf-8")
        if page is not None and "pdf" in formats:
            contents["report.pdf"] = render_pdf(page)
        contents.update(extra or {})
        place_report(out_dir, target, contents, overwrite=overwrite)
    kinds = {"results.json": "json", "report.html": "html", "report.pdf": "pdf", "predictions.parquet": "predictions",
             "model_card.md": "card"}
    return {kinds[name]: out_dir / name for name in contents}


__all__ = ["BIDI_FRAGMENTS", "environment", "render_html", "render_notebook", "render_pdf", "safe_url_fetcher",
           "templates_dir", "write_rendered", "write_report"]
