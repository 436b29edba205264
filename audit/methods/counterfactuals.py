"""Counterfactual explanations and recourse: the smallest realistic change that flips a decision.

For rows the model does not assign to the target class (by default: the positive label of a
binary task), the method searches for up to ``n_counterfactuals`` nearby rows that the model
does assign to it, under the user's constraints, and measures their quality. It then compares
the cost of the cheapest counterfactual between the groups of every sensitive attribute
(recourse fairness, "burden" in the sense of Sharma et al., 2020).

Distance is the L1 distance with every numeric feature divided by its median absolute
deviation (MAD) in raw units (Wachter et al., 2017), plus ``categorical_cost`` for each
categorical feature that changes. A zero MAD is replaced by a floor (see
:func:`audit.methods._cf.space.mad_floor`) so that a mostly-constant feature never looks free.

Search: differentiable models get a batched gradient search (all rows at once, one-hot groups
relaxed to a softmax over permitted levels and projected to a real level, integers rounded);
other models a batched genetic search over permitted values; rows the gradient search leaves
without a counterfactual get the genetic search too. Both end with a sparsity pass (revert
every change the flip does not need) and a shrink pass (move numeric changes back to the
boundary). Every counterfactual is re-scored by the real model: an invalid one is never shown.

Example
-------
>>> import numpy as np, pandas as pd
>>> from audit.core.adapter import CallableAdapter
>>> from audit.core.dataset import DatasetSpec, build_audit_data
>>> from audit.core.method import RunContext
>>> df = pd.DataFrame({"x": np.linspace(-2, 2, 40), "g": ["a", "b"] * 20})
>>> df["y"] = (df.x > 0).astype(int)
>>> data = build_audit_data(df, DatasetSpec(target="y", features=("x",), sensitive=("g",)))
>>> model = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-3 * X[:, 0])))
>>> method = Counterfactuals()
>>> cfg = CounterfactualsConfig(n_counterfactuals=1, n_permutations=99, n_bootstrap=99)
>>> res = method.run(model, data, cfg, RunContext.default())
>>> res.quality.validity
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               OptionError, RunContext)
from audit.errors import InvalidConfigError
from audit.execution import chunk_rng
from audit.methods._cf.quality import Quality, measure
from audit.methods._cf.recourse import AttributeRecourse, recourse_by_group
from audit.methods._cf.space import Constraints, Space
from audit.stats.multiplicity import holm

_WHERE = "[methods.counterfactuals]"
# Rows per chunk of audit.execution.map, each chunk searched with its own random stream: a fixed
# size, so the shards depend on the number of rows searched alone, never on the workers. Each
# step of the search has a fixed cost (~2 ms) beside its per-row cost (~12 µs), so small shards
# cost time: 1,000 Adult rows took 5.7 s in shards of 100 and 3.9 s in shards of 500 against
# 3.6 s in one (benchmarks/counterfactuals.py --only adult, load 1.5, 2 cores).
_SHARD = 500


@dataclass(frozen=True)
class CounterfactualsConfig(MethodConfig):
    """Options of the counterfactual search.

    target_class : the class to reach (default: the positive label of a binary task; required
        for multiclass).
    search : "auto" (gradient when the model has gradients, else genetic), "gradient" or
        "genetic".
    max_search_rows : rows searched, a seeded random sample of the rows not predicted as the target class.
    n_counterfactuals : diverse counterfactuals per row (sequential exclusion: each further
        search makes the features used so far ``diversity_penalty`` times dearer per use).
    immutable : features that may not change (constraint).
    sensitive_immutable : also keep every sensitive attribute that is a model feature unchanged.
    sensitive_sources_immutable : also keep every feature a sensitive attribute is derived from
        (``[data] sensitive_sources``) unchanged: changing one could move the row to another group.
    monotone : feature -> "increase" | "decrease" (categoricals need a level_order).
    ranges : feature -> [low, high] a changed value must lie in, raw units.
    allowed_levels : feature -> levels a changed value may take.
    level_order : categorical feature -> its levels in order (for monotone).
    categorical_cost : cost of changing one categorical feature (numerics cost |change| / MAD).
    clip_to_observed : keep numeric values inside the observed range (plausibility).
    min_level_share : exclude levels rarer than this share of the reference rows, overall and
        among rows sharing the row's immutable attributes (plausibility).
    diversity_penalty : factor by which each further search makes already used features dearer.
    sparsity_weight : price of each changed feature, in cost units, when the search chooses
        among valid counterfactuals (an L0 penalty): a counterfactual that changes one feature
        fewer is preferred unless it costs more than this much extra. The default 10 makes
        sparse counterfactuals win (Adult MLP benchmark: 1.97 features changed on average
        against 2.39 at a weight of 1, at a mean cost of 4.4 against 2.6); 0 chooses by cost
        alone. Reported costs are always the plain cost, without the penalty.
    steps, learning_rate : gradient search: steps and step size.
    margin : gradient search: logit units past the threshold the relaxed search aims for.
    population, generations : genetic search: candidates per row and rounds.
    n_bootstrap : recourse fairness: bootstrap resamples of each group's cost intervals.
    n_permutations : recourse fairness: permutations per cost-gap test (Holm-adjusted).
    alpha : recourse fairness: level at which a cost gap is reported.
    min_group_size : recourse fairness: groups with fewer costed rows are not tested.
    n_examples : example counterfactuals shown in the report.
    """

    target_class: str | None = None
    search: Literal["auto", "gradient", "genetic"] = "auto"
    max_search_rows: int = 500
    n_counterfactuals: int = 3
    immutable: tuple[str, ...] = ()
    sensitive_immutable: bool = True
    sensitive_sources_immutable: bool = True
    monotone: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, Any] = field(default_factory=dict)
    allowed_levels: dict[str, Any] = field(default_factory=dict)
    level_order: dict[str, Any] = field(default_factory=dict)
    categorical_cost: float = 1.0
    clip_to_observed: bool = True
    min_level_share: float = 0.01
    diversity_penalty: float = 4.0
    sparsity_weight: float = 10.0
    steps: int = 200
    learning_rate: float = 0.05
    margin: float = 0.5
    population: int = 60
    generations: int = 12
    n_bootstrap: int = 1000
    n_permutations: int = 999
    alpha: float = 0.05
    min_group_size: int = 20
    n_examples: int = 5

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "max_search_rows": Interval(1, 10_000_000, "rows searched"),
        "categorical_cost": Interval(0, None, closed="neither"),
        "min_level_share": Interval(0, 0.5, closed="left"),
        "sparsity_weight": Interval(0, None),
        "diversity_penalty": Interval(0, None),
        "learning_rate": Interval(0, None, closed="neither"),
        "margin": Interval(0, None),
        "population": Interval(4, 100_000, "candidates scored per generation"),
        "generations": Interval(0, 10_000, "genetic search rounds"),
        "min_group_size": Interval(2, 10_000_000, "rows a group needs to be judged"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"max_rows": "max_search_rows"}

    def validate(self) -> None:
        for name, d in self.monotone.items():
            if d not in ("increase", "decrease"):
                raise OptionError(f"monotone.{name}", 'one of "increase", "decrease"', d)
        overlap = sorted(set(self.immutable) & (set(self.monotone) | set(self.ranges) | set(self.allowed_levels)))
        if overlap:
            raise OptionError("immutable", "features that no other option (monotone, ranges, allowed_levels) "
                              f"lets change; {overlap[0]!r} is in both, remove it from one of them",
                              list(self.immutable))


@dataclass(frozen=True)
class Change:
    feature: str
    original: str
    counterfactual: str


@dataclass(frozen=True)
class Counterfactual:
    row: int                     # index of the row in the audited data
    rank: int                    # 0 = cheapest of the row
    cost: float
    p_original: float            # model's probability of the target class, before and after
    p_counterfactual: float
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class RowOutcome:
    row: int                     # index of the row in the audited data
    row_number: int              # the row as you count it in the data file (from 1)
    found: bool
    cost: float | None           # cheapest counterfactual's cost; None when none was found
    n_changed: int | None
    reason: str                  # why none was found ("" when found)


@dataclass(frozen=True)
class ExampleCell:
    feature: str
    values: tuple[str, ...]      # original, then each counterfactual
    changed: tuple[bool, ...]    # per counterfactual: does it change this feature?


@dataclass(frozen=True)
class Example:
    row: int
    row_number: int
    p_values: tuple[float, ...]  # probability of the target class: original, then each counterfactual
    costs: tuple[float, ...]
    cells: tuple[ExampleCell, ...]


@dataclass(frozen=True)
class CounterfactualsResult(MethodResult):
    search: str                              # "gradient" or "genetic" (with genetic fallback noted)
    target_class: str
    threshold: float | None
    n_rows: int                              # audited rows
    n_unfavourable: int                      # rows not predicted as the target class
    n_searched: int
    sampled: bool
    seed: int
    immutable: tuple[str, ...]
    monotone: dict[str, str]
    ranges: dict[str, tuple[float, float]]
    allowed_levels: dict[str, tuple[str, ...]]
    excluded_levels: dict[str, tuple[str, ...]]   # levels never offered (rarer than min_level_share)
    mad: dict[str, float]
    mad_fallback: dict[str, str]             # features whose MAD was 0, and the floor used
    reference: str                           # where MADs, ranges and level shares come from
    quality: Quality
    quality_first: Quality | None            # the first counterfactual per row only (k > 1)
    n_fallback: int                          # rows handed from the gradient to the genetic search
    counterfactuals: tuple[Counterfactual, ...]
    rows: tuple[RowOutcome, ...]
    examples: tuple[Example, ...]
    feature_use: dict[str, float]            # share of cheapest counterfactuals changing each feature
    recourse: tuple[AttributeRecourse, ...]
    n_model_rows: int                        # rows scored by the real model during the search
    note: str = ""
    # [data] sensitive_sources among the model features: attribute -> features it is derived from
    sensitive_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sources_immutable: bool = True
    source_changed_share: float | None = None  # share of counterfactuals changing a source


class Counterfactuals(AuditMethod[CounterfactualsConfig, CounterfactualsResult]):
    name = "counterfactuals"
    title = "Counterfactual explanations and recourse"
    requires = frozenset({"predict"})
    tasks = frozenset({"binary", "multiclass"})  # `audit methods` lists these; regression is skipped
    modality_reasons = dict.fromkeys(("image", "sequence"), "recourse needs named, actionable features; for "
                                     "images and sequences see the counterfactual_sensitivity diagnostic")
    Config = CounterfactualsConfig

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: CounterfactualsConfig) -> str | None:
        modality = self.modality_skip(data)
        if modality is not None:
            return modality
        if data.task == "regression":  # before the base's generic "not defined for regression"
            return "recourse counterfactuals on tabular data are defined for classifiers only"
        reason = super().skip_reason(model, data, config)
        if reason is None and "proba" not in model.capabilities:
            return f"needs a model with proba; {model.description} offers {', '.join(sorted(model.capabilities))}"
        if reason is None and data.task == "multiclass" and config.target_class is None:
            return ("multiclass models need the class to reach: set target_class in "
                    "[methods.counterfactuals]")
        return reason

    def run(self, model: ModelAdapter, data: AuditData, config: CounterfactualsConfig,
            ctx: RunContext) -> CounterfactualsResult:
        import torch

        # The search scores many small batches: one intra-op thread is faster than two here
        # and does not fight other processes for the cores (restored afterwards).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(model, data, config, ctx)
        finally:
            torch.set_num_threads(threads)

    def _run(self, model: ModelAdapter, data: AuditData, config: CounterfactualsConfig,
             ctx: RunContext) -> CounterfactualsResult:
        from audit.methods._cf.refine import Scorer

        target, target_name = _target_index(data, model, config)
        names = data.feature_names
        sensitive_features = [s for s in data.spec.sensitive if s in names] if config.sensitive_immutable else []
        sources = {attr: tuple(c for c in cols if c in names) for attr, cols in data.spec.sensitive_sources}
        source_features = [c for cols in sources.values() for c in cols]
        if config.sensitive_sources_immutable:
            _check_sources_unconstrained(sources, config)
        else:
            source_features = []
        immutable = tuple(dict.fromkeys([*config.immutable, *sensitive_features, *source_features]))
        constraints = Constraints(immutable=immutable, monotone=dict(config.monotone),
                                  ranges={k: tuple(v) for k, v in config.ranges.items()},
                                  allowed_levels={k: tuple(v) for k, v in config.allowed_levels.items()},
                                  level_order={k: tuple(v) for k, v in config.level_order.items()})
        ref = ctx.train if ctx.train is not None else data
        space = Space(data.encoding, ref.X.reshape(ref.n_rows, -1), constraints,
                      categorical_cost=config.categorical_cost,
                      min_level_share=config.min_level_share,
                      clip_to_observed=config.clip_to_observed)
        ref_num, ref_cat = space.split(ref.X.reshape(ref.n_rows, -1))
        context_names = [s.name for s in space.cat if not s.mutable]
        space.set_context(_context(space, ref_cat, ref, context_names))

        preds = model.predictions(data)
        labels = np.asarray(preds.labels)
        ref_labels = labels if ref is data else np.asarray(model.predictions(ref).labels)
        if not (labels == target).any() and not (ref_labels == target).any():
            raise InvalidConfigError(
                f"The model never predicts the target class {target_name!r} on the {data.n_rows:,} "
                f"audited rows{'' if ref is data else f' or the {ref.n_rows:,} training rows'}, so no "
                f"realistic counterfactual can reach it. Check target_class in {_WHERE} and the "
                "model's threshold.")
        candidates = np.flatnonzero(labels != target)
        sampled = candidates.size > config.max_search_rows
        rows = np.sort(ctx.rng.choice(candidates, config.max_search_rows, replace=False)) if sampled else candidates
        X = data.X.reshape(data.n_rows, -1)
        num0_all, cat0_all = space.split(X)
        num0, cat0 = num0_all[rows], cat0_all[rows]
        context = _context(space, cat0, data.subset(rows) if rows.size else data, context_names)

        lo, hi = space.numeric_bounds(num0, search=True)
        masks = space.level_masks(cat0, search=True, context=context)
        _check_satisfiable(space, config, num0, cat0, lo, hi, masks, rows.size)
        from audit.methods._cf.genetic import movable_features

        movable = movable_features(space, lo, hi, masks)
        feasible = movable.any(axis=1)

        use_gradient = (config.search == "gradient" or
                        (config.search == "auto" and {"torch", "gradients"} <= model.capabilities))
        if config.search == "gradient":
            model.require("gradients", "The gradient counterfactual search")
        n = rows.size
        stream = int(ctx.rng.integers(2**31 - 1))
        size = _SHARD  # travels with the chunk function to a worker

        def shard(r: range) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], int, int]:
            """Every search round of rows ``r`` (rows are searched independently of each other),
            drawing from the shard's own stream: a chunk of :func:`audit.execution.map`."""
            part = slice(r.start, r.stop)
            scorer = Scorer(model, space, target)
            out = self._rounds(space, model, scorer, target, num0[part], cat0[part], lo[part], hi[part],
                               [m[part] for m in masks], feasible[part], ref_num, config,
                               chunk_rng(stream, r.start // size), use_gradient)
            return (*out, scorer.n_scored)

        from audit import execution

        shards = execution.split_by(n, size)
        parts = execution.map(shard, shards, n_jobs=1, prefer="threads",
                              progress=lambda d, t: ctx.progress(min(n, d * size), n))
        rounds = range(config.n_counterfactuals if parts else 0)
        # round by round, rows in order (as one batch of every row would give them)
        cf_row = [np.concatenate([p[0][k] + r.start for p, r in zip(parts, shards, strict=True)]) for k in rounds]
        cf_num = [np.concatenate([p[1][k] for p in parts]) for k in rounds]
        cf_cat = [np.concatenate([p[2][k] for p in parts]) for k in rounds]
        n_fallback = sum(p[3] for p in parts)
        n_scored = sum(p[4] for p in parts)

        r_idx = np.concatenate(cf_row) if cf_row else np.zeros(0, int)
        c_num = np.concatenate(cf_num) if cf_num else np.zeros((0, len(space.num)))
        c_cat = np.concatenate(cf_cat) if cf_cat else np.zeros((0, len(space.cat)), int)
        p_cf = _p_target(model, space.encode(c_num, c_cat), target) if len(r_idx) else np.zeros(0)
        valid = (model.predict(space.encode(c_num, c_cat)) == target) if len(r_idx) else np.zeros(0, bool)
        p0 = _p_target(model, space.encode(num0, cat0), target) if n else np.zeros(0)
        ref_target = ref_labels == target
        quality = measure(space, num0, cat0, r_idx, c_num, c_cat, valid,
                          ref_num=ref_num[ref_target], ref_cat=ref_cat[ref_target], rng=ctx.rng,
                          sparsity_weight=config.sparsity_weight)
        first = np.concatenate([np.ones(len(cf_row[0]), bool),
                                np.zeros(len(r_idx) - len(cf_row[0]), bool)]) if cf_row else np.zeros(0, bool)
        quality_first = (measure(space, num0, cat0, r_idx[first], c_num[first], c_cat[first], valid[first],
                                 ref_num=ref_num[ref_target], ref_cat=ref_cat[ref_target], rng=ctx.rng,
                                 sparsity_weight=config.sparsity_weight)
                         if config.n_counterfactuals > 1 else None)

        cost = space.cost(c_num, c_cat, num0[r_idx], cat0[r_idx]) if len(r_idx) else np.zeros(0)
        best_cost = np.full(n, np.inf)
        np.minimum.at(best_cost, r_idx[valid], cost[valid])
        has_cf = np.isfinite(best_cost)
        changed_cf = space.changed(c_num, c_cat, num0[r_idx], cat0[r_idx])

        # counterfactual records, ranked by cost within their row
        order = np.lexsort((cost, r_idx))
        records, ranks = [], np.zeros(len(r_idx), int)
        prev, rank = -1, 0
        for i in order:
            if not valid[i]:
                continue
            rank = rank + 1 if r_idx[i] == prev else 0
            prev = r_idx[i]
            ranks[i] = rank
            changes = tuple(Change(space.names[fi], space.value_text(fi, num0[r_idx[i]], cat0[r_idx[i]]),
                                   space.value_text(fi, c_num[i], c_cat[i]))
                            for fi in np.flatnonzero(changed_cf[i]))
            records.append(Counterfactual(int(rows[r_idx[i]]), rank, float(cost[i]), float(p0[r_idx[i]]),
                                          float(p_cf[i]), changes))

        best_i = {}
        for i in range(len(r_idx)):
            if valid[i] and cost[i] == best_cost[r_idx[i]] and r_idx[i] not in best_i:
                best_i[int(r_idx[i])] = i
        outcomes = []
        for j in range(n):
            if has_cf[j]:
                i = best_i[j]
                outcomes.append(RowOutcome(int(rows[j]), data.user_row(int(rows[j])), True, float(best_cost[j]),
                                           int(changed_cf[i].sum()), ""))
            else:
                reason = ("no feature can change under the constraints" if not feasible[j] else
                          "no valid counterfactual found within the constraints and search budget")
                outcomes.append(RowOutcome(int(rows[j]), data.user_row(int(rows[j])), False, None, None, reason))
        use = np.zeros(space.n_features)
        if best_i:
            use = changed_cf[list(best_i.values())].mean(axis=0)

        examples = _examples(space, rows, num0, cat0, r_idx, c_num, c_cat, valid, cost, p0, p_cf,
                             changed_cf, config.n_examples, ctx.rng, data.user_row)

        recourse = []
        for attr in data.spec.sensitive:
            groups = data.sensitive[attr].to_numpy()[rows]
            recourse.append(recourse_by_group(attr, groups, np.where(has_cf, best_cost, np.nan), has_cf,
                                              ctx.rng, n_bootstrap=config.n_bootstrap,
                                              n_permutations=config.n_permutations,
                                              min_group_size=config.min_group_size))
        adjusted = holm(np.array([np.nan if r.p_value is None else r.p_value for r in recourse]))
        recourse = [_with_adjusted(r, None if r.p_value is None else float(p))
                    for r, p in zip(recourse, adjusted, strict=True)]

        excluded = {s.name: tuple(lv for lv, sh in zip(s.levels, s.share, strict=True)
                                  if sh < config.min_level_share and s.allowed[s.levels.index(lv)])
                    for s in space.cat if s.mutable}
        note = ""
        if n == 0:
            note = f"Every audited row is already predicted as {target_name!r}; nothing to search."
        return CounterfactualsResult(
            search=("gradient" if use_gradient else "genetic"), target_class=target_name,
            threshold=model.threshold if data.task == "binary" else None, n_rows=data.n_rows,
            n_unfavourable=int(candidates.size), n_searched=int(n), sampled=bool(sampled), seed=ctx.seed,
            immutable=immutable, monotone=dict(config.monotone),
            ranges={k: (float(v[0]), float(v[1])) for k, v in config.ranges.items()},
            allowed_levels={k: tuple(v) for k, v in config.allowed_levels.items()},
            excluded_levels={k: v for k, v in excluded.items() if v},
            mad={s.name: float(s.mad) for s in space.num},
            mad_fallback={s.name: s.mad_source for s in space.num if s.mad_source != "mad"},
            reference=("the training data" if ctx.train is not None else "the audited rows"),
            quality=quality, quality_first=quality_first, n_fallback=n_fallback,
            counterfactuals=tuple(records), rows=tuple(outcomes), examples=examples,
            feature_use={name: float(u) for name, u in zip(space.names, use, strict=True)},
            recourse=tuple(recourse),
            n_model_rows=n_scored, note=note,
            sensitive_sources={a: c for a, c in sources.items() if c},
            sources_immutable=config.sensitive_sources_immutable,
            source_changed_share=(float(changed_cf[valid][:, [space.names.index(c) for cols in sources.values()
                                                              for c in cols]].any(axis=1).mean())
                                  if valid.any() and any(sources.values()) else None))

    @classmethod
    def _rounds(cls, space: Space, model: ModelAdapter, scorer: Any, target: int, num0: np.ndarray,
                cat0: np.ndarray, lo: np.ndarray, hi: np.ndarray, masks: list[np.ndarray], feasible: np.ndarray,
                ref_num: np.ndarray, config: CounterfactualsConfig, rng: np.random.Generator,
                use_gradient: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], int]:
        """The ``n_counterfactuals`` search rounds of a batch of rows: per round, the rows (batch
        indices) that got a new valid counterfactual and its values; and the rows the gradient
        search handed to the genetic one. Each round penalises the features a row's earlier
        counterfactuals changed (diversity)."""
        n = len(num0)
        weights = np.ones((n, space.n_features))
        cf_row: list[np.ndarray] = []
        cf_num: list[np.ndarray] = []
        cf_cat: list[np.ndarray] = []
        n_fallback = 0
        seen: dict[int, set[tuple[bytes, bytes]]] = {}
        for k in range(config.n_counterfactuals):
            idx = np.flatnonzero(feasible)
            num, cat, found = num0.copy(), cat0.copy(), np.zeros(n, bool)
            if idx.size:
                a, b, f = cls._search(space, model, scorer, num0[idx], cat0[idx], lo[idx], hi[idx],
                                      [m[idx] for m in masks], weights[idx], ref_num, config,
                                      rng, use_gradient, pairs=k == 0)
                num[idx], cat[idx], found[idx] = a, b, f[0]
                n_fallback += int(f[1]) if k == 0 else 0
            # final check by the real model's own decision rule
            ok = found & (model.predict(space.encode(num, cat)) == target)
            changed = space.changed(num, cat, num0, cat0)
            for i in np.flatnonzero(ok):
                key = (num[i].tobytes(), cat[i].tobytes())
                if key in seen.setdefault(int(i), set()):
                    ok[i] = False
                seen[int(i)].add(key)
            cf_row.append(np.flatnonzero(ok))
            cf_num.append(num[ok])
            cf_cat.append(cat[ok])
            weights = weights + config.diversity_penalty * changed * ok[:, None]
        return cf_row, cf_num, cf_cat, n_fallback

    @staticmethod
    def _search(space: Space, model: ModelAdapter, scorer: Any, num0: np.ndarray, cat0: np.ndarray,
                lo: np.ndarray, hi: np.ndarray, masks: list[np.ndarray], weights: np.ndarray,
                ref_num: np.ndarray, config: CounterfactualsConfig, rng: np.random.Generator,
                use_gradient: bool, pairs: bool) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, int]]:
        from audit.methods._cf.pipeline import SearchSettings, find

        # Later (diversity) rounds try single changes only in the exhaustive pass: pairs are the
        # expensive part and the first round has already found the cheapest sparse route.
        settings = SearchSettings(use_gradient=use_gradient, pairs=pairs, steps=config.steps,
                                  learning_rate=config.learning_rate, margin=config.margin,
                                  population=config.population, generations=config.generations,
                                  sparsity_weight=config.sparsity_weight)
        num, cat, found, n_fallback = find(space, model, scorer, num0, cat0, lo=lo, hi=hi,
                                           masks=masks, weights=weights, ref_num=ref_num, rng=rng,
                                           settings=settings)
        return num, cat, (found, n_fallback)

    def plan(self, model: ModelAdapter, data: AuditData, config: CounterfactualsConfig, ctx: RunContext) -> Any:
        """Searched rows × counterfactuals × (population × generations) for the genetic search,
        × steps for the gradient search (torch, not counted at the adapter). Rows searched are
        those not already in the target class, estimated from the outcome column."""
        from audit.core.cost import Plan, Reducible

        n = data.n_rows
        share = 1.0
        # the plan comes before any prediction: the outcome column stands in for the decisions
        estimated = data.task == "binary" and data.y is not None and config.target_class is None and n > 0
        if estimated:
            share = float(np.mean(np.asarray(data.y) != 1))
        rows = min(config.max_search_rows, int(round(n * share)))
        searched = (f"about {rows:,} rows (estimated from the outcome column)" if estimated
                    else f"at most {rows:,} rows")
        gradient = config.search == "gradient" or (config.search == "auto" and "gradients" in model.capabilities)
        if gradient:
            # hardening and refinement score about 2.2 × steps candidates per search through the
            # adapter, and each step costs ~2 ms + 12 µs per row (Adult MLP, 500 rows × 3 × 200
            # steps: 5.4 s at load 2.4 on this project's 2 cores; the former 50 µs priced it 3x over)
            searches = config.n_counterfactuals * config.steps
            return Plan(f"gradient search, {searched} × {config.n_counterfactuals} × {config.steps} steps",
                        model_rows=n + 2.2 * rows * searches, model_calls=1 + 3 * searches // 10,
                        uncounted_rows=3 * rows * searches, fixed_seconds=searches * (2e-3 + 1.2e-5 * rows),
                        reducible={"max_search_rows": Reducible(min(100, rows), "rows", current=rows)})
        evals = rows * config.n_counterfactuals * config.population * (config.generations + 1)
        return Plan(f"genetic search, {searched} × {config.n_counterfactuals} × {config.population} × "
                    f"{config.generations + 1} generations", model_rows=n + evals,
                    # a call per generation and search, and refinement's (about one per search)
                    model_calls=1 + config.n_counterfactuals * (config.generations + 1 + rows),
                    fixed_seconds=evals * 4e-6,  # the search's own work: ~3-4 µs per candidate here
                    reducible={"max_search_rows": Reducible(min(100, rows), "rows", current=rows)})

    def findings(self, result: CounterfactualsResult, config: CounterfactualsConfig) -> list[Finding]:
        q = result.quality
        out: list[Finding] = []
        if result.n_searched == 0:
            return out
        no_cf = sum(not r.found for r in result.rows)
        level = "info" if (q.validity or 0) >= 0.95 else "warning"
        out.append(Finding(level, (
            f"A counterfactual reaching {result.target_class!r} was found for "
            f"{100 * (q.validity or 0):.1f}% of {result.n_searched:,} searched rows"
            + (f" ({no_cf:,} without one)" if no_cf else "")
            + (f"; the cheapest changes {q.sparsity:.1f} feature(s) on average" if q.sparsity is not None else "")
            + ".")))
        for r in result.recourse:
            if r.p_adjusted is not None and r.p_adjusted < config.alpha and r.mean_gap is not None:
                by = {g.group: g for g in r.groups}
                hi_g, lo_g = by[r.highest], by[r.lowest]
                out.append(Finding("warning", (
                    f"Recourse gap for {r.attribute!r}: rows of group {r.highest!r} need a mean "
                    f"counterfactual cost of {hi_g.mean_cost.value:.2f} against {lo_g.mean_cost.value:.2f} for "
                    f"{r.lowest!r} (difference {r.mean_gap:.2f}, permutation p = "
                    f"{_p(r.p_adjusted)}, Holm-adjusted) to reach {result.target_class!r}.")))
            if (r.no_cf_p_value is not None and r.no_cf_p_value < config.alpha and r.no_cf_gap
                    and r.no_cf_gap > 0):
                out.append(Finding("warning", (
                    f"The share of rows with no counterfactual differs between groups of "
                    f"{r.attribute!r} by {100 * r.no_cf_gap:.1f} percentage points (permutation p = "
                    f"{_p(r.no_cf_p_value)}).")))
        if q.violations:
            out.append(Finding("alert", f"{q.violations} counterfactual constraint violation(s) — a bug; "
                                        "please report it."))
        return out

    def figures(self, result: CounterfactualsResult, data: AuditData) -> dict[str, Any]:
        from audit.core.plots import NEGATIVE, new_figure

        figs: dict[str, Any] = {}
        use = {k: v for k, v in result.feature_use.items() if v > 0}
        if use:
            items = sorted(use.items(), key=lambda kv: kv[1])
            fig, ax = new_figure(6.5, 0.35 * len(items) + 1.0)
            ax.barh([k for k, _ in items], [v for _, v in items], color=NEGATIVE)
            ax.set_xlabel("share of cheapest counterfactuals that change the feature")
            ax.set_title("Which features the counterfactuals change")
            figs["feature_use"] = fig
        tested = [r for r in result.recourse if any(g.mean_cost.defined for g in r.groups)]
        if tested:
            rows = [(r.attribute, g) for r in tested for g in r.groups if g.mean_cost.defined]
            fig, ax = new_figure(6.5, 0.32 * len(rows) + 1.0)
            ys = np.arange(len(rows))[::-1]
            costs = [g.mean_cost for _, g in rows]
            means = [e.value for e in costs]
            lo = [e.value - e.lower if e.has_interval else 0.0 for e in costs]
            hi = [e.upper - e.value if e.has_interval else 0.0 for e in costs]
            ax.errorbar(means, ys, xerr=[lo, hi], fmt="o", color=NEGATIVE, capsize=3)
            ax.set_yticks(ys, [f"{a}: {g.group}" for a, g in rows])
            ax.set_xlabel("mean cost of the cheapest counterfactual (95% bootstrap interval)")
            ax.set_title("Recourse cost by group")
            figs["recourse"] = fig
        return figs


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _with_adjusted(r: AttributeRecourse, p: float | None) -> AttributeRecourse:
    from dataclasses import replace

    return replace(r, p_adjusted=p)


