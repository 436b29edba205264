"""Simulated coverage of the fairness intervals and error rates of the gate, before and after.

Decisions-only audits are simulated directly as counts: per group ``positives ~ Bin(n, π)``,
``TP ~ Bin(positives, TPR)``, ``FP ~ Bin(n − positives, FPR)``, vectorised over replications.
For every cell of a grid (2–10 groups of 30–5,000 rows, rates 0.01–0.99, zero and planted gaps)
it measures, at 95 %:

- ``grp``: the coverage of the per-group TPR / selection-rate intervals (worst group);
- for each disparity (DP, EO, equal opportunity, predictive parity; differences and ratios):
  ``cov`` the coverage of the true disparity (the population's, over *all* groups: a group
  whose rate is undefined in a sample, e.g. no positives for TPR, still has a true rate),
  ``brk`` P(lower bound beyond the truth) = the gate's false-"breach" rate for a threshold
  placed exactly at the truth (the worst case of a truth inside the threshold), and ``pas``
  P(upper bound short of the truth) = the false-"pass" rate for a threshold just below it;
- ``gate10``: the breach rate of ``equalized_odds_difference <= 0.10`` (the issue's case).

Cells marked "ref" compare every group with the first (largest) group instead of max − min;
there the disparate-impact ratio is the smallest g / ref. Cells marked "rare" give the last
(smallest) group a base rate of 0.005, so that its TPR (and often its PPV) is undefined in most
samples: the case where dropping the group made the gate pass falsely 13–44 % of the time.

``--method old`` runs the previous procedure (percentile bootstrap per group; studentized
max-|t| bootstrap over pairs for disparities; B = 1000), ``--method new`` the score intervals of
:mod:`audit.stats.proportions` as used by the fairness method and the gate.

Usage: python benchmarks/fairness_coverage.py --method new [--reps 2000] [--cells all]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import machine

# name -> (sizes, π, TPR, FPR, planted gap on the last (smallest) group: (dTPR, dFPR))
SIZES = {
    "2x30": [30, 30],
    "5000+30": [5000, 30],
    "3x5000": [5000, 5000, 5000],
    "2000+150+45": [2000, 150, 45],
    "8 mixed": [1200, 800, 500, 300, 150, 100, 60, 30],
    "10x30": [30] * 10,
}
RATES = {  # π, TPR, FPR of the reference groups; the gap moves TPR and FPR towards 0.5
    "low": (0.3, 0.03, 0.01),
    "mid": (0.4, 0.6, 0.2),
    "high": (0.5, 0.99, 0.97),
}
GAPS = (0.0, 0.08)
DISPARITIES = ("demographic_parity_difference", "demographic_parity_ratio", "disparate_impact_ratio",
               "equalized_odds_difference", "equalized_odds_ratio",
               "equal_opportunity_difference", "equal_opportunity_ratio",
               "predictive_parity_difference", "predictive_parity_ratio")


#: Cells also run against a reference group (the first, largest group): "vs reference" gaps.
REFERENCE_SIZES = ("5000+30", "8 mixed")
#: Sizes whose last group has base rate :data:`RARE_PI` (undefined TPR in most samples).
RARE_SIZES = {"2x3000+40 rare": [3000, 3000, 40], "2x3000+400 rare": [3000, 3000, 400]}
RARE_PI = 0.005


def cells_grid() -> list[tuple[str, str, float, int | None]]:
    return ([(s, r, g, None) for s in SIZES for r in RATES for g in GAPS]
            + [(s, r, g, 0) for s in REFERENCE_SIZES for r in RATES for g in GAPS]
            + [(s, r, g, ref) for s in RARE_SIZES for r in ("mid", "high") for g in GAPS
               for ref in (None, 0)])


def true_rates(sizes: str, rates: str, gap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = np.array(SIZES[sizes] if sizes in SIZES else RARE_SIZES[sizes])
    G = len(n)
    pi, tpr, fpr = RATES[rates]
    sign = -1.0 if tpr > 0.5 else 1.0
    pi_g = np.full(G, pi)
    if sizes in RARE_SIZES:
        pi_g[-1] = RARE_PI
    tpr_g = np.full(G, tpr)
    fpr_g = np.full(G, fpr)
    tpr_g[-1] += sign * gap
    fpr_g[-1] += sign * gap
    return n, pi_g, tpr_g, fpr_g


def simulate(n, pi, tpr, fpr, reps, rng) -> np.ndarray:
    """(reps, G, 4) confusion counts (tn, fp, fn, tp)."""
    pos = rng.binomial(n, pi, size=(reps, len(n)))
    tp = rng.binomial(pos, tpr)
    fp = rng.binomial(n - pos, fpr)
    return np.stack([n - pos - fp, fp, pos - tp, tp], axis=-1)


def truth_of(pi, tpr, fpr, ref=None) -> dict[str, float]:
    """The population's disparities over all groups (every rate is defined in the population,
    whether or not a sample happens to contain the group's positives)."""
    from audit.methods.fairness import binary_disparities

    sel = pi * tpr + (1 - pi) * fpr
    ppv = pi * tpr / sel
    npv = (1 - pi) * (1 - fpr) / (1 - sel)
    rates = {"selection_rate": sel, "tpr": tpr, "fpr": fpr, "ppv": ppv, "accuracy": sel * 0 + 0.5,
             "fnr": 1 - tpr, "tnr": 1 - fpr, "npv": npv}
    return {k: float(v) for k, v in binary_disparities(rates, ref).items()}


