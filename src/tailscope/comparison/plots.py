"""Comparison plots: alpha-vs-alpha scatter of name-matched layers and overlaid alpha histograms.

The HTSR band 2 <= alpha <= 6 is shaded: below it a layer counts as over-trained, above it as
under-trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tailscope.errors import require
from tailscope.outputs import atomic_write
from tailscope.plots._axes import plain_text

BAND = (2.0, 6.0)


def _plt():  # noqa: ANN202
    matplotlib = require("matplotlib", "plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def alpha_scatter(matched: pd.DataFrame, labels: Sequence[str], path: Path) -> Path:
    """alpha of every other model against the first one's, one point per matched matrix."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    x = matched[labels[0]].to_numpy(float)
    for lab in labels[1:]:
        ax.scatter(x, matched[lab].to_numpy(float), s=16, alpha=0.75, label=plain_text(lab))
    vals = matched[list(labels)].to_numpy(float)
    lo, hi = (np.nanmin(vals), np.nanmax(vals)) if vals.size else BAND
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="gray", lw=1, ls="--", label="y = x")
    ax.fill_between(BAND, BAND[0], BAND[1], color="green", alpha=0.08, label="2 <= alpha <= 6 in both")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(plain_text(f"alpha ({labels[0]})"))
    ax.set_ylabel("alpha (other model)")
    ax.set_title(f"per-layer alpha, {len(matched)} matrices matched by name", fontsize=10)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def alpha_histograms(alphas: Sequence[np.ndarray], labels: Sequence[str], path: Path) -> Path:
    """Overlaid alpha histograms on common bins."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    allv = np.concatenate([a[np.isfinite(a)] for a in alphas]) if alphas else np.array([])
    bins = np.linspace(allv.min(), allv.max(), 31) if allv.size and allv.max() > allv.min() else 30
    for a, lab in zip(alphas, labels):
        a = a[np.isfinite(a)]
        label = f"{lab} (n={a.size}, mean {a.mean():.2f})" if a.size else lab
        ax.hist(a, bins=bins, histtype="stepfilled", alpha=0.35, label=plain_text(label))
        ax.hist(a, bins=bins, histtype="step", lw=1.2, color=ax.patches[-1].get_facecolor()[:3])
    for edge in BAND:
        ax.axvline(edge, color="gray", ls=":", lw=1)
    ax.set_xlabel("alpha")
    ax.set_ylabel("layers")
    ax.set_title("alpha distribution (dotted: 2 and 6)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
