"""Dataset specification, model-input encoding and the validated :class:`AuditData`.

The encoding says how raw columns become the model's input columns (one-hot or ordinal
categoricals, scaled numerics). It is stored as plain JSON beside the model, so nothing has to
be unpickled, and it maps every encoded column back to its raw feature, so that every
per-feature result can be reported in the user's own feature names.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from audit.errors import AuditError, DataValidationError, InvalidConfigError, did_you_mean

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")
ENCODING_FORMAT = "audit-suite/encoding@1"
_MAX_SHOWN = 5


def _show(values: Sequence[Any]) -> str:
    """Render at most a few values for an error message."""
    vals = [repr(v) for v in list(values)[:_MAX_SHOWN]]
    more = len(values) - len(vals)
    return ", ".join(vals) + (f" and {more} more" if more > 0 else "")


ROWS_COUNTED = "rows counted from 1, the header not counted"
# While build_audit_data checks a sample of a file's rows ([data] max_rows), the file position
# (0-based) of each sampled row, so that messages number rows as in the file, not the sample.
_FILE_ROWS: ContextVar[np.ndarray | None] = ContextVar("file_rows", default=None)


def user_row(position: int) -> int:
    """The row at ``position`` (0-based, in the data being checked) as a user counts it in the
    file: from 1, the header not counted (row 1 is a CSV's second line), the wording of every
    row number in a message (:data:`ROWS_COUNTED`)."""
    rows = _FILE_ROWS.get()
    return int(position if rows is None else rows[position]) + 1


def _rows(mask: np.ndarray) -> str:
    """Describe the offending rows: how many and the first, as a user counts it.

    Examples
    --------
    >>> _rows(np.array([False, True, True]))
    '2 row(s), first at row 2 (rows counted from 1, the header not counted)'
    """
    idx = np.flatnonzero(mask)
    return f"{idx.size:,} row(s), first at row {user_row(int(idx[0])):,} ({ROWS_COUNTED})"


# --------------------------------------------------------------------------------------------
# Feature encodings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericFeature:
    """A numeric input: ``(transform(x) - center) / scale``.

    ``transform`` is ``None`` or ``"log1p"`` (for heavy-tailed, non-negative amounts).
    """

    name: str
    center: float = 0.0
    scale: float = 1.0
    transform: str | None = None
    integer: bool = False

    type: str = field(default="numeric", init=False)

    @property
    def columns(self) -> list[str]:
        return [self.name]

    def encode(self, values: pd.Series) -> np.ndarray:
        x = _as_numeric(values, self.name)
        if self.transform == "log1p":
            bad = x < 0
            if bad.any():
                raise DataValidationError(
                    f"Column {self.name!r} has negative values in {_rows(bad)}, but its encoding "
                    "applies log1p. Fix the data or change the feature's transform in the encoding."
                )
            x = np.log1p(x)
        return ((x - self.center) / self.scale)[:, None]

    def decode(self, block: np.ndarray) -> np.ndarray:
        x = self.to_raw(block[:, 0])
        return np.round(x) if self.integer else x

    def to_raw(self, z: np.ndarray | float) -> np.ndarray:
        """Map encoded values (or split thresholds) back to the raw unit."""
        x = np.asarray(z, dtype=float) * self.scale + self.center
        if self.transform == "log1p":
            x = np.expm1(x)
        return x

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": "numeric", "center": self.center, "scale": self.scale,
                "transform": self.transform, "integer": self.integer}


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical input, one-hot (one column per level) or ordinal (level index, scaled).

    ``missing`` names the level that missing values map to; ``None`` makes them an error.
    """

    name: str
    levels: tuple[str, ...]
    encoding: Literal["onehot", "ordinal"] = "onehot"
    missing: str | None = None
    center: float = 0.0
    scale: float = 1.0

    type: str = field(default="categorical", init=False)

    @property
    def columns(self) -> list[str]:
        if self.encoding == "onehot":
            return [f"{self.name}={lvl}" for lvl in self.levels]
        return [self.name]

    def codes(self, values: pd.Series) -> np.ndarray:
        """Level index of every value; raises naming the unknown levels."""
        missing = values.isna().to_numpy()
        if missing.any():
            if self.missing is None:
                raise DataValidationError(
                    f"Column {self.name!r} has missing values in {_rows(missing)}. Fill them, or "
                    f"set \"missing\" for {self.name!r} in the encoding to the level the model uses."
                )
            values = values.astype(object).where(~missing, self.missing)
        text = pd.Series(_label_text(values), index=values.index)
        lookup = {lvl: i for i, lvl in enumerate(self.levels)}
        codes = text.map(lookup)
        unknown = codes.isna().to_numpy()
        if unknown.any():
            bad = sorted(set(text[unknown]))
            raise DataValidationError(
                f"Column {self.name!r} has level(s) the encoding does not know: {_show(bad)} in "
                f"{_rows(unknown)}. Known levels: {_show(self.levels)}. Map them to a known level "
                "or retrain the model with them."
            )
        return codes.to_numpy(dtype=np.int64)

    def encode(self, values: pd.Series) -> np.ndarray:
        codes = self.codes(values)
        if self.encoding == "onehot":
            out = np.zeros((codes.size, len(self.levels)))
            out[np.arange(codes.size), codes] = 1.0
            return out
        return ((codes - self.center) / self.scale)[:, None]

    def decode(self, block: np.ndarray) -> np.ndarray:
        if self.encoding == "onehot":
            idx = np.argmax(block, axis=1)
        else:
            idx = np.clip(np.rint(block[:, 0] * self.scale + self.center), 0, len(self.levels) - 1)
        return np.asarray(self.levels, dtype=object)[idx.astype(int)]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": "categorical", "levels": list(self.levels),
                               "encoding": self.encoding, "missing": self.missing}
        if self.encoding == "ordinal":
            out.update(center=self.center, scale=self.scale)
        return out


Feature = NumericFeature | CategoricalFeature


def _encoding_number(f: Mapping[str, Any], key: str, default: float, where: str, *,
                     positive: bool = False) -> float:
    """A number of an encoding feature: finite (JSON's NaN/Infinity are refused), and > 0 for
    scales (a NaN centre would make every model input NaN)."""
    value = f.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (positive and value <= 0):
        rule = "a positive finite number" if positive else "a finite number"
        raise InvalidConfigError(f"The {key!r} of {where} must be {rule}. Got {value!r} instead.")
    return float(value)


_NA_LIKE = frozenset({"nan", "na", "n/a", "null", "none", "?", "-", "--", "#n/a", "missing"})


def _refuse_time(values: pd.Series, name: str) -> None:
    """Dates and durations are not numbers: pandas would turn them into nanosecond counts."""
    dtype = values.dtype
    if (pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)
            or isinstance(dtype, pd.PeriodDtype)):
        raise DataValidationError(
            f"Column {name!r} holds dates or times ({dtype}); read as a number it would be a count "
            "of nanoseconds, which no model was trained on. Convert it before the audit to the "
            "number the model expects (e.g. days since a fixed date, or the year), or declare it "
            "categorical in the encoding.")


# What _as_numeric says about a column, by its role: a model-input feature, a target, or a
# predictions column (no model, no encoding: "declare it categorical" would not apply).
_NUMERIC_ROLES = {
    "feature": ("Column {name!r}{where}", " Or declare {name!r} categorical in the encoding.",
                "Impute or drop those rows before the audit: a model cannot score them, and a decisions-only "
                "audit describes its decisions by the features it is given (leave the column out of [data] "
                "features to audit without it)."),
    "target": ("The target column {name!r}{where}", " A regression target must be numbers.",
               "Drop those rows: an outcome is needed to judge the model."),
    "predictions": ("The predictions column {name!r}{where}",
                    " It must hold numbers (scores, or values for regression) or the target's labels.",
                    "Every audited row needs a finite prediction; fix or drop those rows."),
}


