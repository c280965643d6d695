"""The power-law fit against known answers: planted Pareto spectra, the `powerlaw` package's MLE,
and weightwatcher's own WWFit on the same samples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tailscope
from tailscope.fit.powerlaw import fit_power_law

from conftest import planted_matrix


def pareto(rng: np.random.Generator, alpha: float, n: int, xmin: float = 0.3) -> np.ndarray:
    """Samples with density proportional to x^-alpha on [xmin, inf)."""
    return (rng.pareto(alpha - 1.0, n) + 1.0) * xmin


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5, 3.0, 4.0])
@pytest.mark.parametrize("n", [800, 3000])
def test_recovers_planted_exponent(alpha, n):
    """Mean over 10 seeds within 0.1 of the planted exponent; every seed within 0.4."""
    rng = np.random.default_rng(int(alpha * 10) + n)
    estimates = np.array([fit_power_law(pareto(rng, alpha, n)).alpha for _ in range(10)])
    assert abs(estimates.mean() - alpha) < 0.1, estimates
    assert np.abs(estimates - alpha).max() < 0.4, estimates


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.5])
def test_full_pipeline_recovers_planted_spectrum(alpha):
    """W = U diag(s) V^T with s^2 Pareto(alpha): analyze() on the matrix finds alpha."""
    rng = np.random.default_rng(7)
    m = 300
    evals = pareto(rng, alpha, m)
    w = planted_matrix(rng, 2 * m, m, np.sqrt(evals))
    row = tailscope.analyze({"w.weight": w}, progress=False).details.iloc[0]
    # eigenvalues recovered, to the fp32 Gram route's accuracy (W is read as float32; 600 x 300 takes that route)
    assert row["alpha"] == pytest.approx(fit_power_law(evals).alpha, rel=1e-5)
    assert abs(row["alpha"] - alpha) < 0.3
    assert row["lambda_max"] == pytest.approx(evals.max(), rel=1e-5)


def test_alpha_at_chosen_xmin_equals_powerlaw_package():
    import powerlaw

    # powerlaw 2.0 bounds its continuous alpha to [1, 3] by default, so planted exponents stay below 3
    rng = np.random.default_rng(1)
    for alpha in (1.6, 2.2, 2.8):
        data = pareto(rng, alpha, 1500)
        ours = fit_power_law(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = powerlaw.Fit(data, xmin=ours.xmin, verbose=False).power_law
        assert ours.alpha == pytest.approx(ref.alpha, rel=1e-10)
        assert ours.sigma == pytest.approx(ref.sigma, rel=1e-10)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=400),
    alpha=st.floats(min_value=1.2, max_value=8.0),
    seed=st.integers(min_value=0, max_value=2**31),
)
@example(n=9, alpha=2.0, seed=1)  # J and smallest D pick different xmin: weightwatcher reports smallest D
def test_identical_to_weightwatcher_wwfit(n, alpha, seed):
    """Same xmin, alpha, D and sigma as weightwatcher's WWFit, small-N path (< 20 points) included."""
    from weightwatcher.WW_powerlaw import WWFit

    data = np.sort(pareto(np.random.default_rng(seed), alpha, n))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ref = WWFit(data)
    ours = fit_power_law(data, thresh=0.0)
    assert ours.xmin == ref.xmin
    assert ours.alpha == pytest.approx(ref.alpha, rel=1e-9)
    assert ours.D == pytest.approx(ref.D, rel=1e-9, abs=1e-12)
    if n > 8:
        assert ours.sigma == pytest.approx(ref.sigma, rel=1e-9)
    else:  # whole-sample fallback: weightwatcher's sigma comes from its 0 placeholder alpha (negative)
        assert ours.sigma == pytest.approx((ours.alpha - 1) / np.sqrt(n), rel=1e-12)


def test_degenerate_inputs_fail_with_a_reason():
    assert fit_power_law(np.zeros(50)).status == "failed"
    assert "above" in fit_power_law(np.zeros(50)).reason
    flat = fit_power_law(np.full(30, 2.0))
    assert flat.status == "failed" and np.isnan(flat.alpha)


@pytest.mark.parametrize("n", [12, 20, 300, 1500])
def test_scan_is_the_same_whatever_the_block_size(monkeypatch, n):
    """The KS scan is computed in row blocks that skip the columns left of their first row: one
    row per block, cache-sized blocks and a single square block give the same D_i, bit for bit."""
    import tailscope.fit.powerlaw as powerlaw

    evals = np.sort(np.random.default_rng(n).pareto(2.5, n) + 1.0)
    fits = []
    for elements in (1, 1 << 16, 1 << 30):
        monkeypatch.setattr(powerlaw, "BLOCK_ELEMENTS", elements)
        fits.append(fit_power_law(evals))
    for fit in fits[:2]:
        assert np.array_equal(fit.Ds, fits[2].Ds) and (fit.alpha, fit.xmin, fit.D) == (fits[2].alpha, fits[2].xmin, fits[2].D)
