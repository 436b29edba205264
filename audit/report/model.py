"""The :class:`AuditReport`: every result of a run plus its provenance, and its JSON form."""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from audit.core.dataset import AuditData
from audit.core.method import AuditMethod, Finding, MethodConfig, MethodResult, Skipped, to_jsonable
from audit.report.predictions import predictions_record

RESULTS_SCHEMA = "audit-suite/results@1"
_PACKAGES = ("audit-suite", "numpy", "scipy", "pandas", "scikit-learn", "torch", "captum", "shap",
             "lime", "fairlearn", "jinja2", "weasyprint", "matplotlib", "skops", "safetensors")


@dataclass
class MethodOutcome:
    """One method's entry in the report: its result or the reason it was skipped."""

    method: AuditMethod[Any, Any]
    config: MethodConfig
    result: MethodResult | Skipped
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def title(self) -> str:
        return self.method.title

    @property
    def ok(self) -> bool:
        return not isinstance(self.result, Skipped)

    def to_json(self) -> dict[str, Any]:
        if isinstance(self.result, Skipped):
            return {"title": self.title, **self.result.to_json()}
        return {"title": self.title, "status": "ok", "config": self.config.to_json(),
                "result": self.result.to_json()}


@dataclass
class AuditReport:
    """Everything one audit run produced, ready to render."""

    name: str
    title: str
    model: dict[str, Any]
    data_summary: dict[str, Any]
    outcomes: list[MethodOutcome]
    findings: list[Finding]
    provenance: dict[str, Any]
    data: AuditData | None = field(default=None, repr=False)
    limitations: list[str] = field(default_factory=list)
    gate: Any = None  # the [gate] verdicts (audit.gate.GateResult), None without a gate
    card: dict[str, Any] | None = None  # the [card] table: the authors' part of the model card
    # [report] save_predictions: the per-row predictions written to predictions.parquet
    # (audit.report.predictions); results.json then describes that file under "predictions".
    predictions: Any = field(default=None, repr=False)

    def outcome(self, name: str) -> MethodOutcome | None:
        return next((o for o in self.outcomes if o.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report: every number in the HTML, under stable keys."""
        return {
            "schema": RESULTS_SCHEMA,
            "name": self.name,
            "title": self.title,
            "model": to_jsonable(self.model),
            "data": to_jsonable(self.data_summary),
            "findings": [f.to_json() for f in self.findings],
            "methods": {o.name: o.to_json() for o in self.outcomes},
            "limitations": list(self.limitations),
            **({"gate": to_jsonable(self.gate.to_json())} if self.gate is not None else {}),  # iff [gate]
            **({"card": to_jsonable(self.card)} if self.card else {}),  # iff [card]
            **({"predictions": predictions_record(self.predictions)} if self.predictions is not None else {}),
            "provenance": to_jsonable(self.provenance),
        }

    def json_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=False, allow_nan=False) + "\n").encode()

    def model_card(self) -> str:
        """The model card (Markdown) that ``model_card.md`` holds: measured sections filled
        from this report's results, each line naming its results.json key, and the authors'
        sections from ``card`` (the config's ``[card]`` table), marked missing where absent.

        Examples
        --------
        >>> print(report.model_card()[:40])  # doctest: +SKIP
        # Model card: adult_mlp
        """
        from audit.report.card import render_card

        return render_card(self.to_json())

    def summary(self) -> Any:
        """The findings and the measured quantities of the report, as a pandas DataFrame.

        First one row per finding of the executive summary (``what`` is ``"finding"``,
        ``finding`` the sentence, ``verdict`` its level: alert, warning or info), then one row per
        measured quantity that the model card quotes: ``method``, ``what``, ``value``, ``lower``,
        ``upper``, ``level`` (of the interval), ``interval`` (how the interval was made),
        ``test`` (the hypothesis test behind a disparity's verdict), ``verdict`` (the gate's
        verdict, a disparity's test result, or why a value is undefined or unreliable), ``group``
        (the attribute or explainer) and ``key`` (where results.json holds it, a JSON Pointer).
        Missing values are NaN or None.

        Examples
        --------
        >>> report.summary().query("method == 'performance'")[["what", "value", "lower", "upper"]]  # doctest: +SKIP
        """
        import pandas as pd

        from audit.report.card import SUMMARY_COLUMNS, summary_rows

        frame = pd.DataFrame(summary_rows(self.to_json()), columns=list(SUMMARY_COLUMNS))
        return frame.astype({c: "float64" for c in ("value", "lower", "upper", "level")})

    def _repr_html_(self) -> str:
        """Jupyter's rich display: title, executive summary, gate, method table and figures."""
        from audit.report.render import render_notebook

        return render_notebook(self)


def model_card_from_files(results_path: str | Path, config_path: str | Path | None = None) -> str:
    """The model card of a finished audit, from its results.json (``audit card``); the
    ``[card]`` table of ``config_path``, when given, replaces the one stored in the results."""
    import jinja2

    from audit.core.userfiles import load_json, load_toml
    from audit.errors import InvalidConfigError
    from audit.report.card import check_card, render_card

    results = load_json(results_path, "results file")
    schema = results.get("schema") if isinstance(results, dict) else None
    if schema != RESULTS_SCHEMA:
        raise InvalidConfigError(f"The results file {str(results_path)!r} is not a results.json of this "
                                 f"version of audit-suite (schema {schema!r}, expected {RESULTS_SCHEMA!r}). "
                                 "Write it again with 'audit run'.")
    card = None
    if config_path is not None:
        card = check_card(load_toml(config_path).get("card", {}), f"[card] of {str(config_path)!r}")
    try:
        return render_card(results, card)
    except InvalidConfigError:  # a bad [card] table stored in the results: its own message
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, jinja2.TemplateError) as exc:
        raise InvalidConfigError(f"The results file {str(results_path)!r} does not have the shape 'audit run' "
                                 f"writes ({type(exc).__name__}: {exc}). Write it again with 'audit run'.") from None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding ``path``, if any (never fails the run)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def file_record(role: str, path: str | Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"role": role, "path": str(path), "sha256": h.hexdigest(), "loader": "read"}


def provenance(*, seed: int, files: list[dict[str, Any]], trust_code: bool = False,
               untrusted_config: bool = False, command: list[str] | None = None,
               trust_pickle: bool | None = None, trusted_types: tuple[str, ...] = ()) -> dict[str, Any]:
    """Who ran what, on which inputs, with which software.

    ``trust_code`` (``--trust-code``), ``untrusted_config`` (``--untrusted-config``) and
    ``code_ran`` (every input whose code ran while loading: imported modules, trusted pickles,
    TorchScript, with SHA-256) and ``trusted_types`` (the config's ``[model] trusted_types``, the
    skops types it let load) record the trust decisions; ``trust_pickle`` repeats
    ``trust_code`` under its former key.
    """
    trust_code = trust_code or bool(trust_pickle)
    return {
        "seed": seed,
        "command": shlex.join(command if command is not None else ["audit", *sys.argv[1:]]),
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trust_code": trust_code,
        "trust_pickle": trust_code,
        "untrusted_config": untrusted_config,
        "trusted_types": list(trusted_types),
        "code_ran": [{"role": f["role"], "path": f["path"], "sha256": f["sha256"], "what": f["code"]}
                     for f in files if f.get("code")],
        "files": files,
        "packages": package_versions(),
        "platform": f"{platform.system()} {platform.machine()}",
        "audit_suite_commit": git_commit(Path(__file__).resolve().parent),
    }


__all__ = ["AuditReport", "MethodOutcome", "RESULTS_SCHEMA", "model_card_from_files", "provenance"]
