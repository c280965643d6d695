"""Pictures of an analysis (matplotlib, imported only when a plot is drawn).

Per layer (from the eigenvalues and the fit): `plot_esd`, `plot_esd_loglog`, `plot_ks_curve`,
`plot_randomized_esd`. Per model (from ``report.details``): `plot_alpha_hist`,
`plot_correlation_flow`, `plot_raw_vs_fixed_alpha`, `plot_alpha_vs_rand_distance`. Each takes
``ax=None`` (a new pyplot figure) or an Axes to draw into, and returns the Axes.
`write_layer_plots` / `write_model_plots` save them as PNGs without pyplot (no backend change,
no figure kept alive).
"""

from __future__ import annotations

from tailscope._lazy import lazy_getattr

_LAZY = {
    "plot_esd": "layer", "plot_esd_loglog": "layer", "plot_ks_curve": "layer", "plot_randomized_esd": "layer",
    "plot_alpha_hist": "model", "plot_correlation_flow": "model", "plot_raw_vs_fixed_alpha": "model",
    "plot_alpha_vs_rand_distance": "model", "write_layer_plots": "files", "write_model_plots": "files",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
