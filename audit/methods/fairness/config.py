"""Options of the fairness method and its vocabulary: metric and disparity names, attribute sets."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from audit.core.method import Constraint, Either, Interval, MethodConfig, OptionError, Options
from audit.errors import InvalidConfigError, did_you_mean
from audit.stats.counts import DEFAULT_SCORE_BINS

#: Separator of attribute names in an intersection's name (``"sex*race"``); ``×`` and ``&``
#: are accepted as synonyms in gate keys and config.
INTERSECTION_SEP = "*"

METRIC_LABELS = {
    "count": "rows", "base_rate": "base rate", "selection_rate": "selection rate",
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "tpr": "TPR", "fpr": "FPR",
    "fnr": "FNR", "tnr": "TNR", "ppv": "PPV", "npv": "NPV", "auc": "AUC",
    "ece": "ECE (calibration error)",
    "favourable_rate": "favourable outcome rate",
    "mean_prediction": "mean prediction", "mean_error": "mean error (pred − true)", "mae": "MAE",
}

#: Disparities per task: name -> (label, group metric it compares).
BINARY_DISPARITIES: dict[str, tuple[str, str]] = {
    "demographic_parity_difference": ("demographic parity difference", "selection_rate"),
    "demographic_parity_ratio": ("demographic parity ratio", "selection_rate"),
    "disparate_impact_ratio": ("disparate impact ratio (four-fifths rule)", "selection_rate"),
    "equalized_odds_difference": ("equalized odds difference (max of TPR, FPR)", "tpr,fpr"),
    "equalized_odds_ratio": ("equalized odds ratio (min of TPR, FPR)", "tpr,fpr"),
    "equal_opportunity_difference": ("equal opportunity difference (TPR)", "tpr"),
    "equal_opportunity_ratio": ("equal opportunity ratio (TPR)", "tpr"),
    "predictive_parity_difference": ("predictive parity difference (PPV)", "ppv"),
    "predictive_parity_ratio": ("predictive parity ratio (PPV)", "ppv"),
    "accuracy_difference": ("accuracy difference", "accuracy"),
    "auc_difference": ("AUC difference", "auc"),
}
#: Each group rate's own disparity (for the gate): rate name -> (group metric, label, the null
#: hypothesis it tests). FNR = 1 − TPR and TNR = 1 − FPR, so they test the same hypotheses.
RATE_DISPARITY_BASES: dict[str, tuple[str, str, str]] = {
    "selection_rate": ("selection_rate", "selection rate", "equal selection rates"),
    "true_positive_rate": ("tpr", "TPR", "equal TPR"),
    "false_positive_rate": ("fpr", "FPR", "equal FPR"),
    "false_negative_rate": ("fnr", "FNR", "equal TPR"),
    "true_negative_rate": ("tnr", "TNR", "equal FPR"),
    "positive_predictive_value": ("ppv", "PPV", "equal PPV"),
    "negative_predictive_value": ("npv", "NPV", "equal NPV"),
}
for _rate, (_base, _label, _) in RATE_DISPARITY_BASES.items():
    BINARY_DISPARITIES[f"{_rate}_difference"] = (f"{_label} difference", _base)
    BINARY_DISPARITIES[f"{_rate}_ratio"] = (f"{_label} ratio", _base)
#: The per-rate disparities, shown apart from the headline criteria in the report.
RATE_DISPARITIES = tuple(f"{r}_{kind}" for r in RATE_DISPARITY_BASES for kind in ("difference", "ratio"))
REGRESSION_DISPARITIES: dict[str, tuple[str, str]] = {
    "mean_prediction_difference": ("mean prediction difference", "mean_prediction"),
    "mean_error_difference": ("mean error difference", "mean_error"),
    "mae_difference": ("MAE difference", "mae"),
}
MULTICLASS_DISPARITIES: dict[str, tuple[str, str]] = {
    "accuracy_difference": ("accuracy difference", "accuracy"),
    "demographic_parity_difference": ("demographic parity difference (largest over classes)",
                                      "selection_rate[*]"),
}


def disparity_names(task: str) -> list[str]:
    """The disparity metrics reported (and usable in the gate) for a task."""
    table = {"binary": BINARY_DISPARITIES, "regression": REGRESSION_DISPARITIES}.get(
        task, MULTICLASS_DISPARITIES)
    return list(table)


@dataclass(frozen=True)
class FairnessConfig(MethodConfig):
    """Options of the fairness method.

    min_group_size : groups with fewer rows are "too small to judge" (no numbers, no disparity).
    confidence : level c of the intervals (two-sided; each bound errs at most (1 − c)/2); the gate
        judges on them, and for rates and their disparities the tests use α = 1 − c (the
        interval's own test), so that findings and gate verdicts agree.
    alpha : significance level of the regression permutation tests and their power note.
    power : power of the minimum-detectable-difference note.
    n_bootstrap : bootstrap resamples for balanced accuracy and regression, and the calibration
        test's draws; 0 disables those (rates keep their exact intervals, AUC its van Dantzig
        interval, which needs no resampling).
    n_permutations : permutations per regression test (0 disables them).
    reference : attribute (or intersection) -> reference group; others use max − min.
    intersections : lists of attributes to cross; default: every pair of sensitive attributes.
    max_groups : an attribute with more distinct values is an error (bin it first); so is an
        intersection listed in ``intersections`` with more groups, and a default (pairwise)
        intersection with more is skipped, the reason stated in the report.
    calibration_bins : equal-width score bins of the reliability curves.
    score_bins : equal-width bins of each group's score histogram, from which AUC (when the rows
        are streamed; in memory AUC is exact) and its interval, the calibration error and test,
        the threshold curves and the what-if's scores are computed; a multiple of
        ``calibration_bins``. The calibration error and the curves (at the bin edges) are exact;
        a streamed AUC is within its stated bound of the exact value.
    what_if : run fairlearn's ThresholdOptimizer what-if (needs scores).
    what_if_rows : above this many judged rows the what-if is fitted and evaluated on a
        stratified random sample of them (its cost grows with the rows; it is information only).
    dp_warn, eo_warn : differences whose whole interval lies above these are named in the summary.
    favourable : which decision of a binary classifier is the favourable outcome, "positive"
        (default: the positive label, e.g. a loan granted) or "negative" (an adverse decision
        such as a "high risk" score is the positive label). Demographic parity, the
        disparate-impact ratio and the four-fifths rule then compare the rate of the favourable
        outcome (for a difference this changes nothing; for a ratio it does).
    favourable_label : the same, by the label's name (one of the target's two classes).
    """

    min_group_size: int = 30
    confidence: float = 0.95
    alpha: float = 0.05
    power: float = 0.8
    n_bootstrap: int = 1000
    n_permutations: int = 999
    reference: dict[str, str] = field(default_factory=dict)
    intersections: tuple[tuple[str, ...], ...] | None = None
    max_groups: int = 50
    calibration_bins: int = 10
    score_bins: int = DEFAULT_SCORE_BINS
    what_if: bool = True
    what_if_rows: int = 20_000
    dp_warn: float = 0.1
    eo_warn: float = 0.1
    favourable: Literal["positive", "negative"] = "positive"
    favourable_label: str | None = None

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "power": Interval(0, 1, "a probability", closed="neither"),
        "dp_warn": Interval(0, 1, "a difference of rates", closed="neither"),
        "eo_warn": Interval(0, 1, "a difference of rates", closed="neither"),
        "n_bootstrap": Either((Options((0,)), Interval(100, 100_000)),
                              "0 computes no bootstrap intervals; each resample costs a pass over the data"),
        "n_permutations": Either((Options((0,)), Interval(99, 100_000)),
                                 "0 runs no tests; below 99 a test cannot reach 0.01"),
        "what_if_rows": Interval(1000, 10_000_000, "rows the what-if thresholds are judged on"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"n_boot": "n_bootstrap"}

    def validate(self) -> None:
        if self.score_bins % self.calibration_bins:
            raise OptionError("score_bins", f"a multiple of calibration_bins ({self.calibration_bins}), whose "
                              "bins merge its bins", self.score_bins)
        for combo in self.intersections or ():
            if len(combo) < 2 or len(set(combo)) != len(combo):
                raise OptionError("intersections", "a list of lists of at least two distinct attributes",
                                  list(combo))
        for key, value in self.reference.items():
            if not isinstance(value, str):
                raise OptionError(f"reference.{key}", "a group name (text)", value)


def set_name(columns: Sequence[str]) -> str:
    """The name of an attribute or intersection (``"sex"``, ``"sex*race"``), the key of its results.

    A member whose name holds ``*``, ``×``, ``&``, a double quote, a backslash or edge spaces is
    written in double quotes (the quoting rule of gate keys, :func:`parse_set_key`), so no two
    sets share a name: the attribute ``a*b`` is ``'"a*b"'``, the intersection of ``a`` and ``b``
    is ``'a*b'``; ``parse_set_key(set_name(cols))`` gives ``cols`` back.

    Examples
    --------
    >>> set_name(("sex", "race")), set_name(("a*b",))
    ('sex*race', '"a*b"')
    """
    return INTERSECTION_SEP.join(_quoted(c) for c in columns)


def _quoted(name: str) -> str:
    if name and name == name.strip() and not any(c in name for c in '*×&"\\'):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalize_set_name(name: str, where: str | None = None) -> str:
    """The :func:`set_name` of a set written by a user (e.g. a ``reference`` key): ``×``, ``&`` and
    spaces around the separator are synonyms of ``*``; names are quoted as in gate keys."""
    return set_name(parse_set_key(name, where or f"The attribute set {name!r}"))


_SET_SEPARATORS = "*×&"
_QUOTED = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*')
_BARE = re.compile(r'[^*×&]*')


def parse_set_key(text: str, where: str) -> tuple[str, ...]:
    """The attribute names of the set a gate key names (the part between ``fairness.`` and the
    metric): one name, or an intersection of names joined by ``*``, ``×`` or ``&``.

    Quoting rule: a name that starts with a double quote ends at the next unescaped one and is
    taken verbatim — it may contain ``*``,
    ``×``, ``&``, dots and edge spaces; inside the quotes ``\\"`` is a quote and ``\\\\`` a
    backslash. A name without quotes ends at a separator and loses its edge spaces. In TOML,
    write such a key as a literal (single-quoted) key: ``'fairness."a&b".demographic_parity_difference'``,
    ``'fairness."a&b"*sex.equalized_odds_difference'``.

    ``where`` starts the error message (e.g. ``"The [gate] key 'fairness.x.y'"``).

    Examples
    --------
    >>> parse_set_key("sex × race", "k"), parse_set_key('"a&b"*" c "', "k")
    (('sex', 'race'), ('a&b', ' c '))
    """
    members: list[str] = []
    pos = 0
    while True:
        quoted = _QUOTED.match(text, pos)
        if quoted:
            members.append(re.sub(r"\\(.)", r"\1", quoted.group(1)))
            pos = quoted.end()
        else:
            bare = _BARE.match(text, pos)
            name = bare.group(0).strip()  # type: ignore[union-attr]
            if not name and text[pos:].lstrip().startswith('"'):
                raise InvalidConfigError(f"{where} has an unclosed quote: end the quoted name with \" "
                                         '(README, "Gate keys").')
            if not name:
                raise InvalidConfigError(
                    f"{where} names an empty attribute{' in an intersection' if members else ''}: write "
                    "attribute names joined by *, and quote a name with *, ×, &, quotes or edge spaces in it "
                    "(e.g. '\"a&b\"*sex'; README, \"Gate keys\").")
            members.append(name)
            pos = bare.end()  # type: ignore[union-attr]
        if members.count(members[-1]) > 1:  # a set is its members: "sex*sex" is not "sex"
            raise InvalidConfigError(
                f"{where} names {members[-1]!r} twice: an intersection joins distinct attributes; "
                f"write {members[-1]!r} once.")
        if pos == len(text):
            return tuple(members)
        if text[pos] not in _SET_SEPARATORS:
            raise InvalidConfigError(
                f"{where} has {text[pos]!r} after the attribute name {members[-1]!r}: a quoted name ends "
                "where the next *, ×, & or the key's metric begins; write a quote inside a quoted name as "
                '\\" (README, "Gate keys").')
        pos += 1


def attribute_sets(sensitive: Sequence[str], config: FairnessConfig) -> list[tuple[str, ...]]:
    """Every attribute alone, then the intersections (default: every pair)."""
    singles = [(a,) for a in sensitive]
    if config.intersections is None:
        crosses = list(itertools.combinations(sensitive, 2)) if len(sensitive) >= 2 else []
    else:
        crosses = [tuple(c) for c in config.intersections]
        for combo in crosses:
            for a in combo:
                if a not in sensitive:
                    raise InvalidConfigError(
                        f"The fairness intersection {list(combo)} names {a!r}, which is not a "
                        f"sensitive attribute.{did_you_mean(a, sensitive)} Sensitive: {list(sensitive)}.")
        seen: dict[frozenset[str], tuple[str, ...]] = {}
        for combo in crosses:  # the same groups twice would count one family twice
            if frozenset(combo) in seen:
                raise InvalidConfigError(
                    f"The fairness intersections list {list(combo)} and {list(seen[frozenset(combo)])}, "
                    "which are the same groups. List each intersection once.")
            seen[frozenset(combo)] = combo
    return singles + crosses
