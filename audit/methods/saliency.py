"""Gradient and perturbation attributions through captum, for differentiable (torch) models.

Six attribution methods are computed on a seeded sample of audited rows:

- ``saliency``: the input gradient ∂f/∂x (a local sensitivity, not an additive attribution);
- ``input_x_gradient``: x ⊙ ∂f/∂x;
- ``integrated_gradients``: (x − b) ⊙ ∫ ∂f/∂x along the straight path from the baseline ``b``;
  sums to f(x) − f(b) up to the reported convergence delta (completeness);
- ``smoothgrad``: the gradient averaged over Gaussian-noised copies of x (NoiseTunnel);
- ``gradient_shap``: expected gradients with baselines drawn from a background sample;
- ``occlusion``: f(x) − f(x with the raw feature replaced by the baseline's value), one raw
  feature at a time (captum FeatureAblation with a mask grouping each feature's encoded columns).

The explained scalar is P(positive class) for binary models, the predicted class's probability
(or each class's, ``multiclass_target = "each"``) for multiclass models and the predicted value
for regression. The computation in :func:`attribute` is shape-agnostic (any input tensor shape
captum accepts); only :func:`to_raw_features` knows about tabular encodings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.attribution import (RED_BLUE, ModalAttribution, baseline_row, bootstrap_mean_abs,
                                    check_finite, explained_output, group_values, groupings,
                                    modal_attribution, reference_data, rnn_backward_mode,
                                    sample_background, sample_rows)
from audit.core.dataset import AuditData, Encoding
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               OptionError, Options, RunContext)
from audit.core.results import Attributions, Estimate, estimates
from audit.errors import InvalidConfigError

METHODS: tuple[str, ...] = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad",
                            "gradient_shap", "occlusion")
LABELS: dict[str, str] = {
    "saliency": "Saliency (gradient)",
    "input_x_gradient": "Input × Gradient",
    "integrated_gradients": "Integrated Gradients",
    "smoothgrad": "SmoothGrad",
    "gradient_shap": "GradientSHAP (captum)",
    "occlusion": "Occlusion (feature ablation)",
}
SHORT: dict[str, str] = {"saliency": "Grad", "input_x_gradient": "I×G", "integrated_gradients": "IG",
                         "smoothgrad": "SmoothG", "gradient_shap": "GradSHAP", "occlusion": "Occl"}
# A re-run on another model (the sanity check re-runs every method once per re-initialized
# layer and repeat) draws fewer noisy samples than the report's own run; SmoothGrad (noise on
# noise) and occlusion (one model pass per feature) are re-run only when asked for by name.
RECOMPUTE_SAMPLES = {"smoothgrad_samples": 10, "gradient_shap_samples": 20}
RECOMPUTE_BY_DEFAULT = frozenset({"saliency", "input_x_gradient", "integrated_gradients", "gradient_shap"})
# Plain gradients are sensitivities, not shares of f(x) - f(b): summing them over a one-hot
# group would be the derivative along a direction no real row can move in, so a raw feature
# keeps its most sensitive column (with its sign) instead.
GRADIENT_ONLY = frozenset({"saliency", "smoothgrad"})
# Occlusion of a group gives every column of the group the group's whole effect: take one.
GROUP_LEVEL = frozenset({"occlusion"})


@dataclass(frozen=True)
class SaliencyConfig(MethodConfig):
    """Options of the captum attributions.

    methods : which attribution methods to compute (see :data:`METHODS`).
    n_rows : rows sampled (seeded) for the global importances; all rows when the data has fewer.
    n_selected : rows explained one by one in the report.
    baseline : ``"mean_mode"`` (numeric columns at their mean, categoricals at their most frequent
        level) or ``"zeros"`` (the all-zero encoded row).
    baseline_data : compute the baseline (and draw the GradientSHAP background) from the training
        data when the config names it (``"train"``), else from the audited rows.
    ig_steps : integration steps of Integrated Gradients (Gauss-Legendre).
    smoothgrad_samples, smoothgrad_stdev : noisy copies per row and the noise's standard deviation
        in encoded units (numeric columns are standardized, so 0.15 is 15 % of a standard deviation).
    gradient_shap_samples, n_background : GradientSHAP draws per row and background rows.
    multiclass_target : explain each row's predicted class, or every class.
    n_bootstrap : bootstrap resamples of the rows for the intervals of the global importances.
    delta_tolerance : relative IG convergence error, |Δ| / |f(x) − f(b)|, above which the report
        warns that the integral is inaccurate.
    batch_rows : rows per captum call (bounds memory: IG expands each row ``ig_steps`` times).
    occlusion_window : images and sequences: what occlusion removes at once. ``"auto"``: the
        layout's patches for images (e.g. 2 x 2 pixels on 8 x 8 digits), one (lag, feature) cell for
        sequences; or ``"pixel"``, ``"patch"``, ``"cell"``, ``"lag"`` (every feature at one step),
        ``"feature"`` (every step of one indicator).
    n_per_class : images: example heatmaps per predicted class.
    """

    methods: tuple[str, ...] = METHODS
    n_rows: int = 1000
    n_selected: int = 4
    baseline: Literal["mean_mode", "zeros"] = "mean_mode"
    baseline_data: Literal["train", "audited"] = "train"
    ig_steps: int = 50
    smoothgrad_samples: int = 25
    smoothgrad_stdev: float = 0.15
    gradient_shap_samples: int = 50
    n_background: int = 100
    multiclass_target: Literal["predicted", "each"] = "predicted"
    n_bootstrap: int = 200
    delta_tolerance: float = 0.05
    batch_rows: int = 1000
    occlusion_window: Literal["auto", "pixel", "patch", "cell", "lag", "feature"] = "auto"
    n_per_class: int = 2

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "methods": Options(METHODS),
        "smoothgrad_stdev": Interval(0, None, closed="neither"),
        "delta_tolerance": Interval(0, None, closed="neither"),
    }

    def validate(self) -> None:
        if not self.methods:
            raise OptionError("methods", f"a non-empty list from {list(METHODS)}", [])


@dataclass(frozen=True)
class ConvergenceDelta:
    """Integrated Gradients' completeness error Δ = Σ attributions − (f(x) − f(b)), over rows."""

    n_steps: int
    max_abs: float
    mean_abs: float
    max_relative: float | None    # |Δ| / |f(x) − f(b)| over rows where that moves ≥ 0.01 (see run)
    mean_relative: float | None
    within_tolerance: bool


