"""How many Dragon Kings: an alpha-free gap test on the top order statistics of the tail (ours).

The count of `tailscope.fit.dragon` used to test each of the top K eigenvalues against the fitted
power law; alpha is fitted with the kings in the tail, which pulls it down, so planted kings were
missed (counted exactly in 57-77% of trials) while the sample's own top values were flagged too
(count above the planted number in 10-17%). This test needs no alpha.

Under a power law above xmin, y = log(x / xmin) of the n tail values is an Exponential(alpha - 1)
sample, and by Renyi's representation the normalized spacings of its descending order statistics,
E_j = j * (y_(j) - y_(j+1)), are i.i.d. Exponential(alpha - 1), whatever alpha. A Dragon King
boundary after the top k values is one anomalously large gap E_k. Test it against the m gaps just
below it, R_k = E_(k+1) + ... + E_(k+m) (m = min(M_REF, n - 1 - k)): under the power law
E_k / R_k is the ratio of an Exponential(1) to an independent Gamma(m, 1), so exactly

    p_k = P(E_k / R_k >= t) = (1 + t)^(-m).

The k = 1..K gaps are tested at weighted Bonferroni levels level * w_k, w_k proportional to 1 / k
(Dragon Kings are few, so most of the level goes to the top gaps; the weights sum to 1), and the
count is the largest significant k: the number of top values above the deepest significant gap.
Every gap below the planted kings is a null gap, so the count exceeds the planted number with
probability <= level, and on a clean power law the count is > 0 with probability <= level.
Detectability is bounded by the law itself: k kings r times above the tail's top give a gap whose
null probability is about r^(-k (alpha - 1)) (one king 10x above an alpha = 2 tail is a 10% event,
not detectable at any useful level).
"""

from __future__ import annotations

import numpy as np

M_REF = 50


def gap_pvalues(tail: np.ndarray, k_max: int, level: float, m_ref: int = M_REF) -> tuple[int, np.ndarray]:
    """(count, p_1..p_K) for an ascending tail, K <= k_max gaps each with a reference gap.

    Top-down: with c kings found so far, gap j is spacing number j - c of the clean sample under
    "exactly c kings", so it and its reference gaps are normalized from there."""
    y = np.log(np.sort(np.asarray(tail, dtype=np.float64))[::-1])
    d = -np.diff(y)  # y_(j) - y_(j+1), j = 1..n-1
    k = min(k_max, d.size - 1)
    if k < 1:
        return 0, np.empty(0)
    levels = level * level_weights(k)
    p = np.empty(k)
    count = 0
    for j in range(1, k + 1):
        pos = j - count
        ref = d[j : j + m_ref] * (pos + np.arange(1, min(m_ref, d.size - j) + 1))
        total = float(ref.sum())
        gap = d[j - 1] * pos
        p[j - 1] = (1.0 + gap / total) ** (-ref.size) if total > 0 else float(gap == 0)
        if p[j - 1] < levels[j - 1]:
            count = j
    return count, p


def level_weights(k: int) -> np.ndarray:
    """w_1..w_k proportional to 1/j, summing to 1."""
    w = 1.0 / np.arange(1, k + 1)
    return w / w.sum()


def king_count(tail: np.ndarray, k_max: int, level: float) -> tuple[int, np.ndarray]:
    """(number of Dragon Kings, gap p-values) of an ascending tail at the family-wise `level`.

    >>> rng = np.random.default_rng(0)
    >>> tail = np.sort((1 - rng.random(500)) ** (-1 / 1.5))          # Pareto, alpha = 2.5
    >>> king_count(tail, 10, 0.05)[0], king_count(np.r_[tail, tail[-1] * np.array([20, 30, 60])], 10, 0.05)[0]
    (0, 3)
    """
    return gap_pvalues(tail, k_max, level)
