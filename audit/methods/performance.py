"""Overall performance of the model on the audited rows, every number with its interval.

- **binary**: accuracy (Clopper–Pearson, exact: coverage at least nominal for every n and
  accuracy, 1.0 included); balanced accuracy = (1 + TPR − FPR) / 2, from Newcombe's MOVER
  interval of TPR − FPR (:mod:`audit.stats.proportions`, the fairness method's machinery); with
  scores also ROC AUC, with the Clopper–Pearson interval of the AUC read as a proportion of
  min(positives, negatives) rows (:func:`audit.stats.auc.auc_interval`: van Dantzig's bound on
  its variance, so it holds its level near AUC 1 and with 5 rows of a class),
  log loss and Brier score, each with a percentile bootstrap interval (``n_bootstrap`` resamples
  of the rows, drawn as multinomial counts over compressed score cells,
  :func:`audit.stats.bootstrap.score_cells`), and the
  expected calibration error (ECE, equal-width score bins, ``calibration_bins``) with no
  interval but a Monte Carlo test of calibration (:mod:`audit.stats.calibration`: binned ECE
  is biased upward, so an interval around it would not contain the true ECE);
- **multiclass**: accuracy (Clopper–Pearson); balanced accuracy (mean recall over the classes
  present; percentile bootstrap of the K × K confusion counts, which is the row bootstrap
  exactly); with class probabilities also macro one-vs-rest AUC, log loss, multiclass Brier
  score (Σ_k (p_k − 1{y = k})², from 0 to 2), percentile bootstrap of rows, and top-label ECE
  with the same calibration test (the top class's probability against "top class is right");
- **regression**: R² (1 − mean squared error / variance of the outcome on these rows), RMSE,
  MAE and mean error (prediction − true), percentile bootstrap of rows.

Decisions-only audits (labels without scores) get the label metrics; the score metrics are
listed as "needs scores" rather than left out. Log loss clips probabilities to
[1e-15, 1 − 1e-15] (a confident wrong 0 or 1 would otherwise be infinite).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import (AuditMethod, Constraint, Either, Finding, Interval, MethodConfig,
                               MethodResult, Options, RunContext)
from audit.core.results import Estimate
from audit.stats.auc import AUC_INTERVAL, auc_interval, score_table
from audit.stats.auc import MIN_PER_CLASS as AUC_MIN_PER_CLASS  # rows of a class its interval was simulated from
from audit.stats.bootstrap import (
    bootstrap_cells,
    bootstrap_means,
    confusion_cells,
    percentile_interval,
    row_weights,
    score_cells,
    weighted_auc,
    weighted_calibration,
)
from audit.stats.calibration import CalibrationTest, calibration_test
from audit.stats.proportions import MOVER_LIMITS, group_interval, newcombe_difference

#: Probabilities are clipped to [EPS, 1 − EPS] for the log loss.
EPS = 1e-15
NEEDS_SCORES = "needs scores (probabilities); these predictions are labels only"
#: Bootstrap intervals with fewer rows than this in a class (or this many times 5 rows in all)
#: are marked unreliable: simulated 95% coverage 0.67-0.74 with 5-6 positives, 0.25 (AUC) and
#: 0.63-0.67 (log loss, Brier) at 30 rows.
MIN_PER_CLASS = 10
EXACT = "Clopper–Pearson (exact)"
MOVER = "Newcombe MOVER interval of TPR − FPR (Clopper–Pearson limits), mapped to (1 + d) / 2"
#: The metrics with an interval, per task: what a ``[gate]`` rule ``"performance.<metric>"`` may
#: name (ECE has no interval: binned ECE is biased upward; its calibration test is in the report).
INTERVAL_METRICS = {"binary": ("accuracy", "balanced_accuracy", "auc", "log_loss", "brier"),
                    "multiclass": ("accuracy", "balanced_accuracy", "auc", "log_loss", "brier"),
                    "regression": ("r2", "rmse", "mae", "mean_error")}


@dataclass(frozen=True)
class PerformanceConfig(MethodConfig):
    """Options of the performance method.

    confidence : level of every interval (two-sided).
    n_bootstrap : bootstrap resamples for the metrics without an exact interval, and simulated
        calibrated outcome vectors of the calibration test; 0 disables both (accuracy and
        balanced accuracy keep their intervals).
    calibration_bins : equal-width score bins of the expected calibration error.
    """

    confidence: float = 0.95
    n_bootstrap: int = 1000
    calibration_bins: int = 10

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "n_bootstrap": Either((Options((0,)), Interval(100, 100_000)),
                              "0 computes no bootstrap intervals; each resample costs a pass over the data"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"n_boot": "n_bootstrap"}


@dataclass(frozen=True)
class PerformanceResult(MethodResult):
    """The overall metrics, each an :class:`~audit.core.results.Estimate` (its interval's level
    and method on it; ``undefined_reason`` when it has no value), with what only a metric
    table needs beside them.

    labels : metric -> its name for a reader.
    unreliable : metric -> why its interval is unreliable (few rows of a class: simulated
        coverage far below nominal); metrics with a trustworthy interval are absent.
    metric_notes : metric -> what stands in for an interval it cannot have (the expected
        calibration error's comparison with a calibrated model).
    score_metrics : the metrics that need scores (probabilities), computed or not.
    """

    task: str
    n_rows: int
    confidence: float
    n_bootstrap: int
    calibration_bins: int
    has_scores: bool
    metrics: dict[str, Estimate]
    labels: dict[str, str]
    unreliable: dict[str, str] = field(default_factory=dict)
    metric_notes: dict[str, str] = field(default_factory=dict)
    score_metrics: tuple[str, ...] = ()
    positive_label: str | None = None
    notes: tuple[str, ...] = ()
    #: Monte Carlo test of calibration behind the ECE row (None without scores or n_bootstrap = 0).
    calibration: CalibrationTest | None = None
    #: metric -> its interval at another confidence (the gate's Bonferroni correction across rules)
    _bounds: Mapping[str, Callable[[float], tuple[float | None, float | None]]] = field(default_factory=dict)

    def interval_at(self, metric: str, confidence: float) -> tuple[float | None, float | None]:
        """The interval of ``metric`` at another ``confidence``, built the same way (exact,
        MOVER or the same bootstrap resamples); ``(None, None)`` when it has none."""
        at = self._bounds.get(metric)
        return at(confidence) if at is not None else (None, None)


@dataclass
class _Table:
    """The metrics as they are computed, before they become a result."""

    confidence: float
    metrics: dict[str, Estimate] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    unreliable: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    score_metrics: list[str] = field(default_factory=list)
    bounds: dict[str, Callable[[float], tuple[float | None, float | None]]] = field(default_factory=dict)

    def add(self, key: str, label: str, value: float | None, interval: Callable[[float], tuple[Any, Any]] | None = None,
            method: str | None = None, *, undefined: str | None = None, unreliable: str | None = None,
            needs_scores: bool = False) -> None:
        """``interval(confidence)``: the metric's (lower, upper) at any level (None: no interval)."""
        if interval is not None:
            self.bounds[key] = lambda c: tuple(_f(v) for v in interval(c))  # type: ignore[return-value]
        lower, upper = self.bounds[key](self.confidence) if interval is not None else (None, None)
        e = Estimate.of(value, lower, upper, level=self.confidence, method=method, undefined_reason=undefined)
        self.metrics[key] = e
        self.labels[key] = label
        if unreliable is not None and e.has_interval:
            self.unreliable[key] = unreliable
        if needs_scores:
            self.score_metrics.append(key)


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


class Performance(AuditMethod[PerformanceConfig, PerformanceResult]):
    """Overall performance with intervals (see the module docstring)."""

    name = "performance"
    uses_torch = False
    title = "Overall performance"
    requires = frozenset({"predictions"})
    needs_target = True
    modalities = frozenset({"tabular", "image", "sequence"})  # uses only labels and scores
    Config = PerformanceConfig

    def run(self, model: ModelAdapter, data: AuditData, config: PerformanceConfig,
            ctx: RunContext) -> PerformanceResult:
        preds = model.predictions(data)
        y = np.asarray(data.y)
        yhat = np.asarray(preds.labels)
        scores = None if preds.scores is None else np.asarray(preds.scores, dtype=float)
        cal = None
        table = _Table(config.confidence)
        if data.task == "regression":
            _regression(table, y.astype(float), yhat.astype(float), config, ctx.rng)
        elif data.task == "binary":
            cal = _binary(table, y.astype(np.int64), yhat.astype(np.int64),
                          None if scores is None else scores.reshape(-1), config, ctx.rng)
        else:
            cal = _multiclass(table, y.astype(np.int64), yhat.astype(np.int64), len(data.classes or ()),
                              scores, config, ctx.rng)
        notes = []
        if data.task != "regression" and scores is None:
            notes.append("The predictions are labels without scores, so AUC, log loss, Brier score "
                         "and calibration error cannot be computed (listed as needing scores).")
        positive = str(data.classes[1]) if data.task == "binary" and data.classes else None
        return PerformanceResult(data.task, int(len(y)), config.confidence, config.n_bootstrap,
                                 config.calibration_bins, scores is not None, table.metrics, table.labels,
                                 table.unreliable, table.notes, tuple(table.score_metrics), positive,
                                 tuple(notes), cal, table.bounds)

    def figures(self, result: PerformanceResult, data: AuditData) -> dict[str, Any]:
        """The metrics on a 0–1 scale (R² for regression) as points with their intervals."""
        from audit.core.plots import NEGATIVE, POSITIVE, new_figure

        keys = ("r2",) if result.task == "regression" else ("accuracy", "balanced_accuracy", "auc", "brier")
        shown = [k for k in keys if k in result.metrics and result.metrics[k].defined]
        if not shown:
            return {}
        fig, ax = new_figure(6.5, 0.5 + 0.45 * len(shown))
        for i, k in enumerate(shown):
            m = result.metrics[k]
            if m.has_interval:
                ax.plot([m.lower, m.upper], [i, i], color=POSITIVE if k in result.unreliable else NEGATIVE, lw=2)
            ax.plot([m.value], [i], "o", color="black", ms=4)
        ax.set_yticks(range(len(shown)), [result.labels[k] for k in shown])
        ax.invert_yaxis()
        low = min(0.0, *(result.metrics[k].lower if result.metrics[k].has_interval else result.metrics[k].value
                         for k in shown))
        ax.set_xlim(low, 1.0)
        ax.set_xlabel(f"value and {result.confidence:.0%} interval (orange: few rows of a class, unreliable)")
        return {"metrics": fig}

    def findings(self, result: PerformanceResult, config: PerformanceConfig) -> list[Finding]:
        keys = ("r2", "rmse") if result.task == "regression" else ("accuracy", "auc")
        parts = []
        for k in keys:
            m = result.metrics.get(k)
            if m is None or m.value is None:
                continue
            ci = (f" ({m.level:.0%} CI {m.lower:.3f}–{m.upper:.3f}"
                  f"{'; unreliable: too few rows of a class' if k in result.unreliable else ''})"
                  if m.has_interval else "")
            parts.append(f"{result.labels[k]} {m.value:.3f}{ci}")
        if not parts:
            return []
        out = [Finding("info", f"Overall performance on the {result.n_rows:,} audited rows: "
                               f"{'; '.join(parts)}.")]
        auc = result.metrics.get("auc")
        if auc is not None and auc.value is not None and auc.upper is not None and auc.upper < 0.5:
            out.append(Finding("alert", f"The scores rank the rows worse than chance (ROC AUC {auc.value:.3f}, "
                                        f"whole interval below 0.5): the model's outputs are probably read "
                                        f"the wrong way round — check `positive_label`, `[model] classes` "
                                        f"or what the model outputs."))
        return out


# --------------------------------------------------------------------------------------------


def _percentile(samples: np.ndarray | None) -> Callable[[float], tuple[float, float]] | None:
    """The percentile interval of ``samples`` at any level (None without resamples)."""
    if samples is None:
        return None
    return lambda level: percentile_interval(np.asarray(samples, dtype=float), level)


def _exact(k: int, n: int) -> Callable[[float], tuple[float, float]]:
    """The Clopper–Pearson interval of the proportion k / n at any level."""
    def at(level: float) -> tuple[float, float]:
        lo, hi = group_interval(np.array([k]), np.array([n]), level, "clopper-pearson")
        return lo[0], hi[0]
    return at


def _boot_text(B: int) -> str:
    return f"percentile bootstrap, {B:,} resamples of the rows"


def _binary(out: _Table, y: np.ndarray, yhat: np.ndarray, s: np.ndarray | None, config: PerformanceConfig,
            rng: np.random.Generator) -> CalibrationTest | None:
    n = y.size
    tn, fp, fn, tp = (int(v) for v in confusion_cells(y, yhat, np.zeros(n, dtype=np.int64), 1)[0])
    out.add("accuracy", "accuracy", _f((tp + tn) / n), _exact(tp + tn, n), EXACT)
    pos, neg = tp + fn, tn + fp
    if pos and neg:
        def mover(level: float) -> tuple[float, float]:
            d_lo, d_hi = newcombe_difference(np.array([tp]), np.array([pos]), np.array([fp]), np.array([neg]),
                                             level, limits=MOVER_LIMITS)
            return (1 + d_lo[0]) / 2, (1 + d_hi[0]) / 2

        out.add("balanced_accuracy", "balanced accuracy", _f((1 + tp / pos - fp / neg) / 2), mover, MOVER)
    else:
        out.add("balanced_accuracy", "balanced accuracy", None,
                undefined="needs both positive and negative outcomes")
    labels = {"auc": "ROC AUC", "log_loss": "log loss", "brier": "Brier score",
              "ece": f"expected calibration error ({config.calibration_bins} equal-width bins)"}
    if s is None:
        for k, v in labels.items():
            out.add(k, v, None, undefined=NEEDS_SCORES, needs_scores=True)
        return None
    p = np.clip(s, EPS, 1 - EPS)
    losses = np.column_stack([-(y * np.log(p) + (1 - y) * np.log1p(-p)), (s - y) ** 2])
    ones = np.ones(n)
    point = {"auc": _f(weighted_auc(s, y, ones)),
             "log_loss": _f(losses[:, 0].mean()), "brier": _f(losses[:, 1].mean()),
             "ece": _f(weighted_calibration(s, y, ones, config.calibration_bins)[0][0])}
    # AUC: an interval from the distinct scores' count table, no resampling
    table = score_table(s, y)
    out.add("auc", labels.pop("auc"), point["auc"],
            (lambda level: auc_interval(table, level)[1:]) if point["auc"] is not None else None,
            AUC_INTERVAL, undefined="needs both positive and negative outcomes",
            unreliable=_few_rows_auc(min(pos, neg)),
            needs_scores=True)
    boot: dict[str, np.ndarray | None] = dict.fromkeys(labels)
    B = config.n_bootstrap
    if B:
        # a row resample is a multinomial draw over the compressed score cells (each cell's
        # rows share its mean loss)
        counts, _, _, sums = score_cells(s, y, n_bins=config.calibration_bins, n_fine=1024,
                                          values=losses)
        with np.errstate(all="ignore"):
            mean_loss = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], 0.0)
        flat = counts.reshape(-1)
        draws = rng.multinomial(n, flat / n, size=B).reshape(B, *counts.shape)
        loss_b = np.einsum("bkc,kcm->bm", draws, mean_loss) / n
        boot["log_loss"], boot["brier"] = loss_b[:, 0], loss_b[:, 1]
    caution = _few_rows(n, min(pos, neg), "positive or negative outcomes")
    for k, label in labels.items():
        out.add(k, label, point[k], _percentile(boot[k]), _boot_text(B),
                undefined="needs both positive and negative outcomes", unreliable=caution, needs_scores=True)
    return _calibration_test(out, s, y, config, rng)


