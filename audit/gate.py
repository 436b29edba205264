"""The deployment gate: fairness and performance thresholds from ``[gate]``, judged on
confidence bounds.

Key format
----------
``"fairness.<set>.<metric>" = { max = 0.10 }`` (or ``{ min = 0.8 }``, or both), where

- ``<set>`` is a sensitive attribute from ``[data] sensitive`` (``sex``) or an intersection of
  them joined by ``*`` (``sex*race``; ``×`` and ``&`` are accepted too; order does not matter);
  intersections default to every pair (``[methods.fairness] intersections``); a name with
  ``*``, ``×``, ``&``, a quote or edge spaces in it is written in double quotes
  (:func:`audit.methods.fairness.parse_set_key`), in TOML as a literal key:
  ``'fairness."a&b".demographic_parity_difference'``;
- ``<metric>`` is a disparity the fairness method reports for the task, e.g.
  ``demographic_parity_difference``, ``equalized_odds_ratio``, ``disparate_impact_ratio``
  (see :func:`audit.methods.fairness.disparity_names`), or for a binary classifier one group
  rate's own disparity, ``<rate>_difference`` / ``<rate>_ratio`` with ``<rate>`` one of
  ``selection_rate``, ``true_positive_rate``, ``false_positive_rate``, ``false_negative_rate``,
  ``true_negative_rate``, ``positive_predictive_value``, ``negative_predictive_value`` (the same
  simultaneous score intervals as the other rate disparities, so the same verdict semantics).

``"performance.<metric>" = { min = 0.80 }`` judges an overall metric of the performance method
(:data:`audit.methods.performance.INTERVAL_METRICS`: accuracy, balanced_accuracy, auc,
log_loss, brier; r2, rmse, mae, mean_error for regression) on its interval at the performance
method's ``confidence``: Clopper–Pearson for accuracy (exact), MOVER for binary balanced
accuracy, for binary AUC the Clopper–Pearson interval of the AUC as a proportion of the smaller
class (:func:`audit.stats.auc.auc_interval`; each bound's error rate within its nominal value
in every cell of benchmarks/auc_interval.py's grid), a percentile bootstrap for the others
(approximate: the verdict says so). An interval the performance method marks unreliable (a
bootstrap's with fewer than 10 rows of a class: simulated coverage 0.25–0.74; the AUC's with
fewer than 5, where it was not simulated) gives ``insufficient``, as does a metric without a
value or an interval.

A rule may also set ``inconclusive = "fail" | "warn"`` and ``small_groups = "insufficient" |
"ignore"``; the same keys at the top of ``[gate]`` set the defaults (``"fail"``,
``"insufficient"``; ``small_groups`` is for fairness rules only). ``correction = "none" | "bonferroni"`` (top of ``[gate]`` only): with
``"bonferroni"`` each of the ``m`` rules is judged on its interval at level ``1 − (1 − c) / m``,
so that the chance of *any* false breach (or any false pass) over all rules is at most
``(1 − c) / 2``; without it the guarantee below holds for each rule separately.

Verdicts (interval = the fairness method's interval at its ``confidence`` c; for rates these are
the simultaneous score intervals of :mod:`audit.stats.proportions`, each bound of which lies
beyond the true value with probability at most ``(1 − c) / 2``)
------------------------------------------------------------------------------------------
- ``breach``: the whole interval lies outside the threshold (``lower > max`` or ``upper < min``);
  when the true disparity is within the threshold this happens at most ``(1 − c) / 2`` of the
  time (2.5 % at c = 0.95), whatever the group sizes (checked by simulation for the rate
  disparities, benchmarks/fairness_coverage.py, and for the AUC difference, whose interval
  combines the groups' AUC intervals, benchmarks/fairness_auc_gap.py; approximate for regression
  disparities, whose intervals come from a bootstrap: the verdict says so);
- ``pass``: the whole interval lies inside it; when the true disparity is outside the threshold
  this happens at most ``(1 − c) / 2`` of the time;
- ``inconclusive``: the interval straddles the threshold; fails the gate unless ``"warn"``;
- ``insufficient``: no interval can be computed (too few groups of ``min_group_size`` rows, an
  undefined metric, no bootstrap), or some group was too small to judge and the judged groups
  do not already breach (unless ``small_groups = "ignore"``), or a judged group's rate is
  undefined (TPR with no positives, PPV with no positive decisions, an AUC without an interval
  for fewer than 5 rows of a class, ...) and the others do not
  already breach: that rate is unknown, anywhere in [0, 1], so the disparity over all groups
  cannot be shown to be within the threshold (the interval's bound towards parity is then the
  trivial 1 for a difference, 0 for a ratio); ``small_groups`` does not change this.

Exit code of ``audit check``: 1 if any rule breaches or is a failing inconclusive, else 3 if any
is insufficient, else 0 (usage or input errors are 2, before any verdict).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from audit.core.text import fixed
from audit.errors import EXIT_BREACH, EXIT_INSUFFICIENT, EXIT_OK, InvalidConfigError, did_you_mean

_OPTIONS = {"inconclusive": ("fail", "warn"), "small_groups": ("insufficient", "ignore")}
#: Options only at the top of [gate]: "bonferroni" judges each of m rules at level 1 − (1 − c)/m.
_GATE_OPTIONS = {"correction": ("none", "bonferroni")}
_RULE_KEYS = {"max", "min", *_OPTIONS}


@dataclass(frozen=True)
class GateRule:
    """One parsed threshold."""

    key: str
    attribute: str | None  # canonical set name ("sex", "sex*race"); None for a performance metric
    metric: str
    max: float | None = None
    min: float | None = None
    inconclusive: str = "fail"
    small_groups: str = "insufficient"
    family_size: int = 1  # rules judged together (Bonferroni): each at level 1 − (1 − c) / family_size
    section: str = "fairness"  # the method whose result the rule reads: "fairness" | "performance"

    @property
    def text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return f"{self.attribute or self.section}.{self.metric} {' and '.join(parts)}"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one rule."""

    key: str
    rule: str
    status: str  # "pass" | "breach" | "inconclusive" | "insufficient"
    fails: bool  # whether this verdict fails the gate
    value: float | None
    lower: float | None
    upper: float | None
    confidence: float | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "rule": self.rule, "status": self.status, "fails": self.fails,
                "value": self.value, "lower": self.lower, "upper": self.upper,
                "confidence": self.confidence, "message": self.message}


