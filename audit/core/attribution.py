"""Small helpers shared by the attribution methods (shap, lime, saliency, agreement).

Everything here is plain numpy and takes the method's ``rng``, so results are reproducible
from the run's seed:

- :func:`sample_rows` picks the rows to explain (uniformly, without replacement, sorted);
- :func:`sample_background` draws the reference rows that "removed" features take their values
  from, clipping to the rows available and saying so;
- :func:`check_finite` refuses rows with missing or infinite inputs, with their count;
- :func:`bootstrap_mean_abs` gives the global importance (mean |attribution| per raw feature)
  with percentile bootstrap intervals, rows resampled, fully vectorised.

Per-encoded-column attributions are mapped to raw features with
``AuditData.encoding.aggregate(values, "sum")``: summing the one-hot columns of a feature keeps
additive attributions (SHAP, DeepLIFT, integrated gradients) additive over raw features, and it
must be done *per row, before* taking absolute values. The sum is not the raw feature's own Shapley
value when the columns were separate players (measured 0.007–0.01 off for Tree SHAP on one-hot
columns; see the shap method, which measures it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.core.dataset import AuditData, _rows
from audit.core.modalities import LAYOUTS
from audit.core.results import Estimate, estimates
from audit.errors import DataValidationError, InvalidConfigError


def check_finite(X: np.ndarray, method: str) -> None:
    """Refuse rows whose encoded input is missing or infinite, naming their count.

    The dataset layer already rejects missing values when it encodes a file; this guards the
    Python API path, where a caller may hand over arrays directly.
    """
    flat = np.asarray(X).reshape(len(X), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise DataValidationError(
            f"{method} cannot explain rows with missing or infinite inputs: {_rows(bad)}. Impute or "
            "drop them before the audit.")


def sample_rows(n: int, n_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Indices of the rows to explain, and whether they are a sample.

    All rows when ``n <= n_rows``; otherwise ``n_rows`` rows drawn uniformly without replacement
    with ``rng`` and returned sorted.

    Examples
    --------
    >>> rows, sampled = sample_rows(10, 3, np.random.default_rng(0))
    >>> len(rows), sampled
    (3, True)
    """
    if n_rows < 1:
        raise InvalidConfigError(f"The number of rows to explain must be at least 1. Got {n_rows} instead.")
    if n <= n_rows:
        return np.arange(n), False
    return np.sort(rng.choice(n, n_rows, replace=False)), True


