"""The alpha-free Dragon-King count (`tailscope.fit.kings`) on planted kings and clean power laws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kstest

import tailscope
from tailscope.fit.dragon import dragon_kings
from tailscope.fit.kings import gap_pvalues, king_count
from tailscope.fit.powerlaw import fit_power_law

from conftest import planted_matrix


def pareto(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    return np.sort((1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0)))


def with_kings(rng: np.random.Generator, alpha: float, k: int) -> np.ndarray:
    """Bulk, a 500-point Pareto tail and k kings 10-100x above its top."""
    tail = pareto(rng, 500, alpha)
    return np.sort(np.r_[rng.uniform(0.05, 1.0, 300), tail, tail[-1] * 10.0 ** rng.uniform(1, 2, k)])


def test_top_gap_pvalue_is_uniform_on_a_clean_power_law():
    """p_1 = (1 + E_1 / R_1)^-m is exact under the null (Renyi spacings): uniform on [0, 1]."""
    rng = np.random.default_rng(0)
    p1 = [gap_pvalues(pareto(rng, 200, 2.5), 10, 0.05)[1][0] for _ in range(600)]
    assert kstest(p1, "uniform").pvalue > 0.01


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_false_positive_rate_is_at_most_the_level(alpha):
    rng = np.random.default_rng(int(alpha))
    hits = np.mean([king_count(pareto(rng, 300, alpha), 10, 0.05)[0] > 0 for _ in range(500)])
    assert 0.015 <= hits <= 0.075


def test_count_needs_no_alpha():
    """Log-spacing ratios are unchanged by x -> s * x^a (another alpha, another scale)."""
    tail = with_kings(np.random.default_rng(1), 2.5, 3)
    base = king_count(tail, 10, 0.05)
    other = king_count(7.0 * tail**1.7, 10, 0.05)
    assert base[0] == other[0] == 3
    np.testing.assert_allclose(base[1], other[1], rtol=1e-8)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_planted_kings_counted_exactly(k):
    rng = np.random.default_rng(10 + k)
    got = []
    for _ in range(100):
        evals = with_kings(rng, 3.0, k)
        fit = fit_power_law(evals)
        got.append(dragon_kings(evals, fit.xmin, fit.alpha).count)
    got = np.array(got)
    assert np.mean(got == k) >= 0.9 and np.mean(got > k) <= 0.08


def test_dk_count_through_analyze():
    rng = np.random.default_rng(5)
    evals = with_kings(rng, 3.0, 3)
    w = planted_matrix(rng, evals.size, evals.size, np.sqrt(evals))
    row = tailscope.analyze({"fc.weight": w}, progress=False, dragon_kings=True).details.iloc[0]
    assert row["dk_count"] == 3 and row["dk_pvalue"] < 1e-3
