"""Rank columns with a tolerance tied to the precision the values carry and to lambda_max.

weightwatcher counts singular values above sv_max * N * eps64 whatever precision the values
carry, so a rank-64 512 x 256 matrix stored in float32 (its rounded entries leave "zero"
singular values near eps32 * sv_max) reports rank 256. Here, as numpy.linalg.matrix_rank does
(it computes a float32 array in float32), with k = max(N, M), eps_s the storage eps (float32 for
every checkpoint format, float64 for a float64 array) and eps_r the route's arithmetic (float64:
the SVD, the fp64 Gram):

    SVD route:   rank = #{ sv > sv_max * k * eps_s }
    Gram route:  rank = #{ lambda > lambda_max * max((k * eps_s)^2, k * eps_r) }

The Gram rule is the SVD rule squared, floored by the Gram route's own error: its eigenvalues
are exact to ~eps_r * lambda_max absolute, so a zero singular value comes out as an eigenvalue
of that order (a singular value ~ sqrt(eps_r) * sv_max, which the SVD rule would count). A
matrix whose fp32-route result is kept has lambda_min > 1e-3 lambda_max, above either
tolerance, so it is full rank under both (`spectrum.FP32_RELATIVE_FLOOR`).

weak_rank_loss counts eigenvalues below tolerance * lambda_max, so it does not change with the
matrix's scale; weightwatcher's absolute count stays in the compat facade (`ww_weak_rank_loss`).
"""

from __future__ import annotations

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)


def precision_eps(dtype: np.dtype | type, route: np.dtype | type) -> float:
    """eps of the lower of the storage dtype and the route's dtype (float64 at best)."""
    eps = [np.finfo(np.float64).eps]
    for d in (dtype, route):
        kind = np.dtype(d)
        if kind.kind == "f":
            eps.append(np.finfo(kind).eps)
    return float(max(eps))


def matrix_rank(sv: np.ndarray, n: int, m: int, eps: float, via_svd: bool, route_eps: float = EPS64) -> int:
    """Rank of one matrix from its ascending singular values; `eps` the storage precision's
    (see the module docstring)."""
    if sv.size == 0 or sv[-1] <= 0:
        return 0
    k = max(n, m)
    if via_svd:
        return int(np.count_nonzero(sv > sv[-1] * k * eps))
    evals = sv * sv
    return int(np.count_nonzero(evals > evals[-1] * max((k * eps) ** 2, k * route_eps)))


def weak_rank_loss(evals: np.ndarray, tolerance: float) -> int:
    """Eigenvalues below tolerance * lambda_max (scale-invariant)."""
    if evals.size == 0:
        return 0
    return int(np.count_nonzero(evals < tolerance * float(evals[-1])))
