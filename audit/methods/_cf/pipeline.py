"""One search round for a batch of rows: search, fallback, sparser supports, sparsity, shrink.

1. Search every row (gradient for differentiable models, genetic otherwise); rows the gradient
   search leaves without a counterfactual go to the genetic search.
2. Sparsity pass: revert every change the flip does not need.
3. Smallest supports: every one- and two-change counterfactual of the batched exhaustive search
   (:mod:`audit.methods._cf.supports`) replaces the search's result when its cost plus
   ``sparsity_weight`` per changed feature is lower; rows still changing more than three
   features get a three-change search around their counterfactual (every pair of its changes
   plus one further move), judged the same way.
4. Shrink pass: move each numeric change back towards the original while the flip holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.methods._cf.genetic import genetic_search
from audit.methods._cf.gradient import gradient_search
from audit.methods._cf.refine import Scorer, shrink, sparsify
from audit.methods._cf.supports import small_supports, third_change
from audit.methods._cf.space import Space


@dataclass(frozen=True)
class SearchSettings:
    use_gradient: bool
    steps: int = 200
    learning_rate: float = 0.05
    margin: float = 0.5
    population: int = 60
    generations: int = 12
    sparsity_weight: float = 1.0
    small_supports: bool = True
    pairs: bool = True


def find(space: Space, model: ModelAdapter, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray, *,
         lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray], weights: np.ndarray,
         ref_num: np.ndarray, rng: np.random.Generator,
         settings: SearchSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Return (num, cat, found, n_fallback) for every row."""
    masks = list(masks)
    num, cat, found, n_fallback = _search(space, model, scorer, num0, cat0, lo, hi, masks, weights,
                                          ref_num, rng, settings)
    num, cat = sparsify(space, scorer, num0, cat0, num, cat, found)
    if settings.small_supports:
        a, b, pcost = small_supports(space, scorer, num0, cat0, lo=lo, hi=hi, masks=masks,
                                     weights=weights, sparsity_weight=settings.sparsity_weight,
                                     pairs=settings.pairs)
        old = np.where(found, _penalised(space, num, cat, num0, cat0, weights, settings), np.inf)
        better = pcost < old
        num[better], cat[better] = a[better], b[better]
        found = found | np.isfinite(pcost)
        # rows still changing more than three features: try every pair of their changes plus
        # one further move
        many = np.flatnonzero(found & (space.changed(num, cat, num0, cat0).sum(axis=1) > 3))
        if many.size:
            a, b, pcost = third_change(space, scorer, num0, cat0, num, cat, many, lo=lo, hi=hi,
                                       masks=masks, weights=weights,
                                       sparsity_weight=settings.sparsity_weight)
            old = np.where(found, _penalised(space, num, cat, num0, cat0, weights, settings), np.inf)
            better = pcost < old
            num[better], cat[better] = a[better], b[better]
    num, cat = shrink(space, scorer, num0, cat0, num, cat, found, lo, hi, masks)
    return num, cat, found, n_fallback


def _penalised(space: Space, num: np.ndarray, cat: np.ndarray, num0: np.ndarray, cat0: np.ndarray,
               weights: np.ndarray, settings: SearchSettings) -> np.ndarray:
    n_changed = space.changed(num, cat, num0, cat0).sum(axis=1)
    return space.cost(num, cat, num0, cat0, weights) + settings.sparsity_weight * n_changed


def _search(space: Space, model: ModelAdapter, scorer: Scorer, num0: np.ndarray, cat0: np.ndarray,
            lo: np.ndarray, hi: np.ndarray, masks: Sequence[np.ndarray], weights: np.ndarray,
            ref_num: np.ndarray, rng: np.random.Generator, settings: SearchSettings,
            fallback: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    def genetic(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return genetic_search(space, scorer, num0[idx], cat0[idx], lo=lo[idx], hi=hi[idx],
                              masks=[m[idx] for m in masks], weights=weights[idx], ref_num=ref_num,
                              rng=rng, population=settings.population,
                              generations=settings.generations)

    if not settings.use_gradient:
        num, cat, found = genetic(np.arange(len(num0)))
        return num, cat, found, 0
    num, cat, found = gradient_search(space, model, scorer, num0, cat0, lo=lo, hi=hi, masks=masks,
                                      weights=weights, steps=settings.steps,
                                      learning_rate=settings.learning_rate, margin=settings.margin)
    missing = np.flatnonzero(~found)
    if fallback and missing.size:
        a, b, f = genetic(missing)
        num[missing], cat[missing], found[missing] = a, b, f
    return num, cat, found, int(missing.size) if fallback else 0
