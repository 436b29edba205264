"""The fairness method: runs the task analyses over every attribute set and words the findings."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import AuditMethod, Finding, RunContext
from audit.errors import DataValidationError, InvalidConfigError, did_you_mean
from audit.methods.fairness.binary import _analyse_binary, auc_gap_method
from audit.methods.fairness.config import (
    METRIC_LABELS,
    RATE_DISPARITIES,
    FairnessConfig,
    attribute_sets,
    normalize_set_name,
    parse_set_key,
    set_name,
)
from audit.methods.fairness.figures import figures
from audit.methods.fairness.groups import check_sensitive, group_values, intersection_too_large, resolve_favourable
from audit.methods.fairness.multiclass import _analyse_multiclass
from audit.methods.fairness.regression import _analyse_regression
from audit.methods.fairness.results import (
    RAW_ONLY,
    SIGNIFICANT,
    AttributeResult,
    FairnessResult,
    test_sentence,
)
from audit.stats.bootstrap import BOOTSTRAP_DISPARITY, group_codes, weighted_auc
from audit.stats.counts import GroupTable


def _exact_auc(scores: np.ndarray, y: np.ndarray, codes: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Each judged group's AUC from its rows (ties count ½); NaN for groups too small to judge."""
    out = np.full(small.size, np.nan)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(small.size + 1))
    for g in np.flatnonzero(~small):
        rows = order[bounds[g]:bounds[g + 1]]
        out[g] = weighted_auc(scores[rows], y[rows], np.ones(rows.size))
    return out


