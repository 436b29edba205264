"""SHAP values: per-row attributions and global importance, with an additivity check.

The explainer follows what the report can promise (``explainer="auto"``):

- tree models (scikit-learn trees, forests, gradient boosting and HistGradientBoosting, XGBoost
  and LightGBM estimators or Boosters), alone or as the last step of a scikit-learn ``Pipeline``:
  ``TreeExplainer`` (exact interventional Tree SHAP over *all* the background rows: shap's default
  masker would silently keep only 100 of them) of the columns the tree model reads, i.e. after the
  Pipeline's preprocessing. Each column is traced through the fitted steps to the one raw feature
  it depends on and its values are summed into that feature's (``summed_columns``); a step that
  mixes raw features (PCA, polynomial features, unknown transformers) falls back to exact values
  or KernelSHAP with a note. Boosted classifiers are explained on their margin (log-odds), where
  Tree SHAP is exact; forests on probability. Where a raw feature is one column these are its
  exact interventional Shapley values; with one-hot groups, or a boosted classifier's
  probabilities (``scale = "probability"``), they are not: their deviation is then measured like
  DeepLIFT's (below);
- other tabular models with few raw features: **exact** interventional Shapley values, computed
  by enumerating all 2^p coalitions of the p raw features against every background row
  (:func:`exact_shapley`), whenever 2^p × background rows × explained rows model evaluations
  fit in ``exact_max_evaluations``;
- otherwise differentiable torch models: shap's ``DeepExplainer``, i.e. **DeepLIFT** (rescale
  rule averaged over the background rows; about 2 ms per row on the Adult MLP). Its values add
  up to ``f(x) - E_background[f]`` for chains of Linear layers and elementwise activations, but
  they are *not* Shapley values: every run measures their deviation from exact (or KernelSHAP)
  Shapley values on a seeded sample of ``check_n_rows`` explained rows and reports it, with a
  finding above ``deviation_tolerance``. Models with modules DeepLIFT does not know (or
  TorchScript) use ``GradientExplainer`` (expected gradients, a Monte Carlo estimate, checked
  the same way);
- anything else that can score new inputs: ``KernelExplainer`` over *raw features* (the one-hot
  columns of a categorical are switched on and off together, so every coalition is a valid
  input), with ``l1_reg=False`` (no feature selection); shap's estimator call for call, without
  its per-column Python loops (:func:`_grouped_kernel_class`).

What is explained (``scale="auto"``): P(positive class) for binary models, the predicted value for
regression, and for multiclass models the probability of each row's *predicted* class; for boosted
tree classifiers, their margin (the log-odds, or the predicted class's pre-softmax score).
``scale="logit"`` explains log-odds instead (binary), or centred logits (multiclass, torch).

Every value is relative to the background: a feature's SHAP value is how far it moves this row's
output from the expected output over the background rows, with "absent" features filled in from
the background independently of the present ones (interventional SHAP; it describes the model,
including on feature combinations that do not occur in the data).

For other methods (``ctx.earlier["shap"]``): :class:`ShapResult` ``global_importance`` is mean
|value| per raw feature (explainers whose players are encoded columns have their one-hot columns
summed per row first: additive, but not the categorical's Shapley value), and
``values`` (explained rows x raw features, in ``features`` order) are the per-row attributions of
the data rows ``rows``.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from math import factorial
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.attribution import (ModalAttribution, bootstrap_mean_abs, check_finite, modal_attribution,
                                    rnn_backward_mode, sample_background, sample_rows, top_features)
from audit.core.dataset import AuditData, CategoricalFeature
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               RunContext)
from audit.core.results import Attributions, Estimate
from audit.errors import InvalidConfigError

Explainer = Literal["auto", "exact", "deep", "gradient", "tree", "kernel"]
_CHUNK = 100
# Rows per chunk of execution.map for exact values (~0.4 s a row on Adult): the Ray backend
# spreads the shards over the cluster; locally they run in turn in this process.
_EXACT_SHARD = 10
# KernelSHAP rows per chunk of audit.execution.map, each chunk with its own coalition stream: a
# fixed size, so the shards depend on the number of rows alone, never on the workers.
_KERNEL_SHARD = 10
# shap's own Python work per explained row and output (used only to estimate durations), on
# top of its forward+backward passes (priced by the runner's measured unit): DeepExplainer
# builds each row's joint input and hands autograd one scalar per joint row (2 × background);
# GradientExplainer interpolates each sample in a Python loop. It does not grow with the model:
# measured on this project's 2-core machine, one thread, load 4-6 — DeepLIFT on the Adult MLP
# at background 25 and 100 (~1 ms per row plus ~25 µs per background row), expected gradients
# on the digits CNN (10 outputs) and the macro LSTM (~30-90 µs per sample; 50 taken).
DEEP_SECONDS_PER_ROW = 1e-3
DEEP_SECONDS_PER_BACKGROUND_ROW = 2.5e-5
GRADIENT_SECONDS_PER_SAMPLE = 5e-5
# What each explainer computes, as the report and results.json name it.
LABELS: dict[str, str] = {
    "exact": "Exact interventional Shapley values",
    "tree": "Interventional Tree SHAP (TreeExplainer)",
    "kernel": "KernelSHAP (sampled estimate)",
    "deep": "DeepLIFT (DeepExplainer)",
    "gradient": "Expected gradients (GradientExplainer)",
}


@dataclass(frozen=True)
class ShapConfig(MethodConfig):
    """Options of the SHAP method.

    explainer : "auto" picks from the model's capabilities (see the module docstring); "exact"
        enumerates every coalition of raw features (an error when that exceeds
        ``exact_max_evaluations``).
    exact_max_evaluations : most model evaluations (2^p × background rows × rows) an exact
        computation may take; "auto" uses exact values only within it.
    check_n_rows : DeepLIFT / expected gradients: explained rows (a seeded sample) whose values
        are compared with exact Shapley values (KernelSHAP when exact is over budget).
    check_nsamples : model evaluations per row of that KernelSHAP reference.
    deviation_tolerance : largest |value − reference| accepted in that comparison before a
        finding, in the explained units (regression: × the outputs' standard deviation).
    scale : "auto" (probability / predicted value), "probability" or "logit".
    n_rows : rows explained by the fast explainers (deep, tree); a uniform random sample
        from the run's seed when the data has more.
    kernel_n_rows : rows explained by KernelSHAP (about 0.1 s per row on a small MLP).
    gradient_n_rows : rows explained by GradientExplainer (about 15 ms per row).
    background_size : background rows for deep/gradient/tree.
    kernel_background_size : background rows for KernelSHAP.
    background : "random" real rows, or "kmeans" weighted centres (kernel only).
    kernel_nsamples : model evaluations per row for KernelSHAP (None: shap's 2·d + 2048).
    gradient_nsamples : samples per row for GradientExplainer.
    n_bootstrap, confidence : percentile bootstrap of the global importances (rows resampled).
    additivity_tolerance : largest |base + Σ SHAP − output| accepted, in the explained units
        (probability or log-odds); for regression, as a fraction of the outputs' standard deviation.
    n_dependence, n_waterfall, max_display : figures (tabular data).
    n_per_class : images: example heatmaps per predicted class.
    """

    explainer: Explainer = "auto"
    scale: Literal["auto", "probability", "logit"] = "auto"
    n_rows: int = 1000
    kernel_n_rows: int = 100
    gradient_n_rows: int = 300
    background_size: int = 100
    kernel_background_size: int = 50
    background: Literal["random", "kmeans"] = "random"
    kernel_nsamples: int | None = None
    gradient_nsamples: int = 200
    n_bootstrap: int = 1000
    confidence: float = 0.95
    additivity_tolerance: float = 0.01
    n_dependence: int = 3
    n_waterfall: int = 3
    max_display: int = 15
    n_per_class: int = 2
    exact_max_evaluations: int = 20_000_000
    check_n_rows: int = 10
    check_nsamples: int = 2048
    deviation_tolerance: float = 0.02

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "kernel_nsamples": Interval(10, 1_000_000, "model evaluations per explained row"),
        "confidence": Interval(0.5, 1, "the level of the intervals", closed="left"),
        "additivity_tolerance": Interval(0, None, closed="neither"),
        "deviation_tolerance": Interval(0, None, closed="neither"),
        "max_display": Interval(1, 1_000, "features shown in a figure"),
    }


@dataclass(frozen=True)
class ShapDeviation:
    """How far an approximate explainer's values are from Shapley values, on a sample of rows.

    ``reference`` is "exact" (every coalition enumerated: the true interventional Shapley values
    for the same background) or "kernel" (KernelSHAP, run twice with independent coalition
    samples and averaged; ``reference_spread`` is the largest difference between the two runs,
    a gauge of the reference's own sampling error). Deviations are |value − reference| per row and
    raw feature, in the explained units.
    """

    why: str                              # why these values are not exact Shapley values
    reference: str
    reference_label: str
    rows: tuple[int, ...]                 # data rows compared (a seeded sample of the explained rows)
    max_abs: float
    mean_abs: float
    tolerance: float
    within_tolerance: bool
    top_feature_agreement: float          # share of rows whose largest-|value| feature is the same
    top_method: tuple[str, ...]           # top 3 features by mean |value| over these rows
    top_reference: tuple[str, ...]
    top_agree: bool                       # the same two most important features, in the same order
    reference_spread: float | None        # kernel: max |run 1 − run 2|; exact: None
    evaluations: int                      # model evaluations the reference took


@dataclass(frozen=True)
class ShapResult(MethodResult):
    """SHAP attributions of the explained rows, in raw features.

    ``values[i, j]`` is the SHAP value of feature ``features[j]`` for data row ``rows[i]``;
    ``base_values[i] + values[i].sum() ≈ outputs[i]`` (the additivity check). ``global_importance``
    is mean |SHAP| per raw feature, an :class:`~audit.core.results.Estimate` with its bootstrap
    interval.
    """

    explainer: str                       # "exact" | "deep" | "gradient" | "tree" | "kernel"
    label: str                           # what the values are, in words (LABELS)
    scale: str                           # "probability" | "logit" | "value"
    explained: str                       # what the values explain, in words
    per_row_class: bool                  # multiclass: each row's predicted class is explained
    features: tuple[str, ...]
    rows: tuple[int, ...]
    n_rows_total: int
    sampled: bool
    background_size: int
    background_source: str
    background_kind: str
    base_value: float                    # mean of base_values (per class for multiclass: varies)
    base_values: np.ndarray              # (n,) expected output over the background, per row
    outputs: np.ndarray                  # (n,) the explained model output, per row
    values: np.ndarray                   # (n, n_features)
    explained_class: tuple[str, ...] | None   # per row, for multiclass
    global_importance: dict[str, Estimate]
    ranking: tuple[str, ...]
    n_bootstrap: int
    confidence: float
    additivity_max_error: float
    additivity_mean_error: float
    additivity_tolerance: float
    additivity_ok: bool
    waterfall_rows: tuple[int, ...]      # positions in ``rows``
    waterfall_row_numbers: tuple[int, ...]  # those rows as you count them in the data file (from 1)
    n_dependence: int
    max_display: int
    notes: tuple[str, ...]
    # Images and sequences: heatmaps and totals per patch / feature / lag (None for tabular).
    modal: ModalAttribution | None = None
    # DeepLIFT / expected gradients on tabular data: measured deviation from Shapley values.
    deviation: ShapDeviation | None = None
    deviation_skipped: str | None = None  # why it was not measured, for those explainers
    # TreeExplainer: the tree model explained (e.g. a Pipeline's final estimator) and, per raw
    # feature, the columns of its input whose values were summed into the raw feature's value.
    tree_model: str | None = None
    summed_columns: dict[str, tuple[str, ...]] | None = None
    _seconds: float = 0.0                # explainer wall time (not serialised: not reproducible)

    def attributions(self) -> tuple[Attributions, ...]:
        """The per-row values and mean |value| with its interval (one :class:`Attributions`)."""
        return (Attributions(
            key="shap", label=self.label, short=value_name(self.explainer),
            origin=f"shap: {self.label}", features=self.features,
            grouping="element" if self.modal is not None else "feature",
            explains="predicted_class" if self.per_row_class else "output", explained=self.explained,
            importance=self.global_importance, values=np.asarray(self.values, dtype=float),
            rows=np.asarray(self.rows, dtype=int)),)


class Shap(AuditMethod[ShapConfig, ShapResult]):
    """SHAP attributions with bootstrap intervals and an additivity check.

    Examples
    --------
    >>> import numpy as np, pandas as pd, torch
    >>> from audit.core.adapter import as_adapter
    >>> from audit.core.dataset import DatasetSpec, build_audit_data
    >>> df = pd.DataFrame({"a": np.arange(20.0), "b": np.ones(20), "y": [0, 1] * 10})
    >>> data = build_audit_data(df, DatasetSpec(target="y"))
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1))
    >>> r = Shap().run(as_adapter(net), data, ShapConfig(n_bootstrap=0), RunContext.default())
    >>> r.explainer, r.label, r.additivity_ok     # 2 raw features: exact values are cheap
    ('exact', 'Exact interventional Shapley values', True)
    """

    name = "shap"
    title = "Feature attributions: SHAP values (exact, Tree, Kernel) or DeepLIFT"
    requires = frozenset({"predict"})
    libraries = ("shap",)
    modalities = frozenset({"tabular", "image", "sequence"})
    Config = ShapConfig

    def run(self, model: ModelAdapter, data: AuditData, config: ShapConfig, ctx: RunContext) -> ShapResult:
        check_finite(data.X, "SHAP")
        notes: list[str] = []
        source, pool = ("the training data", ctx.train.X) if ctx.train is not None else (
            "the audited data", data.X)
        groups = [np.asarray(v) for v in data.encoding.groups.values()]
        # Exact Shapley values enumerate 2^p coalitions of the p raw features, each against every
        # background row: affordable for tabular data with few features.
        exact_cost = None if not data.layout.exact_coalitions else (
            2 ** len(groups) * min(config.background_size, len(pool)) * min(config.n_rows, data.n_rows))
        found = _find_tree(model)
        kind = choose_explainer(model, config, notes, exact_cost=exact_cost, tree=found)
        scale = _tree_scale(found, model, config) if kind == "tree" and found else _scale(model, config)
        if kind == "deep":
            kind = _check_deep(model, scale, data.X[:2], notes)
        if config.background == "kmeans" and kind != "kernel":
            notes.append("background = \"kmeans\" applies to KernelSHAP only; random rows were used.")
        rows, sampled, bg, weights, bkind = _draw(kind, data, pool, source, config, ctx, notes)
        X = data.X[rows]
        start = time.perf_counter()
        enc_values = None
        tree = _explain_tree(found, model, data, X, bg, scale, notes) if kind == "tree" and found else None
        if kind == "tree" and tree is None:      # no column mapping, or shap could not handle the model
            kind = "exact" if exact_cost is not None and exact_cost <= config.exact_max_evaluations else "kernel"
            notes[-1] += f" {LABELS[kind]} was used instead."
            scale = _scale(model, config)
            rows, sampled, bg, weights, bkind = _draw(kind, data, pool, source, config, ctx, notes)
            X = data.X[rows]
        tree_why = tree.why if tree is not None else None
        if kind in ("deep", "gradient"):
            enc_values, base, outputs = _explain_torch(model, X, bg, kind, scale, config, ctx)
        elif tree is not None:
            raw_values, base, outputs = tree.values, tree.base, tree.outputs
        elif kind == "exact":
            f = _explained_fn(model, scale, bg)
            raw_values, base = _exact_sharded(f, X, bg, groups, ctx.progress)
            outputs = f(X)
        else:
            raw_values, base, outputs = _explain_kernel(model, data, X, bg, weights, scale, config, ctx)
        seconds = time.perf_counter() - start
        # enc_values: (n, d_enc, k) or kernel's raw (n, d_raw, k); base (k,); outputs (n, k)
        if enc_values is not None:
            raw_values = data.encoding.aggregate(enc_values, "sum", axis=1)
        k = raw_values.shape[2]
        classes = None
        if data.task == "multiclass":
            pick = model.predict(X)
            if pick.max() >= k:
                raise InvalidConfigError(f"The multiclass model predicts class {int(pick.max())} but "
                                         f"its explained output has only {k} columns.")
            labels = data.classes or tuple(str(i) for i in range(k))
            classes = tuple(str(labels[c]) for c in pick)
        else:
            pick = np.zeros(len(rows), dtype=int)
        take = np.arange(len(rows))
        values = raw_values[take, :, pick]
        base_values = np.asarray(base, dtype=float)[pick]
        out = outputs[take, pick]
        err = np.abs(base_values + values.sum(axis=1) - out)
        # regression outputs have the user's units: the tolerance is relative to their spread
        spread = (float(np.std(out)) or 1.0) if data.task == "regression" else 1.0
        tol = config.additivity_tolerance * spread
        deviation, deviation_skipped = None, None
        if kind in ("deep", "gradient", "kernel") or (kind == "tree" and tree_why is not None):
            if not data.layout.exact_coalitions:
                deviation_skipped = (f"not measured: {data.layout.kind} data has {len(groups):,} inputs, too many "
                                     "coalitions for an exact or KernelSHAP reference in a run")
            elif kind == "kernel" and scale == "logit":
                deviation_skipped = ("not measured: KernelSHAP on the log-odds scale explains logit(E[P]) "
                                     "over the background, a different quantity from the exact reference's "
                                     "E[log-odds]")
            elif kind == "tree" and 2 ** len(groups) * len(bg) > config.exact_max_evaluations // _TREE_SHARE:
                deviation_skipped = (
                    f"not measured: exact values of one row would take {2 ** len(groups) * len(bg):,} evaluations "
                    f"of the tree model, over its check budget of {config.exact_max_evaluations // _TREE_SHARE:,} "
                    f"(exact_max_evaluations / {_TREE_SHARE}: tree ensembles evaluate slowly). These values "
                    f"{tree_why}")
            else:
                # a tree model's check runs in its own input space (no decoding or preprocessing
                # per evaluation): each raw feature is the group of the columns it produces
                deviation = _measure_deviation(
                    *((tree.f, tree.X, rows, values, pick, tree.bg, weights, tree.groups) if tree is not None else
                      (_explained_fn(model, scale, bg), X, rows, values, pick, bg, weights, groups)),
                    names=data.feature_names, tolerance=config.deviation_tolerance * spread, config=config,
                    ctx=ctx, why=tree_why if kind == "tree" else _WHY[kind],
                    budget=config.exact_max_evaluations // (_TREE_SHARE if kind == "tree" else 1),
                    exact_only=kind == "tree", dtype=np.float64 if tree is not None else np.float32)
        boot = bootstrap_mean_abs(values, n_bootstrap=config.n_bootstrap,
                                  confidence=config.confidence, rng=ctx.rng)
        names = data.feature_names
        importance = {f: float(v) for f, v in zip(names, boot.mean, strict=True)}
        waterfall = _waterfall_rows(out, model, data.task, config.n_waterfall)
        modal = None
        if data.layout.elementwise:
            # values are per element (pixel, or lag x feature): SHAP sums exactly to groups.
            modal = modal_attribution(
                values, data, rows, method="shap",
                unit=("the predicted value" if data.task == "regression" else
                      "P(predicted class)" if data.task == "multiclass" else _explained_text(data, scale)),
                how="sum", classes=(pick if data.task == "multiclass" else
                                    (np.asarray(model.output(X)) >= model.threshold).astype(int)
                                    if data.task == "binary" else None),
                outputs=out if data.task == "regression" else None, n_per_class=config.n_per_class)
        return ShapResult(
            explainer=kind, label=LABELS[kind], scale=scale, explained=_explained_text(data, scale),
            per_row_class=data.task == "multiclass", features=tuple(names),
            rows=tuple(int(r) for r in rows), n_rows_total=data.n_rows, sampled=sampled,
            background_size=len(bg), background_source=source, background_kind=bkind,
            base_value=float(base_values.mean()), base_values=base_values, outputs=out,
            values=values, explained_class=classes, global_importance=boot.estimates(names),
            ranking=tuple(top_features(importance, len(names))), n_bootstrap=boot.n_bootstrap,
            confidence=config.confidence, additivity_max_error=float(err.max()),
            additivity_mean_error=float(err.mean()), additivity_tolerance=tol,
            additivity_ok=bool(err.max() <= tol),
            waterfall_rows=waterfall, waterfall_row_numbers=tuple(data.user_row(int(rows[p])) for p in waterfall),
            _seconds=seconds,
            n_dependence=config.n_dependence, max_display=config.max_display, notes=tuple(notes),
            modal=modal, deviation=deviation, deviation_skipped=deviation_skipped,
            tree_model=tree.description if tree is not None else None,
            summed_columns=tree.summed if tree is not None else None)

    def plan(self, model: ModelAdapter, data: AuditData, config: ShapConfig, ctx: RunContext) -> Any:
        """Model evaluations of the chosen explainer: exact values 2^p × background per row,
        KernelSHAP nsamples × background per row, a tree explainer's row × background pairs
        (priced like model rows, not counted: it reads the trees), plus the deviation check."""
        from audit.core.cost import Plan, Reducible

        pool = ctx.train.X if ctx.train is not None else data.X
        p = len(data.encoding.groups)
        exact_cost = None if not data.layout.exact_coalitions else (
            2 ** p * min(config.background_size, len(pool)) * min(config.n_rows, data.n_rows))
        # the explainer the run will choose: a tree model gets TreeExplainer (without ``tree`` the
        # plan priced the German-credit pipeline's exact values, 24x the TreeExplainer run)
        found = _find_tree(model)
        kind = choose_explainer(model, config, [], exact_cost=exact_cost, tree=found)
        option = {"kernel": "kernel_n_rows", "gradient": "gradient_n_rows"}.get(kind, "n_rows")
        rows = min(getattr(config, option), data.n_rows)
        bg_option = "kernel_background_size" if kind == "kernel" else "background_size"
        bg = min(getattr(config, bg_option), len(pool))
        counted = uncounted = 0.0
        calls = rows + 1
        if kind == "exact":  # exact_shapley evaluates a row's coalitions in chunks of 16,384 rows
            calls = rows * -(-(2 ** p * bg) // 16384) + 1
            counted, what = rows * (2 ** p * bg + 1), f"exact, {rows:,} rows × 2^{p} coalitions × {bg} background"
        elif kind == "kernel":
            ns = config.kernel_nsamples or (min(2 * p + 2048, 2 ** p - 2) if p <= 30 else 2 * p + 2048)
            counted, what = rows * (ns + 1) * bg, f"KernelSHAP, {rows:,} rows × {ns:,} samples × {bg} background"
            per_row = 2 ** p * bg
            if _scale(model, config) != "logit":
                counted += (per_row * min(config.check_n_rows, rows) if per_row * min(config.check_n_rows, rows)
                            <= config.exact_max_evaluations else 2 * config.check_nsamples * bg * config.check_n_rows)
        elif kind == "tree":
            uncounted, what = rows * bg, f"TreeExplainer, {rows:,} rows × {bg} background"
            # the deviation check runs when the values are not exact per raw feature (known only
            # once the trees are read): planned whenever it fits, an upper bound; it evaluates the
            # trees in their own input space, not through the adapter
            per_row = 2 ** p * bg
            if per_row <= config.exact_max_evaluations // _TREE_SHARE:
                uncounted += per_row * max(1, min(config.check_n_rows, config.exact_max_evaluations // _TREE_SHARE // per_row))
        else:  # deep / gradient: forward and backward passes through torch, not the adapter
            if kind == "deep":
                kind = _check_deep(model, _scale(model, config), data.X[:2], [])
                option = {"gradient": "gradient_n_rows"}.get(kind, "n_rows")
                rows = min(getattr(config, option), data.n_rows)
            # shap explains every output (k classes) one row at a time: DeepExplainer in one pass
            # of the row against its background (2 × background rows), GradientExplainer in
            # passes of batch_size samples; plus the explainer's own Python work (see the constants)
            outs = _n_outputs(model, _scale(model, config), data.X[:2])
            if kind == "deep":
                grad_rows, grad_calls = rows * outs * 2 * bg, rows * outs
                fixed = rows * outs * (DEEP_SECONDS_PER_ROW + bg * DEEP_SECONDS_PER_BACKGROUND_ROW)
                what = f"{LABELS[kind].split(' (')[0]}, {rows:,} rows × {bg} background"
            else:
                ns = config.gradient_nsamples
                grad_rows, grad_calls = rows * outs * ns, rows * outs * -(-ns // max(50, ns))
                fixed = rows * outs * ns * GRADIENT_SECONDS_PER_SAMPLE
                what = f"{LABELS[kind].split(' (')[0]}, {rows:,} rows × {ns} samples"
            # the module's outputs per chunk (not counted) and the adapter's check of them
            uncounted, counted, calls = rows, rows, -(-rows // _CHUNK) + 1
            p_check = 2 ** p * bg
            if data.layout.exact_coalitions:  # the deviation check against Shapley values (module)
                uncounted += (p_check * min(config.check_n_rows, rows) if p_check * min(config.check_n_rows, rows)
                              <= config.exact_max_evaluations else 2 * config.check_nsamples * bg * config.check_n_rows)
            return Plan(what, model_rows=counted, model_calls=calls, uncounted_rows=uncounted,
                        grad_rows=grad_rows, grad_calls=grad_calls, fixed_seconds=fixed,
                        reducible={option: Reducible(min(100, rows), "rows", current=rows),
                                   bg_option: Reducible(min(25, bg), "samples", current=bg)})
        if "torch" in model.capabilities:  # torch models are evaluated through the module itself
            counted, uncounted = 0.0, counted + uncounted
        return Plan(what, model_rows=counted, model_calls=calls, uncounted_rows=uncounted,
                    reducible={option: Reducible(min(100 if kind != "kernel" else 20, rows), "rows", current=rows),
                               bg_option: Reducible(min(25 if kind != "kernel" else 10, bg), "samples", current=bg)})

    def findings(self, result: ShapResult, config: ShapConfig) -> list[Finding]:
        out = []
        top = ", ".join(f"{f} ({result.global_importance[f].value:.3g})" for f in result.ranking[:3])
        out.append(Finding("info", f"By mean |value| ({result.label}, {len(result.rows):,} rows, "
                                   f"{result.explained}), the most influential features are: {top}."))
        if not result.additivity_ok:
            exact = result.explainer in ("exact", "deep", "tree", "kernel")
            level = "alert" if exact and result.additivity_max_error > 10 * result.additivity_tolerance else "warning"
            why = ("the explainer is additive by construction for supported models, so the model likely "
                   "contains operations it does not handle; treat its values as approximate"
                   if exact else "expected gradients is a Monte Carlo estimate; raise "
                   "gradient_nsamples or background_size for tighter values")
            out.append(Finding(level, f"{result.label} values do not add up to the model output: base "
                                      f"value + Σ values differs from the output by up to "
                                      f"{result.additivity_max_error:.3g} (tolerance "
                                      f"{result.additivity_tolerance:g}); {why}."))
        d = result.deviation
        if d is not None:
            where = (f"on {len(d.rows):,} seeded rows they differ from {d.reference_label} by up to "
                     f"{d.max_abs:.3g} (mean {d.mean_abs:.3g}; tolerance {d.tolerance:.3g}) and "
                     f"{'rank' if d.top_agree else 'do not rank'} the same two features first, in the "
                     f"same order (top {len(d.top_method)}: {', '.join(d.top_method)} vs "
                     f"{', '.join(d.top_reference)})")
            if d.within_tolerance and d.top_agree:
                out.append(Finding("info", f"{result.label} values {d.why}; {where}."))
            else:
                out.append(Finding("warning", f"{result.label} values {d.why}: {where}. Do not read them as "
                                              "Shapley values; set explainer = \"exact\" (few features) or "
                                              "\"kernel\" for Shapley values."))
        return out

    def figures(self, result: ShapResult, data: AuditData) -> dict[str, Any]:
        if result.modal is not None:
            return _modal_figures(result.modal, value_name(result.explainer), by_class=data.task != "regression")
        figs: dict[str, Any] = {"beeswarm": _beeswarm(result, data)}
        for i, feat in enumerate(result.ranking[:result.n_dependence]):
            figs[f"dependence_{i}"] = _dependence(result, data, feat)
        for i, pos in enumerate(result.waterfall_rows):
            figs[f"waterfall_{i}"] = _waterfall(result, pos, data)
        return figs


# --------------------------------------------------------------------------------------------
# Choosing and running the explainer
# --------------------------------------------------------------------------------------------


def _draw(kind: str, data: AuditData, pool: np.ndarray, source: str, config: ShapConfig,
          ctx: RunContext, notes: list[str]) -> tuple[np.ndarray, bool, np.ndarray, np.ndarray | None, str]:
    """Rows to explain and background rows for this explainer, noting samples and clipping."""
    budget = {"kernel": config.kernel_n_rows, "gradient": config.gradient_n_rows}.get(kind, config.n_rows)
    rows, sampled = sample_rows(data.n_rows, budget, ctx.rng)
    if sampled:
        notes.append(f"{len(rows):,} of the {data.n_rows:,} rows were explained: a uniform random "
                     f"sample (seed {ctx.seed}, the method's own stream).")
    slow = kind == "kernel"
    size = config.kernel_background_size if slow else config.background_size
    bkind = config.background if slow else "random"
    bg, weights, clip = sample_background(pool, size, ctx.rng, kind=bkind, source=source)
    if clip:
        notes.append(clip)
    return rows, sampled, bg, weights, bkind


def choose_explainer(model: ModelAdapter, config: ShapConfig, notes: list[str], *,
                     exact_cost: int | None = None, tree: Any = None) -> str:
    """The explainer to use, with a note whenever the request could not be honoured.

    ``exact_cost`` is the number of model evaluations exact Shapley values would take
    (None: not possible, e.g. images); "auto" prefers exact values within
    ``exact_max_evaluations``, except for tree models: TreeExplainer is exact per encoded column
    and fast, while a forest evaluates slowly (~20 s per million rows for 100 trees here); where
    its values are not exact per raw feature (:class:`_TreeValues` ``why``) their deviation is
    measured. ``tree`` is the tree model :func:`_find_tree` found (None: not a tree model).
    """
    want = config.explainer
    torch_ok = {"torch", "gradients"} <= model.capabilities
    tree_ok = tree is not None
    affordable = exact_cost is not None and exact_cost <= config.exact_max_evaluations
    if want == "exact":
        if exact_cost is None:
            raise InvalidConfigError("The 'explainer' option of shap may be \"exact\" only for tabular "
                                     "data (images and sequences have too many inputs to enumerate). "
                                     "Got \"exact\" instead.")
        if not affordable:
            raise InvalidConfigError(
                f"The 'explainer' option of shap is \"exact\", which needs 2^p × background rows × rows = "
                f"{exact_cost:,} model evaluations here, more than exact_max_evaluations = "
                f"{config.exact_max_evaluations:,}. Lower n_rows or background_size, raise "
                f"exact_max_evaluations, or use explainer = \"auto\".")
        return "exact"
    if want == "auto":
        return "tree" if tree_ok else "exact" if affordable else "deep" if torch_ok else "kernel"
    if want in ("deep", "gradient") and not torch_ok:
        notes.append(f"The {want} explainer needs a differentiable torch model; "
                     f"{model.description} is not one, so KernelSHAP was used.")
        return "tree" if tree_ok else "kernel"
    if want == "tree" and not tree_ok:
        notes.append(f"TreeExplainer needs a tree model (scikit-learn, XGBoost or LightGBM, alone or as "
                     f"a Pipeline's last step); "
                     f"{model.description} is not one, so KernelSHAP was used.")
        return "kernel"
    return want


def exact_shapley(f: Any, X: np.ndarray, background: np.ndarray, groups: list[np.ndarray], *,
                  weights: np.ndarray | None = None, chunk: int = 1 << 14,
                  progress: Any = None, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Exact interventional Shapley values of groups of input columns, by brute force.

    For each row x and each of the 2^p coalitions S of the p groups, the value of S is the mean
    over the background rows b of f(x on the columns of S, b elsewhere); each group's Shapley
    value is the weighted sum of its marginal contributions over every coalition,
    φ_j = Σ_{S ∌ j} |S|! (p − |S| − 1)! / p! · (v(S ∪ {j}) − v(S)). Cost: 2^p × len(background)
    evaluations of ``f`` per row (~0.4 s per row for the Adult MLP: 13 features, 100 rows).

    Parameters
    ----------
    f : callable
        (m, d) float32 inputs -> (m,) or (m, k) outputs (what is explained).
    X : array (n, d)
        Rows to explain.
    background : array (b, d)
        Background rows ("absent" groups take their values, independently of the present ones).
    groups : list of index arrays
        The columns of each player (e.g. the one-hot columns of a categorical).
    weights : array (b,), optional
        Weights of the background rows (k-means centres); the mean over them is then weighted.
    dtype : the inputs' type (float32, as the encoded model input; float64 for a tree model's
        own float64 input).

    Returns
    -------
    values : array (n, p, k), and base : array (k,) = mean of f over the background.

    Examples
    --------
    >>> bg = np.zeros((1, 2)); f = lambda Z: Z[:, 0] * Z[:, 1]
    >>> values, base = exact_shapley(f, np.array([[1.0, 2.0]]), bg, [np.array([0]), np.array([1])])
    >>> values[0, :, 0].tolist(), base.tolist()
    ([1.0, 1.0], [0.0])
    """
    X = np.asarray(X, dtype=dtype).reshape(len(X), -1)
    bg = np.asarray(background, dtype=dtype).reshape(len(background), -1)
    d, p, m = X.shape[1], len(groups), len(bg)
    coalitions = ((np.arange(2 ** p)[:, None] >> np.arange(p)[None, :]) & 1).astype(bool)
    present = np.zeros((2 ** p, d), dtype=bool)
    for j, g in enumerate(groups):
        present[:, np.asarray(g)] = coalitions[:, [j]]
    size = coalitions.sum(axis=1)
    weight = np.array([factorial(k) * factorial(p - k - 1) / factorial(p) for k in range(p)])
    per = max(1, chunk // m)
    buf = np.empty((min(per, 2 ** p), m, d), dtype=dtype)
    out, base = [], None
    for i, x in enumerate(X):
        parts = []
        for a in range(0, 2 ** p, per):
            mask = present[a:a + per]
            Z = buf[:len(mask)]
            Z[:] = bg[None]
            np.copyto(Z, x[None, None, :], where=mask[:, None, :])
            out_b = np.asarray(f(Z.reshape(-1, d)), dtype=float).reshape(len(mask), m, -1)
            parts.append(np.average(out_b, axis=1, weights=weights))
        v = np.concatenate(parts)                                   # (2^p, k)
        phi = np.empty((p, v.shape[1]))
        for j in range(p):
            without = np.flatnonzero(~coalitions[:, j])
            phi[j] = weight[size[without]] @ (v[without | (1 << j)] - v[without])
        out.append(phi)
        base = v[0]
        if progress is not None:
            progress(i + 1, len(X))
    if base is None:
        raise InvalidConfigError("exact_shapley needs at least one row to explain.")
    return np.stack(out), base


def _exact_sharded(f: Any, X: np.ndarray, bg: np.ndarray, groups: list[np.ndarray],
                   progress: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_shapley` in shards of ``_EXACT_SHARD`` rows (each row's values are its own)."""
    from audit import execution

    n = len(X)
    parts = execution.map(lambda r: exact_shapley(f, X[r.start:r.stop], bg, groups),
                          execution.split_by(n, _EXACT_SHARD), n_jobs=1, prefer="threads",
                          progress=lambda d, t: progress(min(n, d * _EXACT_SHARD), n))
    return np.concatenate([v for v, _ in parts]), parts[0][1]


def _explained_fn(model: ModelAdapter, scale: str, probe: np.ndarray) -> Any:
    """(m, d) encoded inputs -> (m, k): exactly the output the explainers explain."""
    if "torch" in model.capabilities and getattr(model, "module", None) is not None:
        import torch

        dtype = next(iter(model.module.parameters())).dtype  # type: ignore[attr-defined]
        shape = probe.shape[1:]
        module = _explained_module(model, scale, torch.as_tensor(probe[:2], dtype=dtype)).eval()

        def f_torch(Z: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = module(torch.as_tensor(np.asarray(Z).reshape(len(Z), *shape), dtype=dtype))
            return out.double().numpy().reshape(len(Z), -1)
        return f_torch

    def f(Z: np.ndarray) -> np.ndarray:
        out = np.asarray(model.output(np.asarray(Z, dtype=np.float32)), dtype=float).reshape(len(Z), -1)
        if scale == "logit":   # binary only (_scale refuses logit for other non-torch models)
            q = np.clip(out, 1e-12, 1 - 1e-12)
            out = np.log(q / (1 - q))
        return out
    return f


def _measure_deviation(f: Any, X: np.ndarray, rows: np.ndarray, values: np.ndarray, pick: np.ndarray,
                       bg: np.ndarray, weights: np.ndarray | None, groups: list[np.ndarray], *, names: list[str],
                       tolerance: float, config: ShapConfig, ctx: RunContext, why: str, budget: int,
                       exact_only: bool, dtype: Any = np.float32) -> ShapDeviation:
    """Compare an approximate explainer's values with Shapley values on a seeded sample of rows:
    exact values when ``check_n_rows`` rows fit in ``budget`` model evaluations, else KernelSHAP
    (``exact_only``: as many rows as fit, at least one)."""
    per_row = 2 ** len(groups) * len(bg)
    n_check = max(1, min(config.check_n_rows, budget // per_row)) if exact_only else config.check_n_rows
    check, _ = sample_rows(len(rows), n_check, ctx.rng)
    Xc = X[check]
    spread = None
    if exact_only or per_row * len(check) <= budget:
        ref_all, _ = exact_shapley(f, Xc, bg, groups, weights=weights, dtype=dtype)
        reference, evaluations = "exact", per_row * len(check)
    else:
        seeds = ctx.rng.integers(2**31 - 1, size=2)
        a, _ = _kernel_values(f, Xc, bg, weights, groups, names, config.check_nsamples, "identity", int(seeds[0]))
        b, _ = _kernel_values(f, Xc, bg, weights, groups, names, config.check_nsamples, "identity", int(seeds[1]))
        ref_all, spread = (a + b) / 2, float(np.abs(a - b).max())
        reference, evaluations = "kernel", 2 * config.check_nsamples * len(bg) * len(check)
    ref = ref_all[np.arange(len(check)), :, pick[check]]
    mine = values[check]
    diff = np.abs(mine - ref)
    top_m = tuple(top_features(dict(zip(names, np.abs(mine).mean(axis=0).tolist(), strict=True)), 3))
    top_r = tuple(top_features(dict(zip(names, np.abs(ref).mean(axis=0).tolist(), strict=True)), 3))
    return ShapDeviation(
        why=why, reference=reference,
        reference_label=("exact interventional Shapley values" if reference == "exact" else
                         f"KernelSHAP ({config.check_nsamples:,} coalitions per row, two independent runs averaged)"),
        rows=tuple(int(r) for r in np.asarray(rows)[check]), max_abs=float(diff.max()),
        mean_abs=float(diff.mean()), tolerance=float(tolerance), within_tolerance=bool(diff.max() <= tolerance),
        top_feature_agreement=float(np.mean(np.argmax(np.abs(mine), axis=1) == np.argmax(np.abs(ref), axis=1))),
        top_method=top_m, top_reference=top_r, top_agree=top_m[:2] == top_r[:2], reference_spread=spread,
        evaluations=int(evaluations))


_TREE_SHARE = 20   # the tree check's share of exact_max_evaluations (~20 µs per row for 100 trees)
_WHY = {"deep": "are DeepLIFT attributions, not Shapley values",
        "gradient": "are Monte Carlo estimates of expected gradients, not exact Shapley values",
        "kernel": "are sampled estimates of Shapley values (a regression over sampled coalitions)"}


def value_name(explainer: str) -> str:
    """What one attribution is called in figures: only Shapley-value explainers say "SHAP"."""
    return {"deep": "DeepLIFT", "gradient": "expected-gradients"}.get(explainer, "SHAP")


def _scale(model: ModelAdapter, config: ShapConfig) -> str:
    if model.task == "regression":
        return "value"
    if config.scale == "logit" and model.task == "multiclass" and "torch" not in model.capabilities:
        raise InvalidConfigError("The 'scale' option of shap may be \"logit\" for multiclass models "
                                 "only with torch models. Got \"logit\" instead.")
    return "logit" if config.scale == "logit" else "probability"


def _explained_text(data: AuditData, scale: str) -> str:
    if data.task == "regression":
        return "the predicted value"
    if data.task == "binary":
        pos = data.classes[1] if data.classes else "the positive class"
        return f"the log-odds of {pos}" if scale == "logit" else f"P({pos})"
    if scale == "margin":   # boosted multiclass trees
        return "the raw margin (score before the softmax) of each row's predicted class"
    return ("the centred logit of each row's predicted class" if scale == "logit"
            else "the probability of each row's predicted class")


def _explained_module(model: ModelAdapter, scale: str, probe: Any) -> Any:
    """A torch module whose outputs (n, k) are exactly what is explained, built from the model's
    own layers plus a head made of modules DeepLIFT handles exactly (Linear, Sigmoid)."""
    import torch
    from torch import nn

    module = model.module  # type: ignore[attr-defined]
    kind = getattr(model, "output_kind", "logit")
    with torch.no_grad():
        width = module(probe).reshape(len(probe), -1).shape[1]

    def pick(weights: list[list[float]]) -> nn.Module:
        lin = nn.Linear(width, len(weights), bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(weights, dtype=lin.weight.dtype))
        return lin

    head: list[nn.Module] = []
    if model.task == "regression":
        if width != 1:
            head.append(pick([[1.0] + [0.0] * (width - 1)]))
    elif kind == "probability":
        if scale == "logit":
            raise InvalidConfigError("The 'scale' option of shap cannot be \"logit\" for a torch model "
                                     "that outputs probabilities. Got \"logit\" instead.")
        if model.task == "binary" and width == 2:
            head.append(pick([[0.0, 1.0]]))
    elif model.task == "binary":
        if width == 2:                      # softmax over two logits: p1 = sigmoid(z1 - z0)
            head.append(pick([[-1.0, 1.0]]))
        if scale == "probability":
            head.append(nn.Sigmoid())
    elif scale == "logit":                  # centred logits: identifiable under softmax shifts
        head.append(pick((np.eye(width) - 1.0 / width).tolist()))
    else:
        head.append(nn.Softmax(dim=1))
    return nn.Sequential(module, *head)


def _deep_supported(module: Any) -> tuple[bool, str]:
    import torch
    from shap.explainers._deep.deep_pytorch import op_handler

    if isinstance(module, torch.jit.ScriptModule) or any(
            isinstance(m, torch.jit.ScriptModule) for m in module.modules()):
        return False, "TorchScript models cannot carry DeepExplainer's hooks"
    unknown = sorted({type(m).__name__ for m in module.modules()
                      if not list(m.children()) and type(m).__name__ not in op_handler})
    if unknown:
        return False, f"DeepExplainer does not handle the module(s) {', '.join(unknown)}"
    if any(isinstance(m, torch.nn.Softmax) for m in module.modules()):
        return False, "DeepExplainer's rule for Softmax is not exact (it is not elementwise)"
    return True, ""


def _n_outputs(model: ModelAdapter, scale: str, probe: np.ndarray) -> int:
    """The outputs shap explains (one pass per row and output): those of the explained module."""
    import torch

    dtype = next(iter(model.module.parameters())).dtype  # type: ignore[attr-defined]
    x = torch.as_tensor(probe, dtype=dtype)
    with torch.no_grad():
        out = _explained_module(model, scale, x)(x)
    return int(out.reshape(len(x), -1).shape[1])


def _check_deep(model: ModelAdapter, scale: str, probe: np.ndarray, notes: list[str]) -> str:
    """"deep" when DeepExplainer handles every module of the explained model, else "gradient"."""
    import torch

    dtype = next(iter(model.module.parameters())).dtype  # type: ignore[attr-defined]
    ok, why = _deep_supported(_explained_module(model, scale, torch.as_tensor(probe, dtype=dtype)))
    if ok:
        return "deep"
    notes.append(f"{why}; GradientExplainer (expected gradients) was used instead.")
    return "gradient"


class _TorchShards:
    """DeepLIFT / expected-gradients values of one shard of ``_CHUNK`` rows: a chunk for
    :func:`audit.execution.map`. The explainer is built on first use in each process, on a copy
    of the module (DeepExplainer hooks every leaf module: the audited model stays untouched)."""

    def __init__(self, module: Any, bg: Any, kind: str, nsamples: int, seed: int, X: np.ndarray, dtype: Any) -> None:
        self.module, self.bg, self.kind, self.nsamples, self.seed = module, bg, kind, nsamples, seed
        self.X, self.dtype = X, dtype
        self._explainer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_explainer": None, "_copy": None}

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        import copy

        import shap
        import torch

        if self._explainer is None:
            self._copy = copy.deepcopy(self.module).eval()
            self._explainer = (shap.DeepExplainer(self._copy, self.bg) if self.kind == "deep" else
                               shap.GradientExplainer(self._copy, self.bg, batch_size=max(50, self.nsamples)))
        xb = torch.as_tensor(self.X[i * _CHUNK:(i + 1) * _CHUNK], dtype=self.dtype)
        # cuDNN RNN backward needs training mode: switch RNN layers (dropout off) while on CUDA.
        with warnings.catch_warnings(), rnn_backward_mode(self._copy):
            warnings.simplefilter("ignore")
            if self.kind == "deep":
                sv = self._explainer.shap_values(xb, check_additivity=False)
            else:
                sv = self._explainer.shap_values(xb, nsamples=self.nsamples, rseed=self.seed + i)
        sv = np.asarray(sv, dtype=float)
        with torch.no_grad():
            out = self._copy(xb).double().numpy().reshape(len(xb), -1)
        return (sv.reshape(len(xb), -1, sv.shape[-1]) if sv.ndim >= 3 else sv.reshape(len(xb), -1, 1)), out


def _explain_torch(model: ModelAdapter, X: np.ndarray, bg: np.ndarray, kind: str, scale: str,
                   config: ShapConfig, ctx: RunContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    from audit import execution

    dtype = next(iter(model.module.parameters())).dtype  # type: ignore[attr-defined]
    bg_t = torch.as_tensor(bg, dtype=dtype)
    module = _explained_module(model, scale, bg_t[:2])
    with torch.no_grad():
        base = module(bg_t).double().numpy().mean(axis=0)
    n = len(X)
    seed = int(ctx.rng.integers(2**31 - 1))
    shards = _TorchShards(module, bg_t, kind, config.gradient_nsamples, seed, X, dtype)
    # rows in shards of _CHUNK, each with its own seed (seed + shard): the same values on any backend
    done = execution.map(shards, range(-(-n // _CHUNK)), n_jobs=1, prefer="threads",
                         progress=lambda d, t: ctx.progress(min(n, d * _CHUNK), n))
    parts, outs = [p for p, _ in done], [o for _, o in done]
    outputs = np.vstack(outs)
    if scale == "probability" and model.task == "binary":
        # Check against the adapter's own output, not the wrapper's: catches a wrong head.
        outputs = model.output(X).reshape(-1, 1).astype(float)
    elif scale == "logit" and model.task == "binary":
        p = np.clip(model.output(X).astype(float), 1e-12, 1 - 1e-12)
        outputs = np.log(p / (1 - p)).reshape(-1, 1)
    elif model.task == "multiclass" and scale == "probability":
        outputs = model.predict_proba(X).astype(float)
    elif model.task == "regression":
        outputs = model.predict(X).astype(float).reshape(-1, 1)
    return np.concatenate(parts, axis=0), np.atleast_1d(base), outputs


# --------------------------------------------------------------------------------------------
# TreeExplainer: tree models alone or as the last step of a scikit-learn Pipeline
# --------------------------------------------------------------------------------------------

# The tree models shap's TreeExplainer reads, by library (a subclass counts as its base class).
_TREE_CLASSES: dict[str, frozenset[str]] = {
    "sklearn": frozenset({
        "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
        "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
        "GradientBoostingClassifier", "GradientBoostingRegressor",
        "HistGradientBoostingClassifier", "HistGradientBoostingRegressor"}),
    "xgboost": frozenset({"XGBClassifier", "XGBRegressor", "XGBModel", "Booster"}),
    "lightgbm": frozenset({"LGBMClassifier", "LGBMRegressor", "LGBMModel", "Booster"}),
}
# Transformers whose output column i is a function of input column i alone.
_ELEMENTWISE = frozenset({"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "QuantileTransformer",
                          "PowerTransformer", "Binarizer", "OrdinalEncoder", "TargetEncoder"})


@dataclass(frozen=True)
class _Tree:
    """A tree model found in the audited model: ``final`` is what TreeExplainer reads, ``prefix``
    the Pipeline steps before it (None: the model is the tree itself)."""

    final: Any
    name: str             # the tree class (e.g. "xgboost.XGBClassifier")
    boosted: bool         # a sum of trees through a link (log-odds / softmax margins)
    prefix: Any | None
    raw: bool             # the model reads the decoded raw data frame


@dataclass(frozen=True)
class _TreeValues:
    values: np.ndarray    # (n, raw features, k): TreeExplainer's column values summed per raw feature
    base: np.ndarray      # (k,) mean explained output over the background (computed by the model)
    outputs: np.ndarray   # (n, k) explained output of the explained rows (computed by the model)
    f: Any                # the tree model's input rows -> explained output (for the brute-force check)
    X: np.ndarray         # the explained rows and background rows in the tree model's input space
    bg: np.ndarray
    groups: list[np.ndarray]   # per raw feature, its columns there
    why: str | None       # why these are not the raw features' exact Shapley values (None: they are)
    description: str
    summed: dict[str, tuple[str, ...]]


def _tree_class(est: Any) -> str | None:
    for cls in type(est).__mro__:
        lib = cls.__module__.split(".")[0]
        if cls.__name__ in _TREE_CLASSES.get(lib, ()):
            return f"{lib}.{cls.__name__}"
    return None


def _find_tree(model: ModelAdapter) -> _Tree | None:
    """The tree model TreeExplainer can explain, alone or as the last step of a Pipeline."""
    est = getattr(model, "estimator", None)
    if est is None:
        est = getattr(model, "booster", None)
    if est is None or "predict" not in model.capabilities:
        return None
    prefix = None
    if type(est).__name__ == "Pipeline" and type(est).__module__.startswith("sklearn"):
        if not est.steps:
            return None
        final = est.steps[-1][1]
        prefix = est[:-1] if len(est.steps) > 1 else None
    else:
        final = est
    name = _tree_class(final)
    if name is None:
        return None
    boosted = not name.startswith("sklearn") or "Boosting" in name
    return _Tree(final, name, boosted, prefix, bool(getattr(model, "raw", False)))


def _tree_scale(tree: _Tree, model: ModelAdapter, config: ShapConfig) -> str:
    """What TreeExplainer explains: the trees' own additive output. Forests average
    probabilities (explained as probabilities); boosted classifiers sum trees into a margin, the
    log-odds (binary) or the pre-softmax score of each class (multiclass), which is explained by
    default; ``scale = "probability"`` explains a boosted binary model's probability instead
    (shap's transform of the margin: additive, but not exact Shapley values)."""
    if model.task == "regression":
        return "value"
    if not tree.boosted:
        if config.scale == "logit":
            raise InvalidConfigError("The 'scale' option of shap must be \"probability\" or \"auto\" for "
                                     "forests and single trees explained by TreeExplainer (their log-odds "
                                     "are not additive over trees). Got \"logit\" instead.")
        return "probability"
    if config.scale == "probability":
        if model.task == "multiclass":
            raise InvalidConfigError(
                "The 'scale' option of shap cannot be \"probability\" for a boosted multiclass tree "
                "model: TreeExplainer explains its margins (scale = \"auto\"). Got \"probability\" "
                "instead; use scale = \"auto\", or explainer = \"kernel\" for probabilities.")
        return "probability"
    return "logit" if model.task == "binary" else "margin"


def _tree_input(tree: _Tree, model: ModelAdapter, data: AuditData, X: np.ndarray) -> np.ndarray:
    """Encoded rows -> the dense float matrix the tree model reads."""
    Z: Any = data.encoding.decode(X) if tree.raw else np.asarray(X, dtype=np.float32)
    if tree.prefix is not None:
        Z = tree.prefix.transform(Z)
    if hasattr(Z, "toarray"):
        Z = Z.toarray()
    return np.asarray(Z, dtype=float)


def _ranked(ensemble: Any, X: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace, per feature, the values of X and bg and the ensemble's thresholds on that feature
    by their ranks among all of them (in place for the thresholds): every comparison of a value
    with a threshold is unchanged, and ranks are exact in float32."""
    thr = np.array(ensemble.thresholds, dtype=float)
    feat = np.asarray(ensemble.features)
    Xr, bgr = np.empty_like(X), np.empty_like(bg)
    for j in range(X.shape[1]):
        at = feat == j
        levels = np.unique(np.concatenate([X[:, j], bg[:, j], thr[at]]))
        if len(levels) >= 2 ** 24:
            raise ValueError(f"column {j} has {len(levels):,} distinct values and thresholds, too many "
                             "to compare exactly in float32")
        Xr[:, j], bgr[:, j] = np.searchsorted(levels, X[:, j]), np.searchsorted(levels, bg[:, j])
        thr[at] = np.searchsorted(levels, thr[at])
    ensemble.thresholds = thr.astype(ensemble.thresholds.dtype)
    return Xr, bgr


def _tree_output(tree: _Tree, task: str, scale: str, Z: np.ndarray) -> np.ndarray:
    """What is explained (n, k), computed by the tree model on its own input."""
    if scale in ("logit", "margin") or (task == "regression" and tree.name.split(".")[0] != "sklearn"):
        return _margin(tree, Z)
    if task == "regression":
        return np.asarray(tree.final.predict(Z), dtype=float).reshape(len(Z), -1)
    if tree.name == "xgboost.Booster":
        import xgboost

        p = np.asarray(tree.final.predict(xgboost.DMatrix(Z)), dtype=float)
    elif tree.name == "lightgbm.Booster":
        p = np.asarray(tree.final.predict(Z), dtype=float)
    else:
        p = np.asarray(tree.final.predict_proba(Z), dtype=float)
    p = p.reshape(len(Z), -1)
    if task == "binary":
        return p[:, -1:]
    return p


def _margin(tree: _Tree, Z: np.ndarray) -> np.ndarray:
    """A boosted classifier's raw margins (n, k) on its own input."""
    lib = tree.name.split(".")[0]
    if tree.name == "xgboost.Booster":
        import xgboost

        out = tree.final.predict(xgboost.DMatrix(Z), output_margin=True)
    elif lib == "xgboost":
        out = tree.final.predict(Z, output_margin=True)
    elif lib == "lightgbm":
        out = tree.final.predict(Z, raw_score=True)
    else:
        out = tree.final.decision_function(Z)
    return np.asarray(out, dtype=float).reshape(len(Z), -1)


def _column_features(tree: _Tree, data: AuditData, probe: np.ndarray) -> tuple[list[frozenset[int]], list[str]]:
    """The raw features (indices in ``data.feature_names``) each column of the tree model's input
    depends on, traced through the Pipeline's fitted steps; and the reasons where one column
    depends on several (a transformer that mixes columns, or one whose mapping is unknown)."""
    Z: Any = data.encoding.decode(probe) if tree.raw else np.asarray(probe, dtype=np.float32)
    if tree.raw:
        sets = [frozenset({i}) for i in range(len(data.feature_names))]
    else:
        sets = [frozenset({int(j)}) for j in data.encoding.column_feature]
    mixers: list[str] = []
    if tree.prefix is not None:
        sets = _trace(tree.prefix, sets, Z, data.feature_names, mixers)
    return sets, mixers


def _width(Z: Any) -> int:
    return int(Z.shape[1]) if getattr(Z, "ndim", 2) == 2 else 1


def _take(Z: Any, idx: list[int]) -> Any:
    return Z.iloc[:, idx] if hasattr(Z, "iloc") else Z[:, idx]


def _trace(step: Any, sets: list[frozenset[int]], Z: Any, names: list[str],
           mixers: list[str]) -> list[frozenset[int]]:
    """Raw features of each output column of a fitted step, from those of its input columns."""
    kind = type(step).__name__
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return sets
    if kind == "Pipeline":
        for _, sub in step.steps:
            if sub is None or isinstance(sub, str):
                continue
            sets = _trace(sub, sets, Z, names, mixers)
            Z = sub.transform(Z)
        return sets
    if kind == "ColumnTransformer":
        width = max([sl.stop for sl in step.output_indices_.values()] + [0])
        out: list[frozenset[int]] = [frozenset()] * width
        for name, sub, _ in step.transformers_:
            sl = step.output_indices_[name]
            if sl.stop == sl.start:
                continue
            idx = list(step._transformer_to_input_indices[name])
            part = _trace(sub, [sets[i] for i in idx], _take(Z, idx), names, mixers)
            if len(part) != sl.stop - sl.start:
                raise ValueError(f"the ColumnTransformer's {name!r} output has an unexpected width")
            out[sl] = part
        return out
    n_out = _width(step.transform(Z))
    union = frozenset().union(*sets)
    if len(union) <= 1:                    # every output depends on (at most) one raw feature
        return [union] * n_out
    per = _per_column(step, len(sets))
    if per is None or len(per) != n_out:
        mixers.append(f"its {kind} step combines the raw features "
                      f"{', '.join(names[i] for i in sorted(union)[:6])}{' ...' if len(union) > 6 else ''}")
        return [union] * n_out
    return [frozenset().union(*(sets[i] for i in src)) for src in per]


def _per_column(step: Any, n_in: int) -> list[list[int]] | None:
    """For a transformer that works column by column: the input columns of each output column."""
    kind = type(step).__name__
    if kind == "FunctionTransformer" and step.func is None:
        return [[i] for i in range(n_in)]
    if kind in _ELEMENTWISE or (kind == "KBinsDiscretizer" and step.encode == "ordinal"):
        return [[i] for i in range(n_in)]
    counts = None
    if kind == "OneHotEncoder":
        counts = getattr(step, "_n_features_outs", None)
    elif kind == "KBinsDiscretizer":
        counts = list(step.n_bins_)
    if counts is not None:
        return [[i] for i, c in enumerate(counts) for _ in range(int(c))]
    if hasattr(step, "get_support"):          # feature selectors keep some input columns
        return [[int(i)] for i in step.get_support(indices=True)]
    if kind == "SimpleImputer":               # kept columns, then missing indicators, by name
        inputs = [str(c) for c in getattr(step, "feature_names_in_", [f"x{i}" for i in range(n_in)])]
        pos = {c: i for i, c in enumerate(inputs)}
        out = []
        for c in step.get_feature_names_out(inputs):
            c = str(c).removeprefix("missingindicator_") if str(c) not in pos else str(c)
            if c not in pos:
                return None
            out.append([pos[c]])
        return out
    return None


def _column_names(tree: _Tree, data: AuditData, width: int) -> list[str]:
    if tree.prefix is None:
        names = data.feature_names if tree.raw else data.encoding.columns
        return list(names) if len(names) == width else [f"column {i}" for i in range(width)]
    try:
        names = [str(c) for c in (tree.prefix.get_feature_names_out() if tree.raw else
                                  tree.prefix.get_feature_names_out(data.encoding.columns))]
    except Exception:  # noqa: BLE001 - a step without feature names
        names = []
    return names if len(names) == width else [f"column {i}" for i in range(width)]


def _explain_tree(tree: _Tree, model: ModelAdapter, data: AuditData, X: np.ndarray, bg: np.ndarray,
                  scale: str, notes: list[str]) -> _TreeValues | None:
    """Interventional Tree SHAP of the tree model's input columns over every background row,
    summed per raw feature; None (with a note) when the columns cannot be traced back to single
    raw features or shap cannot handle the model."""
    import shap

    short = tree.name.split(".")[-1]
    where = f"the Pipeline's final {short}" if tree.prefix is not None else short
    if tree.raw and tree.prefix is None and any(
            isinstance(f, CategoricalFeature) for f in data.encoding.features):
        notes.append(f"TreeExplainer was not used: {short} reads raw text columns itself.")
        return None
    if getattr(tree.final, "is_categorical_", None) is not None and np.any(tree.final.is_categorical_):
        notes.append(f"TreeExplainer was not used: {where} splits on native categorical features, "
                     "which shap's TreeExplainer does not read.")
        return None
    try:
        sets, mixers = _column_features(tree, data, bg[:2])
        Xt, bgt = _tree_input(tree, model, data, X), _tree_input(tree, model, data, bg)
        if len(sets) != Xt.shape[1]:
            raise ValueError(f"traced {len(sets)} columns but the pipeline produced {Xt.shape[1]}")
    except Exception as exc:  # noqa: BLE001 - any step that cannot be traced
        notes.append(f"TreeExplainer was not used: the columns {where} reads could not be traced back to "
                     f"raw features ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}).")
        return None
    if any(len(s) > 1 for s in sets):
        notes.append(f"TreeExplainer was not used: {where} reads columns that depend on several raw "
                     f"features ({mixers[0] if mixers else 'unknown step'}), so its values cannot be summed "
                     "back to raw features.")
        return None
    output = "probability" if scale == "probability" else "raw"
    try:
        # A bare array would be wrapped in maskers.Independent(max_samples=100), which silently
        # keeps only 100 background rows (values off by 0.02 with 400); pass every row.
        explainer = shap.TreeExplainer(tree.final, data=shap.maskers.Independent(bgt, max_samples=len(bgt)),
                                       feature_perturbation="interventional", model_output=output)
        if len(explainer.data) != len(bgt):
            raise RuntimeError(f"shap kept {len(explainer.data)} of {len(bgt)} background rows")
        # shap's C code compares float32 inputs with the thresholds, while HistGradientBoosting
        # and LightGBM compare float64 inputs and scikit-learn's other trees float32 inputs with
        # float64 midpoints: a value within float32 rounding of a threshold then goes down the other
        # branch (measured: additivity errors of 0.06-0.6 on HistGradientBoosting, 20 on a forest).
        # Replacing every value and threshold of a feature by its rank among them keeps each of
        # the model's own comparisons and is exact in float32.
        lib = tree.name.split(".")[0]
        dtype = np.float64 if lib == "lightgbm" or "HistGradientBoosting" in tree.name else np.float32
        Xr, bgr = _ranked(explainer.model, Xt.astype(dtype).astype(float), bgt.astype(dtype).astype(float))
        explainer.data, explainer.data_missing = bgr, np.zeros(bgr.shape, dtype=bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # feature-name warnings of models fitted on frames
            sv = np.asarray(explainer.shap_values(Xr, check_additivity=False), dtype=float)
    except Exception as exc:  # shap raises assorted errors for models it does not support
        notes.append(f"TreeExplainer could not explain {where} ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:120] if str(exc) else ''}).")
        return None
    def f(Z: np.ndarray) -> np.ndarray:
        return _tree_output(tree, model.task, scale, np.asarray(Z, dtype=float))
    # additivity is checked against the audited model's own output (decoding, preprocessing and all)
    g = ((lambda Z: _margin(tree, _tree_input(tree, model, data, Z))) if scale == "margin"
         else _explained_fn(model, scale, bg))
    outputs, base = g(X), g(bg).mean(axis=0)
    if sv.ndim == 2:
        sv = sv[:, :, None]
    elif model.task == "binary":           # forests: both classes' probabilities; keep the positive
        sv = sv[:, :, 1:2]
    # the mapping: input column -> its raw feature; summing keeps additivity
    member = np.zeros((len(sets), len(data.feature_names)))
    for c, s in enumerate(sets):
        member[c, list(s)] = 1.0
    values = np.einsum("ntk,tp->npk", sv, member)
    names = _column_names(tree, data, len(sets))
    summed = {feat: tuple(names[c] for c in np.flatnonzero(member[:, j])) for j, feat in enumerate(data.feature_names)}
    why = []
    if any(len(cols) > 1 for cols in summed.values()):
        why.append("are Shapley values of the model's input columns, so summed per one-hot (or otherwise "
                   "split) feature they are not that feature's Shapley value")
    if scale == "probability" and tree.boosted:
        why.append("for a boosted classifier are not exact on the probability scale")
    description = (f"{short} (the last step of a scikit-learn Pipeline, explained on the {len(sets):,} columns "
                   f"its preprocessing produces)" if tree.prefix is not None else short)
    if tree.prefix is not None:
        notes.append(f"TreeExplainer explained {where} on the {len(sets):,} columns the Pipeline's preprocessing "
                     f"produces; each raw feature's value is the sum of its columns' values (summed_columns).")
    return _TreeValues(values, np.atleast_1d(base), outputs, f, Xt, bgt,
                       [np.flatnonzero(member[:, j]) for j in range(member.shape[1])],
                       " and ".join(why) or None, description, summed)

def _explain_kernel(model: ModelAdapter, data: AuditData, X: np.ndarray, bg: np.ndarray,
                    weights: np.ndarray | None, scale: str, config: ShapConfig, ctx: RunContext
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KernelSHAP with the one-hot columns of each raw feature as one player (shap's groups)."""
    groups = [np.asarray(v) for v in data.encoding.groups.values()]

    def f(Z: np.ndarray) -> np.ndarray:
        return np.asarray(model.output(Z.astype(np.float32)), dtype=float)

    link = "logit" if scale == "logit" else "identity"
    if scale == "logit" and data.task != "binary":
        raise InvalidConfigError("The 'scale' option of shap may be \"logit\" with KernelSHAP only "
                                 "for binary models. Got \"logit\" instead.")
    nsamples = config.kernel_nsamples if config.kernel_nsamples is not None else "auto"
    values, base = _kernel_values(f, X, bg, weights, groups, list(data.feature_names), nsamples, link,
                                  int(ctx.rng.integers(2**31 - 1)), progress=ctx.progress)
    out = f(X.astype(float))
    out = out.reshape(len(X), -1)
    if link == "logit":
        p = np.clip(out, 1e-12, 1 - 1e-12)
        out = np.log(p / (1 - p))
    return values, base, out


def _kernel_values(f: Any, X: np.ndarray, bg: np.ndarray, weights: np.ndarray | None,
                   groups: list[np.ndarray], names: list[str], nsamples: int | str, link: str, seed: int,
                   progress: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """shap's KernelExplainer with each group of columns as one player: values (n, p, k), base (k,)."""
    import shap
    from shap.utils._legacy import DenseData

    flat_bg = bg.reshape(len(bg), -1).astype(float)
    args: list[Any] = [groups] + ([np.asarray(weights, dtype=float)] if weights is not None else [])
    from audit import execution

    explainer = _grouped_kernel_class()(f, DenseData(flat_bg, list(names), *args), link=link)
    n = len(X)

    def explain(r: range) -> np.ndarray:
        import copy

        # a writable copy (a Ray worker receives read-only arrays; shap_values writes its
        # buffers), sharing the model
        ex = copy.deepcopy(explainer, memo={id(f): f})
        # shap's KernelExplainer draws coalitions from numpy's global stream: seed it from the
        # method's seed and the shard's index alone, so no shard's draws depend on another's.
        np.random.seed(int(execution.chunk_rng(seed, r.start // _KERNEL_SHARD).integers(2**31 - 1)))
        sv = ex.shap_values(X[r.start:r.stop].astype(float), nsamples=nsamples, l1_reg=False, silent=True)
        sv = np.asarray(sv, dtype=float)
        return sv if sv.ndim == 3 else sv[:, :, None]

    parts = execution.map(explain, execution.split_by(n, _KERNEL_SHARD), n_jobs=1, prefer="threads",
                          progress=None if progress is None else lambda d, t: progress(min(n, d * _KERNEL_SHARD), n))
    return np.concatenate(parts, axis=0), np.atleast_1d(np.asarray(explainer.expected_value, dtype=float))


@functools.cache
def _grouped_kernel_class() -> Any:
    """shap's KernelExplainer with its two per-column Python loops vectorised (issue 17).

    It computes the same estimator as ``shap.KernelExplainer``, call for call: the same coalitions
    (drawn from numpy's global stream in the same order), the same kernel weights and the same
    regression; only where each coalition's present columns are written into the synthetic rows
    (once for every coalition, just before the model runs, instead of one column at a time per
    coalition) and how varying groups are found (one comparison of the whole background) change.
    With grouped features (one-hot categoricals) those loops cost as much as the model itself.
    """
    import shap
    import scipy.sparse

    class GroupedKernelExplainer(shap.KernelExplainer):  # type: ignore[misc]
        def varying_groups(self, x: Any) -> np.ndarray:
            if scipy.sparse.issparse(x) or self.data.groups is None or scipy.sparse.issparse(self.data.data):
                return super().varying_groups(x)
            # shap: a group varies unless np.allclose(x[group], background[:, group], equal_nan=True)
            close = np.isclose(np.asarray(x)[0][None, :], self.data.data, equal_nan=True).all(axis=0)
            return np.flatnonzero([not close[np.asarray(g, dtype=int)].all() for g in self.data.groups])

        def addsample(self, x: Any, m: np.ndarray, w: float) -> None:
            if scipy.sparse.issparse(x) or scipy.sparse.issparse(self.synth_data):
                return super().addsample(x, m, w)
            self._x = np.asarray(x)[0]
            self.maskMatrix[self.nsamplesAdded, :] = m
            self.kernelWeights[self.nsamplesAdded] = w
            self.nsamplesAdded += 1

        def run(self) -> None:
            a, b, n = self.nsamplesRun, self.nsamplesAdded, self.N
            if b > a and not scipy.sparse.issparse(self.synth_data):
                member = np.zeros((self.M, self.synth_data.shape[1]))
                for j, g in enumerate(self.varyingFeatureGroups):
                    member[j, np.atleast_1d(np.asarray(g, dtype=int))] = 1.0
                present = ((self.maskMatrix[a:b] == 1.0).astype(float) @ member) > 0   # (samples, columns)
                block = self.synth_data[a * n:b * n].reshape(b - a, n, -1)            # a view
                np.copyto(block, self._x[None, None, :], where=present[:, None, :])
            super().run()

    return GroupedKernelExplainer


def _modal_figures(m: ModalAttribution, name: str = "SHAP", *, by_class: bool) -> dict[str, Any]:
    from audit.core.attribution import bar_totals_figure, map_figures

    figs = map_figures(m, f"{name} values", by_class=by_class)
    figs["totals"] = bar_totals_figure(m.group_importance, unit=m.unit, title=f"{name}: totals per group")
    return figs


def _waterfall_rows(out: np.ndarray, model: ModelAdapter, task: str, k: int) -> tuple[int, ...]:
    """Positions (in the explained rows) of the highest, lowest and most borderline outputs."""
    if k == 0 or len(out) == 0:
        return ()
    order = np.argsort(out, kind="stable")
    centre = model.threshold if task == "binary" else float(np.median(out))
    picks = [int(order[-1]), int(order[0]), int(np.argmin(np.abs(out - centre)))]
    return tuple(dict.fromkeys(picks))[:k]


# --------------------------------------------------------------------------------------------
# Figures (matplotlib, drawn from the result; raw feature names and units)
# --------------------------------------------------------------------------------------------


def _raw_column(data: AuditData, rows: np.ndarray, feat: str) -> tuple[np.ndarray | None, list[str] | None]:
    """(numeric values, None) for numeric features; (level codes, levels) for categoricals."""
    f = data.encoding.feature(feat)
    col = data.frame[feat].iloc[rows] if feat in data.frame.columns else None
    if isinstance(f, CategoricalFeature):
        idx = data.encoding.groups[feat]
        decoded = f.decode(data.X[rows][:, idx])
        lookup = {lvl: i for i, lvl in enumerate(f.levels)}
        return np.array([lookup[str(v)] for v in decoded], dtype=float), list(f.levels)
    if col is None:
        return f.decode(data.X[rows][:, data.encoding.groups[feat]]), None
    return np.asarray(col, dtype=float), None


def _beeswarm(result: ShapResult, data: AuditData) -> Any:
    from audit.core.plots import new_figure, shorten

    shown = list(result.ranking[:result.max_display])[::-1]
    fig, ax = new_figure(6.5, 0.9 + 0.32 * len(shown))
    rows = np.asarray(result.rows)
    rng = np.random.default_rng(0)  # jitter only; not part of any result
    values = result.values
    index = {f: j for j, f in enumerate(result.features)}
    scatter = None
    for y, feat in enumerate(shown):
        v = values[:, index[feat]]
        jitter = _swarm_offsets(v, rng) * 0.35
        raw, levels = _raw_column(data, rows, feat)
        if levels is None and raw is not None and np.ptp(raw) > 0:
            lo, hi = np.nanpercentile(raw, [5, 95])
            colour = np.clip((raw - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
            scatter = ax.scatter(v, y + jitter, c=colour, cmap="coolwarm", s=5, lw=0, alpha=0.8,
                                 vmin=0, vmax=1, rasterized=True)
        else:
            ax.scatter(v, y + jitter, color="#777777", s=5, lw=0, alpha=0.6, rasterized=True)
    ax.axvline(0, color="#999999", lw=0.8)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([shorten(f) + (" (cat.)" if isinstance(data.encoding.feature(f), CategoricalFeature) else "")
                        for f in shown])
    ax.set_xlabel(f"{value_name(result.explainer)} value (effect on {result.explained})")
    ax.set_title(f"{value_name(result.explainer)} values per row (colour: feature value, blue low → red high; "
                 "grey: categorical)")
    if scatter is not None:
        cb = fig.colorbar(scatter, ax=ax, pad=0.01, aspect=30)
        cb.set_ticks([0, 1])
        cb.set_ticklabels(["low", "high"])
    fig.tight_layout()
    return fig


def _swarm_offsets(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vertical offsets that widen with local density (a cheap beeswarm)."""
    if len(v) < 2 or np.ptp(v) == 0:
        return rng.uniform(-0.5, 0.5, len(v)) * 0.3
    bins = np.clip(((v - v.min()) / np.ptp(v) * 50).astype(int), 0, 50)
    counts = np.bincount(bins, minlength=51)
    density = counts[bins] / counts.max()
    return rng.uniform(-1, 1, len(v)) * density


def _dependence(result: ShapResult, data: AuditData, feat: str) -> Any:
    from audit.core.plots import NEGATIVE, new_figure

    rows = np.asarray(result.rows)
    v = result.values[:, result.features.index(feat)]
    raw, levels = _raw_column(data, rows, feat)
    fig, ax = new_figure(6.5, 2.6)
    if levels is not None:
        rng = np.random.default_rng(0)
        ax.scatter(raw + rng.uniform(-0.25, 0.25, len(raw)), v, s=5, lw=0, alpha=0.6, color=NEGATIVE,
                   rasterized=True)
        present = sorted({int(c) for c in raw})
        ax.set_xticks(present)
        ax.set_xticklabels([levels[c] for c in present], rotation=45, ha="right", fontsize=7)
    else:
        ax.scatter(raw, v, s=5, lw=0, alpha=0.6, color=NEGATIVE, rasterized=True)
        ax.set_xlabel(feat)
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set_ylabel(f"{value_name(result.explainer)} value")
    ax.set_title(f"Dependence: {value_name(result.explainer)} value of {feat} against its value")
    fig.tight_layout()
    return fig


def _waterfall(result: ShapResult, pos: int, data: AuditData) -> Any:
    from audit.core.plots import NEGATIVE, POSITIVE, new_figure, shorten

    v = result.values[pos]
    order = np.argsort(-np.abs(v), kind="stable")
    k = min(10, len(v))
    shown = list(order[:k])
    rest = float(v[order[k:]].sum()) if len(v) > k else None
    labels = []
    row = result.rows[pos]
    for j in shown:
        feat = result.features[j]
        value = data.encoding.decode(data.X[row:row + 1]).iloc[0][feat]
        shown_value = (f"{value:,.6g}" if isinstance(value, (int, float, np.integer, np.floating))
                       else str(value))
        labels.append(f"{shorten(feat, 24)} = {shorten(shown_value, 20)}")
    contrib = [float(v[j]) for j in shown]
    if rest is not None:
        labels.append(f"{len(v) - k} other features")
        contrib.append(rest)
    fig, ax = new_figure(6.5, 0.9 + 0.3 * len(contrib))
    left = float(result.base_values[pos])
    for i, c in enumerate(contrib):
        ax.barh(len(contrib) - 1 - i, c, left=left, color=POSITIVE if c >= 0 else NEGATIVE, height=0.6)
        left += c
    ax.axvline(float(result.base_values[pos]), color="#555555", ls=":", lw=0.8)
    ax.axvline(float(result.outputs[pos]), color="#000000", lw=0.8)
    ax.set_yticks(range(len(contrib)))
    ax.set_yticklabels(labels[::-1], fontsize=7)
    cls = f" [{result.explained_class[pos]}]" if result.explained_class else ""
    ax.set_xlabel(f"{result.explained}{cls}: base {result.base_values[pos]:.3g} (dotted) → "
                  f"output {result.outputs[pos]:.3g} (solid)")
    ax.set_title(f"Row {data.user_row(row)}: how each feature moves the output from the background mean")
    fig.tight_layout()
    return fig


__all__ = ["Shap", "ShapConfig", "ShapResult"]
