"""Marchenko-Pastur bulk fit of an ESD and its spikes, as weightwatcher 0.7.7's `mp_fit` does it.

weightwatcher rescales the eigenvalues to mean 1 (lambda * M / sum lambda), estimates their density
with a linear-kernel KDE (bandwidth 0.1) on 1000 points of [0, max + 0.5], and chooses the MP
scale sigma that minimizes the squared difference between the MP density and the KDE where the KDE
exceeds 0.01: a brute-force grid sigma = (0.05, 0.06, ..., 1.99) * sigma0, with sigma0 the scale
whose bulk edge is the largest eigenvalue, refined by Nelder-Mead (scipy's `brute` + `fmin`).
A sigma whose bulk edge lies left of the KDE's mode, right of the KDE's support, or whose lower
edge lies right of the mode is penalized (residual 1000 everywhere). Spikes are the eigenvalues
above the bulk edge plus a Tracy-Widom margin,

    lambda_+ = (sigma (1 + 1/sqrt(Q)))^2,   TW = Q^(-1/2) lambda_+^(2/3) M^(-2/3),
    spikes   = #{lambda > lambda_+ + sqrt(TW)}.

For Q = 1 the singular values are fitted to the quarter-circle law instead. Here `sigma` is a
standard deviation (weightwatcher's convention), unlike `rmt.py` whose sigma2 is a variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KDE_BANDWIDTH = 0.1
KDE_POINTS = 1000
KDE_THRESH = 0.01
PENALTY = 1000.0


@dataclass(frozen=True)
class MPFit:
    num_spikes: int
    sigma: float  # MP scale (std) in mean-1 units
    bulk_max: float  # lambda_+ in mean-1 units
    threshold: float  # lambda_+ + sqrt(TW): eigenvalues above it are spikes (mean-1 units)
    scale: float  # factor from eigenvalues of W^T W to mean-1 units


def linear_kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Density of a triangular (sklearn 'linear') kernel estimate at each grid point."""
    samples = np.sort(np.asarray(samples, dtype=np.float64))
    out = np.empty(grid.size)
    step = max(1, (1 << 22) // max(samples.size, 1))
    for start in range(0, grid.size, step):
        g = grid[start : start + step, None]
        out[start : start + step] = np.maximum(0.0, 1.0 - np.abs(g - samples[None, :]) / bandwidth).sum(axis=1)
    return out / (samples.size * bandwidth)


def _mp_density(x: np.ndarray, Q: float, sigma: float) -> tuple[np.ndarray, float, float]:
    """MP density with std `sigma`, zero (not NaN) outside its support; and its edges."""
    r = np.sqrt(1.0 / Q)
    hi, lo = (sigma * (1 + r)) ** 2, (sigma * (1 - r)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.nan_to_num(Q / (2 * np.pi * sigma * sigma * x) * np.sqrt((hi - x) * (x - lo)))
    return val, lo, hi


def _quarter_circle(x: np.ndarray, sigma: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(1.0 / (np.pi * sigma * sigma) * np.sqrt(4.0 - x**2))


class _Residual:
    """Sum of squared differences between the MP (or quarter-circle) law and the KDE."""

    def __init__(self, data: np.ndarray, Q: float) -> None:
        grid = np.linspace(0.0, float(np.max(data)) + 0.5, KDE_POINTS)
        dens = linear_kde(data, grid, KDE_BANDWIDTH)
        keep = dens > KDE_THRESH
        self.x, self.y, self.Q = grid[keep], dens[keep], Q
        self.mode = float(self.x[np.argmax(self.y)]) if self.x.size else 0.0

    def __call__(self, p: np.ndarray) -> float:
        sigma = float(np.ravel(p)[0])
        if self.Q == 1:
            return float(np.sum((_quarter_circle(self.x, sigma) - self.y) ** 2))
        model, lo, hi = _mp_density(self.x, self.Q, sigma)
        if hi < self.mode or hi > self.x.max() or lo > self.mode:
            return PENALTY**2 * self.x.size
        return float(np.sum((model - self.y) ** 2))


def mp_fit(evals: np.ndarray, N: int, M: int) -> MPFit:
    """Fit the MP bulk to the eigenvalues of W^T W (N x M, N >= M) and count the spikes above it."""
    from scipy import optimize

    evals = np.asarray(evals, dtype=np.float64)
    Q = N / M
    scale = evals.size / float(np.sum(evals))
    scaled = evals * scale
    sigma0 = np.sqrt(np.max(scaled) / (1.0 + 1.0 / np.sqrt(Q)) ** 2)
    data = np.sqrt(scaled) if Q == 1 else scaled
    grid = (slice(0.05 * sigma0, 2.0 * sigma0, 0.01 * sigma0),)
    with np.errstate(all="ignore"):
        best = optimize.brute(_Residual(data, Q), grid, full_output=True)[0]
    sigma = float(np.ravel(best)[0])
    bulk_max = (sigma * (1 + 1 / np.sqrt(Q))) ** 2
    tw = 1 / np.sqrt(Q) * bulk_max ** (2 / 3) * M ** (-2 / 3)
    threshold = bulk_max + np.sqrt(tw)
    return MPFit(int(np.sum(scaled > threshold)), sigma, float(bulk_max), float(threshold), float(scale))