@dataclass(frozen=True)
class GateResult:
    verdicts: tuple[Verdict, ...]

    @property
    def exit_code(self) -> int:
        if any(v.fails for v in self.verdicts):
            return EXIT_BREACH
        if any(v.status == "insufficient" for v in self.verdicts):
            return EXIT_INSUFFICIENT
        return EXIT_OK

    @property
    def outcome(self) -> str:
        return {EXIT_OK: "pass", EXIT_BREACH: "fail", EXIT_INSUFFICIENT: "insufficient evidence"}[self.exit_code]

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "breach": 0, "inconclusive": 0, "insufficient": 0}
        for v in self.verdicts:
            out[v.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "exit_code": self.exit_code, "counts": self.counts(),
                "verdicts": [v.to_json() for v in self.verdicts]}


def parse_gate(gate: Mapping[str, Any], *, sensitive: Sequence[str], task: str,
               fairness: Any = None) -> list[GateRule]:
    """Validate ``[gate]`` against the config's attributes and task; raise InvalidConfigError.

    ``fairness`` is the run's resolved :class:`~audit.methods.fairness.FairnessConfig` (its
    intersections decide which attribute sets a rule may name; default: the defaults). The
    runner resolves it once per run (:func:`audit.runner.resolve_plan`), so an option is never
    parsed twice.

    Examples
    --------
    >>> rules = parse_gate({"fairness.sex.demographic_parity_difference": {"max": 0.1}},
    ...                    sensitive=["sex"], task="binary")
    >>> rules[0].attribute, rules[0].max
    ('sex', 0.1)
    """
    from audit.methods.fairness import FairnessConfig, attribute_sets, disparity_names, set_name

    config = fairness if fairness is not None else FairnessConfig()
    audited = attribute_sets(list(sensitive), config)
    sets = [set_name(s) for s in audited]
    by_members = {frozenset(s): set_name(s) for s in audited}
    metrics = disparity_names(task)
    defaults = {}
    for opt, allowed in _OPTIONS.items():
        value = gate.get(opt, allowed[0])
        if value not in allowed:
            raise InvalidConfigError(f"The [gate] option {opt!r} must be one of {list(allowed)}. "
                                     f"Got {value!r} instead.")
        defaults[opt] = value
    for opt, allowed in _GATE_OPTIONS.items():
        if gate.get(opt, allowed[0]) not in allowed:
            raise InvalidConfigError(f"The [gate] option {opt!r} must be one of {list(allowed)}. "
                                     f"Got {gate.get(opt)!r} instead.")
    rules = []
    for key, spec in gate.items():
        if key in _OPTIONS or key in _GATE_OPTIONS:
            continue
        if key.startswith("performance."):
            section, canonical, metric = "performance", None, _performance_metric(key, task)
        elif not key.startswith("fairness."):
            raise InvalidConfigError(
                f"Unknown [gate] key {key!r}: keys look like \"fairness.<attribute>.<metric>\" "
                f"(e.g. \"fairness.{sets[0] if sets else 'sex'}.demographic_parity_difference\") or "
                "\"performance.<metric>\" (e.g. \"performance.auc\").")
        else:
            section, (canonical, metric) = "fairness", _fairness_key(key, sensitive, by_members, metrics, task)
        if not isinstance(spec, Mapping):
            raise InvalidConfigError(f"The [gate] value of {key!r} must be a table like {{ max = 0.1 }}. "
                                     f"Got {spec!r} instead.")
        if section == "performance" and "small_groups" in spec:
            raise InvalidConfigError(f"The [gate] rule {key!r} has the option 'small_groups', which is for "
                                     "fairness rules (groups too small to judge); a performance metric is "
                                     "computed over all rows. Remove it.")
        for k in spec:
            if k not in _RULE_KEYS:
                raise InvalidConfigError(f"The [gate] rule {key!r} has an unknown option {k!r}."
                                         f"{did_you_mean(k, _RULE_KEYS)} Options: max, min, inconclusive, small_groups.")
        bounds = {}
        for b in ("max", "min"):
            if b in spec:
                v = spec[b]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise InvalidConfigError(f"The {b!r} of [gate] {key!r} must be a number. Got {v!r} instead.")
                if not math.isfinite(v):  # TOML allows nan and inf; nan never compares, so never breaches
                    why = ("nan compares false with every value, so the rule could never be "
                           "breached" if math.isnan(v) else "an infinite bound tests nothing")
                    raise InvalidConfigError(
                        f"The {b!r} of [gate] {key!r} must be a finite number. Got {v!r} instead "
                        f"({why}). Set a threshold such as 0.1, or remove the rule.")
                bounds[b] = float(v)
        if not bounds:
            raise InvalidConfigError(f"The [gate] rule {key!r} needs 'max' and/or 'min'.")
        if "max" in bounds and "min" in bounds and bounds["min"] > bounds["max"]:
            raise InvalidConfigError(f"The [gate] rule {key!r} has min > max.")
        opts = dict(defaults)
        for opt, allowed in _OPTIONS.items():
            if opt in spec:
                if spec[opt] not in allowed:
                    raise InvalidConfigError(f"The {opt!r} of [gate] {key!r} must be one of "
                                             f"{list(allowed)}. Got {spec[opt]!r} instead.")
                opts[opt] = spec[opt]
        rules.append(GateRule(key, canonical, metric, bounds.get("max"), bounds.get("min"), **opts, section=section))
    if not rules:  # a gate that tests nothing must not pass
        raise InvalidConfigError(
            "The [gate] table has no thresholds (only options), so a check would pass having tested "
            "nothing. Add rules such as \"fairness.<attribute>.demographic_parity_difference\" = "
            "{ max = 0.10 }, or remove [gate].")
    if gate.get("correction") == "bonferroni":
        rules = [dataclasses.replace(r, family_size=len(rules)) for r in rules]
    return rules


def _performance_metric(key: str, task: str) -> str:
    """The metric of a ``performance.<metric>`` key; refuses one without an interval for ``task``."""
    from audit.methods.performance import INTERVAL_METRICS

    metric = key[len("performance."):]
    metrics = INTERVAL_METRICS[task]
    if metric == "ece":
        raise InvalidConfigError(
            f"The [gate] key {key!r} names the expected calibration error, which has no interval (binned "
            "ECE is biased upward by an amount that depends on the scores), so no verdict could carry a "
            f"guarantee; the report gives its calibration test. Metrics: {', '.join(metrics)}.")
    if metric not in metrics:
        raise InvalidConfigError(
            f"The [gate] key {key!r} names the metric {metric!r}, which the performance method does not "
            f"report with an interval for {task} tasks.{did_you_mean(metric, metrics)} Metrics: "
            f"{', '.join(metrics)}.")
    return metric


def _fairness_key(key: str, sensitive: Sequence[str], by_members: Mapping[frozenset, str],
                  metrics: Sequence[str], task: str) -> tuple[str, str]:
    """The canonical attribute set and the metric of a ``fairness.<set>.<metric>`` key; refuses
    unknown ones."""
    body = key[len("fairness."):]
    attr, _, metric = body.rpartition(".")
    if not attr or not metric:
        raise InvalidConfigError(f"The [gate] key {key!r} must look like \"fairness.<attribute>.<metric>\".")
    canonical = key_set(attr, f"The [gate] key {key!r}", by_members=by_members, sensitive=sensitive,
                        covered="the fairness audit")
    if metric not in metrics:
        raise InvalidConfigError(
            f"The [gate] key {key!r} names the metric {metric!r}, which is not reported for "
            f"{task} tasks.{did_you_mean(metric, metrics)} Metrics: {', '.join(metrics)}.")
    return canonical, metric


