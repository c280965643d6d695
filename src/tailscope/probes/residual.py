"""Residual-stream norms, per-layer gains and sub-block gains from recorded per-token norms.

Averaging rule, used everywhere here: a norm is averaged over the selected tokens of a prompt,
then over prompts; a gain is the ratio of two such averaged norms (gain of the mean norm), so a
layer's gain and the norms it is computed from are consistent. The first token (position 0,
which carries a "massive activation" in many LMs) can be left out of the averages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tailscope.probes.hooks import TokenNorms


def token_mean(arrays: Sequence[np.ndarray], skip_first: bool) -> np.ndarray:
    """Mean over tokens (axis -1) per prompt, then over prompts; NaN where no token is left.

    >>> token_mean([np.array([[10.0, 1.0, 3.0]])], skip_first=True).tolist()
    [2.0]
    """
    start = 1 if skip_first else 0
    per_prompt = [a[..., start:].mean(axis=-1) if a.shape[-1] > start else np.full(a.shape[:-1], np.nan) for a in arrays]
    return np.mean(per_prompt, axis=0)


def gains(norms: np.ndarray) -> np.ndarray:
    """gain_i = norm_i / norm_{i-1} for i >= 1 (length len(norms) - 1).

    >>> gains(np.array([1.0, 2.0, 1.0])).tolist()
    [2.0, 0.5]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return norms[1:] / norms[:-1]


@dataclass(frozen=True)
class GainSummary:
    """How a residual stream grows: contracting layers and the largest gain.

    ``max_gain_layer`` is the 0-based decoder layer whose output / input norm ratio is largest.
    """

    contracting_count: int
    contracting_fraction: float
    max_gain: float
    max_gain_layer: int | None
    total_gain: float

    @classmethod
    def of(cls, norms: np.ndarray) -> "GainSummary":
        g = gains(norms)
        finite = np.isfinite(g)
        if not finite.any():
            return cls(0, float("nan"), float("nan"), None, float("nan"))
        best = int(np.nanargmax(np.where(finite, g, -np.inf)))
        return cls(
            contracting_count=int(np.sum(g[finite] < 1.0)),
            contracting_fraction=float(np.mean(g[finite] < 1.0)),
            max_gain=float(g[best]),
            max_gain_layer=best,
            total_gain=float(norms[-1] / norms[0]),
        )


def residual_table(records: Sequence[TokenNorms], skip_first: bool) -> dict[str, np.ndarray]:
    """Per-depth norms and gains (depth 0 = embedding output, d = after decoder layer d - 1).

    Keys: ``norm_raw``, ``gain_raw`` and, when the model has a final norm, ``norm_normed``,
    ``gain_normed``; gains have a leading NaN so that every array has n_layers + 1 entries.
    """
    out: dict[str, np.ndarray] = {}
    views = {"raw": [r.raw for r in records]}
    if all(r.normed is not None for r in records):
        views["normed"] = [r.normed for r in records]
    for view, arrays in views.items():
        norms = token_mean(arrays, skip_first)
        out[f"norm_{view}"] = norms
        out[f"gain_{view}"] = np.concatenate([[np.nan], gains(norms)])
    return out


def subblock_table(records: Sequence[TokenNorms], skip_first: bool) -> dict[str, np.ndarray]:
    """Per decoder layer: ``attn_ratio`` = |attn delta| / |x|, ``mlp_ratio`` = |mlp delta| / |x_mlp|,
    ``mlp_gain`` = |x_mlp + mlp delta| / |x_mlp| (below 1: the MLP contracts the residual stream).

    Empty when the sub-blocks could not be located.
    """
    if any(r.attn_delta is None or r.mlp_delta is None for r in records):
        return {}

    def mean(key: str) -> np.ndarray:
        return token_mean([getattr(r, key) for r in records], skip_first)

    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "attn_ratio": mean("attn_delta") / mean("attn_x"),
            "mlp_ratio": mean("mlp_delta") / mean("mlp_x"),
            "mlp_gain": mean("mlp_out") / mean("mlp_x"),
        }
