"""Across attribution methods: agreement, consensus, a sanity check and faithfulness.

This method runs after the attribution methods (it reads their results from ``ctx.earlier``)
and adds permutation importance of its own, so it has something to say even for a black box.

- **Agreement**: every method's global ranking of the raw features (mean |attribution|; |Olden|
  for connection weights) and their Spearman and Kendall rank-correlation matrices.
- **Consensus**: features ordered by their mean rank over one method per family, with bootstrap
  intervals on the consensus position (the rows behind each per-row method are resampled).
- **Sanity check** (Adebayo et al. 2018, model-parameter randomization): the gradient
  attributions are recomputed on a copy of the network whose layers are re-initialized one
  after another from the output layer down ("cascading"); the last stage has every layer
  re-initialized. Attributions that stay rank-correlated with the original ones do not depend on
  what the model learned and are flagged.
- **Faithfulness** (deletion curves): for every row, raw features are removed in the order a
  method ranks them (most supportive of the predicted class first) and the model's score for
  the originally predicted class is recorded; a faithful ranking makes it fall fast (small area
  under the curve). "Removed" is made concrete twice: replaced by a fixed baseline row, or
  replaced by each of several background rows and averaged. The two favour different methods
  (a method built around the same baseline wins the first), so both are reported.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.attribution import (HeatMap, baseline_row, check_finite, explained_output,
                                    raw_image_of, reference_data, sample_background, sample_rows)
from audit.core.dataset import AuditData
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               RunContext)
from audit.core.results import Attributions, Estimate, collect, estimates
from audit.core.text import plural
from audit.execution import chunk_rng

#: The attribution sources (by key) whose deletion-curve draws come from agreement's shared
#: random stream, in source order, as before Grad-CAM was added; every other source draws from
#: its own substream keyed by its name (see ``Agreement._deletion``).
_SHARED_STREAM = frozenset({"shap", "lime", "saliency", "input_x_gradient", "integrated_gradients",
                            "smoothgrad", "gradient_shap", "occlusion", "connection_weights",
                            "permutation_significance", "permutation"})

#: Labels of what this method computes itself; every other method's come with its Attributions.
LABELS: dict[str, str] = {"permutation": "Permutation importance", "random": "Random order (reference)"}
SHORT: dict[str, str] = {"permutation": "Perm"}
#: Nominal coverage of the consensus ranks' bootstrap intervals (2.5 % and 97.5 % quantiles).
CONSENSUS_LEVEL = 0.95


@dataclass(frozen=True)
class AgreementConfig(MethodConfig):
    """Options of the cross-method comparison.

    n_rows, n_repeats : rows and repeats for permutation importance.
    n_bootstrap : bootstrap resamples for the intervals on consensus ranks.
    consensus : the methods whose ranks are averaged (one per family; absent ones are left out).
    disagreement_threshold : a Spearman correlation below this between two consensus methods is
        reported as disagreement.
    sanity_check, sanity_rows, sanity_methods, sanity_threshold, sanity_repeats : the randomization
        check of the attributions named in ``sanity_methods`` (empty: every attribution that can
        be recomputed on another model and asks to be by default — the captum gradient methods
        but SmoothGrad, Grad-CAM) that ran (names that did not run are left out); a method whose mean per-row Spearman
        correlation (of |attributions|) with the fully randomized model's, averaged over
        ``sanity_repeats`` independent re-initializations, is at least the threshold is flagged.
    faithfulness : compute the deletion-curve faithfulness.
    faithfulness_rows, faithfulness_background : rows per deletion curve and background rows
        averaged over by the second replacement strategy.
    baseline_data : where the fixed baseline row comes from: the training data ("train", when
        the config names it) or the audited rows.
    n_jobs : threads evaluating permutation importance's features (default: every usable core);
        results do not depend on it.
    """

    n_rows: int = 1000
    n_repeats: int = 5
    n_bootstrap: int = 200
    consensus: tuple[str, ...] = ("connection_weights", "shap", "lime", "integrated_gradients",
                                  "permutation")
    disagreement_threshold: float = 0.5
    sanity_check: bool = True
    sanity_rows: int = 200
    sanity_methods: tuple[str, ...] = ()
    sanity_threshold: float = 0.5
    sanity_repeats: int = 3
    faithfulness: bool = True
    faithfulness_rows: int = 200
    faithfulness_background: int = 20
    baseline_data: Literal["train", "audited"] = "train"
    n_jobs: int | None = None

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "disagreement_threshold": Interval(-1, 1, "a rank correlation"),
        "sanity_threshold": Interval(-1, 1, "a rank correlation"),
    }


@dataclass(frozen=True)
class MethodRanking:
    """One method's global ranking: importance per raw feature and rank (1 = most important)."""

    key: str
    label: str
    importance: dict[str, float]
    ranks: dict[str, float]
    n_rows: int | None           # rows behind it (None: a global quantity such as Olden's)


@dataclass(frozen=True)
class ConsensusRank:
    feature: str
    mean_rank: Estimate          # mean over the consensus methods (1 = most important), with
                                 # its percentile bootstrap interval (rows resampled)
    position: int                # 1 = most important by mean rank (ties share the lower)


@dataclass(frozen=True)
class SanityStage:
    randomized: tuple[str, ...]                  # layers re-initialized so far (top first)
    row_spearman: dict[str, float | None]        # mean per-row Spearman of |attr|, per method
    global_spearman: dict[str, float | None]     # Spearman of mean |attr| per feature


