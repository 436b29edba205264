"""The report layer: AuditReport, HTML/PDF/JSON rendering."""

from audit.report.model import AuditReport, MethodOutcome
from audit.report.render import render_html, render_pdf, write_report

__all__ = ["AuditReport", "MethodOutcome", "render_html", "render_pdf", "write_report"]
