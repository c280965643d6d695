"""Dragon Kings planted 10-100x above a power-law tail: how often `dk_count` is exactly right.

Spectrum: 300 bulk eigenvalues U(0.05, 1) and a 500-point Pareto tail (alpha planted, xmin = 1),
then k kings, each at the tail's top times 10^U(1, 2) (10-100x above it). The row's fit is the KS fit
of the whole spectrum (kings included), as `analyze(..., dragon_kings=True)` computes it. "old" is
the previous count (each of the top 10 order statistics tested against the fitted power law at
Bonferroni level 0.05 / 10); "new" is the alpha-free gap count of `tailscope.fit.kings`.
Targets: exact >= 90%, over-count <= 5% of trials, null (k = 0) false positives near 5%.
"""

from __future__ import annotations

import numpy as np

from science.common import markdown_table
from tailscope.fit.dragon import dragon_kings, order_statistic_pvalues
from tailscope.fit.powerlaw import fit_power_law

TITLE = "Dragon Kings: planted kings counted exactly (dk_count)"
LEVEL = 0.05


def planted(rng: np.random.Generator, alpha: float, k: int) -> np.ndarray:
    """Bulk, Pareto tail and k kings 10-100x above the tail's top (ascending)."""
    tail = (1.0 - rng.random(500)) ** (-1.0 / (alpha - 1.0))
    kings = tail.max() * 10.0 ** rng.uniform(1.0, 2.0, k)
    return np.sort(np.r_[rng.uniform(0.05, 1.0, 300), tail, kings])


def counts(evals: np.ndarray) -> tuple[int, int]:
    """(old count, new dk_count) of a spectrum under its KS fit."""
    fit = fit_power_law(evals)
    tail = evals[evals >= fit.xmin]
    k = min(tail.size, 10)
    old = int(np.count_nonzero(order_statistic_pvalues(tail, fit.xmin, fit.alpha, k) < LEVEL / k))
    return old, dragon_kings(evals, fit.xmin, fit.alpha, confidence=1.0 - LEVEL).count


def run(quick: bool) -> str:
    trials = 100 if quick else 1000
    rows = []
    for alpha in (2.0, 2.5, 3.0):
        for k in (0, 1, 2, 3, 5):
            rng = np.random.default_rng(int(alpha * 1000) + k)
            got = np.array([counts(planted(rng, alpha, k)) for _ in range(trials)])
            old, new = got[:, 0], got[:, 1]
            rows.append((alpha, k, trials, f"{np.mean(old == k):.3f}", f"{np.mean(old > k):.3f}",
                         f"{np.mean(new == k):.3f}", f"{np.mean(new > k):.3f}", f"{np.mean(new < k):.3f}"))
    head = ["alpha", "planted kings", "trials", "old exact", "old over", "new exact", "new over", "new under"]
    return (__doc__.strip() + "\n\n" + markdown_table(head, rows)
            + "\n\nk = 0 rows: 'exact' = no false positive; 'over' = false-positive rate.")
