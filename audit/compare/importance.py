"""What drives the two models' decisions: their global importances side by side, per
attribution method that ran on both, and how well the rankings agree.

The importances are read from the results' :class:`audit.core.results.Attributions` (their
global importance per raw feature), as every cross-method feature reads them. Where both
models' attributions carry per-row values of the same rows, the rank correlations get a paired
bootstrap interval over those rows (the same resampled rows for both models; importance =
mean |value|); where only a global vector exists (Olden's connection weights), the correlation
has no interval and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from audit.compare.results import ImportanceComparison, MovedFeature
from audit.core.results import Estimate
from audit.stats.bootstrap import percentile_interval

SPEARMAN = "Spearman rank correlation of the global importances"
KENDALL = "Kendall's tau-b of the global importances"
PAIRED_ROWS = "; interval: paired percentile bootstrap over the rows explained for both models"
GLOBAL_ONLY = ("only a global vector exists for this method (no per-row attributions), so the "
               "correlation has no interval")
MOVED = 5  # features listed as having moved most in rank


def _ranks(v: np.ndarray) -> np.ndarray:
    """Rank 1 = most important (ties share the better rank)."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(v, dtype=float), method="min").astype(int)


def _correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        return float(spearmanr(a, b).statistic), float(kendalltau(a, b).statistic)


def compare_importances(champion: Mapping[str, Any], challenger: Mapping[str, Any],
                        features: Sequence[str], *, n_bootstrap: int, confidence: float,
                        rng: np.random.Generator) -> tuple[dict[str, ImportanceComparison], dict[str, str]]:
    """Per attribution (method and variant) that ran on both models: values, correlations,
    the features that moved most.

    ``champion`` and ``challenger`` map method names to their results; ``features`` are the
    raw features both models read. Returns the comparisons and, per attribution not compared,
    why."""
    from audit.core.results import collect

    feats = list(features)
    by = [{a.key: a for a in collect(r) if a.grouping == "feature"} for r in (champion, challenger)]
    out: dict[str, ImportanceComparison] = {}
    missing: dict[str, str] = {}
    for key in [*by[0], *(k for k in by[1] if k not in by[0])]:
        a, b = by[0].get(key), by[1].get(key)
        if a is None or b is None:
            missing[key] = f"not compared: ran for the {'champion' if b is None else 'challenger'} only"
            continue
        if len(feats) < 3 or not all(f in a.importance and f in b.importance for f in feats):
            missing[key] = "not compared: a rank correlation needs at least three features both models read"
            continue
        ia, ib = a.importance_vector(feats), b.importance_vector(feats)
        rho, tau = _correlations(ia, ib)
        paired = None
        lo_r = hi_r = lo_t = hi_t = None
        why = GLOBAL_ONLY
        pa, pb = a.reordered(feats) if a.values is not None else None, b.reordered(feats) if b.values is not None else None
        if pa is not None and pb is not None and a.rows is not None and b.rows is not None and n_bootstrap:
            common, ja, jb = np.intersect1d(np.asarray(a.rows), np.asarray(b.rows), return_indices=True)
            if common.size >= 2:
                va, vb = np.abs(np.asarray(pa.values, float)[ja]), np.abs(np.asarray(pb.values, float)[jb])
                paired = int(common.size)
                rs, ts = [], []
                for _ in range(n_bootstrap):
                    idx = rng.integers(0, common.size, common.size)
                    r, t = _correlations(va[idx].mean(axis=0), vb[idx].mean(axis=0))
                    rs.append(r)
                    ts.append(t)
                (lo_r,), (hi_r,) = percentile_interval(np.array(rs)[:, None], confidence)
                (lo_t,), (hi_t,) = percentile_interval(np.array(ts)[:, None], confidence)
                why = None
            else:
                why = "the two models' explained rows do not overlap, so the correlation has no interval"
        method_r = SPEARMAN + (PAIRED_ROWS if why is None else "")
        method_t = KENDALL + (PAIRED_ROWS if why is None else "")
        ra, rb = _ranks(ia), _ranks(ib)
        order = sorted(range(len(feats)), key=lambda j: (-abs(int(ra[j]) - int(rb[j])), feats[j]))
        moved = tuple(MovedFeature(feats[j], int(ra[j]), int(rb[j])) for j in order[:MOVED] if ra[j] != rb[j])
        level = confidence if _f(lo_r) is not None else None
        out[key] = ImportanceComparison(
            key, a.origin, tuple(feats), tuple(float(x) for x in ia), tuple(float(x) for x in ib),
            Estimate(_f(rho), _f(lo_r), _f(hi_r), level, method_r, why if level is None else None),
            Estimate(_f(tau), _f(lo_t), _f(hi_t), level, method_t, why if level is None else None),
            moved, paired)
    return out, missing


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


__all__ = ["compare_importances"]
