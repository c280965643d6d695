"""Model-level figures from the details DataFrame of a `Report` (rows with a successful fit).

A figure that needs a column the analysis did not produce (raw_alpha comes with fix_fingers,
rand_distance with randomize) raises ConfigError naming the column and the option.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tailscope.errors import ConfigError, require
from tailscope.plots._axes import axes_or_new, title
from tailscope.rows.metrics import ALPHA_HIGH, ALPHA_LOW

SAFE_COLOR = "tab:green"
NEEDS = {"raw_alpha": "fix_fingers='clip_xmax'", "rand_distance": "randomize=True", "alpha": "a power-law fit"}


def fitted_rows(details: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Rows with a successful fit and finite values in `columns` (and alpha); ConfigError if a column is absent."""
    if not isinstance(details, pd.DataFrame):
        raise ConfigError(f"Expected `details` to be a DataFrame (report.details), but got {type(details).__name__}")
    for col in ("alpha", *columns):
        if col not in details.columns:
            how = NEEDS.get(col, "the analysis option that adds it")
            raise ConfigError(f"This plot needs the `{col}` column, which analyze adds with {how}; the table has none")
    df = details
    if "status" in df.columns:
        df = df[df["status"] == "success"]
    values = df[["alpha", *columns]].apply(pd.to_numeric, errors="coerce")
    return df[np.isfinite(values.to_numpy(dtype=float)).all(axis=1)]


def _safe_band(ax: Any, vertical: bool) -> None:
    span = ax.axvspan if vertical else ax.axhspan
    span(ALPHA_LOW, ALPHA_HIGH, color=SAFE_COLOR, alpha=0.12, lw=0, label=f"safe band {ALPHA_LOW:g} \u2264 \u03b1 \u2264 {ALPHA_HIGH:g}")


