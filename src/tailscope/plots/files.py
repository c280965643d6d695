"""PNG files of an analysis: one per layer and figure, and the model-level ones.

Figures here are built with `matplotlib.figure.Figure`, never pyplot: saving goes through Agg,
the user's interactive backend is not touched, and no figure outlives its `savefig` (pyplot would
keep every figure alive until closed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tailscope.errors import OutputError
from tailscope.fit.powerlaw import PowerLawFit
from tailscope.outputs import atomic_write, check_directory
from tailscope.plots import layer, model
from tailscope.plots._axes import LEGEND_BELOW_RECT, MODEL_RECT, TWIN_RECT, detached_axes

DPI = 100
MODEL_FIGURES: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "alpha_hist": (model.plot_alpha_hist, ()),
    "correlation_flow": (model.plot_correlation_flow, ()),
    "raw_vs_fixed_alpha": (model.plot_raw_vs_fixed_alpha, ("raw_alpha",)),
    "alpha_vs_rand_distance": (model.plot_alpha_vs_rand_distance, ("rand_distance",)),
}


def safe_name(text: str, limit: int = 80) -> str:
    """A file-name-safe form of a tensor name ('model.layers.0.mlp' stays, '/' and spaces become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:limit] or "matrix"


def layer_file(directory: Path, row: dict[str, Any], kind: str) -> Path:
    return directory / f"{int(row['layer_id']):04d}_{safe_name(row['name'])}_{kind}.png"


def save(ax: Any, path: Path) -> Path:
    """Write the Axes' figure and drop it (detach its artists so nothing big stays referenced)."""
    fig = ax.figure
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    finally:
        fig.clear()


def plot_directory(directory: str | Path) -> Path:
    """Create the plot directory, or say clearly why it cannot be."""
    path = check_directory(directory, "plot_dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path, f"cannot create `plot_dir`: {exc.strerror or exc}") from None
    return path


def write_layer_plots(
    directory: str | Path, row: dict[str, Any], evals: np.ndarray, fit: PowerLawFit, *,
    detx_value: float | None = None, rand_evals: np.ndarray | None = None, thresh: float = 1e-5,
) -> list[Path]:
    """The per-layer PNGs of one analyzed matrix: esd, esd_loglog (when an eigenvalue exceeds the
    fit's `thresh`), ks_xmin (when the fit succeeded) and randomized_esd (when shuffled eigenvalues
    are given)."""
    directory = plot_directory(directory)
    name = f"{row['layer_id']}: {row['name']}"
    out = [save(layer.plot_esd(evals, detached_axes(), name=name), layer_file(directory, row, "esd"))]
    if np.any(evals > thresh):
        loglog = layer.plot_esd_loglog(evals, fit, detached_axes(LEGEND_BELOW_RECT), detx_value=detx_value, thresh=thresh, name=name)
        out.append(save(loglog, layer_file(directory, row, "esd_loglog")))
    if fit.ok:
        out.append(save(layer.plot_ks_curve(fit=fit, ax=detached_axes(TWIN_RECT), name=name), layer_file(directory, row, "ks_xmin")))
    if rand_evals is not None:
        ax = layer.plot_randomized_esd(rand_evals, int(row["N"]), int(row["M"]), detached_axes(LEGEND_BELOW_RECT), name=name)
        out.append(save(ax, layer_file(directory, row, "randomized_esd")))
    return out


def write_model_plots(directory: str | Path, details: pd.DataFrame, *, name: str | None = None) -> list[Path]:
    """The model-level PNGs whose columns the table has (raw_alpha and rand_distance are optional)."""
    directory = plot_directory(directory)
    out = []
    for kind, (func, needs) in MODEL_FIGURES.items():
        if any(col not in details.columns for col in needs):
            continue
        if model.fitted_rows(details, *needs).empty:
            continue
        out.append(save(func(details, detached_axes(MODEL_RECT), name=name), directory / f"model_{kind}.png"))
    return out
