"""The audit plan: what to audit, how, and where to write it, from ``audit.toml`` or flags."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from audit.core.cost import parse_duration
from audit.core.dataset import TASKS, DatasetSpec
from audit.core.limits import parse_size
from audit.core.loading import ModelSpec
from audit.core.modalities import DATA_KEYS as _MODAL_KEYS
from audit.core.modalities import ModalSpec, spec_from_table
from audit.core.userfiles import load_toml
from audit.errors import InvalidConfigError, did_you_mean
from audit.execution import ExecutionConfig
from audit.report.card import check_card

FORMATS = ("html", "pdf", "json", "card")  # "card": model_card.md (audit.report.card)

_TOP_KEYS = {"name", "seed", "model", "data", "methods", "gate", "report", "limits", "run", "execution", "card",
             "compare"}  # [compare]: read by `audit compare` (audit.compare.options)
_MODEL_KEYS = {"path", "architecture", "encoding", "predictions", "task", "threshold", "output",
               "raw_input", "trusted_types", "init_args", "training", "format", "classes"}
_DATA_KEYS = {"path", "target", "positive_label", "features", "sensitive", "na_values", "missing_sensitive",
              "train_path", "max_rows", "sensitive_sources", "stream"}
_REPORT_KEYS = {"title", "formats", "out", "save_predictions"}
_LIMITS_KEYS = {"memory"}
_RUN_KEYS = {"budget"}
_EXECUTION_KEYS = {"backend", "address"}
# numpy's SeedSequence takes any non-negative integer, torch.manual_seed only 64-bit ones;
# seeds are recorded and compared, so one 32-bit range everywhere.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class AuditPlan:
    """Everything a run needs. Paths are absolute (resolved against the config's folder).

    Examples
    --------
    >>> plan = AuditPlan.from_dict({"data": {"path": "d.csv", "target": "y"},
    ...                             "model": {"predictions": "score"}}, base_dir=Path("/tmp"))
    >>> plan.name, plan.data.target
    ('audit', 'y')
    """

    name: str
    seed: int
    model: ModelSpec
    data: DatasetSpec
    data_path: str
    train_path: str | None = None
    max_rows: int | None = None
    methods: tuple[str, ...] | None = None
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    gate: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    title: str | None = None
    formats: tuple[str, ...] = FORMATS
    out_dir: str | None = None
    config_path: str | None = None
    # Images / sequences: how to read them ([data] modality and its keys); None for tabular.
    modal: ModalSpec | None = None
    # [limits] memory in bytes (audit.core.limits); None: AUDIT_MEMORY_LIMIT or half the RAM.
    memory_limit: int | None = None
    # [run] budget in seconds: above it the defaulted sample sizes are lowered (audit.core.cost);
    # None: no budget (the Python API's default; the CLI applies its own default, or --full).
    budget: float | None = None
    # [execution]: the backend that runs the methods' chunks (audit.execution): local or Ray.
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    # [card]: what only a person knows for the model card (audit.report.card.CARD_FIELDS).
    card: Mapping[str, Any] = field(default_factory=dict)
    # [data] stream: read the data in batches into count tables (decisions-only audits,
    # audit.core.stream); None: only when [data] path is a folder.
    stream: bool | None = None
    # [report] save_predictions: also write predictions.parquet (per-row outcome, decision, score,
    # sensitive groups), so that `audit compare` can compare two saved reports without the models.
    save_predictions: bool = False

    @property
    def streams(self) -> bool:
        """Whether the audit reads its data in batches, keeping only counts: ``[data] stream =
        true``, or by default a decisions-only audit of a tabular folder (a folder of Parquet
        files is never loaded into memory; image and sequence folders are read as such)."""
        if self.stream is not None:
            return self.stream
        return self.modal is None and self.model.predictions is not None and Path(self.data_path).is_dir()

    @classmethod
    def load(cls, path: str | Path) -> AuditPlan:
        path = Path(path)
        doc = load_toml(path, "config file")
        return cls.from_dict(doc, base_dir=path.resolve().parent, config_path=str(path))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, base_dir: Path,
                  config_path: str | None = None) -> AuditPlan:
        _check_keys(doc, _TOP_KEYS, "the config")
        model = _table(doc, "model")
        data = _table(doc, "data")
        report = _table(doc, "report")
        limits = _table(doc, "limits")
        _check_keys(limits, _LIMITS_KEYS, "[limits]")
        run = _table(doc, "run")
        _check_keys(run, _RUN_KEYS, "[run]")
        execution = _table(doc, "execution")
        _check_keys(execution, _EXECUTION_KEYS, "[execution]")
        _check_keys(model, _MODEL_KEYS, "[model]")
        _check_keys(data, _DATA_KEYS | _MODAL_KEYS, "[data]")
        _check_keys(report, _REPORT_KEYS, "[report]")
        card = check_card(doc.get("card", {}))

        def resolve(value: Any, key: str) -> str | None:
            if value is None:
                return None
            if not isinstance(value, str):
                raise InvalidConfigError(f"The {key!r} value must be a path string. Got {value!r} instead.")
            p = Path(value)
            return str(p if p.is_absolute() else (base_dir / p))

        name = _typed(doc, "name", str, "audit")
        if not name or any(c in name for c in "/\\\0") or name in (".", ".."):
            raise InvalidConfigError(f"The 'name' must be a plain folder name. Got {name!r} instead.")
        seed = check_seed(_typed(doc, "seed", int, 0), "seed")
        task = _typed(model, "task", str, "binary")
        if task not in TASKS:
            raise InvalidConfigError(f"The [model] 'task' must be one of {list(TASKS)}. Got {task!r} instead.")
        threshold = float(_typed(model, "threshold", (int, float), 0.5))
        if not 0.0 < threshold < 1.0:
            raise InvalidConfigError(f"The [model] 'threshold' must be between 0 and 1. Got {threshold} instead.")
        arch = model.get("architecture")
        if isinstance(arch, str) and arch.endswith(".json"):
            arch = resolve(arch, "architecture")
        elif arch is not None and not isinstance(arch, (str, Mapping)):
            raise InvalidConfigError("The [model] 'architecture' must be a JSON file, "
                                     "\"package.module:Class\" or an inline table.")
        model_spec = ModelSpec(
            path=resolve(model.get("path"), "path"), architecture=arch,
            encoding=resolve(model.get("encoding"), "encoding"),
            predictions=_typed(model, "predictions", str, None), task=task, threshold=threshold,
            output=_typed(model, "output", str, "logit"),
            raw_input=_typed(model, "raw_input", bool, False),
            format=_typed(model, "format", str, None),
            classes=_classes(model.get("classes")),
            trusted_types=_trusted_types(model.get("trusted_types", [])),
            init_args=dict(_typed(model, "init_args", dict, {})),
            training=dict(_typed(model, "training", dict, {})), base_dir=str(base_dir))
        if model_spec.path is None and model_spec.predictions is None:
            raise InvalidConfigError("[model] needs either 'path' (a model file) or 'predictions' "
                                     "(the data column holding precomputed predictions).")
        if "path" not in data:
            raise InvalidConfigError("[data] needs 'path': the CSV or Parquet file to audit.")
        features = data.get("features")
        data_spec = DatasetSpec(
            target=_typed(data, "target", str, None),
            features=tuple(_str_list(features, "[data] features")) if features is not None else None,
            sensitive=tuple(_str_list(data.get("sensitive", []), "[data] sensitive")),
            positive_label=data.get("positive_label"), task=task,  # type: ignore[arg-type]
            predictions=model_spec.predictions,
            na_values=tuple(_str_list(data.get("na_values", []), "[data] na_values")),
            missing_sensitive=_typed(data, "missing_sensitive", str, "error"),
            sensitive_sources=_typed(data, "sensitive_sources", dict, {}))
        methods = doc.get("methods", {})
        if not isinstance(methods, Mapping):
            raise InvalidConfigError("[methods] must be a table of per-method tables.")
        for key, value in methods.items():
            if not isinstance(value, Mapping):
                raise InvalidConfigError(f"[methods.{key}] must be a table of options.")
        gate = doc.get("gate", {})
        if not isinstance(gate, Mapping):
            raise InvalidConfigError("[gate] must be a table of metric = { max = ... } rules.")
        formats = tuple(_str_list(report.get("formats", list(FORMATS)), "[report] formats"))
        check_formats(formats)
        modal = spec_from_table(data, resolve)
        max_rows = _typed(data, "max_rows", int, None)
        if max_rows is not None and max_rows < 1:
            raise InvalidConfigError(f"The [data] 'max_rows' must be positive. Got {max_rows} instead.")
        stream = _typed(data, "stream", bool, None)
        if stream and model_spec.predictions is None:
            raise InvalidConfigError(
                "[data] stream = true reads the data in batches and keeps only counts, which needs "
                "precomputed decisions: set [model] predictions to the column holding them (a model "
                "file needs the rows). Remove stream to audit the model in memory.")
        if stream and (modal is not None or max_rows is not None):
            raise InvalidConfigError(
                f"[data] stream = true reads a CSV or Parquet table in batches; it cannot be combined "
                f"with [data] {'max_rows' if max_rows is not None else 'modality'}. Remove one of them.")
        plan = cls(name=name, seed=seed, model=model_spec, data=data_spec,
                   data_path=resolve(data["path"], "path") or "",
                   train_path=resolve(data.get("train_path"), "train_path"), max_rows=max_rows,
                   method_options={k: dict(v) for k, v in methods.items()}, gate=dict(gate),
                   title=_typed(report, "title", str, None), formats=formats,
                   out_dir=resolve(report.get("out"), "out"), config_path=config_path, modal=modal,
                   memory_limit=parse_size(limits["memory"]) if "memory" in limits else None,
                   budget=parse_duration(run["budget"], "[run] budget") if "budget" in run else None,
                   card=card, stream=stream,
                   save_predictions=_typed(report, "save_predictions", bool, False),
                   execution=ExecutionConfig(_typed(execution, "backend", str, "local"),
                                             _typed(execution, "address", str, None), from_config=True))
        if max_rows is not None and plan.streams:  # a folder: streamed by default, every row counted
            raise InvalidConfigError(
                f"[data] path {data['path']!r} is a folder of Parquet files, which a decisions-only audit "
                "always reads in batches keeping only counts, so [data] max_rows (a random sample of rows "
                "read into memory) cannot apply. Remove max_rows to count every row of the folder, or "
                "point [data] path at one CSV or Parquet file to audit a sample of its rows.")
        return plan

    def with_overrides(self, **changes: Any) -> AuditPlan:
        """A copy with CLI flags applied (None values leave the config's value)."""
        if changes.get("seed") is not None:
            check_seed(changes["seed"], "--seed")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def check_seed(seed: object, where: str) -> int:
    """A seed is an integer in [0, 2**32 - 1]; anything else is a config error (exit 2)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise InvalidConfigError(f"The {where!r} must be an integer from 0 to {MAX_SEED:,} "
                                 f"(2**32 - 1). Got {seed!r} instead.")
    return int(seed)


def check_formats(formats: tuple[str, ...]) -> None:
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InvalidConfigError(f"The report formats must be a non-empty subset of {list(FORMATS)}. "
                                 f"Got {list(formats)} instead.")


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise InvalidConfigError(f"[{key}] must be a table. Got {value!r} instead.")
    return value


def _classes(value: Any) -> tuple[str, ...] | None:
    """[model] classes: distinct labels (text or numbers, compared as written in the data)."""
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) < 2
            or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in value)
            or len({str(c) for c in value}) != len(value)):
        raise InvalidConfigError("The [model] 'classes' must be a list of at least two distinct labels "
                                 f"(strings or integers), in the model's output order. Got {value!r} instead.")
    return tuple(str(c) for c in value)


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise InvalidConfigError(f"Unknown key {key!r} in {where}.{did_you_mean(key, allowed)} "
                                     f"Valid keys: {', '.join(sorted(allowed))}.")


def _typed(table: Mapping[str, Any], key: str, kind: Any, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) and kind is not bool:
        raise InvalidConfigError(f"The {key!r} value must not be true/false. Got {value!r} instead.")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "a number"
        raise InvalidConfigError(f"The {key!r} value must be {name}. Got {value!r} instead.")
    return value


def _trusted_types(value: Any) -> tuple[str, ...]:
    """``[model] trusted_types``: exact type paths, as skops compares them (it has no patterns)."""
    names = _str_list(value, "The [model] 'trusted_types'")
    bad = next((n for n in names if not n or any(c in n for c in "*?[] \t\n") or "." not in n.strip(".")), None)
    if bad is not None:
        raise InvalidConfigError(
            f"The [model] 'trusted_types' entry {bad!r} is not a type path: list each type exactly as skops "
            "names it (e.g. \"sklearn.tree._tree.Tree\"); skops compares whole names, so a pattern such as "
            "\"*\" would trust nothing it appears to.")
    return tuple(names)


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidConfigError(f"{where} must be a list of strings. Got {value!r} instead.")
    return list(value)


__all__ = ["FORMATS", "AuditPlan"]
