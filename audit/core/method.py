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

    #: Method-specific rules, by option name, over :data:`OPTION_BOUNDS` (which bounds every
    #: option of that name in the package): ``Interval``, ``Options`` or ``Either``.
    bounds: ClassVar[Mapping[str, Constraint]] = {}
    #: Old option names -> their new names: an old name is an error naming the new one.
    renamed: ClassVar[Mapping[str, str]] = {}
    #: Sub-tables of the section read elsewhere (e.g. ``[compare.gate]``): named in the
    #: unknown-key message, never options.
    tables: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], *, method: str, source: str | None = None,
                  section: str | None = None) -> MethodConfig:
        """Build the config from a TOML table: unknown keys, wrong types and values outside an
        option's declared rules are errors in one sentence shape naming the option, the
        ``[methods.NAME]`` section (or ``section``, for a table elsewhere such as ``[compare]``)
        and the file ``source`` (when there is one).

        Examples
        --------
        >>> from audit.methods.surrogate import SurrogateConfig
        >>> SurrogateConfig.from_dict({"max_depth": 0}, method="surrogate")
        Traceback (most recent call last):
        ...
        audit.errors.InvalidConfigError: The 'max_depth' option in [methods.surrogate] must be from 1 to 64 (a tree deeper than 64 levels cannot be read as rules). Got 0 instead.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        section = section or f"[methods.{method}]"
        renamed = cls.renamed
        where = f" of {source}" if source else ""
        try:
            values = {}
            for key, value in options.items():
                if key in renamed and key not in fields:
                    raise InvalidConfigError(
                        f"The {key!r} option in {section}{where} was renamed {renamed[key]!r} "
                        f"(one name per idea across methods): write {renamed[key]} = {_toml_text(value)}.")
                if key not in fields:
                    tables = "".join(f"; the table {section[:-1]}.{t}]" for t in cls.tables)
                    raise InvalidConfigError(
                        f"{section}{where} has no option {key!r}.{did_you_mean(key, [*fields, *cls.tables])} "
                        f"Options: {', '.join(sorted(fields)) or 'none'}{tables}.")
                values[key] = _coerce(value, hints[key], key)
            config = cls(**values)
            check_bounds(config)
            config.validate()
        except OptionError as exc:
            raise InvalidConfigError(option_message(exc.option, exc.rule, exc.value, section=section,
                                                    source=source)) from None
        return config

    def validate(self) -> None:
        """Rules that involve several options; raise :class:`OptionError` (single-option rules
        are declared in ``bounds`` instead)."""

    @classmethod
    def constraints(cls) -> dict[str, Constraint]:
        """The rule of every option that has one: :data:`OPTION_BOUNDS` under the class's own."""
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in {**OPTION_BOUNDS, **cls.bounds}.items() if k in names}

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
        bounds = cls.constraints()
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


