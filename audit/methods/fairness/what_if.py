"""The threshold what-if: fairlearn's ThresholdOptimizer per constraint (information only)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from audit.methods.fairness.formulas import _f, binary_disparities
from audit.methods.fairness.results import WhatIf
from audit.stats.bootstrap import confusion_cells, group_codes, rates_from_cells


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


def what_if_sample(codes: np.ndarray, max_rows: int, rng: np.random.Generator,
                   min_per_group: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Rows for the what-if (all of them up to ``max_rows``) and each row's weight.

    Above ``max_rows``: a stratified random sample, each group in proportion to its size but
    with at least ``min_per_group`` rows (or all of its rows), so that no judged group drops
    out; the weight ``n_g / k_g`` of a sampled row restores the groups' shares in an overall
    mean (accuracy)."""
    n = codes.size
    if n <= max_rows:
        return np.arange(n), np.ones(n)
    G = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=G)
    take = np.minimum(sizes, np.maximum(np.ceil(max_rows * sizes / n), min_per_group)).astype(np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    rows = np.concatenate([rng.choice(order[bounds[g]:bounds[g + 1]], take[g], replace=False)
                           for g in range(G) if take[g]])
    rows.sort()
    return rows, (sizes / np.maximum(take, 1))[codes[rows]]


def _what_if(scores: np.ndarray, y: np.ndarray, yhat: np.ndarray, values: np.ndarray,
             keep: np.ndarray, ref: int | None, *, max_rows: int = 20_000,
             rng: np.random.Generator | None = None) -> tuple[WhatIf, ...]:
    """fairlearn ThresholdOptimizer per constraint, fitted and evaluated on the audited rows
    (above ``max_rows`` on a stratified sample of them, :func:`what_if_sample`: its cost grows
    with the rows and it is information only)."""
    try:
        from fairlearn.postprocessing import ThresholdOptimizer
    except ImportError:  # pragma: no cover - fairlearn is a dependency
        return ()
    # Scores rounded to 0.001: the optimizer's cost grows with the number of distinct scores.
    s, t, p, v = np.round(scores[keep], 3), y[keep], yhat[keep], values[keep]
    levels, codes = group_codes(v)
    rows, w = what_if_sample(codes, max_rows, rng if rng is not None else np.random.default_rng(0))
    s, t, p, v, codes = s[rows], t[rows], p[rows], v[rows], codes[rows]
    n_total = int(keep.sum())
    finite = bool(np.all(np.isfinite(scores[keep])))  # fairlearn loops without end on NaN scores (17 GB in 15 min)
    G = len(levels)
    before_rates = rates_from_cells(confusion_cells(t, p, codes, G))

    def acc(pred: np.ndarray) -> float | None:
        return _f(np.average(pred == t, weights=w))
    out = []
    for constraint, disp in (("demographic_parity", "demographic_parity_difference"),
                             ("equalized_odds", "equalized_odds_difference")):
        before = binary_disparities(before_rates, None)[disp]
        if not finite:
            out.append(WhatIf(constraint, acc(p), None, disp, _f(before), None, {},
                              "not run: the scores contain NaN or infinite values", rows.size, n_total))
            continue
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
                              rows.size, n_total))
            continue
        after_rates = rates_from_cells(confusion_cells(t, new, codes, G))
        after = binary_disparities(after_rates, None)[disp]
        out.append(WhatIf(constraint, acc(p), acc(new), disp, _f(before),
                          _f(after), {str(lv): _f(after_rates["selection_rate"][g])
                                      for g, lv in enumerate(levels)}, None, rows.size, n_total))
    return tuple(out)
