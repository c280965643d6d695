"""The optional diagnostic columns against oracles with a known answer (synthetic spectra and matrices,
closed forms, the `powerlaw` package). weightwatcher parity is in test_diagnostics_ww.py."""

from __future__ import annotations

import numpy as np
import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import ConfigError
from tailscope.fit.detx import detx
from tailscope.fit.dragon import dragon_kings
from tailscope.fit.fingers import fit_clipped, fit_dragon_kings
from tailscope.fit.mp import linear_kde, mp_fit
from tailscope.fit.powerlaw import fit_power_law
from tailscope.fit.rmt import bulk_edge, tracy_widom_width
from tailscope.fit.tpl import compare_tails
from tailscope.rows.metrics import DIAGNOSTIC_COLUMNS

from conftest import planted_matrix

PLANTED_ALPHA = 2.5


def pareto(rng: np.random.Generator, n: int, alpha: float, xmin: float = 1.0) -> np.ndarray:
    return xmin * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def fingered_spectrum(seed: int, k: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """A bulk, a planted Pareto tail (alpha 2.5) and k finger eigenvalues far beyond it, spaced like
    a steep power law (alpha 12), so that they capture the raw fit; returns (evals, fingers)."""
    rng = np.random.default_rng(seed)
    bulk = rng.uniform(0.05, 1.0, 400)
    tail = pareto(rng, 100, PLANTED_ALPHA)
    q = (np.arange(k) + 0.5) / k
    fingers = tail.max() * 10.0 * (1.0 - q) ** (-1.0 / 11.0)
    return np.sort(np.r_[bulk, tail, fingers]), fingers


# --- fix_fingers ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_fingers_are_clipped_and_planted_alpha_recovered(seed):
    evals, fingers = fingered_spectrum(seed)
    out = fit_clipped(evals)
    assert out.raw.alpha > PLANTED_ALPHA + 3  # the fingers captured the raw fit
    assert out.raw.xmin >= fingers.min()
    assert 2 <= out.num_fingers <= fingers.size
    assert abs(out.fit.alpha - PLANTED_ALPHA) < 0.7
    assert out.fit.xmin < fingers.min()  # back on the planted tail
    assert out.fit.xmax == evals[-out.num_fingers - 1]  # exactly the top num_fingers were removed


@pytest.mark.parametrize("k", [3, 5, 9])
def test_dragon_king_fingers_count_about_k_and_recover_alpha(k):
    """fix_fingers='dragon_kings' (ours): about k fingers found, the planted alpha back; for nine
    steep fingers the raw fit is captured (alpha > 5.5) and the weightwatcher clip alone stops at 2."""
    for seed in range(6):
        evals, fingers = fingered_spectrum(seed, k)
        out = fit_dragon_kings(evals)
        assert abs(out.num_fingers - k) <= 2, (seed, out.num_fingers)
        assert abs(out.fit.alpha - PLANTED_ALPHA) < 0.5, (seed, out.fit.alpha)
        if k == 9:
            assert out.raw.alpha > PLANTED_ALPHA + 3 and fit_clipped(evals).num_fingers == 2


def test_dragon_king_fingers_rarely_fire_on_clean_power_laws():
    hits = 0
    for seed in range(50):
        rng = np.random.default_rng(100 + seed)
        evals = np.sort(np.r_[rng.uniform(0.05, 1.0, 400), pareto(rng, 300, PLANTED_ALPHA)])
        hits += fit_dragon_kings(evals).num_fingers > 0
    assert hits <= 3  # the test's level is 5% per spectrum


def test_no_fingers_on_a_clean_power_law():
    rng = np.random.default_rng(3)
    evals = np.sort(np.r_[rng.uniform(0.05, 1.0, 400), pareto(rng, 300, PLANTED_ALPHA)])
    out = fit_clipped(evals)
    assert out.num_fingers == 0 and out.fit.alpha == out.raw.alpha


def test_fix_fingers_through_analyze_on_a_planted_matrix():
    evals, _ = fingered_spectrum(0)
    rng = np.random.default_rng(0)
    w = planted_matrix(rng, evals.size, evals.size, np.sqrt(evals))
    row = tailscope.analyze({"fc.weight": w}, progress=False, fix_fingers="clip_xmax").details.iloc[0]
    direct = fit_clipped(evals)
    assert row["num_fingers"] == direct.num_fingers
    assert row["raw_alpha"] == pytest.approx(direct.raw.alpha, rel=1e-6)
    assert row["alpha"] == pytest.approx(direct.fit.alpha, rel=1e-6)
    assert row["num_pl_spikes"] == np.count_nonzero(evals >= direct.fit.xmin * (1 - 1e-9))


# --- detX ----------------------------------------------------------------------------------


def trace_log_spectrum(n: int, k: int) -> np.ndarray:
    """Mean-1 spectrum: k eigenvalues a, the rest b, with a^k >= 1 and a^k * b < 1, so the TRACE-LOG
    tail is the top k and the eigenvalue that crosses is at ascending index n - k - 1."""
    b = 1e-13
    a = (n - (n - k) * b) / k
    assert k * np.log(a) > 0 > k * np.log(a) + np.log(b)
    return np.r_[np.full(n - k, b), np.full(k, a)]


@pytest.mark.parametrize("k", [5, 10, 20])
def test_detx_recovers_the_planted_index(k):
    n = 60
    for scale in (1.0, 7.3):
        d = detx(trace_log_spectrum(n, k) * scale)
        assert d.index == n - k - 1
        assert d.num == k + 1  # the tail with log-sum >= 0 (k) plus the eigenvalue that crosses
        assert d.value == pytest.approx(1e-13 * scale)
        assert d.value_rescaled == pytest.approx(1e-13)


def test_detx_columns_through_analyze():
    # distinct values, the top 10 spread over 5%: a tail the fit resolves (spread 1e-4 is 'degenerate')
    evals = trace_log_spectrum(60, 10) * (1 + 0.05 * np.arange(60) / 60)
    w = planted_matrix(np.random.default_rng(1), 120, 60, np.sqrt(evals))
    row = tailscope.analyze({"fc.weight": w}, progress=False, detx=True).details.iloc[0]
    assert row["detX_num"] == 11
    assert row["delta_lambda"] == pytest.approx(row["detX_val"] - row["xmin"])
    assert row["delta_log10_lambda"] == pytest.approx(np.log10(row["detX_val"] / row["xmin"]))


# --- randomize and MP ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_randomized(minilm_dir):
    return tailscope.analyze(minilm_dir, progress=False, randomize=True, layers=["attn_q", "attn_o", "mlp_down"]).details


def test_rand_distance_near_zero_for_gaussian_and_large_for_minilm(minilm_randomized):
    rng = np.random.default_rng(0)
    row = tailscope.analyze({"fc.weight": rng.standard_normal((768, 384))}, progress=False, randomize=True).details.iloc[0]
    assert row["rand_distance"] < 0.02
    assert row["num_traps"] == 0
    trained = minilm_randomized["rand_distance"].to_numpy(dtype=float)
    assert len(trained) == 18
    assert np.median(trained) > 5 * row["rand_distance"] and np.median(trained) > 0.08


def test_randomize_is_seeded():
    w = np.random.default_rng(2).standard_normal((300, 100))
    a, b, c = (tailscope.analyze({"fc.weight": w}, progress=False, randomize=True, seed=s).details.iloc[0] for s in (5, 5, 6))
    assert a["max_rand_eval"] == b["max_rand_eval"] != c["max_rand_eval"]


def test_planted_large_entries_are_correlation_traps():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((600, 300))
    w.flat[rng.choice(w.size, 3, replace=False)] = 60.0  # three huge entries: traps wherever shuffled
    row = tailscope.analyze({"fc.weight": w}, progress=False, randomize=True).details.iloc[0]
    assert row["num_traps"] == 3
    const = tailscope.analyze({"fc.weight": np.ones((50, 20))}, progress=False, randomize=True).details.iloc[0]
    assert const["num_traps"] == 1  # its mean, the only nonzero eigenvalue


@pytest.mark.parametrize("Q", [1, 2, 4, 8])
def test_mp_edge_matches_closed_form_for_gaussian(Q):
    m, s = 200, 0.3
    w = np.random.default_rng(Q).standard_normal((m * Q, m)) * s
    row = tailscope.analyze({"fc.weight": w}, progress=False, randomize=True, mp_fit=True).details.iloc[0]
    edge = bulk_edge(m * Q, m, s * s)  # s^2 (sqrt(N) + sqrt(M))^2
    assert row["rand_mp_edge"] == pytest.approx(edge, rel=0.02)  # from the sample variance
    # the largest shuffled eigenvalue sits at the edge, within its Tracy-Widom fluctuations
    assert abs(row["max_rand_eval"] - row["rand_mp_edge"]) < 4 * tracy_widom_width(m * Q, m, s * s)
    assert row["bulk_max"] == pytest.approx(edge, rel=0.02)  # the MP fit of the ESD finds it too
    assert row["num_spikes"] == 0 and row["num_traps"] == 0


def test_linear_kde_matches_the_direct_sum():
    rng = np.random.default_rng(0)
    pts, grid = rng.gamma(2.0, 1.0, 300), np.linspace(0, 12, 500)
    direct = np.maximum(0, 1 - np.abs(grid[:, None] - pts[None, :]) / 0.1).sum(1) / (pts.size * 0.1)
    assert np.allclose(linear_kde(pts, grid, 0.1), direct, atol=1e-12)


def test_mp_fit_counts_planted_spikes():
    rng = np.random.default_rng(5)
    n, m = 800, 400
    w = rng.standard_normal((n, m))
    u, sv, vt = np.linalg.svd(w, full_matrices=False)
    sv[:5] = sv[0] * np.array([8.0, 7.0, 6.0, 5.0, 4.0])  # five spikes far beyond the edge
    assert mp_fit(np.sort(sv**2), n, m).num_spikes == 5


# --- TPL and likelihood ratios (oracle: the powerlaw package) ------------------------------


def _tpl_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    x = pareto(rng, 40 * n, 2.0)  # thin a Pareto(2) by exp(-0.05 (x - 1)): a TPL(2, 0.05)
    return np.sort(x[rng.random(x.size) < np.exp(-0.05 * (x - 1.0))][:n])


@pytest.mark.parametrize("kind", ["tpl", "lognormal"])
def test_tail_comparison_matches_powerlaw_package(kind):
    import warnings

    import powerlaw

    rng = np.random.default_rng(11)
    if kind == "tpl":
        x = _tpl_sample(rng, 500)
    else:
        x = np.exp(rng.normal(0.0, 1.2, 2000))
        x = np.sort(x[x >= 1.0])
    alpha = 1 + x.size / np.sum(np.log(x))
    ours = compare_tails(x, 1.0, alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = powerlaw.Fit(x, xmin=1.0, verbose=False)
        r_t, p_t = ref.distribution_compare("power_law", "truncated_power_law")
        r_l, p_l = ref.distribution_compare("power_law", "lognormal")
    assert ours.tpl_alpha == pytest.approx(ref.truncated_power_law.alpha, rel=1e-3)
    assert ours.tpl_lambda == pytest.approx(ref.truncated_power_law.Lambda, rel=1e-3)
    assert ours.lognormal_mu == pytest.approx(ref.lognormal.mu, abs=1e-3)
    assert ours.lognormal_sigma == pytest.approx(ref.lognormal.sigma, rel=1e-3)
    assert ours.llr_pl_tpl == pytest.approx(r_t, abs=1e-3)
    assert ours.llr_pl_lognormal == pytest.approx(r_l, abs=1e-3)
    assert ours.p_pl_lognormal == pytest.approx(p_l, rel=1e-3, abs=1e-12)
    assert ours.p_pl_tpl == pytest.approx(p_t, rel=1e-3, abs=1e-12)
    assert ours.llr_pl_tpl < 0 and ours.p_pl_tpl < 0.01  # both samples reject the pure power law


def test_tpl_on_a_pure_power_law_does_not_reject_it():
    x = np.sort(pareto(np.random.default_rng(1), 400, 2.5))
    ours = compare_tails(x, 1.0, 1 + x.size / np.sum(np.log(x)))
    assert ours.p_pl_tpl > 0.05 and ours.tpl_lambda < 1e-2
    assert ours.tpl_alpha == pytest.approx(2.5, abs=0.2)


# --- Dragon Kings ------------------------------------------------------------------------


def test_dragon_king_pvalue_small_for_planted_outliers():
    rng = np.random.default_rng(7)
    evals = np.sort(np.r_[rng.uniform(0.05, 1.0, 300), pareto(rng, 500, PLANTED_ALPHA)])
    planted = evals.max() * np.array([30.0, 50.0, 80.0])
    with_kings = np.sort(np.r_[evals, planted])
    fit = fit_power_law(with_kings)
    dk = dragon_kings(with_kings, fit.xmin, fit.alpha)
    assert dk.pvalue < 1e-3 and np.all(dk.pvalues[:3] < 0.05 / 10)
    assert 3 <= dk.count <= 4  # the planted three (the sample's own maximum may come next)
    clean = fit_power_law(evals)
    assert dragon_kings(evals, clean.xmin, clean.alpha).count == 0


def test_dragon_king_false_positive_rate_is_nominal():
    pvalues = []
    for seed in range(400):
        x = np.sort(pareto(np.random.default_rng(seed), 300, PLANTED_ALPHA))
        pvalues.append(dragon_kings(x, 1.0, 1 + x.size / np.sum(np.log(x))).pvalue)
    p = np.array(pvalues)
    assert 0.015 <= np.mean(p < 0.05) <= 0.09
    assert 0.05 <= np.mean(p < 0.1) <= 0.16
    assert 0.40 <= np.mean(p < 0.5) <= 0.60


# --- options, columns, CLI -----------------------------------------------------------------

OPTION_COLUMNS = {
    "fix_fingers": ("clip_xmax", {"raw_alpha", "num_fingers"}),
    "detx": (True, {"detX_num", "detX_val", "detX_val_rescaled", "delta_lambda", "delta_log10_lambda"}),
    "randomize": (True, {"rand_distance", "max_rand_eval", "num_traps", "rand_mp_edge", "rand_num_spikes", "rand_mp_softrank", "rand_bulk_max", "rand_bulk_min", "rand_sigma_mp", "rand_W_scale"}),
    "mp_fit": (True, {"num_spikes", "mp_softrank", "bulk_max", "bulk_min", "sigma_mp", "W_scale"}),
    "fit": ("TPL", {"tpl_alpha", "tpl_lambda", "llr_pl_tpl", "p_pl_tpl", "llr_pl_lognormal", "p_pl_lognormal"}),
    "dragon_kings": (True, {"dk_pvalue", "dk_count"}),
    "bootstrap": (50, {"alpha_lo", "alpha_hi"}),
    "farms": (True, {"alpha_farms"}),
    "hill": ("median", {"alpha_hill"}),
}


def test_each_option_adds_exactly_its_columns():
    model = {"fc.weight": pareto(np.random.default_rng(0), 200 * 100, 4.0).reshape(200, 100)}
    base = set(tailscope.analyze(model, progress=False).details.columns)
    assert not base & set(DIAGNOSTIC_COLUMNS)
    for option, (value, columns) in OPTION_COLUMNS.items():
        got = set(tailscope.analyze(model, progress=False, **{option: value}).details.columns)
        assert got - base == columns, option
    assert set().union(*(c for _, c in OPTION_COLUMNS.values())) == set(DIAGNOSTIC_COLUMNS)


@pytest.mark.parametrize("bad", [
    {"fix_fingers": "xmin_peak"}, {"max_fingers": 0}, {"fit": "lognormal"}, {"bootstrap": -1},
    {"confidence": 1.5}, {"detx": "yes"},
])
def test_bad_options_name_the_option(bad):
    with pytest.raises(ConfigError, match=f"`{next(iter(bad))}`"):
        tailscope.AnalysisConfig.from_kwargs(**bad)


def test_cli_flags(tmp_path, capsys):
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file({"fc.weight": np.random.default_rng(0).standard_normal((300, 150)).astype(np.float32)}, str(path))
    out = tmp_path / "d.csv"
    rc = main(["analyze", str(path), "--quiet", "--fix-fingers", "--detx", "--randomize", "--mp-fit", "--fit", "TPL",
               "--dragon-kings", "--bootstrap", "20", "--confidence", "0.9", "--farms", "--hill", "median", "-o", str(out)])
    assert rc == 0
    import pandas as pd

    assert set(DIAGNOSTIC_COLUMNS) <= set(pd.read_csv(out).columns)
    assert "rand_distance" in capsys.readouterr().out
    assert main(["analyze", str(path), "--quiet", "--bootstrap", "-3"]) == 2


@pytest.mark.parametrize("shape, loc", [((9000, 40), 0.0), ((50, 30), 1e4), ((10, 7), 3.7)])
def test_entry_variance_is_numpys(shape, loc):
    from tailscope.rows.diagnostics import entry_variance

    w = (loc + np.random.default_rng(2).standard_normal(shape)).astype(np.float32)
    if loc == 3.7:
        w[:] = np.float32(loc)  # constant: exactly zero
    assert entry_variance(w) == pytest.approx(float(np.var(w, dtype=np.float64)), rel=1e-12, abs=0.0)
