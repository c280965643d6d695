"""Bootstrap intervals: how often alpha_lo <= planted alpha <= alpha_hi, as users run it.

Each trial plants a spectrum of M eigenvalues, fits it with the KS scan (`fit_power_law`, xmin
chosen from the data) and takes `bootstrap_alpha` of the same eigenvalues, so the interval is
tested on the whole procedure, not at a known xmin. "pure": M Pareto draws (alpha planted,
xmin = 1). "bulk": M/4 Pareto draws above 1 and 3M/4 draws from a Marchenko-Pastur law
(Q = 2) scaled so that its edge is 1, i.e. the tail starts where the bulk ends, as in a trained
layer's ESD. The same trial seeds give the "fixed xmin" column: the older rule, the tail above
the fitted xmin resampled with xmin held, for comparison.
Target: coverage within 3 points of nominal at 90% and 95% in every cell; with T trials the
binomial standard error is sqrt(p(1 - p) / T), 1.5 points at 90% for T = 400.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from science.common import markdown_table, pareto_tail
from tailscope.fit.bootstrap import percentile_interval, resampled_alphas
from tailscope.fit.powerlaw import fit_power_law

TITLE = "Bootstrap intervals: coverage of the planted alpha (xmin re-chosen per resample)"
LEVELS = (0.90, 0.95)
SIZES = (128, 512, 2048)
ALPHAS = (2.0, 3.0, 4.0)


def mp_bulk(rng: np.random.Generator, n: int, q: float = 0.5) -> np.ndarray:
    """n draws of the Marchenko-Pastur law of ratio q, scaled so that the bulk edge is 1."""
    lo, hi = (1.0 - np.sqrt(q)) ** 2, (1.0 + np.sqrt(q)) ** 2
    grid = np.linspace(lo, hi, 4001)
    density = np.sqrt(np.clip((hi - grid) * (grid - lo), 0.0, None)) / (2.0 * np.pi * q * grid)
    cdf = np.cumsum(density)
    return np.interp(rng.random(n), cdf / cdf[-1], grid) / hi


def planted(rng: np.random.Generator, m: int, alpha: float, bulk: bool) -> np.ndarray:
    if not bulk:
        return pareto_tail(rng, m, alpha)
    return np.sort(np.r_[mp_bulk(rng, m - m // 4), pareto_tail(rng, m // 4, alpha)])


def fixed_xmin_alphas(evals: np.ndarray, xmin: float, n_boot: int, seed: int) -> np.ndarray:
    """The older rule: the tail above the fitted xmin resampled, alpha refitted at that xmin."""
    logs = np.log(evals[evals >= xmin] / xmin)
    sums = logs[np.random.default_rng(seed).integers(0, logs.size, size=(n_boot, logs.size))].sum(axis=1)
    with np.errstate(divide="ignore"):
        alphas = 1.0 + logs.size / sums
    return alphas[np.isfinite(alphas)]


def cell(args: tuple[int, float, bool, int, int]) -> tuple[float, ...]:
    """Coverage at each level, new rule then fixed-xmin rule, and the median 95% width."""
    m, alpha, bulk, trials, n_boot = args
    hits = np.zeros((2, len(LEVELS)))
    widths = []
    for t in range(trials):
        evals = planted(np.random.default_rng([m, int(alpha * 10), bulk, t]), m, alpha, bulk)
        fit = fit_power_law(evals)
        rules = (resampled_alphas(evals, n_boot=n_boot, seed=t), fixed_xmin_alphas(evals, fit.xmin, n_boot, t))
        for r, alphas in enumerate(rules):
            for k, level in enumerate(LEVELS):
                lo, hi = percentile_interval(alphas, level)
                hits[r, k] += lo <= alpha <= hi
            if r == 0:
                widths.append(hi - lo)  # the new rule's interval at the last level, 95%
    return (*(hits / trials).ravel(), float(np.median(widths)))


def run(quick: bool) -> str:
    trials, n_boot = (40, 100) if quick else (400, 200)
    grid = [(m, a, b) for m in SIZES for b in (False, True) for a in ALPHAS]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(cell, [(m, a, b, trials, n_boot) for m, a, b in grid]))
    rows = [(m, "bulk" if b else "pure", a, trials, *r) for (m, a, b), r in zip(grid, results)]
    header = ["M", "ESD", "planted alpha", "trials", "90%", "95%",
              "fixed xmin 90%", "fixed xmin 95%", "median 95% width"]
    off = sum(abs(r[4] - 0.90) > 0.03 for r in rows) + sum(abs(r[5] - 0.95) > 0.03 for r in rows)
    return (markdown_table(header, rows) + f"\n\n{n_boot} resamples per interval; {off} of "
            f"{2 * len(rows)} (cell, level) pairs are more than 3 points from nominal.")
