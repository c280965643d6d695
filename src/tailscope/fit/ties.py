"""Is a power-law fit of float32-route eigenvalues safe, or could fp32 rounding flip its xmin?

The fp32 Gram route (`tailscope.spectrum.routes`) leaves every eigenvalue with an absolute error of
order eps32 * sqrt(M) * lambda_max (measured on SmolLM2's 1536 x 576 MLP matrices: at most
1.5 such units). The KS scan picks xmin = argmin D_i; where two candidates' D are closer than
that rounding can move them (SmolLM2's blk.26.ffn_up: two minima 1.2e-5 apart), fp32 and fp64
pick different xmins and alpha jumps (0.40 there). This module bounds how far the error can move
each D_i and alpha, so that the route redoes only such matrices in float64.

Bound. An absolute error of at most E on each eigenvalue moves log x_j by at most E / x_i for
a tail above candidate x_i, hence log(x_j / x_i) by at most 2E / x_i. The fitted CDF
1 - (x_j/x_i)^(1 - alpha) moves by at most (alpha - 1) * 2E/x_i through the ratio and, since
alpha - 1 = n / sum log(x_j/x_i) moves by at most (alpha - 1)^2 * 2E/x_i and
t * exp(-(alpha-1) t) <= 1 / (e (alpha - 1)), by at most (alpha - 1) * 2E/x_i / e through alpha.
The empirical CDF is rank-based and does not move. So |dD_i| <= 2 (1 + 1/e) (alpha_i - 1) E / x_i.
Measured on every fp32-route matrix of SmolLM2 and MiniLM, the true |dD_i| stayed under 0.62 of
this bound taken with E = 1 unit, so FP32_ERROR_UNITS = 2 leaves a ~3x margin while redoing
about a third of SmolLM2's MLP matrices (4 units: a half; `bench/science/fp32_route.py`).
"""

from __future__ import annotations

import math

import numpy as np

from tailscope.fit.powerlaw import fit_power_law

EPS32 = float(np.finfo(np.float32).eps)
FP32_ERROR_UNITS = 2.0  # assumed |error| of an fp32-route eigenvalue, in eps32 * sqrt(M) * lambda_max
ALPHA_BUDGET = 5e-4  # half the 1e-3 the route promises: the rest is left to the fit itself
SENSITIVITY = 2.0 * (1.0 + 1.0 / math.e)


def fp32_error(evals: np.ndarray, m: int) -> float:
    """The assumed absolute error of each fp32-route eigenvalue of an N x M matrix."""
    return FP32_ERROR_UNITS * EPS32 * math.sqrt(m) * float(evals[-1])


def fit_is_fragile(evals: np.ndarray, error: float, thresh: float = 1e-5) -> bool:
    """Whether eigenvalue errors up to `error` (absolute) could change the KS-chosen xmin, or move
    alpha at the chosen xmin by more than ALPHA_BUDGET. A failed fit is not fragile (nothing to
    protect: the same failure follows in float64)."""
    fit = fit_power_law(evals, thresh=thresh)
    if not fit.ok or fit.Ds.size == 0:
        return False
    best = int(np.argmin(fit.Ds))
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = SENSITIVITY * (fit.alphas - 1.0) / fit.xmins  # dD_i per unit of eigenvalue error
    eligible = (fit.Ds < 1.0) & np.isfinite(sens)
    margin = fit.Ds - fit.Ds[best] - error * (sens + sens[best])
    margin[best] = np.inf
    if np.any(eligible & (margin <= 0.0)):
        return True
    alpha_shift = (fit.alpha - 1.0) ** 2 * 2.0 * error / fit.xmin
    return bool(alpha_shift > ALPHA_BUDGET)