class Fairness(AuditMethod[FairnessConfig, FairnessResult]):
    """Group fairness audit (see the module docstring)."""

    name = "fairness"
    title = "Group fairness"
    requires = frozenset({"predictions"})
    needs_target = True
    modalities = frozenset({"tabular", "image", "sequence"})  # uses only labels and groups
    Config = FairnessConfig
    uses_torch = False  # numpy, fairlearn and scikit-learn only
    from_counts = True  # binary and multiclass: computed from count tables (streamed data too)

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: FairnessConfig) -> str | None:
        if not data.spec.sensitive:
            return "no sensitive attributes were named ([data] sensitive)"
        return super().skip_reason(model, data, config)

    def run(self, model: ModelAdapter, data: AuditData, config: FairnessConfig, ctx: RunContext) -> FairnessResult:
        streamed = getattr(data, "streamed", None)
        y_true = y_pred = scores = None
        if streamed is None:
            preds = model.predictions(data)
            y_true = np.asarray(data.y)
            y_pred = np.asarray(preds.labels)
            if data.task == "binary" and preds.scores is not None:
                scores = np.asarray(preds.scores, dtype=float).reshape(-1)
            if data.task == "binary":
                y_pred = y_pred.astype(np.int64)
                if not set(np.unique(y_pred)) <= {0, 1}:
                    raise DataValidationError("Binary predictions must be 0/1 class indices after encoding.")
        elif streamed.n_bins and streamed.n_bins != config.score_bins:
            raise InvalidConfigError(f"The data were counted with {streamed.n_bins} score bins, not the "
                                     f"fairness option score_bins = {config.score_bins}.")
        check_sensitive(data, config)
        favourable, favourable_label = resolve_favourable(data, config)
        sets = attribute_sets(data.spec.sensitive, config)
        names = [set_name(s) for s in sets]
        for key in config.reference:
            if normalize_set_name(key, f"The fairness 'reference' key {key!r}") not in names:
                raise InvalidConfigError(
                    f"The fairness 'reference' names {key!r}, which is not an attribute or "
                    f"intersection.{did_you_mean(key, names)} Choices: {', '.join(names)}.")
        refs = {normalize_set_name(k, f"The fairness 'reference' key {k!r}"): v
                for k, v in config.reference.items()}
        K = 2 if data.task == "binary" else len(data.classes or ())

        attributes: dict[str, AttributeResult] = {}
        skipped: dict[str, str] = {}
        for i, cols in enumerate(sets):
            ref = refs.get(set_name(cols))
            exact_auc = values = table = None
            if streamed is not None:  # the count tables are all there is (audit.core.stream)
                key = tuple(cols)  # the streamed tables are keyed by columns, not by a spelling
                too_many = (f"{streamed.too_many[key]:,} groups, more than max_groups = "
                            f"{config.max_groups}" if key in streamed.too_many else None)
                table = streamed.tables.get(key)  # None when too many groups: skipped below
            else:
                values = group_values(data, cols)
                too_many = intersection_too_large(cols, values, config, ref is not None, data.source)
            if too_many:
                skipped[set_name(cols)] = too_many
                ctx.progress(i + 1, len(sets))
                continue
            if streamed is None and data.task != "regression":
                levels, codes = group_codes(values)
                table = GroupTable.from_rows(levels, codes, y_true, y_pred, scores, n_classes=K,
                                             n_bins=config.score_bins)
                if scores is not None:  # the rows are at hand: exact AUC, not the histogram's
                    exact_auc = _exact_auc(scores, y_true, codes, table.counts < config.min_group_size)
            if data.task == "binary":
                res = _analyse_binary(cols, table, config, ref, ctx.rng, exact_auc=exact_auc,
                                      favourable=favourable, favourable_label=favourable_label)
            elif data.task == "regression":
                res = _analyse_regression(cols, values, y_true.astype(float),
                                          y_pred.astype(float), config, ref, ctx.rng)
            else:
                res = _analyse_multiclass(cols, table, K, data.classes or (), config, ref)
            attributes[set_name(cols)] = res
            ctx.progress(i + 1, len(sets))
        has_scores = scores is not None if streamed is None else streamed.has_scores
        # one test per family (attribute × null hypothesis): a difference, its ratio and the
        # disparate-impact ratio test the same hypothesis
        n_tests = len({(a, d.family) for a, res in attributes.items()
                       for d in res.disparities.values() if d.p_value is not None})

        if data.task == "binary":
            metrics = (("base_rate", "selection_rate")
                       + (("favourable_rate",) if favourable == "negative" else ())
                       + ("accuracy", "balanced_accuracy", "tpr", "fpr", "fnr", "tnr", "ppv", "npv")
                       + (("auc", "ece") if has_scores else ()))
        elif data.task == "regression":
            metrics = ("mean_prediction", "mean_error", "mae")
        else:
            metrics = ("accuracy",) + tuple(f"selection_rate[{c}]" for c in data.classes or ())
        labels = {k: METRIC_LABELS.get(k, k.replace("_", " ")) for k in metrics}
        if "favourable_rate" in labels:
            labels["favourable_rate"] = f"favourable outcome rate ({favourable_label})"
        notes = []
        if data.task == "binary" and not has_scores:
            notes.append("The predictions are labels without scores, so AUC, calibration, threshold "
                         "curves and the threshold what-if are not available.")
        positive = data.classes[1] if data.task == "binary" and data.classes else None
        return FairnessResult(
            task=data.task, positive_label=positive, metrics=metrics, labels=labels,
            attributes=attributes, has_scores=has_scores, n_tests=n_tests, notes=tuple(notes),
            threshold=float(model.threshold), skipped=skipped, favourable=favourable,
            favourable_label=favourable_label,
            rate_disparities=RATE_DISPARITIES if data.task == "binary" else (),
            auc_error_bound=max((a.auc_error_bound for a in attributes.values()
                                 if a.auc_error_bound is not None), default=None),
            gap_interval=(auc_gap_method(streamed=streamed is not None) if data.task == "binary" and has_scores
                          else BOOTSTRAP_DISPARITY.format(B=config.n_bootstrap)
                          if data.task == "regression" and config.n_bootstrap else None))

    def plan(self, model: ModelAdapter, data: AuditData, config: FairnessConfig, ctx: RunContext) -> Any:
        """One pass of the model over the rows; the rest is counting and resampling labels. A
        streamed audit has its count tables already: no model rows at all."""
        from audit.core.cost import Plan

        if getattr(data, "streamed", None) is not None:
            return Plan(f"count tables of {data.n_rows:,} rows, {config.n_bootstrap:,} bootstrap resamples")
        return Plan(f"predictions on {data.n_rows:,} rows, {config.n_bootstrap:,} bootstrap resamples",
                    model_rows=data.n_rows, model_calls=1)

    def findings(self, result: FairnessResult, config: FairnessConfig) -> list[Finding]:
        out = []
        conf = f"{config.confidence:.0%}"
        alpha = 1 - config.confidence
        for res in result.attributes.values():
            if result.task == "regression":
                out += _regression_findings(res, config)
            for name, limit in (("demographic_parity_difference", config.dp_warn),
                                ("equalized_odds_difference", config.eo_warn)):
                d = res.disparities.get(name)
                if d is None or d.value is None:
                    continue
                e = d.estimate
                what = "Selection rates" if name.startswith("demographic") else "Error rates"
                gap = "selection-rate gap" if name.startswith("demographic") else "error-rate gap"
                ci = (f"{conf} CI {e.lower:.3f}–{e.upper:.3f}" if e.lower is not None and e.upper is not None
                      else "no interval")
                test = test_sentence(d, alpha)
                if d.significance == SIGNIFICANT and e.lower is not None and e.lower <= 0:
                    test += (f" The interval still reaches 0: its lower bound errs at most {alpha / 2:.2%}, "
                             f"a stricter standard than this two-sided test at {alpha:.3g}.")
                if e.lower is not None and e.lower > limit:
                    # lower > limit >= 0 implies p_adjusted < alpha: the same intervals decide
                    out.append(Finding("warning", f"{what} differ between groups of {res.title}: "
                                                  f"{d.label} {e.value:.3f} ({ci}), clearly above {limit}: "
                                                  f"the whole interval lies above it. {test}"))
                elif e.value > limit:
                    # a point estimate above the limit alone says nothing of a difference (a fair
                    # 2 x 30 model gets there 37% of the time): say observed, not "differ"
                    out.append(Finding("info", f"The observed {gap} between groups of {res.title} is "
                                               f"{e.value:.3f} ({d.label}, point estimate; {ci}); above "
                                               f"{limit} as a point estimate, but the interval reaches "
                                               f"below it. {test}"))
            if res.four_fifths_fail:
                rate = ("selection rate" if result.favourable_label is None else
                        f"rate of the favourable outcome ({result.favourable_label})")
                versus = (f"the reference group's ({res.reference})" if res.reference is not None
                          else "the group with the highest rate's")  # as the report's table says
                out.append(Finding("warning", f"Four-fifths rule: the {rate} of "
                                              f"{', '.join(res.four_fifths_fail[:5])} ({res.title}) is below "
                                              f"80% of {versus} (point estimate)."))
            small = [g.group for g in res.groups if g.too_small]
            if small:
                out.append(Finding("info", f"{len(small)} group(s) of {res.title} have fewer than "
                                           f"{config.min_group_size} rows and are too small to judge: "
                                           f"{', '.join(small[:5])}{' …' if len(small) > 5 else ''}."))
        if result.skipped:
            names = [" × ".join(parse_set_key(k, f"The intersection {k!r}")) for k in result.skipped]
            out.append(Finding("warning", f"{len(names)} intersection(s) not analysed, each with more "
                                          f"groups than max_groups = {config.max_groups}: "
                                          f"{', '.join(names[:5])}{' …' if len(names) > 5 else ''}. Bin "
                                          "the attributes into fewer groups, raise max_groups, or "
                                          "list the intersections to analyse."))
        return out

    def figures(self, result: FairnessResult, data: AuditData) -> dict[str, Any]:
        return figures(result, data)