def _as_numeric(values: pd.Series, name: str, role: str = "feature", where: str = "") -> np.ndarray:
    """Convert a column to float, naming unparsable and non-finite cells."""
    at = f" in {where}" if where else ""
    label, text_fix, nonfinite_fix = (t.format(name=name, where=at) for t in _NUMERIC_ROLES[role])
    _refuse_time(values, name)
    if values.dtype == bool:
        values = values.astype(float)
    converted = pd.to_numeric(values, errors="coerce")
    unparsable = converted.isna().to_numpy() & values.notna().to_numpy()
    if unparsable.any():
        bad = sorted(set(values[unparsable].astype(str)))
        hint = (" They look like numbers with thousands separators; remove the separators."
                if any("," in b for b in bad) else "")
        if all(b.strip().lower() in _NA_LIKE for b in bad):
            # pandas would have read these as NaN by default; audit-suite only does when told
            hint = (" They look like missing-value markers: list them in [data] na_values "
                    f"(e.g. na_values = [{json.dumps(bad[0])}]) and impute or drop those rows.")
        raise DataValidationError(
            f"{label} should be numeric but has text {_show(bad)} in {_rows(unparsable)}."
            f"{hint}{text_fix}"
        )
    x = converted.to_numpy(dtype=float)
    nonfinite = ~np.isfinite(x)
    if nonfinite.any():
        kinds = "missing (NaN)" if np.isnan(x[nonfinite]).all() else "missing or infinite"
        raise DataValidationError(f"{label} has {kinds} values in {_rows(nonfinite)}. {nonfinite_fix}")
    return x


