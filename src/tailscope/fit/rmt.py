"""Marchenko-Pastur (MP) law for the ESD of X = W^T W / N of an N x M random matrix, Q = N / M >= 1.

Here eigenvalues are unnormalized (those of W^T W, as weightwatcher reports them), so an i.i.d.
matrix with entry variance s2 has its bulk on [lambda_-, lambda_+] with

    lambda_+- = s2 * N * (1 +- 1/sqrt(Q))^2   (= s2 * (sqrt(N) +- sqrt(M))^2).
"""

from __future__ import annotations

import numpy as np


def mp_edges(Q: float, sigma2: float) -> tuple[float, float]:
    """(lambda_minus, lambda_plus) of the MP law in normalized units (eigenvalues of W^T W / N)."""
    r = 1.0 / np.sqrt(Q)
    return sigma2 * (1.0 - r) ** 2, sigma2 * (1.0 + r) ** 2


def mp_density(x: np.ndarray, Q: float, sigma2: float) -> np.ndarray:
    """MP probability density (normalized units), zero outside the bulk.

    >>> from scipy.integrate import quad
    >>> round(quad(lambda t: float(mp_density(np.array([t]), 4.0, 1.0)[0]), *mp_edges(4.0, 1.0))[0], 6)
    1.0
    """
    lo, hi = mp_edges(Q, sigma2)
    x = np.asarray(x, dtype=np.float64)
    inside = (x > lo) & (x < hi)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = Q / (2 * np.pi * sigma2 * xi) * np.sqrt((hi - xi) * (xi - lo))
    return out


def sigma2_from_edge(lambda_plus: float, Q: float) -> float:
    """Entry variance whose MP bulk ends at `lambda_plus` (normalized units), as weightwatcher's calc_sigma."""
    return lambda_plus / (1.0 + 1.0 / np.sqrt(Q)) ** 2


def bulk_edge(N: int, M: int, sigma2: float) -> float:
    """lambda_+ in unnormalized units (eigenvalues of W^T W) for entry variance sigma2."""
    return sigma2 * (np.sqrt(N) + np.sqrt(M)) ** 2