def key_set(text: str, where: str, *, by_members: Mapping[frozenset, str], sensitive: Sequence[str],
            covered: str, shape: str = "fairness.{}.demographic_parity_difference",
            listing: str = "Attributes and intersections") -> str:
    """The canonical name of the attribute set ``text`` written in a gate key (``[gate]`` and
    ``[compare.gate]`` alike, :func:`audit.methods.fairness.parse_set_key`), one of
    ``by_members`` (members -> canonical name); otherwise an error that starts with ``where``,
    says that ``covered`` does not cover it, suggests the nearest set and, only when the key
    split an attribute whose name needs quotes, how to quote it (an example key of ``shape``),
    and lists the sets under the heading ``listing``."""
    from audit.methods.fairness import parse_set_key

    members = parse_set_key(text, where)
    canonical = by_members.get(frozenset(members))
    if canonical is not None:
        return canonical
    names = list(by_members.values())
    extra = quoting_hint(members, sensitive, shape=shape)
    if not extra and len(members) > 1 and all(m in sensitive for m in members):
        extra = f" Add {list(members)} to [methods.fairness] intersections to audit this intersection."
    raise InvalidConfigError(
        f"{where} names the attribute {text!r}, which {covered} does not cover.{did_you_mean(text, names)}{extra} "
        f"{listing}: {', '.join(names) or 'none'}.")


def quoting_hint(members: Sequence[str], sensitive: Sequence[str], *,
                 shape: str = "fairness.{}.demographic_parity_difference") -> str:
    """A hint for a gate key whose unquoted ``members`` come from splitting (or stripping) an
    attribute whose name holds a separator or edge spaces: how to quote that attribute (README,
    "Gate keys"), in an example key of ``shape``; empty when no such attribute was split."""
    def split(name: str) -> set[str]:  # what an unquoted name becomes in a key
        return {p.strip() for p in re.split("[*×&]", name)} - {""}

    written = set(members)
    odd = [a for a in sensitive if (a != a.strip() or any(c in a for c in '*×&"\\')) and split(a) & written]
    if not odd:
        return ""
    quoted = '"' + odd[0].replace("\\", "\\\\").replace('"', '\\"') + '"'
    return (f" The attribute {odd[0]!r} has a separator (*, ×, &), a quote or edge spaces in its name: quote it in the "
            f"key, e.g. '{shape.format(quoted)}' (a TOML literal key in single quotes).")


def evaluate(rules: Sequence[GateRule], result: Any, *, confidence: float | None = None,
             unavailable: str | None = None) -> GateResult:
    """Judge every rule on ``result``, its method's result (None: not run) whose intervals were
    computed at ``confidence`` (its config's): a :class:`~audit.methods.fairness.FairnessResult`
    for fairness rules, a :class:`~audit.methods.performance.PerformanceResult` for performance
    rules. :func:`judge_outcomes` hands each rule its own method's result."""
    if result is not None and confidence is None:
        raise ValueError("evaluate() needs the confidence of the result's intervals")
    verdicts = []
    for rule in rules:
        if result is None:
            verdicts.append(_unavailable(rule, unavailable or f"the {rule.section} audit did not run"))
            continue
        verdicts.append(_JUDGES[rule.section](rule, result, confidence))  # type: ignore[arg-type]
    return GateResult(tuple(verdicts))


def _unavailable(rule: GateRule, why: str) -> Verdict:
    return Verdict(rule.key, rule.text, "insufficient", False, None, None, None, None, why)


