"""Permutation of group membership on count tables, and power notes (p-values:
:mod:`audit.stats.permutation`; multiplicity: :mod:`audit.stats.multiplicity`).

Permutation of group membership, done on count tables: shuffling which rows belong to which
group, with every group's size fixed, makes each group's cell counts a multivariate
hypergeometric draw from the pooled table. Drawing those counts directly (a chain of
univariate hypergeometric draws, vectorized over permutations) is exactly equivalent to
shuffling the rows, and costs nothing that depends on the number of rows.

*Conditional* permutation: to test equal TPR without also testing equal base rates, group labels
are shuffled only among rows that share the same true outcome (the strata ``y = 0`` and
``y = 1``), which keeps every group's number of positives fixed. Likewise equal PPV shuffles
within the predicted label. The strata are given as lists of cell indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np



def permute_cells(cells: np.ndarray, strata: Sequence[Sequence[int]], n_permutations: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Per-group cell counts under random permutation of group labels within strata.

    Parameters
    ----------
    cells : array of shape (G, C)
        Observed counts per group and cell.
    strata : list of lists of cell indices
        A partition of the cells; group labels are shuffled among the rows of each stratum,
        so each group's row count within every stratum is kept.
    n_permutations : int
    rng : numpy Generator

    Returns
    -------
    array of shape (n_permutations, G, C)

    Examples
    --------
    >>> cells = np.array([[5, 5], [5, 5]])
    >>> out = permute_cells(cells, [[0, 1]], 3, np.random.default_rng(0))
    >>> out.sum(axis=2).tolist()  # group sizes are kept
    [[10, 10], [10, 10], [10, 10]]
    """
    cells = np.asarray(cells, dtype=np.int64)
    G, C = cells.shape
    B = n_permutations
    out = np.zeros((B, G, C), dtype=np.int64)
    for stratum in strata:
        idx = list(stratum)
        pool = np.broadcast_to(cells[:, idx].sum(axis=0), (B, len(idx))).copy()  # (B, c)
        sizes = cells[:, idx].sum(axis=1)  # rows of each group inside the stratum
        for g in range(G - 1):
            need = np.full(B, sizes[g], dtype=np.int64)
            for j in range(len(idx) - 1):
                rest = pool[:, j + 1:].sum(axis=1)
                draw = _hypergeometric(rng, pool[:, j], rest, need)
                out[:, g, idx[j]] = draw
                pool[:, j] -= draw
                need -= draw
            out[:, g, idx[-1]] = need
            pool[:, -1] -= need
        out[:, G - 1, idx] = pool  # the last group takes what is left
    return out


def _hypergeometric(rng: np.random.Generator, good: np.ndarray, bad: np.ndarray,
                    sample: np.ndarray) -> np.ndarray:
    """Vectorized hypergeometric draws that tolerate empty urns and zero-size samples."""
    good = np.asarray(good, dtype=np.int64)
    bad = np.asarray(bad, dtype=np.int64)
    sample = np.asarray(sample, dtype=np.int64)
    out = np.zeros_like(sample)
    ok = (sample > 0) & (good > 0)
    all_good = ok & (bad == 0)
    out[all_good] = sample[all_good]
    ok &= bad > 0
    if ok.any():
        out[ok] = rng.hypergeometric(good[ok], bad[ok], sample[ok])
    return out


def min_detectable_difference(p: float, n_group: float, n_other: float, *, alpha: float,
                              power: float = 0.8) -> float:
    """Smallest difference in a proportion between a group and the rest that a two-sided
    test at level ``alpha`` detects with probability ``power`` (normal approximation).

    MDD = (z_{1-α/2} + z_{power}) · sqrt(p (1 − p) (1/n_group + 1/n_other)), with ``p`` the
    pooled proportion. NaN (not available) when either count is zero, and when ``p`` is 0 or 1:
    the approximation's variance is then 0 and the formula would give 0, as if any gap at all
    were detected, while a gap from a rate of 0 or 1 is what the data cannot yet show.

    Examples
    --------
    >>> round(min_detectable_difference(0.5, 100, 100, alpha=0.05), 3)
    0.198
    >>> min_detectable_difference(1.0, 300, 40, alpha=0.05)
    nan
    """
    from scipy.stats import norm

    if n_group <= 0 or n_other <= 0 or not (0 < p < 1):
        return float("nan")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return float(z * np.sqrt(max(p * (1 - p), 0.0) * (1 / n_group + 1 / n_other)))


def min_detectable_mean_difference(sd: float, n_group: float, n_other: float, *, alpha: float,
                                   power: float = 0.8) -> float:
    """As :func:`min_detectable_difference` for a mean with standard deviation ``sd`` (NaN, not
    0, when ``sd`` is 0: every value equal)."""
    from scipy.stats import norm

    if n_group <= 0 or n_other <= 0 or not (np.isfinite(sd) and sd > 0):
        return float("nan")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return float(z * sd * np.sqrt(1 / n_group + 1 / n_other))


__all__ = [
    "min_detectable_difference",
    "min_detectable_mean_difference",
    "permute_cells",
]