@dataclass(frozen=True)
class Encoding:
    """How raw feature columns become the model's input matrix, and back.

    Examples
    --------
    >>> import pandas as pd
    >>> enc = Encoding.fit(pd.DataFrame({"age": [20, 40], "sex": ["F", "M"]}))
    >>> enc.columns
    ['age', 'sex=F', 'sex=M']
    >>> enc.encode(pd.DataFrame({"age": [30], "sex": ["M"]})).round(2).tolist()
    [[0.0, 0.0, 1.0]]
    """

    features: tuple[Feature, ...]
    classes: tuple[str, ...] | None = None

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def fit(cls, frame: pd.DataFrame, *, categorical: Sequence[str] | None = None,
            missing_level: str | None = None) -> Encoding:
        """Derive an encoding from data: numerics standardized, categoricals one-hot.

        Columns with object, string, category or bool dtype are categorical unless
        ``categorical`` lists the categorical columns explicitly.
        """
        feats: list[Feature] = []
        for name in frame.columns:
            col = frame[name]
            if categorical is None or name not in categorical:
                _refuse_time(col, str(name))
            is_cat = (name in categorical) if categorical is not None else not (
                pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))
            if is_cat:
                present = col.dropna().astype(str).str.strip()
                levels = sorted(set(present))
                if col.isna().any() and missing_level is not None and missing_level not in levels:
                    levels.append(missing_level)
                feats.append(CategoricalFeature(str(name), tuple(levels),
                                                missing=missing_level if col.isna().any() else None))
            else:
                x = _as_numeric(col, str(name))
                sd = float(np.std(x))
                integer = bool(np.all(np.equal(np.mod(x, 1), 0)))
                feats.append(NumericFeature(str(name), float(np.mean(x)), sd if sd > 0 else 1.0,
                                            integer=integer))
        return cls(tuple(feats))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, source: str = "encoding") -> Encoding:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("features"), list):
            raise InvalidConfigError(
                f"The encoding in {source} must be a JSON object with a \"features\" list.")
        if doc.get("format", ENCODING_FORMAT) != ENCODING_FORMAT:
            raise InvalidConfigError(
                f"The encoding in {source} has format {doc.get('format')!r}; this version of "
                f"audit-suite reads {ENCODING_FORMAT!r}.")
        feats: list[Feature] = []
        for i, f in enumerate(doc["features"]):
            where = f"feature #{i} of {source}"
            if not isinstance(f, Mapping) or "name" not in f:
                raise InvalidConfigError(f"The {where} must be an object with a \"name\".")
            if not isinstance(f["name"], str) or not f["name"]:
                raise InvalidConfigError(f"The 'name' of {where} must be a non-empty string. "
                                         f"Got {f['name']!r} instead.")
            where = f"feature {f['name']!r} (#{i}) of {source}"
            kind = f.get("type", "numeric")
            try:
                if kind == "numeric":
                    scale = _encoding_number(f, "scale", 1.0, where, positive=True)
                    if f.get("transform") not in (None, "log1p"):
                        raise InvalidConfigError(
                            f"The 'transform' of {where} must be null or \"log1p\". "
                            f"Got {f.get('transform')!r} instead.")
                    if not isinstance(f.get("integer", False), bool):
                        raise InvalidConfigError(f"The 'integer' of {where} must be true or false. "
                                                 f"Got {f.get('integer')!r} instead.")
                    feats.append(NumericFeature(str(f["name"]), _encoding_number(f, "center", 0.0, where),
                                                scale, f.get("transform"), bool(f.get("integer", False))))
                elif kind == "categorical":
                    enc = f.get("encoding", "onehot")
                    if enc not in ("onehot", "ordinal"):
                        raise InvalidConfigError(
                            f"The 'encoding' of {where} must be \"onehot\" or \"ordinal\". "
                            f"Got {enc!r} instead.")
                    raw_levels = f.get("levels", ())
                    if not isinstance(raw_levels, list) or not all(
                            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in raw_levels):
                        raise InvalidConfigError(
                            f"The 'levels' of {where} must be a list of strings or numbers. "
                            f"Got {str(raw_levels)[:80]} instead.")
                    levels = tuple(str(v) for v in raw_levels)
                    if not levels or len(set(levels)) != len(levels):
                        raise InvalidConfigError(
                            f"The 'levels' of {where} must be a non-empty list of distinct values.")
                    if f.get("missing") is not None and str(f["missing"]) not in levels:
                        raise InvalidConfigError(
                            f"The 'missing' level of {where} must be one of its levels. "
                            f"Got {f['missing']!r} instead.")
                    feats.append(CategoricalFeature(str(f["name"]), levels, enc, f.get("missing"),
                                                    _encoding_number(f, "center", 0.0, where),
                                                    _encoding_number(f, "scale", 1.0, where,
                                                                     positive=True)))
                else:
                    raise InvalidConfigError(
                        f"The 'type' of {where} must be \"numeric\" or \"categorical\". "
                        f"Got {kind!r} instead.")
            except (TypeError, ValueError) as exc:
                if isinstance(exc, InvalidConfigError):
                    raise
                raise InvalidConfigError(f"The {where} has a malformed value: {exc}.") from None
        names = [f.name for f in feats]
        if len(set(names)) != len(names):
            raise InvalidConfigError(f"The encoding in {source} names a feature twice.")
        classes = doc.get("classes")
        if classes is not None and (not isinstance(classes, list) or not all(
                isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in classes)
                or len({str(c) for c in classes}) != len(classes)):
            raise InvalidConfigError(f"The \"classes\" of the encoding in {source} must be a list of "
                                     f"distinct labels. Got {str(classes)[:80]} instead.")
        return cls(tuple(feats), tuple(str(c) for c in classes) if classes else None)

    @classmethod
    def load(cls, path: str | Path) -> Encoding:
        from audit.core.userfiles import load_json

        path = Path(path)
        doc = load_json(path, "encoding file")
        return cls.from_dict(doc, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": ENCODING_FORMAT,
                               "features": [f.to_json() for f in self.features]}
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    # ---- structure ---------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        return [c for f in self.features for c in f.columns]

    @property
    def groups(self) -> dict[str, list[int]]:
        """Raw feature name -> indices of its encoded columns."""
        out, start = {}, 0
        for f in self.features:
            width = len(f.columns)
            out[f.name] = list(range(start, start + width))
            start += width
        return out

    @property
    def column_feature(self) -> np.ndarray:
        """For each encoded column, the index of its raw feature."""
        return np.concatenate([np.full(len(f.columns), i) for i, f in enumerate(self.features)])

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    # ---- transforms --------------------------------------------------------------------------
    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw frame -> float32 model input; raises naming the column, rows and fix."""
        missing = [f.name for f in self.features if f.name not in frame.columns]
        if missing:
            raise DataValidationError(
                f"The data lacks column(s) {_show(missing)} that the model's encoding needs."
                f"{did_you_mean(missing[0], frame.columns)} Available columns: {_show(list(frame.columns))}.")
        from audit.core.limits import check_size

        # float64 blocks plus the float32 result: 12 bytes per encoded cell
        check_size(12 * len(frame) * len(self.columns),
                   f"Encoding {len(frame):,} rows into {len(self.columns):,} model-input columns needs",
                   fix="Audit fewer rows ([data] max_rows), or use fewer one-hot levels.")
        blocks = [f.encode(frame[f.name]) for f in self.features]
        if not blocks:
            return np.zeros((len(frame), 0), np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            X = np.hstack(blocks).astype(np.float32)
        self._check_finite(X, frame)
        return X

    def _check_finite(self, X: np.ndarray, frame: pd.DataFrame) -> None:
        """Every encoded value must be a finite float32: the one check after encoding.

        A finite cell can still overflow: 1e308 is a float64, but (1e308 - 40) / 8 is beyond
        float32's largest value (3.4e38) and becomes inf, as does any value divided by a tiny
        ``scale``. The model would then score an infinite input (or return NaN).
        """
        finite = np.isfinite(X)
        if finite.all():
            return
        col = int(np.flatnonzero(~finite.all(axis=0))[0])
        f = self.features[int(self.column_feature[col])]
        bad = ~finite[:, self.groups[f.name]].all(axis=1)
        raw = frame[f.name].to_numpy()[bad]
        how = ""
        if isinstance(f, NumericFeature):
            how = (f" ((x{' after ' + f.transform if f.transform else ''} - center {f.center:g}) "
                   f"/ scale {f.scale:g})")
        raise DataValidationError(
            f"Column {f.name!r} has values that overflow the model's float32 input once encoded"
            f"{how}: {_show(sorted({str(v) for v in raw}))} in {_rows(bad)}. float32 holds "
            "magnitudes up to 3.4e38; fix or drop those rows, or correct the encoding's center/scale.")

    def decode(self, X: np.ndarray) -> pd.DataFrame:
        """Encoded rows -> raw frame (one-hot groups by argmax, numerics unscaled)."""
        X = np.asarray(X, dtype=float)
        out = {}
        for f, idx in zip(self.features, self.groups.values(), strict=True):
            out[f.name] = f.decode(X[:, idx])
        return pd.DataFrame(out)

    def aggregate(self, values: np.ndarray, how: Literal["sum", "max_abs"] = "sum",
                  axis: int = -1) -> np.ndarray:
        """Collapse encoded columns to raw features along ``axis``.

        ``"sum"`` is exact for additive attributions (SHAP, integrated gradients);
        ``"max_abs"`` keeps the strongest column of each group.
        """
        values = np.moveaxis(np.asarray(values, dtype=float), axis, -1)
        parts = []
        for idx in self.groups.values():
            block = values[..., idx]
            parts.append(block.sum(-1) if how == "sum" else np.abs(block).max(-1))
        return np.moveaxis(np.stack(parts, axis=-1), -1, axis)


# --------------------------------------------------------------------------------------------
# Dataset specification and validated audit data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """What the columns of a data set mean for the audit.

    Parameters
    ----------
    target : str or None
        Column with the true outcome (None when auditing predictions without outcomes).
    features : tuple of str or None
        Raw model inputs; default: the encoding's features, else every other column.
    sensitive : tuple of str
        Attributes audited for fairness; kept out of the model input unless also in ``features``.
    positive_label : object
        The favourable / positive class for binary tasks (required when labels are text).
    task : {"binary", "multiclass", "regression"}
    predictions : str or None
        Column holding precomputed model predictions (scores or labels), if any.
    na_values : tuple of str
        Extra strings to read as missing (e.g. ``"?"`` in the Adult data).
    sensitive_sources : mapping of str to sequence of str
        For a sensitive attribute derived from other columns, those columns
        (``{"age_group": ["age"]}``): changing them can move a row to another group, so the
        counterfactual search keeps them fixed by default. Stored as a tuple of
        ``(attribute, columns)`` pairs; :meth:`sources` gives the mapping.
    """

    target: str | None
    features: tuple[str, ...] | None = None
    sensitive: tuple[str, ...] = ()
    positive_label: Any = None
    task: Task = "binary"
    predictions: str | None = None
    na_values: tuple[str, ...] = ()
    missing_sensitive: str = "error"  # "error", or "group": missing values form a "missing" group
    sensitive_sources: Any = ()

    def __post_init__(self) -> None:
        self._check_sources()
        if self.task not in TASKS:
            raise InvalidConfigError(
                f"The 'task' parameter of DatasetSpec must be one of {TASKS}. Got {self.task!r} instead.")
        if self.target is not None and self.target in self.sensitive:
            raise InvalidConfigError(
                f"The target {self.target!r} is also listed as a sensitive attribute; its groups "
                "would be the outcomes themselves (a demographic parity difference of 1). Remove "
                f"{self.target!r} from [data] sensitive.")
        for key in ("sensitive", "features"):
            dupes = duplicates(list(getattr(self, key) or ()))
            if dupes:
                raise InvalidConfigError(
                    f"[data] {key} lists {_show(dupes)} more than once; each column may appear "
                    f"once (a repeated sensitive attribute would be crossed with itself). Remove "
                    "the repetition.")
        if self.predictions is not None and self.predictions == self.target:
            raise InvalidConfigError(
                f"The predictions column {self.predictions!r} is also the target; the audit would "
                "compare the outcomes with themselves. Set [model] predictions to the column "
                "holding the model's predictions.")
        if self.missing_sensitive not in ("error", "group"):
            raise InvalidConfigError(
                "The 'missing_sensitive' parameter of DatasetSpec must be \"error\" or \"group\". "
                f"Got {self.missing_sensitive!r} instead.")


    def sources(self) -> dict[str, tuple[str, ...]]:
        """Sensitive attribute -> the columns it is derived from (``[data] sensitive_sources``)."""
        return dict(self.sensitive_sources)

    def _check_sources(self) -> None:
        """Normalise ``sensitive_sources`` to (attribute, columns) pairs, checking each name
        against ``sensitive`` (the data columns are checked by :func:`build_audit_data`)."""
        raw = self.sensitive_sources
        items = list(raw.items()) if isinstance(raw, Mapping) else list(raw or ())
        pairs = []
        for item in items:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise InvalidConfigError(
                    "[data] sensitive_sources must map each sensitive attribute to the list of "
                    f"columns it is derived from, e.g. {{ age_group = [\"age\"] }}. Got {raw!r} instead.")
            attr, cols = item
            if attr not in self.sensitive:
                raise InvalidConfigError(
                    f"[data] sensitive_sources names {attr!r}, which is not a sensitive attribute."
                    f"{did_you_mean(attr, self.sensitive)} Sensitive attributes: "
                    f"{_show(list(self.sensitive)) if self.sensitive else '(none: add it to [data] sensitive)'}.")
            if isinstance(cols, str):
                cols = [cols]
            if (not isinstance(cols, Sequence) or not cols
                    or not all(isinstance(c, str) and c for c in cols)):
                raise InvalidConfigError(
                    f"[data] sensitive_sources.{attr} must be a non-empty list of column names. "
                    f"Got {cols!r} instead.")
            pairs.append((str(attr), tuple(dict.fromkeys(cols))))
        object.__setattr__(self, "sensitive_sources", tuple(pairs))


def text_columns(spec: DatasetSpec, encoding: Encoding | None) -> tuple[str, ...]:
    """Columns to read as text: sensitive attributes, the encoding's categoricals, class labels.

    Codes such as "01", "001" and "1" are different groups or levels; parsed as numbers they
    would all become 1. Columns the encoding declares numeric are left to the number parser.
    """
    numeric = {f.name for f in (encoding.features if encoding else ()) if f.type == "numeric"}
    cats = [f.name for f in (encoding.features if encoding else ()) if f.type == "categorical"]
    # Class labels (target, and predictions given as labels) are compared as written too:
    # parsed as numbers, "1", "01" and "1.0" would all be the positive label 1.
    labels = [c for c in (spec.target, spec.predictions) if c and spec.task != "regression"]
    return tuple(dict.fromkeys([*(c for c in spec.sensitive if c not in numeric), *cats, *labels]))


def _check_column_names(names: Sequence[Any], path: Path) -> None:
    """One check for every reader: column names must be unique once surrounding spaces go."""
    dupes = duplicates([str(c).strip() for c in names])
    if dupes:
        spelled = sorted({repr(str(c)) for c in names if str(c).strip() in dupes})
        raise DataValidationError(
            f"The data file {str(path)!r} has duplicated column name(s) {_show(dupes)} "
            f"(as written: {', '.join(spelled[:_MAX_SHOWN])}; names are compared without "
            "surrounding spaces). Rename them so every column is unique.")


def read_table(path: str | Path, *, na_values: Sequence[str] = (),
               text: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file with clear errors.

    ``text`` names columns read as text exactly as written (see :func:`text_columns`); CSV
    columns not named there are parsed by pandas (numbers where every cell is one).
    """
    from audit.core.userfiles import check_regular_file

    path = check_regular_file(path, "data file", error=DataValidationError,
                              hint="Check the path (relative paths are resolved against the "
                                   "config file's folder).")
    name = path.name.lower()
    try:
        _check_data_size(path, text, na_values)
        if name.endswith((".parquet", ".pq")):
            _check_column_names(_parquet_names(path), path)
            frame = pd.read_parquet(path)
        else:
            raw_names = _raw_header(path)  # as written, surrounding spaces included
            _check_column_names(raw_names, path)  # before pandas renames a duplicate to "x.1"
            # pandas keys a column by its header as written (less leading spaces)
            as_text = {key: str for c in raw_names if c.strip() in text for key in (c, c.lstrip())}
            # Only empty cells and the declared na_values are missing: pandas' defaults would
            # silently turn real values such as "NA" (Namibia) or "None" into NaN.
            frame = pd.read_csv(path, na_values=["", *na_values], keep_default_na=False,
                                skipinitialspace=True, encoding="utf-8-sig", low_memory=False,
                                dtype=as_text or None)
    except AuditError:  # already one line naming the problem (e.g. the memory budget)
        raise
    except MemoryError:
        _out_of_memory(path)
    except (EOFError, zlib.error) as exc:  # a truncated .gz; click would turn EOFError into "Aborted."
        raise DataValidationError(
            f"The data file {str(path)!r} could not be read: it is truncated or corrupt ({exc}). "
            "Re-create or re-download it.") from None
    except UnicodeDecodeError as exc:
        raise DataValidationError(
            f"The data file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}). "
            "Re-save it as UTF-8.") from None
    except pd.errors.EmptyDataError:
        raise DataValidationError(f"The data file {str(path)!r} is empty.") from None
    except pd.errors.ParserError as exc:
        if "out of memory" in str(exc).lower():  # pandas' C parser reports a failed allocation so
            _out_of_memory(path)
        raise DataValidationError(
            f"The data file {str(path)!r} is not a well-formed CSV: {str(exc).strip()}. "
            "Check the delimiter (a comma is expected) and that every row has the same number "
            "of fields.") from None
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"The data file {str(path)!r} could not be read: {exc}.") from None
    if len(frame) == 0:
        raise DataValidationError(f"The data file {str(path)!r} has a header but no rows.")
    _check_column_names(frame.columns, path)
    frame.columns = [str(c).strip() for c in frame.columns]
    _text_cells_missing(frame, na_values)
    if frame.shape[1] == 1:  # a file with another delimiter parses as one wide column
        for sep, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in frame.columns[0]:
                raise DataValidationError(
                    f"The data file {str(path)!r} reads as a single column whose header contains "
                    f"{label}s ({frame.columns[0][:60]!r}): it looks {label}-delimited. Save it "
                    "with a comma as the delimiter (audit-suite reads comma-separated files).")
    return frame


