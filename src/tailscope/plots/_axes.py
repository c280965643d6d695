"""Where a plot draws: the caller's Axes, or a new pyplot figure when there is none."""

from __future__ import annotations

from typing import Any

from ..errors import require

FIGSIZE = (6.4, 4.8)


def axes_or_new(ax: Any) -> Any:
    """`ax`, or the Axes of a new pyplot figure (so it shows in a notebook or an interactive session)."""
    if ax is not None:
        return ax
    plt = require("matplotlib.pyplot", "plots")
    _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return ax


def detached_axes() -> Any:
    """Axes of a figure that pyplot does not know: savefig uses Agg, the user's backend is untouched
    and the figure is freed as soon as it is dropped."""
    figure_mod = require("matplotlib.figure", "plots")
    fig = figure_mod.Figure(figsize=FIGSIZE, layout="constrained")
    return fig.add_subplot()


def title(ax: Any, text: str, name: str | None) -> None:
    ax.set_title(f"{text}\n{name}" if name else text, fontsize=10)