@dataclass(frozen=True)
class SanityCheck:
    order: str
    layers: tuple[str, ...]
    methods: tuple[str, ...]
    n_rows: int
    repeats: int                                # independent re-initializations averaged
    stages: tuple[SanityStage, ...]
    final_row_spearman: dict[str, float | None]
    final_global_spearman: dict[str, float | None]
    threshold: float
    flagged: tuple[str, ...]
    output_change: float                        # mean |f(x) - f_random(x)| (the model did change)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)   # method -> its name
    # Images and sequences: per row, the original and the fully randomized model's map of the
    # first sanity method, side by side (pairs: original, randomized); None for tabular data.
    maps: tuple[HeatMap, ...] | None = None


@dataclass(frozen=True)
class DeletionCurve:
    key: str
    label: str
    strategy: str                 # "baseline" | "background"
    n_rows: int
    fractions: tuple[float, ...]  # share of raw features removed
    score: tuple[float, ...]      # mean score of the originally predicted class
    random_score: tuple[float, ...]
    auc: float
    auc_random: float
    ratio: float | None           # auc / auc_random (< 1: better than a random order)


@dataclass(frozen=True)
class AgreementResult(MethodResult):
    features: tuple[str, ...]
    rankings: tuple[MethodRanking, ...]
    short: dict[str, str]                                # key -> short column header
    sources: dict[str, str]                              # key -> where its values came from
    missing: dict[str, str]                              # expected method -> why it is absent
    spearman: dict[str, dict[str, float | None]]
    kendall: dict[str, dict[str, float | None]]
    consensus_methods: tuple[str, ...]
    consensus: tuple[ConsensusRank, ...]
    n_bootstrap: int
    weakest_pair: tuple[str, str, float] | None          # lowest Spearman among consensus methods
    permutation_rows: int
    permutation_repeats: int
    explained: str
    sanity: SanityCheck | None
    sanity_skipped: str | None
    deletion: tuple[DeletionCurve, ...]
    deletion_order: dict[str, tuple[str, ...]]           # strategy -> keys, most faithful first
    deletion_skipped: str | None
    baseline: str
    background: str
    notes: tuple[str, ...]
    grouping: str | None = None   # images/sequences: the level compared ("patch" or "lag")
    task: str = "binary"          # how the deletion curves read (a class's score, or the prediction)
    _seconds: dict[str, float] | None = None   # wall times (not serialised: not reproducible)


