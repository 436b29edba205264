"""The non-inferiority gate of ``audit compare`` (``[compare.gate]``), with the verdicts, exit
codes and JUnit output of ``audit check`` (:mod:`audit.gate`).

Keys: ``"performance.<metric>"`` (``accuracy``, ``auc``),
``"fairness.<attribute or intersection>.<disparity>"`` (a ``*_difference``) and
``"counterfactuals.<attribute>.<group>.median_cost_change"`` (the median per-row change of a
group's recourse cost over the rows both models' searches explained, :mod:`audit.compare.recourse`); names with
separators, dots or edge spaces are double-quoted (README, "Gate keys"); values ``{ max_increase = m }`` and/or
``{ max_decrease = m }`` (``m >= 0``), optionally ``inconclusive = "fail" | "warn"`` and
``small_groups = "insufficient" | "ignore"`` (the same keys at the top of ``[compare.gate]`` set
the defaults).

The rule, on the paired interval [L, U] of the change (challenger − champion) at the
comparison's confidence c:

- ``max_increase = m``: **pass** (non-inferior) only if U < m; **breach** if L > m;
- ``max_decrease = m``: **pass** only if L > −m; **breach** if U < −m;
- otherwise **inconclusive** (fails unless ``"warn"``); **insufficient** when there is no
  interval, or a group too small to judge was left out (unless ``small_groups = "ignore"``).

Each bound of a two-sided interval at level c errs at most (1 − c)/2 when its coverage is
nominal, so a pass is a one-sided non-inferiority test at level (1 − c)/2 (2.5% at c = 0.95);
for disparities the interval is a conservative projection (:func:`audit.stats.paired.projection_interval`),
for accuracy and AUC a percentile bootstrap whose coverage was measured by simulation, for
recourse costs a distribution-free order-statistic interval of the median change
(tests/test_compare_stats.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.core.text import fixed
from audit.errors import InvalidConfigError, did_you_mean
from audit.gate import GateResult, Verdict

#: ECE is not gated: binned ECE is biased upward by an amount that depends on each model's
#: scores, so its change gets a test but no interval.
PERFORMANCE_METRICS = ("accuracy", "auc")
_OPTIONS = {"inconclusive": ("fail", "warn"), "small_groups": ("insufficient", "ignore")}
#: What a comparison without ``[compare.gate]`` says in its report, results.json and terminal.
NO_GATE = ("No gate rules: nothing was judged, so the exit code is 0 whatever the changes. To judge the "
           "challenger, add a [compare.gate] table to a config (or to a TOML passed after two saved reports), "
           "e.g. \"performance.auc\" = { max_decrease = 0.01 }.")
_BOUNDS = ("max_increase", "max_decrease")


@dataclass(frozen=True)
class CompareRule:
    key: str
    section: str            # "performance" | "fairness"
    attribute: str | None   # canonical set name for fairness; the attribute for counterfactuals
    metric: str
    max_increase: float | None = None
    max_decrease: float | None = None
    inconclusive: str = "fail"
    small_groups: str = "insufficient"
    group: str | None = None  # counterfactuals: the group whose recourse cost is judged

    @property
    def text(self) -> str:
        what = ".".join(p for p in (self.attribute, self.group, self.metric) if p is not None)
        parts = []
        if self.max_increase is not None:
            parts.append(f"increase < {self.max_increase:g}")
        if self.max_decrease is not None:
            parts.append(f"decrease < {self.max_decrease:g}")
        return f"{what} {' and '.join(parts)}"


def parse_compare_gate(gate: Mapping[str, Any], *, sets: Sequence[Sequence[str]]) -> list[CompareRule]:
    """Validate ``[compare.gate]``; ``sets`` are the attribute sets compared (tuples of
    attribute names). Attribute names in keys follow :func:`audit.methods.fairness.parse_set_key`.

    Examples
    --------
    >>> rules = parse_compare_gate({"performance.auc": {"max_decrease": 0.01}}, sets=[("sex",)])
    >>> rules[0].text
    'auc decrease < 0.01'
    """
    from audit.compare.options import comparable_disparities
    from audit.gate import quoting_hint
    from audit.methods.fairness import parse_set_key, set_name

    defaults = {}
    for opt, allowed in _OPTIONS.items():
        value = gate.get(opt, allowed[0])
        if value not in allowed:
            raise InvalidConfigError(f"The [compare.gate] option {opt!r} must be one of {list(allowed)}. "
                                     f"Got {value!r} instead.")
        defaults[opt] = value
    by_members = {frozenset(s): set_name(s) for s in sets}
    names = [set_name(s) for s in sets]
    attributes = sorted({a for s in sets for a in s})
    disparities = comparable_disparities()
    rules = []
    for key, spec in gate.items():
        if key in _OPTIONS:
            continue
        section, _, rest = key.partition(".")
        group = None
        if section == "performance":
            attr, metric = None, rest
            if metric not in PERFORMANCE_METRICS:
                raise InvalidConfigError(f"The [compare.gate] key {key!r} names the metric {metric!r}."
                                         f"{did_you_mean(metric, PERFORMANCE_METRICS)} Performance metrics: "
                                         f"{', '.join(PERFORMANCE_METRICS)}.")
        elif section == "counterfactuals":
            attr, group, metric = _recourse_key(key, rest, [a for s_ in sets if len(s_) == 1 for a in s_])
        elif section == "fairness":
            attr, _, metric = rest.rpartition(".")
            members = parse_set_key(attr, f"The [compare.gate] key {key!r}")
            canonical = by_members.get(frozenset(members))
            if canonical is None:
                raise InvalidConfigError(
                    f"The [compare.gate] key {key!r} names the attribute {attr!r}, which the comparison does "
                    f"not cover.{did_you_mean(attr, names)}{quoting_hint(members, attributes)} Attributes and "
                    f"intersections: {', '.join(names) or 'none'}.")
            attr = canonical
            if metric not in disparities:
                raise InvalidConfigError(f"The [compare.gate] key {key!r} names the disparity {metric!r}."
                                         f"{did_you_mean(metric, disparities)} Disparities: {', '.join(disparities)}.")
        else:
            raise InvalidConfigError(
                f"Unknown [compare.gate] key {key!r}: keys look like \"performance.auc\", "
                f"\"fairness.<attribute>.<disparity>\" (e.g. \"fairness.{names[0] if names else 'sex'}."
                "demographic_parity_difference\") or \"counterfactuals.<attribute>.<group>.median_cost_change\".")
        if not isinstance(spec, Mapping):
            raise InvalidConfigError(f"The [compare.gate] value of {key!r} must be a table like "
                                     f"{{ max_increase = 0.02 }}. Got {spec!r} instead.")
        for k in spec:
            if k not in (*_BOUNDS, *_OPTIONS):
                raise InvalidConfigError(f"The [compare.gate] rule {key!r} has an unknown option {k!r}."
                                         f"{did_you_mean(k, (*_BOUNDS, *_OPTIONS))} Options: "
                                         "max_increase, max_decrease, inconclusive, small_groups.")
        bounds = {}
        for b in _BOUNDS:
            if b in spec:
                v = spec[b]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise InvalidConfigError(f"The {b!r} of [compare.gate] {key!r} must be a finite number "
                                             f"of at least 0 (a margin). Got {v!r} instead.")
                bounds[b] = float(v)
        if not bounds:
            raise InvalidConfigError(f"The [compare.gate] rule {key!r} needs 'max_increase' and/or 'max_decrease'.")
        opts = dict(defaults)
        for opt, allowed in _OPTIONS.items():
            if opt in spec:
                if spec[opt] not in allowed:
                    raise InvalidConfigError(f"The {opt!r} of [compare.gate] {key!r} must be one of "
                                             f"{list(allowed)}. Got {spec[opt]!r} instead.")
                opts[opt] = spec[opt]
        rules.append(CompareRule(key, section, attr, metric, **bounds, **opts, group=group))
    if not rules:
        raise InvalidConfigError("The [compare.gate] table has no rules (only options), so it would pass "
                                 "having tested nothing. Add rules such as \"performance.auc\" = "
                                 "{ max_decrease = 0.01 }, or remove [compare.gate].")
    return rules


def _key_parts(text: str, where: str) -> list[str]:
    """``text`` split at the dots outside double quotes; a quoted part is verbatim (``\\"`` a
    quote, ``\\\\`` a backslash), as in attribute names (README, "Gate keys")."""
    parts, pos = [], 0
    while pos <= len(text):
        if text.startswith('"', pos):
            end = pos + 1
            buf = []
            while end < len(text) and text[end] != '"':
                buf.append(text[end + 1] if text[end] == "\\" and end + 1 < len(text) else text[end])
                end += 2 if text[end] == "\\" else 1
            if end >= len(text) or (end + 1 < len(text) and text[end + 1] != "."):
                raise InvalidConfigError(f"{where} has an unclosed quote, or text after a closing quote: a quoted "
                                         'name ends with " before the next dot (README, "Gate keys").')
            parts.append("".join(buf))
            pos = end + 2
        else:
            end = text.find(".", pos)
            end = len(text) if end < 0 else end
            parts.append(text[pos:end])
            pos = end + 1
    return parts


def _recourse_key(key: str, rest: str, attributes: Sequence[str]) -> tuple[str, str, str]:
    """``<attribute>.<group>.median_cost_change`` of a ``counterfactuals.`` key: the attribute is one of
    ``attributes``; names holding dots are quoted, or matched as the attributes allow."""
    from audit.compare.recourse import METRIC

    where = f"The [compare.gate] key {key!r}"
    parts = _key_parts(rest, where)
    if len(parts) < 3 or parts[-1] != METRIC:
        raise InvalidConfigError(f"{where} must look like \"counterfactuals.<attribute>.<group>.{METRIC}\" (the "
                                 "median per-row change of a group's recourse cost).")
    for i in range(1, len(parts) - 1):
        attr, group = ".".join(parts[:i]), ".".join(parts[i:-1])
        if attr in attributes:
            return attr, group, METRIC
    raise InvalidConfigError(f"{where} names no sensitive attribute the comparison covers.{did_you_mean(parts[0], attributes)} "
                             f"Attributes: {', '.join(attributes) or 'none'}; quote a name with a dot in it "
                             '(README, "Gate keys").')


def judge(rules: Sequence[CompareRule], changes: Mapping[str, Any]) -> GateResult:
    """Verdicts of the rules on the comparison's changes (key -> :class:`Change`, or why there is none)."""
    return GateResult(tuple(_judge(r, changes.get(r.key)) for r in rules))


