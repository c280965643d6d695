"""Marchenko-Pastur fit of the bulk, as weightwatcher 0.7.7's ``mp_fit=True`` does it.

The eigenvalues are scaled to mean 1 (lambda * n / sum lambda). A linear-kernel density estimate
(bandwidth 0.1) is evaluated on 1000 points of [0, max + 0.5]; grid points where it is below 0.01
are dropped. sigma is chosen by scipy's ``optimize.brute`` (a grid of step 0.01 * s0 over
[0.05 * s0, 2 * s0), s0 = sqrt(max) / (1 + 1/sqrt(Q)), then Nelder-Mead from the best point) to
minimize the squared difference between the MP density of (Q, sigma) and the estimate; a sigma
whose MP edges miss the peak of the estimate, or whose upper edge lies beyond the grid, scores
1000 per point. For Q == 1 the singular values are fitted to the quarter-circle law instead.

    bulk_max   = (sigma * (1 + 1/sqrt(Q)))^2                     (mean-1 units)
    num_spikes = #{lambda > bulk_max + sqrt(Q^-1/2 * bulk_max^(2/3) * M^(-2/3))}  (a Tracy-Widom margin)
    mp_softrank = bulk_max / lambda_max

`bulk_max` is reported back in the original units; `sigma` stays in mean-1 units (as weightwatcher).
weightwatcher re-fits the density for every trial sigma (sklearn KernelDensity); the estimate does
not depend on sigma, so it is computed once here, exactly (prefix sums), which is most of the speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tailscope.fit.rmt import mp_density

BANDWIDTH = 0.1
GRID_POINTS = 1000
DENSITY_FLOOR = 0.01
BAD_RESIDUAL = 1000.0


@dataclass(frozen=True)
class MPFit:
    sigma: float  # MP scale, mean-1 units
    bulk_max: float  # MP upper edge, original units
    num_spikes: int  # eigenvalues beyond bulk_max plus the Tracy-Widom margin
    softrank: float  # bulk_max / lambda_max
    bulk_min: float  # MP lower edge, original units
    w_scale: float  # sqrt(n / sum lambda): the factor applied to W to bring the ESD to mean 1


def linear_kde(points: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    """Density of a linear (triangular) kernel estimate: mean of max(0, 1 - |x - p| / h) / h."""
    p = np.sort(points)
    csum = np.concatenate([[0.0], np.cumsum(p)])
    lo = np.searchsorted(p, grid - h, side="left")
    mid = np.searchsorted(p, grid, side="left")
    hi = np.searchsorted(p, grid + h, side="right")
    n_left, n_right = mid - lo, hi - mid
    s_left, s_right = csum[mid] - csum[lo], csum[hi] - csum[mid]
    dist = (n_left * grid - s_left) + (s_right - n_right * grid)  # sum of |x - p| within h
    return ((n_left + n_right) - dist / h) / (p.size * h)


def _quarter_circle(x: np.ndarray, sigma: float) -> np.ndarray:
    # weightwatcher's quarter_circle_fun: its support is |x| < 2 whatever sigma is
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.sqrt(4.0 - x**2) / (np.pi * sigma**2))


def _residual_fn(to_fit: np.ndarray, Q: float):  # noqa: ANN202
    grid = np.linspace(0.0, float(np.max(to_fit)) + 0.5, GRID_POINTS)
    dens = linear_kde(to_fit, grid, BANDWIDTH)
    keep = dens > DENSITY_FLOOR
    x, y = grid[keep], dens[keep]
    peak_x = x[np.argmax(y)] if x.size else 0.0

    def residual(p: np.ndarray) -> float:
        sigma = float(np.ravel(p)[0])
        if Q == 1:
            return float(np.sum((_quarter_circle(x, sigma) - y) ** 2))
        a = (sigma * (1 - 1 / np.sqrt(Q))) ** 2
        b = (sigma * (1 + 1 / np.sqrt(Q))) ** 2
        if b < peak_x or b > x.max() or a > peak_x:
            return BAD_RESIDUAL**2 * x.size
        return float(np.sum((mp_density(x, Q, sigma**2) - y) ** 2))

    return residual


def fit_sigma(scaled: np.ndarray, Q: float) -> float:
    """weightwatcher's fit_density_with_range on mean-1 eigenvalues."""
    from scipy import optimize

    s0 = np.sqrt(np.max(scaled)) / (1.0 + 1.0 / np.sqrt(Q))
    to_fit = np.sqrt(scaled) if Q == 1 else scaled
    rng = (slice(0.05 * s0, 2.0 * s0, 0.01 * s0),)
    out = optimize.brute(_residual_fn(to_fit, Q), rng, full_output=True)
    return float(np.ravel(out[0])[0])


def mp_fit(evals: np.ndarray, N: int, M: int) -> MPFit:
    """MP fit of an eigenvalue array of a layer with N x M matrices (Q = N / M)."""
    evals = np.asarray(evals, dtype=np.float64)
    Q = N / M
    scale = evals.size / float(np.sum(evals))
    scaled = evals * scale
    sigma = fit_sigma(scaled, Q)
    bulk_max = (sigma * (1 + 1 / np.sqrt(Q))) ** 2
    tw = 1 / np.sqrt(Q) * bulk_max ** (2 / 3) * M ** (-2 / 3)
    spikes = int(np.count_nonzero(scaled > bulk_max + np.sqrt(tw)))
    bulk_min = (sigma * (1 - 1 / np.sqrt(Q))) ** 2
    return MPFit(sigma=sigma, bulk_max=float(bulk_max / scale), num_spikes=spikes,
                 softrank=float(bulk_max / np.max(scaled)), bulk_min=float(bulk_min / scale),
                 w_scale=float(np.sqrt(scale)))
