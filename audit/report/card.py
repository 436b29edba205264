"""Model cards from evidence: ``model_card.md`` written from a run's results.json.

A model card (Mitchell et al. 2019, "Model Cards for Model Reporting") has nine sections:
model details, intended use, factors, metrics, evaluation data, training data, quantitative
analyses, ethical considerations, caveats and recommendations. Here each section has two
kinds of content, kept apart on the page:

- **measured**: every number comes from the results (the dict that ``results.json`` holds),
  with its interval where the method made one, and names the key it came from as a JSON
  Pointer (RFC 6901), e.g. ``/methods/performance/result/metrics/accuracy``;
- **from the authors**: what only a person knows (intended and out-of-scope uses, owners,
  licence, ...) comes from the config's ``[card]`` table (:data:`CARD_FIELDS`); an expected
  entry that is absent is marked missing, never filled in.

The same measured quantities (:func:`facts`) feed :meth:`AuditReport.summary` and the optional
Hugging Face front matter (``model-index``), so a number is read from the results in one place.

Every user string (a ``[card]`` value, a column, group or feature name) is Markdown-escaped
(:func:`md_inline`, :func:`md_block`): it cannot open a heading, list, table, link, image, HTML
tag, code span or math, and control and bidi characters are spelled out (``\\u202e``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath
from typing import Any

from audit.core.modalities import LAYOUTS
from audit.core.text import visible
from audit.errors import InvalidConfigError, did_you_mean


@dataclass(frozen=True)
class CardField:
    """One key of the ``[card]`` table."""

    section: str
    kind: str  # "text" (a string, or a list of strings shown as a bulleted list), "tags", "bool"
    expected: bool  # marked missing in the card when absent
    meaning: str


# What only a person knows, by Mitchell et al.'s section. "expected" entries are marked
# missing when absent; the others are shown only when given.
CARD_FIELDS: dict[str, CardField] = {
    "description": CardField("model_details", "text", True, "what the model is and does, how it was built"),
    "owners": CardField("model_details", "text", True, "who develops and answers for the model"),
    "version": CardField("model_details", "text", False, "the model's version or date"),
    "license": CardField("model_details", "text", True, "the model's licence (an SPDX id such as \"mit\" "
                         "also becomes the front matter's license)"),
    "citation": CardField("model_details", "text", False, "how to cite the model"),
    "contact": CardField("model_details", "text", False, "where to send questions or concerns"),
    "intended_use": CardField("intended_use", "text", True, "the primary intended uses"),
    "intended_users": CardField("intended_use", "text", False, "the primary intended users"),
    "out_of_scope_uses": CardField("intended_use", "text", True, "uses the model must not be put to"),
    "factors": CardField("factors", "text", False, "groups, instruments or environments that matter "
                         "beyond the audited sensitive attributes"),
    "metrics": CardField("metrics", "text", False, "why these metrics and thresholds"),
    "evaluation_data": CardField("evaluation_data", "text", False, "the evaluation data: source, "
                                 "motivation, preprocessing"),
    "training_data": CardField("training_data", "text", True, "the training data: source, "
                               "preprocessing, known issues"),
    "quantitative_analyses": CardField("quantitative_analyses", "text", False, "the authors' reading "
                                       "of the measured results"),
    "ethical_considerations": CardField("ethical_considerations", "text", True, "risks, harms, "
                                        "sensitive data, mitigations"),
    "caveats": CardField("caveats", "text", False, "further caveats"),
    "recommendations": CardField("caveats", "text", True, "recommendations for users of the model"),
    "notes": CardField("notes", "text", False, "anything else, kept verbatim in a last section"),
    "front_matter": CardField("front_matter", "bool", False, "start the card with YAML front matter "
                              "in Hugging Face's model-card metadata format (default false)"),
    "dataset_id": CardField("front_matter", "text", False, "front matter: the evaluation data's "
                            "dataset id (default: the audited file's name)"),
    "dataset_split": CardField("front_matter", "text", False, "front matter: which part of the data the "
                               "audited rows are (\"test\", ...); default: not stated"),
    "tags": CardField("front_matter", "tags", False, "front matter: tags beside \"audit-suite\""),
}
_MAX_TEXT = 20_000  # characters per [card] string: prose, not data


def check_card(table: Any, where: str = "[card]") -> dict[str, Any]:
    """Validate a ``[card]`` table; return it as plain values (lists of strings kept as lists).

    Examples
    --------
    >>> check_card({"intended_use": "Teaching.", "out_of_scope_uses": ["Credit", "Hiring"]})
    {'intended_use': 'Teaching.', 'out_of_scope_uses': ['Credit', 'Hiring']}
    >>> check_card({"intnded_use": "x"})
    Traceback (most recent call last):
    ...
    audit.errors.InvalidConfigError: Unknown key 'intnded_use' in [card]. Did you mean 'intended_use'? ...
    """
    if not isinstance(table, Mapping):
        raise InvalidConfigError(f"{where} must be a table of model-card entries. Got {table!r} instead.")
    out: dict[str, Any] = {}
    for key, value in table.items():
        field = CARD_FIELDS.get(key)
        if field is None:
            raise InvalidConfigError(f"Unknown key {key!r} in {where}.{did_you_mean(key, CARD_FIELDS)} "
                                     f"Valid keys: {', '.join(sorted(CARD_FIELDS))}.")
        if field.kind == "bool":
            if not isinstance(value, bool):
                raise InvalidConfigError(f"The {where} {key!r} must be true or false. Got {value!r} instead.")
            out[key] = value
            continue
        items = value if isinstance(value, list) else [value]
        ok = all(isinstance(v, str) and v.strip() and len(v) <= _MAX_TEXT for v in items)
        if not ok or not items or (field.kind == "tags" and not isinstance(value, list)):
            shape = ("a list of non-empty strings" if field.kind == "tags" else
                     f"non-empty text (a string, or a list of strings for a bulleted list) of at most "
                     f"{_MAX_TEXT:,} characters each")
            raise InvalidConfigError(f"The {where} {key!r} must be {shape}. Got {_short(value)} instead.")
        out[key] = list(value) if isinstance(value, list) else value
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- Markdown escaping -------------------------------------------------------------------------

class Md(str):
    """Markdown that the card's own code made (numbers, keys, escaped text): not escaped again."""


# Backslash-escaped wherever they occur: emphasis, code, links/images, HTML, tables, math,
# strikethrough, entities, footnotes, e-mail autolinks. (CommonMark lets any ASCII punctuation
# be escaped; these are the ones that start something.)
_INLINE = re.compile(r"([\\`*_\[\]<>!|~&$@{}])")
# At the start of a line: headings, quotes, lists, setext underlines, thematic breaks, tables.
_LINE_START = re.compile(r"^([#>+=]|-(?=[ -]|$))")
_ORDERED = re.compile(r"^(\d{1,9})([.)])(?= |$)")  # "1. " starts a list: escape the dot


def _escape_line(line: str) -> str:
    line = visible(line.replace("\t", " ")).strip()  # no indented code; controls spelled out
    line = _INLINE.sub(r"\\\1", line)
    # GitHub turns bare URLs and www. names into links: break the patterns it looks for.
    line = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*):(?=//)", r"\1\\:", line)
    line = re.sub(r"(?i)\bwww\.", r"www\\.", line)
    return _ORDERED.sub(r"\1\\\2", _LINE_START.sub(r"\\\1", line))


def md_inline(value: Any) -> Md:
    """``value`` as one line of Markdown text: every construct escaped, newlines become spaces.

    Examples
    --------
    >>> print(md_inline("# <b>x</b> [a](http://e.x)"))
    \\# \\<b\\>x\\</b\\> \\[a\\](http\\://e.x)
    """
    if isinstance(value, Md):
        return value
    return Md(_escape_line(" ".join(str(value).split())))


def md_block(value: Any) -> Md:
    """Text from the authors as Markdown: paragraphs (blank lines) and line breaks kept, every
    line escaped; a list of strings becomes a bulleted list (each item on one line)."""
    if isinstance(value, list):
        return Md("\n".join(f"- {md_inline(v)}" for v in value))
    paragraphs = re.split(r"\n\s*\n", str(value).replace("\r\n", "\n").strip())
    # a hard line break (backslash at the end) keeps the author's lines as written
    return Md("\n\n".join("\\\n".join(_escape_line(ln) for ln in p.split("\n") if ln.strip())
                          for p in paragraphs))


def md_code(pointer: str, *, table: bool = False) -> Md:
    """Text (a results.json key, a config key) as a code span (a fence longer than any backtick run inside it)."""
    text = visible(pointer)
    if table:
        text = text.replace("|", "\\|")  # GFM splits table cells on '|' even inside code spans
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Md(f"{fence}{pad}{text}{pad}{fence}")


def pointer(*parts: Any) -> str:
    """The JSON Pointer (RFC 6901) of a value in results.json.

    >>> pointer("methods", "fairness", "result", "attributes", "a/b", "groups", 0)
    '/methods/fairness/result/attributes/a~1b/groups/0'
    """
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(results: Mapping[str, Any], key: str) -> Any:
    """The value of results.json at a JSON Pointer (KeyError/IndexError when absent)."""
    node: Any = results
    for raw in key.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


# --- The measured quantities -------------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    """One measured quantity of a run, with where it lives in results.json.

    ``keys`` holds the JSON Pointer of the value first, then those of its bounds when they
    live elsewhere (attributions keep their bounds in separate tables).
    """

    method: str
    what: str
    value: float | None
    lower: float | None
    upper: float | None
    level: float | None
    interval: str | None
    verdict: str | None
    keys: tuple[str, ...]
    group: str = ""  # the attribute (fairness), the method (attributions)
    test: str | None = None  # the hypothesis test behind the verdict (fairness disparities)
    finding: str | None = None  # a sentence of the executive summary (its level is the verdict)

    def __post_init__(self) -> None:
        if self.lower is None or self.upper is None:  # a level belongs to an interval only
            object.__setattr__(self, "level", None)

    @property
    def key(self) -> str:
        return self.keys[0]

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        return {c: self.key if c == "key" else row[c] for c in SUMMARY_COLUMNS}


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _bounds(estimate: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[float | None, ...]:
    """value, lower, upper, level of an estimate in results.json (its own level, else the
    method's confidence)."""
    level = estimate.get("level", result.get("confidence"))
    return tuple(_num(x) for x in (estimate.get("value"), estimate.get("lower"), estimate.get("upper"), level))


def _undefined(estimate: Mapping[str, Any]) -> str | None:
    return estimate.get("undefined") or estimate.get("undefined_reason")


def _ok(results: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    entry = results.get("methods", {}).get(name)
    return entry["result"] if entry and entry.get("status") == "ok" else None


def level_key(results: Mapping[str, Any], name: str) -> str | None:
    """Where a method's interval level lives in results.json: its result's ``confidence``, else
    its config's (the fairness method keeps it in the config only)."""
    entry = results.get("methods", {}).get(name) or {}
    for part in ("result", "config"):
        if isinstance(entry.get(part), Mapping) and _num(entry[part].get("confidence")) is not None:
            return pointer("methods", name, part, "confidence")
    return None


def _level(results: Mapping[str, Any], name: str) -> float | None:
    key = level_key(results, name)
    return resolve(results, key) if key else None


def performance_facts(results: Mapping[str, Any]) -> list[Fact]:
    res = _ok(results, "performance")
    if res is None:
        return []
    out = []
    for name, m in res["metrics"].items():
        out.append(Fact("performance", res["labels"].get(name, name), *_bounds(m, res),
                        res["metric_notes"].get(name) or m.get("method") or None,
                        _undefined(m) or res["unreliable"].get(name),
                        _performance_keys(res, name)))
    return out


def _performance_keys(res: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """The metric's key, then those of the texts beside it that the card's line shows with
    numbers in them (a label such as "... (10 equal-width bins)", the calibration note, why
    the interval is unreliable), so that every number on the line traces to a key it names."""
    texts = [part for part in ("labels", "metric_notes", "unreliable")
             if any(ch.isdigit() for ch in str(res.get(part, {}).get(name, "")))]
    return tuple(pointer("methods", "performance", "result", part, name) for part in ("metrics", *texts))


def disparity_facts(results: Mapping[str, Any]) -> list[Fact]:
    """Each attribute's fairness criteria (not the per-rate disparities kept for the gate)."""
    res = _ok(results, "fairness")
    if res is None:
        return []
    per_rate = set(res.get("rate_disparities", ()))
    level = _level(results, "fairness")
    out = []
    for attr, a in res["attributes"].items():
        for name, d in a.get("disparities", {}).items():
            if name in per_rate:
                continue
            est = d.get("estimate", d)
            out.append(Fact("fairness", d.get("label", name), *_bounds(est, {"confidence": level}), est.get("method"),
                            d.get("significance") or _undefined(est),
                            (pointer("methods", "fairness", "result", "attributes", attr, "disparities", name),),
                            group=attr, test=d.get("test")))
    return out


def gate_facts(results: Mapping[str, Any]) -> list[Fact]:
    gate = results.get("gate") or {}
    return [Fact("gate", v["rule"], _num(v.get("value")), _num(v.get("lower")), _num(v.get("upper")),
                 _num(v.get("confidence")), None, v["status"], (pointer("gate", "verdicts", i),))
            for i, v in enumerate(gate.get("verdicts", ()))]


def attribution_facts(results: Mapping[str, Any], top: int = 5) -> list[Fact]:
    """The ``top`` features of every method whose results give a global importance per raw
    feature as estimates (``global_importance``: feature -> value, lower, upper, level)."""
    out = []
    for name, entry in results.get("methods", {}).items():
        res = _ok(results, name)
        imp = res.get("global_importance") if res is not None else None
        if not isinstance(imp, Mapping) or not all(isinstance(e, Mapping) and "value" in e for e in imp.values()):
            continue
        label = res.get("label") or entry.get("title", name)
        for feat in sorted(imp, key=lambda f: -(_num(imp[f]["value"]) or 0.0))[:top]:
            est = imp[feat]
            out.append(Fact(name, feat, *_bounds(est, res), est.get("method"), _undefined(est),
                            (pointer("methods", name, "result", "global_importance", feat),), group=label))
    return out


def facts(results: Mapping[str, Any]) -> list[Fact]:
    """Every measured quantity the card quotes, in the card's order."""
    return [*performance_facts(results), *disparity_facts(results), *gate_facts(results),
            *attribution_facts(results)]


# Per-group columns shown in the card (first those present, in this order).
_GROUP_COLUMNS = ("base_rate", "selection_rate", "tpr", "fpr", "ppv", "accuracy", "mean_prediction",
                  "mean_error", "mae")


def group_tables(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per attribute: the columns and one row per group (count, rates with their intervals)."""
    res = _ok(results, "fairness")
    if res is None:
        return []
    tables = []
    for attr, a in res["attributes"].items():
        groups = a.get("groups", [])
        present = {k for g in groups for k in g.get("metrics", {})}
        cols = [c for c in _GROUP_COLUMNS if c in present] or sorted(present)[:6]
        rows = []
        for i, g in enumerate(groups):
            cells = []
            for c in cols:
                m = g.get("metrics", {}).get(c) or {}
                cells.append({"value": _num(m.get("value")), "lower": _num(m.get("lower")),
                              "upper": _num(m.get("upper"))})
            rows.append({"group": g["group"], "count": g.get("count"), "too_small": g.get("too_small"),
                         "cells": cells, "key": pointer("methods", "fairness", "result", "attributes", attr,
                                                        "groups", i)})
        tables.append({"attribute": attr, "columns": [res.get("labels", {}).get(c, c) for c in cols],
                       "rows": rows, "key": pointer("methods", "fairness", "result", "attributes", attr)})
    return tables


# --- Front matter (Hugging Face model-card metadata) -------------------------------------------

_HF_METRIC = {"auc": "roc_auc", "brier": "brier_score", "r2": "r_squared"}
_HF_DISPARITIES = ("demographic_parity_difference", "equalized_odds_difference")


def _hf_task(results: Mapping[str, Any]) -> str:
    task = results.get("model", {}).get("task")
    modality = results.get("data", {}).get("modality")
    classify, regress = LAYOUTS.get(modality, LAYOUTS["tabular"]).hf_tasks
    return regress if task == "regression" else classify


def front_matter(results: Mapping[str, Any], card: Mapping[str, Any]) -> dict[str, Any]:
    """Hugging Face model-card metadata: ``model-index`` with the measured metrics (values as
    in results.json; the interval is in each metric's ``name``), ``license`` and ``tags``."""
    level = "{:.0%} CI"
    metrics = []
    shown = [f for f in performance_facts(results) if f.value is not None]
    shown += [f for f in disparity_facts(results) if f.value is not None
              and f.key.rsplit("/", 1)[-1] in _HF_DISPARITIES]
    for f in shown:
        name = f.what if f.group == "" else f"{f.what}, {f.group}"
        if f.lower is not None and f.upper is not None and f.level is not None:
            name += f" ({level.format(f.level)} {f.lower:.4g} to {f.upper:.4g})"
        metric_id = f.key.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
        metrics.append({"type": _HF_METRIC.get(metric_id, metric_id), "value": f.value, "name": name,
                        "verified": False})
    source = results.get("data", {}).get("source") or "in-memory data"
    data_name = PurePath(source).name if source != "in-memory data" else source
    meta: dict[str, Any] = {}
    if "license" in card:
        meta["license"] = card["license"]
    meta["tags"] = ["audit-suite", *card.get("tags", [])]
    meta["model-index"] = [{
        "name": results.get("name", "model"),
        "results": [{
            "task": {"type": _hf_task(results)},
            "dataset": {"type": card.get("dataset_id", data_name), "name": data_name,
                        **({"split": card["dataset_split"]} if "dataset_split" in card else {})},
            "metrics": metrics,
        }],
    }]
    return meta


# Characters YAML may not carry raw, or reads as line breaks inside a quoted scalar (NEL, LS, PS).
_YAML_UNSAFE = re.compile("[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}  # YAML 1.1 reads these


def _yaml_key(key: str) -> str:
    plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key) and key.lower() not in _YAML_WORDS
    return key if plain else _yaml_scalar(key)


def _yaml_scalar(value: Any) -> str:
    """A YAML scalar that cannot be anything but itself: strings double-quoted (JSON's quoting,
    which YAML reads alike) with every character YAML may not carry raw escaped."""
    if isinstance(value, float):  # YAML 1.1 reads 1e-06 as text: the mantissa needs a dot
        mantissa, e, exp = repr(value).partition("e")
        return mantissa + (".0" if e and "." not in mantissa else "") + e + exp
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return json.dumps(value)
    if isinstance(value, (Mapping, list)):  # only empty ones reach here
        return "{}" if isinstance(value, Mapping) else "[]"
    text = json.dumps(str(value), ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) < 0x10000
                            else f"\\U{ord(m.group()):08x}", text)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML of plain dicts, lists and scalars (what :func:`front_matter` returns)."""
    pad = " " * indent
    lines = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, (Mapping, list)) and v:
                lines.append(f"{pad}{_yaml_key(k)}:")
                lines.append(to_yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{_yaml_key(k)}: {_yaml_scalar(v)}")
    else:
        for v in value:
            if isinstance(v, (Mapping, list)) and v:
                inner = to_yaml(v, indent + 2)
                lines.append(f"{pad}- {inner.lstrip()}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(v)}")
    return "\n".join(lines)


# --- Rendering ---------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 3) -> Md:
    from audit.report.render import fmt_number

    return Md(fmt_number(value, digits))


def _estimate(value: Any, lower: Any = None, upper: Any = None) -> Md:
    """``0.853 (0.848–0.859)``, ``0.853`` without bounds, ``—`` when undefined."""
    if _num(value) is None:
        return Md("—")
    if _num(lower) is None or _num(upper) is None:
        return _fmt(value)
    return Md(f"{_fmt(value)} ({_fmt(lower)}–{_fmt(upper)})")


def _finalize(value: Any) -> Any:
    """Every value the template prints is Markdown-escaped unless the card's code made it."""
    if isinstance(value, Md):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _fmt(value)
    return md_inline(value)


def _environment() -> Any:
    import jinja2

    from audit.report.render import templates_dir

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=False,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, finalize=_finalize)
    env.filters.update(block=md_block, inline=md_inline, code=md_code, md=Md, num=_fmt, est=_estimate,
                       pct=lambda x: Md(f"{100 * float(x):.0f}%"))
    return env


def render_card(results: Mapping[str, Any], card: Mapping[str, Any] | None = None) -> str:
    """The model card (Markdown) of a run, from its results.json dict.

    ``card`` is the ``[card]`` table; by default the one stored in the results (``"card"``).

    Examples
    --------
    >>> import json
    >>> text = render_card(json.load(open("reports/adult_mlp/results.json")))  # doctest: +SKIP
    """
    card = check_card(card if card is not None else results.get("card", {}))
    perf = performance_facts(results)
    body = _environment().get_template("model_card.md.j2").render(
        r=results, card=card, fields=CARD_FIELDS, performance=perf, disparities=disparity_facts(results),
        gate=gate_facts(results), attributions=attribution_facts(results), groups=group_tables(results),
        methods=results.get("methods", {}), level_key=level_key, resolve=resolve,
        files=[(i, f) for i, f in enumerate(results.get("provenance", {}).get("files", []))],
        basename=lambda p: PurePath(str(p)).name)
    body = re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"
    if not card.get("front_matter"):
        return body
    return f"---\n{to_yaml(front_matter(results, card))}\n---\n\n{body}"


def is_model_card(path: Path) -> bool:
    """True when ``path`` holds a model card as :func:`render_card` writes it (so ``audit card``
    may replace it): after any front matter, the first line is its title and the card says who
    wrote it."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(1 << 20).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if text.startswith("---\n"):
        text = text.split("\n---\n", 1)[-1].lstrip("\n")
    return text.startswith("# Model card: ") and "\nWritten by audit-suite " in text


SUMMARY_COLUMNS = ("method", "what", "finding", "value", "lower", "upper", "level", "interval", "test", "verdict",
                   "group", "key")


def finding_facts(results: Mapping[str, Any]) -> list[Fact]:
    """The sentences of the executive summary, in the report's order: ``finding`` holds the
    sentence, ``verdict`` its level (alert, warning, info)."""
    return [Fact(f.get("method") or "report", "finding", None, None, None, None, None, f.get("level"),
                 (pointer("findings", i),), finding=f.get("text"))
            for i, f in enumerate(results.get("findings") or ())]


def summary_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One dict per finding of the executive summary, then one per measured quantity (see
    :class:`Fact`), for :meth:`AuditReport.summary`."""
    return [f.to_row() for f in (*finding_facts(results), *facts(results))]


def missing(card: Mapping[str, Any], section: str) -> list[str]:
    """The expected ``[card]`` keys of ``section`` that the table lacks."""
    return [k for k, f in CARD_FIELDS.items() if f.section == section and f.expected and k not in card]


__all__ = ["CARD_FIELDS", "CardField", "Fact", "check_card", "facts", "finding_facts", "front_matter", "md_block",
           "md_code", "md_inline", "pointer", "render_card", "resolve", "summary_rows"]
