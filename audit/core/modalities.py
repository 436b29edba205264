"""Image and sequence data: loading, validation, scaling and raw-feature layouts.

Tabular data becomes :class:`~audit.core.dataset.AuditData` through an
:class:`~audit.core.dataset.Encoding`. Images and sequences become ``AuditData`` through the
loaders here, with ``modality`` set to ``"image"`` or ``"sequence"`` and ``X`` holding the model's
input tensor as float32:

=========  ================  =============================================================
modality   ``X``             sources
=========  ================  =============================================================
image      (N, C, H, W)      ``.npz`` (array ``X``: (N, C, H, W), or (N, H, W) for one
                             channel), or a folder of PNG/JPEG files plus a labels CSV
                             (one row per file: file name, target, sensitive attributes)
sequence   (N, T, F)         ``.npz`` (array ``X``: (N, T, F)), or a long-format CSV
                             (id, time, features ...) cut into windows of length T
=========  ================  =============================================================

Scaling is declared, never fitted on the audited rows (the model saw the scaling of its training
data): model input = ``(raw - center) / scale``, per channel for images and per feature for
sequences (from ``[data] scaling`` or, for sequences, the numeric features of the ``[model]``
encoding JSON).

Layouts: the raw-feature mapping
--------------------------------
Every ``AuditData`` keeps an :class:`Encoding` whose columns are the elements of the flattened
input (``X.reshape(N, -1)``, C order), one numeric "feature" per element with its scaling, so that
generic code (``encoding.columns``, ``encoding.aggregate``, split thresholds back in raw units)
works unchanged. A *layout* (``AuditData.layout``) adds the groupings a reader thinks in:

- :class:`ImageLayout` -- element names ``"px[r,c]"`` (one channel) or ``"<channel>[r,c]"``;
  groups by ``"pixel"``, ``"patch"`` (a regular grid of ``patch x patch`` squares, named
  ``"patch[r0-r1,c0-c1]"``) and ``"channel"``;
- :class:`SequenceLayout` -- element names ``"<feature>[t-k]"`` (``k = T`` is the oldest step,
  ``k = 1`` the newest); groups by ``"feature"`` (all lags of one indicator) and by ``"lag"``
  (all indicators at one step, named ``"t-k"``).

``layout.groups(by)`` maps each group name to the flattened element indices and
``layout.aggregate(values, by=..., how="sum")`` collapses the element axes of any per-element
array (attributions of shape (..., C, H, W), (..., T, F) or flattened (..., C*H*W)): ``"sum"`` is
exact for additive attributions (SHAP, Integrated Gradients), ``"mean_abs"`` and ``"max_abs"``
summarise magnitudes.

Layouts also carry what methods would otherwise branch on ``modality`` for: the readable
``groupings`` and the ``comparison_grouping`` agreement compares methods at, the
``occlusion_windows`` (``occlusion_ids``), the reference input (``baseline``), whether exact
Shapley values are within reach (``exact_coalitions``), LIME's ``superpixels``, how maps are drawn
(``style``) and the Hugging Face task names (``hf_tasks``). Tabular data has a
:class:`~audit.core.dataset.TabularLayout` (raw features over encoded columns; ``elementwise``
False), so every ``AuditData.layout`` answers the same questions; ``LAYOUTS`` maps a modality
name to its layout class.

``layout.tabular_view(X)`` is the *feature view* for methods that need a flat table of named
features (the surrogate tree, lag-feature LIME): for images, the mean raw intensity of every
patch (per channel); for sequences, every lag of every feature. ``AuditData.tabular_view()``
returns the data with ``X`` replaced by that view (tabular data returns itself), and
``layout.view_grid(values)`` lays per-view-column values back out as a 2-D grid for heatmaps
(pixels for images; features x lags for sequences).

Examples
--------
>>> import numpy as np
>>> lay = SequenceLayout(features=("unemp", "infl"), length=3)
>>> lay.columns[:3]
['unemp[t-3]', 'infl[t-3]', 'unemp[t-2]']
>>> attr = np.ones((3, 2))
>>> lay.aggregate(attr, by="feature").tolist(), lay.aggregate(attr, by="lag").tolist()
([3.0, 3.0], [2.0, 2.0, 2.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from audit.core.dataset import (
    AuditData,
    DatasetSpec,
    Encoding,
    NumericFeature,
    TabularLayout,
    _encode_target,
    _label_text,
    _refuse_time,
    _rows,
    _show,
    read_table,
    text_columns,
)
from audit.errors import DataValidationError, InvalidConfigError, did_you_mean

MODALITIES: tuple[str, ...] = ("tabular", "image", "sequence")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
Aggregate = Literal["sum", "mean_abs", "max_abs"]


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


def _collapse(values: np.ndarray, groups: Mapping[str, list[int]], n_elements: int,
              how: Aggregate) -> np.ndarray:
    """Collapse the trailing element axes of ``values`` into one axis of groups."""
    values = np.asarray(values, dtype=float)
    size = 1
    k = 0
    while size < n_elements and k < values.ndim:  # how many trailing axes hold the elements
        k += 1
        size *= values.shape[values.ndim - k]
    if size != n_elements:
        raise ValueError(f"The trailing axes of an array of shape {values.shape} do not hold "
                         f"{n_elements} elements.")
    flat = values.reshape(*values.shape[:values.ndim - k], n_elements)
    parts = []
    for idx in groups.values():
        block = flat[..., idx]
        if how == "sum":
            parts.append(block.sum(-1))
        elif how == "mean_abs":
            parts.append(np.abs(block).mean(-1))
        elif how == "max_abs":
            parts.append(np.abs(block).max(-1))
        else:
            raise ValueError(f"The 'how' parameter of aggregate must be 'sum', 'mean_abs' or "
                             f"'max_abs'. Got {how!r} instead.")
    return np.stack(parts, axis=-1)


def group_values(layout: Any, values: np.ndarray, by: str, how: str = "sum") -> np.ndarray:
    """Per-row group values (n, G) of per-element values (n, ...) of an image/sequence layout.

    ``how``: "sum" (additive attributions stay additive), "mean" (a group-level value repeated on
    every element of the group, e.g. occlusion with a patch mask), "mean_abs" (gradients).
    """
    v = np.asarray(values, dtype=float).reshape(len(values), -1)
    if how == "mean":
        sizes = np.array([len(ix) for ix in layout.groups(by).values()], dtype=float)
        return layout.aggregate(v, by=by, how="sum") / sizes
    return layout.aggregate(v, by=by, how=how)


@dataclass(frozen=True)
class MapStyle:
    """How a map of per-element values is drawn (core.attribution's heatmaps, the method figures).

    square : whether cells are square, tick labels hidden and the raw input's outline drawn over
        the map (images), or the map is a wide grid with labelled rows and columns (sequences).
    per_row : maps side by side by default; pairs and method comparisons use ``pairs_per_row``
        and ``methods_per_row``.
    cmap : the sequential colour map of raw values.
    axis_labels : what the grid's columns and rows are.
    """

    square: bool
    per_row: int
    pairs_per_row: int
    methods_per_row: int
    cmap: str
    axis_labels: tuple[str, str]


class _Grid:
    """What image and sequence layouts share: elements that add up to named groups, a 2-D grid
    to draw them on, and occlusion windows. Subclasses set the class-level knowledge below."""

    kind: ClassVar[str]
    #: Per-row attribution values are per input element (pixel, cell); readers see groups.
    elementwise: ClassVar[bool] = True
    attribution_grouping: ClassVar[str] = "element"
    #: Exact Shapley values over the raw inputs are out of reach (hundreds of elements).
    exact_coalitions: ClassVar[bool] = False
    #: The grouping lime_image segments an input by (None: LIME's tabular explainer on elements).
    superpixels: ClassVar[str | None] = None
    #: The readable groupings (reports, significance tests), the one methods are compared at
    #: (agreement), the level of one element, and what occlusion may remove at once.
    groupings: ClassVar[tuple[str, ...]]
    comparison_grouping: ClassVar[str]
    element_grouping: ClassVar[str]
    occlusion_windows: ClassVar[tuple[str, ...]]
    default_occlusion_window: ClassVar[str]
    #: The Hugging Face task names of a classifier and of a regression model on this data.
    hf_tasks: ClassVar[tuple[str, str]]
    style: ClassVar[MapStyle]

    def groups(self, by: Any) -> dict[str, list[int]]:
        raise NotImplementedError

    @property
    def n_elements(self) -> int:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def grid(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def group_values(self, values: np.ndarray, by: str, how: str = "sum") -> np.ndarray:
        """Per-row group values (n, G) of per-element values (n, ...); see :func:`group_values`."""
        return group_values(self, values, by, how)

    def occlusion_window(self, window: str) -> str:
        """The resolved occlusion window ("auto": the layout's default)."""
        if window == "auto":
            return self.default_occlusion_window
        if window not in self.occlusion_windows:
            raise InvalidConfigError(f"The 'occlusion_window' option of saliency must be \"auto\" or one "
                                     f"of {list(self.occlusion_windows)} for {self.kind} data. Got {window!r} instead.")
        return window

    def occlusion_ids(self, window: str) -> np.ndarray | None:
        """Occlusion mask (1, *shape) of group ids; None = every element alone (captum's default)."""
        by = self.occlusion_window(window)
        if by == "cell":
            return None
        ids = np.zeros(self.n_elements, dtype=np.int64)
        for g, idx in enumerate(self.groups(by).values()):
            ids[idx] = g
        return ids.reshape((1, *self.shape))

    def grid_shapes(self) -> dict[str, tuple[int, int, list[str]]]:
        """Groupings whose groups tile a 2-D grid: name -> (rows, columns, group names)."""
        return {}

    def raw_image(self, x: np.ndarray) -> list[list[float]] | None:
        """The raw picture of one input to draw a map over (images only)."""
        return None

    def paint(self, values: Sequence[float], by: str) -> np.ndarray:
        """Per-group values ``by`` painted on the 2-D grid: every cell shows its group's value."""
        flat = np.zeros(self.n_elements)
        for v, idx in zip(values, self.groups(by).values(), strict=True):
            flat[idx] = v
        return self.grid(flat) / self.grid(np.ones(self.n_elements))  # images: channels summed


@dataclass(frozen=True)
class ImageLayout(_Grid):
    """Shape, scaling and groupings of (C, H, W) images.

    Parameters
    ----------
    channels, height, width : int
    center, scale : tuple of float
        Per-channel scaling: model input = (raw - center) / scale.
    patch : int
        Side of the square patches of the ``"patch"`` grouping (edge patches may be smaller).
    channel_names : tuple of str
        Default ``("px",)`` for one channel, ``("R", "G", "B")`` for three.

    Examples
    --------
    >>> lay = ImageLayout(1, 4, 4, center=(0.0,), scale=(16.0,), patch=2)
    >>> list(lay.groups("patch"))
    ['patch[0-1,0-1]', 'patch[0-1,2-3]', 'patch[2-3,0-1]', 'patch[2-3,2-3]']
    """

    channels: int
    height: int
    width: int
    center: tuple[float, ...] = (0.0,)
    scale: tuple[float, ...] = (1.0,)
    patch: int = 2
    channel_names: tuple[str, ...] = ()
    kind: ClassVar[str] = "image"
    superpixels: ClassVar[str | None] = "patch"
    groupings: ClassVar[tuple[str, ...]] = ("patch",)
    comparison_grouping: ClassVar[str] = "patch"
    element_grouping: ClassVar[str] = "pixel"
    occlusion_windows: ClassVar[tuple[str, ...]] = ("pixel", "patch")
    default_occlusion_window: ClassVar[str] = "patch"
    hf_tasks: ClassVar[tuple[str, str]] = ("image-classification", "image-regression")
    style: ClassVar[MapStyle] = MapStyle(square=True, per_row=5, pairs_per_row=3, methods_per_row=4,
                                         cmap="Greys", axis_labels=("pixel column", "pixel row"))

    def __post_init__(self) -> None:
        if not self.channel_names:
            names = ("px",) if self.channels == 1 else ("R", "G", "B") if self.channels == 3 else tuple(
                f"ch{i}" for i in range(self.channels))
            object.__setattr__(self, "channel_names", names)
        for key in ("center", "scale"):
            v = tuple(float(x) for x in getattr(self, key))
            if len(v) == 1 and self.channels > 1:
                v = v * self.channels
            object.__setattr__(self, key, v)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def n_elements(self) -> int:
        return self.channels * self.height * self.width

    @property
    def raw_features(self) -> list[str]:
        """What the report lists as the input's raw features: the channels, with the image size."""
        return [f"{name} ({self.height}×{self.width} pixels)" for name in self.channel_names]

    @property
    def columns(self) -> list[str]:
        return [f"{ch}[{r},{c}]" for ch in self.channel_names
                for r in range(self.height) for c in range(self.width)]

    def encoding(self) -> Encoding:
        """Element-level encoding: one numeric feature per pixel with its channel's scaling."""
        feats = [NumericFeature(name, self.center[i // (self.height * self.width)],
                                self.scale[i // (self.height * self.width)])
                 for i, name in enumerate(self.columns)]
        return Encoding(tuple(feats))

    def raw_image(self, x: np.ndarray) -> list[list[float]] | None:
        """The raw image of one input (C, H, W), channels averaged."""
        raw = (np.asarray(x, dtype=float) * np.asarray(self.scale)[:, None, None]
               + np.asarray(self.center)[:, None, None])
        return raw.mean(axis=0).tolist()

    def grid_shapes(self) -> dict[str, tuple[int, int, list[str]]]:
        """The patches tile the image: (rows, columns, names) of the patch grid."""
        return {"patch": (math.ceil(self.height / self.patch), math.ceil(self.width / self.patch),
                          list(self.groups("patch")))}

    def _patches(self) -> list[tuple[str, list[tuple[int, int]]]]:
        out = []
        for r0 in range(0, self.height, self.patch):
            for c0 in range(0, self.width, self.patch):
                r1, c1 = min(r0 + self.patch, self.height) - 1, min(c0 + self.patch, self.width) - 1
                cells = [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
                out.append((f"patch[{r0}-{r1},{c0}-{c1}]", cells))
        return out

    def groups(self, by: Literal["pixel", "patch", "channel"] = "patch") -> dict[str, list[int]]:
        """Group name -> flattened element indices (all channels of a pixel/patch together)."""
        hw = self.height * self.width
        if by == "pixel":
            return {f"px[{r},{c}]": [ch * hw + r * self.width + c for ch in range(self.channels)]
                    for r in range(self.height) for c in range(self.width)}
        if by == "patch":
            return {name: [ch * hw + r * self.width + c for ch in range(self.channels)
                           for r, c in cells] for name, cells in self._patches()}
        if by == "channel":
            return {name: list(range(i * hw, (i + 1) * hw)) for i, name in enumerate(self.channel_names)}
        raise ValueError(f"The 'by' parameter of ImageLayout.groups must be 'pixel', 'patch' or "
                         f"'channel'. Got {by!r} instead.")

    def aggregate(self, values: np.ndarray, *, by: Literal["pixel", "patch", "channel"] = "patch",
                  how: Aggregate = "sum") -> np.ndarray:
        """Collapse per-element values (..., C, H, W) or (..., C*H*W) to one value per group."""
        return _collapse(values, self.groups(by), self.n_elements, how)

    def grid(self, values: np.ndarray) -> np.ndarray:
        """One row's per-element values as the (H, W) pixel grid, channels summed."""
        return np.asarray(values, dtype=float).reshape(self.channels, self.height, self.width).sum(axis=0)

    @property
    def grid_labels(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(str(r) for r in range(self.height)), tuple(str(c) for c in range(self.width))

    def baseline(self, X: np.ndarray, kind: str) -> tuple[np.ndarray, dict[str, str], str]:
        """The reference image (1, C, H, W) of model inputs ``X``, its values as text (none for
        images) and a sentence saying how: ``"zeros"`` or the pixel-wise mean."""
        shape = (1, *self.shape)
        if kind == "zeros":
            return np.zeros(shape, np.float32), {}, "the all-zero image (every pixel at the scaling's centre)"
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        return X.mean(axis=0).reshape(shape).astype(np.float32), {}, "the mean image (pixel-wise mean)"

    def tabular_view(self, X: np.ndarray) -> tuple[np.ndarray, Encoding]:
        """Mean *raw* intensity of every patch and channel, as a named feature table."""
        n = X.shape[0]
        flat = np.asarray(X, dtype=float).reshape(n, self.channels, self.height * self.width)
        cols, feats = [], []
        for name, cells in self._patches():
            idx = [r * self.width + c for r, c in cells]
            for ch, ch_name in enumerate(self.channel_names):
                raw = flat[:, ch, idx].mean(axis=1) * self.scale[ch] + self.center[ch]
                cols.append(raw)
                label = name if self.channels == 1 else f"{ch_name} {name}"
                feats.append(NumericFeature(f"{label} mean"))
        return np.column_stack(cols).astype(np.float32), Encoding(tuple(feats))

    def view_grid(self, values: Sequence[float]) -> tuple[np.ndarray, list[str], list[str]]:
        """Per-view-column values (one per patch and channel, as ``tabular_view`` orders them)
        painted onto the (H, W) pixel grid, summed over channels, with row and column labels."""
        values = np.asarray(values, dtype=float).reshape(-1, self.channels).sum(axis=1)
        grid = np.zeros((self.height, self.width))
        for v, (_, cells) in zip(values, self._patches(), strict=True):
            for r, c in cells:
                grid[r, c] = v
        return grid, [str(r) for r in range(self.height)], [str(c) for c in range(self.width)]


@dataclass(frozen=True)
class SequenceLayout(_Grid):
    """Shape, scaling and groupings of (T, F) windows.

    Parameters
    ----------
    features : tuple of str
        The F indicators, in the order of the last axis.
    length : int
        Window length T; index 0 of the time axis is lag T (oldest), index T-1 is lag 1.
    center, scale : tuple of float
        Per-feature scaling: model input = (raw - center) / scale.
    """

    features: tuple[str, ...]
    length: int
    center: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    kind: ClassVar[str] = "sequence"
    groupings: ClassVar[tuple[str, ...]] = ("feature", "lag")
    comparison_grouping: ClassVar[str] = "lag"
    element_grouping: ClassVar[str] = "cell"
    occlusion_windows: ClassVar[tuple[str, ...]] = ("cell", "lag", "feature")
    default_occlusion_window: ClassVar[str] = "cell"
    hf_tasks: ClassVar[tuple[str, str]] = ("tabular-classification", "time-series-forecasting")
    style: ClassVar[MapStyle] = MapStyle(square=False, per_row=2, pairs_per_row=1, methods_per_row=2,
                                         cmap="viridis", axis_labels=("lag (oldest left)", ""))

    def __post_init__(self) -> None:
        f = len(self.features)
        if not self.center:
            object.__setattr__(self, "center", (0.0,) * f)
        if not self.scale:
            object.__setattr__(self, "scale", (1.0,) * f)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.length, len(self.features))

    @property
    def n_elements(self) -> int:
        return self.length * len(self.features)

    @property
    def raw_features(self) -> list[str]:
        return list(self.features)

    @property
    def lags(self) -> list[str]:
        """Lag names in time-axis order: ``t-T`` (oldest) ... ``t-1`` (newest)."""
        return [f"t-{self.length - i}" for i in range(self.length)]

    @property
    def columns(self) -> list[str]:
        return [f"{name}[{lag}]" for lag in self.lags for name in self.features]

    def encoding(self) -> Encoding:
        feats = [NumericFeature(f"{name}[{lag}]", self.center[j], self.scale[j])
                 for lag in self.lags for j, name in enumerate(self.features)]
        return Encoding(tuple(feats))

    def groups(self, by: Literal["feature", "lag", "cell"] = "feature") -> dict[str, list[int]]:
        f = len(self.features)
        if by == "feature":
            return {name: [t * f + j for t in range(self.length)] for j, name in enumerate(self.features)}
        if by == "lag":
            return {lag: list(range(t * f, (t + 1) * f)) for t, lag in enumerate(self.lags)}
        if by == "cell":
            return {name: [i] for i, name in enumerate(self.columns)}
        raise ValueError(f"The 'by' parameter of SequenceLayout.groups must be 'feature', 'lag' or "
                         f"'cell'. Got {by!r} instead.")

    def aggregate(self, values: np.ndarray, *, by: Literal["feature", "lag", "cell"] = "feature",
                  how: Aggregate = "sum") -> np.ndarray:
        """Collapse per-element values (..., T, F) or (..., T*F) to totals per feature or lag."""
        return _collapse(values, self.groups(by), self.n_elements, how)

    def grid(self, values: np.ndarray) -> np.ndarray:
        """One row's per-element values as a (F, T) grid: one row per feature, oldest lag first."""
        return np.asarray(values, dtype=float).reshape(self.length, len(self.features)).T

    @property
    def grid_labels(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(self.features), tuple(self.lags)

    def baseline(self, X: np.ndarray, kind: str) -> tuple[np.ndarray, dict[str, str], str]:
        """The reference window (1, T, F) of model inputs ``X``, each indicator's raw value as
        text and a sentence saying how: ``"zeros"`` or a flat window at each indicator's mean
        over every step (no lag is singled out)."""
        if kind == "zeros":
            return (np.zeros((1, *self.shape), np.float32), {},
                    "the all-zero window (every indicator at its scaling centre, e.g. its training mean)")
        per_feature = np.asarray(X, dtype=np.float64).reshape(len(X), *self.shape).mean(axis=(0, 1))
        row = np.broadcast_to(per_feature, self.shape)[None]
        text = {f: f"{float(v) * s + c:.4g}" for f, v, c, s in zip(
            self.features, per_feature, self.center, self.scale, strict=True)}
        return row.astype(np.float32), text, "a flat window with every indicator at its mean over all steps"

    def tabular_view(self, X: np.ndarray) -> tuple[np.ndarray, Encoding]:
        """Every lag of every feature as a column (the model's scaled inputs; the encoding maps
        thresholds back to raw units)."""
        return np.asarray(X, dtype=np.float32).reshape(X.shape[0], -1), self.encoding()

    def view_grid(self, values: Sequence[float]) -> tuple[np.ndarray, list[str], list[str]]:
        """Per-view-column values (one per lag and feature) as a (F, T) grid: one row per
        feature, one column per lag (oldest first), with row and column labels."""
        grid = np.asarray(values, dtype=float).reshape(self.length, len(self.features)).T
        return grid, list(self.features), self.lags


Layout = TabularLayout | ImageLayout | SequenceLayout
LAYOUTS: dict[str, type[TabularLayout] | type[ImageLayout] | type[SequenceLayout]] = {
    "tabular": TabularLayout, "image": ImageLayout, "sequence": SequenceLayout}


# --------------------------------------------------------------------------------------------
# Specs (the [data] table for images and sequences)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """How to read images. Paths are absolute.

    ``path`` is an ``.npz`` file or a folder; ``labels`` a CSV with one row per image (required
    for a folder, optional for ``.npz``, whose rows it then describes in order); ``file_column``
    names the CSV column with file names relative to the folder; ``array`` the image array in the
    ``.npz`` (target and sensitive attributes are arrays of the same file when no labels CSV is
    given); ``channels`` the expected channel count; ``center``/``scale`` the pixel scaling
    (scalars or one per channel); ``patch`` the patch side for the patch-level feature view.
    """

    path: str
    labels: str | None = None
    file_column: str = "file"
    array: str = "X"
    channels: int | None = None
    center: tuple[float, ...] = (0.0,)
    scale: tuple[float, ...] = (1.0,)
    patch: int | None = None
    modality: str = field(default="image", init=False)


@dataclass(frozen=True)
class SequenceSpec:
    """How to read sequences. Paths are absolute.

    ``path`` is an ``.npz`` (array ``array`` of shape (N, T, F)) or a long-format CSV with
    ``time_column`` (and ``id_column`` when it holds several series). Windows of ``window`` steps
    end at every step (``stride`` apart) whose target, ``horizon`` steps later, exists; the target
    is the ``target`` column at that later step (``horizon = 0``: at the window's last step).
    ``time_range`` keeps windows whose target time lies in [start, end] (either may be "");
    ``train_time_range`` does the same for the model's training windows (methods that retrain
    the model use them; without it they need ``train_path``).
    ``scaling`` maps feature -> (center, scale). Sensitive attributes are read at the window's
    last step. Windows are ordered by id, then time.
    """

    path: str
    window: int | None = None
    horizon: int = 1
    stride: int = 1
    id_column: str | None = None
    time_column: str | None = None
    time_range: tuple[str, str] | None = None
    train_time_range: tuple[str, str] | None = None
    array: str = "X"
    scaling: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    modality: str = field(default="sequence", init=False)


ModalSpec = ImageSpec | SequenceSpec

# [data] keys that only images / only sequences accept (config.py adds them to its key set).
IMAGE_KEYS = frozenset({"labels", "file_column", "array", "channels", "scaling", "patch_size"})
SEQUENCE_KEYS = frozenset({"window", "horizon", "stride", "id_column", "time_column", "time_range",
                           "train_time_range", "array", "scaling"})
DATA_KEYS = frozenset({"modality"}) | IMAGE_KEYS | SEQUENCE_KEYS


def _num_list(value: Any, where: str) -> tuple[float, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise InvalidConfigError(f"The {where} must be a number or a list of numbers. Got {value!r} instead.")
    return tuple(float(v) for v in items)


def _int_opt(table: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigError(f"The [data] {key!r} must be an integer of at least {minimum}. "
                                 f"Got {value!r} instead.")
    return value


def _str_opt(table: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = table.get(key, default)
    if value is not None and not isinstance(value, str):
        raise InvalidConfigError(f"The [data] {key!r} must be a string. Got {value!r} instead.")
    return value


def spec_from_table(data: Mapping[str, Any], resolve: Any) -> ModalSpec | None:
    """Build the image / sequence spec from the ``[data]`` table (None for tabular data).

    ``resolve(value, key)`` turns a path relative to the config file into an absolute one.
    """
    modality = data.get("modality", "tabular")
    if modality not in MODALITIES:
        raise InvalidConfigError(f"The [data] 'modality' must be one of {list(MODALITIES)}. "
                                 f"Got {modality!r} instead.{did_you_mean(str(modality), MODALITIES)}")
    allowed = {"tabular": set(), "image": IMAGE_KEYS, "sequence": SEQUENCE_KEYS}[modality]
    stray = sorted((DATA_KEYS - {"modality"}) & set(data) - allowed)
    if stray:
        raise InvalidConfigError(
            f"The [data] key {stray[0]!r} does not apply to {modality} data. "
            + ("Set modality = \"image\" or \"sequence\"." if modality == "tabular"
               else f"Keys for {modality} data: {', '.join(sorted(allowed))}."))
    if modality == "tabular":
        return None
    path = resolve(data["path"], "path")
    array = _str_opt(data, "array", "X") or "X"
    scaling = data.get("scaling", {})
    if not isinstance(scaling, Mapping):
        raise InvalidConfigError(f"The [data] 'scaling' must be a table. Got {scaling!r} instead.")
    if modality == "image":
        if "features" in data:
            raise InvalidConfigError("The [data] 'features' key does not apply to images (every pixel "
                                     "is an input); remove it.")
        bad = sorted(set(scaling) - {"center", "scale"})
        if bad:
            raise InvalidConfigError(
                f"Unknown key {bad[0]!r} in [data] scaling for images; use center and scale "
                "(model input = (pixel - center) / scale, a number or one per channel).")
        center = _num_list(scaling.get("center", 0.0), "[data] scaling center")
        scale = _num_list(scaling.get("scale", 1.0), "[data] scaling scale")
        if any(s <= 0 for s in scale):
            raise InvalidConfigError(f"The [data] scaling scale must be positive. Got {list(scale)} instead.")
        return ImageSpec(path=path, labels=resolve(data.get("labels"), "labels"),
                         file_column=_str_opt(data, "file_column", "file") or "file", array=array,
                         channels=_int_opt(data, "channels", None, 1), center=center, scale=scale,
                         patch=_int_opt(data, "patch_size", None, 1))
    per_feature: dict[str, tuple[float, float]] = {}
    for name, entry in scaling.items():
        if not isinstance(entry, Mapping) or set(entry) - {"center", "scale"}:
            raise InvalidConfigError(
                f"The [data] scaling entry for {name!r} must be a table {{ center = ..., scale = ... }}. "
                f"Got {entry!r} instead.")
        c = _num_list(entry.get("center", 0.0), f"[data] scaling {name} center")[0]
        s = _num_list(entry.get("scale", 1.0), f"[data] scaling {name} scale")[0]
        if s <= 0:
            raise InvalidConfigError(f"The [data] scaling scale of {name!r} must be positive. Got {s} instead.")
        per_feature[str(name)] = (c, s)
    ranges = {key: _time_range(data.get(key), key) for key in ("time_range", "train_time_range")}
    return SequenceSpec(path=path, window=_int_opt(data, "window", None, 1),
                        horizon=_int_opt(data, "horizon", 1, 0) or 0,
                        stride=_int_opt(data, "stride", 1, 1) or 1,
                        id_column=_str_opt(data, "id_column", None),
                        time_column=_str_opt(data, "time_column", None),
                        time_range=ranges["time_range"], train_time_range=ranges["train_time_range"],
                        array=array, scaling=per_feature)


def _time_range(value: Any, key: str) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise InvalidConfigError(
            f"The [data] {key!r} must be a list [start, end] of two strings (\"\" for open). "
            f"Got {value!r} instead.")
    return (value[0], value[1])


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _load_npz(path: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(f"The data file {path!r} does not exist. Check [data] path (relative "
                                  "paths are resolved against the config file's folder).")
    _check_npz_size(p)
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except MemoryError:
        raise DataValidationError(f"The data file {path!r} could not be loaded: out of memory. "
                                  "Store fewer examples per file.") from None
    except ValueError as exc:
        raise DataValidationError(
            f"The data file {path!r} holds Python objects ({exc}); store plain numeric or string "
            "arrays (np.savez with allow_pickle=False can read them).") from None
    except (OSError, EOFError) as exc:
        raise DataValidationError(f"The data file {path!r} is not a readable .npz archive ({exc}). "
                                  "Re-save it with numpy.savez_compressed.") from None


def npz_sizes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """Shape, dtype and bytes of every array in an ``.npz`` (or ``.npy``), read from the array
    headers alone: nothing is decompressed or allocated, so a header claiming terabytes costs
    nothing to inspect."""
    import zipfile

    from numpy.lib import format as npformat

    def header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
        version = npformat.read_magic(fh)
        reader = {(1, 0): npformat.read_array_header_1_0,
                  (2, 0): npformat.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = reader(fh, max_header_size=100_000)
        return tuple(int(d) for d in shape), dtype

    def entry(fh: Any) -> tuple[tuple[int, ...], np.dtype, int]:
        shape, dtype = header(fh)
        return shape, dtype, math.prod(shape) * max(dtype.itemsize, 1)

    if path.suffix.lower() == ".npy":
        with open(path, "rb") as fh:
            return {"arr_0": entry(fh)}
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                with zf.open(info) as fh:
                    out[info.filename[:-4]] = entry(fh)
    return out


def _check_npz_size(p: Path) -> None:
    """Refuse an archive whose arrays (by their headers) exceed the memory budget."""
    import zipfile

    from audit.core.limits import check_size

    try:
        sizes = npz_sizes(p)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, SyntaxError):
        return  # np.load reports a damaged archive with the usual message
    if not sizes:
        return
    biggest = max(sizes, key=lambda k: sizes[k][2])
    shape, dtype, _ = sizes[biggest]
    # the arrays as stored, plus the largest converted to float64 for the model
    need = sum(n for _, _, n in sizes.values()) + 8 * math.prod(shape)
    check_size(need, f"The arrays in {str(p)!r} (largest: {biggest!r}, shape {shape}, {dtype}) "
               "would need", fix="Store fewer examples per file.")


def _npz_array(arrays: Mapping[str, np.ndarray], key: str, path: str) -> np.ndarray:
    if key not in arrays:
        raise DataValidationError(f"The archive {path!r} has no array {key!r}.{did_you_mean(key, arrays)} "
                                  f"Arrays: {_show(sorted(arrays))}.")
    return arrays[key]


def _meta_from_npz(arrays: Mapping[str, np.ndarray], names: Sequence[str], n: int,
                   path: str) -> pd.DataFrame:
    """Per-example columns (target, sensitive) stored as 1-D arrays in the archive."""
    frame = pd.DataFrame(index=range(n))
    for name in names:
        a = _npz_array(arrays, name, path)
        if a.ndim != 1 or len(a) != n:
            raise DataValidationError(
                f"The array {name!r} in {path!r} must be 1-D with one value per example ({n}). "
                f"Got shape {a.shape} instead.")
        frame[name] = a
    return frame


def _check_finite(X: np.ndarray, where: str, what: str) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise DataValidationError(
            f"The {what} in {where} have {int(bad.sum())} missing or infinite value(s) (first at "
            f"index {first}). Impute or drop those examples before the audit.")


def read_images(spec: ImageSpec, data: DatasetSpec) -> tuple[np.ndarray, pd.DataFrame, str]:
    """Raw images (N, C, H, W) as float, one metadata row per image, and a source label."""
    path = spec.path
    columns = [c for c in [data.target, data.predictions, *data.sensitive] if c]
    if Path(path).is_dir():
        if spec.labels is None:
            raise InvalidConfigError(
                f"The image folder {path!r} needs a labels CSV: set [data] labels to a CSV with a "
                f"{spec.file_column!r} column (file names) and the target column.")
        meta = read_table(spec.labels, text=text_columns(data, None))  # labels as written
        if spec.file_column not in meta.columns:
            raise DataValidationError(
                f"The labels file {spec.labels!r} has no column {spec.file_column!r} with the image "
                f"file names.{did_you_mean(spec.file_column, meta.columns)} Set [data] file_column.")
        X = _read_image_files(Path(path), meta[spec.file_column].astype(str).tolist(), spec.channels)
        source = Path(spec.labels).name
    else:
        arrays = _load_npz(path)
        X = np.asarray(_npz_array(arrays, spec.array, path))
        if X.dtype.kind not in "biuf":
            raise DataValidationError(f"The image array {spec.array!r} in {path!r} must be numeric. "
                                      f"Got dtype {X.dtype} instead.")
        X = X.astype(np.float64)
        if X.ndim == 3:
            X = X[:, None]
        if X.ndim != 4:
            raise DataValidationError(
                f"The image array {spec.array!r} in {path!r} must have shape (N, C, H, W) or "
                f"(N, H, W). Got shape {X.shape} instead.")
        if spec.channels is not None and X.shape[1] != spec.channels:
            hint = (" It looks channels-last (N, H, W, C): transpose it with "
                    "X.transpose(0, 3, 1, 2)." if X.shape[-1] == spec.channels else "")
            raise DataValidationError(
                f"The images in {path!r} have {X.shape[1]} channel(s) (shape {X.shape}) but "
                f"[data] channels = {spec.channels}.{hint} Or fix [data] channels.")
        if spec.labels is not None:
            meta = read_table(spec.labels, text=text_columns(data, None))  # labels as written
            if len(meta) != len(X):
                raise DataValidationError(
                    f"The labels file {spec.labels!r} has {len(meta)} rows but {path!r} holds "
                    f"{len(X)} images; it needs one row per image, in the same order.")
        else:
            meta = _meta_from_npz(arrays, columns, len(X), path)
        source = Path(path).name
    _check_finite(X, repr(path), "pixel values")
    return X, meta.reset_index(drop=True), source


def _read_image_files(folder: Path, names: list[str], channels: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from audit.core.limits import check_size

    # PIL's own decompression-bomb guard raises at 2 x MAX_IMAGE_PIXELS; the budget check above
    # it comes first, and a bomb below the budget is caught as DecompressionBombError below.

    images: list[np.ndarray] = []
    first: tuple[str, tuple[int, ...]] | None = None
    root = folder.resolve()
    for name in names:
        file = folder / name
        if not file.resolve().is_relative_to(root):
            raise DataValidationError(
                f"The image {name!r} listed in the labels file lies outside the image folder "
                f"{str(folder)!r}. List paths relative to that folder, without '..'.")
        if not file.is_file():
            raise DataValidationError(
                f"The image {name!r} listed in the labels file does not exist in {str(folder)!r}. "
                "Fix the file name or remove its row.")
        try:
            # only the PNG and JPEG decoders: Pillow picks a decoder by content, and some
            # (EPS) hand the file to Ghostscript, an interpreter of the PostScript inside it
            with Image.open(file, formats=("PNG", "JPEG")) as img:
                # the header's dimensions, checked before any pixel is decompressed
                w, h = img.size
                bands = max(len(img.getbands()), 3 if img.mode not in ("L", "I", "I;16", "F", "1") else 1)
                check_size(8 * w * h * bands * len(names),
                           f"The image {str(file)!r} is {w:,} x {h:,} pixels; {len(names):,} image(s) of "
                           "that size as float64 need",
                           fix="Resize the images to the model's input size.")
                img.load()
                mode = img.mode
                if mode in ("L", "I", "I;16", "F", "1"):
                    arr = np.asarray(img.convert("F") if mode != "L" else img, dtype=np.float64)[None]
                elif mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                    conv = img.convert("RGB")
                    arr = np.asarray(conv, dtype=np.float64).transpose(2, 0, 1)
                else:
                    raise DataValidationError(f"The image {str(file)!r} has an unsupported mode {mode!r}; "
                                              "save it as 8-bit grayscale or RGB.")
        except Image.DecompressionBombError as exc:
            raise DataValidationError(
                f"The image {str(file)!r} was refused as a possible decompression bomb ({exc}). "
                "Resize it to the model's input size.") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataValidationError(
                f"The image {str(file)!r} could not be read ({type(exc).__name__}: {exc}). It may be "
                "truncated or not a PNG/JPEG; re-export it or remove its row from the labels file.") from None
        want = channels if channels is not None else (first[1][0] if first else arr.shape[0])
        if arr.shape[0] != want:
            if want == 1 and arr.shape[0] == 3:
                fix = "convert it to grayscale (mode \"L\")"
            elif want == 3 and arr.shape[0] == 1:
                fix = "convert it to RGB"
            else:
                fix = "re-save it with the expected channels"
            source = "[data] channels" if channels is not None else f"the first image {first[0]!r}"
            raise DataValidationError(
                f"The image {str(file)!r} has {arr.shape[0]} channel(s) but {source} says {want}; "
                f"{fix}, or set [data] channels.")
        if first is None:
            first = (name, arr.shape)
        elif arr.shape[1:] != first[1][1:]:
            raise DataValidationError(
                f"The image {str(file)!r} is {arr.shape[2]}x{arr.shape[1]} pixels but {first[0]!r} is "
                f"{first[1][2]}x{first[1][1]} (width x height); every image must have the same size. "
                "Resize them all to the model's input size first.")
        images.append(arr)
    if not images:
        raise DataValidationError(f"The labels file lists no images for {str(folder)!r}.")
    return np.stack(images)


def _time_key(values: pd.Series, name: str, source: str) -> pd.Series:
    """A sortable version of a time column: numbers or dates, every cell of them.

    Anything else is an error naming the rows: one unparsable timestamp must not turn the
    whole column into text, whose order ("2000-10-01" < "2000-2-01") is silently wrong.
    """
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataValidationError(
            f"The time column {name!r} in {source!r} has missing values in {_rows(missing)}. "
            "Every step needs its time; fill or drop those rows.")
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.astype(float) if pd.api.types.is_numeric_dtype(values) else values
    parsed = pd.to_datetime(values, format="mixed", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise DataValidationError(
            f"The time column {name!r} in {source!r} has value(s) that are neither numbers nor "
            f"dates: {_show(sorted(set(values[bad].astype(str))))} in {_rows(bad)}. Fix them (e.g. "
            "ISO dates such as 2000-01-01) so the steps sort in time order, not as text.")
    return parsed


def _bound(value: str, like: pd.Series) -> Any:
    if pd.api.types.is_numeric_dtype(like):
        return float(value)
    if pd.api.types.is_datetime64_any_dtype(like):
        return pd.Timestamp(value)
    return value


def read_sequences(spec: SequenceSpec, data: DatasetSpec
                   ) -> tuple[np.ndarray, pd.DataFrame, list[str], str]:
    """Raw windows (N, T, F), one metadata row per window, the feature names and a source label."""
    path = spec.path
    if path.lower().endswith(".npz"):
        arrays = _load_npz(path)
        X = np.asarray(_npz_array(arrays, spec.array, path))
        if X.ndim != 3 or X.dtype.kind not in "biuf":
            raise DataValidationError(
                f"The sequence array {spec.array!r} in {path!r} must be numeric with shape (N, T, F). "
                f"Got shape {X.shape} and dtype {X.dtype} instead.")
        X = X.astype(np.float64)
        if spec.window is not None and X.shape[1] != spec.window:
            raise DataValidationError(
                f"The sequences in {path!r} have {X.shape[1]} steps but [data] window = "
                f"{spec.window}. Fix [data] window or re-cut the sequences.")
        names = list(data.features) if data.features else [f"f{j}" for j in range(X.shape[2])]
        if len(names) != X.shape[2]:
            raise DataValidationError(
                f"[data] features names {len(names)} features but the sequences in {path!r} have "
                f"{X.shape[2]} (last axis). List one name per feature, in order.")
        bad = ~np.isfinite(X)
        if bad.any():
            i, t, j = np.argwhere(bad)[0].tolist()
            raise DataValidationError(
                f"The sequences in {path!r} have {int(bad.sum())} missing or infinite value(s) (first "
                f"in sequence {i}, step {t}, feature {names[j]!r}). Impute or drop those sequences.")
        columns = [c for c in [data.target, data.predictions, *data.sensitive] if c]
        meta = _meta_from_npz(arrays, columns, len(X), path)
        return X, meta, names, Path(path).name
    return _window_long_csv(spec, data)


def _window_long_csv(spec: SequenceSpec, data: DatasetSpec) -> tuple[np.ndarray, pd.DataFrame, list[str], str]:
    path, source = spec.path, Path(spec.path).name
    frame = read_table(path, na_values=data.na_values)
    cols = list(frame.columns)
    if spec.window is None:
        raise InvalidConfigError("Sequence data from a CSV needs [data] window: the number of steps "
                                 "each example covers.")
    if spec.time_column is None:
        raise InvalidConfigError("Sequence data from a CSV needs [data] time_column: the column that "
                                 "orders the steps of each series.")
    named = [c for c in [spec.id_column, spec.time_column, data.target, *data.sensitive,
                         *(data.features or ())] if c]
    for col in named:
        if col not in cols:
            raise DataValidationError(f"The column {col!r} named in the config is not in {source!r}."
                                      f"{did_you_mean(col, cols)} Available columns: {_show(cols)}.")
    if data.features is not None:
        features = list(data.features)
    else:
        reserved = {spec.id_column, spec.time_column, *data.sensitive}
        features = [c for c in cols if c not in reserved]
    if not features:
        raise DataValidationError(f"No feature columns are left in {source!r}; list them in [data] features.")
    for col in features:
        _refuse_time(frame[col], col)
        if not pd.api.types.is_numeric_dtype(frame[col]):
            sample = frame[col][pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()]
            raise DataValidationError(
                f"The feature column {col!r} in {source!r} must be numeric but holds text such as "
                f"{_show(sorted(set(sample.astype(str)))[:3])}. Convert it before the audit.")
    ids = frame[spec.id_column].astype(str) if spec.id_column else pd.Series(["series"] * len(frame))
    frame = frame.assign(_id=ids.to_numpy(), _t=_time_key(frame[spec.time_column], spec.time_column,
                                                           source).to_numpy())
    id_label = f"id {{}} (column {spec.id_column!r})" if spec.id_column else "the series"
    need = spec.window + spec.horizon
    windows, rows = [], []
    for key, series in frame.groupby("_id", sort=True):  # windows ordered by id, then time
        who = id_label.format(repr(key)) if spec.id_column else id_label
        series = series.sort_values("_t", kind="stable")
        dup = series["_t"].duplicated()
        if dup.any():
            t = series.loc[dup, spec.time_column].iloc[0]
            raise DataValidationError(
                f"In {source!r}, {who} has the time {t!r} more than once; every step of a series "
                "needs its own time. Remove the duplicated rows.")
        if len(series) < need:
            raise DataValidationError(
                f"In {source!r}, {who} has {len(series)} step(s), fewer than the window of "
                f"{spec.window} plus the horizon of {spec.horizon}. Drop that series or set a smaller "
                "[data] window.")
        check = [*features, *([data.target] if data.target else []), *data.sensitive]
        for col in dict.fromkeys(check):
            miss = series[col].isna().to_numpy()
            if miss.any():
                t = series[spec.time_column].to_numpy()[miss]
                raise DataValidationError(
                    f"In {source!r}, {who} has missing values in column {col!r} at {int(miss.sum())} "
                    f"step(s) (first at {spec.time_column} = {_show(t.tolist())}). Impute them "
                    "(e.g. carry the last value forward) or cut the series before the audit.")
        values = series[features].to_numpy(dtype=np.float64)
        times = series[spec.time_column].to_numpy()
        tkeys = series["_t"]
        for end in range(spec.window - 1, len(series) - spec.horizon, spec.stride):
            target_at = end + spec.horizon
            windows.append(values[end - spec.window + 1:end + 1])
            row = {"id": key, "window_start": times[end - spec.window + 1], "window_end": times[end],
                   "target_time": times[target_at], "_tkey": tkeys.iloc[target_at]}
            if data.target:
                row[data.target] = series[data.target].iloc[target_at]
            for s in data.sensitive:
                row[s] = series[s].iloc[end]
            rows.append(row)
    from audit.core.limits import check_size

    # the windows so far are views of each series; stacking them copies every step `window` times
    check_size(8 * len(windows) * spec.window * len(features),
               f"{len(windows):,} windows of {spec.window} steps x {len(features)} feature(s) from "
               f"{source!r} need", fix="Use a larger [data] stride or a smaller window.")
    X = np.stack(windows)
    meta = pd.DataFrame(rows)
    if spec.time_range is not None:
        keep = np.ones(len(meta), dtype=bool)
        start, end = spec.time_range
        try:
            if start:
                keep &= (meta["_tkey"] >= _bound(start, meta["_tkey"])).to_numpy()
            if end:
                keep &= (meta["_tkey"] <= _bound(end, meta["_tkey"])).to_numpy()
        except (ValueError, TypeError) as exc:
            raise InvalidConfigError(f"The [data] time_range {list(spec.time_range)} cannot be "
                                     f"compared with the {spec.time_column!r} column: {exc}.") from None
        if not keep.any():
            raise DataValidationError(
                f"No window of {source!r} has its target time within [data] time_range "
                f"{list(spec.time_range)}; target times run from {meta['target_time'].iloc[0]!r} to "
                f"{meta['target_time'].iloc[-1]!r}.")
        X, meta = X[keep], meta[keep]
    meta = meta.drop(columns="_tkey").reset_index(drop=True)
    if not spec.id_column:
        meta = meta.drop(columns="id")
    return X, meta, features, source


# --------------------------------------------------------------------------------------------
# AuditData for images and sequences
# --------------------------------------------------------------------------------------------


def _sensitive_frame(meta: pd.DataFrame, data: DatasetSpec, where: str) -> pd.DataFrame:
    out = pd.DataFrame(index=meta.index)
    for col in data.sensitive:
        if col not in meta.columns:
            raise DataValidationError(f"The sensitive attribute {col!r} is not in {where}."
                                      f"{did_you_mean(col, meta.columns)} Available: {_show(list(meta.columns))}.")
        miss = meta[col].isna().to_numpy()
        if miss.any():
            raise DataValidationError(
                f"The sensitive attribute {col!r} in {where} is missing for {int(miss.sum())} "
                f"example(s) (first at example {int(np.flatnonzero(miss)[0]) + 1:,}, examples counted from 1 "
                "in the order they are read). Fill them (e.g. with an "
                "explicit \"missing\" group) or drop those examples.")
        out[col] = _label_text(meta[col])
    return out


def _finish(X_raw: np.ndarray, meta: pd.DataFrame, data: DatasetSpec, layout: Layout,
            classes: tuple[str, ...] | None, source: str, modality: str) -> AuditData:
    if data.target is not None and data.target not in meta.columns:
        raise DataValidationError(f"The target {data.target!r} is not in {source!r}."
                                  f"{did_you_mean(data.target, meta.columns)} Available: {_show(list(meta.columns))}.")
    y = None
    if data.target is not None:
        y, classes = _encode_target(meta[data.target], data, classes, repr(source))
    sensitive = _sensitive_frame(meta, data, repr(source))
    if modality == "image":
        c = np.asarray(layout.center)[None, :, None, None]
        s = np.asarray(layout.scale)[None, :, None, None]
    else:
        c = np.asarray(layout.center)[None, None, :]
        s = np.asarray(layout.scale)[None, None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        X = ((X_raw - c) / s).astype(np.float32)
    overflow = ~np.isfinite(X)  # finite raw values (checked on reading) beyond float32 once scaled
    if overflow.any():
        raise DataValidationError(
            f"The {modality} values in {source!r} overflow the model's float32 input once scaled "
            f"((x - center) / scale): {int(overflow.sum()):,} value(s), first at index "
            f"{np.argwhere(overflow)[0].tolist()}. float32 holds magnitudes up to 3.4e38; fix those "
            "values, or the scaling's center/scale.")
    predictions = None
    if data.predictions is not None:
        from audit.core.dataset import _precomputed

        if data.predictions not in meta.columns:
            raise DataValidationError(f"The predictions column {data.predictions!r} is not in {source!r}.")
        predictions = _precomputed(meta[data.predictions], data, classes, repr(source))
    return AuditData(data, layout.encoding(), meta, X, y, classes, sensitive, predictions, source,
                     modality, layout)


def build_image_data(spec: ImageSpec, data: DatasetSpec, *, classes: tuple[str, ...] | None = None
                     ) -> AuditData:
    """Read, validate and scale images into :class:`AuditData` (modality ``"image"``).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "x.npz")
    >>> np.savez(p, X=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]))
    >>> data = build_image_data(ImageSpec(p, scale=(16.0,)), DatasetSpec(target="y"))
    >>> data.X.shape, data.modality, data.feature_names[:2]
    ((4, 1, 8, 8), 'image', ['px[0,0]', 'px[0,1]'])
    """
    X_raw, meta, source = read_images(spec, data)
    n, c, h, w = X_raw.shape
    for key in ("center", "scale"):
        if len(getattr(spec, key)) not in (1, c):
            raise InvalidConfigError(f"The [data] scaling {key} must be one number or one per channel "
                                     f"({c}). Got {list(getattr(spec, key))} instead.")
    patch = spec.patch or max(1, int(np.ceil(max(h, w) / 8)))  # at most an 8 x 8 grid by default
    layout = ImageLayout(c, h, w, center=spec.center, scale=spec.scale, patch=patch)
    return _finish(X_raw, meta, data, layout, classes, source, "image")


def build_sequence_data(spec: SequenceSpec, data: DatasetSpec, *, encoding: Encoding | None = None,
                        classes: tuple[str, ...] | None = None) -> AuditData:
    """Read, window, validate and scale sequences into :class:`AuditData` (modality ``"sequence"``).

    The per-feature scaling comes from ``spec.scaling`` or else from the numeric features of
    ``encoding`` (the model's encoding JSON); features named in neither are used unscaled.
    """
    X_raw, meta, names, source = read_sequences(spec, data)
    center, scale = [], []
    for name in names:
        if name in spec.scaling:
            c, s = spec.scaling[name]
        elif encoding is not None and name in encoding.feature_names:
            feat = encoding.feature(name)
            if not isinstance(feat, NumericFeature) or feat.transform is not None:
                raise InvalidConfigError(f"The encoding's feature {name!r} must be numeric without a "
                                         "transform to scale a sequence feature.")
            c, s = feat.center, feat.scale
        else:
            c, s = 0.0, 1.0
        center.append(float(c))
        scale.append(float(s))
    unknown = sorted(set(spec.scaling) - set(names))
    if unknown:
        raise InvalidConfigError(f"[data] scaling names {_show(unknown)}, which are not features "
                                 f"({_show(names)}).{did_you_mean(unknown[0], names)}")
    layout = SequenceLayout(tuple(names), X_raw.shape[1], tuple(center), tuple(scale))
    return _finish(X_raw, meta, data, layout, classes, source, "sequence")


def build_modal_data(spec: ModalSpec, data: DatasetSpec, *, encoding: Encoding | None = None
                     ) -> AuditData:
    """Dispatch on the spec's modality (the runner's entry point)."""
    classes = encoding.classes if encoding is not None else None
    if isinstance(spec, ImageSpec):
        return build_image_data(spec, data, classes=classes)
    return build_sequence_data(spec, data, encoding=encoding, classes=classes)


__all__ = [
    "DATA_KEYS",
    "ImageLayout",
    "ImageSpec",
    "LAYOUTS",
    "Layout",
    "MapStyle",
    "MODALITIES",
    "ModalSpec",
    "SequenceLayout",
    "SequenceSpec",
    "TabularLayout",
    "build_image_data",
    "build_modal_data",
    "build_sequence_data",
    "read_images",
    "read_sequences",
    "spec_from_table",
]
