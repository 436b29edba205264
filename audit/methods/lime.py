"""LIME: local linear surrogates for chosen rows, with local fidelity and seed stability.

LIME sees the *raw* features, not the encoded matrix: numerics in their own units, each
categorical as one column of level codes (declared categorical, with its level names). Its
perturbed samples are re-encoded to the model's input by a ``predict_fn``, so a one-hot group is
always switched as a whole (no row with two levels "on") and explanations read in the user's
feature names ("marital-status=Married-civ-spouse", "age > 47.00").

With ``discretize=True`` (LIME's default) a numeric feature enters the local model as the
indicator "x is in this row's quartile bin", so its weight is the change in the explained output
associated with being in that bin rather than another; a categorical's weight is the change for
having this row's level rather than another. The local model is a weighted ridge regression on
``num_samples`` perturbed samples; its R² on those samples is the *local fidelity*.

Rows (reproducible from the seed): the most confident row of each class, the most borderline row,
and ``n_random`` random rows; regression: the highest, lowest and median predictions. Each is
explained ``n_seeds`` times with different seeds; *stability* is the mean pairwise Jaccard overlap
of the top-``top_k`` feature sets (1 = the same features every time).

For other methods (``ctx.earlier["lime"]``): :class:`LimeResult` ``global_importance`` is mean
|LIME weight| per raw feature over all explained rows (the selected rows plus ``n_global_rows``
random ones), and ``values`` (explained rows x raw features, in ``features`` order) are the
per-row weights of the data rows ``rows``.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.attribution import bootstrap_mean_abs, check_finite, sample_rows, top_features
from audit.core.dataset import AuditData, CategoricalFeature, Encoding
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               RunContext)
from audit.core.results import Attributions, Estimate
from audit.execution import chunk_rng


@dataclass(frozen=True)
class LimeConfig(MethodConfig):
    """Options of the LIME method.

    num_samples : perturbed samples per explanation.
    n_random : random rows besides the confident/borderline ones.
    n_seeds : explanations per selected row for the stability check (at least 2).
    top_k : size of the compared top-feature sets.
    n_global_rows : extra random rows explained once for the global importance.
    discretize : LIME's quartile discretization of numerics.
    kernel_width : LIME's kernel width (None: 0.75·sqrt(number of features)).
    max_training_rows : rows LIME's sampling statistics are computed from.
    n_bootstrap, confidence : bootstrap of the global importances (explained rows resampled).
    min_fidelity : local R² below which an explanation is flagged.
    min_stability : mean top-k Jaccard overlap below which the explanations are called unstable.
    image_hide : images: what a switched-off patch shows, ``"zero"`` (blank: raw intensity 0)
        or ``"segment_mean"`` (the patch's own mean, LIME's default).
    batch_samples : tabular and sequence data: perturbed samples (of several rows) scored by one
        model call, at least one row's ``num_samples`` (a row's samples are never split); the
        explanations do not depend on it for a model that scores rows independently.

    Images are explained with ``lime_image`` over the layout's patch grid (each interpretable
    feature is one patch kept or hidden); sequences through the lag-feature view (every lag of
    every indicator a numeric column, re-encoded into the (T, F) model input).
    """

    num_samples: int = 5000
    n_random: int = 3
    n_seeds: int = 5
    top_k: int = 5
    n_global_rows: int = 200
    discretize: bool = True
    kernel_width: float | None = None
    max_training_rows: int = 5000
    n_bootstrap: int = 1000
    confidence: float = 0.95
    min_fidelity: float = 0.5
    min_stability: float = 0.6
    image_hide: Literal["zero", "segment_mean"] = "zero"
    batch_samples: int = 100_000

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "num_samples": Interval(100, 1_000_000, "perturbed rows per explanation, held in memory"),
        "n_seeds": Interval(2, 1_000, "stability compares runs"),
        "kernel_width": Interval(0, None, closed="neither"),
        "max_training_rows": Interval(10, 10_000_000, "rows held in memory"),
        "confidence": Interval(0.5, 1, "the level of the intervals", closed="left"),
    }


@dataclass(frozen=True)
class LimeRow:
    """One explained row: why it was chosen and its explanation (from the first seed)."""

    row: int                       # position among the audited rows (0-based)
    row_number: int                # the row as you count it in the data file (from 1)
    reason: str
    label: str                     # the class explained (or "value")
    prediction: float              # the model's explained output at the row
    local_prediction: float        # the local model's prediction at the row
    intercept: float
    fidelity: float                # R² of the local model on its weighted perturbed samples
    weights: dict[str, float]      # raw feature -> weight, largest |weight| first
    conditions: dict[str, str]     # raw feature -> LIME's condition text ("age > 47.00")
    values: dict[str, str]         # raw feature -> the row's value
    stability: float               # mean pairwise Jaccard of top-k sets over the seeds
    stability_min: float
    top_sets: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class LimeResult(MethodResult):
    """LIME explanations of the selected rows plus global importance over all explained rows."""

    explained: str
    features: tuple[str, ...]
    selected: tuple[LimeRow, ...]
    rows: tuple[int, ...]                # every explained row (selected first)
    values: np.ndarray                   # (len(rows), n_features) weights
    fidelity: np.ndarray                 # (len(rows),) local R²
    global_importance: dict[str, Estimate]   # mean |weight| over the explained rows
    ranking: tuple[str, ...]
    n_bootstrap: int
    confidence: float
    mean_fidelity: float
    median_fidelity: float
    low_fidelity_share: float            # share of explained rows with R² < min_fidelity
    mean_stability: float
    num_samples: int
    n_seeds: int
    top_k: int
    discretize: bool
    kernel_width: float
    training_source: str
    training_rows: int
    min_fidelity: float
    min_stability: float
    notes: tuple[str, ...]
    grouping: str = "feature"            # what ``features`` are: "feature" (raw), "patch", "element"
    _seconds: float = 0.0                # wall time of the explanations (not serialised)
    _n_explanations: int = 0

    def attributions(self) -> tuple[Attributions, ...]:
        """The local models' weights per explained row and their mean |weight| with its interval."""
        return (Attributions(
            key="lime", label="LIME (aggregated)", short="LIME", origin="lime: local linear models",
            features=self.features, grouping=self.grouping,
            explains="predicted_class" if self.explained == MULTICLASS_EXPLAINED else "output",
            explained=self.explained, importance=self.global_importance,
            values=np.asarray(self.values, dtype=float), rows=np.asarray(self.rows, dtype=int)),)