def _target_index(data: AuditData, model: ModelAdapter, config: CounterfactualsConfig) -> tuple[int, str]:
    classes = [str(c) for c in (data.classes or data.encoding.classes or ())]
    if config.target_class is None:
        if data.task != "binary":
            raise InvalidConfigError(f"Multiclass models need target_class in {_WHERE}.")
        return 1, classes[1] if len(classes) == 2 else "1"
    if classes and config.target_class in classes:
        return classes.index(config.target_class), config.target_class
    if not classes and config.target_class.isdigit() and int(config.target_class) < model.n_classes:
        return int(config.target_class), config.target_class
    raise InvalidConfigError(
        f"The 'target_class' option of {_WHERE} must be one of the classes "
        f"{', '.join(map(repr, classes)) or '(unknown)'}. Got {config.target_class!r} instead.")


def _p_target(model: ModelAdapter, X: np.ndarray, target: int) -> np.ndarray:
    return model.predict_proba(X)[:, target]


def _context(space: Space, cat: np.ndarray, data: AuditData, names: list[str]) -> dict[str, np.ndarray]:
    """Values of the attributes the plausibility guard conditions on: immutable categorical
    features and sensitive attributes (as text)."""
    out: dict[str, np.ndarray] = {}
    for g, s in enumerate(space.cat):
        if s.name in names:
            out[s.name] = np.asarray(s.levels, dtype=object)[cat[:, g]].astype(str)
    for attr in data.spec.sensitive:
        if attr not in out and attr in data.sensitive:
            out[attr] = data.sensitive[attr].to_numpy().astype(str)
    return out


