"""The audit-method interface: frozen configs and results, skipped records, findings.

A method is a class with a ``name`` (== its module name == its template partial), a frozen
``Config`` dataclass of options, and ``run`` returning one frozen result dataclass. Methods only
compute: figures are drawn by ``figures`` from the result, HTML lives in templates.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.cost import Plan
from audit.core.dataset import TASKS, AuditData
from audit.core.results import Attributions, to_jsonable
from audit.errors import InvalidConfigError, did_you_mean

Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class RunContext:
    """What a method gets besides the model, data and its config.

    rng : the method's own random stream (derived from the run's seed and the method's name);
    progress : ``progress(done, total)`` for the progress display;
    train : the model's training data, when the config names it (methods that refit use it);
    earlier : results of the methods that ran before this one, by name (e.g. for cross-method
    agreement); a method must cope with any of them being absent.
    seed : the run's seed (for libraries that take an integer seed).
    training : the ``[model] training`` table of the config (a training recipe for methods that
    refit the model); empty when the config has none.
    lowered : the options of this method the time budget lowered (their values are in the
    config); empty when nothing was lowered.
    """

    rng: np.random.Generator
    progress: Progress = _no_progress
    train: AuditData | None = None
    earlier: Mapping[str, MethodResult] = dataclasses.field(default_factory=dict)
    seed: int = 0
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    lowered: frozenset[str] = frozenset()

    @classmethod
    def default(cls, seed: int = 0) -> RunContext:
        """A context for calling a method directly (tests, the Python API)."""
        return cls(rng=np.random.default_rng(seed), seed=seed)


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's options. Subclasses add typed fields with defaults and may
    override :meth:`validate`."""

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], *, method: str) -> MethodConfig:
        """Build the config from a TOML table, rejecting unknown keys and wrong types."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in options.items():
            if key not in fields:
                raise InvalidConfigError(
                    f"[methods.{method}] has no option {key!r}.{did_you_mean(key, fields)} "
                    f"Options: {', '.join(sorted(fields)) or 'none'}.")
            values[key] = _coerce(value, hints[key], f"[methods.{method}] {key}")
        config = cls(**values)
        check_bounds(config, method=method)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise InvalidConfigError for values that are well-typed but not allowed."""

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(self)

    @classmethod
    def options(cls) -> tuple[OptionDoc, ...]:
        """Every option with its TOML type, default, bounds and help, in field order.

        The help of an option comes from one place, the class docstring: a line
        ``name : help`` (or ``name1, name2 : help``), running on over the following lines up
        to the next entry or a blank line.
        ``audit methods NAME`` prints these; an option without a line has ``help == ""``.

        Examples
        --------
        >>> from audit.methods.surrogate import SurrogateConfig
        >>> SurrogateConfig.options()[1].name, SurrogateConfig.options()[1].bounds
        ('max_depth', '1 to 64')
        """
        helps = _docstring_help(cls)
        hints = typing.get_type_hints(cls)
        bounds = {**OPTION_BOUNDS, **getattr(cls, "bounds", {})}
        docs = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            docs.append(OptionDoc(f.name, _type_text(hints[f.name]), _toml_text(default),
                                  bounds[f.name].text() if f.name in bounds else "",
                                  helps.get(f.name, "")))
        return tuple(docs)


@dataclass(frozen=True)
class OptionDoc:
    """One method option as ``audit methods NAME`` lists it (all fields plain text)."""

    name: str
    type: str
    default: str
    bounds: str
    help: str


_ENTRY = re.compile(r"^\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+:\s+(\S.*)$")