def new_method(cells: np.ndarray, conf: float, ref: int | None = None) -> tuple[dict, dict]:
    from audit.methods.fairness import score_disparities
    from audit.stats.bootstrap import rates_from_cells
    from audit.stats.proportions import group_interval

    out = score_disparities(cells, ref, conf, test=False)
    rates = rates_from_cells(cells)
    c = cells
    grp = {"tpr": group_interval(c[..., 3], c[..., 2] + c[..., 3], conf),
           "selection_rate": group_interval(c[..., 1] + c[..., 3], c.sum(-1), conf)}
    return {k: (v[0], v[1]) for k, v in out.items()}, (grp, rates)


def old_method(cells: np.ndarray, conf: float, rng: np.random.Generator, n_boot: int = 1000,
               ref: int | None = None) -> tuple[dict, dict]:
    """The procedure before this change: percentile bootstrap per group, studentized max-|t|
    bootstrap over pairs for the disparities (Šidák over TPR/FPR for equalized odds)."""
    from audit.stats.bootstrap import (
        bootstrap_cells,
        disparity_interval,
        percentile_interval,
        rates_from_cells,
    )

    R = cells.shape[0]
    out = {k: (np.full(R, np.nan), np.full(R, np.nan)) for k in DISPARITIES}
    grp = {k: (np.full(cells.shape[:2], np.nan), np.full(cells.shape[:2], np.nan))
           for k in ("tpr", "selection_rate")}
    bases = {"demographic_parity": ["selection_rate"], "equalized_odds": ["tpr", "fpr"],
             "equal_opportunity": ["tpr"], "predictive_parity": ["ppv"], "disparate_impact": ["selection_rate"]}
    for r in range(R):
        point = rates_from_cells(cells[r])
        boot = rates_from_cells(bootstrap_cells(cells[r], n_boot, rng))
        for k in grp:
            lo, hi = percentile_interval(boot[k], conf)
            grp[k][0][r], grp[k][1][r] = lo, hi
        for key in DISPARITIES:
            fam, kind = key.rsplit("_", 1)
            kind = "impact" if fam == "disparate_impact" else kind
            bs = bases[fam]
            level = conf ** (1 / len(bs))
            parts = [disparity_interval(point[b], boot[b], kind, ref, level) for b in bs]
            los, his = np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
            if np.isnan(los).any() or np.isnan(his).any():
                continue
            if kind == "difference":
                out[key][0][r], out[key][1][r] = los.max(), min(1.0, his.max())
            else:
                out[key][0][r], out[key][1][r] = los.min(), his.min()
    return out, (grp, rates_from_cells(cells))


