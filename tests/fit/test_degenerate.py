"""Spectra with no resolvable tail get status 'degenerate': no alpha, fingers, interval or Dragon
King; rows carrying it survive resume, the HTML report and the model plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tailscope
from tailscope.fit.degenerate import MIN_TAIL, checked, degenerate_reason
from tailscope.fit.powerlaw import PowerLawFit, fit_power_law

from conftest import planted_matrix

ALL_OPTIONS = {"fix_fingers": "clip_xmax", "bootstrap": 50, "dragon_kings": True}


def orthogonal(n: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


def spectrum_matrix(evals: np.ndarray, seed: int = 0) -> np.ndarray:
    return planted_matrix(np.random.default_rng(seed), evals.size, evals.size, np.sqrt(evals))


def assert_degenerate_row(row: pd.Series, word: str) -> None:
    assert row["status"] == "degenerate" and word in row["reason"], row["reason"]
    for col in ("alpha", "xmin", "D", "alpha_lo", "alpha_hi", "dk_pvalue", "raw_alpha"):
        assert np.isnan(row[col]), col
    assert row["num_fingers"] == 0 and row["dk_count"] == 0 and row["num_pl_spikes"] == 0
    assert row["warning"] == ""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_orthogonal_matrix_is_degenerate_not_a_huge_alpha(dtype):
    q = orthogonal(128).astype(dtype)
    raw = fit_power_law(np.linalg.svd(q.astype(np.float64), compute_uv=False) ** 2)
    assert raw.ok and raw.alpha > 1e3  # what the KS scan alone makes of rounding noise
    row = tailscope.analyze({"q.weight": q}, progress=False, **ALL_OPTIONS).details.iloc[0]
    assert_degenerate_row(row, "near-constant")


def test_near_constant_spectrum_is_degenerate():
    evals = 3.0 * (1.0 + 1e-5 * np.random.default_rng(1).random(200))
    row = tailscope.analyze({"w": spectrum_matrix(evals)}, progress=False, **ALL_OPTIONS).details.iloc[0]
    assert_degenerate_row(row, "near-constant")


def test_too_few_distinct_values_is_degenerate():
    evals = np.repeat([1.0, 2.0, 5.0], 40)
    fit = fit_power_law(evals)
    assert fit.ok  # the scan alone calls it a success
    assert "3 distinct" in degenerate_reason(evals, fit)
    row = tailscope.analyze({"w": spectrum_matrix(evals)}, progress=False, **ALL_OPTIONS).details.iloc[0]
    assert_degenerate_row(row, "distinct")


def test_tail_of_a_handful_of_points_is_degenerate():
    """A fit whose tail is the top k eigenvalues: degenerate exactly when k < MIN_TAIL."""
    evals = np.sort(np.random.default_rng(2).pareto(2.0, 300) + 1.0)
    for k in range(2, 9):
        fit = PowerLawFit(alpha=3.0, xmin=float(evals[-k]), xmax=float(evals[-1]), D=0.1, sigma=1.0, n_tail=k)
        out = checked(evals, fit)
        assert (out.status == "degenerate") == (k < MIN_TAIL), k
        if k < MIN_TAIL:
            assert f"holds {k} distinct" in out.reason and np.isnan(out.alpha)
        else:
            assert out is fit


def test_heavy_tailed_spectra_stay_success():
    rng = np.random.default_rng(3)
    for evals in (np.sort(rng.pareto(2.0, 400) + 1.0), np.r_[rng.uniform(0.05, 1, 300), rng.pareto(1.5, 100) + 1.0]):
        fit = fit_power_law(evals)
        assert checked(evals, fit) is fit and fit.ok


def test_degenerate_rows_survive_resume_report_and_plots(tmp_path):
    from safetensors.numpy import save_file

    from tailscope.plots.files import write_model_plots
    from tailscope.report.html import write_html

    rng = np.random.default_rng(4)
    tensors = {"a.weight": orthogonal(64).astype(np.float32),
               "b.weight": rng.standard_t(3, (96, 64)).astype(np.float32)}
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    first = tailscope.analyze(path, progress=False, results=tmp_path / "runs")
    second = tailscope.analyze(path, progress=False, results=tmp_path / "runs")
    assert sorted(first.details["status"]) == ["degenerate", "success"]
    assert second.reused == 2  # the degenerate row is kept, not recomputed
    pd.testing.assert_frame_equal(second.details, first.details, check_exact=True)
    html = write_html(second, tmp_path / "r.html").read_text()
    assert "degenerate" in html and html.count("<tr class=") >= 2
    assert write_model_plots(tmp_path / "plots", second.details, name="m")
