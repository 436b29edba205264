"""The comparison report: HTML from ``templates/compare.html.j2``, the same HTML as PDF, and
results.json, written atomically like an audit report (:mod:`audit.report.output`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from audit.compare.run import ComparisonResult
from audit.errors import ReportRenderError


def render_comparison(result: ComparisonResult) -> str:
    """The comparison as one self-contained HTML document (autoescaped, no scripts)."""
    from markupsafe import Markup

    from audit.compare.paired import BOOTSTRAP_ONE_SIDED_ERROR, MIN_EVENTS
    from audit.report.render import BIDI_FRAGMENTS, environment, templates_dir

    css = Markup((templates_dir() / "static" / "report.css").read_text(encoding="utf-8"))
    fragments = tuple(s for r in result._reports for s in _user_strings(r))
    token = BIDI_FRAGMENTS.set(fragments)
    try:
        return environment().get_template("compare.html.j2").render(r=result.to_json(), css=css, min_events=MIN_EVENTS,
                                                                   bootstrap_error=BOOTSTRAP_ONE_SIDED_ERROR)
    except Exception as exc:
        raise ReportRenderError(f"The comparison report could not be rendered: {type(exc).__name__}: {exc}") from exc
    finally:
        BIDI_FRAGMENTS.reset(token)


def _user_strings(report: object) -> tuple[str, ...]:
    from audit.core.text import user_strings

    return tuple(user_strings(getattr(report, "data", None)))


def write_comparison(result: ComparisonResult, out_dir: str | Path, *, formats: Iterable[str],
                     overwrite: bool = False) -> dict[str, Path]:
    """Render and write report.html, report.pdf and results.json into ``out_dir`` atomically
    (an existing folder only with ``overwrite`` and only if it is a report folder)."""
    from audit.report.render import write_rendered

    return write_rendered(out_dir, formats=formats, overwrite=overwrite, provenance=result.provenance,
                          html=lambda: render_comparison(result), json_bytes=result.json_bytes)


__all__ = ["render_comparison", "write_comparison"]
