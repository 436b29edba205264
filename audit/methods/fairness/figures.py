"""Figures of the fairness method (static images for the report)."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.core.dataset import AuditData
from audit.methods.fairness.config import METRIC_LABELS
from audit.methods.fairness.results import FairnessResult


def figures(result: FairnessResult, data: AuditData) -> dict[str, Any]:
    """The report's figures: rates by group with their intervals, threshold curves, reliability."""
    from audit.core.plots import PALETTE, new_figure

    figs: dict[str, Any] = {}
    if result.task != "binary":
        return figs
    shown = ("selection_rate", "tpr", "fpr")
    for key, res in result.attributes.items():
        groups = [g for g in res.groups if not g.too_small]
        if not groups:
            continue
        fig, ax = new_figure(6.5, 0.8 + 0.4 * len(groups))
        height = 0.8 / len(shown)
        for k, metric in enumerate(shown):
            ys = np.arange(len(groups)) + k * height
            vals = [g.metrics[metric].value for g in groups]
            lo = [g.metrics[metric].lower for g in groups]
            hi = [g.metrics[metric].upper for g in groups]
            x = np.array([v if v is not None else np.nan for v in vals])
            err = np.array([[v - lo_ if v is not None and lo_ is not None else 0 for v, lo_ in zip(vals, lo)],
                            [hi_ - v if v is not None and hi_ is not None else 0 for v, hi_ in zip(vals, hi)]])
            ax.barh(ys, np.nan_to_num(x), height=height, color=PALETTE[k],
                    label=METRIC_LABELS[metric], xerr=err, error_kw={"lw": 0.8, "capsize": 2})
        ax.set_yticks(np.arange(len(groups)) + height)
        ax.set_yticklabels([f"{g.group} (n={g.count:,})" for g in groups])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("rate (with its Clopper–Pearson interval)")
        ax.set_title(f"Rates by {res.title}")
        ax.legend(frameon=False, fontsize=7, loc="lower right")
        figs[f"rates:{key}"] = fig
        if res.curves is not None:
            fig, axes = new_figure(7.5, 2.6, ncols=3, sharey=True)
            for ax, metric in zip(axes, shown, strict=True):
                for k, (g, curve) in enumerate(res.curves.curves.items()):
                    vals = np.array([v if v is not None else np.nan for v in curve[metric]])
                    ax.plot(res.curves.thresholds, vals, color=PALETTE[k % len(PALETTE)], lw=1.2,
                            label=g)
                ax.axvline(result.threshold, color="#999999", lw=0.8, ls="--")
                ax.set_title(METRIC_LABELS[metric])
                ax.set_xlabel("decision threshold")
                ax.set_ylim(0, 1)
            axes[0].legend(frameon=False, fontsize=6)
            figs[f"curves:{key}"] = fig
        cal = [g for g in groups if g.calibration is not None]
        if cal:
            fig, ax = new_figure(3.6, 3.4)
            ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
            for k, g in enumerate(cal):
                c = g.calibration
                xs = np.array([v if v is not None else np.nan for v in c.mean_score])
                ys = np.array([v if v is not None else np.nan for v in c.fraction_positive])
                ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=PALETTE[k % len(PALETTE)], label=g.group)
            ax.set_xlabel("mean predicted probability")
            ax.set_ylabel("fraction positive")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(f"Reliability by {res.title}")
            ax.legend(frameon=False, fontsize=6)
            figs[f"calibration:{key}"] = fig
    return figs
