"""Bootstrap confidence interval for alpha (ours, not in weightwatcher).

The n tail eigenvalues x >= xmin are resampled with replacement B times; each resample's alpha is
refitted at the same xmin with the estimator of the fit, alpha* = 1 + n / sum log(x* / xmin)
(n - 1 in the numerator below 20 eigenvalues, as the small-sample fit). The interval is the
percentile interval [q((1 - c) / 2), q((1 + c) / 2)] of the B values (c = confidence). xmin is
held fixed, so the interval reflects the sampling noise of the tail, not the choice of xmin.
"""

from __future__ import annotations

import numpy as np

SMALL_N = 20
BLOCK = 256  # resamples per vectorized block


def bootstrap_alpha(evals: np.ndarray, xmin: float, *, n_boot: int, confidence: float = 0.95,
                    seed: int = 0, small_n: bool = False) -> tuple[float, float]:
    """(alpha_lo, alpha_hi) of the tail evals >= xmin.

    >>> rng = np.random.default_rng(1)
    >>> tail = (1 - rng.random(2000)) ** (-1 / 2.0)              # Pareto, alpha = 3, xmin = 1
    >>> lo, hi = bootstrap_alpha(tail, 1.0, n_boot=500)
    >>> bool(lo < 3.0 < hi), bool(hi - lo < 0.2)
    (True, True)
    """
    x = np.asarray(evals, dtype=np.float64)
    logs = np.log(x[x >= xmin] / xmin)
    n = logs.size
    if n < 2 or n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    num = n - 1.0 if small_n else float(n)
    alphas = np.empty(n_boot)
    for start in range(0, n_boot, BLOCK):
        stop = min(start + BLOCK, n_boot)
        sums = logs[rng.integers(0, n, size=(stop - start, n))].sum(axis=1)
        with np.errstate(divide="ignore"):
            alphas[start:stop] = 1.0 + num / sums
    alphas = alphas[np.isfinite(alphas)]
    if alphas.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(alphas, [tail, 1.0 - tail])
    return float(lo), float(hi)