def _few_rows(n: int, smallest_class: int, what: str) -> str | None:
    if smallest_class < MIN_PER_CLASS or n < 5 * MIN_PER_CLASS:
        return (f"unreliable: {n:,} rows, {smallest_class:,} in the smallest class of {what} (the "
                f"bootstrap needs at least {MIN_PER_CLASS} per class and {5 * MIN_PER_CLASS} rows; "
                "simulated coverage of a 95% interval fell to 0.25-0.74 below that)")
    return None


def _few_rows_auc(smallest_class: int) -> str | None:
    if smallest_class < AUC_MIN_PER_CLASS:
        return (f"unreliable: {smallest_class:,} in the smallest class of positive or negative outcomes "
                f"(the interval's error rates were simulated from {AUC_MIN_PER_CLASS} rows of each class "
                "upwards)")
    return None


def _calibration_test(out: _Table, s: np.ndarray, hit: np.ndarray, config: PerformanceConfig,
                      rng: np.random.Generator) -> CalibrationTest | None:
    # binned ECE is biased upward: no interval around it, a test against calibrated outcomes
    if not config.n_bootstrap:
        return None
    test = calibration_test(s, hit, n_bins=config.calibration_bins, n_sim=config.n_bootstrap, rng=rng)
    out.notes["ece"] = (f"no interval (binned ECE is biased upward); a calibrated model with these scores "
                        f"gives {test.null_mean:.3f} on average (95th percentile {test.null_q95:.3f}); "
                        f"Monte Carlo p = {test.p_value:.3g} for \"the model is calibrated\" "
                        f"({test.n_sim:,} simulations{test.note})")
    return test


