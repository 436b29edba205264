"""Comparing two saved reports: ``audit compare A/results.json B/results.json``.

Possible when both runs saved their per-row predictions (``[report] save_predictions = true``,
:mod:`audit.report.predictions`). The paired statistics need only those; what needs the models
is said in the result: rank-correlation intervals over rows (per-row attributions are not
saved), and any method that did not run in the saved audits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.limits import check_size
from audit.core.userfiles import check_regular_file
from audit.errors import DataValidationError, InvalidConfigError

NEEDS_MODELS = ("not compared from saved reports: attributions are not saved in results.json; run audit "
                "compare on the two configs (with the models) to compare what drives the decisions")


@dataclass(frozen=True)
class SavedRun:
    """One saved report: its results.json, predictions and where they came from."""

    path: Path
    doc: dict[str, Any]
    frame: Any
    predictions: Path  # the predictions file read beside it (an input of the comparison)


@dataclass(frozen=True)
class _Spec:
    sensitive: tuple[str, ...]
    target: str | None


@dataclass(frozen=True)
class SavedData:
    """The rows of saved predictions, shaped as the comparison reads an audit's data."""

    y: np.ndarray
    sensitive: Any
    spec: _Spec
    classes: tuple[str, ...] | None
    source: str | None
    task: str = "binary"

    @property
    def n_rows(self) -> int:
        return int(self.y.size)


@dataclass(frozen=True)
class _Predictions:
    labels: np.ndarray
    scores: np.ndarray | None