#: The label a sensitive attribute's missing cells get under missing_sensitive = "group".
MISSING_GROUP = "missing"


def missing_text(na_values: Sequence[str]) -> frozenset[str]:
    """The text cells that are missing once stripped of surrounding spaces (as every label is):
    a blank cell and the declared ``[data] na_values``, in CSV and Parquet alike.

    Examples
    --------
    >>> sorted(missing_text(["NA", " ? "]))
    ['', '?', 'NA']
    """
    return frozenset({"", *(str(v).strip() for v in na_values)})


def _text_cells_missing(frame: pd.DataFrame, na_values: Sequence[str]) -> None:
    """Mark text cells that are blank or a declared na_value as missing, in place: pandas does
    so for a CSV (``na_values``, ``skipinitialspace``) but not for a Parquet file, whose text
    cells " " and "NA" would otherwise be groups named '' and 'NA'. (The streamed reader applies
    the same rule, ``audit.core.stream._Reader``.)"""
    markers = missing_text(na_values)
    for col in frame.columns:
        values = frame[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            drop = [c for c in values.cat.categories if isinstance(c, str) and c.strip() in markers]
            if drop:
                frame[col] = values.cat.remove_categories(drop)  # their cells become missing
            continue
        if pd.api.types.is_string_dtype(values.dtype) and pd.api.types.infer_dtype(values, skipna=True) == "string":
            blank = values.str.strip().isin(markers).to_numpy(dtype=bool)
            if blank.any():
                frame[col] = values.mask(blank)


def duplicates(names: Sequence[str]) -> list[str]:
    """The names that occur more than once, sorted (one pass: a 100,000-column header is fine)."""
    from collections import Counter

    return sorted(n for n, count in Counter(names).items() if count > 1)


_STREAMS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
# Peak memory of read_table's pandas.read_csv (C parser, low_memory=False) over the interpreter's
# baseline, measured with pandas 3.1 / pyarrow 26 (resource.getrusage in a subprocess):
#   2M rows x 5 numeric columns, 32 MiB of text: 217 MiB (estimate below: 261 MiB)
#   5M rows, 4 numeric + 1 text column of unique short strings, 98 MiB: 984 MiB (estimate 1.10 GiB)
#   2M rows, 3 numeric + 4 such text columns, 70 MiB: 585 MiB (estimate 1.03 GiB)
#   2M rows, 2 numeric + 1 text column of 41-character strings, 94 MiB: 641 MiB (estimate 741 MiB)
# The tokenizer keeps the whole text plus two 8-byte words per cell, and a parsed number takes 8
# bytes: text + 24 bytes per cell. A text column passes through one Python str object per cell
# (~50 bytes + its characters, and an 8-byte pointer) before pandas stores it as pyarrow strings,
# so its cells are charged 64 bytes plus 5 per character on top. (The old estimate, twice the
# text, let the second file through a 256 MiB budget at 3.8x the budget.)
_CELL_BYTES = 24
_TEXT_CELL_BYTES = 64
_TEXT_CHAR_BYTES = 5
_SCAN_BLOCK = 1 << 20
# A cell pandas may parse as a number (or leave empty): any other cell makes its column text.
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*$"


class _OverBudget(Exception):
    def __init__(self, total: int) -> None:
        self.total = total


class _Counted:
    """A binary stream that counts the bytes read through it and stops past ``limit``."""

    def __init__(self, fh: Any, limit: int) -> None:
        self.fh, self.limit, self.total, self.closed = fh, limit, 0, False

    def read(self, n: int = -1) -> bytes:
        chunk = self.fh.read(_SCAN_BLOCK if n is None or n < 0 else n)
        self.total += len(chunk)
        if self.total > self.limit:
            raise _OverBudget(self.total)
        return chunk

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def _open_text(path: Path) -> Any:
    """The CSV's bytes, decompressed as a stream (gzip, bz2, xz, or a zip's first member)."""
    import contextlib
    import importlib

    name = path.name.lower()
    suffix = next((s for s in _STREAMS if name.endswith(s)), None)
    if suffix is not None:
        return importlib.import_module(_STREAMS[suffix]).open(path, "rb")
    if name.endswith(".zip"):
        import zipfile

        zf = zipfile.ZipFile(path)
        stack = contextlib.ExitStack()
        stack.enter_context(zf)
        member = stack.enter_context(zf.open(zf.infolist()[0]))
        member.close = stack.close  # closing the member closes the archive too
        return member
    return open(path, "rb")


def _scan_csv(path: Path, text: Sequence[str], na_values: Sequence[str], budget: int
              ) -> tuple[int, str]:
    """Stream the CSV: the bytes pandas will need to read it, and what they are made of.

    pyarrow parses it block by block with every column as text (bounded memory); a column is
    numeric only when every cell looks like a number or is missing. A row with another number of
    fields (pandas pads a short one) is charged as a row of text cells; a file pyarrow cannot
    parse at all is counted by commas and newlines instead, every cell charged as text.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from audit.core.limits import format_size

    pool = pa.default_memory_pool()
    read = pacsv.ReadOptions(block_size=_SCAN_BLOCK, use_threads=False)
    odd_rows = [0]

    def odd_row(row: Any) -> str:  # pyarrow refuses these; pandas pads short rows
        odd_rows[0] += 1
        return "skip"

    parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=odd_row)
    # pyarrow decodes an odd row as UTF-8 before calling odd_row; on other bytes it reports the
    # UnicodeDecodeError through sys.unraisablehook ("Exception ignored in ...") and then fails,
    # which the fallback below handles: keep that report off the user's terminal.
    import sys

    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: None if u.object is odd_row else hook(u)
    try:
        with _open_text(path) as fh:
            names = pacsv.open_csv(_Counted(fh, budget), read_options=read,
                                   parse_options=parse, memory_pool=pool).schema.names
        odd_rows[0] = 0
        with _open_text(path) as fh:
            stream = _Counted(fh, budget)
            reader = pacsv.open_csv(stream, read_options=read, parse_options=parse,
                                    convert_options=pacsv.ConvertOptions(
                                        column_types=dict.fromkeys(names, pa.string()),
                                        strings_can_be_null=False, quoted_strings_can_be_null=False),
                                    memory_pool=pool)
            wanted = {str(c).strip() for c in text}
            is_text = [str(n).strip() in wanted for n in names]
            missing = pa.array(["", *na_values], pa.string())
            rows, chars = 0, [0] * len(names)
            for batch in reader:
                rows += batch.num_rows
                for j in range(len(names)):
                    col = batch.column(j)
                    length = pc.binary_length(col, memory_pool=pool)
                    chars[j] += int(pc.sum(length, memory_pool=pool).as_py() or 0)
                    if not is_text[j]:
                        ok = pc.or_(pc.match_substring_regex(col, _NUMBER, memory_pool=pool),
                                    pc.is_in(col, missing, memory_pool=pool), memory_pool=pool)
                        is_text[j] = not pc.all(ok, memory_pool=pool).as_py()
            total = stream.total
    except _OverBudget:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, IndexError, KeyError):
        with _open_text(path) as fh:
            stream, cells = _Counted(fh, budget), 0
            while chunk := stream.read(_SCAN_BLOCK):
                cells += chunk.count(b",") + chunk.count(b"\n")
            estimate = (stream.total + (_CELL_BYTES + _TEXT_CELL_BYTES) * cells
                        + _TEXT_CHAR_BYTES * stream.total)
            return estimate, (f"about {cells:,} cells (counted by commas and newlines, "
                              f"each charged as text) in {format_size(stream.total)} of text")
    finally:  # give the scan's blocks back before pandas allocates (the pool keeps them)
        sys.unraisablehook = hook
        pa.default_memory_pool().release_unused()
    text_chars = sum(c for c, t in zip(chars, is_text) if t)
    if odd_rows[0]:
        rows += odd_rows[0]
        is_text, text_chars = [True] * len(names), total
    cells = rows * len(names)
    text_cells = rows * sum(is_text)
    estimate = (total + _CELL_BYTES * cells + _TEXT_CELL_BYTES * text_cells
                + _TEXT_CHAR_BYTES * text_chars)
    shown = _show([str(n).strip() for n, t in zip(names, is_text) if t])
    return estimate, (f"{rows:,} rows x {len(names):,} columns in {format_size(total)} of text"
                      f" ({sum(is_text):,} of them text: {shown})" if any(is_text) else
                      f"{rows:,} rows x {len(names):,} columns in {format_size(total)} of text")


# Peak memory of pd.read_parquet over the interpreter's baseline (VmHWM in a fresh process after
# one small read, pandas 3.1 / pyarrow 26), per cell, by the column's Arrow type: 3M rows of one
# column: float64 22.4 bytes, int64 27.3 (Arrow's decoded column, pandas' copy and the pool's
# slack: about 3.5 times the 8-byte value), bool 4.9, a category (dictionary) column 11.9,
# strings 28.7 (2 distinct values of 4-6 characters) and 44.1 (unique 12-character values,
# 16 bytes each in the footer's uncompressed size); 5M rows x 4 columns of one type: float64
# 27.5, int64 25.9, bool 2.7, dictionary 12.9, strings 22.2 and 33.6. A read also takes about
# 10 MB whatever its size. A string cell is charged 40 bytes plus 3 times its uncompressed
# bytes (a clean CI machine measured 2.75 times for 20k values of 1,000 characters): with pandas 3, 1M unique 12-character strings (16.1 MB stored) peaked at 75 MB and 100k
# of 1,000 characters (100.5 MB) at 266 MB, above the 28 + 1.25 per byte charged before. (The old estimate, 8 bytes per cell, let a 10^7 x 4 file through a budget it then ran
# out of.) A dictionary column's values are read into pandas categories, which cost far more than
# their stored bytes: unique values (1M of 12 characters, 200k of 200, 100k of 1,000) peaked at
# 379, 430 and 742-799 MB for 18.5, 41.3 and 100.6 MB stored (dictionary and indices), i.e. about
# 380 bytes per entry plus 7.5 per stored byte. The footer does not count the entries; every entry
# stores at least its 4-byte length, so a column chunk of b stored bytes has at most b / 4 of them.
_PARQUET_FIXED = 16 << 20
_PARQUET_WIDTH_FACTOR = 3.5
_PARQUET_BOOL = 5
_PARQUET_DICTIONARY = 14
_PARQUET_DICTIONARY_ENTRY = 400
_PARQUET_DICTIONARY_FACTOR = 8.5
_PARQUET_TEXT_CELL = 40
_PARQUET_TEXT_FACTOR = 3.0


def check_parquet_budget(meta: Any, schema: Any, where: str, fix: str) -> None:
    """Refuse, before reading, a Parquet file (footer ``meta``, ``schema``) whose columns would
    not fit the memory budget once decoded (:func:`parquet_read_bytes`): its size on disk says
    little, a compressed column of one repeated value decodes a thousandfold."""
    from audit.core.limits import check_size

    check_size(parquet_read_bytes(meta, schema), f"{where} holds {meta.num_rows:,} rows x "
               f"{meta.num_columns:,} columns; reading it needs about", fix=fix)


def parquet_read_bytes(meta: Any, schema: Any) -> int:
    """The memory ``pd.read_parquet`` takes for a file with footer ``meta`` and Arrow ``schema``:
    per column, its cells times a per-type cost measured here (see the table above)."""
    import pyarrow as pa

    rows = meta.num_rows
    stored = [0] * meta.num_columns  # uncompressed bytes of each column over its row groups
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for j in range(min(group.num_columns, len(stored))):
            stored[j] += group.column(j).total_uncompressed_size
    total = float(_PARQUET_FIXED)
    for j, field in enumerate(schema):
        t = field.type
        if pa.types.is_dictionary(t):  # read with int32 indices whatever the file's width
            chars = stored[j] if j < len(stored) else 0  # the dictionary (values) and the indices
            total += (rows * _PARQUET_DICTIONARY + min(rows, chars / 4) * _PARQUET_DICTIONARY_ENTRY
                      + _PARQUET_DICTIONARY_FACTOR * chars)
        elif pa.types.is_boolean(t):
            total += rows * _PARQUET_BOOL
        elif (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
              or pa.types.is_large_binary(t) or getattr(pa.types, "is_string_view", lambda _: False)(t)):
            chars = stored[j] if j < len(stored) else 0
            total += rows * _PARQUET_TEXT_CELL + _PARQUET_TEXT_FACTOR * chars
        else:
            try:
                width = max(t.bit_width, 8) / 8
            except ValueError:  # nested or variable width: charge what it stores, 8 bytes a cell at least
                width = max(8.0, (stored[j] if j < len(stored) else 0) / max(rows, 1))
            total += rows * _PARQUET_WIDTH_FACTOR * width
    return int(total)


def _check_data_size(path: Path, text: Sequence[str] = (), na_values: Sequence[str] = ()) -> None:
    """Refuse a data file whose content exceeds the memory budget, before pandas reads it.

    Parquet's footer states the uncompressed size. A CSV (plain or compressed) is streamed once
    before pandas sees it, stopping as soon as its text alone passes the budget (a small ``.gz``
    can expand a thousandfold); the estimate charges every cell and, per cell of a text column,
    the Python string pandas builds on the way (see ``_TEXT_CELL_BYTES``). ``text`` names the
    columns read as text whatever they hold; ``na_values`` the extra missing-value markers.
    """
    from audit.core.limits import check_size, format_size, memory_budget

    budget = memory_budget()[0]
    name = path.name.lower()
    fix = "Audit a sample of the rows (e.g. a smaller file)."
    if name.endswith((".parquet", ".pq")):
        try:
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            meta, schema = parquet.metadata, parquet.schema_arrow
        except Exception:  # not Parquet: pandas says so with the usual message
            return
        check_parquet_budget(meta, schema, f"The data file {str(path)!r}", fix)
        return
    if name.endswith(".zip"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                size = sum(i.file_size for i in zf.infolist())
        except zipfile.BadZipFile as exc:  # pandas would let it through as a traceback
            raise DataValidationError(
                f"The data file {str(path)!r} could not be read: it is truncated or corrupt "
                f"({exc}). Re-create or re-download it.") from None
        except OSError:
            return
        check_size(size, f"The data file {str(path)!r} decompresses to {format_size(size)} of "
                   "text; reading it needs at least", fix=fix)
    elif not any(name.endswith(s) for s in _STREAMS):
        size = path.stat().st_size
        check_size(size, f"The data file {str(path)!r} is {format_size(size)} of text; reading "
                   "it needs at least", fix=fix)
    try:
        estimate, what = _scan_csv(path, text, na_values, budget)
    except _OverBudget as over:
        check_size(over.total, f"The data file {str(path)!r} decompresses to at least "
                   f"{format_size(over.total)} of text; reading it needs at least", fix=fix)
        return
    except MemoryError:
        _out_of_memory(path)
    except (OSError, EOFError, zlib.error, ValueError):  # pandas reports these with its messages
        return
    except Exception as exc:  # lzma.LZMAError (not xz at all), which pandas would let through
        if "Failed to launch worker thread" in str(exc):  # pyarrow under an OS memory limit
            _out_of_memory(path)
        import lzma

        if not isinstance(exc, lzma.LZMAError):
            raise
        raise DataValidationError(
            f"The data file {str(path)!r} could not be read: it is truncated or corrupt ({exc}). "
            "Re-create or re-download it.") from None
    check_size(estimate, f"The data file {str(path)!r} holds {what}; reading it into a data "
               "frame needs about", fix=fix)


def _out_of_memory(path: Path) -> None:
    from audit.core.limits import format_size, memory_budget

    budget, source = memory_budget()
    raise DataValidationError(
        f"The data file {str(path)!r} ({format_size(path.stat().st_size)} on disk) ran out of memory "
        f"while being read (memory budget {format_size(budget)}, {source}). Audit a sample of the "
        "rows ([data] max_rows), read precomputed decisions in batches ([data] stream = true), or "
        "run on a machine with more memory.")


def _parquet_names(path: Path) -> list[str]:
    """The column names stored in a Parquet file (its schema only; no data is read)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        from audit.errors import MissingDependencyError

        raise MissingDependencyError(
            f"Reading the Parquet file {str(path)!r} needs pyarrow: pip install pyarrow.") from None
    return list(pq.read_schema(path).names)


def _raw_header(path: Path) -> list[str]:
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            return list(next(csv.reader(fh), []))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error):
        return []


