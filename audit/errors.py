"""One exception tree for everything a user can get wrong.

Every error a user can cause is an :class:`AuditError`; the CLI turns it into a one-line
message and exit code 2 (``exit_code`` on the class). Anything else escaping the library is
a bug in audit-suite.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: The CLI's exit codes, defined here only (README "Exit codes"): success, a gate threshold
#: breached, a usage or input error (every :class:`AuditError`), insufficient evidence for the
#: gate, an internal error (a method that failed: the report is still written; any other bug:
#: the CLI names a log file with the traceback).
EXIT_OK, EXIT_BREACH, EXIT_USAGE, EXIT_INSUFFICIENT, EXIT_METHOD_FAILED = 0, 1, 2, 3, 4


class AuditError(Exception):
    """Base class of every error caused by user input; carries the CLI exit code."""

    exit_code = EXIT_USAGE


class InvalidConfigError(AuditError, ValueError):
    """A configuration value or parameter is invalid."""


class DataValidationError(AuditError, ValueError):
    """The data does not fit the dataset specification."""


class ModelLoadError(AuditError):
    """A model file could not be loaded, or was refused as unsafe."""


class CapabilityError(AuditError):
    """The model cannot do what a method needs (e.g. gradients from a black box)."""


class MissingDependencyError(AuditError, ImportError):
    """An optional dependency needed for this feature is not installed."""


class ReportRenderError(AuditError):
    """The report could not be written."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


__all__ = [
    "AuditError",
    "CapabilityError",
    "DataValidationError",
    "InvalidConfigError",
    "MissingDependencyError",
    "ModelLoadError",
    "ReportRenderError",
    "did_you_mean",
]