#: What each regression disparity compares, in the words of a finding.
_REGRESSION_WHAT = {"mean_prediction_difference": ("Mean predictions", "mean-prediction gap"),
                    "mean_error_difference": ("Mean errors (prediction − true value)",
                                              "mean-error gap (prediction − true value)"),
                    "mae_difference": ("Mean absolute errors", "mean-absolute-error gap")}


#: Judged groups below this size make the regression test's level approximate (see the caveat).
SMALL_FOR_MEANS = 100


def _skew_caveat(res: AttributeResult) -> str:
    """The permutation test's level is exact for identical error distributions only; with a small
    group whose errors are skewed, false warnings reached 0.135 at a stated 5% (outside simulation:
    30 log-normal rows beside 1,000 normal ones with the same mean error and MAE)."""
    small = [g.group for g in res.groups if not g.too_small and g.count < SMALL_FOR_MEANS]
    if not small:
        return ""
    return (f" The test shuffles group labels, so its stated level is exact only when the groups' "
            f"errors have the same distribution; with a group under {SMALL_FOR_MEANS} rows "
            f"({', '.join(small[:3])}) whose errors are skewed, false warnings reached 0.135 in "
            "simulation: confirm on more rows.")


def _regression_findings(res: AttributeResult, config: FairnessConfig) -> list[Finding]:
    """A regression disparity whose permutation test is significant after Holm (at ``alpha``)
    is a warning; one whose raw p alone is small is information. (Before, only the binary
    disparities were read here, so a regression gap never made a finding.)"""
    out = []
    conf = f"{config.confidence:.0%}"
    for name, (what, gap) in _REGRESSION_WHAT.items():
        d = res.disparities.get(name)
        if d is None or d.value is None or d.significance not in (SIGNIFICANT, RAW_ONLY):
            continue
        e = d.estimate
        ci = (f"{conf} bootstrap CI {e.lower:.3g}–{e.upper:.3g}" if e.lower is not None and e.upper is not None
              else "no interval")
        if d.significance == SIGNIFICANT:
            out.append(Finding("warning", f"{what} differ between groups of {res.title}: {d.label} "
                                          f"{e.value:.3g} ({ci}). {test_sentence(d, config.alpha)}"
                                          f"{_skew_caveat(res)}"))
        else:  # not significant after correction: no claim that the groups differ
            out.append(Finding("info", f"The observed {gap} between groups of {res.title} is "
                                       f"{e.value:.3g} ({d.label}, point estimate; {ci}). "
                                       f"{test_sentence(d, config.alpha)}"))
    return out
