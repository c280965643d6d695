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


# randomization (correlation traps) -------------------------------------------------

TRAP_TW_UNITS = 4.0  # a shuffled eigenvalue this many Tracy-Widom widths beyond the edge is a trap
TRAP_RELATIVE_FLOOR = 1e-10  # eigenvalues below this fraction of the largest are round-off


def tracy_widom_width(N: int, M: int, sigma2: float) -> float:
    """Scale of the fluctuations of the largest eigenvalue of W^T W at the MP edge (Johnstone 2001):
    sigma2 * (sqrt(N) + sqrt(M)) * (1/sqrt(N) + 1/sqrt(M))^(1/3), unnormalized units."""
    return float(sigma2 * (np.sqrt(N) + np.sqrt(M)) * (1 / np.sqrt(N) + 1 / np.sqrt(M)) ** (1 / 3))


def count_traps(rand_evals: np.ndarray, N: int, M: int, sigma2: float, tw_units: float = TRAP_TW_UNITS) -> int:
    """Eigenvalues of a shuffled W beyond lambda_+ + tw_units * Tracy-Widom width of the MP law with
    the shuffled matrix's own entry variance: for i.i.d. entries of finite fourth moment this is
    ~never crossed, so each one is a correlation trap (a few huge entries, or a nonzero mean)."""
    rand_evals = np.asarray(rand_evals)
    cut = bulk_edge(N, M, sigma2) + tw_units * tracy_widom_width(N, M, sigma2)
    # round-off floor: a constant matrix (sigma2 = 0) has one trap, its mean, not M
    floor = TRAP_RELATIVE_FLOOR * float(rand_evals.max()) if rand_evals.size else 0.0
    return int(np.count_nonzero(rand_evals > max(cut, floor)))


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """sqrt of the Jensen-Shannon divergence (natural log) of two non-negative vectors, each first
    normalized to sum 1 (weightwatcher's rand_distance on sorted eigenvalue vectors)."""
    from scipy.special import rel_entr

    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    m = (p + q) / 2
    div = (np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / 2
    return float(np.sqrt(max(div, 0.0)))