def _level(rule: GateRule, confidence: float) -> float:
    """The rule's interval level: c, or under [gate] correction = "bonferroni" its share of the error."""
    return 1 - (1 - confidence) / rule.family_size if rule.family_size > 1 else confidence


def _judge(rule: GateRule, result: Any, confidence: float) -> Verdict:
    """A fairness rule: the disparity's interval, its small and undefined groups."""
    res = result.attributes.get(rule.attribute)
    d = res.disparities.get(rule.metric) if res is not None else None
    if d is None:
        why = result.skipped.get(rule.attribute)
        return Verdict(rule.key, rule.text, "insufficient", False, None, None, None, confidence,
                       f"{rule.attribute} was not analysed ({why})" if why else
                       f"{rule.metric} was not computed for {rule.attribute}")
    e = d.estimate
    conf = _level(rule, confidence)
    lower, upper = e.lower, e.upper
    if conf != confidence:
        lower, upper = res.interval_at(rule.metric, conf) if e.value is not None else (None, None)

    def caveat(ci: str) -> str | None:
        small = d.excluded_small if rule.small_groups == "insufficient" else ()
        if small:
            names = ", ".join(small[:5]) + (" …" if len(small) > 5 else "")
            return (f"{ci} over the judged groups, but {len(small)} group(s) are too small to judge "
                    f"({names}); set small_groups = \"ignore\" to judge on the larger groups only")
        unknown = d.undefined_why or tuple(f"{g}: undefined" for g in d.excluded_undefined)
        if unknown:
            # the rate of a judged group is unknown (anywhere in [0, 1]): the disparity over all
            # groups could be anything the others allow, so only a breach can be concluded
            names = "; ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
            return (f"{ci}, but the value is unknown for {len(d.excluded_undefined)} judged group(s) "
                    f"({names}), so the disparity over all groups cannot be shown to be within the "
                    "bound; more data for those groups would settle it")
        return None

    return _on_interval(rule, e, lower, upper, conf, confidence, caveat=caveat, approximate=_approximate(e))


def _approximate(e: Any) -> str | None:
    """The interval's method when it comes from a bootstrap (its error rate is not guaranteed)."""
    return e.method if e.method and "bootstrap" in e.method else None


def _judge_performance(rule: GateRule, result: Any, confidence: float) -> Verdict:
    """A performance rule: the overall metric's interval; an unreliable one settles nothing."""
    e = result.metrics.get(rule.metric)
    if e is None:
        return Verdict(rule.key, rule.text, "insufficient", False, None, None, None, confidence,
                       f"{rule.metric} was not computed")
    conf = _level(rule, confidence)
    lower, upper = e.lower, e.upper
    if conf != confidence:
        lower, upper = result.interval_at(rule.metric, conf) if e.value is not None else (None, None)
    return _on_interval(rule, e, lower, upper, conf, confidence, unreliable=result.unreliable.get(rule.metric),
                        approximate=_approximate(e))


_JUDGES = {"fairness": _judge, "performance": _judge_performance}


def _on_interval(rule: GateRule, e: Any, lower: float | None, upper: float | None, conf: float,
                 confidence: float, *, unreliable: str | None = None,
                 caveat: Any = None, approximate: str | None = None) -> Verdict:
    """The verdict of ``rule`` on the estimate ``e`` with the interval [lower, upper] at level
    ``conf``: breach / pass / inconclusive on the interval; insufficient without one, with an
    ``unreliable`` interval, or when ``caveat(ci)`` says why only a breach can be concluded.
    ``approximate``: the interval's method when its error rate is not guaranteed (a bootstrap),
    which the message then says instead of a bound."""
    def verdict(status: str, message: str) -> Verdict:
        fails = status == "breach" or (status == "inconclusive" and rule.inconclusive == "fail")
        return Verdict(rule.key, rule.text, status, fails, e.value, lower, upper, conf, message)

    if e.value is None:
        return verdict("insufficient", f"undefined: {e.undefined_reason or 'no value'}")
    if lower is None or upper is None:
        return verdict("insufficient", "no confidence interval (too unstable, or n_bootstrap = 0); the "
                                       "point estimate alone cannot pass the gate")
    err = (1 - conf) / 2
    level = (f"{100 * conf:.4g}% CI, Bonferroni over {rule.family_size} rules; the report's findings "
             f"use {100 * confidence:.4g}%" if rule.family_size > 1 else f"{100 * conf:.4g}% CI")
    ci = f"{fixed(e.value, '.3f')} ({level} {fixed(lower, '.3f')} to {fixed(upper, '.3f')})"
    if unreliable is not None:
        return verdict("insufficient", f"{ci}, but the interval is {unreliable}")
    outside = (rule.max is not None and lower > rule.max) or (rule.min is not None and upper < rule.min)
    inside = (rule.max is None or upper <= rule.max) and (rule.min is None or lower >= rule.min)
    bound = f"at most {err:.2%}" if approximate is None else f"about {err:.2%} ({approximate}: approximate)"
    if outside:
        return verdict("breach", f"{ci}: the whole interval is outside {_bound_text(rule)} (were the true "
                                 f"value within it, this would happen {bound} of the time)")
    doubt = caveat(ci) if caveat is not None else None
    if doubt is not None:
        return verdict("insufficient", doubt)
    if inside:
        return verdict("pass", f"{ci}: the whole interval is within {_bound_text(rule)} (were the true "
                               f"value outside it, this would happen {bound} of the time)")
    return verdict("inconclusive", f"{ci}: the interval straddles {_bound_text(rule)}; more data "
                                   "would settle it" + (" (counted as a failure)" if rule.inconclusive == "fail"
                                                        else " (warning only)"))