@dataclass(frozen=True)
class RowAttribution:
    """One selected row: why it was chosen, its raw values, and every method's attributions."""

    row: int                                 # index in the audited data
    row_number: int                          # the row as you count it in the data file (from 1)
    reason: str
    output: float                            # the explained output f(x)
    explained: str                           # which output (e.g. "P(>50K)")
    values: dict[str, str]                   # raw feature -> value as text
    attributions: dict[str, dict[str, float]]  # method -> raw feature -> attribution


@dataclass(frozen=True)
class SaliencyResult(MethodResult):
    explained: str                           # sentence: which output the attributions explain
    outputs: tuple[str, ...]                 # the explained outputs (one, or one per class)
    baseline: str                            # sentence: how the baseline row was built
    baseline_values: dict[str, str]          # raw feature -> baseline value as text
    baseline_output: tuple[float, ...]       # f(baseline) per explained output
    methods: tuple[str, ...]
    labels: dict[str, str]
    n_rows: int
    n_available: int
    sampled: bool
    seed_note: str
    background: str                          # sentence: GradientSHAP's background sample
    # method -> feature -> mean |attr|, with its bootstrap interval (none when every class is
    # explained: the rows behind each class's mean differ)
    global_importance: dict[str, dict[str, Estimate]]
    per_class_importance: dict[str, dict[str, dict[str, float]]] | None
    ig_delta: ConvergenceDelta | None
    rows: tuple[RowAttribution, ...]
    torch_threads: int
    # Images and sequences: heatmaps of the main method, and every method's group totals
    # (method -> grouping -> group -> mean |group total|); None for tabular data.
    modal: ModalAttribution | None = None
    group_importance: dict[str, dict[str, dict[str, float]]] | None = None
    occlusion_window: str | None = None
    _seconds: dict[str, float] | None = None   # wall times (not serialised: not reproducible)
    # Not serialised: per-row raw-feature attributions of the primary explained output, for the
    # agreement method (bootstrap of ranks, deletion curves). Shape (n_rows, n_features).
    _per_row: dict[str, np.ndarray] | None = None
    _row_index: np.ndarray | None = None

    _window: str | None = None                 # the occlusion window, for the attributions
    _grouping: str = "feature"                 # "element" for images and sequences
    _explains: str = "output"

    @property
    def features(self) -> list[str]:
        first = next(iter(self.global_importance.values()), {})
        return list(first)

    def importance_values(self, method: str) -> dict[str, float]:
        """Feature -> mean |attribution| of one captum method (the Estimates' values)."""
        return {f: e.value for f, e in self.global_importance[method].items()}

    def attributions(self) -> tuple[Attributions, ...]:
        """One :class:`Attributions` per captum method, each able to recompute itself on another
        model (the sanity check's re-initialized copies)."""
        if self._per_row is None or self._row_index is None:
            return ()
        return tuple(Attributions(
            key=m, label=LABELS[m], short=SHORT[m], origin=f"saliency: {LABELS[m]}",
            features=tuple(self.features), grouping=self._grouping, explains=self._explains,  # type: ignore[arg-type]
            explained=self.explained, importance=self.global_importance[m], values=v,
            rows=np.asarray(self._row_index, dtype=int),
            how="mean_abs" if m in GRADIENT_ONLY else "sum",
            window=self._window if m in GROUP_LEVEL else None,
            recompute=functools.partial(recompute, method=m, window=self._window or "auto"),
            recompute_by_default=m in RECOMPUTE_BY_DEFAULT)
            for m, v in self._per_row.items())


