"""Sufficient statistics of group fairness: per-group count tables and score histograms.

For a fixed threshold every fairness quantity of a classifier is a function of each group's
confusion counts (outcome × decision), and AUC, calibration and threshold curves are functions
of each group's score histogram by outcome. A :class:`GroupTable` holds exactly that, so its
memory is groups × cells × bins, whatever the number of rows: the in-memory audit builds it from
arrays (:meth:`GroupTable.from_rows`), the streamed audit batch by batch
(:mod:`audit.core.stream`), and the fairness method computes everything from it, so both agree.

Resolution. Scores fall into ``n_bins`` equal-width bins of [0, 1] (bin ``floor(s · n_bins)``,
the last one closed); each bin keeps its rows' count by outcome and decision and the sum of
their scores. Then

- the binned calibration error and reliability curve (``calibration_bins`` equal-width bins, a
  divisor of ``n_bins``) are exact: they need only per-bin counts, outcome counts and score sums;
- threshold curves are exact at the bin edges;
- AUC counts every positive–negative pair inside one bin as a tie (½): the histogram AUC is
  within :func:`histogram_auc`'s ``bound`` = ½ · (pairs sharing a bin) / (all pairs) of the
  exact AUC, a bound computed from the histogram itself.

Resampling from the table: a stratified bootstrap of rows is a multinomial draw of each group's
cells (:func:`audit.stats.bootstrap.bootstrap_cells`); a stratified sample without replacement
is a multivariate hypergeometric draw of them (:func:`sample_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audit.errors import CapabilityError
from audit.stats.bootstrap import auc_from_cells

#: Default score bins of the histograms (resolution 0.001 on the probability scale).
DEFAULT_SCORE_BINS = 1000
#: Exact score sums: each score in [0, 1] is cut into this many integer limbs of ``LIMB_BITS``
#: bits (104 bits after the point: every double at or above 2^-51 exactly, smaller ones to 2^-104).
SUM_LIMBS, LIMB_BITS = 4, 26
#: Most rows one :func:`sum_limbs` call may add: a bin's limb sum stays below 2^53, where a
#: float64 ``bincount`` is still exact.
SUM_ROWS = 1 << 26


def score_bin(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Each score's histogram bin: ``floor(s · n_bins)``, 1.0 in the last bin.

    Examples
    --------
    >>> score_bin(np.array([0.0, 0.0999, 0.1, 1.0]), 10).tolist()
    [0, 0, 1, 9]
    """
    s = np.asarray(scores, dtype=float)
    if not np.isfinite(s).all():  # readers refuse them with the rows; NaN would land in bin 0
        raise ValueError("a score to bin is NaN or infinite")
    return np.clip((s * n_bins).astype(np.int64), 0, n_bins - 1)