def _check_sources_unconstrained(sources: dict[str, tuple[str, ...]], config: CounterfactualsConfig) -> None:
    """A source of a sensitive attribute is kept fixed: a constraint on how it may change
    contradicts that, so say which setting to change."""
    for attr, cols in sources.items():
        for col in cols:
            for option in ("monotone", "ranges", "allowed_levels"):
                if col in getattr(config, option):
                    raise InvalidConfigError(
                        f"The feature {col!r} is a source of the sensitive attribute {attr!r} ([data] "
                        f"sensitive_sources), so counterfactuals keep it fixed, but the {option!r} "
                        f"option of {_WHERE} constrains how it may change. Remove it from {option!r}, "
                        "or set sensitive_sources_immutable = false to let it change (a counterfactual "
                        "may then move the row to another group).")


def _check_satisfiable(space: Space, config: CounterfactualsConfig, num0: np.ndarray, cat0: np.ndarray,
                       lo: np.ndarray, hi: np.ndarray, masks: list[np.ndarray], n: int) -> None:
    """A constraint that leaves no searched row any permitted change is an error, not an empty
    result: it is almost always a typo or a unit mistake."""
    if n == 0:
        return
    for name in [*config.ranges, *config.monotone, *config.allowed_levels]:
        kind, j = space.kind[space.names.index(name)]
        if kind == "num":
            can = lo[:, j] <= hi[:, j]
            # a changed value must also differ from the original
            can &= ~((lo[:, j] == hi[:, j]) & (lo[:, j] == num0[:, j]))
            detail = ""
            s = space.num[j]
            if name in config.ranges:
                detail = (f" (permitted range {list(config.ranges[name])}, observed "
                          f"[{s.obs_lo:g}, {s.obs_hi:g}])")
        else:
            can = masks[j].sum(axis=1) > 1
            detail = ""
        if not can.any():
            raise InvalidConfigError(
                f"No searched row can change {name!r} under the constraints of {_WHERE}{detail}: "
                "the constraint cannot be satisfied. Widen it or make the feature immutable.")