def sample_background(X: np.ndarray, size: int, rng: np.random.Generator, *,
                      kind: str = "random", source: str = "the audited data"
                      ) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Reference rows for explainers that need a background distribution.

    Parameters
    ----------
    X : array (n, ...)
        Candidate rows (encoded model input).
    size : int
        Rows (``kind="random"``) or k-means centres (``kind="kmeans"``) wanted.
    kind : {"random", "kmeans"}
        ``"random"``: real rows, uniform without replacement (every row a valid input).
        ``"kmeans"``: weighted k-means centres of the flattened rows (fewer rows carry more of
        the distribution, but one-hot columns become fractions: not a valid input row).
    source : str
        Where the rows come from, for the note.

    Returns
    -------
    background : array (m, ...)
    weights : array (m,) or None
        Cluster sizes for ``"kmeans"`` (None for random rows, which weigh equally).
    note : str or None
        Set when the requested size was larger than the rows available and was clipped.
    """
    if size < 1:
        raise InvalidConfigError(f"The background size must be at least 1. Got {size} instead.")
    n = len(X)
    note = None
    if size > n:
        note = (f"The background was asked for {size:,} rows but {source} has only {n:,}; "
                f"all {n:,} rows were used.")
        size = n
    if kind == "random":
        idx = np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)
        return np.ascontiguousarray(X[idx]), None, note
    if kind == "kmeans":
        from sklearn.cluster import KMeans

        flat = X.reshape(n, -1).astype(np.float64)
        km = KMeans(n_clusters=size, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit(flat)
        weights = np.bincount(km.labels_, minlength=size).astype(float)
        centres = km.cluster_centers_.astype(X.dtype).reshape((size, *X.shape[1:]))
        return centres, weights / weights.sum(), note
    raise InvalidConfigError(f"The background kind must be \"random\" or \"kmeans\". Got {kind!r} instead.")


def baseline_row(data: AuditData, kind: str) -> tuple[np.ndarray, dict[str, str], str]:
    """The reference row: encoded (1, ...), its raw values as text, and a sentence saying how
    (the layout's ``baseline``: tabular ``"zeros"`` or ``"mean_mode"``; images and sequences
    ``"zeros"`` or their mean)."""
    return data.layout.baseline(data.X, kind)


def explained_output(model: Any, data: AuditData) -> tuple[str, list[str]]:
    """A sentence naming the explained output, and the output names."""
    classes = [str(c) for c in (data.classes or ())]
    if data.task == "binary":
        pos = classes[1] if len(classes) == 2 else "positive class"
        return f"the predicted probability of the positive class, P({pos})", [f"P({pos})"]
    if data.task == "regression":
        return "the predicted value", ["prediction"]
    names = classes or [f"class {k}" for k in range(model.n_classes)]
    return "the predicted probability of each row's predicted class", [f"P({c})" for c in names]


def reference_data(data: AuditData, ctx: Any, which: str) -> tuple[AuditData, str]:
    """The data the baseline and background come from (``ctx.train`` for ``"train"`` when the
    config names training data), and its name for the report."""
    if which == "train" and ctx.train is not None:
        return ctx.train, f"the training data ({ctx.train.n_rows:,} rows)"
    return data, f"the audited data ({data.n_rows:,} rows)"


@dataclass(frozen=True)
class BootstrapImportance:
    """Mean |attribution| per feature with a percentile bootstrap interval (rows resampled)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_bootstrap: int
    confidence: float

    def estimates(self, names: Sequence[str]) -> dict[str, Estimate]:
        """Feature -> :class:`~audit.core.results.Estimate` (no interval without resamples)."""
        return estimates(names, self.mean, self.low, self.high, level=self.confidence,
                         method=f"percentile bootstrap of the explained rows, {self.n_bootstrap:,} resamples")


def bootstrap_mean_abs(values: np.ndarray, *, n_bootstrap: int = 1000, confidence: float = 0.95,
                       rng: np.random.Generator) -> BootstrapImportance:
    """Mean |value| per column of ``values`` (rows x features) with bootstrap intervals.

    Each replicate resamples the rows with replacement; drawing the replicates' row counts from a
    multinomial turns all replicates into one matrix product (``counts @ |values| / n``), so
    memory stays at ``n_bootstrap x n`` instead of ``n_bootstrap x n x features``. The interval
    is the percentile interval; it covers the variability from *which rows were explained*, not
    from the explainer's own randomness or the choice of background.

    Examples
    --------
    >>> v = np.array([[1.0, 0.0], [-1.0, 0.1], [1.0, -0.1]])
    >>> b = bootstrap_mean_abs(v, n_bootstrap=200, rng=np.random.default_rng(0))
    >>> b.mean.round(3).tolist(), bool(b.low[0] == b.high[0] == 1.0)
    ([1.0, 0.067], True)
    """
    a = np.abs(np.asarray(values, dtype=float))
    n = a.shape[0]
    if n == 0:
        raise InvalidConfigError("Global importance needs at least one explained row.")
    mean = a.mean(axis=0)
    if n_bootstrap < 1 or n == 1:
        return BootstrapImportance(mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan),
                                   0, confidence)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(float)
    reps = counts @ a / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail], axis=0)
    return BootstrapImportance(mean, low, high, n_bootstrap, confidence)


