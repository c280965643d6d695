"""Spectrum of a low-rank update W = s * B @ A (B: N_out x r, A: r x N_in) from an r x r problem.

The nonzero eigenvalues of W^T W = s^2 A^T (B^T B) A are those of the r x r matrix
s^2 (B^T B)(A A^T) (XY and YX share nonzero eigenvalues). We take them stably from QR
factors: with B = Q_b R_b and A^T = Q_a R_a, W = s Q_b (R_b R_a^T) Q_a^T and Q_b, Q_a have
orthonormal columns, so the singular values of W are s times those of the r x r matrix
R_b R_a^T. Cost O((N_out + N_in) r^2) instead of forming an N_out x N_in matrix. The remaining
M - r eigenvalues of the dense M x M ESD are exactly zero and are kept, so that the row keeps the
dense matrix's geometry (N, M, num_evals) and its rank columns.
"""

from __future__ import annotations

import numpy as np

from tailscope.spectrum.routes import EPS64, Spectrum, check_finite


def lowrank_singular_values(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Ascending singular values (r of them) of scale * b @ a."""
    check_finite(a)
    check_finite(b)
    _, rb = np.linalg.qr(np.asarray(b, dtype=np.float64))
    _, ra = np.linalg.qr(np.asarray(a, dtype=np.float64).T)
    return np.sort(np.linalg.svd(rb @ ra.T, compute_uv=False)) * abs(scale)


def lowrank_spectrum(a: np.ndarray, b: np.ndarray, scale: float, n: int, m: int) -> Spectrum:
    """The M eigenvalues of W^T W (M - r of them zero) of W = scale * b @ a, N x M after orienting."""
    sv = lowrank_singular_values(a, b, scale)
    sv = sv[-m:]  # r > M cannot add nonzero eigenvalues
    evals = np.concatenate([np.zeros(m - sv.size), sv * sv])
    full = np.concatenate([np.zeros(m - sv.size), sv])
    tol = full[-1] * n * EPS64 if full.size else 0.0
    return Spectrum(evals=evals, sv_max=float(full[-1]), sv_min=float(full[0]),
                    rank_loss=int(np.count_nonzero(full <= tol)), N=n)