def _examples(space: Space, rows: np.ndarray, num0: np.ndarray, cat0: np.ndarray, r_idx: np.ndarray,
              c_num: np.ndarray, c_cat: np.ndarray, valid: np.ndarray, cost: np.ndarray,
              p0: np.ndarray, p_cf: np.ndarray, changed: np.ndarray, k: int,
              rng: np.random.Generator, user_row: Any) -> tuple[Example, ...]:
    with_cf = np.unique(r_idx[valid])
    if k == 0 or with_cf.size == 0:
        return ()
    pick = np.sort(rng.choice(with_cf, min(k, with_cf.size), replace=False))
    out = []
    for j in pick:
        idx = np.flatnonzero((r_idx == j) & valid)
        idx = idx[np.argsort(cost[idx])]
        cells = []
        for fi in range(space.n_features):
            vals = [space.value_text(fi, num0[j], cat0[j])]
            vals += [space.value_text(fi, c_num[i], c_cat[i]) for i in idx]
            cells.append(ExampleCell(space.names[fi], tuple(vals), tuple(bool(changed[i, fi]) for i in idx)))
        out.append(Example(int(rows[j]), user_row(int(rows[j])), (float(p0[j]), *(float(p_cf[i]) for i in idx)),
                           tuple(float(cost[i]) for i in idx), tuple(cells)))
    return tuple(out)


__all__ = ["Counterfactuals", "CounterfactualsConfig", "CounterfactualsResult"]
