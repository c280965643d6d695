"""Dragon-King test (ours, not in weightwatcher): are the largest eigenvalues too far out for the
fitted power law?

Under the fit, the n tail eigenvalues (those >= xmin) are n i.i.d. draws from a Pareto law with
survival S(x) = (x / xmin)^(1 - alpha). The j-th largest of them is >= x exactly when at least j
of the n draws are >= x, so

    p_j = P(X_(j) >= x_(j)) = P(Binomial(n, S(x_(j))) >= j),

and for the largest (j = 1) p_1 = 1 - (1 - S(x_max))^n: `dk_pvalue`. alpha is fitted on the same
tail, outliers included; that makes the test conservative (the outliers pull alpha down and S up).

`dk_count` is the alpha-free gap count of `tailscope.fit.kings` at level 1 - confidence (the number
of top values above the deepest significant log-spacing gap, K = min(n, max_kings) gaps tested).
Counting the p_j above instead (each below (1 - confidence) / K) missed planted kings, since the
kings pull the fitted alpha down, and flagged the sample's own top values next to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tailscope.fit.kings import king_count

MAX_KINGS = 10


@dataclass(frozen=True)
class DragonKings:
    pvalue: float  # p_1, for the largest eigenvalue
    count: int  # top eigenvalues above the deepest significant gap (`tailscope.fit.kings`)
    pvalues: np.ndarray  # p_1..p_K


def order_statistic_pvalues(tail: np.ndarray, xmin: float, alpha: float, k: int) -> np.ndarray:
    """p_j for the k largest of the ascending `tail` under Pareto(alpha, xmin)."""
    from scipy.stats import binom

    n = tail.size
    top = tail[::-1][:k]
    surv = np.clip((top / xmin) ** (1.0 - alpha), 0.0, 1.0)
    j = np.arange(1, top.size + 1)
    return binom.sf(j - 1, n, surv)  # P(B >= j) = P(B > j - 1)


def dragon_kings(evals: np.ndarray, xmin: float, alpha: float, *, confidence: float = 0.95,
                 max_kings: int = MAX_KINGS) -> DragonKings:
    """The test on the eigenvalues >= xmin of an eigenvalue array.

    >>> rng = np.random.default_rng(0)
    >>> tail = np.sort((1 - rng.random(1000)) ** (-1 / 1.5))   # Pareto, alpha = 2.5, xmin = 1
    >>> dragon_kings(tail, 1.0, 2.5).pvalue > 0.05, dragon_kings(np.r_[tail, 1e5], 1.0, 2.5).count
    (True, 1)
    """
    x = np.sort(np.asarray(evals, dtype=np.float64))
    tail = x[x >= xmin]
    if tail.size == 0 or not np.isfinite(alpha) or alpha <= 1:
        return DragonKings(float("nan"), 0, np.empty(0))
    k = min(tail.size, max_kings)
    p = order_statistic_pvalues(tail, xmin, alpha, k)
    return DragonKings(float(p[0]), king_count(tail, k, 1.0 - confidence)[0], p)