def top_features(importance: dict[str, float], k: int) -> list[str]:
    """The ``k`` names with the largest values (ties broken by name, for stable reports)."""
    return [name for name, _ in sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


# --------------------------------------------------------------------------------------------
# Images and sequences: maps, group totals and heatmap figures
# --------------------------------------------------------------------------------------------

RED_BLUE = ("Red: the region pushes {unit} up; blue: it pushes it down; white: no effect. "
            "The colour scale is centred at 0 and shared by every panel of the figure.")


@dataclass(frozen=True)
class HeatMap:
    """One 2-D attribution map: image pixels (H x W, channels summed) or features x lags (F x T).

    ``row`` is the audited row it explains (None for averages); ``image`` the raw image under the
    overlay (images only, channels averaged).
    """

    title: str
    values: list[list[float]]
    row: int | None = None
    image: list[list[float]] | None = None


@dataclass(frozen=True)
class ModalAttribution:
    """Attributions of one method on images or sequences, laid out for a reader.

    group_importance : grouping ("patch"; or "feature" and "lag") -> group -> mean over rows of
        |the group's total attribution| (additive methods: the exact share of f(x) - f(baseline)
        carried by the group; gradients: mean |gradient| over the group's elements).
    average_maps : class-average signed maps (classifiers: rows grouped by predicted class), or
        the mean and the mean |attribution| map (regression).
    examples : maps of chosen rows (images: a few per predicted class).
    """

    kind: str
    method: str
    unit: str
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]
    group_importance: dict[str, dict[str, float]]
    average_maps: tuple[HeatMap, ...]
    examples: tuple[HeatMap, ...]


def element_grid(values: np.ndarray, data: Any) -> np.ndarray:
    """Per-element values of one row -> a 2-D grid: (H, W) for images (channels summed), (F, T)
    for sequences (one row per feature, oldest lag first)."""
    return data.layout.grid(values)