def _by_role(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "role" not in df.columns:
        return [("all", df)]
    roles = df["role"].fillna("other").astype(str)
    return [(role, df[roles == role]) for role in sorted(roles.unique())]


def _scatter_by_role(ax: Any, df: pd.DataFrame, x: str) -> None:
    """alpha against column `x`, one colour (and, past ten roles, one marker) per role."""
    for i, (role, part) in enumerate(_by_role(df)):
        ax.scatter(part[x], part["alpha"], s=18, color=f"C{i % 10}", marker="os^Dv<>ph*"[(i // 10) % 10],
                   alpha=0.85, label=role)


def _legend_outside(ax: Any) -> None:
    """Legend to the right of the axes, so it never covers a point."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, framealpha=0.9)


def plot_alpha_hist(details: pd.DataFrame, ax: Any = None, *, bins: int = 30, name: str | None = None) -> Any:
    """Histogram of the layers' alpha with the safe band [2, 6] shaded and the mean marked."""
    df = fitted_rows(details)
    if df.empty:
        raise ConfigError("Expected at least one row with a successful fit for the alpha histogram, but got none")
    alpha = df["alpha"].to_numpy(dtype=float)
    ax = axes_or_new(ax)
    _safe_band(ax, vertical=True)
    ax.hist(alpha, bins=bins, color="C0", alpha=0.85, label=f"{alpha.size} layers")
    ax.axvline(alpha.mean(), color="black", ls="--", lw=1.4, label=rf"mean $\alpha$={alpha.mean():.2f}")
    ax.set_xlabel(r"power-law exponent $\alpha$")
    ax.set_ylabel("number of layers")
    ax.yaxis.set_major_locator(require("matplotlib.ticker", "plots").MaxNLocator(integer=True))
    title(ax, r"Distribution of $\alpha$", name)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return ax


def depth_column(df: pd.DataFrame) -> str:
    """`layer` (index in the stack) when the names carry one, else `layer_id`."""
    if "layer" in df.columns and pd.to_numeric(df["layer"], errors="coerce").notna().any():
        return "layer"
    return "layer_id"


def plot_correlation_flow(details: pd.DataFrame, ax: Any = None, *, name: str | None = None) -> Any:
    """Alpha against depth, one colour per role, with the mean alpha per depth (black line).

    Depth is the `layer` column; rows without one (embeddings, lm_head) are left out and counted in
    the title. Without any `layer` values, depth is `layer_id`.
    """
    df = fitted_rows(details)
    depth = depth_column(df) if not df.empty else "layer_id"
    x_all = pd.to_numeric(df[depth], errors="coerce") if depth in df.columns else pd.Series(dtype=float)
    df = df.assign(_depth=x_all)
    missing = int(df["_depth"].isna().sum())
    df = df[df["_depth"].notna()]
    if df.empty:
        raise ConfigError("Expected rows with a successful fit and a depth for the correlation flow, but got none")
    ax = axes_or_new(ax)
    _safe_band(ax, vertical=False)
    _scatter_by_role(ax, df, "_depth")
    mean = df.groupby("_depth")["alpha"].mean()
    ax.plot(mean.index, mean.to_numpy(), "-", color="black", lw=1.0, label="mean per depth")
    ax.set_xlabel("layer depth" if depth == "layer" else "layer_id (no layer index in the names)")
    ax.set_ylabel(r"$\alpha$")
    ax.xaxis.set_major_locator(require("matplotlib.ticker", "plots").MaxNLocator(integer=True))
    if mean.index.size == 1:
        ax.set_xlim(mean.index[0] - 1, mean.index[0] + 1)
    note = f"{missing} row(s) without a layer index not shown" if missing else ""
    title(ax, r"Correlation flow: $\alpha$ by depth", " - ".join(filter(None, (name, note))))
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return ax


def plot_raw_vs_fixed_alpha(details: pd.DataFrame, ax: Any = None, *, name: str | None = None) -> Any:
    """raw_alpha (fit of the whole tail) against alpha after removing fingers; points off the
    diagonal are layers whose alpha the outliers changed (red: num_fingers > 0, when known)."""
    df = fitted_rows(details, "raw_alpha")
    if df.empty:
        raise ConfigError("Expected rows with finite alpha and raw_alpha, but got none")
    ax = axes_or_new(ax)
    raw, fixed = df["raw_alpha"].to_numpy(dtype=float), df["alpha"].to_numpy(dtype=float)
    fingers = pd.to_numeric(df["num_fingers"], errors="coerce").fillna(0).to_numpy() if "num_fingers" in df else np.zeros(raw.size)
    lo, hi = float(min(raw.min(), fixed.min())), float(max(raw.max(), fixed.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="gray", lw=0.8, ls=":", label="raw = fixed")
    has = fingers > 0
    ax.scatter(raw[~has], fixed[~has], s=18, color="C0", alpha=0.8, label=f"no finger removed ({int((~has).sum())})")
    if has.any():
        ax.scatter(raw[has], fixed[has], s=22, color="C3", alpha=0.9, label=f"fingers removed ({int(has.sum())})")
    ax.set_xlabel(r"raw $\alpha$ (all eigenvalues)")
    ax.set_ylabel(r"$\alpha$ after removing fingers")
    title(ax, r"Effect of fix_fingers on $\alpha$", name)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return ax


def plot_alpha_vs_rand_distance(details: pd.DataFrame, ax: Any = None, *, name: str | None = None) -> Any:
    """alpha against rand_distance (how far the ESD is from that of the shuffled matrix), by role:
    a well-trained layer has small alpha and a large distance, a random-like one the opposite."""
    df = fitted_rows(details, "rand_distance")
    if df.empty:
        raise ConfigError("Expected rows with finite alpha and rand_distance, but got none")
    ax = axes_or_new(ax)
    _safe_band(ax, vertical=False)
    _scatter_by_role(ax, df, "rand_distance")
    ax.set_xlabel("rand_distance (Jensen-Shannon, ESD of W vs shuffled W)")
    ax.set_ylabel(r"$\alpha$")
    title(ax, r"$\alpha$ vs distance from randomized", name)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return ax