def _docstring_help(cls: type) -> dict[str, str]:
    """``name : help`` entries of a class docstring (names must be fields of the class); an
    entry runs on over the following lines up to the next entry or a blank line."""
    fields = {f.name for f in dataclasses.fields(cls)}
    helps: dict[str, str] = {}
    names: list[str] = []
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = _ENTRY.match(line)
        entry = [n.strip() for n in match.group(1).split(",")] if match else []
        if entry and set(entry) <= fields:
            names = entry
            for n in names:
                helps[n] = match.group(2).strip()
        elif names and line.strip():
            for n in names:
                helps[n] += " " + line.strip()
        else:
            names = []
    return {n: h.replace("``", "").rstrip(";").strip() for n, h in helps.items()}


def _type_text(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args if a is not type(None))
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (tuple, list):
        return f"list of {_type_text(args[0]) if args else 'values'}"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "table"
    return {bool: "true/false", int: "integer", float: "number", str: "text"}.get(hint, str(hint))


def _toml_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a TOML value against a dataclass field's type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except InvalidConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise InvalidConfigError(f"The {where!r} option must be one of {list(args)}. Got {value!r} instead.")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InvalidConfigError(f"The {where!r} option must be a list. Got {value!r} instead.")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, where) for v in value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InvalidConfigError(f"The {where!r} option must be true or false. Got {value!r} instead.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidConfigError(f"The {where!r} option must be an integer. Got {value!r} instead.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidConfigError(f"The {where!r} option must be a number. Got {value!r} instead.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InvalidConfigError(f"The {where!r} option must be a string. Got {value!r} instead.")
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise InvalidConfigError(f"The {where!r} option must be a table. Got {value!r} instead.")
        return dict(value)
    return value


@dataclass(frozen=True)
class Interval:
    """Declarative bounds of a numeric option (scikit-learn's ``Interval``): ``low <= x <= high``.

    ``why`` says what the upper bound protects (shown in the error). Lower bounds here are the
    loosest sensible ones; a method's ``validate()`` may demand more (e.g. B >= 19).
    """

    low: float | None
    high: float | None
    why: str = ""

    def check(self, value: Any, where: str) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            rule = ("from " if self.low is not None and self.high is not None else "") + self.text()
            why = f" ({self.why})" if self.why else ""
            raise InvalidConfigError(f"The {where!r} option must be {rule}{why}. Got {value!r} instead.")

    def text(self) -> str:
        """The bound as ``audit methods`` shows it: "1 to 64", "at least 0", "at most 10"."""
        if self.low is not None and self.high is not None:
            return f"{self.low:,} to {self.high:,}"
        return f"at most {self.high:,}" if self.high is not None else f"at least {self.low:,}"


_ROWS = 10_000_000
_RESAMPLES = Interval(0, 100_000, "p-values and intervals gain nothing measurable beyond 100,000 "
                                  "resamples; each costs a pass over the data")
_SAMPLES = Interval(1, 100_000, "each sample is a model evaluation per explained row")
_FIGURES = Interval(0, 1_000, "figures and examples shown in the report")