@dataclass(frozen=True)
class TabularLayout:
    """Named raw features, each the group of its encoded columns (one-hot levels together).

    Tabular data has no grid: attributions are per raw feature already, occlusion removes one
    raw feature at a time and exact Shapley values over a handful of features are affordable.

    Examples
    --------
    >>> lay = TabularLayout(Encoding((NumericFeature("age"), NumericFeature("hours"))))
    >>> lay.groups("feature"), lay.occlusion_window("auto")
    ({'age': [0], 'hours': [1]}, 'feature')
    """

    encoding: Encoding
    kind: ClassVar[str] = "tabular"
    elementwise: ClassVar[bool] = False
    attribution_grouping: ClassVar[str] = "feature"
    exact_coalitions: ClassVar[bool] = True
    superpixels: ClassVar[str | None] = None
    groupings: ClassVar[tuple[str, ...]] = ("feature",)
    comparison_grouping: ClassVar[str] = "feature"
    element_grouping: ClassVar[str] = "feature"
    occlusion_windows: ClassVar[tuple[str, ...]] = ("feature",)
    default_occlusion_window: ClassVar[str] = "feature"
    hf_tasks: ClassVar[tuple[str, str]] = ("tabular-classification", "tabular-regression")

    @property
    def raw_features(self) -> list[str]:
        return self.encoding.feature_names

    def groups(self, by: Literal["feature"] = "feature") -> dict[str, list[int]]:
        """Raw feature -> its encoded columns."""
        if by != "feature":
            raise ValueError(f"The 'by' parameter of TabularLayout.groups must be 'feature'. Got {by!r} instead.")
        return dict(self.encoding.groups)

    def grid_shapes(self) -> dict[str, tuple[int, int, list[str]]]:
        return {}

    def occlusion_window(self, window: str) -> str:
        """Tabular occlusion always removes one raw feature (all its encoded columns)."""
        if window not in ("auto", "feature"):
            raise InvalidConfigError(f"The 'occlusion_window' option of saliency must be \"auto\" or "
                                     f"\"feature\" for tabular data. Got {window!r} instead.")
        return "feature"

    def occlusion_ids(self, window: str) -> np.ndarray:
        """Occlusion mask (1, d): every encoded column carries its raw feature's id."""
        self.occlusion_window(window)
        return self.encoding.column_feature[None, :].astype(np.int64)

    def baseline(self, X: np.ndarray, kind: str) -> tuple[np.ndarray, dict[str, str], str]:
        """The reference row (1, d) of encoded rows ``X``, its raw values as text and a sentence
        saying how: ``"zeros"`` (the all-zero encoded row) or ``"mean_mode"`` (numeric features
        at their mean, categorical features at their most frequent level)."""
        shape = (1, *X.shape[1:])
        X = np.asarray(X).reshape(len(X), -1).astype(np.float64)
        if kind == "zeros":
            return (np.zeros(shape, np.float32), {f: "0 (encoded)" for f in self.raw_features},
                    "the all-zero encoded row")
        row = X.mean(axis=0)
        text: dict[str, str] = {}
        enc = self.encoding
        for feat, idx in zip(enc.features, enc.groups.values(), strict=True):
            if isinstance(feat, CategoricalFeature):
                if feat.encoding == "onehot":
                    counts = X[:, idx].sum(axis=0)
                    level = int(np.argmax(counts))
                    row[idx] = 0.0
                    row[idx[level]] = 1.0
                else:
                    codes = np.clip(np.rint(X[:, idx[0]] * feat.scale + feat.center), 0, len(feat.levels) - 1)
                    level = int(np.bincount(codes.astype(int), minlength=len(feat.levels)).argmax())
                    row[idx[0]] = (level - feat.center) / feat.scale
                text[feat.name] = feat.levels[level]
            else:
                text[feat.name] = f"{float(feat.to_raw(row[idx[0]])):.4g}"
        return (row.reshape(shape).astype(np.float32), text,
                "numeric features at their mean (in the model's encoded scale), categorical features "
                "at their most frequent level")