def run_cell(sizes: str, rates: str, gap: float, method: str, reps: int, conf: float,
             seed: int, ref: int | None = None) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n, pi, tpr, fpr = true_rates(sizes, rates, gap)
    cells = simulate(n, pi, tpr, fpr, reps, rng)
    if method == "new":
        intervals, (grp, _rates) = new_method(cells, conf, ref)
    else:
        intervals, (grp, _rates) = old_method(cells, conf, rng, ref=ref)
    truth = truth_of(pi, tpr, fpr, ref)
    row: dict[str, float] = {}
    sel_true = pi * tpr + (1 - pi) * fpr
    for k, true_g in (("tpr", tpr), ("selection_rate", sel_true)):
        lo, hi = grp[k]
        cover = (lo <= true_g + 1e-12) & (true_g - 1e-12 <= hi)
        ok = np.isfinite(lo)
        row[f"grp_{k}"] = float(np.min(np.sum(cover & ok, 0) / np.maximum(ok.sum(0), 1)))
    for k in DISPARITIES:
        lo, hi = intervals[k]
        t = truth[k]
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(t)
        tol = 1e-9
        row[f"{k}:n"] = int(ok.sum())
        row[f"{k}:cov"] = float(np.mean(((lo <= t + tol) & (t - tol <= hi))[ok])) if ok.any() else np.nan
        if k.endswith("difference"):
            row[f"{k}:brk"] = float(np.mean((lo > t + tol)[ok])) if ok.any() else np.nan
            row[f"{k}:pas"] = float(np.mean((hi < t - tol)[ok])) if ok.any() else np.nan
        else:  # a min rule: breach when the upper bound is below the threshold
            row[f"{k}:brk"] = float(np.mean((hi < t - tol)[ok])) if ok.any() else np.nan
            row[f"{k}:pas"] = float(np.mean((lo > t + tol)[ok])) if ok.any() else np.nan
    lo, _ = intervals["equalized_odds_difference"]
    row["gate10"] = float(np.mean(np.nan_to_num(lo, nan=-1) > 0.10))
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=("old", "new"), default="new")
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(machine())
    short = {"demographic_parity": "DP", "equalized_odds": "EO", "equal_opportunity": "EOpp",
             "predictive_parity": "PP", "disparate_impact": "DI"}
    cols = [(k, short[k.rsplit("_", 1)[0]] + ("d" if k.endswith("difference") else "r")) for k in DISPARITIES]
    cols = [(k, "DI" if k.startswith("disparate") else c) for k, c in cols]
    print(f"method={args.method} reps={args.reps} confidence={args.confidence}; per disparity: "
          "coverage / P(false breach at a threshold = truth) / P(false pass just outside)")
    head = f"{'sizes':<16}{'rates':<5}{'gap':>5} {'grpTPR':>6} {'grpSR':>6} " + " ".join(
        f"{c:>15}" for _, c in cols) + f" {'EO<=.1 breach':>13}"
    print(head)
    start = time.perf_counter()
    worst = {"cov": 1.0, "brk": 0.0, "pas": 0.0, "grp": 1.0}
    for i, (s, r, g, ref) in enumerate(cells_grid()):
        row = run_cell(s, r, g, args.method, args.reps, args.confidence, args.seed + i, ref)
        parts = []
        for k, _ in cols:
            cov, brk, pas = row[f"{k}:cov"], row[f"{k}:brk"], row[f"{k}:pas"]
            parts.append(f"{cov:5.3f}/{brk:4.3f}/{pas:4.3f}" if np.isfinite(cov) else f"{'—':>15}")
            if np.isfinite(cov):
                worst["cov"] = min(worst["cov"], cov)
                worst["brk"] = max(worst["brk"], brk)
                worst["pas"] = max(worst["pas"], pas)
        worst["grp"] = min(worst["grp"], row["grp_tpr"], row["grp_selection_rate"])
        name = s if ref is None else f"{s} ref"
        print(f"{name:<16}{r:<5}{g:>5.2f} {row['grp_tpr']:6.3f} {row['grp_selection_rate']:6.3f} "
              + " ".join(f"{p:>15}" for p in parts) + f" {row['gate10']:13.3f}", flush=True)
    print(f"worst over the grid: disparity coverage {worst['cov']:.3f}, false breach {worst['brk']:.3f}, "
          f"false pass {worst['pas']:.3f}, per-group coverage {worst['grp']:.3f} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
