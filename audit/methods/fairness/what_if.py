"""The threshold what-if: fairlearn's ThresholdOptimizer per constraint (information only)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from audit.methods.fairness.formulas import _f, binary_disparities
from audit.methods.fairness.results import WhatIf
from audit.stats.bootstrap import confusion_cells, rates_from_cells
from audit.stats.counts import GroupTable, sample_rows


def _score_model() -> Any:
    """A prefit scikit-learn 'estimator' whose prediction is its single input column."""
    from sklearn.base import BaseEstimator

    class ScoreModel(BaseEstimator):
        def fit(self, X: Any, y: Any = None) -> Any:
            self.fitted_ = True
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(X, dtype=float)[:, 0]

        def __sklearn_is_fitted__(self) -> bool:
            return True

    return ScoreModel().fit(None)


def what_if_sample(sizes: np.ndarray, max_rows: int, min_per_group: int = 500) -> np.ndarray:
    """How many rows of each group the what-if uses: all of them up to ``max_rows`` in all.

    Above ``max_rows``: a stratified sample, each group in proportion to its size but with at
    least ``min_per_group`` rows (or all of its rows), so that no judged group drops out; the
    weight ``n_g / k_g`` of a sampled row restores the groups' shares in an overall mean
    (accuracy)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    if n <= max_rows:
        return sizes
    return np.minimum(sizes, np.maximum(np.ceil(max_rows * sizes / n), min_per_group)).astype(np.int64)


def _what_if(table: GroupTable, judged: np.ndarray, *, max_rows: int = 20_000,
             rng: np.random.Generator | None = None) -> tuple[WhatIf, ...]:
    """fairlearn ThresholdOptimizer per constraint, fitted and evaluated on the judged groups' rows
    (above ``max_rows`` on a stratified sample of them, :func:`what_if_sample`: its cost grows with
    the rows and it is information only). The rows are drawn from the count table (a
    multivariate hypergeometric draw per group), each with its score bin's midpoint as its score:
    the optimizer's cost grows with the number of distinct scores."""
    try:
        from fairlearn.postprocessing import ThresholdOptimizer
    except ImportError:  # pragma: no cover - fairlearn is a dependency
        return ()
    groups = np.flatnonzero(judged)
    sizes = table.counts[groups]
    take = what_if_sample(sizes, max_rows)
    g, t, p, b = sample_rows(table, groups, take, rng if rng is not None else np.random.default_rng(0))
    codes = np.searchsorted(groups, g)
    levels = np.asarray([table.levels[i] for i in groups], dtype=object)
    s, v, w = (b + 0.5) / table.n_bins, levels[codes], (sizes / np.maximum(take, 1))[codes]
    n_total = int(sizes.sum())
    G = len(levels)
    before_rates = rates_from_cells(confusion_cells(t, p, codes, G))

    def acc(pred: np.ndarray) -> float | None:
        return _f(np.average(pred == t, weights=w))
    out = []
    for constraint, disp in (("demographic_parity", "demographic_parity_difference"),
                             ("equalized_odds", "equalized_odds_difference")):
        before = binary_disparities(before_rates, None)[disp]
        try:
            opt = ThresholdOptimizer(estimator=_score_model(), constraints=constraint,
                                     predict_method="predict", prefit=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt.fit(s[:, None], t, sensitive_features=v)
                new = np.asarray(opt.predict(s[:, None], sensitive_features=v, random_state=0)).astype(np.int64)
        except Exception as exc:  # fairlearn raises ValueError etc. on degenerate groups
            out.append(WhatIf(constraint, acc(p), None, disp, _f(before), None, {},
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                              int(s.size), n_total))
            continue
        after_rates = rates_from_cells(confusion_cells(t, new, codes, G))
        after = binary_disparities(after_rates, None)[disp]
        out.append(WhatIf(constraint, acc(p), acc(new), disp, _f(before),
                          _f(after), {str(lv): _f(after_rates["selection_rate"][g])
                                      for g, lv in enumerate(levels)}, None, int(s.size), n_total))
    return tuple(out)
