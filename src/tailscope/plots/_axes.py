"""Where a plot draws: the caller's Axes, or a new pyplot figure when there is none."""

from __future__ import annotations

from typing import Any

from tailscope.errors import printable, require

FIGSIZE = (6.4, 4.8)


def axes_or_new(ax: Any) -> Any:
    """`ax`, or the Axes of a new pyplot figure (so it shows in a notebook or an interactive session)."""
    if ax is not None:
        return ax
    plt = require("matplotlib.pyplot", "plots")
    _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return ax


# fixed axes rectangles (left, bottom, width, height) of the saved figures: room for a two-line
# title, a legend under the axes (per layer) or right of them (per model), and a twin y-axis.
# Fixed instead of constrained layout, which costs more than half of each savefig.
PLAIN_RECT = (0.12, 0.11, 0.85, 0.77)  # no legend, or one inside
LEGEND_BELOW_RECT = (0.12, 0.24, 0.85, 0.64)
TWIN_RECT = (0.12, 0.24, 0.76, 0.64)  # legend below and a right-hand y-axis
MODEL_RECT = (0.1, 0.11, 0.66, 0.77)  # legend on the right


def detached_axes(rect: tuple[float, float, float, float] = PLAIN_RECT) -> Any:
    """Axes of a figure that pyplot does not know: savefig uses Agg, the user's backend is untouched
    and the figure is freed as soon as it is dropped."""
    figure_mod = require("matplotlib.figure", "plots")
    fig = figure_mod.Figure(figsize=FIGSIZE)
    return fig.add_axes(rect)


def plain_text(text: str) -> str:
    """A name from a file as literal figure text: printable, and its `$` escaped so matplotlib
    does not parse it as mathtext (an unbalanced ``$\\frac{`` would fail the figure)."""
    return printable(text).replace("$", r"\$")


def title(ax: Any, text: str, name: str | None) -> None:
    ax.set_title(f"{text}\n{plain_text(name)}" if name else text, fontsize=10)
