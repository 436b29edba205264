"""What drives the two models' decisions: their global importances side by side, per
attribution method that ran on both, and how well the rankings agree.

The importances are read the way the agreement method reads them
(:func:`audit.methods.agreement.collect_sources`: mean |attribution| per raw feature). Where
both models' results carry per-row attributions of the same rows, the rank correlations get a
paired bootstrap interval over those rows (the same resampled rows for both models); where only
a global vector exists (Olden's connection weights), the correlation has no interval and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from audit.compare.results import Estimate, ImportanceComparison, MovedFeature
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
                        features: Sequence[str], *, n_boot: int, confidence: float,
                        rng: np.random.Generator) -> tuple[dict[str, ImportanceComparison], dict[str, str]]:
    """Per attribution method that ran on both models: values, correlations, moved features.

    ``champion`` and ``challenger`` map method names to their results (``ctx.earlier`` form);
    ``features`` are the raw features both models use. Returns the comparisons and, per method
    that is not compared, why."""
    from audit.methods.agreement import collect_sources

    feats = list(features)
    src_a, miss_a = collect_sources(champion, feats)
    src_b, miss_b = collect_sources(challenger, feats)
    by_b = {s.key: s for s in src_b}
    out: dict[str, ImportanceComparison] = {}
    missing: dict[str, str] = {}
    for key, why in {**miss_a, **miss_b}.items():
        who = "the champion" if key in miss_a else "the challenger"
        missing[key] = f"not compared: for {who}, {why}"
    for a in src_a:
        b = by_b.get(a.key)
        if b is None:
            missing.setdefault(a.key, "not compared: ran for the champion only")
            continue
        if len(feats) < 3:
            missing[a.key] = "not compared: a rank correlation needs at least three shared features"
            continue
        rho, tau = _correlations(a.importance, b.importance)
        paired = None
        lo_r = hi_r = lo_t = hi_t = None
        why = GLOBAL_ONLY
        if a.per_row is not None and b.per_row is not None and n_boot:
            common, ia, ib = np.intersect1d(a.rows, b.rows, return_indices=True)
            if common.size >= 2:
                va, vb = np.abs(a.per_row[ia]), np.abs(b.per_row[ib])
                paired = int(common.size)
                rs, ts = [], []
                for _ in range(n_boot):
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
        ra, rb = _ranks(a.importance), _ranks(b.importance)
        order = sorted(range(len(feats)), key=lambda j: (-abs(int(ra[j]) - int(rb[j])), feats[j]))
        moved = tuple(MovedFeature(feats[j], int(ra[j]), int(rb[j])) for j in order[:MOVED] if ra[j] != rb[j])
        out[a.key] = ImportanceComparison(
            a.key, a.origin, tuple(feats), tuple(float(x) for x in a.importance),
            tuple(float(x) for x in b.importance),
            Estimate(_f(rho), _f(lo_r), _f(hi_r), confidence, method_r, why if _f(lo_r) is None else None),
            Estimate(_f(tau), _f(lo_t), _f(hi_t), confidence, method_t, why if _f(lo_t) is None else None),
            moved, paired)
    for key in by_b:
        if key not in out and key not in missing:
            missing[key] = "not compared: ran for the challenger only"
    return out, missing


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


__all__ = ["compare_importances"]