@dataclass(frozen=True, eq=False)
class AuditData:
    """Validated, encoded data ready for the audit methods.

    ``X`` is the model input (float32; rows x encoded columns for tabular data), ``y`` the
    encoded target (0/1 for binary, class index for multiclass, float for regression),
    ``classes`` the original labels in index order (for binary: negative, positive), and
    ``sensitive`` the sensitive attributes as text, one column per attribute.
    """

    spec: DatasetSpec
    encoding: Encoding
    frame: pd.DataFrame
    X: np.ndarray
    y: np.ndarray | None
    classes: tuple[str, ...] | None
    sensitive: pd.DataFrame
    predictions: np.ndarray | None = None
    source: str | None = None
    modality: str = "tabular"
    # What the inputs are made of (audit.core.modalities): a TabularLayout (raw features over
    # encoded columns; built from ``encoding`` when None is given), an ImageLayout or a
    # SequenceLayout (element groups: patches, channels, features, lags). Methods ask it
    # instead of branching on ``modality``.
    layout: Any = None
    # Each row's position in the file it was read from (0-based) when the audited rows are a
    # sample or subset of it; None when row i is the file's row i. See :meth:`user_row`.
    file_rows: np.ndarray | None = field(default=None, compare=False, repr=False)
    # A decisions-only audit's columns that are not features, none declared: (column, why) pairs
    # (:func:`describable_columns`), stated in the report's limitations.
    left_out: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.layout is None:
            object.__setattr__(self, "layout", TabularLayout(self.encoding))

    @property
    def task(self) -> Task:
        return self.spec.task

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def positive_rate(self) -> float | None:
        """The share of positive outcomes of a binary task (None otherwise)."""
        if self.y is None or self.task != "binary":
            return None
        return float(np.mean(self.y))

    @property
    def feature_names(self) -> list[str]:
        return self.encoding.feature_names

    @property
    def columns(self) -> list[str]:
        return self.encoding.columns

    @property
    def groups(self) -> dict[str, list[int]]:
        return self.encoding.groups

    def user_row(self, position: int) -> int:
        """The row at ``position`` (0-based, among the audited rows) as a user counts it in the
        file: from 1, the header not counted; an image or sequence example in reading order.
        Under a sample (``[data] max_rows``) it is the sampled row's number in the file.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "g": list("abab"), "y": [0, 1, 0, 1]})
        >>> data = build_audit_data(df, DatasetSpec(target="y", sensitive=("g",)))
        >>> data.user_row(0), data.subset(np.array([1, 3])).user_row(1)
        (1, 4)
        """
        return int(position if self.file_rows is None else self.file_rows[position]) + 1

    def subset(self, rows: np.ndarray) -> AuditData:
        """The same data restricted to ``rows`` (indices or boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        in_file = rows if self.file_rows is None else self.file_rows[rows]
        return AuditData(
            self.spec, self.encoding, self.frame.iloc[rows].reset_index(drop=True), self.X[rows],
            None if self.y is None else self.y[rows], self.classes,
            self.sensitive.iloc[rows].reset_index(drop=True),
            None if self.predictions is None else self.predictions[rows], self.source, self.modality,
            self.layout, in_file, self.left_out)

    def tabular_view(self) -> AuditData:
        """The data as a flat table of named features, for methods that need one.

        Tabular data returns itself. Images become the mean raw intensity of each patch and
        sequences every lag of every feature (``layout.tabular_view``); ``encoding`` then names
        those columns, while ``modality`` and everything else stay as they were. Predictions
        must still be taken on the original data: the model never sees the view.
        """
        if not self.layout.elementwise:
            return self
        X, encoding = self.layout.tabular_view(self.X)
        return AuditData(self.spec, encoding, self.frame, X, self.y, self.classes, self.sensitive,
                         self.predictions, self.source, self.modality, None, self.file_rows, self.left_out)


def _encode_target(values: pd.Series, spec: DatasetSpec, classes: tuple[str, ...] | None,
                   where: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    name = spec.target
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataValidationError(
            f"The target column {name!r} in {where} has missing values in {_rows(missing)}. "
            "Drop those rows: an outcome is needed to judge the model.")
    if spec.task == "regression":
        return _as_numeric(values, str(name), "target", where), None
    text = _label_text(values)
    _refuse_same_number(text, f"The target column {name!r} in {where}")
    if spec.task == "binary":
        present = sorted(set(text))
        if spec.positive_label is None:
            if set(present) <= {"0", "1"}:
                pos = "1"
            elif ({p.lower() for p in present} <= {"false", "true"}
                  and len({p.lower() for p in present}) == len(present)):
                pos = next((p for p in present if p.lower() == "true"), "True")
            elif classes is not None and len(classes) == 2:
                pos = classes[1]
            else:
                raise DataValidationError(
                    f"The target column {name!r} in {where} has text labels {_show(present)}; say "
                    "which one is the positive outcome with positive_label = \"...\" in [data].")
        else:
            pos = _label_text(pd.Series([spec.positive_label]))[0]
        if len(present) > 2:
            raise DataValidationError(
                f"The target column {name!r} in {where} has {len(present)} distinct values "
                f"({_show(present)}) but the task is binary. Set task = \"multiclass\" or map the "
                "labels to two values.")
        if pos not in present and len(present) == 1:
            raise DataValidationError(
                f"The target column {name!r} in {where} has only one class ({present[0]!r}); the "
                f"positive label {pos!r} never occurs, so error rates cannot be judged. Audit rows "
                "with both outcomes, or fix positive_label in [data].")
        if pos not in present:
            raise DataValidationError(
                f"The positive label {pos!r} does not occur in the target column {name!r} of {where} "
                f"(values: {_show(present)}). Fix positive_label in [data].")
        negatives = [p for p in present if p != pos]
        neg = negatives[0] if negatives else (
            next((c for c in (classes or ()) if c != pos), f"not {pos}"))
        return (text == pos).astype(np.int64), (neg, pos)
    # multiclass
    labels = classes if classes is not None else tuple(sorted(set(text)))
    lookup = {c: i for i, c in enumerate(labels)}
    codes = pd.Series(text).map(lookup)
    unknown = codes.isna().to_numpy()
    if unknown.any():
        raise DataValidationError(
            f"The target column {name!r} in {where} has label(s) {_show(sorted(set(text[unknown])))} "
            f"that the model's classes {_show(labels)} do not include, in {_rows(unknown)}.")
    return codes.to_numpy(dtype=np.int64), labels


def _refuse_same_number(text: np.ndarray, what: str) -> None:
    """Labels are compared as written; two spellings of one number ("1" and "01", "1" and
    "1.0") would be two classes that the writer almost surely meant as one: refuse them."""
    by_number: dict[float, list[str]] = {}
    for label in set(text):
        try:
            number = float(label)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            by_number.setdefault(number, []).append(label)
    clash = next((sorted(v) for v in by_number.values() if len(v) > 1), None)
    if clash:
        counts = ", ".join(f"{v!r} in {int(np.sum(text == v))} rows" for v in clash)
        raise DataValidationError(
            f"{what} writes one number in several ways ({counts}); labels are compared as written, "
            "so these would be different classes. Write each label one way in the data (and "
            "positive_label the same way).")


def _label_text(values: pd.Series) -> np.ndarray:
    """Labels as text, with 1.0 and 1 (and True) spelled the same way."""
    values = pd.Series(values)
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "string":  # the common case, vectorized
        return values.str.strip().to_numpy(dtype=object)
    if kind == "integer":
        return values.astype(np.int64).astype(str).to_numpy(dtype=object)
    if kind == "boolean":
        return values.astype(bool).astype(str).to_numpy(dtype=object)
    if kind == "floating":
        x = values.to_numpy(dtype=float)
        if np.all(np.isfinite(x) & (x == np.round(x))):
            return x.astype(np.int64).astype(str).astype(object)

    def norm(v: Any) -> str:
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v).strip()
    return np.array([norm(v) for v in values.tolist()], dtype=object)


def _first_nested(values: pd.Series) -> int | None:
    """The first row holding a list, dict or array (Parquet's nested types), or None."""
    if isinstance(values.dtype, pd.ArrowDtype):
        import pyarrow as pa

        return 0 if pa.types.is_nested(values.dtype.pyarrow_dtype) else None
    if values.dtype != object:
        return None
    nested = values.map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray))).to_numpy(dtype=bool)
    return int(np.argmax(nested)) if nested.any() else None


