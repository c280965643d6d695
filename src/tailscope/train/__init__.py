"""Training control from spectra: WW-PGD projection (`SpectralProjection`) and `AlphaLR`.

Needs torch (``pip install 'tailscope[torch]'``); `SpectralProjectionCallback` needs transformers.
"""

from __future__ import annotations

from tailscope._lazy import lazy_getattr

__all__ = [
    "AlphaLR", "LayerProjection", "ProjectionConfig", "ProjectionStats", "SpectralProjection",
    "SpectralProjectionCallback", "layer_alphas", "layerwise_param_groups", "log_projection", "read_idx",
    "load_mnist",
]

_LAZY = {
    "ProjectionConfig": "config", "SpectralProjection": "optimizer", "LayerProjection": "optimizer",
    "ProjectionStats": "optimizer", "AlphaLR": "alpha_lr", "layer_alphas": "alpha_lr",
    "layerwise_param_groups": "alpha_lr", "log_projection": "callbacks",
    "SpectralProjectionCallback": "callbacks", "read_idx": "idx", "load_mnist": "idx",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
