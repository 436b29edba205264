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
  interval, or a group too small to judge, or one the metric is undefined for (the AUC gap of a
  group with one outcome class), was left out (unless ``small_groups = "ignore"``).

Each bound of a two-sided interval at level c errs at most (1 − c)/2 when its coverage is
nominal, so a pass is a one-sided non-inferiority test at level (1 − c)/2 (2.5% at c = 0.95);
for disparities the interval is a conservative projection (:func:`audit.stats.paired.projection_interval`),
for accuracy and AUC a percentile bootstrap, approximate: its bounds erred up to
:data:`audit.compare.paired.BOOTSTRAP_ONE_SIDED_ERROR` in simulation, which its verdicts say; for
recourse costs a distribution-free order-statistic interval of the median change
(tests/test_compare_stats.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.compare.paired import BOOTSTRAP, BOOTSTRAP_ONE_SIDED_ERROR
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
        """The key as the user wrote it (quoted names stay quoted: unambiguous) and the margins."""
        parts = []
        if self.max_increase is not None:
            parts.append(f"increase < {self.max_increase:g}")
        if self.max_decrease is not None:
            parts.append(f"decrease < {self.max_decrease:g}")
        return f"{self.key} {' and '.join(parts)}"


def parse_compare_gate(gate: Mapping[str, Any], *, sets: Sequence[Sequence[str]],
                       groups: Mapping[str, Sequence[str]] | None = None) -> list[CompareRule]:
    """Validate ``[compare.gate]``; ``sets`` are the attribute sets compared (tuples of
    attribute names), ``groups`` each attribute's groups in the data (None: any group a key
    names is accepted, and judged insufficient if the comparison has none). Names in keys
    follow :func:`audit.methods.fairness.parse_set_key`, as in ``[gate]``.

    Examples
    --------
    >>> rules = parse_compare_gate({"performance.auc": {"max_decrease": 0.01}}, sets=[("sex",)])
    >>> rules[0].text
    'performance.auc decrease < 0.01'
    """
    from audit.compare.options import comparable_disparities
    from audit.gate import key_set
    from audit.methods.fairness import set_name

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
            attr, group, metric = _recourse_key(key, rest, [a for s_ in sets if len(s_) == 1 for a in s_], groups)
        elif section == "fairness":
            text, _, metric = rest.rpartition(".")
            attr = key_set(text, f"The [compare.gate] key {key!r}", by_members=by_members, sensitive=attributes,
                           covered="the comparison")
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
    """``text`` split at the dots outside double quotes, each part as written (quotes kept, for
    :func:`audit.methods.fairness.parse_set_key`; inside quotes ``\\"`` is a quote)."""
    parts, start, quoted, pos = [], 0, False, 0
    while pos < len(text):
        c = text[pos]
        if quoted and c == "\\":
            pos += 1
        elif c == '"':
            quoted = not quoted
        elif c == "." and not quoted:
            parts.append(text[start:pos])
            start = pos + 1
        pos += 1
    if quoted:
        raise InvalidConfigError(f'{where} has an unclosed quote: end the quoted name with " (README, "Gate keys").')
    return [*parts, text[start:]]


def _recourse_key(key: str, rest: str, attributes: Sequence[str],
                  groups: Mapping[str, Sequence[str]] | None) -> tuple[str, str, str]:
    """``<attribute>.<group>.median_cost_change`` of a ``counterfactuals.`` key. Each name follows
    the quoting rule of ``[gate]`` (:func:`audit.methods.fairness.parse_set_key`); the attribute is
    one of ``attributes`` (recourse is compared per attribute, never per intersection) and the
    group, when ``groups`` are known, one of its groups. An unquoted name with a dot in it is
    read the one way that names a compared attribute and group; two such readings are refused."""
    from audit.compare.recourse import METRIC
    from audit.gate import key_set
    from audit.methods.fairness import parse_set_key, set_name

    where = f"The [compare.gate] key {key!r}"
    shape = "counterfactuals.{}.<group>." + METRIC
    parts = _key_parts(rest, where)
    if len(parts) < 3 or parts[-1] != METRIC:
        raise InvalidConfigError(f"{where} must look like \"counterfactuals.<attribute>.<group>.{METRIC}\" (the "
                                 "median per-row change of a group's recourse cost).")
    names = parts[:-1]

    def group_name(text: str) -> str:
        members = parse_set_key(text, where)
        if len(members) > 1:
            raise InvalidConfigError(f"{where} names the group {text!r}, which the quoting rule reads as the "
                                     f"names {list(members)} joined by a separator: quote a group name with *, × "
                                     'or & in it (README, "Gate keys").')
        return members[0]

    # every reading: attribute = the first i names joined by dots (unquoted dotted names), group = the rest
    readings = []
    for i in range(1, len(names)):
        try:
            readings.append((parse_set_key(".".join(names[:i]), where), ".".join(names[i:])))
        except InvalidConfigError:
            if i == 1:
                raise
    known = [(m[0], g) for m, g in readings if len(m) == 1 and m[0] in attributes]
    if not known:
        members, text = readings[0][0], names[0]
        if len(members) > 1 and all(m in attributes for m in members):
            raise InvalidConfigError(
                f"{where} names the intersection {text!r}: recourse is compared per sensitive attribute, not for "
                f"intersections (the counterfactuals method reports the groups of each attribute). Name one "
                f"attribute: {', '.join(attributes)}.")
        # not an attribute: the error suggests the nearest one, or how to quote a name that was split
        canonical = {set_name((a,)): a for a in attributes}
        known = [(canonical[key_set(text, where, by_members={frozenset([a]): c for c, a in canonical.items()},
                                    sensitive=attributes, covered="the recourse comparison", shape=shape,
                                    listing="Attributes")], readings[0][1])]
    resolved = [(a, group_name(g)) for a, g in known]
    if groups is not None:
        present = [(a, g) for a, g in resolved if g in {str(v) for v in groups.get(a, ())}]
        if not present:
            attr, group = resolved[0]
            levels = sorted(str(v) for v in groups.get(attr, ()))
            raise InvalidConfigError(
                f"{where} names the group {group!r} of {attr!r}, which does not occur in the data."
                f"{did_you_mean(group, levels)} Groups of {attr!r}: {', '.join(levels[:20]) or 'none'}"
                f"{' …' if len(levels) > 20 else ''}.")
        resolved = present
    if len(resolved) > 1:
        readings_text = "; ".join(f"attribute {a!r}, group {g!r}" for a, g in resolved)
        example = ".".join(_always_quoted(n) for n in resolved[0])
        raise InvalidConfigError(f"{where} can be read in {len(resolved)} ways ({readings_text}): quote the names "
                                 f"with a dot in them, e.g. 'counterfactuals.{example}.{METRIC}' (README, "
                                 '"Gate keys").')
    return resolved[0][0], resolved[0][1], METRIC


def _always_quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    # a recourse change is the median of per-row changes, not the change of the two medians shown
    what = "median per-row change" if rule.section == "counterfactuals" else "change"
    basis = f"{change.basis}: " if change.basis else ""
    ci = (f"{what} {fixed(e.value, '+.4f')} (paired {100 * conf:.4g}% CI {fixed(e.lower, '+.4f')} to "
          f"{fixed(e.upper, '+.4f')}; {basis}champion {fixed(change.champion, '.4f')}, challenger "
          f"{fixed(change.challenger, '.4f')})")
    inc, dec = rule.max_increase, rule.max_decrease
    breach = (inc is not None and e.lower > inc) or (dec is not None and e.upper < -dec)
    inside = (inc is None or e.upper < inc) and (dec is None or e.lower > -dec)
    margin = " and ".join(t for t in (f"an increase of {inc:g}" if inc is not None else "",
                                      f"a decrease of {dec:g}" if dec is not None else "") if t)
    small = change.excluded_small if rule.small_groups == "insufficient" else ()
    undefined = change.excluded_undefined
    if undefined:  # judged groups the metric is undefined for: the change is over the others only
        ci += f" over the other groups (left out: {'; '.join(undefined)})"
    how_often = f"at most {err:.2%} of the time"
    simulated = BOOTSTRAP_ONE_SIDED_ERROR.get(change.metric) if e.method == BOOTSTRAP else None
    if simulated is not None:
        how_often = (f"nominally {err:.2%} of the time; approximate: this {BOOTSTRAP} interval's bounds erred "
                     f"up to {simulated:.1%} of the time in simulations at 95%, Monte Carlo margin included (README, "
                     "\"Comparing two models\")")
    if breach:
        return verdict("breach", f"{ci}: the whole interval is beyond {margin} (were the true change "
                                 f"within the margin, this would happen {how_often})")
    if small:
        names = ", ".join(small[:5]) + (" …" if len(small) > 5 else "")
        return verdict("insufficient", f"{ci} over the judged groups, but {len(small)} group(s) are too small "
                                       f"to judge ({names}); set small_groups = \"ignore\" to judge on the "
                                       "larger groups only")
    if undefined and rule.small_groups == "insufficient":
        return verdict("insufficient", f"{ci}, which cannot judge the groups left out; set small_groups = "
                                       "\"ignore\" to judge on the other groups only")
    if inside:
        return verdict("pass", f"{ci}: non-inferior, the whole interval is within {margin} (were the true "
                               f"change beyond the margin, this would happen {how_often})")
    return verdict("inconclusive", f"{ci}: the interval straddles {margin}; more data would settle it"
                                   + (" (counted as a failure)" if rule.inconclusive == "fail" else " (warning only)"))


__all__ = ["NO_GATE", "CompareRule", "PERFORMANCE_METRICS", "judge", "parse_compare_gate"]
