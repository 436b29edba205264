"""Simulated error rates of confidence intervals for the ROC AUC (the Mann–Whitney parameter).

Candidates (all computed from the K × 2 table of negatives / positives per distinct score, so
they apply to exact rows and to score histograms alike; ties count one half):

- ``vd-beta`` (the one audit-suite uses, :func:`audit.stats.auc.auc_interval`): the
  Clopper–Pearson interval of Â as a proportion of k = min(m, n) rows, from van Dantzig's
  bound var(Â) ≤ θ(1 − θ)/k;
- ``vd-wilson``: Wilson's score interval from the same bound;
- ``wald``: Â ± z·√V, V DeLong's variance (Sen's structural components);
- ``logit``: the same on the logit scale (Pepe; Pohar Perme & Manevski 2018 recommend it);
  degenerate ([1, 1]) when every positive outranks every negative, as usually implemented;
- ``newcombe``: Newcombe's (2006) method 5, the score-type interval from Hanley–McNeil's
  variance with both class sizes replaced by (m + n)/2: every θ with
  (Â − θ)² ≤ z²·V_N(θ), V_N(θ) = θ(1 − θ)/(mn)·[1 + (N* − 1)((1 − θ)/(2 − θ) + θ/(1 + θ))];
- ``wald+newcombe``, ``logit+newcombe``: the envelope of the two intervals (each bound the
  farther one from Â), i.e. the θ within z standard errors of Â under the larger of DeLong's
  estimated variance and Newcombe's model variance at θ;
- ``boot`` / ``boot-t`` (``--bootstrap``, a smaller grid): the percentile bootstrap re-centred
  on Â that the performance method used, and the studentised bootstrap (DeLong SE), from B
  multinomial draws of the table's cells.

Data sets have m positives (the rarer class) and n negatives, fixed; scores are

- ``binormal``: N(0, 1) negatives, N(μ, 1) positives, AUC = Φ(μ/√2);
- ``pos_wide`` / ``neg_wide``: the positives' (negatives') SD is 2, AUC = Φ(μ/√5);
- ``ties``: binormal scores cut into 7 levels at −1, 0, …, 4 (labels-like scores; the true AUC
  with ties counted one half is computed exactly from the levels' probabilities);
- ``perfect``: U(0, 1) negatives, U(1, 2) positives (AUC 1, every sample separated).

For each cell it prints, at 95 %, ``lo>θ`` = P(lower bound above the truth) (a ``[gate]`` ``min``
rule at the true value passes falsely), ``hi<θ`` = P(upper bound below it) (``max`` passes
falsely), each nominally at most 2.5 %, the two-sided coverage at 95 % and 90 %, and the mean
width; flagged (``!``) where a one-sided rate exceeds its nominal value by more than three Monte
Carlo standard errors.

Usage: python benchmarks/auc_interval.py [--reps 2000] [--bootstrap] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine  # noqa: E402

from audit.stats.auc import auc_interval  # noqa: E402
from audit.stats.proportions import wilson_interval  # noqa: E402

AUCS = (0.5, 0.75, 0.9, 0.97, 0.995)
MINORITY = (5, 10, 30, 100)
PREVALENCE = (0.02, 0.1, 0.5)
SHAPES = ("binormal", "pos_wide", "neg_wide", "ties")
CUTS = np.arange(-1.0, 5.0)  # the ties shape's level boundaries



def auc_moments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The AUC and DeLong's estimate of its variance from ``counts`` (..., K, 2).

    DeLong, DeLong & Clarke-Pearson (1988): each positive's placement is the share of negatives
    below it (ties ½), each negative's the share of positives above it; the variance is
    ``S10 / m + S01 / n``, the placements' sample variances over the class sizes. NaN AUC
    without both outcomes; NaN variance with fewer than two rows of a class."""
    c = np.asarray(counts, dtype=float)
    neg, pos = c[..., 0], c[..., 1]
    n, m = neg.sum(-1), pos.sum(-1)
    with np.errstate(all="ignore"):
        v10 = ((np.cumsum(neg, -1) - neg) + 0.5 * neg) / n[..., None]        # each positive's
        v01 = ((m[..., None] - np.cumsum(pos, -1)) + 0.5 * pos) / m[..., None]  # each negative's
        a = np.sum(pos * v10, -1) / m
        s10 = np.sum(pos * (v10 - a[..., None]) ** 2, -1) / (m - 1)
        s01 = np.sum(neg * (v01 - a[..., None]) ** 2, -1) / (n - 1)
        var = np.where((m > 1) & (n > 1), s10 / m + s01 / n, np.nan)
    return np.where((m > 0) & (n > 0), a, np.nan), var


