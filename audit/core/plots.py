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
                         "svg.hashsalt": "audit-suite", "figure.dpi": 100,
                         # Names come from the user's data: "a$^$b" is a column name, not
                         # mathtext (which raises in savefig), and never a LaTeX run.
                         "text.parse_math": False, "text.usetex": False})
    return plt


def plain_text(fig: Any) -> Any:
    """Make every text of ``fig`` literal: no mathtext, no LaTeX (returns ``fig``).

    The one place where user strings (feature names, levels, group names, titles) are made
    safe for matplotlib. :func:`pyplot` sets the same defaults for texts created afterwards;
    this pass also covers texts that a library (shap, scikit-learn's ``plot_tree``) or a
    style context created with ``parse_math=True``. It runs on every figure before it is
    saved (``audit.report.render.figure_uri``). A dollar sign is then drawn as a dollar sign.
    """
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
        text.set_usetex(False)
    return fig


def new_figure(width: float = 6.5, height: float = 3.5, **kwargs: Any) -> tuple[Any, Any]:
    """A figure sized for an A4 page column, and its axes."""
    return pyplot().subplots(figsize=(width, height), **kwargs)


def shorten(label: str, limit: int = 40) -> str:
    """Trim long feature labels for axes (the tables keep the full names)."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"


__all__ = ["HIGHLIGHT", "NEGATIVE", "NEUTRAL", "PALETTE", "POSITIVE", "new_figure", "plain_text", "pyplot",
           "shorten"]
