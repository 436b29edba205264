"""Small helpers shared by the attribution methods (shap, lime, saliency, agreement).

Everything here is plain numpy and takes the method's ``rng``, so results are reproducible
from the run's seed:

- :func:`sample_rows` picks the rows to explain (uniformly, without replacement, sorted);
- :func:`sample_background` draws the reference rows that "removed" features take their values
  from, clipping to the rows available and saying so;
- :func:`check_finite` refuses rows with missing or infinite inputs, with their count;
- :func:`bootstrap_mean_abs` gives the global importance (mean |attribution| per raw feature)
  with percentile bootstrap intervals, rows resampled, fully vectorised.

Per-encoded-column attributions are mapped to raw features with
``AuditData.encoding.aggregate(values, "sum")``: summing the one-hot columns of a feature is exact
for additive attributions (SHAP, DeepLIFT, integrated gradients), and it must be done *per row,
before* taking absolute values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.errors import DataValidationError, InvalidConfigError


def check_finite(X: np.ndarray, method: str) -> None:
    """Refuse rows whose encoded input is missing or infinite, naming their count.

    The dataset layer already rejects missing values when it encodes a file; this guards the
    Python API path, where a caller may hand over arrays directly.
    """
    flat = np.asarray(X).reshape(len(X), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise DataValidationError(
            f"{method} cannot explain rows with missing or infinite inputs: {int(bad.sum())} row(s) "
            f"(first at data rows {first}). Impute or drop them before the audit.")


def sample_rows(n: int, n_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Indices of the rows to explain, and whether they are a sample.

    All rows when ``n <= n_rows``; otherwise ``n_rows`` rows drawn uniformly without replacement
    with ``rng`` and returned sorted.

    Examples
    --------
    >>> rows, sampled = sample_rows(10, 3, np.random.default_rng(0))
    >>> len(rows), sampled
    (3, True)
    """
    if n_rows < 1:
        raise InvalidConfigError(f"The number of rows to explain must be at least 1. Got {n_rows} instead.")
    if n <= n_rows:
        return np.arange(n), False
    return np.sort(rng.choice(n, n_rows, replace=False)), True


def sample_background(X: np.ndarray, size: int, rng: np.random.Generator, *,
                      kind: str = "random", source: str = "the audited data"
                      ) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Reference rows for explainers that need a background distribution.

    Parameters
    ----------
    X : array (n, ...)
        Candidate rows (encoded model input).
    size : int
        Rows (``kind="random"``) or k-means centres (``kind="kmeans"``) wanted.
    kind : {"random", "kmeans"}
        ``"random"``: real rows, uniform without replacement (every row a valid input).
        ``"kmeans"``: weighted k-means centres of the flattened rows (fewer rows carry more of
        the distribution, but one-hot columns become fractions: not a valid input row).
    source : str
        Where the rows come from, for the note.

    Returns
    -------
    background : array (m, ...)
    weights : array (m,) or None
        Cluster sizes for ``"kmeans"`` (None for random rows, which weigh equally).
    note : str or None
        Set when the requested size was larger than the rows available and was clipped.
    """
    if size < 1:
        raise InvalidConfigError(f"The background size must be at least 1. Got {size} instead.")
    n = len(X)
    note = None
    if size > n:
        note = (f"The background was asked for {size:,} rows but {source} has only {n:,}; "
                f"all {n:,} rows were used.")
        size = n
    if kind == "random":
        idx = np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)
        return np.ascontiguousarray(X[idx]), None, note
    if kind == "kmeans":
        from sklearn.cluster import KMeans

        flat = X.reshape(n, -1).astype(np.float64)
        km = KMeans(n_clusters=size, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit(flat)
        weights = np.bincount(km.labels_, minlength=size).astype(float)
        centres = km.cluster_centers_.astype(X.dtype).reshape((size, *X.shape[1:]))
        return centres, weights / weights.sum(), note
    raise InvalidConfigError(f"The background kind must be \"random\" or \"kmeans\". Got {kind!r} instead.")


@dataclass(frozen=True)
class BootstrapImportance:
    """Mean |attribution| per feature with a percentile bootstrap interval (rows resampled)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_bootstrap: int
    confidence: float


def bootstrap_mean_abs(values: np.ndarray, *, n_bootstrap: int = 1000, confidence: float = 0.95,
                       rng: np.random.Generator) -> BootstrapImportance:
    """Mean |value| per column of ``values`` (rows x features) with bootstrap intervals.

    Each replicate resamples the rows with replacement; drawing the replicates' row counts from a
    multinomial turns all replicates into one matrix product (``counts @ |values| / n``), so
    memory stays at ``n_bootstrap x n`` instead of ``n_bootstrap x n x features``. The interval
    is the percentile interval; it covers the variability from *which rows were explained*, not
    from the explainer's own randomness or the choice of background.

    Examples
    --------
    >>> v = np.array([[1.0, 0.0], [-1.0, 0.1], [1.0, -0.1]])
    >>> b = bootstrap_mean_abs(v, n_bootstrap=200, rng=np.random.default_rng(0))
    >>> b.mean.round(3).tolist(), bool(b.low[0] == b.high[0] == 1.0)
    ([1.0, 0.067], True)
    """
    a = np.abs(np.asarray(values, dtype=float))
    n = a.shape[0]
    if n == 0:
        raise InvalidConfigError("Global importance needs at least one explained row.")
    mean = a.mean(axis=0)
    if n_bootstrap < 1 or n == 1:
        return BootstrapImportance(mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan),
                                   0, confidence)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(float)
    reps = counts @ a / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail], axis=0)
    return BootstrapImportance(mean, low, high, n_bootstrap, confidence)


def top_features(importance: dict[str, float], k: int) -> list[str]:
    """The ``k`` names with the largest values (ties broken by name, for stable reports)."""
    return [name for name, _ in sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


__all__ = ["BootstrapImportance", "bootstrap_mean_abs", "check_finite", "sample_background", "sample_rows", "top_features"]
