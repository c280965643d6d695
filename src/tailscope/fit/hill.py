"""PL_Alpha_Hill: the tail exponent of TempBalance (Zhou et al., NeurIPS 2023), AlphaPruning (Lu et
al., NeurIPS 2024) and FARMS (Ren et al., ICML 2025), as their public code computes it, so that a
layer allocation can use the same number as those papers.

With the eigenvalues sorted ascending, x_0 <= ... <= x_{N-1} (all of them: the papers' default
`filter_zeros=False` keeps eigenvalues below 1e-5; `filter_zeros=True` drops them first), and a
candidate xmin = x_i with n = N - i points above it:

    alpha_i = 1 + n / (sum_{j >= i} log x_j - n log x_i)
    D_i     = max_{k < n} | 1 - (x_{i+k} / x_i)^(1 - alpha_i) - k / n |

xmin choices (the code's `fix_fingers`):

- ``'median'`` (``'xmin_mid'``, AlphaPruning's default): i = int(N / 2); alpha = alpha_i. No scan.
- ``'peak'`` (``'xmin_peak'``, TempBalance's default): a 100-bin histogram of log10 x over
  [min, max]; p = 10^(left edge of the fullest bin). Candidates i = 0..N-2 are scanned in order,
  skipping those with x_i < log10(0.95 p) and stopping at the first with x_i > 1.5 p; alpha is
  alpha_i of the smallest D_i (D_i = 1 where alpha_i <= 1 or skipped; the first on ties; alpha 0
  if no candidate qualifies, as the code's zero-initialized array gives).

The lower bound compares an eigenvalue with log10(0.95 p), not with 0.95 p: that is the public
code's arithmetic, kept on purpose so the numbers match the papers' (for p < ~10.5 the bound
is below 1 and admits nearly every candidate below the peak).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

HillXmin = Literal["median", "peak"]
BINS = 100
EVALS_THRESH = 1e-5


def hill_alpha(evals: np.ndarray, xmin: HillXmin = "median", *, filter_zeros: bool = False, bins: int = BINS) -> float:
    """PL_Alpha_Hill of an eigenvalue array (any order); NaN when fewer than 2 positive values."""
    x = np.sort(np.asarray(evals, dtype=np.float64))
    if filter_zeros and np.any(x > EVALS_THRESH):
        x = x[x > EVALS_THRESH]  # the code falls back to all eigenvalues when none passes
    x = x[x > 0]  # log 0: the code would give -inf and NaN; no finite alpha uses a zero
    if x.size < 2 or x[0] == x[-1]:
        return float("nan")
    logs = np.log(x)
    if xmin == "median":
        return float(_alpha_at(logs, x.size // 2))
    return _peak_alpha(x, logs, bins)


def _alpha_at(logs: np.ndarray, i: int) -> float:
    n = logs.size - i
    return 1.0 + n / (np.sum(logs[i:]) - n * logs[i])


def _ks(x: np.ndarray, i: int, alpha: float) -> float:
    n = x.size - i
    seq = np.arange(n)
    return float(np.max(np.abs(1.0 - (x[i:] / x[i]) ** (1.0 - alpha) - seq / n)))


def _peak_alpha(x: np.ndarray, logs: np.ndarray, bins: int) -> float:
    log10 = np.log10(x)
    counts, edges = np.histogram(log10, bins=bins, range=(log10[0], log10[-1]))
    peak = 10.0 ** edges[int(np.argmax(counts))]
    low, high = np.log10(0.95 * peak), 1.5 * peak
    alphas, ds = np.zeros(x.size - 1), np.ones(x.size - 1)  # the code's initial arrays
    for i in range(x.size - 1):
        if x[i] < low:
            continue
        if x[i] > high:
            break
        alphas[i] = _alpha_at(logs, i)
        if alphas[i] > 1:
            ds[i] = _ks(x, i, alphas[i])
    return float(alphas[int(np.argmin(ds))])