def score_limbs(scores: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] as ``(SUM_LIMBS, n)`` integer limbs (held in float64):
    ``s = sum_j limb_j * 2^(-LIMB_BITS * (j + 1))``, exact for every score at or above 2^-51
    (smaller ones cut at 2^-104). Each step is exact: a scaling by a power of two, a floor, a
    fraction."""
    s = np.asarray(scores, dtype=float)
    out = np.empty((SUM_LIMBS, s.size))
    scale = float(1 << LIMB_BITS)
    for j in range(SUM_LIMBS):
        s = s * scale
        out[j] = np.floor(s)
        s = s - out[j]
    return out


def sum_limbs(index: np.ndarray, limbs: np.ndarray, size: int) -> np.ndarray:
    """Exact sums of scores (their :func:`score_limbs`) by ``index`` (``0 <= index < size``):
    ``(size, SUM_LIMBS)`` int64.

    Integer limbs add exactly in any order, so the sums of any split of the rows (batches,
    files, Ray Data blocks) add up to the same bits, unlike float sums; :func:`limb_sums_to_float`
    rounds them once. A cell's limbs overflow only past 2^37 rows (1.4e11).

    Examples
    --------
    >>> s = np.full(10, 0.1)
    >>> float(limb_sums_to_float(sum_limbs(np.zeros(10, dtype=np.int64), score_limbs(s), 1))[0]), float(np.cumsum(s)[-1])
    (1.0, 0.9999999999999999)
    """
    if limbs.shape[1] > SUM_ROWS:
        raise ValueError(f"at most {SUM_ROWS} rows per exact score sum")
    return np.stack([np.bincount(index, weights=limb, minlength=size) for limb in limbs],
                    axis=1).astype(np.int64)


def limb_sums_to_float(parts: np.ndarray) -> np.ndarray:
    """The float64 nearest to each exact limb sum of :func:`sum_limbs` (shape ``(..., SUM_LIMBS)``)."""
    parts = np.asarray(parts, dtype=np.int64)
    flat = parts.reshape(-1, SUM_LIMBS)
    out = np.zeros(len(flat))
    unit = 1 << (LIMB_BITS * SUM_LIMBS)
    for i in np.flatnonzero(flat.any(axis=1)).tolist():
        total = 0
        for limb in flat[i].tolist():
            total = (total << LIMB_BITS) + limb
        out[i] = total / unit  # int / int is correctly rounded
    return out.reshape(parts.shape[:-1])


@dataclass(frozen=True)
class GroupTable:
    """The sufficient statistics of one attribute (or intersection) for the fairness method.

    levels : the groups' labels, sorted (as :func:`audit.stats.bootstrap.group_codes` sorts).
    cells : ``(G, K·K)`` confusion counts, cell ``K · outcome + decision``.
    hist : ``(G, 2, 2, n_bins)`` row counts by outcome, decision and score bin (binary with
        scores), else None.
    score_sum : ``(G, n_bins)`` the sum of the scores in each bin, else None.

    Examples
    --------
    >>> t = GroupTable.from_rows(("a", "b"), np.array([0, 0, 1]), np.array([0, 1, 1]),
    ...                          np.array([0, 1, 0]), np.array([0.2, 0.7, 0.4]), n_bins=10)
    >>> t.cells.tolist(), t.counts.tolist()
    ([[1, 0, 0, 1], [0, 0, 1, 0]], [2, 1])
    """

    levels: tuple[str, ...]
    cells: np.ndarray
    hist: np.ndarray | None = None
    score_sum: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def counts(self) -> np.ndarray:
        return self.cells.sum(axis=1)

    @property
    def n_bins(self) -> int:
        return 0 if self.hist is None else int(self.hist.shape[-1])

    @classmethod
    def from_rows(cls, levels: Sequence[str], codes: np.ndarray, y: np.ndarray, yhat: np.ndarray,
                  scores: np.ndarray | None = None, *, n_classes: int = 2,
                  n_bins: int = DEFAULT_SCORE_BINS) -> GroupTable:
        """The table of rows with group ``codes`` (indices into ``levels``), outcomes ``y`` and
        decisions ``yhat`` (class indices) and, for a binary classifier, ``scores``."""
        G, K = len(levels), n_classes
        codes = np.asarray(codes, dtype=np.int64)
        cell = np.asarray(y, dtype=np.int64) * K + np.asarray(yhat, dtype=np.int64)
        if scores is None:
            cells = np.bincount(codes * K * K + cell, minlength=G * K * K).reshape(G, K * K)
            return cls(tuple(str(v) for v in levels), cells)
        scores = np.asarray(scores, dtype=float)
        b = score_bin(scores, n_bins)
        key = (codes * 4 + cell) * n_bins + b
        hist = np.bincount(key, minlength=G * 4 * n_bins).reshape(G, 2, 2, n_bins)
        ssum = np.bincount(codes * n_bins + b, weights=scores,
                           minlength=G * n_bins).reshape(G, n_bins)
        return cls.from_histogram(levels, hist, ssum)

    @classmethod
    def from_histogram(cls, levels: Sequence[str], hist: np.ndarray, score_sum: np.ndarray) -> GroupTable:
        """The table of a binary classifier's histogram ``(G, 2, 2, n_bins)`` and score sums."""
        hist = np.asarray(hist, dtype=np.int64)
        cells = hist.sum(axis=-1).reshape(hist.shape[0], 4)
        return cls(tuple(str(v) for v in levels), cells, hist, np.asarray(score_sum, dtype=float))

    def scored(self) -> tuple[np.ndarray, np.ndarray]:
        """The score histogram and score sums; a table of decisions alone has none, and what
        needs scores (AUC, calibration, threshold curves, the what-if) cannot be computed."""
        if self.hist is None or self.score_sum is None:
            raise CapabilityError("the predictions are decisions without scores, so AUC, calibration, "
                                  "threshold curves and the what-if cannot be computed from them")
        return self.hist, self.score_sum

    def by_outcome(self, g: int) -> np.ndarray:
        """Group ``g``'s histogram as ``(n_bins, 2)`` counts of negatives and positives, the
        layout of :func:`audit.stats.bootstrap.auc_from_cells`."""
        return self.scored()[0][g].sum(axis=1).T