class _Result:
    """A method's saved result (a JSON object) read through attributes, as the importance
    comparison reads live results."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = doc

    def __getattr__(self, key: str) -> Any:
        return self._doc.get(key)

    def attributions(self) -> tuple[Any, ...]:
        """Attributions are not saved in results.json: importances need the models."""
        return ()


@dataclass(frozen=True)
class _Outcome:
    name: str
    result: Any
    ok: bool = True


@dataclass(frozen=True)
class SavedReport:
    """An audit report rebuilt from results.json, as far as the comparison needs one."""

    name: str
    model: dict[str, Any]
    findings: tuple[Any, ...]
    outcomes: tuple[_Outcome, ...]
    data_summary: dict[str, Any]


@dataclass(frozen=True)
class _Finding:
    doc: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.doc


def is_saved_report(path: str | Path) -> bool:
    """Whether a compare argument names a saved report (results.json, or a folder holding one)."""
    p = Path(path)
    return p.suffix == ".json" or (p.is_dir() and (p / "results.json").is_file())


def load_saved(path: str | Path) -> SavedRun:
    """Read results.json and its predictions.parquet; exit-2 errors say what is missing."""
    from audit.core.userfiles import load_json

    p = Path(path)
    results = p / "results.json" if p.is_dir() else p
    doc = load_json(results, "results file")
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("audit-suite/results@"):
        raise InvalidConfigError(f"{str(results)!r} is not the results.json of an audit-suite report.")
    record = doc.get("predictions")
    if not isinstance(record, dict):
        raise DataValidationError(
            f"The report {str(results)!r} did not save its per-row predictions, so it cannot be compared "
            "without the model: rerun its audit with [report] save_predictions = true, or run audit compare "
            "on the two configs.")
    for key, kind in (("name", str), ("data", dict), ("methods", dict), ("provenance", dict)):
        if not isinstance(doc.get(key), kind):
            raise DataValidationError(f"{str(results)!r} is not a complete audit-suite results.json: its "
                                      f"{key!r} is missing or not a{'n object' if kind is dict else ' text'}.")
    if not _plain_name(doc["name"]):  # it names the default output folder
        raise DataValidationError(f"The 'name' in {str(results)!r} must be a plain folder name. "
                                  f"Got {doc['name']!r} instead.")
    file = record.get("file")
    if not isinstance(file, str) or not _plain_name(file):
        raise DataValidationError(f"The predictions file named in {str(results)!r} must be a file beside it "
                                  f"(a plain file name). Got {file!r} instead.")
    parquet = check_regular_file(results.parent / file, "predictions file", error=DataValidationError,
                                 hint="Keep it beside results.json.")
    check_size(parquet.stat().st_size, f"The predictions file {str(parquet)!r} holds")
    try:
        raw = parquet.read_bytes()
    except OSError as exc:
        raise DataValidationError(f"The predictions file {str(parquet)!r} of {str(results)!r} cannot be read "
                                  f"({exc.strerror or exc}). Keep it beside results.json.") from None
    if hashlib.sha256(raw).hexdigest() != record.get("sha256"):
        raise DataValidationError(f"The predictions file {str(parquet)!r} is not the one {str(results)!r} "
                                  "describes (its SHA-256 differs): it was changed or replaced.")
    frame = _checked_frame(raw, parquet, doc, record)
    _check_saved_fields(doc, results, len(frame))
    return SavedRun(results, doc, frame, parquet)


def _check_saved_fields(doc: dict[str, Any], results: Path, rows: int) -> None:
    """Hold every field the comparison reads from a saved results.json to its type and range, so
    a damaged or edited file is an exit-2 error naming the key, never a traceback or a wrong row
    (a counterfactual's ``row: -1`` would otherwise pick the last row)."""
    import math

    def bad(key: str, what: str, value: Any) -> DataValidationError:
        return DataValidationError(f"The saved report {str(results)!r} records {key} = {value!r}, which must be "
                                   f"{what}. Rerun its audit, or compare the two configs.")

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def listed(key: str, value: Any, kind: type = dict) -> list[Any]:
        if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
            raise bad(key, f"a list of {'objects' if kind is dict else 'texts'}", value)
        return value

    listed("findings", doc.get("findings", []))
    for key in ("features", "sensitive"):
        if doc["data"].get(key) is not None:
            listed(f"data.{key}", doc["data"][key], str)
    for name, method in doc["methods"].items():
        if not isinstance(method, dict) or not isinstance(method.get("status"), str):
            raise bad(f"methods.{name}", "an object with a 'status' text", method)
        if method["status"] == "ok" and not isinstance(method.get("result", {}), dict):
            raise bad(f"methods.{name}.result", "an object", method.get("result"))
    cf = doc["methods"].get("counterfactuals")
    if not cf or cf["status"] != "ok":
        return
    result, at = cf.get("result", {}), "methods.counterfactuals.result"
    mad = result.get("mad") or {}
    if not isinstance(mad, dict) or not all(number(v) for v in mad.values()):
        raise bad(f"{at}.mad", "an object of finite numbers (each feature's MAD)", mad)
    seen: set[int] = set()
    for i, row in enumerate(listed(f"{at}.rows", result.get("rows") or [])):
        r = row.get("row")
        if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r < rows or r in seen:
            raise bad(f"{at}.rows[{i}].row", f"a row number in [0, {rows}) that no other entry names", r)
        seen.add(r)
        if not isinstance(row.get("found"), bool):
            raise bad(f"{at}.rows[{i}].found", "true or false", row.get("found"))
        if row["found"] and not (number(row.get("cost")) and row["cost"] >= 0):
            raise bad(f"{at}.rows[{i}].cost", "a finite cost of at least 0", row.get("cost"))
    attributes: set[str] = set()
    for i, entry in enumerate(listed(f"{at}.recourse", result.get("recourse") or [])):
        attr = entry.get("attribute")
        if not isinstance(attr, str) or attr in attributes:
            raise bad(f"{at}.recourse[{i}].attribute", "an attribute name no other entry names", attr)
        attributes.add(attr)
        groups: set[str] = set()
        for j, group in enumerate(listed(f"{at}.recourse[{i}].groups", entry.get("groups") or [])):
            where = f"{at}.recourse[{i}].groups[{j}]"
            if not isinstance(group.get("group"), str) or group["group"] in groups:
                raise bad(f"{where}.group", "a group name no other entry of the attribute names", group.get("group"))
            groups.add(group["group"])
            cost = group.get("mean_cost")
            if cost is not None and (not isinstance(cost, dict) or not all(
                    cost.get(k) is None or number(cost[k]) for k in ("value", "lower", "upper", "level"))):
                raise bad(f"{where}.mean_cost", "an estimate: value, lower, upper and level finite numbers or null",
                          cost)


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _checked_frame(raw: bytes, parquet: Path, doc: dict[str, Any], record: dict[str, Any]) -> Any:
    """The saved predictions, held to what a live audit's predictions must be: 0/1 outcomes and
    decisions, scores in [0, 1], the rows and sensitive columns results.json records."""
    import io

    import pandas as pd
    import pyarrow.parquet as pq

    from audit.core.dataset import _rows, _show, check_parquet_budget
    from audit.report.predictions import SENSITIVE_PREFIX

    where = f"The predictions file {str(parquet)!r}"
    try:
        footer = pq.ParquetFile(io.BytesIO(raw))
        check_parquet_budget(footer.metadata, footer.schema_arrow, where,
                             fix="Compare reports of fewer rows, or run audit compare on the two configs.")
    except DataValidationError:
        raise
    except Exception as exc:  # pyarrow raises many types on a damaged file or bad metadata
        raise DataValidationError(f"{where} cannot be read as Parquet ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}).") from None
    try:
        frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # pyarrow raises many types on a damaged file or bad metadata
        raise DataValidationError(f"{where} cannot be read as Parquet ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}).") from None
    need = ["y", "decision", *(SENSITIVE_PREFIX + str(c) for c in doc["data"].get("sensitive") or [])]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{where} lacks the column(s) {missing}, which results.json records.")
    if len(frame) == 0 or len(frame) != record.get("rows") or len(frame) != doc["data"].get("rows"):
        raise DataValidationError(f"{where} holds {len(frame):,} rows; results.json records "
                                  f"{record.get('rows')!r} (the audit {doc['data'].get('rows')!r}).")
    for column in ("y", "decision"):
        values = frame[column]
        bad = ~values.isin([0, 1]).to_numpy() if pd.api.types.is_numeric_dtype(values) else np.ones(len(values), bool)
        if bad.any():
            raise DataValidationError(
                f"{where}: column {column!r} must hold 0 or 1 on every row (a binary classifier's outcome "
                f"and decision); it holds {_show(sorted({str(v) for v in values[bad]}))} in {_rows(bad)}.")
    if "score" in frame.columns:
        scores = frame["score"]
        bad = np.ones(len(scores), bool)
        if pd.api.types.is_numeric_dtype(scores):
            s = scores.to_numpy(dtype=float)
            bad = ~(np.isfinite(s) & (s >= 0.0) & (s <= 1.0))
        if bad.any():
            raise DataValidationError(
                f"{where}: column 'score' must hold a probability in [0, 1] on every row; it holds "
                f"{_show(sorted({str(v) for v in scores[bad]}))} in {_rows(bad)}.")
    return frame


def saved_inputs(runs: tuple[SavedRun, SavedRun]) -> tuple[list[SavedReport], list[_Predictions], SavedData, str]:
    """The two saved reports, their predictions and the shared rows; refuses different rows."""
    import pandas as pd

    from audit.report.predictions import SENSITIVE_PREFIX, rows_sha256

    a, b = runs
    problems = []
    for key in ("task", "target", "classes", "sensitive", "rows"):
        if a.doc["data"].get(key) != b.doc["data"].get(key):
            problems.append(f"{key} {a.doc['data'].get(key)!r} vs {b.doc['data'].get(key)!r}")
    if a.doc["data"].get("task") != "binary":
        raise InvalidConfigError(f"audit compare compares binary classifiers; {str(a.path)!r} audits a "
                                 f"{a.doc['data'].get('task')} task.")
    ha, hb = rows_sha256(a.frame), rows_sha256(b.frame)
    if not problems and ha != hb:
        problems.append(f"the rows differ in outcome, groups or order (SHA-256 {ha[:12]}… vs {hb[:12]}…)")
    if problems:
        raise DataValidationError(
            f"The saved reports {str(a.path)!r} and {str(b.path)!r} are not of the same rows: {'; '.join(problems)}. "
            "A paired comparison needs both models' predictions on identical rows.")
    sens = [c[len(SENSITIVE_PREFIX):] for c in a.frame.columns if str(c).startswith(SENSITIVE_PREFIX)]
    data = SavedData(a.frame["y"].to_numpy(), pd.DataFrame({c: a.frame[SENSITIVE_PREFIX + c] for c in sens}),
                     _Spec(tuple(sens), a.doc["data"].get("target")), tuple(a.doc["data"].get("classes") or ()),
                     a.doc["data"].get("source"))
    reports = [SavedReport(r.doc.get("name", "saved"), r.doc.get("model", {}),
                           tuple(_Finding(f) for f in r.doc.get("findings", [])),
                           tuple(_Outcome(k, _Result(v.get("result", {}))) for k, v in r.doc.get("methods", {}).items()
                                 if v.get("status") == "ok"),
                           r.doc.get("data", {}))
               for r in runs]
    preds = [_Predictions(r.frame["decision"].to_numpy(), r.frame["score"].to_numpy() if "score" in r.frame else None)
             for r in runs]
    return reports, preds, data, ha


def compare_saved(paths: tuple[str | Path, str | Path], compare: Mapping[str, Any], *,
                  name: str | None = None) -> Any:
    """Compare two saved reports (see the module docstring)."""
    import dataclasses

    from audit.compare.options import parse_compare
    from audit.compare.run import compare_runs
    from audit.config import check_seed
    from audit.report.model import file_record, provenance

    runs = (load_saved(paths[0]), load_saved(paths[1]))
    fairness = (runs[0].doc.get("methods", {}).get("fairness", {}) or {}).get("config") or {}
    fairness = {k: v for k, v in fairness.items() if k in ("min_group_size", "intersections", "reference",
                                                           "favourable", "favourable_label", "max_groups")}
    inter = fairness.get("intersections")
    if inter is not None:
        if not isinstance(inter, list) or not all(isinstance(x, list) for x in inter):
            raise DataValidationError(f"The fairness config in {str(runs[0].path)!r} records 'intersections' "
                                      f"as {inter!r}, not a list of attribute lists.")
        fairness["intersections"] = [list(x) for x in inter]
    options, gate = parse_compare(compare, fairness)
    reports, preds, data, row_hash = saved_inputs(runs)
    features = [f for f in reports[0].data_summary.get("features") or []
                if f in (reports[1].data_summary.get("features") or [])]
    files = [file_record(f"{role} {what}", path) for role, r in zip(("champion", "challenger"), runs)
             for what, path in (("results", r.path), ("predictions", r.predictions))]
    seed = check_seed(runs[0].doc["provenance"].get("seed", 0), f"seed recorded in {str(runs[0].path)!r}")
    result = compare_runs(reports, preds, data, options=options, gate=gate, fairness_options=fairness, seed=seed,
                          name=name or f"{reports[0].name}-vs-{reports[1].name}", row_hash=row_hash,
                          features=features, provenance=provenance(seed=seed, files=files))
    missing = {**result.importance_missing, "attributions": NEEDS_MODELS}
    notes = [*result.limitations,
             "Compared from saved reports: the rows were matched on their order, outcome and sensitive groups "
             "(predictions.parquet does not hold the features)."]
    return dataclasses.replace(result, importance_missing=missing, limitations=notes)


__all__ = ["compare_saved", "is_saved_report", "load_saved"]
