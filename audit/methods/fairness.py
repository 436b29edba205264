"""Group fairness: per-group rates (fairlearn ``MetricFrame``) and the gaps between groups.

Labels are encoded to 0/1 with the declared positive label before fairlearn sees them (with
string labels fairlearn silently reports 0.0 selection rates). A rate whose denominator is empty
in a group (TPR without positives, FPR without negatives) is *undefined*, reported as such with
the reason, and left out of the disparities, never counted as 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import AuditMethod, Finding, MethodConfig, MethodResult, RunContext
from audit.errors import DataValidationError, InvalidConfigError

# name -> (function of (y_true, y_pred) on 0/1 arrays, why it can be undefined)
_BINARY_METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], str | None]] = {}


def _rate(num_mask: Callable[[np.ndarray, np.ndarray], np.ndarray],
          den_mask: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        den = den_mask(np.asarray(y_true), np.asarray(y_pred))
        if not den.any():
            return float("nan")
        return float(np.sum(num_mask(np.asarray(y_true), np.asarray(y_pred)) & den) / np.sum(den))
    return metric


_ALL = lambda t, p: np.ones_like(t, dtype=bool)  # noqa: E731
_BINARY_METRICS.update({
    "base_rate": (_rate(lambda t, p: t == 1, _ALL), None),
    "selection_rate": (_rate(lambda t, p: p == 1, _ALL), None),
    "accuracy": (_rate(lambda t, p: t == p, _ALL), None),
    "tpr": (_rate(lambda t, p: p == 1, lambda t, p: t == 1), "no positive outcomes in the group"),
    "fpr": (_rate(lambda t, p: p == 1, lambda t, p: t == 0), "no negative outcomes in the group"),
    "fnr": (_rate(lambda t, p: p == 0, lambda t, p: t == 1), "no positive outcomes in the group"),
})
METRIC_LABELS = {
    "count": "rows", "base_rate": "base rate", "selection_rate": "selection rate",
    "accuracy": "accuracy", "tpr": "TPR", "fpr": "FPR", "fnr": "FNR",
    "mean_prediction": "mean prediction", "mean_error": "mean error (pred − true)", "mae": "MAE",
}


@dataclass(frozen=True)
class FairnessConfig(MethodConfig):
    """Options: ``min_group_size`` — groups smaller than this are marked too small to judge;
    ``dp_warn`` / ``eo_warn`` — differences above these are named in the summary."""

    min_group_size: int = 30
    dp_warn: float = 0.1
    eo_warn: float = 0.1

    def validate(self) -> None:
        if self.min_group_size < 1:
            raise InvalidConfigError(f"The 'min_group_size' option of fairness must be at least 1. Got {self.min_group_size} instead.")
        if not (0 < self.dp_warn < 1 and 0 < self.eo_warn < 1):
            raise InvalidConfigError("The 'dp_warn' and 'eo_warn' options of fairness must be in (0, 1).")


@dataclass(frozen=True)
class GroupRow:
    group: str
    count: int
    metrics: dict[str, float | None]
    undefined: dict[str, str]  # metric -> why it is undefined for this group
    too_small: bool


@dataclass(frozen=True)
class AttributeResult:
    attribute: str
    groups: tuple[GroupRow, ...]
    disparities: dict[str, float | None]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class FairnessResult(MethodResult):
    task: str
    positive_label: str | None
    metrics: tuple[str, ...]
    attributes: dict[str, AttributeResult]
    min_group_size: int
    labels: dict[str, str]  # metric key -> column heading


class Fairness(AuditMethod[FairnessConfig, FairnessResult]):
    name = "fairness"
    title = "Group fairness"
    requires = frozenset({"predictions"})
    needs_target = True
    Config = FairnessConfig

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: FairnessConfig) -> str | None:
        if not data.spec.sensitive:
            return "no sensitive attributes were named ([data] sensitive)"
        return super().skip_reason(model, data, config)

    def run(self, model: ModelAdapter, data: AuditData, config: FairnessConfig, ctx: RunContext) -> FairnessResult:
        from fairlearn.metrics import MetricFrame

        preds = model.predictions(data)
        y_true = np.asarray(data.y)
        y_pred = np.asarray(preds.labels)
        if data.task == "binary":
            funcs = {k: f for k, (f, _) in _BINARY_METRICS.items()}
        elif data.task == "regression":
            funcs = {"mean_prediction": lambda t, p: float(np.mean(p)),
                     "mean_error": lambda t, p: float(np.mean(p - t)),
                     "mae": lambda t, p: float(np.mean(np.abs(p - t)))}
        else:
            funcs = {"accuracy": _BINARY_METRICS["accuracy"][0]}
            for k, label in enumerate(data.classes or ()):
                funcs[f"selection_rate[{label}]"] = (lambda kk: lambda t, p: float(np.mean(p == kk)))(k)
        attributes: dict[str, AttributeResult] = {}
        for i, attr in enumerate(data.spec.sensitive):
            values = data.sensitive[attr].to_numpy()
            levels = np.unique(values)
            if len(levels) < 2:
                raise DataValidationError(
                    f"The sensitive column {attr!r} has a single group ({levels[0]!r}); fairness "
                    "compares groups, so it needs at least two. Remove it from [data] sensitive.")
            if len(levels) > 200:
                raise DataValidationError(
                    f"The sensitive column {attr!r} has {len(levels)} distinct values; group it into "
                    "fewer bins (e.g. age ranges) before the audit.")
            frame = MetricFrame(metrics=funcs, y_true=y_true, y_pred=y_pred, sensitive_features=values)
            table = frame.by_group
            counts = {str(g): int(np.sum(values == g)) for g in levels}
            rows = []
            for g in table.index:
                metrics = {k: _none_if_nan(table.loc[g, k]) for k in funcs}
                undefined = {k: _BINARY_METRICS[k][1] or "undefined"
                             for k, v in metrics.items() if v is None and k in _BINARY_METRICS}
                rows.append(GroupRow(str(g), counts[str(g)], metrics, undefined,
                                     counts[str(g)] < config.min_group_size))
            attributes[attr] = _disparities(attr, tuple(rows), data.task, config)
            ctx.progress(i + 1, len(data.spec.sensitive))
        positive = data.classes[1] if data.task == "binary" and data.classes else None
        labels = {k: METRIC_LABELS.get(k, k.replace("_", " ")) for k in funcs}
        return FairnessResult(data.task, positive, tuple(funcs), attributes, config.min_group_size, labels)

    def findings(self, result: FairnessResult, config: FairnessConfig) -> list[Finding]:
        out = []
        for attr, res in result.attributes.items():
            dp = res.disparities.get("demographic_parity_difference")
            eo = res.disparities.get("equalized_odds_difference")
            if dp is not None and dp > config.dp_warn:
                out.append(Finding("warning", f"Selection rates differ by {dp:.3f} between groups of "
                                              f"{attr!r} (demographic parity difference; point estimate)."))
            if eo is not None and eo > config.eo_warn:
                out.append(Finding("warning", f"Error rates differ by {eo:.3f} between groups of {attr!r} "
                                              "(equalized odds difference; point estimate)."))
            small = [g.group for g in res.groups if g.too_small]
            if small:
                out.append(Finding("info", f"{len(small)} group(s) of {attr!r} have fewer than "
                                           f"{result.min_group_size} rows and are too small to judge: "
                                           f"{', '.join(small[:5])}."))
        return out

    def figures(self, result: FairnessResult, data: AuditData) -> dict[str, Any]:
        if result.task != "binary":
            return {}
        from audit.core.plots import PALETTE, new_figure

        figs = {}
        shown = ("selection_rate", "tpr", "fpr")
        for attr, res in result.attributes.items():
            groups = [g for g in res.groups]
            fig, ax = new_figure(6.5, 0.6 + 0.32 * len(groups) * 1.2)
            height = 0.8 / len(shown)
            for k, metric in enumerate(shown):
                vals = [g.metrics.get(metric) for g in groups]
                ys = np.arange(len(groups)) + k * height
                ax.barh(ys, [v if v is not None else 0 for v in vals], height=height,
                        color=PALETTE[k], label=METRIC_LABELS[metric])
            ax.set_yticks(np.arange(len(groups)) + height)
            ax.set_yticklabels([f"{g.group} (n={g.count:,})" for g in groups])
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.set_xlabel("rate")
            ax.set_title(f"Rates by {attr}")
            ax.legend(frameon=False, fontsize=7, loc="lower right")
            figs[attr] = fig
        return figs


def _none_if_nan(x: Any) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else x


def _disparities(attr: str, rows: tuple[GroupRow, ...], task: str,
                 config: FairnessConfig) -> AttributeResult:
    """Max–min differences and min/max ratios over the groups large enough to judge."""
    judged = [r for r in rows if not r.too_small]
    notes = []
    if len(judged) < 2:
        notes.append(f"Fewer than two groups of {attr!r} have at least {config.min_group_size} rows; "
                     "no disparity is computed.")
        return AttributeResult(attr, rows, {}, tuple(notes))

    def spread(metric: str) -> tuple[float | None, float | None]:
        vals = [r.metrics.get(metric) for r in judged]
        missing = [r.group for r, v in zip(judged, vals, strict=True) if v is None]
        if missing:
            notes.append(f"{METRIC_LABELS.get(metric, metric)} is undefined for {', '.join(missing)} "
                         "and left out of its disparity.")
        vals = [v for v in vals if v is not None]
        if len(vals) < 2:
            return None, None
        hi, lo = max(vals), min(vals)
        return hi - lo, (lo / hi if hi > 0 else None)

    out: dict[str, float | None] = {}
    if task == "binary":
        out["demographic_parity_difference"], out["demographic_parity_ratio"] = spread("selection_rate")
        tpr_d, tpr_r = spread("tpr")
        fpr_d, fpr_r = spread("fpr")
        out["equal_opportunity_difference"], out["equal_opportunity_ratio"] = tpr_d, tpr_r
        out["equalized_odds_difference"] = None if tpr_d is None or fpr_d is None else max(tpr_d, fpr_d)
        out["equalized_odds_ratio"] = None if tpr_r is None or fpr_r is None else min(tpr_r, fpr_r)
        out["accuracy_difference"], _ = spread("accuracy")
    elif task == "regression":
        out["mean_prediction_difference"], _ = spread("mean_prediction")
        out["mae_difference"], _ = spread("mae")
    else:
        out["accuracy_difference"], _ = spread("accuracy")
    return AttributeResult(attr, rows, out, tuple(dict.fromkeys(notes)))
