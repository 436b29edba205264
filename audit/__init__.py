"""audit-suite: interpretability and fairness audits of trained models.

The public API is listed in ``__all__``; everything else is private and may change.

Examples
--------
>>> import audit
>>> "run_audit" in audit.__all__
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Where each public name lives. They are imported on first use (PEP 562), so `import audit.cli`
# (and `audit --help`) does not pay for pandas, the adapters, the methods and the report.
_EXPORTS = {
    "AuditPlan": "audit.config",
    **dict.fromkeys(("CallableAdapter", "ModelAdapter", "PredictionsAdapter", "SklearnAdapter",
                     "TorchAdapter", "as_adapter"), "audit.core.adapter"),
    "load_model": "audit.core.loading",
    **dict.fromkeys(("Attributions", "Estimate"), "audit.core.results"),
    **dict.fromkeys(("AuditData", "DatasetSpec", "Encoding", "build_audit_data", "read_table"),
                    "audit.core.dataset"),
    **dict.fromkeys(("AuditError", "CapabilityError", "DataValidationError", "InvalidConfigError",
                     "MissingDependencyError", "ModelLoadError", "ReportRenderError"), "audit.errors"),
    "AuditReport": "audit.report.model",
    **dict.fromkeys(("ComparisonResult", "compare_models"), "audit.compare"),
    **dict.fromkeys(("render_html", "render_pdf", "write_report"), "audit.report.render"),
    **dict.fromkeys(("audit_model", "run_audit"), "audit.runner"),
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from audit.config import AuditPlan
    from audit.core.adapter import (
        CallableAdapter,
        ModelAdapter,
        PredictionsAdapter,
        SklearnAdapter,
        TorchAdapter,
        as_adapter,
    )
    from audit.core.dataset import AuditData, DatasetSpec, Encoding, build_audit_data, read_table
    from audit.core.loading import load_model
    from audit.core.results import Attributions, Estimate
    from audit.errors import (
        AuditError,
        CapabilityError,
        DataValidationError,
        InvalidConfigError,
        MissingDependencyError,
        ModelLoadError,
        ReportRenderError,
    )
    from audit.compare import ComparisonResult, compare_models
    from audit.report.model import AuditReport
    from audit.report.render import render_html, render_pdf, write_report
    from audit.runner import audit_model, run_audit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "Attributions",
    "AuditData",
    "AuditError",
    "AuditPlan",
    "AuditReport",
    "CallableAdapter",
    "CapabilityError",
    "ComparisonResult",
    "DataValidationError",
    "DatasetSpec",
    "Encoding",
    "Estimate",
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
    "compare_models",
    "load_model",
    "read_table",
    "render_html",
    "render_pdf",
    "run_audit",
    "write_report",
]