# --------------------------------------------------------------------------------------------
# The modality-free core
# --------------------------------------------------------------------------------------------


def attribute(forward: Callable[[Any], Any], inputs: Any, *, methods: Sequence[str], baseline: Any,
              background: Any, target: Any, feature_mask: Any = None, ig_steps: int = 50,
              smoothgrad_samples: int = 25, smoothgrad_stdev: float = 0.15,
              gradient_shap_samples: int = 50, batch_rows: int = 1000,
              seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, float]]:
    """Attributions of ``forward(x)[:, target]`` for every row of ``inputs``, by captum.

    Parameters
    ----------
    forward : callable
        Tensor ``(n, *shape)`` -> differentiable tensor ``(n, k)``.
    inputs : torch.Tensor
        ``(n, *shape)``; any shape the model accepts (tabular rows, images, sequences).
    methods : sequence of str
        Names from :data:`METHODS`.
    baseline : torch.Tensor
        ``(1, *shape)`` reference input for Integrated Gradients and occlusion.
    background : torch.Tensor
        ``(m, *shape)`` rows GradientSHAP draws its baselines from.
    target : int or torch.Tensor
        Output column explained (one index, or one per row).
    feature_mask : torch.Tensor, optional
        ``(1, *shape)`` integer ids; occlusion removes all elements sharing an id together.
    seed : int
        Seeds torch's and numpy's generators (SmoothGrad noise, GradientSHAP draws) inside a
        forked RNG state: rows in shards of ``batch_rows`` (chunks of :func:`audit.execution.map`),
        shard ``i`` seeded with ``seed + i``.

    Returns
    -------
    attributions : dict of method -> ndarray ``(n, *shape)``
    delta : ndarray ``(n,)`` or None
        Integrated Gradients' convergence delta per row.
    seconds : dict of method -> seconds

    Examples
    --------
    >>> import torch
    >>> f = lambda x: torch.cat([1 - x.sum(1, keepdim=True), x.sum(1, keepdim=True)], 1)
    >>> a, d, _ = attribute(f, torch.ones(2, 3), methods=["integrated_gradients"],
    ...                     baseline=torch.zeros(1, 3), background=torch.zeros(4, 3), target=1)
    >>> a["integrated_gradients"].round(3).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    import torch

    from audit import execution

    n = int(inputs.shape[0])
    width = int(np.prod(inputs.shape[1:])) if inputs.ndim > 1 else 1

    def shard(i: int) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, float]]:
        """Rows ``i * batch_rows`` onward: one chunk of :func:`audit.execution.map`."""
        from captum.attr import (FeatureAblation, GradientShap, InputXGradient, IntegratedGradients,
                                 NoiseTunnel, Saliency)

        out: dict[str, np.ndarray] = {}
        secs = {m: 0.0 for m in methods}
        delta = None
        # captum draws GradientSHAP's baselines with numpy's global generator and noise with
        # torch's: each shard seeds both from the seed and its index (the first shard with the
        # seed itself), and the caller's global states are given back afterwards.
        np_state = np.random.get_state()
        np.random.seed((seed + i) % 2**32)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                x = inputs[i * batch_rows:(i + 1) * batch_rows].detach().clone().float().requires_grad_()
                tgt = (target[i * batch_rows:(i + 1) * batch_rows]
                       if isinstance(target, torch.Tensor) and target.ndim else target)
                for m in methods:
                    t0 = time.perf_counter()
                    if m == "saliency":
                        a = Saliency(forward).attribute(x, target=tgt, abs=False)
                    elif m == "input_x_gradient":
                        a = InputXGradient(forward).attribute(x, target=tgt)
                    elif m == "integrated_gradients":
                        # Bound the expanded batch (rows x steps) for wide inputs such as images.
                        internal = max(ig_steps, (1 << 20) // max(width, 1))
                        a, d = IntegratedGradients(forward).attribute(
                            x, baselines=baseline, target=tgt, n_steps=ig_steps,
                            internal_batch_size=internal, return_convergence_delta=True)
                        delta = d.detach().double().numpy().reshape(-1)
                    elif m == "smoothgrad":
                        a = NoiseTunnel(Saliency(forward)).attribute(
                            x, nt_type="smoothgrad", nt_samples=smoothgrad_samples,
                            nt_samples_batch_size=smoothgrad_samples, stdevs=smoothgrad_stdev,
                            target=tgt, abs=False)
                    elif m == "gradient_shap":
                        a = GradientShap(forward).attribute(x, baselines=background, target=tgt,
                                                            n_samples=gradient_shap_samples, stdevs=0.0)
                    elif m == "occlusion":
                        groups = int(feature_mask.max()) + 1 if feature_mask is not None else width
                        a = FeatureAblation(forward).attribute(
                            x, baselines=baseline, target=tgt, feature_mask=feature_mask,
                            perturbations_per_eval=max(1, min(groups, (1 << 22) // max(1, len(x) * width))))
                    else:  # validated in the config; kept for direct callers
                        raise InvalidConfigError(f"Unknown attribution method {m!r}. Known: {list(METHODS)}.")
                    out[m] = a.detach().double().numpy()
                    secs[m] += time.perf_counter() - t0
        finally:
            np.random.set_state(np_state)
        return out, delta, secs

    parts = execution.map(shard, range(-(-n // batch_rows)), n_jobs=1, prefer="threads")
    arrays = {m: np.concatenate([p[0][m] for p in parts], axis=0) for m in methods}
    deltas = [p[1] for p in parts if p[1] is not None]
    seconds = {m: sum(p[2][m] for p in parts) for m in methods}
    return arrays, (np.concatenate(deltas) if deltas else None), seconds


def to_raw_features(attr: np.ndarray, encoding: Encoding, method: str) -> np.ndarray:
    """Encoded-column attributions ``(n, d)`` -> raw-feature attributions ``(n, F)``.

    Additive attributions (Integrated Gradients, Input × Gradient, GradientSHAP) are summed over
    a feature's columns, which keeps completeness exact; occlusion already acts on the whole
    group, so one column carries the value; plain gradients keep the column of largest magnitude.
    """
    attr = np.asarray(attr, dtype=float).reshape(len(attr), -1)
    if method in GROUP_LEVEL:
        return np.stack([attr[:, idx[0]] for idx in encoding.groups.values()], axis=1)
    if method in GRADIENT_ONLY:
        cols = []
        for idx in encoding.groups.values():
            block = attr[:, idx]
            pick = np.argmax(np.abs(block), axis=1)
            cols.append(block[np.arange(len(block)), pick])
        return np.stack(cols, axis=1)
    return encoding.aggregate(attr, "sum")


def select_rows(scores: np.ndarray, task: str, n: int, rng: np.random.Generator,
                threshold: float = 0.5) -> list[tuple[int, str]]:
    """Rows worth explaining one by one: the most confident of each outcome, the most borderline,
    then random rows (reproducible from ``rng``)."""
    picks: list[tuple[int, str]] = []
    if n <= 0 or len(scores) == 0:
        return picks

    def add(i: int, why: str) -> None:
        if len(picks) < n and all(int(i) != p for p, _ in picks):
            picks.append((int(i), why))

    if task == "binary":
        add(int(np.argmax(scores)), "most confident positive")
        add(int(np.argmin(scores)), "most confident negative")
        add(int(np.argmin(np.abs(scores - threshold))), "closest to the decision threshold")
    elif task == "regression":
        add(int(np.argmax(scores)), "highest prediction")
        add(int(np.argmin(scores)), "lowest prediction")
        add(int(np.argsort(scores)[len(scores) // 2]), "median prediction")
    else:
        pred = np.argmax(scores, axis=1)
        for k in range(scores.shape[1]):
            members = np.flatnonzero(pred == k)
            if members.size:
                add(int(members[np.argmax(scores[members, k])]), f"most confident of class {k}")
        top2 = np.sort(scores, axis=1)[:, -2:]
        add(int(np.argmin(top2[:, 1] - top2[:, 0])), "smallest margin between the top two classes")
    order = rng.permutation(len(scores))
    for i in order:
        if len(picks) >= min(n, len(scores)):
            break
        add(int(i), "random row")
    return picks


def explain_rows(model: ModelAdapter, data: AuditData, rows: np.ndarray, config: SaliencyConfig, *,
                 baseline: np.ndarray, background: np.ndarray, seed: int,
                 methods: Sequence[str] | None = None, forward: Callable[[Any], Any] | None = None,
                 targets: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, float]]:
    """Encoded-column attributions of the primary explained output on ``rows`` (tabular layer).

    The primary output is P(positive) (binary), the value (regression) or, for multiclass, the
    class in ``targets`` (default: each row's predicted class). ``forward`` defaults to the
    model's; the agreement method passes a randomized copy's for its sanity check.
    """
    import torch

    X = data.X[rows]
    if data.task == "binary":
        target: Any = 1
    elif data.task == "regression":
        target = 0
    else:
        if targets is None:
            targets = np.argmax(model.predict_proba(X), axis=1)
        target = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    ids = data.layout.occlusion_ids(config.occlusion_window)
    mask = None if ids is None else torch.as_tensor(ids)
    # cuDNN RNN backward needs training mode: switch RNN layers (dropout off) while on CUDA.
    with rnn_backward_mode(getattr(model, "module", None)):
        return attribute(
            forward or model.forward, torch.as_tensor(X, dtype=torch.float32),
            methods=tuple(methods or config.methods), baseline=torch.as_tensor(baseline),
            background=torch.as_tensor(background, dtype=torch.float32), target=target,
            feature_mask=mask, ig_steps=config.ig_steps, smoothgrad_samples=config.smoothgrad_samples,
            smoothgrad_stdev=config.smoothgrad_stdev, gradient_shap_samples=config.gradient_shap_samples,
            batch_rows=config.batch_rows, seed=seed)


def recompute(model: ModelAdapter, data: AuditData, rows: np.ndarray, *, baseline: np.ndarray,
              background: np.ndarray, seed: int, targets: np.ndarray | None, method: str,
              window: str = "auto") -> np.ndarray:
    """One captum method's raw-feature (or per-element) attributions of ``rows`` on ``model``,
    with the caller's baseline, background and seed: :class:`Attributions.recompute`."""
    cfg = SaliencyConfig(methods=(method,), n_background=len(background), occlusion_window=window,  # type: ignore[arg-type]
                         **RECOMPUTE_SAMPLES)
    enc, _, _ = explain_rows(model, data, rows, cfg, baseline=baseline, background=background,
                             seed=seed, forward=model.forward, targets=targets)
    return to_raw_features(enc[method], data.encoding, method)


class Saliency(AuditMethod[SaliencyConfig, SaliencyResult]):
    """Captum gradient and occlusion attributions, reported per raw feature."""

    name = "saliency"
    title = "Gradient attributions (captum)"
    requires = frozenset({"gradients"})
    libraries = ("captum.attr",)
    modalities = frozenset({"tabular", "image", "sequence"})
    Config = SaliencyConfig

    def run(self, model: ModelAdapter, data: AuditData, config: SaliencyConfig,
            ctx: RunContext) -> SaliencyResult:
        import torch

        t_all = time.perf_counter()
        check_finite(data.X, "Saliency")
        ref, ref_name = reference_data(data, ctx, config.baseline_data)
        base, base_text, base_how = baseline_row(ref, config.baseline)
        background, _, bg_note = sample_background(ref.X, config.n_background, ctx.rng, source=ref_name)
        rows, sampled = sample_rows(data.n_rows, config.n_rows, ctx.rng)
        seed = int(ctx.rng.integers(2**31 - 1))
        explained, outputs = explained_output(model, data)
        scores_all = model.output(data.X)
        enc = data.encoding
        feats = data.feature_names

        classes_to_explain: list[int | None]
        if data.task == "multiclass" and config.multiclass_target == "each":
            classes_to_explain = list(range(model.n_classes))
            explained = "the predicted probability of every class, one class at a time"
        else:
            classes_to_explain = [None]
        pred_class = (np.argmax(scores_all[rows], axis=1) if data.task == "multiclass" else None)

        per_class: dict[str, dict[str, dict[str, float]]] = {}
        per_row_raw: dict[str, np.ndarray] = {}
        deltas = None
        seconds: dict[str, float] = {}
        for ci, k in enumerate(classes_to_explain):
            targets = None if k is None else np.full(len(rows), k)
            enc_attr, d, secs = explain_rows(model, data, rows, config, baseline=base,
                                             background=background, seed=seed + ci, targets=targets)
            for m, s in secs.items():
                seconds[m] = seconds.get(m, 0.0) + s
            raw = {m: to_raw_features(a, enc, m) for m, a in enc_attr.items()}
            if k is not None:
                per_class[outputs[k]] = {m: dict(zip(feats, np.abs(v).mean(0).tolist(), strict=True))
                                         for m, v in raw.items()}
                sel = pred_class == k
                for m, v in raw.items():
                    per_row_raw.setdefault(m, np.zeros_like(v))[sel] = v[sel]
            else:
                per_row_raw = raw
            if deltas is None:  # for "each", the first class's deltas (matched below)
                deltas = d
            ctx.progress(ci + 1, len(classes_to_explain) + 1)

        if per_class:
            global_imp = {m: {f: float(np.mean([per_class[o][m][f] for o in per_class])) for f in feats}
                          for m in config.methods}
        else:
            global_imp = {m: dict(zip(feats, np.abs(v).mean(0).tolist(), strict=True))
                          for m, v in per_row_raw.items()}
        importance = {m: estimates(feats, [global_imp[m][f] for f in feats]) for m in global_imp}
        if config.n_bootstrap and not per_class:
            for m, v in per_row_raw.items():
                band = bootstrap_mean_abs(v, n_bootstrap=config.n_bootstrap, rng=ctx.rng)
                if band.n_bootstrap:
                    importance[m] = estimates(feats, [global_imp[m][f] for f in feats], band.low,
                                              band.high, level=band.confidence,
                                              method=band.estimates(feats)[feats[0]].method)

        modal, group_imp, occ = None, None, None
        if data.layout.elementwise:
            occ = data.layout.occlusion_window(config.occlusion_window) if "occlusion" in config.methods else None
            group_imp = {m: {by: dict(zip(data.layout.groups(by), np.abs(group_values(
                v, data, by, how=_group_how(m, occ))).mean(0).tolist(), strict=True))
                for by in groupings(data)} for m, v in per_row_raw.items()}
            main_m = "integrated_gradients" if "integrated_gradients" in per_row_raw else config.methods[0]
            modal = modal_attribution(
                per_row_raw[main_m], data, rows, method=main_m,
                unit=("the predicted value" if data.task == "regression" else
                      outputs[0] if data.task == "binary" else "P(predicted class)"),
                how=_group_how(main_m, occ),
                classes=(pred_class if data.task == "multiclass" else
                         (np.asarray(scores_all)[rows] >= model.threshold).astype(int)
                         if data.task == "binary" else None),
                outputs=(np.asarray(scores_all).reshape(-1)[rows] if data.task == "regression" else None),
                n_per_class=config.n_per_class, n_examples=max(config.n_selected, 1))

        # Baseline output and the IG completeness check, relative to |f(x) - f(b)|.
        with torch.no_grad():
            fb = model.forward(torch.as_tensor(base)).double().numpy()[0]
        if data.task == "binary":
            base_out = (float(fb[1]),)
            diff = scores_all[rows] - fb[1]
        elif data.task == "regression":
            base_out = (float(fb[0]),)
            diff = scores_all[rows].reshape(-1) - fb[0]
        else:
            base_out = tuple(float(v) for v in fb)
            tgt = pred_class if classes_to_explain == [None] else np.zeros(len(rows), int)
            diff = scores_all[rows][np.arange(len(rows)), tgt] - fb[tgt]
        ig_delta = None
        if deltas is not None:
            ad = np.abs(deltas)
            # Rows whose output barely moves from the baseline make any relative error huge:
            # judge only rows that move by at least 1 % of a probability (or of the outputs' sd).
            floor = 0.01 if data.task != "regression" else 0.01 * float(np.std(scores_all) or 1.0)
            ok = np.abs(diff) >= floor
            rel = ad[ok] / np.abs(diff[ok]) if ok.any() else None
            max_rel = float(rel.max()) if rel is not None else None
            ig_delta = ConvergenceDelta(
                n_steps=config.ig_steps, max_abs=float(ad.max()), mean_abs=float(ad.mean()),
                max_relative=max_rel, mean_relative=float(rel.mean()) if rel is not None else None,
                within_tolerance=bool(max_rel is None or max_rel <= config.delta_tolerance))

        # Rows explained one by one (chosen over all audited rows, not only the sample).
        sel_scores = scores_all if data.task != "regression" else np.asarray(scores_all).reshape(-1)
        picks = select_rows(sel_scores, data.task, config.n_selected, ctx.rng, model.threshold)
        row_results: list[RowAttribution] = []
        if picks:
            idx = np.array([p for p, _ in picks])
            enc_attr, _, _ = explain_rows(model, data, idx, config, baseline=base,
                                          background=background, seed=seed + 7919)
            raw = {m: to_raw_features(a, enc, m) for m, a in enc_attr.items()}
            decoded = enc.decode(data.X[idx].reshape(len(idx), -1))
            for j, (i, why) in enumerate(picks):
                if data.task == "multiclass":
                    k = int(np.argmax(scores_all[i]))
                    out_val, out_name = float(scores_all[i, k]), outputs[k]
                else:
                    out_val = float(np.asarray(sel_scores)[i])
                    out_name = outputs[0]
                row_results.append(RowAttribution(
                    row=int(i), row_number=data.user_row(int(i)), reason=why, output=out_val, explained=out_name,
                    values={f: _fmt_value(decoded[f].iloc[j]) for f in feats},
                    attributions={m: dict(zip(feats, v[j].tolist(), strict=True)) for m, v in raw.items()}))
        ctx.progress(len(classes_to_explain) + 1, len(classes_to_explain) + 1)
        seconds["total"] = time.perf_counter() - t_all

        return SaliencyResult(
            explained=explained, outputs=tuple(outputs),
            baseline=f"{base_how}, computed on {ref_name}" if config.baseline == "mean_mode" else base_how,
            baseline_values=base_text, baseline_output=base_out, methods=tuple(config.methods),
            labels={m: LABELS[m] for m in config.methods}, n_rows=len(rows), n_available=data.n_rows,
            sampled=sampled,
            seed_note=(f"{len(rows):,} of {data.n_rows:,} rows drawn at random from the method's seeded "
                       "stream" if sampled else f"all {data.n_rows:,} rows"),
            background=(f"{len(background):,} rows drawn at random from {ref_name}"
                        + (f" ({bg_note})" if bg_note else "")),
            global_importance=importance,
            per_class_importance=per_class or None, ig_delta=ig_delta, rows=tuple(row_results),
            _seconds=seconds, torch_threads=int(torch.get_num_threads()),
            modal=modal, group_importance=group_imp, occlusion_window=occ,
            _per_row=per_row_raw, _row_index=rows, _window=occ,
            _grouping=data.layout.attribution_grouping,
            _explains="predicted_class" if data.task == "multiclass" else "output")

    def plan(self, model: ModelAdapter, data: AuditData, config: SaliencyConfig, ctx: RunContext) -> Any:
        """Forward and backward passes through torch (not counted at the adapter): per explained
        row about one per gradient method, ig_steps for IG, the samples of SmoothGrad and
        GradientSHAP."""
        from audit.core.cost import Plan, Reducible

        rows = min(config.n_rows, data.n_rows)
        per_row = len(config.methods) + config.ig_steps + config.smoothgrad_samples + config.gradient_shap_samples
        # captum's own work dominates for the small models audited here: measured 1.3-3.2 ms
        # per row for the six default methods on this project's 2-core machine at load ~2.4
        # (Adult MLP 2.4 s for 1,000 rows, digits CNN 0.65 s for 200, macro LSTM 0.25 s for
        # 194); the former 20 ms priced them at 3-6x their duration
        return Plan(f"{len(config.methods)} gradient methods on {rows:,} rows", model_rows=data.n_rows,
                    model_calls=1, uncounted_rows=3 * rows * per_row,
                    fixed_seconds=2e-3 * rows * len(config.methods) / 6,
                    reducible={"n_rows": Reducible(min(200, rows), "rows", current=rows)})

    def findings(self, result: SaliencyResult, config: SaliencyConfig) -> list[Finding]:
        out: list[Finding] = []
        main = "integrated_gradients" if "integrated_gradients" in result.global_importance else result.methods[0]
        top = sorted(result.importance_values(main).items(), key=lambda kv: -kv[1])[:3]
        out.append(Finding("info", f"{LABELS[main]} (explaining {result.explained}) ranks "
                                   f"{', '.join(k for k, _ in top)} as the most influential features "
                                   f"over {result.n_rows:,} rows."))
        d = result.ig_delta
        if d is not None and not d.within_tolerance:
            out.append(Finding("warning", f"Integrated Gradients did not converge: its attributions "
                                          f"miss f(x) − f(baseline) by up to {100 * (d.max_relative or 0):.1f}% "
                                          f"(tolerance {100 * config.delta_tolerance:.0f}%) with "
                                          f"{d.n_steps} steps; raise ig_steps."))
        return out

    def figures(self, result: SaliencyResult, data: AuditData) -> dict[str, Any]:
        from audit.core.plots import PALETTE, new_figure, shorten

        figs: dict[str, Any] = {}
        feats = result.features
        if not feats:
            return figs
        if result.modal is not None:
            return modal_figures(result, data)
        # Methods are in different units (gradients vs shares of f(x) - f(b)): show each
        # method's importances as shares of its own total so the bars are comparable.
        main = "integrated_gradients" if "integrated_gradients" in result.global_importance else result.methods[0]
        imp = {m: result.importance_values(m) for m in result.global_importance}
        order = sorted(feats, key=lambda f: imp[main][f])
        top = order[-15:]
        methods = list(result.global_importance)
        fig, ax = new_figure(6.5, 0.5 + 0.32 * len(top) * max(1.0, len(methods) / 3))
        h = 0.8 / len(methods)
        y = np.arange(len(top))
        for i, m in enumerate(methods):
            vals = np.array([imp[m][f] for f in feats])
            total = vals.sum()
            share = {f: (imp[m][f] / total if total > 0 else 0.0) for f in top}
            ax.barh(y + (i - (len(methods) - 1) / 2) * h, [share[f] for f in top], height=h,
                    color=PALETTE[i % len(PALETTE)], label=LABELS.get(m, m))
        ax.set_yticks(y, [shorten(f, 28) for f in top])
        ax.set_xlabel("share of the method's total mean |attribution|")
        ax.set_title("Global importance by method (features ordered by Integrated Gradients)")
        ax.legend(frameon=False, fontsize=7, loc="lower right")
        fig.tight_layout()
        figs["global"] = fig

        if result.rows:
            show = [m for m in ("integrated_gradients", "gradient_shap", "occlusion", "input_x_gradient")
                    if m in result.methods][:3]
            if show:
                n = len(result.rows)
                fig, axes = new_figure(6.5, 2.3 * n, nrows=n, ncols=1, squeeze=False)
                for ax, row in zip(axes[:, 0], result.rows, strict=True):
                    ref = row.attributions[show[0]]
                    fs = sorted(ref, key=lambda f: abs(ref[f]))[-8:]
                    yy = np.arange(len(fs))
                    hh = 0.8 / len(show)
                    for i, m in enumerate(show):
                        ax.barh(yy + (i - (len(show) - 1) / 2) * hh, [row.attributions[m][f] for f in fs],
                                height=hh, color=PALETTE[i], label=LABELS[m])
                    ax.axvline(0, color="#555555", lw=0.6)
                    ax.set_yticks(yy, [shorten(f"{f} = {row.values[f]}", 34) for f in fs])
                    ax.set_title(f"Row {row.row_number} ({row.reason}): {row.explained} = {row.output:.3f}",
                                 fontsize=8)
                    ax.set_xlabel(f"contribution to {row.explained}")
                axes[0, 0].legend(frameon=False, fontsize=7, loc="lower right")
                fig.tight_layout()
                figs["rows"] = fig
        return figs


def _group_how(method: str, occlusion: str | None) -> str:
    """How per-element values of ``method`` add up to a group total (see group_values)."""
    if method in GRADIENT_ONLY:
        return "mean_abs"
    if method in GROUP_LEVEL and occlusion in ("patch", "lag", "feature"):
        return "mean"  # every element of an occluded group carries the group's effect
    return "sum"


def modal_figures(result: SaliencyResult, data: AuditData) -> dict[str, Any]:
    """Heatmaps (examples, class averages, every method side by side) and group totals."""
    from audit.core.attribution import HeatMap, bar_totals_figure, element_grid, heatmap_figure, map_figures

    m = result.modal
    if m is None:
        return {}
    label = LABELS.get(m.method, m.method)
    figs = map_figures(m, label, by_class=data.task != "regression")
    common = {"kind": m.kind, "row_labels": m.row_labels, "col_labels": m.col_labels, "unit": m.unit}
    per_row, index = result._per_row or {}, result._row_index
    if per_row and index is not None and m.examples:
        pos = {int(r): i for i, r in enumerate(np.asarray(index))}
        picks = [e for e in m.examples if e.row is not None and int(e.row) in pos][:2]
        maps = []
        for e in picks:
            for meth in result.methods:
                if meth in GRADIENT_ONLY:  # a rate, not a share: its own scale would dwarf the others
                    continue
                grid = element_grid(per_row[meth][pos[int(e.row)]], data)
                maps.append(HeatMap(f"row {data.user_row(int(e.row))}: {SHORT.get(meth, meth)}", grid.tolist(), e.row, e.image))
        if maps:
            n_m = len(maps) // max(len(picks), 1)
            figs["methods"] = heatmap_figure(maps, title="Additive methods side by side (same rows)",
                                             ncols=min(n_m, data.layout.style.methods_per_row), **common)
    if result.group_importance:
        main = result.group_importance.get(m.method)
        if main:
            figs["totals"] = bar_totals_figure(main, unit=m.unit, title=f"{label}: totals per group")
    return figs


def modal_caption(unit: str) -> str:
    return RED_BLUE.format(unit=unit)


def _fmt_value(v: Any) -> str:
    if isinstance(v, (float, np.floating, int, np.integer)):
        x = float(v)
        if abs(x) < 1e-9:
            x = 0.0  # expm1 round-off would print "-0"
        return f"{int(x):d}" if x.is_integer() and abs(x) < 1e15 else f"{x:.4g}"
    return str(v)


def raw_feature_mask(encoding: Encoding) -> np.ndarray:
    """Occlusion mask for a tabular encoding: encoded column -> raw-feature id, shape (1, d)."""
    return encoding.column_feature[None, :].astype(np.int64)


__all__ = ["METHODS", "ConvergenceDelta", "RowAttribution", "Saliency", "SaliencyConfig",
           "SaliencyResult", "attribute", "baseline_row", "to_raw_features"]
