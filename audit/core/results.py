"""The result vocabulary every method speaks: a value with its interval, and attributions.

Every value with an interval in every result is an :class:`Estimate`; every method that
attributes a model's output to its inputs exposes its values as :class:`Attributions` through
``result.attributions()`` (see :class:`audit.core.method.MethodResult`). Cross-method features —
the agreement method's rankings, its sanity check and faithfulness curves — read only these,
never a method's own fields (as captum's ``NoiseTunnel`` wraps any ``Attribution`` without
knowing its name).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

#: Not written to results.json: a field holding code or arrays a result repeats elsewhere.
NOT_SERIALISED = {"json": False}


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval.

    Parameters
    ----------
    value : float or None
        The estimate; None when it is not defined (``undefined_reason`` says why).
    lower, upper : float or None
        The interval's ends; None when no interval was computed.
    level : float or None
        The interval's nominal coverage (0.95 for a 95 % interval); None without an interval.
    method : str or None
        How the interval was computed, in words a reader can check (e.g. "percentile bootstrap
        of the explained rows, 200 resamples"); None (null in results.json) without an interval.
    undefined_reason : str or None
        Why there is no value (e.g. "no positives in the group"); undefined is not zero.

    Examples
    --------
    >>> e = Estimate(0.42, 0.30, 0.55, level=0.95, method="Wilson score interval")
    >>> e.level, e.has_interval
    (0.95, True)
    >>> Estimate(None, undefined_reason="group too small").defined
    False
    """

    value: float | None
    lower: float | None = None
    upper: float | None = None
    level: float | None = None
    method: str | None = None
    undefined_reason: str | None = None

    @classmethod
    def of(cls, value: float | None, lower: float | None = None, upper: float | None = None, *,
           level: float | None = None, method: str | None = None, undefined_reason: str | None = None
           ) -> Estimate:
        """An Estimate that carries ``level`` and ``method`` only with an interval: both ends
        finite (and a value); without a value, only ``undefined_reason``.

        Examples
        --------
        >>> Estimate.of(0.5, None, None, level=0.95, method="bootstrap")
        Estimate(value=0.5, lower=None, upper=None, level=None, method=None, undefined_reason=None)
        """
        if value is None:
            return cls(None, undefined_reason=undefined_reason)
        if lower is None or upper is None or not (np.isfinite(lower) and np.isfinite(upper)):
            return cls(float(value))
        return cls(float(value), float(lower), float(upper), level, method)

    @property
    def defined(self) -> bool:
        return self.value is not None

    @property
    def has_interval(self) -> bool:
        return self.lower is not None and self.upper is not None

    def to_json(self) -> dict[str, Any]:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def estimates(names: Sequence[str], values: Sequence[float], lower: Sequence[float] | None = None,
              upper: Sequence[float] | None = None, *, level: float | None = None,
              method: str | None = None) -> dict[str, Estimate]:
    """Name -> Estimate from parallel sequences; non-finite interval ends (no interval) become
    None, and so do ``level`` and ``method`` then.

    Examples
    --------
    >>> estimates(["a"], [1.0], [0.5], [1.5], level=0.9, method="bootstrap")["a"].upper
    1.5
    >>> estimates(["a"], [1.0], [float("nan")], [float("nan")], level=0.9)["a"].level is None
    True
    """
    return {name: Estimate.of(float(values[j]), None if lower is None else float(lower[j]),
                              None if upper is None else float(upper[j]), level=level, method=method)
            for j, name in enumerate(names)}


#: What a per-row attribution explains: the model's primary output (P(positive class), the
#: predicted value), each row's predicted class, or the margin of the prediction.
Explains = Literal["output", "predicted_class", "margin"]

#: How a method's per-element values add up to a group of elements: "sum" (additive shares of
#: f(x) - f(baseline)), "mean_abs" (sensitivities such as gradients), "mean" (the same value
#: repeated on every element of a group, e.g. occlusion of a whole patch or an upsampled map).
GroupHow = Literal["sum", "mean_abs", "mean"]


class Recompute(Protocol):
    """The explainer behind an :class:`Attributions`, to run again on another model (the sanity
    check's re-initialized copies): per-row values of ``data``'s ``rows``, laid out as the
    Attributions it belongs to, with the caller's baseline, background, seed and explained
    classes (``targets``, one per row, or None for the explainer's own choice)."""

    def __call__(self, model: Any, data: Any, rows: np.ndarray, *, baseline: np.ndarray,
                 background: np.ndarray, seed: int, targets: np.ndarray | None) -> np.ndarray: ...


