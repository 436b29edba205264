"""Score-type intervals and tests for proportions and for between-group disparities of them.

Every rate of a binary classifier (selection rate, TPR, FPR, PPV, accuracy, ...) is a proportion
``x / n`` of one group's confusion counts, so its uncertainty is known in closed form and does not
depend on resampling. Percentile bootstrap intervals collapse to a point when a small group's
rate is 0 or 1 in the sample (bootstrap SD 0); the intervals here cannot:

- **per group**: the Clopper–Pearson ("exact") interval (the default; coverage is at least
  nominal for every n and p by construction), or Wilson's score interval / Jeffreys' interval;
- **a difference** ``p_a − p_b`` of two groups: Newcombe's hybrid score interval (MOVER on the
  groups' Wilson limits; Newcombe 1998, method 10);
- **a ratio** ``p_a / p_b``: MOVER-R (Donner & Zou 2012) on the same Wilson limits, i.e. the set
  of ``r`` for which the MOVER interval of ``p_a − r p_b`` contains 0 (found by bisection, so a
  zero rate gives a finite lower or an infinite upper limit, never a collapse);
- **a disparity** over several groups (max − min, min / max, largest gap to a reference group,
  and equalized odds = the same over TPR *and* FPR): the range that the pairwise intervals
  allow, with a Bonferroni correction over the ``m`` pairs × components on the bound away from
  parity, so that *each* bound misses with probability at most ``(1 − confidence) / 2``
  (see :func:`disparity_score_interval`). Its test (``p_adjusted``) is the inversion of the
  same intervals, Bonferroni over the pairs: ``p_adjusted < α`` with probability at most ``α``
  when the rates are equal, and the interval at level ``1 − α`` excludes "no gap" exactly when
  ``p_adjusted < α/2`` (each of its bounds errs at most ``α/2``).

Simulated coverage over 2–10 groups of 30–5,000 rows and rates 0.01–0.99 is in
``benchmarks/fairness_coverage.py`` (and checked by ``tests/test_stats_bootstrap.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np

#: Per-group interval methods; the fairness report uses :data:`GROUP_METHOD`.
GROUP_METHODS = ("clopper-pearson", "wilson", "jeffreys")
GROUP_METHOD = "clopper-pearson"
#: Limits of each group's rate inside the MOVER intervals of differences and ratios.
MOVER_LIMITS = "clopper-pearson"


def _z(confidence: float | np.ndarray) -> np.ndarray:
    from scipy.stats import norm

    return norm.ppf(1 - (1 - np.asarray(confidence, dtype=float)) / 2)


def wilson_interval(x: np.ndarray, n: np.ndarray, confidence: float | np.ndarray = 0.95,
                    *, z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``x / n`` (two-sided); NaN where ``n == 0``.

    Examples
    --------
    >>> lo, hi = wilson_interval(np.array([0]), np.array([30]))
    >>> float(lo[0]), round(float(hi[0]), 4)
    (0.0, 0.1135)
    """
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    z = _z(confidence) if z is None else np.asarray(z, dtype=float)
    with np.errstate(all="ignore"):
        p = x / n
        z2 = z * z
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
        lo = np.where(x <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
        hi = np.where(x >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    bad = ~(n > 0)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _limits(x: np.ndarray, n: np.ndarray, z: np.ndarray, limits: str) -> tuple[np.ndarray, np.ndarray]:
    """Each proportion's own two-sided limits at normal quantile ``z`` (tail ``1 − Φ(z)``)."""
    if limits == "wilson":
        return wilson_interval(x, n, z=z)
    from scipy.special import betaincinv
    from scipy.stats import norm

    x, n, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, n, z)))
    shape = x.shape
    # many cells share (x, n, z): invert the beta function once per distinct triple
    zs, z_code = np.unique(z.ravel(), return_inverse=True)
    big = int(np.nanmax(n, initial=0)) + 1
    xi = np.nan_to_num(x.ravel()).astype(np.int64)
    ni = np.nan_to_num(n.ravel()).astype(np.int64)
    key, inverse = np.unique((z_code.reshape(-1) * big + ni) * big + xi, return_inverse=True)
    xu = (key % big).astype(float)
    nu = ((key // big) % big).astype(float)
    tail = norm.sf(zs[key // (big * big)])
    with np.errstate(all="ignore"):
        lo = np.where(xu <= 0, 0.0, betaincinv(np.maximum(xu, 1e-300), nu - xu + 1, tail))
        hi = np.where(xu >= nu, 1.0, betaincinv(xu + 1, np.maximum(nu - xu, 1e-300), 1 - tail))
    bad = ~(nu > 0)
    lo, hi = np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)
    inverse = inverse.reshape(-1)
    return lo[inverse].reshape(shape), hi[inverse].reshape(shape)


def group_interval(x: np.ndarray, n: np.ndarray, confidence: float = 0.95,
                   method: str = GROUP_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided interval of each proportion ``x / n``: Clopper–Pearson, Wilson or Jeffreys.

    Clopper–Pearson: beta quantiles ``B(α/2; x, n − x + 1)`` and ``B(1 − α/2; x + 1, n − x)``
    (0 and 1 at the boundaries). Jeffreys: ``B(α/2; x + ½, n − x + ½)`` etc. NaN where n == 0.

    Examples
    --------
    >>> lo, hi = group_interval(np.array([0, 30]), np.array([30, 30]))
    >>> float(lo[0]), round(float(hi[0]), 4), round(float(lo[1]), 4), float(hi[1])
    (0.0, 0.1157, 0.8843, 1.0)
    """
    from scipy.stats import beta

    if method == "wilson":
        return wilson_interval(x, n, confidence)
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    a = (1 - confidence) / 2
    shift = 0.5 if method == "jeffreys" else 0.0
    if method not in GROUP_METHODS:
        raise ValueError(f"unknown interval method {method!r}")
    with np.errstate(all="ignore"):
        if method == "jeffreys":
            lo = beta.ppf(a, x + shift, n - x + shift)
            hi = beta.ppf(1 - a, x + shift, n - x + shift)
        else:
            lo = beta.ppf(a, x, n - x + 1)
            hi = beta.ppf(1 - a, x + 1, n - x)
        lo = np.where(x <= 0, 0.0, lo)
        hi = np.where(x >= n, 1.0, hi)
    bad = ~(n > 0)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _mover(pa: np.ndarray, la: np.ndarray, ua: np.ndarray, pb: np.ndarray, lb: np.ndarray,
           ub: np.ndarray, r: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """MOVER interval of ``p_a − r p_b`` from each proportion's own limits."""
    d = pa - r * pb
    lo = d - np.sqrt((pa - la) ** 2 + (r * (ub - pb)) ** 2)
    hi = d + np.sqrt((ua - pa) ** 2 + (r * (pb - lb)) ** 2)
    return lo, hi


def newcombe_difference(xa: np.ndarray, na: np.ndarray, xb: np.ndarray, nb: np.ndarray,
                        confidence: float | np.ndarray = 0.95, *, limits: str = "wilson"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of ``x_a/n_a − x_b/n_b`` (MOVER-Wilson).

    Examples
    --------
    >>> lo, hi = newcombe_difference(np.array([56]), np.array([70]), np.array([48]), np.array([80]))
    >>> round(float(lo[0]), 4), round(float(hi[0]), 4)  # Newcombe (1998), example (a)
    (0.0524, 0.3339)
    """
    z = _z(confidence)
    la, ua = _limits(xa, na, z, limits)
    lb, ub = _limits(xb, nb, z, limits)
    with np.errstate(all="ignore"):
        return _mover(np.asarray(xa) / na, la, ua, np.asarray(xb) / nb, lb, ub)


def mover_ratio(xa: np.ndarray, na: np.ndarray, xb: np.ndarray, nb: np.ndarray,
                confidence: float | np.ndarray = 0.95, *, iterations: int = 42,
                limits: str = "wilson") -> tuple[np.ndarray, np.ndarray]:
    """MOVER-R interval of ``p_a / p_b``: ``{r ≥ 0 : MOVER interval of p_a − r p_b ∋ 0}``.

    The MOVER lower limit of ``p_a − r p_b`` decreases in ``r`` and so does the upper one, so
    the set is an interval ``[r_lo, r_hi]``, found by bisection on ``r / (1 + r)``; ``r_hi`` is
    ``inf`` when ``p_b``'s lower limit is 0.

    Examples
    --------
    >>> lo, hi = mover_ratio(np.array([30]), np.array([100]), np.array([60]), np.array([100]))
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.355, 0.696)
    """
    z = _z(confidence)
    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (xa, na, xb, nb))
    la, ua = _limits(xa, na, z, limits)
    lb, ub = _limits(xb, nb, z, limits)
    with np.errstate(all="ignore"):
        pa, pb = xa / na, xb / nb
    shape = np.broadcast(pa, pb, la).shape

    def root(which: int) -> np.ndarray:
        lo_t, hi_t = np.zeros(shape), np.ones(shape)
        for _ in range(iterations):
            t = (lo_t + hi_t) / 2
            with np.errstate(all="ignore"):
                r = t / (1 - t)
                val = _mover(pa, la, ua, pb, lb, ub, r)[which]
            above = val > 0  # the root lies at larger r
            lo_t = np.where(above, t, lo_t)
            hi_t = np.where(above, hi_t, t)
        t = np.where(hi_t >= 1.0, 1.0, (lo_t + hi_t) / 2)
        with np.errstate(all="ignore"):
            return np.where(t >= 1.0, np.inf, t / (1 - t))

    r_lo = np.where(la <= 0, 0.0, root(0))
    r_hi = np.where(lb <= 0, np.inf, root(1))
    bad = ~((na > 0) & (nb > 0))
    return np.where(bad, np.nan, r_lo), np.where(bad, np.nan, r_hi)


def newcombe_pvalue(xa: np.ndarray, na: np.ndarray, xb: np.ndarray, nb: np.ndarray,
                    *, iterations: int = 40, limits: str = "wilson") -> np.ndarray:
    """Two-sided p-value of ``p_a = p_b`` by inverting Newcombe's interval: the largest
    ``α`` at which the ``1 − α`` interval of the difference still contains 0. NaN where a
    group is empty.

    Examples
    --------
    >>> p = newcombe_pvalue(np.array([56, 10]), np.array([70, 100]), np.array([48, 10]), np.array([80, 100]))
    >>> bool(p[0] < 0.01), float(p[1])
    (True, 1.0)
    """
    from scipy.stats import norm

    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (xa, na, xb, nb))
    shape = np.broadcast(xa, na, xb, nb).shape
    lo_z, hi_z = np.zeros(shape), np.full(shape, 12.0)
    for _ in range(iterations):
        z = (lo_z + hi_z) / 2
        la, ua = _limits(xa, na, z, limits)
        lb, ub = _limits(xb, nb, z, limits)
        with np.errstate(all="ignore"):
            lo, hi = _mover(xa / na, la, ua, xb / nb, lb, ub)
        excludes = (lo > 0) | (hi < 0)
        lo_z = np.where(excludes, z, lo_z)
        hi_z = np.where(excludes, hi_z, z)
    p = 2 * norm.sf(lo_z)
    bad = ~((na > 0) & (nb > 0))
    return np.where(bad, np.nan, p)


def pairs_of(ok: np.ndarray, ref: int | None) -> list[tuple[int, int]]:
    """The compared pairs among groups where ``ok``: all pairs, or each group vs ``ref``."""
    idx = np.flatnonzero(ok)
    if ref is None:
        return [(int(a), int(b)) for k, a in enumerate(idx) for b in idx[k + 1:]]
    return [(int(g), int(ref)) for g in idx if g != ref] if ok[ref] else []


# Array cells (pairs x leading replications) per block of pairs: memory stays bounded (a few
# dozen float arrays of this size, ~50 MiB) however many groups there are; 2,500 groups are
# 3.1 million pairs.
_PAIR_BLOCK_CELLS = 1 << 17


def _pair_blocks(ok: np.ndarray, ref: int | None, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs of :func:`pairs_of` as ``(a, b)`` index arrays, at most about ``size`` at a time."""
    idx = np.flatnonzero(ok)
    if ref is not None:
        others = idx[idx != ref] if ok[ref] else idx[:0]
        for start in range(0, len(others), size):
            block = others[start:start + size]
            yield block, np.full(len(block), ref)
        return
    a_parts: list[np.ndarray] = []
    b_parts: list[np.ndarray] = []
    count = 0
    for k in range(len(idx) - 1):
        rest = idx[k + 1:]
        a_parts.append(np.full(len(rest), idx[k]))
        b_parts.append(rest)
        count += len(rest)
        if count >= size:
            yield np.concatenate(a_parts), np.concatenate(b_parts)
            a_parts, b_parts, count = [], [], 0
    if count:
        yield np.concatenate(a_parts), np.concatenate(b_parts)


def disparity_score_interval(components: Sequence[tuple[np.ndarray, np.ndarray]], kind: str,
                             ref: int | None, confidence: float, *, limits: str | None = None,
                             test: bool = True, counted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous score interval and test of a between-group disparity of proportions.

    ``components``: one ``(x, n)`` pair of count arrays of shape (..., G) per rate compared (one
    for most disparities, TPR and FPR for equalized odds); a group with ``n == 0`` in a component
    is left out of it (its rate is undefined). ``kind``: "difference" (max − min, or
    max |g − ref|), "ratio" (min / max, or the smallest min(g/ref, ref/g)) or "impact" (the
    smallest g / ref; as "ratio" without a reference). With several components the statistic is
    the largest difference (smallest ratio) over them. Leading axes are independent data sets
    (the simulations use them for replications).

    With ``α = 1 − confidence`` and ``m`` compared pairs (× components), each bound of the
    interval misses the truth with probability at most ``α/2`` (so the interval covers with
    probability at least ``1 − α``):

    - the bound *away from parity* (the lower bound of a difference, the upper bound of a ratio)
      is the most extreme value that the pairwise intervals at level ``1 − α/(2m)`` allow: it
      lies beyond the truth only if one of the ``2m`` one-sided pairwise statements fails (a
      gap is folded, |d|, so each pair can fail on either side), each with probability
      ``α/(4m)``, Bonferroni;
    - the bound *towards parity* needs only the pair that attains the true disparity to hold,
      so it comes from the pairwise intervals at level ``1 − α``.

    ``counted`` (bool, broadcastable to (..., G)): groups that belong to the disparity even where
    a component's denominator is empty. Such a group's rate is *unknown* (anywhere in [0, 1]),
    not absent: the true disparity over all counted groups may then be as large as the rates
    allow, so the bound towards parity becomes the trivial one (upper bound 1 of a difference,
    lower bound 0 of a ratio) and no bound is claimed that the missing group could break. The
    bound away from parity stays valid (a missing group can only enlarge the disparity).

    The disparate-impact ratio against a reference (the smallest ``g / ref``) is signed: it lies
    above 1 when every group is selected more often than the reference, so *both* its bounds can
    be the one away from parity and both take the Bonferroni level ``1 − α/(2m)``. Its interval
    excludes 1 from below when some group's upper limit is below 1, and from above when every
    group's lower limit is above 1; ``p_adjusted`` is ``min(1, m · min(p_below, p_above))``
    with ``p_below`` the smallest pairwise p of a group below the reference and ``p_above`` the
    largest pairwise p when every group lies above it (else 1), below ``α/2`` exactly when that
    interval excludes 1. Under equal rates it is below ``α`` with probability at most
    ``α/2 + α/(2m) ≤ α``. It is never below the family's ``m · p_raw``.

    Returns ``(lower, upper, p_adjusted, p_raw, m)``, each of shape (...): ``p_raw`` the smallest
    unadjusted pairwise p-value (two-sided; inverted Newcombe interval: a score test of equal
    proportions) and ``p_adjusted = min(1, m · p_raw)`` (Bonferroni over the m two-sided pairwise
    tests: below ``α`` with probability at most ``α`` when the rates are equal; one comparison is
    not corrected). The ``1 − α`` interval excludes "no gap" (0, or 1 for ratios) exactly when
    ``p_adjusted < α/2``: each of its bounds errs at most ``α/2``, so a gap can be significant
    at ``α`` while the interval still reaches "no gap", never the other way round. NaN where no
    pair is defined, and for the p-values when ``test`` is False (the simulations need only the
    interval).

    Examples
    --------
    >>> lo, hi, p, p_raw, m = disparity_score_interval(
    ...     [(np.array([60, 30]), np.array([100, 100]))], "difference", None, 0.95)
    >>> round(float(lo), 3), round(float(hi), 3), int(m), bool(p < 0.001)
    (0.137, 0.43, 1, True)
    """
    limits = limits or MOVER_LIMITS
    comps = [(np.asarray(x, dtype=float), np.asarray(n, dtype=float)) for x, n in components]
    # only groups defined somewhere (in any component and any leading index) can form a pair
    present = np.zeros(comps[0][0].shape[-1], dtype=bool)
    for _, n in comps:
        present |= (n > 0).reshape(-1, n.shape[-1]).any(axis=0)
    lead = np.broadcast_shapes(*(x.shape for x, _ in comps))[:-1]
    nan = np.full(lead, np.nan)
    if present.sum() < 2 or (ref is not None and not present[ref]):
        return nan, nan, nan, nan, np.zeros(lead, dtype=int)
    # m, the number of defined pairs, counted without listing them
    m = np.zeros(lead, dtype=int)
    for _, n in comps:
        defined = np.broadcast_to(n > 0, (*lead, n.shape[-1]))
        k = defined.sum(axis=-1)
        m = m + (k * (k - 1) // 2 if ref is None else defined[..., ref] * (k - defined[..., ref]))
    far = (1 - (1 - confidence) / (2 * np.maximum(m, 1)))[..., None]
    # the pairs in blocks, each reduced at once: memory is O(block), not O(groups²)
    size = max(1, _PAIR_BLOCK_CELLS // max(1, int(np.prod(lead))))
    lower, upper, p_raw = nan, nan, nan
    reduce = np.fmax if kind == "difference" else np.fmin
    for a, b in _pair_blocks(present, ref, size):
        lo_b, hi_b = _pair_block(comps, a, b, kind, ref, confidence, far, limits)
        lower, upper = reduce(lower, lo_b), reduce(upper, hi_b)
    if test:
        p_raw = _smallest_pair_pvalue(comps, present, ref, size, lead, limits)
    none = m == 0
    # a counted group with an empty denominator in some component: its rate is unknown
    unknown = np.zeros(lead, dtype=bool)
    if counted is not None:
        for _, n in comps:
            unknown |= (np.broadcast_to(counted, n.shape) & ~(n > 0)).any(axis=-1)
    if kind == "difference":
        upper = np.where(unknown, 1.0, upper)
    else:
        lower = np.where(unknown, 0.0, lower)
    lower, upper = np.where(none, np.nan, lower), np.where(none, np.nan, upper)
    p_raw = np.where(none, np.nan, p_raw)
    p_adj = np.minimum(1.0, m * p_raw)
    if kind == "impact" and ref is not None and test:
        p_adj = np.where(none, np.nan, _impact_pvalue(comps[0], present, ref, m, unknown, limits))
    return lower, upper, p_adj, p_raw, m[()]


def _impact_pvalue(comp: tuple[np.ndarray, np.ndarray], present: np.ndarray, ref: int, m: np.ndarray,
                   unknown: np.ndarray, limits: str) -> np.ndarray:
    """The adjusted p of the disparate-impact ratio against a reference: the inversion of its
    signed interval (see :func:`disparity_score_interval`); only the k − 1 pairs with the
    reference, so it needs no blocks."""
    x, n = comp
    a = np.flatnonzero(present)
    a = a[a != ref]
    b = np.full(len(a), ref)
    ok = (n[..., a] > 0) & (n[..., b] > 0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_pair = np.where(ok, newcombe_pvalue(x[..., a], n[..., a], x[..., b], n[..., b], limits=limits), np.nan)
        above = x[..., a] / n[..., a] > x[..., b] / n[..., b]
        p_below = np.nanmin(np.where(ok & ~above, p_pair, np.nan), axis=-1)
        all_above = ((ok & above).sum(axis=-1) == m) & ~unknown
        p_above = np.where(all_above, np.nanmax(np.where(ok, p_pair, np.nan), axis=-1), 1.0)
        return np.minimum(1.0, m * np.fmin(p_below, p_above))


def _smallest_pair_pvalue(comps: list[tuple[np.ndarray, np.ndarray]], present: np.ndarray,
                          ref: int | None, size: int, lead: tuple[int, ...], limits: str,
                          iterations: int = 40) -> np.ndarray:
    """The smallest :func:`newcombe_pvalue` over the defined pairs (and components), the same
    number: one bisection on ``z`` for all pairs at once ("does some pair's interval exclude
    0?" holds exactly below the largest pairwise root, so it visits the same midpoints as that
    pair's own bisection). Each step computes every group's limits once, not every pair's."""
    from scipy.stats import norm

    lo_z, hi_z = np.zeros(lead), np.full(lead, 12.0)
    for _ in range(iterations):
        z = (lo_z + hi_z) / 2
        excludes = np.zeros(lead, dtype=bool)
        bounds = [_limits(x, n, z[..., None], limits) for x, n in comps]
        for a, b in _pair_blocks(present, ref, size):
            for (x, n), (lo, hi) in zip(comps, bounds, strict=True):
                ok = (n[..., a] > 0) & (n[..., b] > 0)
                with np.errstate(all="ignore"):
                    d_lo, d_hi = _mover(x[..., a] / n[..., a], lo[..., a], hi[..., a],
                                        x[..., b] / n[..., b], lo[..., b], hi[..., b])
                excludes |= (ok & ((d_lo > 0) | (d_hi < 0))).any(axis=-1)
        lo_z = np.where(excludes, z, lo_z)
        hi_z = np.where(excludes, hi_z, z)
    return 2 * norm.sf(lo_z)


def _pair_block(comps: list[tuple[np.ndarray, np.ndarray]], a: np.ndarray, b: np.ndarray, kind: str,
                ref: int | None, confidence: float, far: np.ndarray, limits: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """One block of pairs of :func:`disparity_score_interval`, reduced over its pairs."""
    los, his = [], []
    for x, n in comps:
        ok = (n[..., a] > 0) & (n[..., b] > 0)
        xa, na, xb, nb = x[..., a], n[..., a], x[..., b], n[..., b]
        if kind == "difference":
            lo_far, hi_far = newcombe_difference(xa, na, xb, nb, far, limits=limits)
            lo_near, hi_near = newcombe_difference(xa, na, xb, nb, confidence, limits=limits)
            lo_s = np.maximum(0.0, np.maximum(lo_far, -hi_far))      # |d| at least
            hi_s = np.minimum(1.0, np.maximum(hi_near, -lo_near))    # |d| at most
        else:
            bounds = []
            for level in (far, confidence):
                r_lo, r_hi = mover_ratio(xa, na, xb, nb, level, limits=limits)
                if kind == "impact" and ref is not None:
                    bounds.append((r_lo, r_hi))
                    continue
                # q = min(ρ, 1/ρ) for ρ in [r_lo, r_hi]
                with np.errstate(divide="ignore", invalid="ignore"):
                    inv_of_hi = np.where(np.isinf(r_hi), 0.0, 1 / r_hi)
                    inv_of_lo = np.where(r_lo > 0, 1 / r_lo, np.inf)
                q_lo = np.where(r_hi < 1, r_lo, np.where(r_lo > 1, inv_of_hi, np.minimum(r_lo, inv_of_hi)))
                q_hi = np.where(r_hi < 1, r_hi, np.where(r_lo > 1, inv_of_lo, 1.0))
                bounds.append((q_lo, q_hi))
            lo_s, hi_s = bounds[1][0], bounds[0][1]  # towards parity: near level; away: far
            if kind == "impact" and ref is not None:
                # signed: its lower bound is away from parity too when the groups lie above the
                # reference, so it takes the Bonferroni level as well
                lo_s = bounds[0][0]
        los.append(np.where(ok, lo_s, np.nan))
        his.append(np.where(ok, hi_s, np.nan))
    lo_all, hi_all = np.concatenate(los, axis=-1), np.concatenate(his, axis=-1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reduce = np.nanmax if kind == "difference" else np.nanmin
        return reduce(lo_all, axis=-1), reduce(hi_all, axis=-1)


__all__ = [
    "GROUP_METHOD",
    "GROUP_METHODS",
    "disparity_score_interval",
    "group_interval",
    "mover_ratio",
    "newcombe_difference",
    "newcombe_pvalue",
    "pairs_of",
    "wilson_interval",
]