def _judge(rule: CompareRule, change: Any) -> Verdict:
    if change is None or isinstance(change, str):
        return Verdict(rule.key, rule.text, "insufficient", False, None, None, None, None,
                       f"not computed: {change}" if change else "not computed")
    e = change.change
    conf = e.level

    def verdict(status: str, message: str) -> Verdict:
        fails = status == "breach" or (status == "inconclusive" and rule.inconclusive == "fail")
        return Verdict(rule.key, rule.text, status, fails, e.value, e.lower, e.upper, conf, message)

    if e.value is None:
        return verdict("insufficient", f"undefined: {e.undefined_reason or 'no value'}")
    if e.lower is None or e.upper is None:
        return verdict("insufficient", f"no paired interval ({e.undefined_reason}); the point estimate "
                                       "alone cannot pass the gate")
    err = (1 - conf) / 2
    ci = (f"change {fixed(e.value, '+.4f')} (paired {100 * conf:.4g}% CI {fixed(e.lower, '+.4f')} to "
          f"{fixed(e.upper, '+.4f')}; champion {fixed(change.champion, '.4f')}, challenger "
          f"{fixed(change.challenger, '.4f')})")
    inc, dec = rule.max_increase, rule.max_decrease
    breach = (inc is not None and e.lower > inc) or (dec is not None and e.upper < -dec)
    inside = (inc is None or e.upper < inc) and (dec is None or e.lower > -dec)
    margin = " and ".join(t for t in (f"an increase of {inc:g}" if inc is not None else "",
                                      f"a decrease of {dec:g}" if dec is not None else "") if t)
    small = change.excluded_small if rule.small_groups == "insufficient" else ()
    if breach:
        return verdict("breach", f"{ci}: the whole interval is beyond {margin} (were the true change "
                                 f"within the margin, this would happen at most {err:.2%} of the time)")
    if small:
        names = ", ".join(small[:5]) + (" …" if len(small) > 5 else "")
        return verdict("insufficient", f"{ci} over the judged groups, but {len(small)} group(s) are too small "
                                       f"to judge ({names}); set small_groups = \"ignore\" to judge on the "
                                       "larger groups only")
    if inside:
        return verdict("pass", f"{ci}: non-inferior, the whole interval is within {margin} (were the true "
                               f"change beyond the margin, this would happen at most {err:.2%} of the time)")
    return verdict("inconclusive", f"{ci}: the interval straddles {margin}; more data would settle it"
                                   + (" (counted as a failure)" if rule.inconclusive == "fail" else " (warning only)"))


__all__ = ["NO_GATE", "CompareRule", "PERFORMANCE_METRICS", "judge", "parse_compare_gate"]
