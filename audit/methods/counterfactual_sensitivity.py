"""Counterfactuals on images and sequences, as a diagnostic of model sensitivity.

For a seeded sample of rows, a batched gradient search (``audit.methods._cf.tensor``) looks for
the smallest change to the input (L1, every value kept inside the range observed in the audited
data) that flips a classifier to a target class (default: each row's second most likely class)
or moves a regression forecast up by ``shift``, then reverts the smallest changes while the goal
still holds; the real model re-checks every result. Unlike the tabular ``counterfactuals``
method this is not recourse: nobody can act on a pixel or a past quarter. It shows how little of
the input the model's decision rests on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               RunContext)
from audit.errors import InvalidConfigError


@dataclass(frozen=True)
class SensitivityConfig(MethodConfig):
    """Options of the sensitivity search.

    max_search_rows : rows searched, a seeded sample.
    target_class : the class to reach (default: each row's second most likely).
    shift : regression: how far up the forecast must move, in target units.
    steps, learning_rate, margin : the gradient search: steps, step size, logit margin.
    n_examples : examples shown in the report.
    """

    max_search_rows: int = 100
    target_class: str | None = None
    shift: float = 0.5
    steps: int = 200
    learning_rate: float = 0.05
    margin: float = 0.5
    n_examples: int = 5

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "max_search_rows": Interval(1, 10_000_000, "rows searched"),
        "learning_rate": Interval(0, None, closed="neither"),
        "margin": Interval(0, None),
        "shift": Interval(0, None, "forecast increases", closed="neither"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"max_rows": "max_search_rows"}


@dataclass(frozen=True)
class SensitivityExample:
    row: int                     # index in the audited data
    row_number: int              # the row as you count it in the data file (from 1)
    goal: str                    # e.g. "class 3 -> 5" or "forecast 5.10 -> >= 5.60"
    before: float
    after: float
    l1: float
    n_changed: int
    original: list[list[float]]  # raw-unit grids (H x W or features x lags)
    counterfactual: list[list[float]]
    difference: list[list[float]]


@dataclass(frozen=True)
class SensitivityResult(MethodResult):
    """Images and sequences: counterfactuals as a diagnostic of model sensitivity."""

    modality: str
    goal: str
    n_rows: int
    n_searched: int
    seed: int
    validity: float | None
    mean_l1: float | None        # raw units, over valid counterfactuals
    mean_l2: float | None
    mean_changed: float | None   # pixels / cells changed
    n_elements: int
    rows_without: tuple[int, ...]
    examples: tuple[SensitivityExample, ...]
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]


class CounterfactualSensitivity(AuditMethod[SensitivityConfig, SensitivityResult]):
    name = "counterfactual_sensitivity"
    title = "Counterfactual sensitivity (images and sequences)"
    requires = frozenset({"torch", "gradients"})
    modalities = frozenset({"image", "sequence"})
    modality_reasons = {"tabular": "for images and sequences; tabular data gets actionable counterfactuals "
                                   "(counterfactuals)"}
    Config = SensitivityConfig

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: SensitivityConfig) -> str | None:
        reason = self.modality_skip(data) or super().skip_reason(model, data, config)
        if reason is None and data.task != "regression" and "proba" not in model.capabilities:
            return f"needs class probabilities; {model.description} offers none"
        return reason

    def run(self, model: ModelAdapter, data: AuditData, config: SensitivityConfig,
            ctx: RunContext) -> SensitivityResult:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # many small batches: one thread is faster on 2 cores
        try:
            return _search(model, data, config, ctx)
        finally:
            torch.set_num_threads(threads)

    def plan(self, model: ModelAdapter, data: AuditData, config: SensitivityConfig, ctx: RunContext) -> Any:
        """A gradient search per row (torch forward and backward passes, not counted)."""
        from audit.core.cost import Plan

        rows = min(config.max_search_rows, data.n_rows)
        return Plan(f"gradient search, {rows:,} rows × {config.steps} steps", model_rows=data.n_rows,
                    model_calls=1, uncounted_rows=3 * rows * config.steps)

    def findings(self, result: SensitivityResult, config: SensitivityConfig) -> list[Finding]:
        if result.validity is None or result.mean_l1 is None:
            return []
        return [Finding("info", (
            f"Sensitivity diagnostic ({result.modality}s): {result.goal} was reached for "
            f"{100 * result.validity:.1f}% of {result.n_searched:,} rows by changing "
            f"{result.mean_changed:.1f} of {result.n_elements} inputs on average (L1 "
            f"{result.mean_l1:.2f} in raw units); not recourse."))]

    def figures(self, result: SensitivityResult, data: AuditData) -> dict[str, Any]:
        return {"sensitivity": _sensitivity_figure(result, data.layout.style)} if result.examples else {}


def _search(model: ModelAdapter, data: AuditData, config: SensitivityConfig,
            ctx: RunContext) -> SensitivityResult:
    from audit.core.attribution import element_grid, grid_labels
    from audit.methods._cf.tensor import search

    n = data.n_rows
    X = data.X.reshape(n, -1).astype(np.float32)
    rows = np.sort(ctx.rng.choice(n, min(n, config.max_search_rows), replace=False))
    X0 = X[rows]
    shape = tuple(data.X.shape[1:])

    def nd(a: np.ndarray) -> np.ndarray:
        return a.reshape(len(a), *shape)

    scale = np.array([f.scale for f in data.encoding.features], dtype=float)
    center = np.array([f.center for f in data.encoding.features], dtype=float)
    lo, hi = np.broadcast_to(X.min(axis=0), X0.shape), np.broadcast_to(X.max(axis=0), X0.shape)
    if data.task == "regression":
        y0 = np.asarray(model.predict(nd(X0)), dtype=float)
        target = y0 + config.shift
        goal = (f"moving the forecast {'up' if config.shift > 0 else 'down'} by {abs(config.shift):g} "
                "(target units)")
        if config.shift < 0:  # search on the negated output: reach -(y0 + shift)
            raise InvalidConfigError(f"The 'shift' option of [methods.counterfactual_sensitivity] must be positive for now "
                                     f"(forecast increases). Got {config.shift!r} instead.")
    else:
        p = model.predict_proba(nd(X0))
        classes = [str(c) for c in (data.classes or data.encoding.classes or range(p.shape[1]))]
        if config.target_class is not None:
            if config.target_class not in classes:
                raise InvalidConfigError(f"The 'target_class' option of [methods.counterfactual_sensitivity] must be one of "
                                         f"{', '.join(classes)}. Got {config.target_class!r} instead.")
            target = np.full(len(rows), classes.index(config.target_class))
            keep = np.argmax(p, axis=1) != target
            rows, X0, p, target = rows[keep], X0[keep], p[keep], target[keep]
            lo, hi = lo[: len(rows)], hi[: len(rows)]
            goal = f"flipping the predicted class to {config.target_class!r}"
        else:
            target = np.argsort(-p, axis=1)[:, 1]
            goal = "flipping the predicted class to the row's second most likely class"
    res = search(model, X0, target=target.astype(float), lo=lo, hi=hi, shape=shape, steps=config.steps,
                 learning_rate=config.learning_rate, margin=config.margin)
    # final check by the real model's own decision rule
    if data.task == "regression":
        valid = res.valid & (np.asarray(model.predict(nd(res.X)), dtype=float) >= target)
    else:
        valid = res.valid & (model.predict(nd(res.X)) == target)
    diff_raw = (res.X - X0) * scale
    changed = np.abs(diff_raw) > 1e-6 * np.maximum(scale, 1e-12)
    l1 = np.abs(diff_raw).sum(axis=1)
    l2 = np.sqrt((diff_raw ** 2).sum(axis=1))
    classes = [str(c) for c in (data.classes or data.encoding.classes or ())]

    def name(k: float) -> str:
        return classes[int(k)] if classes and int(k) < len(classes) else str(int(k))

    examples = []
    show = np.flatnonzero(valid)[: config.n_examples]
    pred0 = model.predict(nd(X0[show])) if show.size else np.zeros(0)
    for i, k in zip(show, pred0, strict=True):
        raw0 = X0[i] * scale + center
        raw1 = res.X[i] * scale + center
        g = (f"class {name(k)} -> {name(target[i])}" if data.task != "regression" else
             f"forecast {res.before[i]:.2f} -> {res.after[i]:.2f} (goal >= {target[i]:.2f})")
        examples.append(SensitivityExample(
            int(rows[i]), data.user_row(int(rows[i])), g, float(res.before[i]), float(res.after[i]), float(l1[i]), int(changed[i].sum()),
            element_grid(raw0, data).tolist(), element_grid(raw1, data).tolist(),
            element_grid(diff_raw[i], data).tolist()))
    rl, cl = grid_labels(data)

    def mean(v: np.ndarray) -> float | None:
        return float(np.mean(v)) if v.size else None

    return SensitivityResult(
        modality=data.layout.kind, goal=goal, n_rows=n, n_searched=int(len(rows)),
        seed=ctx.seed, validity=float(valid.mean()) if len(rows) else None,
        mean_l1=mean(l1[valid]), mean_l2=mean(l2[valid]), mean_changed=mean(changed[valid].sum(axis=1)),
        n_elements=int(X.shape[1]), rows_without=tuple(int(r) for r in rows[~valid]),
        examples=tuple(examples), row_labels=tuple(rl), col_labels=tuple(cl))


def _sensitivity_figure(result: SensitivityResult, style: Any) -> Any:
    """Original, counterfactual (shared sequential scale) and difference (diverging, centred at
    0, red: the counterfactual is higher) for each example."""
    from matplotlib.colors import TwoSlopeNorm

    from audit.core.plots import pyplot

    plt = pyplot()
    ex = list(result.examples)
    image = style.square
    h = 1.5 if image else 0.3 * len(result.row_labels) + 0.9
    fig, axes = plt.subplots(len(ex), 3, figsize=(6.5, h * len(ex) + 0.8), squeeze=False)
    diff = np.concatenate([np.abs(np.asarray(e.difference)).ravel() for e in ex])
    vmax = float(np.nanmax(diff)) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    im_d = im_v = None
    for k, e in enumerate(ex):
        both = np.concatenate([np.ravel(e.original), np.ravel(e.counterfactual)])
        lo, hi = float(both.min()), float(both.max())
        for c, (vals, title) in enumerate(((e.original, f"row {e.row_number}: original"),
                                           (e.counterfactual, f"counterfactual ({e.goal})"),
                                           (e.difference, f"difference ({e.n_changed} changed)"))):
            ax = axes[k, c]
            if c < 2:
                im_v = ax.imshow(np.asarray(vals), cmap=style.cmap, vmin=lo, vmax=hi,
                                 aspect="equal" if image else "auto", interpolation="nearest")
            else:
                im_d = ax.imshow(np.asarray(vals), cmap="RdBu_r", norm=norm,
                                 aspect="equal" if image else "auto", interpolation="nearest")
            ax.set_title(title, fontsize=6)
            if image or c > 0:
                ax.set_yticks([])
            else:
                ax.set_yticks(range(len(result.row_labels)), list(result.row_labels), fontsize=6)
            ax.set_xticks([])
    fig.suptitle("Counterfactuals as a sensitivity diagnostic (raw units)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.88, 0.96))
    cax = fig.add_axes((0.9, 0.12, 0.025, 0.76))
    cb = fig.colorbar(im_d, cax=cax, extend="both")
    cb.set_label("counterfactual - original (raw units)\nred: higher, blue: lower", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    del im_v
    return fig


__all__ = ["CounterfactualSensitivity", "SensitivityConfig", "SensitivityResult"]