def grid_labels(data: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return data.layout.grid_labels


def groupings(data: Any) -> tuple[str, ...]:
    """The readable groupings of a modality: patches for images; features and lags for sequences."""
    return data.layout.groupings


def group_values(values: np.ndarray, data: Any, by: str, *, how: str = "sum") -> np.ndarray:
    """Per-row group totals (n, G) of per-element values (n, ...) (see the layout's
    ``group_values``)."""
    return data.layout.group_values(values, by, how)


def raw_image_of(data: Any, row: int) -> list[list[float]] | None:
    """The raw image (channels averaged) under an overlay of ``row``; None for sequences."""
    return data.layout.raw_image(data.X[row])


def modal_attribution(values: np.ndarray, data: Any, rows: np.ndarray, *, method: str, unit: str,
                      how: str = "sum", classes: np.ndarray | None = None,
                      outputs: np.ndarray | None = None, n_per_class: int = 2,
                      n_examples: int = 4) -> ModalAttribution:
    """Group totals, average maps and example maps of per-element attributions.

    Parameters
    ----------
    values : array (n, ...)
        Signed per-element attributions of the audited rows ``rows``.
    classes : array (n,), optional
        Predicted class index per row (classifiers): average maps per class, examples per class.
    outputs : array (n,), optional
        The explained output per row (regression): examples are the highest, lowest and median.
    """
    v = np.asarray(values, dtype=float).reshape(len(values), -1)
    rows = np.asarray(rows, dtype=int)
    grids = np.stack([element_grid(x, data) for x in v]) if len(v) else np.zeros((0, 1, 1))
    imp = {by: dict(zip(data.layout.groups(by), np.abs(group_values(v, data, by, how=how)).mean(0).tolist(),
                        strict=True)) for by in groupings(data)}

    def raw_image(r: int) -> list[list[float]] | None:
        return raw_image_of(data, r)

    averages: list[HeatMap] = []
    examples: list[HeatMap] = []
    names = [str(c) for c in (data.classes or ())]
    if classes is not None:
        classes = np.asarray(classes, dtype=int)
        for k in np.unique(classes):
            members = np.flatnonzero(classes == k)
            label = names[k] if k < len(names) else str(k)
            averages.append(HeatMap(f"class {label} (n={len(members)})", grids[members].mean(0).tolist()))
            for i in members[:n_per_class]:
                examples.append(HeatMap(f"row {data.user_row(int(rows[i]))}: predicted {label}", grids[i].tolist(),
                                        int(rows[i]), raw_image(int(rows[i]))))
    else:
        averages.append(HeatMap("mean attribution", grids.mean(0).tolist()))
        averages.append(HeatMap("mean |attribution|", np.abs(grids).mean(0).tolist()))
        if outputs is not None and len(outputs):
            o = np.asarray(outputs, dtype=float).reshape(-1)
            order = np.argsort(o, kind="stable")
            picks = [(int(order[-1]), "highest prediction"), (int(order[0]), "lowest prediction"),
                     (int(order[len(order) // 2]), "median prediction")]
            seen: set[int] = set()
            for i, why in picks[:n_examples]:
                if i not in seen:
                    seen.add(i)
                    examples.append(HeatMap(f"row {data.user_row(int(rows[i]))} ({why}: {o[i]:.3g})", grids[i].tolist(),
                                            int(rows[i]), raw_image(int(rows[i]))))
    row_labels, col_labels = grid_labels(data)
    return ModalAttribution(kind=data.layout.kind, method=method, unit=unit, row_labels=row_labels,
                            col_labels=col_labels, group_importance=imp, average_maps=tuple(averages),
                            examples=tuple(examples))


def map_figures(m: ModalAttribution, label: str, *, by_class: bool) -> dict[str, Any]:
    """The chosen examples' maps and the average maps of one method's per-element attributions
    (``by_class``: the averages are per predicted class, as ``modal_attribution`` makes them for
    classifiers)."""
    common = {"kind": m.kind, "row_labels": m.row_labels, "col_labels": m.col_labels, "unit": m.unit}
    figs: dict[str, Any] = {}
    if m.examples:
        figs["examples"] = heatmap_figure(m.examples, title=f"{label} on chosen examples", **common)
    figs["averages"] = heatmap_figure(
        m.average_maps, title=f"{label}: " + ("class-average maps (rows grouped by predicted class)"
                                              if by_class else "average over the explained rows"),
        **common)
    return figs


def heatmap_figure(maps: Sequence[HeatMap], *, kind: str, row_labels: Sequence[str],
                   col_labels: Sequence[str], unit: str, title: str, ncols: int | None = None) -> Any:
    """Heatmaps on one diverging scale centred at 0 (red > 0, blue < 0), with a colour bar.

    Images: the raw image in grey with the attribution overlaid (where ``HeatMap.image`` is set);
    sequences: features (rows) x lags (columns, oldest first).
    """
    from matplotlib.colors import TwoSlopeNorm

    from audit.core.plots import pyplot

    plt = pyplot()
    style = LAYOUTS[kind].style
    maps = list(maps)
    n = max(1, len(maps))
    if ncols is None:
        ncols = min(n, style.per_row)
    nrows = int(np.ceil(n / ncols))
    if style.square:
        size = (min(6.5, 1.35 * ncols + 1.0), 1.45 * nrows + 0.7)
    else:
        size = (6.5, (0.32 * len(row_labels) + 0.9) * nrows + 0.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    # One scale for every panel; the 99th percentile of |value| keeps one extreme cell from
    # washing out the rest (larger values saturate; the colour bar's ends say so).
    every = np.concatenate([np.abs(np.asarray(m.values, dtype=float)).ravel() for m in maps] or [np.zeros(1)])
    vmax = float(np.nanquantile(every, 0.99)) or float(np.nanmax(every)) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    im = None
    for ax, m in zip(axes.flat, maps):
        vals = np.asarray(m.values, dtype=float)
        if style.square:
            im = ax.imshow(vals, cmap="RdBu_r", norm=norm, interpolation="nearest")
            if m.image is not None:  # the digit's outline over the heatmap (half its peak intensity)
                img = np.asarray(m.image, dtype=float)
                if float(img.max()) > float(img.min()):
                    ax.contour(img, levels=[0.5 * (img.max() + img.min())], colors="k",
                               linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            im = ax.imshow(vals, cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
            ax.set_yticks(range(len(row_labels)), list(row_labels), fontsize=7)
            ax.set_xticks(range(len(col_labels)), list(col_labels), fontsize=6, rotation=90)
        ax.set_title(m.title, fontsize=7)
    for ax in list(axes.flat)[len(maps):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.88, 0.97))
    cax = fig.add_axes((0.9, 0.12, 0.025, 0.76))
    cb = fig.colorbar(im, cax=cax, extend="both")
    cb.set_label(f"attribution to {unit}\n(red: up, blue: down)", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    return fig


def bar_totals_figure(totals: dict[str, dict[str, float]], *, unit: str, title: str) -> Any:
    """Horizontal bars of mean |group total| per grouping (one panel per grouping)."""
    from audit.core.plots import NEGATIVE, pyplot, shorten

    plt = pyplot()
    keys = list(totals)
    height = max(2.0, 0.22 * max(len(v) for v in totals.values()) + 0.8)
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5, height), squeeze=False)
    for ax, by in zip(axes[0], keys, strict=True):
        items = list(totals[by].items())[::-1]
        ax.barh(range(len(items)), [v for _, v in items], color=NEGATIVE, height=0.6)
        ax.set_yticks(range(len(items)), [shorten(k, 22) for k, _ in items], fontsize=6)
        ax.set_xlabel(f"mean |total per {by}|", fontsize=7)
    fig.suptitle(f"{title} ({unit})", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Gradients through recurrent layers on CUDA
# --------------------------------------------------------------------------------------------


@contextmanager
def rnn_backward_mode(module: Any, *, force: bool = False) -> Iterator[list[Any]]:
    """Let gradients flow through cuDNN RNNs of a model kept in eval mode.

    cuDNN's RNN backward refuses to run in eval mode ("cudnn RNN backward can only be called in
    training mode"). While the block runs, and only when the module's parameters live on a CUDA
    device (or ``force``), every ``torch.nn.RNNBase`` submodule (RNN, LSTM, GRU) is put in
    training mode with its inter-layer dropout set to 0 -- the only thing training mode changes
    in these modules -- so the outputs equal eval mode's; the modes and dropouts are restored
    afterwards. Other modules (Dropout, BatchNorm) stay as they were. Yields the switched modules.

    Examples
    --------
    >>> import torch
    >>> lstm = torch.nn.LSTM(2, 3, num_layers=2, dropout=0.5).eval()
    >>> with rnn_backward_mode(lstm, force=True) as switched:
    ...     lstm.training, lstm.dropout, len(switched)
    (True, 0.0, 1)
    >>> lstm.training, lstm.dropout
    (False, 0.5)
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        yield []
        return
    rnns = [m for m in module.modules() if isinstance(m, torch.nn.RNNBase)]
    first = next(iter(module.parameters()), None)
    on_cuda = first is not None and first.device.type == "cuda"
    if not rnns or not (on_cuda or force):
        yield []
        return
    saved = [(m, m.training, m.dropout) for m in rnns]
    try:
        for m in rnns:
            m.dropout = 0.0
            m.train(True)
        yield rnns
    finally:
        for m, training, dropout in saved:
            m.dropout = dropout
            m.train(training)


__all__ = ["BootstrapImportance", "HeatMap", "ModalAttribution", "RED_BLUE", "bar_totals_figure",
           "bootstrap_mean_abs", "check_finite", "element_grid", "grid_labels", "group_values",
           "groupings", "heatmap_figure", "modal_attribution", "rnn_backward_mode",
           "sample_background", "sample_rows", "top_features"]