def describable_columns(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], tuple[tuple[str, str], ...]]:
    """The columns a decisions-only audit can describe its decisions by (the surrogate's
    inputs, when ``[data] features`` names none), and the others with the reason: a column with
    missing cells, dates or times, or nested values is left out, not an error, since no model
    needs it; declared features are checked as a model's are.

    Examples
    --------
    >>> frame = pd.DataFrame({"age": [30, 41], "note": [None, "late"]})
    >>> describable_columns(frame, ["age", "note"])
    (['age'], (('note', 'missing in 1 row(s)'),))
    """
    usable, left_out = [], []
    for col in columns:
        values = frame[col]
        missing = int(values.isna().sum())
        dtype = values.dtype
        if missing == len(values):
            left_out.append((col, "no values"))
        elif missing:
            left_out.append((col, f"missing in {missing:,} row(s)"))
        elif (pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)
              or isinstance(dtype, pd.PeriodDtype)):
            left_out.append((col, "dates or times"))
        elif _first_nested(values) is not None:
            left_out.append((col, "nested values"))
        else:
            usable.append(col)
    return usable, tuple(left_out)


def build_audit_data(frame: pd.DataFrame, spec: DatasetSpec, encoding: Encoding | None = None,
                     *, source: str | None = None, file_rows: np.ndarray | None = None) -> AuditData:
    """Validate ``frame`` against ``spec`` and encode it.

    Parameters
    ----------
    frame : DataFrame
        Raw data, one row per example.
    spec : DatasetSpec
    encoding : Encoding, optional
        The model's input encoding; derived from the data when omitted.
    source : str, optional
        File name used in error messages.
    file_rows : array of int, optional
        When ``frame`` is a sample of the file's rows, each row's position in the file (0-based):
        error messages then number rows as in the file. By default row i of ``frame`` is the
        file's row i. Messages count rows from 1, the header not counted.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "g": list("abab"), "y": [0, 1, 0, 1]})
    >>> data = build_audit_data(df, DatasetSpec(target="y", sensitive=("g",)))
    >>> data.X.shape, data.feature_names
    ((4, 1), ['x'])
    """
    rows = None if file_rows is None else np.asarray(file_rows)
    token = _FILE_ROWS.set(rows)
    try:
        return replace(_build_audit_data(frame, spec, encoding, source), file_rows=rows)
    finally:
        _FILE_ROWS.reset(token)


