"""Shared figure helpers for methods (matplotlib is imported lazily, headless)."""

from __future__ import annotations

import functools
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

    from audit.core.text import escape_warnings

    escape_warnings()
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "audit-suite", "figure.dpi": 100,
                         # Names come from the user's data: "a$^$b" is a column name, not
                         # mathtext (which raises in savefig), and never a LaTeX run.
                         "text.parse_math": False, "text.usetex": False})
    return plt


def plain_text(fig: Any) -> Any:
    """Make every text of ``fig`` literal and visible: no mathtext, no LaTeX, no control
    characters (returns ``fig``).

    The one place where user strings (feature names, levels, group names, titles) are made
    safe for matplotlib. :func:`pyplot` sets the same defaults for texts created afterwards;
    this pass also covers texts that a library (shap, scikit-learn's ``plot_tree``) or a
    style context created with ``parse_math=True``. It runs on every figure before it is
    saved (``audit.report.render.figure_uri``). A dollar sign is then drawn as a dollar sign;
    a control or bidi character (ESC, BEL, U+202E) is drawn as its escape (``\x1b``), as on the
    terminal (:func:`audit.core.text.visible`): no font has glyphs for them, and matplotlib's
    "missing glyph" warning would otherwise carry the raw byte to the terminal.
    """
    from matplotlib.text import Text

    from audit.core.text import escape_warnings, visible

    escape_warnings()
    visible_formatter = _visible_formatter_class()
    for ax in fig.get_axes():  # tick labels are re-made from the formatter at every draw
        for axis in (getattr(ax, n) for n in ("xaxis", "yaxis", "zaxis") if hasattr(ax, n)):
            for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                             (axis.get_minor_formatter, axis.set_minor_formatter)):
                if not isinstance(get(), visible_formatter):
                    put(visible_formatter(get()))
    for text in fig.findobj(Text):
        text.set_parse_math(False)
        text.set_usetex(False)
        raw = text.get_text()
        shown = visible(raw)
        if shown != raw:
            text.set_text(shown)
    return fig


@functools.cache
def _visible_formatter_class() -> type:
    """Built on first use: matplotlib is imported only when a figure is drawn."""
    from matplotlib.ticker import Formatter

    from audit.core.text import visible

    class VisibleFormatter(Formatter):
        """Any tick formatter, its labels passed through :func:`audit.core.text.visible`
        (category axes draw the user's group names as tick labels)."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def set_axis(self, axis: Any) -> None:
            super().set_axis(axis)
            self.inner.set_axis(axis)

        def set_locs(self, locs: Any) -> None:
            self.inner.set_locs(locs)

        def __call__(self, x: Any, pos: Any = None) -> str:
            return visible(self.inner(x, pos))

        def format_ticks(self, values: Any) -> list[str]:
            return [visible(v) for v in self.inner.format_ticks(values)]

        def format_data_short(self, value: Any) -> str:
            return visible(self.inner.format_data_short(value))

        def get_offset(self) -> str:
            return visible(self.inner.get_offset())

    return VisibleFormatter


def new_figure(width: float = 6.5, height: float = 3.5, **kwargs: Any) -> tuple[Any, Any]:
    """A figure sized for an A4 page column, and its axes."""
    return pyplot().subplots(figsize=(width, height), **kwargs)


def shorten(label: str, limit: int = 40) -> str:
    """Trim long feature labels for axes (the tables keep the full names)."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"


__all__ = ["HIGHLIGHT", "NEGATIVE", "NEUTRAL", "PALETTE", "POSITIVE", "new_figure", "plain_text", "pyplot",
           "shorten"]