# One bound per option name, used by every method (an option name means one thing across the
# package). from_dict checks every option whose name is here, plus a method's own ``bounds``.
OPTION_BOUNDS: dict[str, Interval] = {
    "n_permutations": _RESAMPLES, "per_input_permutations": _RESAMPLES,
    "n_boot": _RESAMPLES, "n_bootstrap": _RESAMPLES,
    "calibration_bins": Interval(2, 1_000, "a reliability bin needs rows; more bins than this "
                                           "leave most of them empty"),
    "score_bins": Interval(2, 100_000, "each group keeps 4 counts and a score sum per bin"),
    "max_rows": Interval(1, _ROWS, "rows processed; bound the audit with [data] max_rows instead"),
    "n_rows": Interval(1, _ROWS, "rows explained"), "kernel_n_rows": Interval(1, _ROWS, "rows explained"),
    "gradient_n_rows": Interval(1, _ROWS, "rows explained"), "sanity_rows": Interval(1, _ROWS, "rows explained"),
    "faithfulness_rows": Interval(1, _ROWS, "rows explained"),
    "what_if_rows": Interval(1, _ROWS, "rows the what-if thresholds are judged on"),
    "batch_samples": Interval(1, 10_000_000, "perturbed samples scored by one model call, held in memory"),
    "n_global_rows": Interval(0, _ROWS, "rows explained"),
    "max_training_rows": Interval(1, _ROWS, "rows held in memory"),
    "num_samples": Interval(1, 1_000_000, "perturbed rows per explanation, held in memory"),
    "kernel_nsamples": Interval(1, 1_000_000, "model evaluations per explained row"),
    "check_nsamples": Interval(1, 1_000_000, "model evaluations per checked row"),
    "check_n_rows": Interval(1, 10_000, "rows whose values are checked against a reference"),
    "exact_max_evaluations": Interval(1, 10_000_000_000, "model evaluations of exact Shapley values"),
    "gradient_nsamples": _SAMPLES, "smoothgrad_samples": _SAMPLES, "gradient_shap_samples": _SAMPLES,
    "background_size": Interval(1, 100_000, "background rows, each evaluated per explained row"),
    "kernel_background_size": Interval(1, 100_000, "background rows, each evaluated per explained row"),
    "n_background": Interval(1, 100_000, "background rows, each evaluated per explained row"),
    "faithfulness_background": Interval(1, 100_000, "background rows averaged per deletion step"),
    "ig_steps": Interval(1, 10_000, "IG evaluates the model ig_steps times per row"),
    "steps": Interval(1, 100_000, "gradient steps per search"),
    "population": Interval(1, 100_000, "candidates scored per generation"),
    "generations": Interval(1, 10_000, "genetic search rounds"),
    "depths": Interval(1, 64, "a tree deeper than 64 levels cannot be read as rules"),
    "max_depth": Interval(1, 64, "a tree deeper than 64 levels cannot be read as rules"),
    "n_repeats": Interval(1, 1_000, "column permutations per feature"),
    "sanity_repeats": Interval(1, 1_000, "re-initializations of the model"),
    "n_seeds": Interval(1, 1_000, "explanations per row"),
    "n_restarts": Interval(1, 1_000, "networks trained from random starts"),
    "n_random": Interval(0, 10_000, "rows explained"), "top_k": Interval(1, 10_000, "features compared"),
    "max_groups": Interval(2, 10_000, "groups per attribute"),
    "min_group_size": Interval(1, _ROWS, "rows a group needs to be judged"),
    "n_counterfactuals": Interval(1, 10, "searches per row"),
    "per_input": Interval(0, 10_000, "features given their own null"),
    "batch_rows": Interval(1, 1_000_000, "rows per batch, held in memory at once"),
    "chunk": Interval(1, 1_000_000, "networks trained at once, held in memory at once"),
    "n_jobs": Interval(1, 256, "parallel workers (capped at the usable cores)"), "n_workers": Interval(1, 256, "parallel threads"),
    "n_examples": _FIGURES, "n_selected": _FIGURES, "n_per_class": _FIGURES,
    "n_dependence": _FIGURES, "n_waterfall": _FIGURES, "max_display": _FIGURES,
}


def check_bounds(config: MethodConfig, *, method: str) -> None:
    """Check every numeric option of ``config`` against :data:`OPTION_BOUNDS` (and the class's
    own ``bounds``), and that every float option is finite (TOML allows ``nan`` and ``inf``)."""
    bounds = {**OPTION_BOUNDS, **getattr(type(config), "bounds", {})}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        where = f"[methods.{method}] {f.name}"
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidConfigError(f"The {where!r} option must be a finite number. Got {v!r} instead.")
            if f.name in bounds:
                bounds[f.name].check(v, where)


