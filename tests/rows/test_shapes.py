"""Rank columns, PL_Alpha_Hill and FARMS against independent oracles (numpy.linalg.matrix_rank,
the Hill formula computed directly, planted Pareto exponents, i.i.d. matrices of many shapes)."""

from __future__ import annotations

import numpy as np
import pytest

import tailscope
from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError
from tailscope.fit.hill import hill_alpha
from tailscope.rows.farms import Windows, farms_eigenvalues, windows_of


def _low_rank(rng, n, m, r, scale, dtype):
    return (scale * rng.standard_normal((n, r)) @ rng.standard_normal((r, m)) / np.sqrt(r)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_rank_columns_agree_with_numpy_matrix_rank(dtype, scale):
    """Exact rank-64 512 x 256 (and rank-200 / full-rank) matrices at three scales: matrix_rank and
    rank_loss as numpy.linalg.matrix_rank on the same array (float32 computed in float32 there)."""
    rng = np.random.default_rng(1)
    for r in (64, 200, 256):
        w = _low_rank(rng, 512, 256, r, scale, dtype)
        row = tailscope.analyze({"fc.weight": w}, progress=False).details.iloc[0]
        expected = int(np.linalg.matrix_rank(w))
        assert expected == r
        assert row["matrix_rank"] == expected and row["rank_loss"] == 256 - expected, (r, row["matrix_rank"])


def test_weak_rank_loss_is_scale_invariant_and_compat_keeps_weightwatchers():
    rng = np.random.default_rng(2)
    sv = np.geomspace(1e-5, 1.0, 100)  # eigenvalues 1e-10 .. 1
    u, _ = np.linalg.qr(rng.standard_normal((300, 100)))
    v, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    base = (u * sv) @ v.T
    counts = [tailscope.analyze({"fc.weight": base * s}, progress=False).details.iloc[0]["weak_rank_loss"] for s in (1e-2, 1.0, 1e2)]
    assert counts == [int(np.count_nonzero(sv**2 < 1e-6))] * 3
    import tailscope.compat as ww

    frame = ww.WeightWatcher().analyze(model={"fc.weight": base * 1e2})
    assert frame.iloc[0]["weak_rank_loss"] == int(np.count_nonzero((sv * 1e2) ** 2 < 1e-6))


def _hill_direct(x: np.ndarray, i: int) -> float:
    tail = np.sort(x)[i:]
    return 1.0 + tail.size / np.sum(np.log(tail / tail[0]))


def test_hill_median_is_the_formula_and_recovers_a_planted_exponent():
    rng = np.random.default_rng(3)
    x = (1.0 - rng.random(20001)) ** (-1.0 / 2.0)  # density exponent 3
    assert hill_alpha(x, "median") == pytest.approx(_hill_direct(x, x.size // 2), rel=1e-12)
    assert abs(hill_alpha(x, "median") - 3.0) < 0.05


def test_hill_peak_is_the_papers_scan():
    """The scan written out from the formula: histogram peak p, candidates from log10(0.95 p) up to
    1.5 p, the KS-smallest one's alpha."""
    rng = np.random.default_rng(4)
    x = np.sort(np.concatenate([rng.uniform(0.5, 2.0, 400), 2.0 * (1.0 - rng.random(100)) ** (-1.0 / 1.5)]))
    counts, edges = np.histogram(np.log10(x), bins=100)
    p = 10 ** edges[np.argmax(counts)]
    best = (1.0, 0.0)
    for i in range(x.size - 1):
        if x[i] < np.log10(0.95 * p) or x[i] > 1.5 * p:
            continue
        a = _hill_direct(x, i)
        tail = x[i:]
        d = np.max(np.abs(1 - (tail / tail[0]) ** (1 - a) - np.arange(tail.size) / tail.size))
        best = min(best, (d, a))
    assert hill_alpha(x, "peak") == pytest.approx(best[1], rel=1e-12)


def test_farms_windows_have_one_shape_and_cover_the_matrix():
    w = np.arange(1536 * 576, dtype=np.float64).reshape(1536, 576)
    wins = windows_of(w, Windows())
    assert len(wins) == 100 and {x.shape for x in wins} == {(200, 100)}
    assert wins[0][0, 0] == w[0, 0] and wins[-1][-1, -1] >= w[1536 - 20, 576 - 20]
    small = windows_of(np.zeros((64, 48)), Windows())
    assert {x.shape for x in small} == {(64, 32)}  # shrunk to fit at the same aspect ratio


def test_farms_removes_the_aspect_ratio_bias_on_iid_student_t():
    """i.i.d. Student-t(3) matrices, Q in {1, 4, 16}: alpha_farms spreads < 0.1, alpha far more."""
    rng = np.random.default_rng(5)
    rows = [tailscope.analyze({"fc.weight": rng.standard_t(3.0, (256 * q, 256))}, progress=False, farms=True).details.iloc[0]
            for q in (1, 4, 16)]
    farms = [r["alpha_farms"] for r in rows]
    alpha = [r["alpha"] for r in rows]
    assert np.ptp(farms) < 0.1 and np.ptp(alpha) > 3 * np.ptp(farms), (farms, alpha)


def test_farms_torch_route_equals_numpy():
    rng = np.random.default_rng(6)
    w = rng.standard_t(3.0, (700, 300))
    np.testing.assert_allclose(farms_eigenvalues([w], Windows(), "torch:cpu"), farms_eigenvalues([w], Windows()), rtol=1e-9, atol=1e-9)


def test_options_are_validated_and_columns_appear():
    with pytest.raises(ConfigError, match="hill"):
        AnalysisConfig(hill="mean")
    with pytest.raises(ConfigError, match="farms_q"):
        AnalysisConfig(farms_q=0.5)
    d = tailscope.analyze({"fc.weight": np.random.default_rng(0).standard_normal((400, 200))}, progress=False,
                          farms=True, hill="peak").details
    assert np.isfinite(d.loc[0, "alpha_farms"]) and np.isfinite(d.loc[0, "alpha_hill"])
