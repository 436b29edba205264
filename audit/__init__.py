"""audit-suite: interpretability and fairness audits of trained models.

The public API is listed in ``__all__``; everything else is private and may change.

Examples
--------
>>> import audit
>>> "run_audit" in audit.__all__
True
"""

from audit.config import AuditPlan
from audit.core.adapter import (
    CallableAdapter,
    ModelAdapter,
    PredictionsAdapter,
    SklearnAdapter,
    TorchAdapter,
    as_adapter,
    load_model,
)
from audit.core.dataset import AuditData, DatasetSpec, Encoding, build_audit_data, read_table
from audit.errors import (
    AuditError,
    CapabilityError,
    DataValidationError,
    InvalidConfigError,
    MissingDependencyError,
    ModelLoadError,
    ReportRenderError,
)
from audit.report.model import AuditReport
from audit.report.render import render_html, render_pdf, write_report
from audit.runner import audit_model, run_audit

__version__ = "0.1.0"

__all__ = [
    "AuditData",
    "AuditError",
    "AuditPlan",
    "AuditReport",
    "CallableAdapter",
    "CapabilityError",
    "DataValidationError",
    "DatasetSpec",
    "Encoding",
    "InvalidConfigError",
    "MissingDependencyError",
    "ModelAdapter",
    "ModelLoadError",
    "PredictionsAdapter",
    "ReportRenderError",
    "SklearnAdapter",
    "TorchAdapter",
    "as_adapter",
    "audit_model",
    "build_audit_data",
    "load_model",
    "read_table",
    "render_html",
    "render_pdf",
    "run_audit",
    "write_report",
]
