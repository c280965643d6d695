"""The bootstrap interval of alpha, tested on the whole procedure as users run it: planted spectra,
xmin chosen by the KS scan, the interval from resamples that re-choose xmin."""

from __future__ import annotations

import numpy as np
import pytest

from tailscope.fit.bootstrap import FULL_SCAN, bootstrap_alpha, candidate_ranks, resampled_alphas, scan_alphas
from tailscope.fit.powerlaw import fit_power_law


def pareto(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    return (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def with_bulk(rng: np.random.Generator, alpha: float) -> np.ndarray:
    """192 Marchenko-Pastur eigenvalues of a Gaussian 384x192 matrix, scaled to edge 1, below a
    64-point Pareto tail starting at 1."""
    g = rng.standard_normal((384, 192))
    bulk = np.linalg.eigvalsh(g.T @ g)
    return np.sort(np.r_[bulk / bulk.max(), pareto(rng, 64, alpha)])


@pytest.mark.parametrize("n", [3, 7, 8, 12, 19, 20, 60, 200])
def test_the_resample_scan_is_the_fit_power_law_rule(n):
    rng = np.random.default_rng(n)
    rows = np.sort(pareto(rng, n * 30, 2.5).reshape(30, n), axis=1)
    rows[:4, -3:] = rows[:4, -1:]                                      # ties at the top
    got = scan_alphas(np.log(rows), np.arange(n - 1))
    want = np.array([fit_power_law(r).alpha for r in rows])
    np.testing.assert_array_equal(got, want)


def test_the_candidate_grid_above_full_scan_size_tracks_the_full_scan():
    n = 4 * FULL_SCAN
    rng = np.random.default_rng(0)
    rows = np.log(np.sort(pareto(rng, 60 * n, 3.0).reshape(60, n), axis=1))
    full, grid = scan_alphas(rows, np.arange(n - 1)), scan_alphas(rows, candidate_ranks(n))
    assert candidate_ranks(n).size < n / 5
    assert np.mean(np.abs(grid - full)) < 0.2 * np.std(full)
    assert abs(np.std(grid) / np.std(full) - 1.0) < 0.15


@pytest.mark.parametrize("spectrum", ["pure", "bulk"])
def test_interval_covers_the_planted_alpha_at_nominal_rate(spectrum):
    covered = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        evals = np.sort(pareto(rng, 256, 3.0)) if spectrum == "pure" else with_bulk(rng, 3.0)
        lo, hi = bootstrap_alpha(evals, n_boot=100, confidence=0.9, seed=seed)
        covered.append(lo <= 3.0 <= hi)
    assert 0.85 <= np.mean(covered) <= 0.95


def test_interval_holds_the_fitted_alpha_and_narrows_with_more_eigenvalues():
    rng = np.random.default_rng(3)
    widths = []
    for n in (100, 1000):
        evals = pareto(rng, n, 2.5)
        lo, hi = bootstrap_alpha(evals, n_boot=200, seed=1)
        assert lo <= fit_power_law(evals).alpha <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_same_seed_same_interval_and_nothing_to_fit_is_nan():
    evals = pareto(np.random.default_rng(0), 300, 2.0)
    assert bootstrap_alpha(evals, n_boot=50, seed=7) == bootstrap_alpha(evals, n_boot=50, seed=7)
    assert resampled_alphas(np.ones(10), n_boot=20).size == 0
    assert all(np.isnan(bootstrap_alpha(np.array([2.0]), n_boot=20)))
