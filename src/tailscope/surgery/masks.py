"""Which entries of a matrix unstructured pruning sets to zero (True = pruned), for a given sparsity.

- magnitude: the int(s * size) entries of smallest |W_ij| in the whole matrix;
- Wanda (Sun et al., ICLR 2024): per output row i (rows of the stored (out, in) weight), the
  int(s * in) entries of smallest |W_ij| * ||x_j||_2, x_j the j-th input feature over the
  calibration tokens.

Ties go to the lower flat index (stable sort), so the same values always give the same mask.
"""

from __future__ import annotations

import numpy as np


def magnitude_mask(W: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask of the int(sparsity * W.size) smallest-magnitude entries.

    >>> magnitude_mask(np.array([[3.0, -1.0], [0.5, 2.0]]), 0.5).tolist()
    [[False, True], [True, False]]
    """
    k = int(sparsity * W.size)
    mask = np.zeros(W.size, dtype=bool)
    mask[np.argsort(np.abs(W).ravel(), kind="stable")[:k]] = True
    return mask.reshape(W.shape)


def wanda_mask(W: np.ndarray, norms: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask of the int(sparsity * in) smallest |W_ij| * norms_j in each row of W (out, in).

    >>> wanda_mask(np.array([[1.0, 1.0], [1.0, 5.0]]), np.array([4.0, 1.0]), 0.5).tolist()
    [[False, True], [True, False]]
    """
    scores = np.abs(np.asarray(W, dtype=np.float64)) * np.asarray(norms, dtype=np.float64)[None, :]
    k = int(sparsity * W.shape[1])
    order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    mask = np.zeros(W.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask
