"""The search space of counterfactuals: raw values, constraints, costs and projections.

Every search works on a *raw representation* of rows: numeric features in their own units
(``num``, float, one column per numeric feature) and categorical features as level codes
(``cat``, int, one column per categorical feature). ``Space.encode`` turns that into the
model's input matrix, so a counterfactual is always a real, encodable row: one-hot groups are
exactly one-hot, integers are integers.

Two sets of limits are kept apart:

- *constraints* are what the user asked for (immutable features, monotone directions, permitted
  ranges, allowed levels); a counterfactual that breaks one is a violation and is never returned;
- *plausibility guards* narrow the search further (values inside the observed range, no level
  rarer than ``min_level_share`` overall or among rows sharing the row's immutable attributes);
  they are reported as quality, not counted as violations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from audit.core.dataset import CategoricalFeature, Encoding, NumericFeature
from audit.errors import InvalidConfigError, did_you_mean

# A context level (e.g. sex=Female) needs this many reference rows before the levels that are rare
# *within* it are excluded; smaller groups are judged only by the overall level shares.
MIN_CONTEXT_ROWS = 100


@dataclass
class NumSpec:
    name: str
    fi: int                 # index of the raw feature in the encoding
    col: int                # encoded column
    center: float
    scale: float
    log1p: bool
    integer: bool
    mad: float              # median absolute deviation in raw units (with a floor, see mad_floor)
    mad_source: str         # "mad" or the fallback used
    lo: float               # permitted range (constraint), raw units
    hi: float
    obs_lo: float           # observed range in the reference rows
    obs_hi: float
    mono: int = 0           # +1 may only increase, -1 only decrease
    mutable: bool = True
    spike: float | None = None          # the value most rows share, when the MAD is 0
    gap: tuple[float, float] | None = None  # open interval around the spike no real row uses

    def to_encoded(self, v: np.ndarray) -> np.ndarray:
        t = np.log1p(np.maximum(v, 0.0)) if self.log1p else v
        return (t - self.center) / self.scale

    def to_raw(self, z: np.ndarray) -> np.ndarray:
        t = np.asarray(z, dtype=float) * self.scale + self.center
        return np.expm1(t) if self.log1p else t


@dataclass
class CatSpec:
    name: str
    fi: int
    cols: list[int]
    levels: tuple[str, ...]
    E: np.ndarray                       # (L, width) encoded value of each level
    share: np.ndarray                   # (L,) share of reference rows with the level
    allowed: np.ndarray                 # (L,) bool: allowed by the user's constraints
    rank: np.ndarray | None = None      # (L,) order for monotone constraints
    mono: int = 0
    mutable: bool = True
    onehot: bool = True


@dataclass
class Constraints:
    """The user's constraints, already checked against the encoding's feature names."""

    immutable: tuple[str, ...] = ()
    monotone: Mapping[str, str] = field(default_factory=dict)
    ranges: Mapping[str, Sequence[float]] = field(default_factory=dict)
    allowed_levels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    level_order: Mapping[str, Sequence[str]] = field(default_factory=dict)


def mad_floor(values: np.ndarray) -> tuple[float, str]:
    """The median absolute deviation, with a floor for features whose MAD is zero.

    A MAD of zero (capital-gain: most rows 0) would make every change infinitely expensive, and
    the common fix of a weight of 1 makes that feature nearly free. The fallbacks keep the
    feature's own scale: the mean absolute deviation around the median, then the standard
    deviation, then 1.
    """
    v = np.asarray(values, dtype=float)
    med = np.median(v)
    mad = float(np.median(np.abs(v - med)))
    if mad > 0:
        return mad, "mad"
    mean_abs = float(np.mean(np.abs(v - med)))
    if mean_abs > 0:
        return mean_abs, "mean absolute deviation (MAD is 0)"
    sd = float(np.std(v))
    if sd > 0:
        return sd, "standard deviation (MAD is 0)"
    return 1.0, "constant feature (unit weight)"


def spike_gap(values: np.ndarray, q: float = 0.01) -> tuple[float, tuple[float, float]]:
    """For a zero-inflated feature: the common value and the interval around it that holds
    fewer than ``q`` of the other values on each side (capital-gain: 0 and (0, 594) on the
    Adult training data). A counterfactual that adds 17 dollars of capital gain is cheap in the
    MAD metric but no real row looks like it, so changed values must leave that interval."""
    v = np.asarray(values, dtype=float)
    spike = float(np.median(v))
    above, below = v[v > spike], v[v < spike]
    hi = float(np.quantile(above, q)) if above.size else spike
    lo = float(np.quantile(below, 1 - q)) if below.size else spike
    return spike, (lo, hi)


class Space:
    """Raw representation, constraints and costs for one encoding.

    Parameters
    ----------
    encoding : Encoding
    reference_X : array (m, D)
        Encoded reference rows (the training data when given, else the audited rows): MADs,
        observed ranges and level shares come from them.
    constraints : Constraints
    categorical_cost : float
        Cost of changing one categorical feature, in MAD units.
    min_level_share : float
        Levels rarer than this in the reference rows are not offered as targets.
    """

    def __init__(self, encoding: Encoding, reference_X: np.ndarray, constraints: Constraints, *,
                 categorical_cost: float = 1.0, min_level_share: float = 0.01,
                 clip_to_observed: bool = True) -> None:
        self.encoding = encoding
        self.features = list(encoding.features)
        self.names = [f.name for f in self.features]
        self.D = len(encoding.columns)
        self.categorical_cost = float(categorical_cost)
        self.min_level_share = float(min_level_share)
        self.clip_to_observed = clip_to_observed
        self.num: list[NumSpec] = []
        self.cat: list[CatSpec] = []
        self.kind: list[tuple[str, int]] = []
        groups = encoding.groups
        check_constraints(encoding, constraints)
        imm = set(constraints.immutable)
        ref = np.asarray(reference_X, dtype=float)
        for fi, f in enumerate(self.features):
            cols = groups[f.name]
            if isinstance(f, NumericFeature):
                spec = NumSpec(f.name, fi, cols[0], f.center, f.scale, f.transform == "log1p",
                               f.integer, 1.0, "", -np.inf, np.inf, -np.inf, np.inf)
                raw = spec.to_raw(ref[:, cols[0]])
                if spec.integer:
                    raw = np.round(raw)
                spec.mad, spec.mad_source = mad_floor(raw)
                spec.obs_lo, spec.obs_hi = float(raw.min()), float(raw.max())
                if spec.mad_source != "mad":
                    spec.spike, spec.gap = spike_gap(raw)
                    if spec.integer:
                        spec.gap = (float(np.floor(spec.gap[0])), float(np.ceil(spec.gap[1])))
                if f.name in constraints.ranges:
                    spec.lo, spec.hi = (float(x) for x in constraints.ranges[f.name])
                direction = constraints.monotone.get(f.name)
                spec.mono = {"increase": 1, "decrease": -1, None: 0}[direction]
                spec.mutable = f.name not in imm
                self.kind.append(("num", len(self.num)))
                self.num.append(spec)
            else:  # a CategoricalFeature: the encoding has no third kind
                L = len(f.levels)
                if f.encoding == "onehot":
                    E = np.eye(L)
                    codes = np.argmax(ref[:, cols], axis=1)
                else:
                    E = ((np.arange(L) - f.center) / f.scale)[:, None]
                    codes = np.clip(np.rint(ref[:, cols[0]] * f.scale + f.center), 0, L - 1).astype(int)
                share = np.bincount(codes, minlength=L) / max(1, len(codes))
                allowed = np.ones(L, bool)
                if f.name in constraints.allowed_levels:
                    allowed = np.isin(np.asarray(f.levels), list(constraints.allowed_levels[f.name]))
                rank = None
                if f.name in constraints.level_order:
                    order = list(constraints.level_order[f.name])
                    rank = np.array([order.index(lv) for lv in f.levels])
                direction = constraints.monotone.get(f.name)
                self.kind.append(("cat", len(self.cat)))
                self.cat.append(CatSpec(f.name, fi, list(cols), tuple(f.levels), E, share, allowed,
                                        rank, {"increase": 1, "decrease": -1, None: 0}[direction],
                                        f.name not in imm, f.encoding == "onehot"))
        self.mad = np.array([s.mad for s in self.num])
        _, self._ref_codes = self.split(ref)
        self._context_tables: list[tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]] = []

    # ---- representation ------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.features)

    def split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoded rows -> (numeric raw values, categorical level codes)."""
        X = np.asarray(X, dtype=float)
        num = np.empty((len(X), len(self.num)))
        for j, s in enumerate(self.num):
            v = s.to_raw(X[:, s.col])
            num[:, j] = np.round(v) if s.integer else v
        cat = np.empty((len(X), len(self.cat)), dtype=np.int64)
        for g, s in enumerate(self.cat):
            if s.onehot:
                cat[:, g] = np.argmax(X[:, s.cols], axis=1)
            else:
                f = self.features[s.fi]
                cat[:, g] = np.clip(np.rint(X[:, s.cols[0]] * f.scale + f.center), 0, len(s.levels) - 1)
        return num, cat

    def encode(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        """(numeric raw values, level codes) -> the model's float32 input matrix."""
        num = np.asarray(num, dtype=float)
        cat = np.asarray(cat, dtype=np.int64)
        X = np.zeros((max(len(num), len(cat)), self.D), dtype=np.float32)
        for j, s in enumerate(self.num):
            X[:, s.col] = s.to_encoded(num[:, j])
        for g, s in enumerate(self.cat):
            X[:, s.cols] = s.E[cat[:, g]]
        return X

    # ---- per-row limits ------------------------------------------------------------------
    def numeric_bounds(self, num0: np.ndarray, *, search: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-row (lo, hi) a *changed* numeric value must lie in; lo > hi means it cannot change.

        ``search=True`` also clips to the observed range (a plausibility guard).
        """
        n = len(num0)
        lo = np.empty((n, len(self.num)))
        hi = np.empty((n, len(self.num)))
        for j, s in enumerate(self.num):
            a, b = s.lo, s.hi
            if search and self.clip_to_observed:
                a, b = max(a, s.obs_lo), min(b, s.obs_hi)
            lo[:, j], hi[:, j] = a, b
            if s.mono > 0:
                lo[:, j] = np.maximum(lo[:, j], num0[:, j])
            elif s.mono < 0:
                hi[:, j] = np.minimum(hi[:, j], num0[:, j])
            if s.integer:
                lo[:, j], hi[:, j] = np.ceil(lo[:, j] - 1e-9), np.floor(hi[:, j] + 1e-9)
            if not s.mutable:
                lo[:, j], hi[:, j] = np.inf, -np.inf
        return lo, hi

    def set_context(self, reference_context: Mapping[str, np.ndarray]) -> None:
        """Remember the level counts of each mutable categorical within each context attribute
        (immutable categoricals and sensitive attributes) of the reference rows."""
        self._context_tables = []
        for g, s in enumerate(self.cat):
            per_attr = []
            for attr, values in reference_context.items():
                if attr == s.name:
                    continue
                values = np.asarray(values).astype(str)
                uniq, inv = np.unique(values, return_inverse=True)
                counts = np.zeros((len(uniq), len(s.levels)))
                np.add.at(counts, (inv, self._ref_codes[:, g]), 1)
                per_attr.append((attr, {u: counts[i] for i, u in enumerate(uniq)}))
            self._context_tables.append(per_attr)  # type: ignore[arg-type]

    def level_masks(self, cat0: np.ndarray, *, search: bool,
                    context: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Per-row allowed levels (n, L) of each categorical; the original level is always
        allowed (keeping it is no change). ``search=True`` adds the plausibility guards."""
        n = len(cat0)
        masks = []
        for g, s in enumerate(self.cat):
            m = np.broadcast_to(s.allowed, (n, len(s.levels))).copy()
            if s.rank is not None and s.mono != 0:
                r0 = s.rank[cat0[:, g]][:, None]
                m &= (s.rank[None, :] >= r0) if s.mono > 0 else (s.rank[None, :] <= r0)
            if not s.mutable:
                m[:] = False
            if search:
                m &= (s.share >= self.min_level_share)[None, :]
                if context is not None and self._context_tables:
                    for attr, table in self._context_tables[g]:
                        if attr not in context:
                            continue
                        vals = np.asarray(context[attr]).astype(str)
                        for value in np.unique(vals):
                            counts = table.get(value)
                            if counts is None or counts.sum() < MIN_CONTEXT_ROWS:
                                continue
                            ok = counts / counts.sum() >= self.min_level_share
                            m[vals == value] &= ok[None, :]
            m[np.arange(n), cat0[:, g]] = True
            masks.append(m)
        return masks

    def inside_observed(self, num: np.ndarray, num0: np.ndarray) -> np.ndarray:
        """(n,) bool: every numeric value the row *changes* lies inside the observed range of the
        reference rows. This is the one definition of the "observed range" plausibility guard:
        :meth:`numeric_bounds` (``search=True``) enforces it and the reported share measures it.
        Values a counterfactual leaves unchanged are not judged: an audited row may itself lie
        outside the training rows' range, and keeping its own value is no change."""
        ok = np.ones(len(num), bool)
        for j, s in enumerate(self.num):
            changed = np.abs(num[:, j] - num0[:, j]) > 1e-6 * s.mad
            ok &= ~changed | ((num[:, j] >= s.obs_lo - 1e-9) & (num[:, j] <= s.obs_hi + 1e-9))
        return ok

    # ---- costs and checks ----------------------------------------------------------------
    def changed(self, num: np.ndarray, cat: np.ndarray, num0: np.ndarray, cat0: np.ndarray) -> np.ndarray:
        """(n, n_features) bool: which raw features differ from the original row."""
        out = np.zeros((len(num), self.n_features), bool)
        tol = 1e-6 * self.mad
        for j, s in enumerate(self.num):
            out[:, s.fi] = np.abs(num[:, j] - num0[:, j]) > tol[j]
        for g, s in enumerate(self.cat):
            out[:, s.fi] = cat[:, g] != cat0[:, g]
        return out

    def num_cost(self, num: np.ndarray, num0: np.ndarray) -> np.ndarray:
        if not self.num:
            return np.zeros(len(num))
        return (np.abs(num - num0) / self.mad).sum(axis=1)

    def cost(self, num: np.ndarray, cat: np.ndarray, num0: np.ndarray, cat0: np.ndarray,
             weights: np.ndarray | None = None) -> np.ndarray:
        """MAD-scaled L1 on numerics plus ``categorical_cost`` per categorical change; optional
        per-row, per-feature ``weights`` (n, n_features) multiply each feature's part."""
        parts = self.cost_by_feature(num, cat, num0, cat0)
        if weights is not None:
            parts = parts * weights
        return parts.sum(axis=1)

    def cost_by_feature(self, num: np.ndarray, cat: np.ndarray, num0: np.ndarray,
                        cat0: np.ndarray) -> np.ndarray:
        out = np.zeros((len(num), self.n_features))
        for j, s in enumerate(self.num):
            out[:, s.fi] = np.abs(num[:, j] - num0[:, j]) / s.mad
        for g, s in enumerate(self.cat):
            out[:, s.fi] = self.categorical_cost * (cat[:, g] != cat0[:, g])
        return out

    def project(self, num: np.ndarray, cat: np.ndarray, num0: np.ndarray, cat0: np.ndarray,
                lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray], *,
                guard: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Nearest admissible row: integers rounded, changed values clipped into their per-row
        range (and, with ``guard``, out of a zero-inflated feature's gap), disallowed levels and
        unchangeable features reverted to the original."""
        num = np.array(num, dtype=float, copy=True)
        cat = np.array(cat, dtype=np.int64, copy=True)
        for j, s in enumerate(self.num):
            v = num[:, j]
            if s.integer:
                v = np.round(v)
            # an unchanged value is kept as it is, even outside the permitted range (an audited
            # row may lie outside the training rows' range): clipping it would force a change
            kept = np.abs(v - num0[:, j]) <= 1e-6 * s.mad
            v = np.clip(v, lo[:, j], hi[:, j])  # where lo > hi clip yields hi; fixed below
            if guard and s.gap is not None and s.spike is not None:
                a, b = s.gap
                inside = (v > a) & (v < b) & (v != s.spike)
                near_hi = np.where(v > s.spike, b - v < v - s.spike, False)
                near_lo = np.where(v < s.spike, v - a < s.spike - v, False)
                snapped = np.where(near_hi, b, np.where(near_lo, a, s.spike))
                out = (snapped < lo[:, j]) | (snapped > hi[:, j])
                v = np.where(inside, np.where(out, num0[:, j], snapped), v)
            same = np.abs(v - num0[:, j]) <= 1e-6 * s.mad
            stuck = lo[:, j] > hi[:, j]
            num[:, j] = np.where(kept | same | stuck | ~np.isfinite(v), num0[:, j], v)
        for g, m in enumerate(masks):
            ok = m[np.arange(len(cat)), cat[:, g]]
            cat[:, g] = np.where(ok, cat[:, g], cat0[:, g])
        return num, cat

    def violations(self, num: np.ndarray, cat: np.ndarray, num0: np.ndarray, cat0: np.ndarray) -> np.ndarray:
        """Number of the user's constraints each row breaks (immutable, monotone, range,
        allowed levels) plus malformed values (non-integer integers, unknown level codes)."""
        lo, hi = self.numeric_bounds(num0, search=False)
        masks = self.level_masks(cat0, search=False)
        changed = self.changed(num, cat, num0, cat0)
        count = np.zeros(len(num), dtype=np.int64)
        for j, s in enumerate(self.num):
            ch = changed[:, s.fi]
            v = num[:, j]
            bad = ch & ((v < lo[:, j] - 1e-9 * s.mad) | (v > hi[:, j] + 1e-9 * s.mad))
            if s.integer:
                bad |= np.abs(v - np.round(v)) > 1e-6
            count += bad
        for g, s in enumerate(self.cat):
            codes = cat[:, g]
            valid_code = (codes >= 0) & (codes < len(s.levels))
            ok = masks[g][np.arange(len(cat)), np.where(valid_code, codes, 0)]
            count += ~valid_code | (changed[:, s.fi] & ~ok)
        return count

    # ---- display ---------------------------------------------------------------------------
    def value_text(self, fi: int, num_row: np.ndarray, cat_row: np.ndarray) -> str:
        kind, j = self.kind[fi]
        if kind == "cat":
            return self.cat[j].levels[int(cat_row[j])]
        v = float(num_row[j])
        s = self.num[j]
        return f"{int(round(v)):,}" if s.integer else f"{v:.4g}"


def check_constraints(encoding: Encoding, c: Constraints) -> None:
    """Raise InvalidConfigError for unknown names, contradictions and empty value sets."""
    names = encoding.feature_names
    where = "[methods.counterfactuals]"

    def known(name: str, option: str) -> None:
        if name not in names:
            raise InvalidConfigError(
                f"The {option!r} option of {where} names {name!r}, which is not a model feature."
                f"{did_you_mean(name, names)} Features: {', '.join(names)}.")

    for name in c.immutable:
        known(name, "immutable")
    for option, table in (("monotone", c.monotone), ("ranges", c.ranges),
                          ("allowed_levels", c.allowed_levels), ("level_order", c.level_order)):
        for name in table:
            known(name, option)
            if name in c.immutable and option != "level_order":
                raise InvalidConfigError(
                    f"The feature {name!r} is immutable but the {option!r} option of {where} also "
                    f"constrains how it may change; remove it from one of them.")
    for name, direction in c.monotone.items():
        if direction not in ("increase", "decrease"):
            raise InvalidConfigError(
                f"The 'monotone' option of {where} must map features to \"increase\" or "
                f"\"decrease\". Got {direction!r} for {name!r} instead.")
        f = encoding.feature(name)
        if isinstance(f, CategoricalFeature) and name not in c.level_order:
            raise InvalidConfigError(
                f"The categorical feature {name!r} has a monotone direction but no order: add "
                f"level_order.{name} = [...] (lowest first) to {where}.")
    for name, bounds in c.ranges.items():
        f = encoding.feature(name)
        if not isinstance(f, NumericFeature):
            raise InvalidConfigError(
                f"The 'ranges' option of {where} applies to numeric features; {name!r} is categorical "
                "(use allowed_levels).")
        if len(bounds) != 2 or not all(isinstance(b, (int, float)) for b in bounds):
            raise InvalidConfigError(
                f"The 'ranges' option of {where} must give [low, high] for {name!r}. Got {list(bounds)!r} instead.")
        if float(bounds[0]) > float(bounds[1]):
            raise InvalidConfigError(
                f"The range of {name!r} in {where} is empty: low {bounds[0]} is above high {bounds[1]}.")
    for option, table in (("allowed_levels", c.allowed_levels), ("level_order", c.level_order)):
        for name, levels in table.items():
            f = encoding.feature(name)
            if not isinstance(f, CategoricalFeature):
                raise InvalidConfigError(
                    f"The {option!r} option of {where} applies to categorical features; {name!r} is numeric.")
            unknown = [lv for lv in levels if lv not in f.levels]
            if unknown:
                raise InvalidConfigError(
                    f"The {option!r} option of {where} lists level {unknown[0]!r} of {name!r}, which "
                    f"the encoding does not know.{did_you_mean(str(unknown[0]), f.levels)} Levels: "
                    f"{', '.join(f.levels)}.")
            if option == "allowed_levels" and not levels:
                raise InvalidConfigError(
                    f"The allowed levels of {name!r} in {where} are empty, so no row could change it; "
                    f"make it immutable instead.")
            if option == "level_order" and sorted(levels) != sorted(f.levels):
                raise InvalidConfigError(
                    f"The 'level_order' of {name!r} in {where} must list every level exactly once. "
                    f"Got {len(levels)} of {len(f.levels)} levels instead.")
    if set(names) <= set(c.immutable):
        raise InvalidConfigError(
            f"Every feature is immutable in {where}, so no counterfactual can exist. Make at least "
            "one feature mutable.")