@dataclass(frozen=True)
class MethodResult:
    """Base of every method's result: a frozen dataclass whose ``to_json`` holds every number."""

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(self)

    def attributions(self) -> tuple[Attributions, ...]:
        """The method's attributions in the shared vocabulary (:mod:`audit.core.results`): one
        :class:`~audit.core.results.Attributions` per variant (e.g. per captum method); empty
        for a method that attributes nothing. Cross-method features (agreement, its sanity check
        and faithfulness curves) read only this."""
        return ()


@dataclass(frozen=True)
class Skipped:
    """A method that did not run, and why (shown in the report; nothing is dropped silently)."""

    method: str
    title: str
    reason: str
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"status": "failed" if self.failed else "skipped", "reason": self.reason}


@dataclass(frozen=True)
class Finding:
    """One sentence for the executive summary. ``level`` orders and colours it."""

    level: Literal["info", "warning", "alert"]
    text: str
    method: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "text": self.text, "method": self.method}


C = TypeVar("C", bound=MethodConfig)
R = TypeVar("R", bound=MethodResult)


class AuditMethod(ABC, Generic[C, R]):
    """Base class of every audit method.

    Class attributes
    ----------------
    name : str
        Module name, results key and template partial name.
    title : str
        Section heading in the report.
    requires : frozenset of str
        Model capabilities needed (see :mod:`audit.core.adapter`).
    tasks, modalities : frozenset of str
        Tasks and data modalities the method supports.
    needs_target : bool
        Whether the true outcome must be present.
    Config : type
        The method's frozen options dataclass.
    uses_torch : bool
        Whether ``run`` may use torch (its random generator or threads). The runner imports,
        seeds and single-threads torch only for such methods or when torch is loaded already;
        set False only for a method that never touches torch (a test checks it stays unloaded).
    from_counts : bool
        Whether ``run`` needs only count tables (:class:`audit.stats.counts.GroupTable`), so
        that it runs on streamed data (:mod:`audit.core.stream`); other methods skip it.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    needs_target: ClassVar[bool] = False
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    uses_torch: ClassVar[bool] = True
    from_counts: ClassVar[bool] = False

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: C) -> str | None:
        """Why this method cannot run on this model and data, or None when it can."""
        if getattr(data, "streamed", None) is not None and not self.from_counts:
            from audit.core.stream import NEEDS_ROWS

            return NEEDS_ROWS
        missing = sorted(self.requires - model.capabilities)
        if missing:
            return (f"needs a model with {', '.join(missing)}; {model.description} offers "
                    f"{', '.join(sorted(model.capabilities)) or 'nothing beyond its predictions'}")
        if data.task not in self.tasks:
            return f"not defined for {data.task} tasks"
        if data.modality not in self.modalities:
            return f"not available for {data.modality} data"
        if self.needs_target and data.y is None:
            return "needs the true outcome (a target column)"
        return None

    @abstractmethod
    def run(self, model: ModelAdapter, data: AuditData, config: C, ctx: RunContext) -> R:
        """Compute the method's result from the audited ``data``. Must not render anything."""

    def plan(self, model: ModelAdapter, data: AuditData, config: C, ctx: RunContext) -> Plan:
        """What ``run`` will do, in countable units (rows the model evaluates, calls, refits),
        before it runs; the runner prices it with measured unit costs (:mod:`audit.core.cost`).
        The default is one pass of the model over the audited rows."""
        return Plan(f"one pass over {data.n_rows:,} rows", model_rows=data.n_rows, model_calls=1)

    def findings(self, result: R, config: C) -> list[Finding]:
        """Sentences for the executive summary (plain text; the template escapes them)."""
        return []

    def figures(self, result: R, data: AuditData) -> dict[str, Any]:
        """Matplotlib figures keyed by name; the report embeds them as images."""
        return {}


__all__ = [
    "AuditMethod",
    "Finding",
    "Interval",
    "MethodConfig",
    "MethodResult",
    "OPTION_BOUNDS",
    "OptionDoc",
    "Plan",
    "Progress",
    "RunContext",
    "Skipped",
    "check_bounds",
    "to_jsonable",
]