@dataclass(frozen=True)
class Attributions:
    """One attribution method's values, in the vocabulary every cross-method feature reads.

    Parameters
    ----------
    key : str
        Stable key of the method and variant (``"shap"``, ``"integrated_gradients"``,
        ``"gradcam"``); unique within a run.
    label, short : str
        The name a reader sees, and a short column header.
    origin : str
        The producing audit method and variant, e.g. ``"saliency: Integrated Gradients"``.
    features : tuple of str
        What the columns of ``values`` (and the keys of ``importance``) are: raw features
        (tabular), the groups of ``grouping``, or the layout's elements (``grouping ==
        "element"``).
    grouping : str
        ``"feature"`` (tabular raw features), ``"element"`` (one value per pixel / time step and
        indicator) or a layout grouping (``"patch"``, ``"lag"``, ...).
    explains : {"output", "predicted_class", "margin"}
        What the values explain (see :data:`Explains`); ``explained`` says it in words.
    values : ndarray (n, len(features)) or None
        Signed per-row values (None for a global quantity such as Olden's weights).
    rows : ndarray (n,) or None
        The audited rows ``values`` explain, in order.
    importance : dict of feature -> Estimate
        Global importance (mean |value| over the rows, or the method's own global statistic).
    signed : bool
        Whether the sign of ``values`` says which way a feature pushes the explained output
        (False for magnitudes such as |f(x) - f(x permuted)|).
    how : {"sum", "mean_abs", "mean"}
        How per-element values add up to a group (see :data:`GroupHow`).
    window : str or None
        Per-element values that were computed per group of this grouping (occlusion of whole
        patches): they split into no other grouping.
    recompute : callable or None
        The explainer, to run again on a re-initialized copy of the model (see
        :class:`Recompute`); None when the method cannot (it refits, or reads the weights).
        Not serialised.
    recompute_by_default : bool
        Whether a check that re-runs explainers (agreement's sanity check) includes these
        attributions when it is not told which: False for explainers too noisy or costly to re-run
        once per layer and repeat.
    """

    key: str
    label: str
    short: str
    origin: str
    features: tuple[str, ...]
    grouping: str
    explains: Explains
    explained: str
    importance: dict[str, Estimate]
    values: np.ndarray | None = None
    rows: np.ndarray | None = None
    signed: bool = True
    how: GroupHow = "sum"
    window: str | None = None
    recompute: Recompute | Callable[..., np.ndarray] | None = dataclasses.field(
        default=None, compare=False, repr=False, metadata=NOT_SERIALISED)
    recompute_by_default: bool = dataclasses.field(default=True, metadata=NOT_SERIALISED)

    def importance_vector(self, features: Sequence[str] | None = None) -> np.ndarray:
        """Global importance in ``features``' order (default: this object's)."""
        return np.array([self.importance[f].value for f in (features or self.features)], dtype=float)

    def grouped(self, layout: Any, by: str) -> Attributions | None:
        """The same attributions summed into the groups ``by`` of an image/sequence layout
        (``layout.group_values``); None when they do not split into those groups (no per-row
        values, values at another grouping, or per-group values of another window)."""
        if self.grouping == by:
            return self
        if self.values is None or self.grouping != "element":
            return None
        if self.window not in (None, layout.element_grouping, by):
            return None
        per = layout.group_values(self.values, by, how="mean" if self.window == by else self.how)
        names = tuple(layout.groups(by))
        return dataclasses.replace(
            self, features=names, grouping=by, values=per, window=None,
            importance=estimates(names, np.abs(per).mean(0)), recompute=None)

    def reordered(self, features: Sequence[str]) -> Attributions | None:
        """These attributions with columns in ``features``' order; None when the names differ."""
        if list(self.features) == list(features):
            return self
        if sorted(self.features) != sorted(features):
            return None
        order = [self.features.index(f) for f in features]
        values = None if self.values is None else np.asarray(self.values)[:, order]
        return dataclasses.replace(self, features=tuple(features), values=values)


def mean_abs_importance(names: Sequence[str], values: np.ndarray) -> dict[str, Estimate]:
    """Mean |value| per column, without an interval (a global summary of per-row values)."""
    return estimates(names, np.abs(np.asarray(values, dtype=float)).mean(axis=0))


def collect(results: Mapping[str, Any]) -> list[Attributions]:
    """Every :class:`Attributions` the given results expose, in the order of ``results``."""
    out: list[Attributions] = []
    for res in results.values():
        out.extend(res.attributions())
    return out


def to_jsonable(obj: Any) -> Any:
    """Convert results to JSON-native values; NaN and inf become None (JSON has neither).

    Here, below :mod:`audit.core.method` (which re-exports it), so that the result vocabulary
    needs nothing from the method layer."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.name.startswith("_") and f.metadata.get("json", True)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "to_json"):
        return obj.to_json()
    return str(obj)


__all__ = ["Attributions", "Estimate", "Explains", "GroupHow", "NOT_SERIALISED", "Recompute",
           "collect", "estimates", "mean_abs_importance", "to_jsonable"]