def histogram_auc(by_outcome: np.ndarray) -> tuple[float, float]:
    """AUC of a histogram ``(n_bins, 2)`` of negatives / positives and its resolution bound.

    Pairs in one bin count ½ (as ties), so the exact AUC of the rows lies within ``bound`` =
    ½ · Σ_k neg_k · pos_k / (N · P) of the returned value. NaN without both outcomes.

    Examples
    --------
    >>> auc, bound = histogram_auc(np.array([[3, 0], [1, 1], [0, 2]]))
    >>> round(auc, 4), round(bound, 4)
    (0.9583, 0.0417)
    """
    c = np.asarray(by_outcome, dtype=float)
    den = c[:, 0].sum() * c[:, 1].sum()
    if den <= 0:
        return float("nan"), float("nan")
    return float(auc_from_cells(c)), float(0.5 * np.sum(c[:, 0] * c[:, 1]) / den)


def calibration_bins(table: GroupTable, g: int, n_cal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group ``g``'s rows, positives and score sums in ``n_cal`` equal-width calibration bins
    (the histogram's bins merged; ``n_cal`` divides ``n_bins``)."""
    hist, score_sum = table.scored()
    per = table.n_bins // n_cal
    count = hist[g].sum(axis=(0, 1)).reshape(n_cal, per).sum(axis=1)
    pos = hist[g, 1].sum(axis=0).reshape(n_cal, per).sum(axis=1)
    ssum = score_sum[g].reshape(n_cal, per).sum(axis=1)
    return count, pos, ssum


def threshold_rates(table: GroupTable, g: int, step: int) -> dict[str, np.ndarray]:
    """Selection rate, TPR and FPR of group ``g`` when the threshold is each ``step``-th bin
    edge (a row is selected when its score is at least the threshold): exact at the edges.
    NaN where the denominator is empty."""
    by_y = table.scored()[0][g].sum(axis=1)  # (2, n_bins)
    edges = np.arange(0, table.n_bins + 1, step)
    at_or_above = np.concatenate([np.cumsum(by_y[:, ::-1], axis=1)[:, ::-1],
                                  np.zeros((2, 1), dtype=np.int64)], axis=1)[:, edges]

    def rate(x: np.ndarray, n: float) -> np.ndarray:
        return x / n if n > 0 else np.full(x.shape, np.nan)

    return {"selection_rate": rate(at_or_above.sum(axis=0), by_y.sum()),
            "tpr": rate(at_or_above[1], by_y[1].sum()), "fpr": rate(at_or_above[0], by_y[0].sum())}


def sample_rows(table: GroupTable, groups: Sequence[int], take: Sequence[int],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows drawn without replacement, ``take[i]`` of group ``groups[i]`` (a multivariate
    hypergeometric draw of its outcome × decision × score-bin cells; all its rows when ``take``
    is its size). Returns the rows' group index, outcome, decision and score bin."""
    hist = table.scored()[0]
    out = []
    for g, k in zip(groups, take, strict=True):
        colors = hist[g].reshape(-1)
        drawn = colors if k >= colors.sum() else rng.multivariate_hypergeometric(colors, int(k))
        cell = np.repeat(np.arange(colors.size), drawn)
        y, rest = np.divmod(cell, 2 * table.n_bins)
        d, b = np.divmod(rest, table.n_bins)
        out.append((np.full(cell.size, g), y, d, b))
    return tuple(np.concatenate([o[i] for o in out]) for i in range(4))  # type: ignore[return-value]


__all__ = [
    "DEFAULT_SCORE_BINS",
    "GroupTable",
    "calibration_bins",
    "histogram_auc",
    "limb_sums_to_float",
    "sample_rows",
    "score_bin",
    "score_limbs",
    "sum_limbs",
    "threshold_rates",
]