# LIME's own work per perturbed sample, whatever the model (used only to estimate durations).
# Tabular: lime draws and discretizes every continuous feature of every sample (a truncated
# normal per quartile bin), so the cost grows with the continuous features: ~0.4-0.6 µs per
# sample and feature on this project's 2-core machine (Adult MLP, 6 continuous: 2.6 s for 1.15M
# samples; macro LSTM, 40: 2.0 s for 84,000 samples). Images: lime_image masks each sample's
# patches in a Python loop, 44-105 µs per sample (digits CNN, 16 patches, load 2.7-6). The
# earlier flat 10 µs per sample priced the Adult run at 4.5x its duration.
LIME_SECONDS_PER_SAMPLE_FEATURE = 5e-7
LIME_IMAGE_SECONDS_PER_SAMPLE = 6e-5


class Lime(AuditMethod[LimeConfig, LimeResult]):
    """LIME explanations in raw features, with local fidelity and seed stability.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from audit.core.adapter import as_adapter
    >>> from audit.core.dataset import DatasetSpec, build_audit_data
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60), "y": [0, 1] * 30})
    >>> data = build_audit_data(df, DatasetSpec(target="y"))
    >>> model = as_adapter(lambda X: 1 / (1 + np.exp(-3 * X[:, 0])))
    >>> cfg = LimeConfig(num_samples=500, n_global_rows=5, n_bootstrap=0)
    >>> Lime().run(model, data, cfg, RunContext.default()).ranking[0]
    'a'
    """

    name = "lime"
    title = "LIME local explanations"
    requires = frozenset({"predict"})
    libraries = ("lime.lime_tabular",)
    modalities = frozenset({"tabular", "image", "sequence"})
    Config = LimeConfig

    def run(self, model: ModelAdapter, data: AuditData, config: LimeConfig, ctx: RunContext) -> LimeResult:
        from lime.lime_tabular import LimeTabularExplainer

        check_finite(data.X, "LIME")
        if data.layout.superpixels is not None:
            return self._run_image(model, data, config, ctx)
        shape = data.X.shape[1:]
        notes: list[str] = []
        enc = data.encoding
        names = data.feature_names
        cats = [i for i, f in enumerate(enc.features) if isinstance(f, CategoricalFeature)]
        source, pool = ("the training data", ctx.train.X) if ctx.train is not None else (
            "the audited data", data.X)
        stats_rows, stats_sampled = sample_rows(len(pool), config.max_training_rows, ctx.rng)
        if stats_sampled:
            notes.append(f"LIME's sampling statistics (quartiles, level frequencies) come from "
                         f"{len(stats_rows):,} random rows of {source}.")
        Z_train = to_raw(enc, pool[stats_rows])
        Z = to_raw(enc, data.X)
        classify = data.task != "regression"
        width = config.kernel_width if config.kernel_width is not None else 0.75 * np.sqrt(len(names))
        explainer = LimeTabularExplainer(
            Z_train, mode="classification" if classify else "regression", feature_names=names,
            categorical_features=cats,
            categorical_names={i: list(enc.features[i].levels) for i in cats},  # type: ignore[union-attr]
            discretize_continuous=config.discretize, kernel_width=width,
            random_state=int(ctx.rng.integers(2**31 - 1)))

        def predict_fn(Zs: np.ndarray) -> np.ndarray:
            Xs = from_raw(enc, Zs).reshape((len(Zs), *shape))  # sequences: back to (T, F)
            return model.predict_proba(Xs) if classify else model.predict(Xs)

        out_all = model.predict_proba(data.X) if classify else model.predict(data.X)
        chosen = select_rows(out_all, data, model, config.n_random, ctx.rng)
        others = np.setdiff1d(np.arange(data.n_rows), [r for r, _ in chosen])
        extra = np.sort(ctx.rng.choice(others, min(config.n_global_rows, len(others)), replace=False))
        labels = data.classes or (None if not classify else tuple(str(i) for i in range(out_all.shape[1])))

        def label_of(row: int) -> int:
            if not classify:
                return 0
            return 1 if data.task == "binary" else int(np.argmax(out_all[row]))

        start = time.perf_counter()
        n_expl = len(chosen) * config.n_seeds + len(extra)
        stream, jobs = _jobs(chosen, extra, config.n_seeds, ctx.rng)
        max_cells = min(config.batch_samples * len(names), _MAX_CELLS)

        def shard(r: range) -> list[Any]:
            return explain_batched(
                _shard_explainer(explainer, stream, r), Z, jobs[r.start:r.stop], predict_fn,
                num_samples=config.num_samples, num_features=len(names),
                labels_of=lambda row: (label_of(row),) if classify else None, max_cells=max_cells)

        def describe(row: int, lab: int, first: Any, order: np.ndarray) -> dict[str, Any]:
            cond = {names[j]: text for j, text in _conditions(first, lab)}
            raw_row = enc.decode(data.X[row:row + 1].reshape(1, -1)).iloc[0]
            return {"conditions": {names[j]: cond.get(names[j], names[j]) for j in order},
                    "values": {n: _fmt(raw_row[n]) for n in names}}

        selected, all_rows, weights_all, fidelity_all = _collect(
            iter(_explain_shards(shard, len(jobs), ctx)), chosen, extra, n_seeds=config.n_seeds, names=names,
            top_k=config.top_k, label_of=lambda row: label_of(row) if classify else 1, out_all=out_all,
            classify=classify, labels=labels, describe=describe, user_row=data.user_row)
        return _result(data, config, ctx, names=names, selected=selected, rows=all_rows,
                       weights=weights_all, fidelity=fidelity_all, start=start, n_expl=n_expl,
                       discretize=config.discretize, kernel_width=float(width),
                       training_source=source, training_rows=len(stats_rows), notes=tuple(notes),
                       grouping=data.layout.attribution_grouping)

    def _run_image(self, model: ModelAdapter, data: AuditData, config: LimeConfig,
                   ctx: RunContext) -> LimeResult:
        """lime_image over the layout's superpixels (one interpretable feature per patch)."""
        from lime.lime_image import LimeImageExplainer

        lay = data.layout
        names = list(lay.groups(lay.superpixels))
        segments = np.zeros((lay.height, lay.width), dtype=int)
        for g, idx in enumerate(lay.groups(lay.superpixels).values()):
            for i in idx:
                if i < lay.height * lay.width:  # channel 0's elements carry the grid
                    segments[i // lay.width, i % lay.width] = g
        center = np.asarray(lay.center, dtype=float)
        scale = np.asarray(lay.scale, dtype=float)
        raw = (data.X.astype(float) * scale[None, :, None, None] + center[None, :, None, None])
        width = 0.25  # lime_image's default kernel width (cosine distance on the on/off vector)
        explainer = LimeImageExplainer(kernel_width=width, random_state=int(ctx.rng.integers(2**31 - 1)))
        n_classes = None

        def predict_fn(images: np.ndarray) -> np.ndarray:
            x = images[..., :lay.channels] if lay.channels > 1 else images[..., :1]
            x = np.transpose(x, (0, 3, 1, 2))
            Xs = ((x - center[None, :, None, None]) / scale[None, :, None, None]).astype(np.float32)
            out = model.predict_proba(Xs) if data.task != "regression" else model.predict(Xs).reshape(-1, 1)
            return np.asarray(out, dtype=float)

        classify = data.task != "regression"
        out_all = model.predict_proba(data.X) if classify else model.predict(data.X)
        chosen = select_rows(out_all, data, model, config.n_random, ctx.rng)
        others = np.setdiff1d(np.arange(data.n_rows), [r for r, _ in chosen])
        extra = np.sort(ctx.rng.choice(others, min(config.n_global_rows, len(others)), replace=False))
        labels = data.classes or (tuple(str(i) for i in range(out_all.shape[1])) if classify else None)
        hide = 0.0 if config.image_hide == "zero" else None
        del n_classes

        def label_of(row: int) -> int:
            if not classify:
                return 0
            return 1 if data.task == "binary" else int(np.argmax(out_all[row]))

        def explain(ex: Any, row: int, seed: int | None) -> Any:
            if seed is not None:
                ex.random_state.seed(seed)
            img = raw[row].transpose(1, 2, 0)
            img = img[..., 0] if lay.channels == 1 else img
            with contextlib.redirect_stderr(io.StringIO()):  # lime_image's tqdm progress bar
                return ex.explain_instance(
                img, predict_fn, labels=(label_of(row),), top_labels=None, hide_color=hide,
                num_features=len(names), num_samples=config.num_samples, batch_size=1000,
                segmentation_fn=lambda _image: segments)

        patch_means, _ = lay.tabular_view(data.X)
        start = time.perf_counter()
        n_expl = len(chosen) * config.n_seeds + len(extra)
        stream, jobs = _jobs(chosen, extra, config.n_seeds, ctx.rng)

        def shard(r: range) -> list[Any]:
            ex = _shard_explainer(explainer, stream, r)
            return [explain(ex, row, sd) for row, sd in jobs[r.start:r.stop]]

        d = len(names)

        def describe(row: int, lab: int, first: Any, order: np.ndarray) -> dict[str, Any]:
            return {"conditions": {names[j]: f"{names[j]} shown" for j in order},
                    "values": {n: _fmt(float(v)) for n, v in zip(names, patch_means[row].reshape(d, -1).mean(1),
                                                                strict=True)}}

        selected, all_rows, weights_all, fidelity_all = _collect(
            iter(_explain_shards(shard, len(jobs), ctx)), chosen, extra, n_seeds=config.n_seeds, names=names,
            top_k=config.top_k, label_of=label_of, out_all=out_all, classify=classify, labels=labels,
            describe=describe, user_row=data.user_row)
        hidden = ("blank (raw intensity 0)" if hide is not None else "filled with the patch's own mean")
        notes = (f"Images: each interpretable feature is one {lay.patch}×{lay.patch} patch of the "
                 f"{lay.height}×{lay.width} grid, kept or hidden ({hidden}); a weight is the change in "
                 "the explained probability when the patch is shown.",)
        return _result(data, config, ctx, names=names, selected=selected, rows=all_rows,
                       weights=weights_all, fidelity=fidelity_all, start=start, n_expl=n_expl,
                       discretize=False, kernel_width=width,
                       training_source="not used (patches are switched on and off)",
                       training_rows=0, notes=notes, grouping="patch")

    def plan(self, model: ModelAdapter, data: AuditData, config: LimeConfig, ctx: RunContext) -> Any:
        """Each explanation evaluates the model once on ``num_samples`` perturbed rows; LIME's own
        work per sample (sampling, decoding, distances, the ridge fit) is priced separately."""
        from audit.core.cost import Plan, Reducible

        n = data.n_rows
        picks = 3 if data.task == "regression" else max(model.n_classes, 2) + 1
        chosen = min(n, picks + config.n_random)
        extra = min(config.n_global_rows, n - chosen)
        explanations = chosen * config.n_seeds + extra
        samples = explanations * config.num_samples
        continuous = sum(len(cols) == 1 for cols in data.encoding.groups.values())  # one column: numeric
        return Plan(f"{explanations:,} explanations × {config.num_samples:,} samples",
                    model_rows=n + samples + (n if data.task == "multiclass" else 0),
                    model_calls=1 + explanations + (data.task == "multiclass"),
                    fixed_seconds=samples * (LIME_IMAGE_SECONDS_PER_SAMPLE if data.layout.superpixels else
                                             LIME_SECONDS_PER_SAMPLE_FEATURE * max(1, continuous)),
                    reducible={"n_global_rows": Reducible(min(50, extra), "rows", current=extra),
                               "num_samples": Reducible(min(1000, config.num_samples), "samples")})

    def findings(self, result: LimeResult, config: LimeConfig) -> list[Finding]:
        out = []
        if result.selected and result.mean_stability < result.min_stability:
            out.append(Finding("warning", f"LIME explanations are unstable: re-running with "
                                          f"{result.n_seeds} seeds, the top-{result.top_k} features "
                                          f"overlap by only {result.mean_stability:.2f} (Jaccard) on "
                                          "average; read single LIME explanations with caution."))
        if result.low_fidelity_share > 0.25:
            out.append(Finding("warning", f"LIME's local linear models fit poorly: "
                                          f"{100 * result.low_fidelity_share:.0f}% of "
                                          f"{len(result.rows)} explanations have local R² below "
                                          f"{result.min_fidelity:g} (median {result.median_fidelity:.2f})."))
        top = ", ".join(result.ranking[:3])
        out.append(Finding("info", f"Aggregated over {len(result.rows)} rows, LIME weighs most: {top} "
                                   f"(mean local R² {result.mean_fidelity:.2f}, top-{result.top_k} "
                                   f"stability {result.mean_stability:.2f})."))
        return out

    def figures(self, result: LimeResult, data: AuditData) -> dict[str, Any]:
        from audit.core.plots import NEGATIVE, POSITIVE, new_figure, shorten

        figs: dict[str, Any] = {}
        names = list(result.ranking[:15])[::-1]
        fig, ax = new_figure(6.5, 0.9 + 0.3 * len(names))
        imp = result.global_importance
        mean = [imp[n].value for n in names]
        lo = [imp[n].value - imp[n].lower if imp[n].has_interval else 0.0 for n in names]
        hi = [imp[n].upper - imp[n].value if imp[n].has_interval else 0.0 for n in names]
        err = None if result.n_bootstrap == 0 else [lo, hi]
        ax.barh(range(len(names)), mean, xerr=err, color=NEGATIVE, height=0.6, ecolor="#333333")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([shorten(n) for n in names])
        ax.set_xlabel(f"mean |LIME weight| over {len(result.rows)} rows")
        ax.set_title("LIME global importance (bars: bootstrap interval over rows)")
        fig.tight_layout()
        figs["global"] = fig
        if data.layout.elementwise and result.selected:
            figs["maps"] = _maps_figure(result, data)
        for i, sel in enumerate(() if data.layout.elementwise else result.selected):
            items = list(sel.weights.items())[:10][::-1]
            fig, ax = new_figure(6.5, 0.8 + 0.28 * len(items))
            ax.barh(range(len(items)), [v for _, v in items],
                    color=[POSITIVE if v >= 0 else NEGATIVE for _, v in items], height=0.6)
            ax.set_yticks(range(len(items)))
            ax.set_yticklabels([shorten(sel.conditions[k], 45) for k, _ in items], fontsize=7)
            ax.axvline(0, color="#999999", lw=0.8)
            label = f" (class {sel.label})" if result.explained.startswith("the probability") else ""
            ax.set_xlabel(f"weight on {result.explained}{label}")
            ax.set_title(f"Row {sel.row_number} ({sel.reason}): local R² {sel.fidelity:.2f}, "
                         f"stability {sel.stability:.2f}", fontsize=8)
            fig.tight_layout()
            figs[f"row_{i}"] = fig
        return figs


# --------------------------------------------------------------------------------------------
# Raw representation <-> model input
# --------------------------------------------------------------------------------------------


def to_raw(enc: Encoding, X: np.ndarray) -> np.ndarray:
    """Encoded rows -> raw matrix: numerics in their own units (unrounded), categoricals as
    level codes (0, 1, ...). The inverse of :func:`from_raw` on valid rows."""
    X = np.asarray(X, dtype=float).reshape(len(X), -1)
    cols = []
    for f, idx in zip(enc.features, enc.groups.values(), strict=True):
        block = X[:, idx]
        if isinstance(f, CategoricalFeature):
            if f.encoding == "onehot":
                cols.append(np.argmax(block, axis=1).astype(float))
            else:
                cols.append(np.clip(np.rint(block[:, 0] * f.scale + f.center), 0, len(f.levels) - 1))
        else:
            x = f.to_raw(block[:, 0])
            # expm1 of a rounded zero can give -1e-17: clip so LIME's bins read "<= 0.00".
            cols.append(np.maximum(x, 0.0) if f.transform == "log1p" else x)
    return np.column_stack(cols)


def from_raw(enc: Encoding, Z: np.ndarray) -> np.ndarray:
    """Raw matrix (see :func:`to_raw`) -> the model's float32 input (vectorised re-encoding)."""
    Z = np.asarray(Z, dtype=float)
    out = np.zeros((len(Z), len(enc.columns)), dtype=np.float32)
    for j, (f, idx) in enumerate(zip(enc.features, enc.groups.values(), strict=True)):
        z = Z[:, j]
        if isinstance(f, CategoricalFeature):
            code = np.clip(np.rint(z), 0, len(f.levels) - 1).astype(int)
            if f.encoding == "onehot":
                out[np.arange(len(Z)), np.asarray(idx)[code]] = 1.0
            else:
                out[:, idx[0]] = (code - f.center) / f.scale
        else:
            x = np.log1p(np.maximum(z, 0.0)) if f.transform == "log1p" else z
            out[:, idx[0]] = (x - f.center) / f.scale
    return out


# lime_tabular's sampler (name-mangled private method): drawing the samples of many rows first
# lets one model call score them all. Without it (another lime version) each explanation scores
# its own samples, as lime does.
_SAMPLER = "_LimeTabularExplainer__data_inverse"
# Sampled values held at once by a batch (about 64 MB per array): wide sequence lag views get
# fewer rows per model call.
_MAX_CELLS = 2**23
# Explanations per chunk of audit.execution.map: a fixed size, so the shards (and the random
# stream each one draws from) depend on the number of explanations alone, never on the workers.
_SHARD = 32


def explain_batched(explainer: Any, Z: np.ndarray, jobs: list[tuple[int, int | None]],
                    predict_fn: Any, *, num_samples: int, num_features: int, labels_of: Any,
                    max_cells: int, progress: Any = None) -> list[Any]:
    """LIME explanations of ``jobs`` (row, seed or None to continue the sampler's stream), in
    order, scoring the perturbed samples of many rows with one ``predict_fn`` call.

    The explanations are those of ``explainer.explain_instance`` row by row with the same
    seeds: the samples are drawn in the same order from the same random stream (fitting the
    local models draws nothing), and each row's local model sees the model's outputs on its own
    samples. They are identical whenever the model scores each row independently of the others
    in its batch; a model whose float rounding depends on the batch size (a torch network) can
    differ in the last bits. A chunk holds as many explanations as fit in ``max_cells`` sampled
    values (at least one).
    """
    draw = getattr(explainer, _SAMPLER, None)
    per_call = max(1, max_cells // (num_samples * Z.shape[1])) if draw is not None else 1
    out: list[Any] = []
    for start in range(0, len(jobs), per_call):
        chunk = jobs[start:start + per_call]
        if draw is None:
            for row, seed in chunk:
                if seed is not None:
                    explainer.random_state.seed(seed)  # shared by the sampler and the discretizer
                out.append(explainer.explain_instance(Z[row], predict_fn, labels=labels_of(row),
                                                      num_features=num_features, num_samples=num_samples))
                if progress is not None:
                    progress(len(out))
            continue
        samples = []
        for row, seed in chunk:
            if seed is not None:
                explainer.random_state.seed(seed)  # shared by the sampler and the discretizer
            samples.append(draw(Z[row], num_samples))
        scores = np.asarray(predict_fn(np.concatenate([inv for _, inv in samples])))
        for k, ((row, _), sample) in enumerate(zip(chunk, samples, strict=True)):
            ys = scores[k * num_samples:(k + 1) * num_samples]

            def given(inverse: np.ndarray, ys: np.ndarray = ys, sample: Any = sample) -> np.ndarray:
                if inverse is not sample[1]:
                    raise RuntimeError("lime did not explain the samples drawn for this row")
                return ys

            setattr(explainer, _SAMPLER, lambda *_args, sample=sample: sample)
            try:
                out.append(explainer.explain_instance(Z[row], given, labels=labels_of(row),
                                                      num_features=num_features, num_samples=num_samples))
            finally:
                delattr(explainer, _SAMPLER)
            if progress is not None:
                progress(len(out))
    return out


def _shard_explainer(explainer: Any, stream: int, r: range) -> Any:
    """A copy of ``explainer`` for the shard of explanations ``r``, its sampler seeded from the
    method's stream and the shard's index alone (a job with its own seed reseeds it; the rest
    continue the stream), so the draws do not depend on which worker runs the shard."""
    import copy

    ex = copy.deepcopy(explainer)
    ex.random_state.seed(int(chunk_rng(stream, r.start // _SHARD).integers(2**31 - 1)))
    return ex


def _explain_shards(shard: Any, n: int, ctx: RunContext) -> list[Any]:
    """The explanations of ``n`` jobs in shards of ``_SHARD`` (:func:`audit.execution.map`),
    in job order."""
    from audit import execution

    parts = execution.map(shard, execution.split_by(n, _SHARD), n_jobs=1, prefer="threads",
                          progress=lambda d, t: ctx.progress(min(n, d * _SHARD), n))
    return [e for part in parts for e in part]


def select_rows(out: np.ndarray, data: AuditData, model: ModelAdapter, n_random: int,
                rng: np.random.Generator) -> list[tuple[int, str]]:
    """The rows LIME explains, each with the reason it was chosen (no duplicates)."""
    picks: list[tuple[int, str]] = []
    if data.task == "regression":
        order = np.argsort(out, kind="stable")
        picks += [(int(order[-1]), "highest prediction"), (int(order[0]), "lowest prediction"),
                  (int(order[len(order) // 2]), "median prediction")]
    else:
        labels = data.classes or tuple(str(i) for i in range(out.shape[1]))
        pred = model.predict(data.X) if data.task == "multiclass" else (out[:, 1] >= model.threshold).astype(int)
        for c in range(out.shape[1]):
            members = np.flatnonzero(pred == c)
            if len(members):
                best = members[np.argmax(out[members, c])]
                picks.append((int(best), f"most confident {labels[c]}"))
        if data.task == "binary":
            border = int(np.argmin(np.abs(out[:, 1] - model.threshold)))
        else:
            top2 = np.sort(out, axis=1)[:, -2:]
            border = int(np.argmin(top2[:, 1] - top2[:, 0]))
        picks.append((border, "most borderline"))
    seen: dict[int, str] = {}
    for r, why in picks:
        seen.setdefault(r, why)
    rest = np.setdiff1d(np.arange(data.n_rows), list(seen))
    for r in np.sort(rng.choice(rest, min(n_random, len(rest)), replace=False)):
        seen[int(r)] = "random"
    return list(seen.items())


def _maps_figure(result: LimeResult, data: AuditData) -> Any:
    """LIME weights of the selected rows painted on the patch grid (images) or the
    features x lags grid (sequences), on one diverging scale centred at 0."""
    from audit.core.attribution import HeatMap, grid_labels, heatmap_figure, raw_image_of

    lay = data.layout
    by = lay.superpixels or lay.element_grouping  # what LIME's interpretable features were
    maps = []
    for sel in result.selected:
        grid = lay.paint([sel.weights[f] for f in result.features], by)
        maps.append(HeatMap(f"row {sel.row_number} ({sel.label}), R² {sel.fidelity:.2f}", grid.tolist(), sel.row,
                            raw_image_of(data, sel.row)))
    rows, cols = grid_labels(data)
    unit = result.explained if data.task != "multiclass" else "P(explained class)"
    return heatmap_figure(maps, kind=lay.kind, row_labels=rows, col_labels=cols, unit=unit,
                          title="LIME weights of the selected rows")


def _jobs(chosen: list[tuple[int, str]], extra: np.ndarray, n_seeds: int, rng: np.random.Generator
          ) -> tuple[int, list[tuple[int, int | None]]]:
    """The stream the shards' explainers are seeded from, and the jobs (row, seed): each chosen
    row once per seed (the same seeds for every chosen row), then each extra row (seed None: its
    shard's explainer draws)."""
    seeds = [int(s) for s in rng.integers(2**31 - 1, size=n_seeds)]
    stream = int(rng.integers(2**31 - 1))
    return stream, [(int(row), s) for row, _ in chosen for s in seeds] + [(int(row), None) for row in extra]


def _fidelity(exp: Any, label: int) -> float:
    """The local model's R² (lime_tabular keeps one per label, lime_image one)."""
    return float(exp.score[label] if isinstance(exp.score, dict) else exp.score)


def _collect(exps: Any, chosen: list[tuple[int, str]], extra: np.ndarray, *, n_seeds: int, names: list[str],
             top_k: int, label_of: Any, out_all: np.ndarray, classify: bool, labels: Any, describe: Any,
             user_row: Any) -> tuple[list[LimeRow], list[int], list[np.ndarray], list[float]]:
    """The explanations in job order (each chosen row's ``n_seeds`` runs, then each extra row):
    the chosen rows' :class:`LimeRow` (first seed's explanation, top-``top_k`` stability over the
    seeds; ``describe(row, label, first, order)`` gives the modality's conditions and values,
    ``user_row(row)`` the row's number in the file), and
    every explained row, its weights and its fidelity."""
    d = len(names)
    selected: list[LimeRow] = []
    rows: list[int] = []
    weights: list[np.ndarray] = []
    fidelity: list[float] = []
    for row, reason in chosen:
        runs = [next(exps) for _ in range(n_seeds)]
        first, lab = runs[0], label_of(row)
        w = _weights(first, lab, d)
        top_sets = [tuple(sorted(names[j] for j in np.argsort(-np.abs(_weights(e, lab, d)), kind="stable")[:top_k]))
                    for e in runs]
        jac = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in combinations(top_sets, 2)]
        order = np.argsort(-np.abs(w), kind="stable")
        selected.append(LimeRow(
            row=int(row), row_number=user_row(int(row)), reason=reason,
            label=str(labels[lab]) if classify and labels else "value",
            prediction=float(out_all[row, lab] if classify else out_all[row]),
            local_prediction=float(np.ravel(first.local_pred)[0]),
            intercept=float(first.intercept[lab]), fidelity=_fidelity(first, lab),
            weights={names[j]: float(w[j]) for j in order}, **describe(row, lab, first, order),
            stability=float(np.mean(jac)), stability_min=float(np.min(jac)), top_sets=tuple(top_sets)))
        rows.append(int(row))
        weights.append(w)
        fidelity.append(selected[-1].fidelity)
    for row in extra:
        e = next(exps)
        lab = label_of(int(row))
        rows.append(int(row))
        weights.append(_weights(e, lab, d))
        fidelity.append(_fidelity(e, lab))
    return selected, rows, weights, fidelity


def _weights(exp: Any, label: int, d: int) -> np.ndarray:
    w = np.zeros(d)
    for j, v in exp.local_exp[label]:
        w[int(j)] = float(v)
    return w


def _conditions(exp: Any, label: int) -> list[tuple[int, str]]:
    """(feature index, LIME's readable condition) for every feature in the explanation."""
    names = exp.domain_mapper.discretized_feature_names or exp.domain_mapper.feature_names
    return [(int(j), str(names[int(j)])) for j, _ in exp.local_exp[label]]


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)



def _result(data: AuditData, config: LimeConfig, ctx: RunContext, *, names: list[str],
            selected: list[Any], rows: list[int], weights: list[np.ndarray], fidelity: list[float],
            start: float, n_expl: int, discretize: bool, kernel_width: float,
            training_source: str, training_rows: int, notes: tuple[str, ...],
            grouping: str) -> LimeResult:
    """The result shared by the tabular and image paths: global importance with bootstrap
    intervals over every explained row, fidelity and stability summaries."""
    seconds = time.perf_counter() - start
    values = np.vstack(weights)
    fid = np.asarray(fidelity)
    boot = bootstrap_mean_abs(values, n_bootstrap=config.n_bootstrap, confidence=config.confidence,
                              rng=ctx.rng)
    importance = {f: float(v) for f, v in zip(names, boot.mean, strict=True)}
    return LimeResult(
        explained=_explained_text(data), features=tuple(names), selected=tuple(selected),
        rows=tuple(rows), values=values, fidelity=fid, global_importance=boot.estimates(names),
        grouping=grouping,
        ranking=tuple(top_features(importance, len(names))), n_bootstrap=boot.n_bootstrap,
        confidence=config.confidence, mean_fidelity=float(fid.mean()),
        median_fidelity=float(np.median(fid)),
        low_fidelity_share=float(np.mean(fid < config.min_fidelity)),
        mean_stability=float(np.mean([s.stability for s in selected])) if selected else float("nan"),
        num_samples=config.num_samples, n_seeds=config.n_seeds, top_k=min(config.top_k, len(names)),
        discretize=discretize, kernel_width=kernel_width, training_source=training_source,
        training_rows=training_rows, _seconds=seconds, _n_explanations=n_expl,
        min_fidelity=config.min_fidelity, min_stability=config.min_stability, notes=notes)

MULTICLASS_EXPLAINED = "the probability of the row's predicted class"


def _explained_text(data: AuditData) -> str:
    if data.task == "regression":
        return "the predicted value"
    if data.task == "binary":
        return f"P({data.classes[1] if data.classes else 'positive'})"
    return MULTICLASS_EXPLAINED


__all__ = ["Lime", "LimeConfig", "LimeResult", "LimeRow", "explain_batched", "from_raw", "select_rows",
           "to_raw"]
