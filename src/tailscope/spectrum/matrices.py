"""Tensor -> the list of matrices whose eigenvalues are pooled (one for a dense layer,
k*k kernel slices for a Conv2D). Each matrix comes out oriented N x M with N >= M."""

from __future__ import annotations

import numpy as np

from tailscope.sources.base import KIND_CONV1D, KIND_CONV2D

# weightwatcher scales Conv2D slices by sqrt(conv2d_count / 2) with conv2d_count = 1, so their
# eigenvalues are halved; kept for identical numbers.
CONV2D_SCALE = np.sqrt(0.5)


def tall(w: np.ndarray) -> np.ndarray:
    """Orient so that rows >= columns (a view, no copy)."""
    return w.T if w.shape[0] < w.shape[1] else w


def to_matrices(array: np.ndarray, kind: str, conv2d: str = "slices", conv2d_norm: bool = True) -> list[np.ndarray]:
    """The matrices of one tensor, as weightwatcher pools them."""
    if kind == KIND_CONV2D and array.ndim == 4:
        scale = CONV2D_SCALE if conv2d_norm else 1.0
        if conv2d == "unfold":
            return [tall(array.reshape(array.shape[0], -1) * scale)]
        kh, kw = array.shape[2:]
        return [tall(array[:, :, i, j] * scale) for i in range(kh) for j in range(kw)]
    if kind == KIND_CONV1D and array.ndim == 3:
        return [tall(array[:, :, k]) for k in range(array.shape[2])]
    return [tall(array)]