def newcombe_variance(theta: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Newcombe's (2006) variance of Â at θ: Hanley & McNeil's (1982) formula with both class
    sizes replaced by N* = (m + n)/2: θ(1 − θ)/(mn)·[1 + (N* − 1)((1 − θ)/(2 − θ) + θ/(1 + θ))]."""
    h = (m + n) / 2 - 1
    return theta * (1 - theta) / (m * n) * (1 + h * ((1 - theta) / (2 - theta) + theta / (1 + theta)))


def newcombe_interval(auc: np.ndarray, m: np.ndarray, n: np.ndarray, confidence: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's (2006) method 5: every θ with (Â − θ)² ≤ z²·:func:`newcombe_variance` (θ), by
    bisection on each side of Â (60 halvings)."""
    a = np.asarray(auc, dtype=float)
    m, n = np.asarray(m, dtype=float), np.asarray(n, dtype=float)
    z2 = norm.ppf(0.5 + confidence / 2) ** 2

    def inside(theta: np.ndarray) -> np.ndarray:
        return (a - theta) ** 2 <= z2 * newcombe_variance(theta, m, n)

    bounds = []
    for far in (0.0, 1.0):
        near, out = a.copy(), np.full_like(a, far)  # near: inside; out: outside (or the end)
        for _ in range(60):
            mid = (near + out) / 2
            ok = inside(mid)
            near, out = np.where(ok, mid, near), np.where(ok, out, mid)
        bounds.append(np.where(inside(np.full_like(a, far)), far, near))
    return bounds[0], bounds[1]


def shift(auc: float, shape: str) -> float:
    return float(norm.ppf(auc) * (np.sqrt(5) if shape in ("pos_wide", "neg_wide") else np.sqrt(2)))


def truth(auc: float, shape: str) -> float:
    """The true AUC (ties one half): the design value, or exactly from the levels' probabilities."""
    if shape != "ties":
        return auc
    mu = shift(auc, shape)
    edges = np.r_[-np.inf, CUTS, np.inf]
    p_neg = np.diff(norm.cdf(edges))
    p_pos = np.diff(norm.cdf(edges - mu))
    below = np.cumsum(p_neg) - p_neg
    return float(np.sum(p_pos * (below + 0.5 * p_neg)))


def tables(rng: np.random.Generator, reps: int, m: int, n: int, auc: float, shape: str) -> np.ndarray:
    """``reps`` count tables (reps, K, 2) of negatives / positives in increasing score order."""
    if shape == "perfect":
        neg, pos = rng.random((reps, n)), 1 + rng.random((reps, m))
    else:
        mu = shift(auc, shape)
        neg = rng.normal(size=(reps, n)) * (2.0 if shape == "neg_wide" else 1.0)
        pos = mu + rng.normal(size=(reps, m)) * (2.0 if shape == "pos_wide" else 1.0)
    if shape == "ties":
        lv_neg, lv_pos = np.searchsorted(CUTS, neg), np.searchsorted(CUTS, pos)
        L = CUTS.size + 1
        off = (np.arange(reps) * L)[:, None]
        c = np.stack([np.bincount((lv_neg + off).ravel(), minlength=reps * L).reshape(reps, L),
                      np.bincount((lv_pos + off).ravel(), minlength=reps * L).reshape(reps, L)], axis=-1)
        return c
    s = np.concatenate([neg, pos], axis=1)
    y = np.concatenate([np.zeros((reps, n), dtype=np.int64), np.ones((reps, m), dtype=np.int64)], axis=1)
    ys = np.take_along_axis(y, np.argsort(s, axis=1), axis=1)
    return np.stack([1 - ys, ys], axis=-1)  # continuous scores: every row its own cell


def intervals(c: np.ndarray, conf: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    a, var = auc_moments(c)
    z = norm.ppf(0.5 + conf / 2)
    se = np.sqrt(np.maximum(var, 0))
    wald = (np.clip(a - z * se, 0, 1), np.clip(a + z * se, 0, 1))
    with np.errstate(all="ignore"):
        lg = np.log(a / (1 - a))
        d = z * se / (a * (1 - a))
        logit = (np.where(a >= 1, 1.0, np.where(a <= 0, 0.0, 1 / (1 + np.exp(-(lg - d))))),
                 np.where(a >= 1, 1.0, np.where(a <= 0, 0.0, 1 / (1 + np.exp(-(lg + d))))))
    m = c[..., 1].sum(-1)
    n = c[..., 0].sum(-1)
    newc = newcombe_interval(a, m, n, conf)
    k = np.minimum(m, n)
    _, cp_lo, cp_hi = auc_interval(c, conf)
    return {"vd-beta": (cp_lo, cp_hi), "vd-wilson": wilson_interval(a * k, k, conf),
            "wald": wald, "logit": logit, "newcombe": newc,
            "wald+newcombe": (np.minimum(wald[0], newc[0]), np.maximum(wald[1], newc[1])),
            "logit+newcombe": (np.minimum(logit[0], newc[0]), np.maximum(logit[1], newc[1]))}


def bootstrap_intervals(c: np.ndarray, levels: tuple[float, ...], B: int, rng: np.random.Generator
                        ) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Percentile (re-centred, as the performance method had it) and studentised bootstrap at
    each level, from the same B draws per data set."""
    reps = c.shape[0]
    a, var = auc_moments(c)
    out = [{"boot": (np.empty(reps), np.empty(reps)), "boot-t": (np.empty(reps), np.empty(reps))} for _ in levels]
    for r in range(reps):
        flat = c[r].reshape(-1)
        N = int(flat.sum())
        draws = rng.multinomial(N, flat / N, size=B).reshape(B, *c[r].shape)
        ab, vb = auc_moments(draws)
        se = np.sqrt(max(var[r], 0))
        with np.errstate(all="ignore"):
            t = (ab - a[r]) / np.sqrt(vb)
        t = t[np.isfinite(t)]
        ab = ab[np.isfinite(ab)]
        for i, conf in enumerate(levels):
            q = (0.5 - conf / 2, 0.5 + conf / 2)
            lo, hi = np.quantile(ab, q)  # the cells are exact, so re-centring is a no-op
            out[i]["boot"][0][r], out[i]["boot"][1][r] = lo, hi
            if se == 0 or t.size < B / 2:
                out[i]["boot-t"][0][r] = out[i]["boot-t"][1][r] = a[r]
            else:
                t_hi, t_lo = np.quantile(t, q)
                out[i]["boot-t"][0][r] = max(0.0, a[r] - t_lo * se)
                out[i]["boot-t"][1][r] = min(1.0, a[r] - t_hi * se)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", action="store_true",
                        help="also the bootstrap intervals, on a smaller grid (B = 500)")
    parser.add_argument("--B", type=int, default=500)
    args = parser.parse_args()
    print(machine())
    se1 = np.sqrt(0.025 * 0.975 / args.reps)
    print(f"reps {args.reps}; one-sided nominal 0.025, Monte Carlo SE {se1:.4f}, flag above "
          f"{0.025 + 3 * se1:.4f}")
    if args.bootstrap:
        grid = [(shape, auc, m, p) for shape in ("binormal", "ties") for auc in (0.75, 0.97, 0.995)
                for m in (5, 10, 30) for p in (0.1, 0.5)]
    else:
        grid = [(shape, auc, m, p) for shape in SHAPES for auc in AUCS for m in MINORITY for p in PREVALENCE]
        grid += [("perfect", 1.0, m, p) for m in MINORITY for p in PREVALENCE]
    worst: dict[str, list[float]] = {}
    t0 = time.process_time()
    print("| shape | AUC | m | n | method | lo>θ | hi<θ | cov95 | cov90 | width |")
    for shape, auc, m, p in grid:
        n = int(round(m * (1 - p) / p))
        rng = np.random.default_rng([args.seed, int(auc * 1000), m, n, SHAPES.index(shape) if shape in SHAPES else 9])
        c = tables(rng, args.reps, m, n, auc, shape)
        th = truth(auc, shape)
        if args.bootstrap:
            at95, at90 = bootstrap_intervals(c, (0.95, 0.90), args.B, rng)
        else:
            at95, at90 = intervals(c, 0.95), intervals(c, 0.90)
        for name, (lo, hi) in at95.items():
            lo90, hi90 = at90[name]
            e_lo, e_hi = np.mean(lo > th + 1e-12), np.mean(hi < th - 1e-12)
            cov95 = 1 - e_lo - e_hi
            cov90 = np.mean((lo90 <= th + 1e-12) & (hi90 >= th - 1e-12))
            flag = "!" if max(e_lo, e_hi) > 0.025 + 3 * se1 else ""
            w = worst.setdefault(name, [0.0, 0.0, 1.0, 1.0, 0])
            w[0], w[1] = max(w[0], e_lo), max(w[1], e_hi)
            w[2], w[3] = min(w[2], cov95), min(w[3], cov90)
            w[4] += bool(flag)
            print(f"| {shape} | {th:.4f} | {m} | {n} | {name} | {e_lo:.4f} | {e_hi:.4f} | {cov95:.3f} | "
                  f"{cov90:.3f} | {np.mean(hi - lo):.4f} |{flag}", flush=True)
    print(f"\nworst over {len(grid)} cells (CPU {time.process_time() - t0:.0f} s):")
    print("| method | max lo>θ | max hi<θ | min cov95 | min cov90 | cells flagged |")
    for name, (a, b, c95, c90, k) in worst.items():
        print(f"| {name} | {a:.4f} | {b:.4f} | {c95:.3f} | {c90:.3f} | {k} |")


if __name__ == "__main__":
    main()