def _build_audit_data(frame: pd.DataFrame, spec: DatasetSpec, encoding: Encoding | None,
                      source: str | None) -> AuditData:
    where = repr(source) if source else "the data"
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"The data must be a pandas DataFrame. Got {type(frame).__name__} instead.")
    if len(frame) == 0:
        raise DataValidationError(f"The data in {where} has no rows.")
    if len(frame) < 2:
        raise DataValidationError(
            f"The data in {where} has only 1 row; an audit compares predictions across rows and "
            "needs at least 2 (in practice hundreds). Audit a larger sample.")
    frame = frame.reset_index(drop=True)
    cols = list(frame.columns)
    named = [c for c in [spec.target, spec.predictions, *spec.sensitive, *(spec.features or ())] if c]
    for col in named:
        if col not in cols:
            raise DataValidationError(
                f"The column {col!r} named in the config is not in {where}.{did_you_mean(col, cols)} "
                f"Available columns: {_show(cols)}.")
    for col in dict.fromkeys(c for c in [spec.target, spec.predictions, *spec.sensitive] if c):
        row = _first_nested(frame[col])
        if row is not None:
            raise DataValidationError(
                f"The column {col!r} in {where} holds nested values (lists, structs or maps; first at "
                f"row {user_row(row):,}, {ROWS_COUNTED}), not labels or scores. Write it as a column of plain values (text or "
                "numbers), e.g. one element or field of it per column.")
    for attr, sources in spec.sensitive_sources:
        for col in sources:
            if col not in cols:
                raise InvalidConfigError(
                    f"[data] sensitive_sources.{attr} names the column {col!r}, which is not in "
                    f"{where}.{did_you_mean(col, cols)} Available columns: {_show(cols)}.")
    left_out: tuple[tuple[str, str], ...] = ()
    if spec.features is not None:
        features = list(spec.features)
    elif encoding is not None:
        features = encoding.feature_names
    else:
        reserved = {spec.target, spec.predictions, *spec.sensitive}
        features = [c for c in cols if c not in reserved]
        if spec.predictions is not None:  # decisions only: no model reads the other columns
            features, left_out = describable_columns(frame, features)
    if spec.target in features:
        raise InvalidConfigError(
            f"The target {spec.target!r} is also listed as a feature; remove it from 'features'.")
    if not features and spec.predictions is None:  # precomputed predictions need no features
        raise DataValidationError(f"No feature columns are left in {where} after removing the target "
                                  "and sensitive columns.")
    if encoding is None:
        try:
            encoding = Encoding.fit(frame[features])
        except DataValidationError as exc:
            if source is None:
                raise
            raise DataValidationError(f"In {where}: {exc}") from None
    elif sorted(encoding.feature_names) != sorted(features):
        extra = sorted(set(features) - set(encoding.feature_names))
        lacking = sorted(set(encoding.feature_names) - set(features))
        raise DataValidationError(
            "The features do not match the model's encoding: "
            + (f"not in the encoding: {_show(extra)}; " if extra else "")
            + (f"needed by the encoding but not listed: {_show(lacking)}; " if lacking else "")
            + "list exactly the encoding's features (or omit 'features' to use them).")
    try:
        X = encoding.encode(frame)
    except DataValidationError as exc:  # the encoding names the column; say which file too
        if source is None:
            raise
        raise DataValidationError(f"In {where}: {exc}") from None

    y = classes = None
    if spec.target is not None:
        y, classes = _encode_target(frame[spec.target], spec, encoding.classes, where)

    sensitive = pd.DataFrame(index=frame.index)
    for col in spec.sensitive:
        values = frame[col]
        missing = values.isna().to_numpy()
        if missing.any() and spec.missing_sensitive == "group":
            if (_label_text(values[~missing]) == MISSING_GROUP).any():
                raise missing_group_clash(col, where)
            values = values.astype(object).where(~missing, MISSING_GROUP)
        elif missing.any():
            raise DataValidationError(
                f"The sensitive column {col!r} in {where} has missing values in {_rows(missing)}. "
                "Fill them or drop those rows, or set missing_sensitive = \"group\" in [data] to "
                "audit them as an explicit \"missing\" group.")
        sensitive[col] = _label_text(values)

    predictions = None
    if spec.predictions is not None:
        predictions = _precomputed(frame[spec.predictions], spec, classes, where)

    keep = list(dict.fromkeys([*features, *(c for c in [spec.target, spec.predictions] if c),
                               *spec.sensitive]))
    return AuditData(spec, encoding, frame[keep], X, y, classes, sensitive, predictions, source,
                     left_out=left_out)


def missing_group_clash(column: str, where: str) -> DataValidationError:
    """Missing cells and cells written "missing" would be counted as one group (memory and stream)."""
    return DataValidationError(
        f"The sensitive column {column!r} in {where} has missing cells and cells that read "
        f"{MISSING_GROUP!r}: with missing_sensitive = \"group\" the missing cells form the group "
        f"{MISSING_GROUP!r}, so the two would be counted as one group. Rename the value {MISSING_GROUP!r} "
        "in the data (e.g. to \"missing (recorded)\"), or fill or drop the missing cells.")


def _precomputed(values: pd.Series, spec: DatasetSpec, classes: tuple[str, ...] | None,
                 where: str) -> np.ndarray:
    """Precomputed predictions: scores in [0, 1] or labels (binary), labels (multiclass), values."""
    name = spec.predictions
    if values.isna().any():
        raise DataValidationError(
            f"The predictions column {name!r} in {where} has missing values in "
            f"{_rows(values.isna().to_numpy())}. Every audited row needs a prediction.")
    if spec.task == "regression":
        return _as_numeric(values, str(name), "predictions", where)
    text = _label_text(values)
    if classes is not None and set(text) <= set(classes):
        return np.array([classes.index(t) for t in text], dtype=np.int64)
    if pd.api.types.is_bool_dtype(values):  # e.g. a Parquet boolean: not a score of 0 or 1
        raise DataValidationError(
            f"The predictions column {name!r} in {where} holds true/false values, which are "
            f"neither scores in [0, 1] nor the target's labels ({_show(classes or ())}). Write the "
            "predictions as the target's labels, or as scores.")
    if spec.task == "binary":
        # scores: the range ([0, 1] within PROBA_TOLERANCE, then clipped) is checked with every
        # other model output, by audit.core.adapter.check_outputs (PredictionsAdapter)
        return _as_numeric(values, str(name), "predictions", where)
    raise DataValidationError(
        f"The predictions column {name!r} in {where} has labels {_show(sorted(set(text)))} that are "
        f"not classes of the target ({_show(classes or ())}).")


__all__ = [
    "AuditData",
    "CategoricalFeature",
    "DatasetSpec",
    "Encoding",
    "NumericFeature",
    "TASKS",
    "build_audit_data",
    "read_table",
    "text_columns",
]
