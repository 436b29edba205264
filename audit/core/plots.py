"""Shared figure helpers for methods (matplotlib is imported lazily, headless)."""

from __future__ import annotations

from typing import Any

# Colour-blind-safe palette (Okabe-Ito): positive/negative effects, neutral, highlight.
POSITIVE = "#D55E00"
NEGATIVE = "#0072B2"
NEUTRAL = "#999999"
HIGHLIGHT = "#009E73"
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "audit-suite", "figure.dpi": 100})
    return plt


def new_figure(width: float = 6.5, height: float = 3.5, **kwargs: Any) -> tuple[Any, Any]:
    """A figure sized for an A4 page column, and its axes."""
    return pyplot().subplots(figsize=(width, height), **kwargs)


def shorten(label: str, limit: int = 40) -> str:
    """Trim long feature labels for axes (the tables keep the full names)."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"


__all__ = ["HIGHLIGHT", "NEGATIVE", "NEUTRAL", "PALETTE", "POSITIVE", "new_figure", "pyplot", "shorten"]