def _multiclass(out: _Table, y: np.ndarray, yhat: np.ndarray, K: int, P: np.ndarray | None,
                config: PerformanceConfig, rng: np.random.Generator) -> CalibrationTest | None:
    n = y.size
    K = max(K, int(max(y.max(initial=0), yhat.max(initial=0))) + 1)
    cells = confusion_cells(y, yhat, np.zeros(n, dtype=np.int64), 1, K)
    correct = int(np.sum(y == yhat))
    out.add("accuracy", "accuracy", _f(correct / n), _exact(correct, n), EXACT)

    def balanced(cc: np.ndarray) -> np.ndarray:
        m = cc.reshape(*cc.shape[:-1], K, K).astype(float)
        support = m.sum(-1)
        with np.errstate(all="ignore"):
            recall = np.diagonal(m, axis1=-2, axis2=-1) / support
        present = support[..., :] > 0
        return np.where(present, recall, 0).sum(-1) / np.maximum(present.sum(-1), 1)

    B = config.n_bootstrap
    ba_boot = balanced(bootstrap_cells(cells, B, rng)[:, 0]) if B else None
    out.add("balanced_accuracy", "balanced accuracy (mean recall)", _f(balanced(cells[0])), _percentile(ba_boot),
            "percentile bootstrap of the confusion counts")
    labels = {"auc": "macro one-vs-rest ROC AUC", "log_loss": "log loss", "brier": "Brier score (multiclass)",
              "ece": f"top-label expected calibration error ({config.calibration_bins} equal-width bins)"}
    if P is None:
        for k, v in labels.items():
            out.add(k, v, None, undefined=NEEDS_SCORES, needs_scores=True)
        return None
    P = np.asarray(P, dtype=float).reshape(n, -1)
    onehot = np.eye(P.shape[1])[y]
    losses = np.column_stack([-np.log(np.clip(P[np.arange(n), y], EPS, 1.0)),
                              ((P - onehot) ** 2).sum(axis=1)])
    conf_top = P.max(axis=1)
    hit = (P.argmax(axis=1) == y).astype(float)
    classes = [k for k in range(P.shape[1]) if 0 < onehot[:, k].sum() < n]
    ones = np.ones(n)

    def auc_macro(w: np.ndarray) -> np.ndarray:
        return np.mean([weighted_auc(P[:, k], onehot[:, k], w) for k in classes], axis=0)

    point = {"auc": _f(auc_macro(ones)) if classes else None, "log_loss": _f(losses[:, 0].mean()),
             "brier": _f(losses[:, 1].mean()),
             "ece": _f(weighted_calibration(conf_top, hit, ones, config.calibration_bins)[0][0])}
    boot: dict[str, np.ndarray | None] = dict.fromkeys(labels)
    if B:
        lb = bootstrap_means(losses, B, rng)
        boot["log_loss"], boot["brier"] = lb[:, 0], lb[:, 1]
        # AUC needs the rows themselves: row multiplicities, a chunk of resamples at a
        # time (memory O(4e6) weights whatever n)
        if classes:
            auc_b = np.full(B, np.nan)
            step = max(1, 4_000_000 // n)
            for start in range(0, B, step):
                b = min(step, B - start)
                _, _, w = next(row_weights(np.zeros(n, dtype=np.int64), 1, b, rng))
                auc_b[start:start + b] = auc_macro(w)
            boot["auc"] = auc_b
    present = np.bincount(y, minlength=P.shape[1])
    caution = _few_rows(n, int(present[present > 0].min()), "outcomes")
    for k, label in labels.items():
        out.add(k, label, point[k], _percentile(boot[k]), _boot_text(B),
                undefined="needs at least one class with both its rows and others", unreliable=caution,
                needs_scores=True)
    return _calibration_test(out, conf_top, hit, config, rng)


def _regression(out: _Table, y: np.ndarray, yhat: np.ndarray, config: PerformanceConfig,
                rng: np.random.Generator) -> None:
    e = yhat - y
    cols = np.column_stack([e ** 2, np.abs(e), e, y, y ** 2])

    def metrics(m: np.ndarray) -> dict[str, np.ndarray]:
        m = np.atleast_2d(m)
        var = m[:, 4] - m[:, 3] ** 2
        with np.errstate(all="ignore"):
            r2 = np.where(var > 0, 1 - m[:, 0] / var, np.nan)
        return {"r2": r2, "rmse": np.sqrt(m[:, 0]), "mae": m[:, 1], "mean_error": m[:, 2]}

    point = metrics(cols.mean(axis=0))
    B = config.n_bootstrap
    boot = metrics(bootstrap_means(cols, B, rng)) if B else None
    labels = {"r2": "R²", "rmse": "RMSE", "mae": "MAE", "mean_error": "mean error (prediction − true)"}
    for k, label in labels.items():
        out.add(k, label, _f(point[k][0]), _percentile(boot[k] if boot else None), _boot_text(B),
                undefined="the outcome is constant on these rows")


__all__ = ["INTERVAL_METRICS", "Performance", "PerformanceConfig", "PerformanceResult"]