def _coerce(value: Any, hint: Any, option: str) -> Any:
    """Check a TOML value against a dataclass field's type hint (OptionError when it fails)."""
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
                return _coerce(value, arg, option)
            except OptionError as exc:
                errors.append(exc)
        raise OptionError(option, " or ".join(e.rule for e in errors), value)
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise OptionError(option, Options(args).text(), value)
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise OptionError(option, "a list", value)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, option) for v in value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise OptionError(option, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(option, "an integer", value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(option, "a number", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise OptionError(option, "a string", value)
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise OptionError(option, "a table", value)
        return dict(value)
    return value


class Constraint:
    """A declarative rule for one option's value (scikit-learn's parameter constraints).

    ``allows(value)`` says whether a value passes and ``text()`` states the rule, completing
    "must be ...". ``None`` (an unset optional option) always passes.
    """

    why: str = ""

    def allows(self, value: Any) -> bool:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def text(self) -> str:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def rule(self) -> str:
        """The rule with the reason it exists, as an error message states it."""
        return self.text() + (f" ({self.why})" if self.why else "")


@dataclass(frozen=True)
class Interval(Constraint):
    """Bounds of a numeric option (scikit-learn's ``Interval``).

    ``closed`` says which ends are included; ``why`` says what the bounds protect (shown in the
    error). Non-numbers pass (their type is checked against the field's type hint).

    Examples
    --------
    >>> Interval(0, 1, closed="neither").text(), Interval(1, None).text()
    ('greater than 0 and less than 1', 'at least 1')
    >>> Interval(0, 1, closed="neither").allows(1.0)
    False
    """

    low: float | None
    high: float | None
    why: str = ""
    closed: Literal["both", "left", "right", "neither"] = "both"

    def allows(self, value: Any) -> bool:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        low_in = self.closed in ("both", "left")
        high_in = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not low_in)):
            return False
        return not (self.high is not None and (value > self.high or (value == self.high and not high_in)))

    def text(self) -> str:
        """The bound as ``audit methods`` shows it: "1 to 64", "at least 0", "greater than 0"."""
        low_in = self.closed in ("both", "left")
        high_in = self.closed in ("both", "right")
        if self.low is not None and self.high is not None and low_in and high_in:
            return f"{self.low:,} to {self.high:,}"
        parts = []
        if self.low is not None:
            parts.append(f"{'at least' if low_in else 'greater than'} {self.low:,}")
        if self.high is not None:
            parts.append(f"{'at most' if high_in else 'less than'} {self.high:,}")
        return " and ".join(parts)

    def rule(self) -> str:
        both = self.low is not None and self.high is not None and self.closed == "both"
        return ("from " if both else "") + super().rule()


@dataclass(frozen=True)
class Options(Constraint):
    """The allowed values of an option (scikit-learn's ``StrOptions``).

    Examples
    --------
    >>> Options(("sd", "none")).text()
    'one of "sd", "none"'
    """

    values: tuple[Any, ...]
    why: str = ""

    def allows(self, value: Any) -> bool:
        items = value if isinstance(value, tuple) else (value,)
        return all(v is None or (not isinstance(v, bool) and v in self.values) for v in items)

    def text(self) -> str:
        return "one of " + ", ".join(json.dumps(v) if isinstance(v, str) else str(v) for v in self.values)


@dataclass(frozen=True)
class Either(Constraint):
    """A value that passes any one of several constraints, e.g. 0 (off) or at least 100.

    Examples
    --------
    >>> Either((Options((0,)), Interval(100, 100_000))).text()
    '0 or 100 to 100,000'
    """

    parts: tuple[Constraint, ...]
    why: str = ""

    def allows(self, value: Any) -> bool:
        return any(p.allows(value) for p in self.parts)

    @property
    def high(self) -> float | None:
        """The largest value allowed (None: no upper bound)."""
        highs = [getattr(p, "high", None) if isinstance(p, Interval) else max(p.values) for p in self.parts]
        return None if None in highs else max(highs)

    def text(self) -> str:
        return " or ".join(p.text().removeprefix("one of ") for p in self.parts)


class OptionError(InvalidConfigError):
    """A method option breaks a rule; :meth:`MethodConfig.from_dict` names the section and file.

    Raised by constraints, type checks and a config's :meth:`MethodConfig.validate` (for rules
    that involve several options) with the option, the rule ("must be ...") and the value.
    """

    def __init__(self, option: str, rule: str, value: Any) -> None:
        self.option, self.rule, self.value = option, rule, value
        super().__init__(option_message(option, rule, value))


def option_message(option: str, rule: str, value: Any, *, section: str = "", source: str | None = None,
                   noun: str = "option") -> str:
    """The one sentence every option error uses: which option, where, the rule, the value.

    Examples
    --------
    >>> option_message("n_rows", "at least 1", 0, section="[methods.shap]", source="audit.toml")
    "The 'n_rows' option in [methods.shap] of audit.toml must be at least 1. Got 0 instead."
    """
    where = (f" in {section}" if section else "") + (f" of {source}" if source else "")
    return f"The {option!r} {noun}{where} must be {rule}. Got {value!r} instead."


def check_permutations(option: str, value: int | None, *, alpha: float, alternative: str = "greater") -> None:
    """A rule that involves other options (for :meth:`MethodConfig.validate`): ``value``
    permutations must let one test reach ``alpha`` (at least 19 one-sided, 39 two-sided at
    0.05), since the smallest p-value is 1/(B+1) one-sided and 2/(B+1) two-sided."""
    from audit.stats.permutation import MIN_PERMUTATIONS, smallest_reaching_b

    least = max(MIN_PERMUTATIONS, smallest_reaching_b(1, alpha, alternative, "none"))
    if value is not None and value < least:
        sided, floor = ("two-sided", "2/(B+1)") if alternative == "two-sided" else ("one-sided", "1/(B+1)")
        raise OptionError(option, f"at least {least} (with B permutations the smallest {sided} p-value is "
                                  f"{floor}, which cannot reach alpha = {alpha:g} below {least})", value)


_ROWS = 10_000_000
_RESAMPLES = Interval(0, 100_000, "p-values and intervals gain nothing measurable beyond 100,000 "
                                  "resamples; each costs a pass over the data")
_SAMPLES = Interval(1, 100_000, "each sample is a model evaluation per explained row")
_FIGURES = Interval(0, 1_000, "figures and examples shown in the report")

# One bound per option name, used by every method (an option name means one thing across the
# package). from_dict checks every option whose name is here, plus a method's own ``bounds``.
OPTION_BOUNDS: dict[str, Constraint] = {
    "alpha": Interval(0, 1, "a significance level", closed="neither"),
    "confidence": Interval(0, 1, "the level of the intervals", closed="neither"),
    "n_permutations": _RESAMPLES, "per_input_permutations": _RESAMPLES,
    # a percentile interval from a handful of resamples can exclude its own estimate (1 resample:
    # a zero-width "95%" interval beside the value)
    "n_bootstrap": Either((Options((0,)), Interval(20, 100_000)),
                          "0 (no intervals), or enough resamples to place an interval's ends"),
    "calibration_bins": Interval(2, 1_000, "a reliability bin needs rows; more bins than this "
                                           "leave most of them empty"),
    "score_bins": Interval(2, 100_000, "each group keeps 4 counts and a score sum per bin"),
    "max_rows": Interval(1, _ROWS, "data rows sampled; bound the audit with [data] max_rows instead"),
    "max_search_rows": Interval(1, _ROWS, "rows searched"),
    "n_rows": Interval(1, _ROWS, "rows explained"), "kernel_n_rows": Interval(1, _ROWS, "rows explained"),
    "gradient_n_rows": Interval(1, _ROWS, "rows explained"), "sanity_rows": Interval(1, _ROWS, "rows explained"),
    "faithfulness_rows": Interval(1, _ROWS, "rows explained"),
    "what_if_rows": Interval(1, _ROWS, "rows the what-if thresholds are judged on"),
    "batch_samples": Interval(1, 10_000_000, "perturbed samples scored by one model call, held in memory"),
    "n_global_rows": Interval(0, _ROWS, "rows explained"),
    "max_training_rows": Interval(1, _ROWS, "training rows used, held in memory"),
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


def check_bounds(config: MethodConfig) -> None:
    """Check every option of ``config`` against its declared rule (:meth:`MethodConfig.constraints`)
    and that every float option is finite (TOML allows ``nan`` and ``inf``); raise OptionError."""
    rules = type(config).constraints()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        rule = rules.get(f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise OptionError(f.name, "a finite number", v)
            if rule is not None and not rule.allows(v):
                raise OptionError(f.name, rule.rule(), list(value) if isinstance(value, tuple) else value)


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
        Tasks and data modalities (``data.layout.kind``) the method supports.
    modality_reasons : mapping of str to str
        Why the method does not apply to a modality it leaves out, where there is more to say
        than "not available for ... data" (e.g. which method to use instead).
    needs_target : bool
        Whether the true outcome must be present.
    Config : type
        The method's frozen options dataclass.
    uses_torch : bool
        Whether ``run`` may use torch (its random generator or threads). The runner imports,
        seeds and single-threads torch only for such methods or when torch is loaded already;
        set False only for a method that never touches torch (a test checks it stays unloaded).
    libraries : tuple of str
        Heavy libraries ``run`` imports lazily (e.g. ``("shap",)``): with the Ray backend every
        worker imports them, with torch for a method that ``uses_torch``, when the run starts.
    from_counts : bool
        Whether ``run`` needs only count tables (:class:`audit.stats.counts.GroupTable`), so
        that it runs on streamed data (:mod:`audit.core.stream`); other methods skip it.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    modality_reasons: ClassVar[Mapping[str, str]] = {}
    needs_target: ClassVar[bool] = False
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    uses_torch: ClassVar[bool] = True
    libraries: ClassVar[tuple[str, ...]] = ()
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
        reason = self.modality_skip(data)
        if reason is not None:
            return reason
        if self.needs_target and data.y is None:
            return "needs the true outcome (a target column)"
        return None

    def modality_skip(self, data: AuditData) -> str | None:
        """Why the method does not apply to the data's modality, or None when it does."""
        kind = data.layout.kind
        if kind in self.modalities:
            return None
        return self.modality_reasons.get(kind, f"not available for {kind} data")

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
    "Constraint",
    "Either",
    "Finding",
    "Interval",
    "MethodConfig",
    "MethodResult",
    "OPTION_BOUNDS",
    "OptionDoc",
    "OptionError",
    "Options",
    "Plan",
    "Progress",
    "RunContext",
    "Skipped",
    "check_bounds",
    "check_permutations",
    "option_message",
    "to_jsonable",
]