# --------------------------------------------------------------------------------------------
# Reading earlier results
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One ranking as this method uses it: an :class:`Attributions` in the compared features."""

    key: str
    label: str
    short: str
    importance: np.ndarray                 # (F,) non-negative
    per_row: np.ndarray | None = None      # (n, F) attributions of the explained output
    rows: np.ndarray | None = None         # (n,) audited-row indices
    origin: str = ""
    signed: bool = True                    # per-row signs say which way a feature pushes
    toward_output: bool = True             # binary: values explain P(positive), not the prediction

    @classmethod
    def of(cls, a: Attributions) -> _Source:
        return cls(a.key, a.label, a.short, np.abs(a.importance_vector()),
                   None if a.values is None else np.asarray(a.values, dtype=float),
                   None if a.rows is None else np.asarray(a.rows, dtype=int),
                   origin=f"{a.origin} ({'per-row values' if a.values is not None else 'global values'})",
                   signed=a.signed, toward_output=a.explains == "output")


def collect_sources(attributions: list[Attributions], features: list[str], *, layout: Any = None,
                    by: str | None = None) -> tuple[list[_Source], dict[str, str]]:
    """The attributions comparable on ``features``: raw features (tabular), or the groups ``by``
    of an image/sequence ``layout`` (per-element values are summed per group the way each
    method's values add up). Returns the sources and, per attribution left out, why."""
    sources: list[_Source] = []
    missing: dict[str, str] = {}
    for a in attributions:
        b = a.grouped(layout, by) if layout is not None and by is not None else a
        b = None if b is None else b.reordered(features)
        if b is None:
            missing[a.key] = (f"its values do not split into the {by} grouping" if by else
                              "its features are not the audited raw features")
            continue
        if not np.all(np.isfinite(b.importance_vector())):
            missing[a.key] = "its global importance is not finite for every feature"
            continue
        sources.append(_Source.of(b))
    return sources, missing


class _FlatModel:
    """The audited model seen through flattened inputs (n, d) -> reshaped to (n, *shape)."""

    def __init__(self, model: ModelAdapter, shape: tuple[int, ...]) -> None:
        self._model, self._shape = model, tuple(shape)

    def __getattr__(self, key: str) -> Any:
        if key == "_model":  # while unpickling (a Ray task), before __dict__ is filled
            raise AttributeError(key)
        return getattr(self._model, key)

    def _x(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        return X.reshape((len(X), *self._shape)).astype(np.float32, copy=False)

    def output(self, X: np.ndarray) -> np.ndarray:
        return self._model.output(self._x(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._model.predict(self._x(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(self._x(X))


@dataclass(frozen=True)
class _Groups:
    groups: dict[str, list[int]]


@dataclass(frozen=True)
class _GroupedData:
    """Image/sequence data as flattened rows whose "raw features" are the layout's groups."""

    X: np.ndarray
    encoding: _Groups
    feature_names: list[str]
    task: str
    classes: Any
    n_rows: int
    modality: str = "tabular"


def _grouped_data(data: AuditData, by: str) -> _GroupedData:
    groups = data.layout.groups(by)
    return _GroupedData(np.asarray(data.X).reshape(data.n_rows, -1), _Groups(groups), list(groups),
                        data.task, data.classes, data.n_rows)


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def model_scores(model: ModelAdapter, X: np.ndarray) -> np.ndarray:
    """``model.output``; for classifiers without probabilities, the predicted label as a 0/1
    score (binary) or one-hot row (multiclass), so that label-only models can be compared too."""
    if model.task == "regression" or "proba" in model.capabilities:
        return model.output(X)
    labels = model.predict(X)
    if model.task == "binary":
        return labels.astype(float)
    return np.eye(model.n_classes)[labels]


def primary_output(model: ModelAdapter, X: np.ndarray, task: str, classes: np.ndarray | None = None) -> np.ndarray:
    """The explained scalar per row: P(positive), the value, or P(class ``classes[i]``)."""
    out = model_scores(model, X)
    if task == "multiclass":
        return out[np.arange(len(X)), classes]
    return np.asarray(out, dtype=float).reshape(len(X))


def permutation_importance(model: ModelAdapter, data: AuditData, rows: np.ndarray, n_repeats: int,
                           rng: np.random.Generator, *, n_jobs: int | None = 1) -> np.ndarray:
    """Per-row |f(x) − f(x with one raw feature permuted across rows)|, averaged over repeats.

    A one-hot feature's columns are permuted together (a whole level moves, never a mix), so
    every perturbed row is a valid input. Returns (len(rows), n_features); its column means are
    the permutation importances in the units of the explained output. The features are
    independent chunks evaluated on ``n_jobs`` threads (the loaded model is shared, never
    pickled); every permutation is drawn first, in order, so the result does not depend on it.
    """
    from audit import execution

    X = data.X[rows]
    n = len(X)
    cls = np.argmax(model_scores(model, X), axis=1) if data.task == "multiclass" else None
    f0 = primary_output(model, X, data.task, cls)
    groups = list(data.encoding.groups.values())
    perms = [[rng.permutation(n) for _ in range(n_repeats)] for _ in groups]

    def feature(j: int) -> np.ndarray:
        idx = groups[j]
        batch = np.repeat(X[None], n_repeats, axis=0)
        for r in range(n_repeats):
            batch[r][:, idx] = X[perms[j][r]][:, idx]
        f = primary_output(model, batch.reshape(n_repeats * n, -1), data.task,
                           None if cls is None else np.tile(cls, n_repeats))
        return np.abs(f.reshape(n_repeats, n) - f0).mean(axis=0)

    cols = execution.map(feature, range(len(groups)), n_jobs=n_jobs, prefer="threads")
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))


def ranks_of(importance: np.ndarray) -> np.ndarray:
    """Rank 1 = largest; ties share their average rank."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(importance, dtype=float), method="average")


def _corr(a: np.ndarray, b: np.ndarray, kind: str) -> float | None:
    from scipy.stats import kendalltau, spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    value = (spearmanr(a, b) if kind == "spearman" else kendalltau(a, b))[0]
    return float(value) if np.isfinite(value) else None


def consensus_ranks(sources: list[_Source], keys: list[str], n_bootstrap: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean rank over ``keys``, the consensus position, and bootstrap intervals (2, F) of the
    mean rank.

    Each replicate resamples the rows behind every per-row method independently (each method
    explained its own rows); global-only methods keep their ranks.
    """
    chosen = [s for s in sources if s.key in keys]
    rank_mat = np.array([ranks_of(s.importance) for s in chosen])
    mean_rank = rank_mat.mean(axis=0)
    position = ranks_of(-mean_rank)
    if n_bootstrap < 1 or not any(s.per_row is not None for s in chosen):
        return mean_rank, position, None
    reps = np.empty((n_bootstrap, len(mean_rank)))
    abs_rows = [np.abs(s.per_row) if s.per_row is not None else None for s in chosen]
    for b in range(n_bootstrap):
        rr = []
        for s, a in zip(chosen, abs_rows, strict=True):
            if a is None:
                rr.append(ranks_of(s.importance))
            else:
                counts = rng.multinomial(len(a), np.full(len(a), 1.0 / len(a)))
                rr.append(ranks_of(counts @ a / len(a)))
        reps[b] = np.mean(rr, axis=0)
    return mean_rank, position, np.quantile(reps, [0.025, 0.975], axis=0)  # CONSENSUS_LEVEL


def _reinit_layers(module: Any) -> list[tuple[str, Any]]:
    """Leaf modules that own parameters, in registration order (input side first)."""
    out = []
    for name, sub in module.named_modules():
        if any(True for _ in sub.parameters(recurse=False)):
            out.append((f"{name} ({type(sub).__name__})" if name else type(sub).__name__, sub))
    return out


def _reinit(sub: Any) -> None:
    """Re-initialize one layer: its own ``reset_parameters`` (PyTorch's default init), else
    Gaussian values with each parameter's current standard deviation."""
    import torch

    if hasattr(sub, "reset_parameters"):
        sub.reset_parameters()
        return
    with torch.no_grad():
        for p in sub.parameters(recurse=False):
            sd = float(p.std()) if p.numel() > 1 else 1.0
            p.normal_(0.0, sd if sd > 0 else 1.0)


def _rowwise_spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean over rows of the Spearman correlation of |a| and |b|.

    Features that are exactly zero in both (for Integrated Gradients and occlusion: a feature
    already at its baseline value) are left out of that row's correlation: their agreement is
    fixed by the input, whatever the weights, and would otherwise inflate the similarity. Rows
    with fewer than three remaining features are skipped.
    """
    from scipy.stats import rankdata

    a, b = np.abs(np.asarray(a, float)), np.abs(np.asarray(b, float))
    tol = 1e-12 * max(float(a.max(initial=0)), float(b.max(initial=0)), 1e-300)
    keep = (a > tol) | (b > tol)
    values: list[np.ndarray] = []
    # Rows sharing a pattern of kept features are ranked together (vectorized per pattern).
    patterns, inverse = np.unique(keep, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        if pattern.sum() < 3:
            continue
        members = np.flatnonzero(inverse.reshape(-1) == p)
        ra = rankdata(a[np.ix_(members, np.flatnonzero(pattern))], axis=1)
        rb = rankdata(b[np.ix_(members, np.flatnonzero(pattern))], axis=1)
        ra -= ra.mean(axis=1, keepdims=True)
        rb -= rb.mean(axis=1, keepdims=True)
        den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
        ok = den > 0
        values.append((ra * rb).sum(axis=1)[ok] / den[ok])
    flat = np.concatenate(values) if values else np.array([])
    return float(flat.mean()) if flat.size else None


def sanity_check(model: ModelAdapter, data: AuditData, rows: np.ndarray, config: AgreementConfig, *,
                 attributions: list[Attributions], baseline: np.ndarray, background: np.ndarray,
                 seed: int) -> SanityCheck:
    """Cascading model-parameter randomization (Adebayo et al. 2018) of every attribution in
    ``attributions`` (each recomputed through its ``recompute``, with this baseline, background
    and seed, on the trained model and on every re-initialized copy)."""
    import torch

    module = getattr(model, "module", None)
    if not isinstance(module, torch.nn.Module):
        raise _SanitySkip("the model's torch module is not accessible, so its weights cannot be re-initialized")
    layers = _reinit_layers(module)
    if not layers:
        raise _SanitySkip("the model has no parameters to re-initialize")
    X = data.X[rows]
    targets = np.argmax(model.output(X), axis=1) if data.task == "multiclass" else None

    def raw_attr(m: ModelAdapter) -> dict[str, np.ndarray]:
        return {a.key: a.recompute(m, data, rows, baseline=baseline, background=background,  # type: ignore[misc]
                                   seed=seed, targets=targets) for a in attributions}

    original = raw_attr(model)
    # One random draw can correlate with the original by chance when there are few features:
    # average the correlations over several independent re-initializations.
    row_s: list[list[dict[str, float | None]]] = []
    glob_s: list[list[dict[str, float | None]]] = []
    names: list[str] = []
    change = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(config.sanity_repeats):
            try:
                random_module = copy.deepcopy(module)
            except Exception as exc:  # TorchScript and exotic modules may refuse to be copied
                raise _SanitySkip(f"the model could not be copied ({type(exc).__name__})") from None
            random_model = copy.copy(model)
            random_model.module = random_module  # type: ignore[attr-defined]
            rs, gs = [], []
            names = []
            for name, sub in reversed(_reinit_layers(random_module)):
                _reinit(sub)
                names.append(name)
                rand = raw_attr(random_model)
                last_rand = rand
                rs.append({k: _rowwise_spearman(original[k], rand[k]) for k in original})
                gs.append({k: _corr(np.abs(original[k]).mean(0), np.abs(rand[k]).mean(0), "spearman")
                           for k in original})
            row_s.append(rs)
            glob_s.append(gs)
            change.append(float(np.mean(np.abs(np.asarray(model.output(X), float)
                                               - np.asarray(random_model.output(X), float)))))

    def avg(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return float(np.mean(vals)) if vals else None

    stages = [SanityStage(
        randomized=tuple(names[: i + 1]),
        row_spearman={k: avg([rep[i][k] for rep in row_s]) for k in original},
        global_spearman={k: avg([rep[i][k] for rep in glob_s]) for k in original})
        for i in range(len(names))]
    final = stages[-1]
    flagged = tuple(k for k, v in final.row_spearman.items() if v is not None and v >= config.sanity_threshold)
    maps = None
    if data.layout.elementwise:
        first = attributions[0].key
        pairs: list[HeatMap] = []
        for i in range(min(3, len(rows))):
            raw_img = raw_image_of(data, int(rows[i]))
            pairs.append(HeatMap(f"row {data.user_row(int(rows[i]))}: trained model", data.layout.grid(original[first][i]).tolist(),
                                 int(rows[i]), raw_img))
            pairs.append(HeatMap(f"row {data.user_row(int(rows[i]))}: randomized", data.layout.grid(last_rand[first][i]).tolist(),
                                 int(rows[i]), raw_img))
        maps = tuple(pairs)
    return SanityCheck(
        order="cascading from the output layer down; the last stage has every layer re-initialized",
        layers=tuple(n for n, _ in layers), methods=tuple(a.key for a in attributions), n_rows=len(rows),
        repeats=config.sanity_repeats, stages=tuple(stages), final_row_spearman=final.row_spearman,
        final_global_spearman=final.global_spearman, threshold=config.sanity_threshold,
        flagged=flagged, output_change=float(np.mean(change)), maps=maps,
        labels={a.key: a.label for a in attributions})


class _SanitySkip(Exception):
    pass


def deletion_curves(model: ModelAdapter, data: AuditData, rows: np.ndarray, order: np.ndarray, *,
                    baseline: np.ndarray, background: np.ndarray) -> dict[str, np.ndarray]:
    """Mean score of the originally predicted class as raw features are removed in ``order``.

    ``order`` is (n, F): per row, raw-feature indices, first removed first. Returns, for the
    strategies "baseline" and "background", the mean score after removing 0..F features.
    """
    X = data.X[rows].astype(np.float32)
    n, F = order.shape
    groups = list(data.encoding.groups.values())
    col_of = [np.asarray(g) for g in groups]
    scores = model_scores(model, X)
    if data.task == "binary":
        cls = (np.asarray(scores) >= model.threshold).astype(int)
    elif data.task == "multiclass":
        cls = np.argmax(scores, axis=1)
    else:
        cls = None

    def score(Z: np.ndarray, reps: int = 1) -> np.ndarray:
        out = model_scores(model, Z)
        if data.task == "binary":
            c = np.tile(cls, reps)
            return np.where(c == 1, out, 1 - out)
        if data.task == "multiclass":
            return out[np.arange(len(Z)), np.tile(cls, reps)]
        return np.asarray(out, float).reshape(len(Z))

    mask = np.zeros_like(X, dtype=bool)
    base_curve, bg_curve = [score(X).mean()], [score(X).mean()]
    B = len(background)
    for k in range(F):
        for i in range(n):  # mark the k-th removed feature's columns of every row
            mask[i, col_of[order[i, k]]] = True
        Zb = np.where(mask, baseline, X)
        base_curve.append(score(Zb).mean())
        Zg = np.where(mask[None], background[:, None, :], X[None]).reshape(B * n, -1)
        bg_curve.append(score(Zg, B).reshape(B, n).mean())
    return {"baseline": np.array(base_curve), "background": np.array(bg_curve)}


def _auc(curve: np.ndarray) -> float:
    x = np.linspace(0, 1, len(curve))
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(x)))


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class Agreement(AuditMethod[AgreementConfig, AgreementResult]):
    """Compares the attribution methods that ran before it. Must stay last in the registry."""

    name = "agreement"
    title = "Attribution agreement, sanity check and faithfulness"
    requires = frozenset({"predict"})
    modalities = frozenset({"tabular", "image", "sequence"})
    Config = AgreementConfig

    def run(self, model: ModelAdapter, data: AuditData, config: AgreementConfig,
            ctx: RunContext) -> AgreementResult:
        seconds: dict[str, float] = {}
        notes: list[str] = []
        check_finite(data.X, "Agreement")
        real_model, real_data, grouping = model, data, None
        if data.layout.elementwise:
            # Compare methods on readable groups (patches; lags), on flattened inputs.
            grouping = data.layout.comparison_grouping
            model, data = _FlatModel(model, data.X.shape[1:]), _grouped_data(data, grouping)  # type: ignore[assignment]
            notes.append(f"Images and sequences are compared per {grouping}: each method's per-element "
                         f"attributions are summed per {grouping} (gradients: mean |gradient|), and "
                         f"permutation importance and deletion move whole {plural(grouping)} together.")
        feats = data.feature_names
        t0 = time.perf_counter()
        attributions = collect(ctx.earlier)
        sources, missing = collect_sources(attributions, feats, layout=real_data.layout, by=grouping)
        for key in config.consensus:
            if key != "permutation" and key not in {a.key for a in attributions}:
                missing[key] = "did not run (not selected, skipped or not available for this model)"

        perm_rows, _ = sample_rows(data.n_rows, config.n_rows, ctx.rng)
        perm = permutation_importance(model, data, perm_rows, config.n_repeats, ctx.rng,
                                      n_jobs=config.n_jobs)
        sources.append(_Source("permutation", LABELS["permutation"], SHORT["permutation"],
                               perm.mean(axis=0), perm, perm_rows, origin="computed here", signed=False))
        seconds["permutation"] = time.perf_counter() - t0
        ctx.progress(1, 4)

        keys = [s.key for s in sources]
        rankings = tuple(MethodRanking(
            key=s.key, label=s.label,
            importance=dict(zip(feats, s.importance.tolist(), strict=True)),
            ranks=dict(zip(feats, ranks_of(s.importance).tolist(), strict=True)),
            n_rows=None if s.per_row is None else len(s.per_row)) for s in sources)
        spearman: dict[str, dict[str, float | None]] = {}
        kendall: dict[str, dict[str, float | None]] = {}
        for a in sources:
            spearman[a.key] = {b.key: _corr(a.importance, b.importance, "spearman") for b in sources}
            kendall[a.key] = {b.key: _corr(a.importance, b.importance, "kendall") for b in sources}

        cons_keys = [k for k in config.consensus if k in keys] or keys
        if not [k for k in config.consensus if k in keys]:
            notes.append("None of the configured consensus methods ran; the consensus uses every "
                         "available ranking.")
        t0 = time.perf_counter()
        mean_rank, position, band = consensus_ranks(sources, cons_keys, config.n_bootstrap, ctx.rng)
        ranks = estimates(feats, mean_rank, None if band is None else band[0],
                          None if band is None else band[1], level=CONSENSUS_LEVEL,
                          method=f"percentile bootstrap, rows behind each method resampled, "
                                 f"{config.n_bootstrap:,} resamples")
        consensus = tuple(sorted((ConsensusRank(
            feature=f, mean_rank=ranks[f], position=int(np.floor(position[j])))
            for j, f in enumerate(feats)), key=lambda c: (c.mean_rank.value, c.feature)))
        seconds["consensus"] = time.perf_counter() - t0
        weakest = None
        for i, a in enumerate(cons_keys):
            for b in cons_keys[i + 1:]:
                v = spearman[a][b]
                if v is not None and (weakest is None or v < weakest[2]):
                    weakest = (a, b, v)
        ctx.progress(2, 4)

        ref, ref_name = reference_data(real_data, ctx, config.baseline_data)
        base, _, base_how = baseline_row(ref, "mean_mode")
        background, _, bg_note = sample_background(ref.X, config.faithfulness_background, ctx.rng,
                                                   source=ref_name)
        real_base, real_background = base, background
        if grouping is not None:
            base, background = base.reshape(1, -1), background.reshape(len(background), -1)
        if bg_note:
            notes.append(bg_note)
        seed = int(ctx.rng.integers(2**31 - 1))

        sanity, sanity_skipped = None, None
        checked: dict[str, Attributions] = {}
        t0 = time.perf_counter()
        if not config.sanity_check:
            sanity_skipped = "turned off in the config (sanity_check = false)"
        elif "gradients" not in model.capabilities:
            sanity_skipped = (f"needs a differentiable torch model; {model.description} offers no "
                              "gradients, so gradient attributions cannot be recomputed")
        else:
            s_rows, _ = sample_rows(data.n_rows, config.sanity_rows, ctx.rng)
            checked = {a.key: a for a in attributions if a.recompute is not None}
            chosen = ([checked[k] for k in config.sanity_methods if k in checked] if config.sanity_methods
                      else [a for a in checked.values() if a.recompute_by_default])
            if not chosen:
                asked = (f"named in sanity_methods ({', '.join(config.sanity_methods)})"
                         if config.sanity_methods else "that ran")
                sanity_skipped = (f"none of the attributions {asked} has an explainer that can be "
                                  "recomputed on a re-initialized model")
            else:
                try:
                    sanity = sanity_check(real_model, real_data, s_rows, config, attributions=chosen,
                                          baseline=real_base, background=real_background, seed=seed)
                except _SanitySkip as exc:
                    sanity_skipped = str(exc)
        seconds["sanity"] = time.perf_counter() - t0
        ctx.progress(3, 4)

        deletion: list[DeletionCurve] = []
        order_by: dict[str, tuple[str, ...]] = {}
        deletion_skipped = None
        t0 = time.perf_counter()
        if not config.faithfulness:
            deletion_skipped = "turned off in the config (faithfulness = false)"
        else:
            deletion = self._deletion(model, data, sources, config, base, background, ctx.rng)
            for strategy in ("baseline", "background"):
                curves = [c for c in deletion if c.strategy == strategy and c.key != "random"]
                order_by[strategy] = tuple(c.key for c in sorted(
                    curves, key=lambda c: (c.ratio if c.ratio is not None else np.inf, c.key)))
        seconds["faithfulness"] = time.perf_counter() - t0
        ctx.progress(4, 4)

        explained, _ = explained_output(model, data)
        return AgreementResult(
            features=tuple(feats), rankings=rankings,
            short={**{s.key: s.short for s in sources},
                   **({k: a.short for k, a in checked.items() if k in sanity.methods} if sanity else {})},
            sources={s.key: s.origin for s in sources}, missing=missing,
            spearman=spearman, kendall=kendall, consensus_methods=tuple(cons_keys),
            consensus=consensus, n_bootstrap=config.n_bootstrap if band is not None else 0,
            weakest_pair=weakest, permutation_rows=len(perm_rows),
            permutation_repeats=config.n_repeats, explained=explained, sanity=sanity,
            sanity_skipped=sanity_skipped, deletion=tuple(deletion), deletion_order=order_by,
            deletion_skipped=deletion_skipped,
            baseline=f"{base_how}, computed on {ref_name}",
            background=f"{len(background):,} rows drawn at random from {ref_name}",
            notes=tuple(notes), grouping=grouping, task=data.task, _seconds=seconds)

    def _deletion(self, model: ModelAdapter, data: AuditData, sources: list[_Source],
                  config: AgreementConfig, base: np.ndarray, background: np.ndarray,
                  rng: np.random.Generator) -> list[DeletionCurve]:
        F = len(data.feature_names)
        fractions = tuple(float(x) for x in np.linspace(0, 1, F + 1))
        subsets: dict[tuple[str, bytes], np.ndarray] = {}
        out: list[DeletionCurve] = []

        def stream(key: str) -> tuple[str, np.random.Generator]:
            # A source's row subsample and random order come from a substream keyed by its
            # name (with caches of its own), so comparing one more method moves no other
            # method's curves. The sources compared before Grad-CAM keep drawing from the
            # shared stream in their old order, so the bundled examples keep their numbers.
            if key in _SHARED_STREAM:
                return "", rng
            return key, chunk_rng(rng.bit_generator.seed_seq, zlib.crc32(key.encode()))

        def rows_for(rows: np.ndarray, tag: str, draws: np.random.Generator) -> np.ndarray:
            key = (tag, np.asarray(rows, dtype=np.int64).tobytes())
            if key not in subsets:  # methods that explained the same rows share a subsample
                pick, _ = sample_rows(len(rows), config.faithfulness_rows, draws)
                subsets[key] = pick
            return subsets[key]

        default_rows, _ = sample_rows(data.n_rows, config.faithfulness_rows, rng)
        random_cache: dict[tuple[str, bytes], dict[str, np.ndarray]] = {}
        for s in sources:
            tag, draws = stream(s.key)
            if s.per_row is not None and s.rows is not None:
                pick = rows_for(s.rows, tag, draws)
                rows = s.rows[pick]
                values = s.per_row[pick]
                if not s.signed:  # e.g. per-row |Δ|: no sign, so order by the global means
                    order = np.tile(np.argsort(-s.importance, kind="stable"), (len(rows), 1))
                else:
                    toward = self._toward_prediction(model, data, rows, values) if s.toward_output else values
                    order = np.argsort(-toward, axis=1, kind="stable")
            else:
                rows = default_rows
                order = np.tile(np.argsort(-s.importance, kind="stable"), (len(rows), 1))
            curves = deletion_curves(model, data, rows, order, baseline=base, background=background)
            key = (tag, rows.astype(np.int64).tobytes())
            if key not in random_cache:
                rand_order = np.argsort(draws.random((len(rows), F)), axis=1)
                random_cache[key] = deletion_curves(model, data, rows, rand_order, baseline=base,
                                                    background=background)
            rand = random_cache[key]
            for strategy in ("baseline", "background"):
                auc, auc_r = _auc(curves[strategy]), _auc(rand[strategy])
                # Lower is better; compare with the random order on the same rows, since
                # different methods explained different rows.
                start = curves[strategy][0]
                ratio = ((auc - 0) / auc_r) if auc_r > 0 and start > 0 else None
                out.append(DeletionCurve(
                    key=s.key, label=s.label, strategy=strategy, n_rows=len(rows),
                    fractions=fractions, score=tuple(curves[strategy].tolist()),
                    random_score=tuple(rand[strategy].tolist()), auc=auc, auc_random=auc_r,
                    ratio=ratio))
        return out

    @staticmethod
    def _toward_prediction(model: ModelAdapter, data: AuditData, rows: np.ndarray,
                           values: np.ndarray) -> np.ndarray:
        """Signed attributions toward each row's predicted class (binary: flip for negatives)."""
        if data.task != "binary":
            return values
        p = model_scores(model, data.X[rows])
        sign = np.where(np.asarray(p) >= model.threshold, 1.0, -1.0)
        return values * sign[:, None]

    def plan(self, model: ModelAdapter, data: AuditData, config: AgreementConfig, ctx: RunContext) -> Any:
        """Permutation importance (rows × features × repeats) and deletion curves ((2 + features ×
        (1 + background)) × rows per attribution source and per random order). The sources are the
        methods that run before it: counted as four (SHAP, LIME, a significance method's,
        permutation), six with gradients."""
        from audit.core.cost import Plan, Reducible

        n, F = data.n_rows, len(data.layout.groups(data.layout.comparison_grouping))
        perm = min(config.n_rows, n)
        rows = perm * (1 + F * config.n_repeats)
        calls = 1 + F
        if config.faithfulness:
            # gradients: SHAP, LIME, the captum methods, permutation; otherwise SHAP, LIME, a
            # significance method's importance (Olden, refit permutation), permutation
            sources = 6 if "gradients" in model.capabilities else 4
            fr = min(config.faithfulness_rows, n)
            rows += (sources + 2) * (2 + F * (1 + config.faithfulness_background)) * fr + 2 * fr
            calls += (sources + 2) * (2 + 2 * F) + 2
        uncounted = 0.0
        if config.sanity_check and "gradients" in model.capabilities:
            # by default the captum gradient methods are re-run: counted as four
            uncounted = config.sanity_repeats * (len(config.sanity_methods) or 4) * min(config.sanity_rows, n) * 50
        return Plan(f"permutation importance on {perm:,} rows × {F} features × {config.n_repeats}, "
                    f"deletion curves", model_rows=rows, model_calls=calls, uncounted_rows=uncounted,
                    reducible={"n_rows": Reducible(min(200, perm), "rows", current=perm),
                               "faithfulness_rows": Reducible(min(50, n), "rows", current=min(config.faithfulness_rows, n))})

    def findings(self, result: AgreementResult, config: AgreementConfig) -> list[Finding]:
        out: list[Finding] = []
        labels = {**LABELS, **{m.key: m.label for m in result.rankings},
                  **(result.sanity.labels if result.sanity is not None else {})}
        top = ", ".join(c.feature for c in result.consensus[:3])
        names = ", ".join(labels.get(k, k) for k in result.consensus_methods)
        out.append(Finding("info", f"Consensus of {names}: the most influential features are {top}."))
        if result.weakest_pair is not None and result.weakest_pair[2] < config.disagreement_threshold:
            a, b, v = result.weakest_pair
            out.append(Finding("warning", f"Attribution methods disagree: {labels.get(a, a)} and "
                                          f"{labels.get(b, b)} rank the features with Spearman "
                                          f"correlation {v:.2f} (below {config.disagreement_threshold:.2f}); "
                                          "read any single method's ranking with care."))
        s = result.sanity
        if s is not None and s.flagged:
            flagged = ", ".join(labels.get(k, k) for k in s.flagged)
            level = "alert" if len(s.flagged) == len(s.methods) else "warning"
            out.append(Finding(level, f"Sanity check failed for {flagged}: with every layer of the network "
                                      "re-initialized, their attributions stay rank-correlated with the "
                                      f"trained model's (Spearman ≥ {s.threshold:.2f}), so they reflect the "
                                      "input or the architecture more than what the model learned."))
        order = result.deletion_order
        if order.get("baseline") and order.get("background"):
            a, b = order["baseline"][0], order["background"][0]
            flip = "" if a == b else " — the ranking of methods depends on how a feature is removed"
            out.append(Finding("info", f"Deletion faithfulness: {labels.get(a, a)} is most faithful when "
                                       f"removed features take a fixed baseline value, {labels.get(b, b)} "
                                       f"when they take background rows' values{flip}."))
        return out

    def figures(self, result: AgreementResult, data: AuditData) -> dict[str, Any]:
        from audit.core.plots import NEUTRAL, PALETTE, new_figure, pyplot, shorten

        figs: dict[str, Any] = {}
        keys = [r.key for r in result.rankings]
        if len(keys) >= 2:
            mat = np.array([[np.nan if result.spearman[a][b] is None else result.spearman[a][b]
                             for b in keys] for a in keys])
            fig, ax = new_figure(6.5, 5.2)
            im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
            labels = [shorten(r.label, 22) for r in result.rankings]
            ax.set_xticks(range(len(keys)), labels, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(keys)), labels, fontsize=7)
            for i in range(len(keys)):
                for j in range(len(keys)):
                    if np.isfinite(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                                color="white" if abs(mat[i, j]) > 0.6 else "black")
            fig.colorbar(im, ax=ax, shrink=0.8, label="Spearman correlation")
            ax.set_title("Rank agreement of global importances")
            fig.tight_layout()
            figs["correlation"] = fig

        if result.consensus:
            cons = list(result.consensus)[:15][::-1]
            fig, ax = new_figure(6.5, 0.6 + 0.3 * len(cons))
            y = np.arange(len(cons))
            ax.scatter([c.mean_rank.value for c in cons], y, color=PALETTE[0], zorder=3, label="mean rank")
            if cons[0].mean_rank.has_interval:
                for yy, c in zip(y, cons, strict=True):
                    ax.plot([c.mean_rank.lower, c.mean_rank.upper], [yy, yy], color=NEUTRAL, lw=3, alpha=0.6)
            ax.set_yticks(y, [shorten(c.feature, 28) for c in cons])
            ax.set_xlabel(f"mean rank (1 = most important); grey: {100 * CONSENSUS_LEVEL:.0f}% bootstrap interval")
            ax.set_title("Consensus ranking")
            fig.tight_layout()
            figs["consensus"] = fig

        if result.sanity is not None and result.sanity.stages:
            s = result.sanity
            fig, ax = new_figure(6.5, 2.8)
            x = np.arange(len(s.stages) + 1)
            for i, m in enumerate(s.methods):
                vals = [1.0] + [np.nan if st.row_spearman[m] is None else st.row_spearman[m] for st in s.stages]
                ax.plot(x, vals, "o-", color=PALETTE[i % len(PALETTE)], label=s.labels.get(m, m))
            ax.axhline(s.threshold, color="#555555", ls=":", lw=1)
            ax.set_xticks(x, ["trained"] + [f"+{shorten(st.randomized[-1], 14)}" for st in s.stages],
                          fontsize=7)
            ax.set_ylim(-1.05, 1.05)
            ax.set_ylabel("mean per-row Spearman\nwith the trained model")
            ax.set_title("Cascading randomization (layers re-initialized from the output down)")
            ax.legend(frameon=False, fontsize=7)
            fig.tight_layout()
            figs["sanity"] = fig

        if result.deletion:
            plt = pyplot()
            fig, axes = plt.subplots(1, 2, figsize=(6.8, 3.8), sharey=True)
            for ax, strategy, title in zip(axes, ("baseline", "background"),
                                           ("removed → fixed baseline row", "removed → background rows (averaged)"),
                                           strict=True):
                curves = [c for c in result.deletion if c.strategy == strategy]
                for i, c in enumerate(curves):
                    ax.plot(c.fractions, c.score, color=PALETTE[i % len(PALETTE)], lw=1.2, label=c.label)
                if curves:
                    ax.plot(curves[0].fractions, curves[0].random_score, color="black", ls=":", lw=1,
                            label="random order")
                ax.set_title(title, fontsize=8)
                ax.set_xlabel("share of raw features removed")
            axes[0].set_ylabel("prediction" if result.task == "regression" else "score of the predicted class")
            handles, labels = axes[0].get_legend_handles_labels()
            fig.legend(handles, labels, frameon=False, fontsize=6.5, loc="lower center", ncol=4,
                       bbox_to_anchor=(0.5, -0.02))
            fig.tight_layout(rect=(0, 0.16, 1, 1))
            figs["deletion"] = fig
        if result.sanity is not None and result.sanity.maps:
            from audit.core.attribution import grid_labels, heatmap_figure

            rows, cols = grid_labels(data)
            m0 = result.sanity.methods[0]
            figs["sanity_maps"] = heatmap_figure(
                result.sanity.maps, kind=data.layout.kind, row_labels=rows, col_labels=cols,
                unit=result.explained if data.task != "multiclass" else "P(predicted class)",
                title=f"{result.sanity.labels.get(m0, m0)}: trained model vs every layer re-initialized",
                ncols=2 * data.layout.style.pairs_per_row)  # trained and randomized side by side
        return figs


__all__ = ["Agreement", "AgreementConfig", "AgreementResult", "ConsensusRank", "DeletionCurve",
           "MethodRanking", "SanityCheck", "SanityStage", "deletion_curves", "permutation_importance",
           "sanity_check"]