def _bound_text(rule: GateRule) -> str:
    parts = []
    if rule.min is not None:
        parts.append(f"min {rule.min:g}")
    if rule.max is not None:
        parts.append(f"max {rule.max:g}")
    return " / ".join(parts)


def summary_lines(gate: GateResult) -> list[tuple[str, str]]:
    """(status, text) per verdict, for the terminal."""
    return [(v.status, f"{v.rule}: {v.message}") for v in gate.verdicts]


def to_junit(gate: GateResult, *, name: str = "audit-gate") -> str:
    """JUnit XML: one test case per rule; breaches and failing inconclusives are failures,
    warning inconclusives and insufficient evidence are skipped with the reason.

    User strings (attribute and group names inside keys and messages) pass through
    :func:`audit.core.text.xml_text`: control characters, which XML 1.0 forbids, and bidi
    controls, which would re-order a CI page, are written as visible escapes (``\\x1b``,
    ``\\u202e``); then ``<``, ``&`` and quotes are escaped as usual.
    """
    from audit.core.text import xml_text

    def attr(value: str) -> str:
        return quoteattr(xml_text(value))

    def body(value: str) -> str:
        return escape(xml_text(value))

    failures = sum(v.fails for v in gate.verdicts)
    skipped = sum((not v.fails) and v.status != "pass" for v in gate.verdicts)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name={attr(name)} tests="{len(gate.verdicts)}" failures="{failures}" errors="0" skipped="{skipped}">',
           f'  <testsuite name={attr(name)} tests="{len(gate.verdicts)}" failures="{failures}" errors="0" skipped="{skipped}">']
    for v in gate.verdicts:
        out.append(f'    <testcase classname="audit.gate" name={attr(v.key)}>')
        if v.fails:
            out.append(f'      <failure type={attr(v.status)} message={attr(v.message)}>'
                       f'{body(v.rule)}: {body(v.message)}</failure>')
        elif v.status != "pass":
            out.append(f'      <skipped message={attr(v.status + ": " + v.message)}/>')
        # json.dumps writes every non-ASCII character as \uXXXX: legal XML as it stands
        out.append(f'      <system-out>{escape(json.dumps(v.to_json()))}</system-out>')
        out.append('    </testcase>')
    out += ['  </testsuite>', '</testsuites>', '']
    return "\n".join(out)


def judge_outcomes(rules: Sequence[GateRule], outcomes: Sequence[Any]) -> GateResult:
    """The verdicts of a run's parsed ``[gate]`` rules, each on its own method's outcome."""
    by_name = {o.name: o for o in outcomes}
    verdicts = []
    for rule in rules:
        outcome = by_name.get(rule.section)
        if outcome is None:
            verdicts.append(_unavailable(rule, f"the {rule.section} method was not selected for this run"))
        elif not outcome.ok:
            verdicts.append(_unavailable(rule, f"the {rule.section} method did not run: {outcome.result.reason}"))
        else:
            verdicts.append(_JUDGES[rule.section](rule, outcome.result, outcome.config.confidence))
    return GateResult(tuple(verdicts))


__all__ = ["GateResult", "GateRule", "Verdict", "evaluate", "judge_outcomes", "key_set", "parse_gate", "quoting_hint",
           "to_junit"]
