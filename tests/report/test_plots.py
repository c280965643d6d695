"""Plots: every figure renders for MiniLM and SmolLM2 without warnings into non-trivial
PNGs; each plot function works alone (ax=None) and into a given Axes; the D-versus-xmin curve is
the fit's own scan (checked against a direct KS computation); saving never touches pyplot."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import tailscope  # noqa: E402
from tailscope.config import AnalysisConfig  # noqa: E402
from tailscope.errors import ConfigError, OutputError  # noqa: E402
from tailscope.fit.detx import detx  # noqa: E402
from tailscope.fit.powerlaw import fit_power_law, ks_curve  # noqa: E402
from tailscope.plots import (  # noqa: E402
    plot_alpha_hist,
    plot_alpha_vs_rand_distance,
    plot_correlation_flow,
    plot_esd,
    plot_esd_loglog,
    plot_ks_curve,
    plot_randomized_esd,
    plot_raw_vs_fixed_alpha,
)

from conftest import planted_matrix  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAYER_KINDS = ("esd", "esd_loglog", "ks_xmin", "randomized_esd")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def assert_real_image(path: Path) -> None:
    assert path.stat().st_size > 12_000, f"{path.name}: only {path.stat().st_size} bytes"
    width, height = png_size(path)
    assert (width, height) == (640, 480), f"{path.name}: {width}x{height}"
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.std() > 0.05, f"{path.name} looks blank"
    assert (pixels.min(axis=2) < 0.9).mean() > 0.01, f"{path.name} has almost no ink"


def analyze_with_plots(model, out: Path, layers: tuple[int, ...]):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return tailscope.analyze(model, config=AnalysisConfig(layers=layers, plot_dir=str(out), progress=False, detx=True, randomize=True))


@pytest.mark.parametrize("which, layers", [("minilm", (5, 11)), ("smollm", (2, 6))])
def test_every_plot_renders_for_real_models(which, layers, minilm_dir, smollm_gguf, tmp_path):
    model = minilm_dir if which == "minilm" else smollm_gguf
    plt.close("all")  # figures an earlier test returned to its caller are not this test's
    report = analyze_with_plots(model, tmp_path, layers)
    assert sorted(report.details["layer_id"]) == list(layers)
    expected = {f"model_{k}.png" for k in ("alpha_hist", "correlation_flow", "alpha_vs_rand_distance")}
    for _, row in report.details.iterrows():
        prefix = f"{row['layer_id']:04d}_{row['name']}"
        expected |= {f"{prefix}_{kind}.png" for kind in LAYER_KINDS}
    assert {p.name for p in tmp_path.iterdir()} == expected
    for path in tmp_path.iterdir():
        assert_real_image(path)
    assert plt.get_fignums() == []  # nothing left open in pyplot


def test_saving_never_imports_pyplot_nor_keeps_figures(tmp_path):
    """In a fresh process: analyze with plots leaves pyplot unimported, the backend as it was, and
    no Figure alive after a garbage collection."""
    code = f"""
import gc, json, sys, numpy as np, matplotlib, tailscope
before = matplotlib.rcParams._get_backend_or_none()
rng = np.random.default_rng(0)
model = {{f"l{{i}}.weight": rng.standard_normal((300, 100)) for i in range(3)}}
tailscope.analyze(model, plot_dir={str(tmp_path)!r}, progress=False)
from matplotlib.figure import Figure
gc.collect()
print(json.dumps(dict(pyplot="matplotlib.pyplot" in sys.modules, same=matplotlib.rcParams._get_backend_or_none() == before,
                      figures=sum(isinstance(o, Figure) for o in gc.get_objects()))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"pyplot": False, "same": True, "figures": 0}
    assert len(list(tmp_path.glob("*_esd.png"))) == 3
    assert (tmp_path / "model_alpha_hist.png").exists()


@pytest.fixture(scope="module")
def planted():
    """ESD with a power-law tail (alpha ~ 3), its fit, and a Gaussian matrix's ESD (for MP)."""
    rng = np.random.default_rng(3)
    sv = np.sqrt(rng.pareto(2.0, 200) + 1.0)
    w = planted_matrix(rng, 600, 200, sv)
    evals = np.linalg.eigvalsh(w.T @ w)
    gauss = rng.standard_normal((800, 200))
    return evals, fit_power_law(evals), np.linalg.eigvalsh(gauss.T @ gauss)


def _layer_calls(planted):
    evals, fit, gauss = planted
    return {
        "esd": lambda ax: plot_esd(evals, ax),
        "esd_loglog": lambda ax: plot_esd_loglog(evals, fit, ax, detx_value=detx(evals).value),
        "ks_xmin": lambda ax: plot_ks_curve(evals, ax=ax),
        "randomized_esd": lambda ax: plot_randomized_esd(gauss, 800, 200, ax),
    }


def _details():
    rng = np.random.default_rng(0)
    n = 24
    alpha = rng.uniform(1.5, 8.0, n)
    return pd.DataFrame({
        "layer_id": np.arange(n), "name": [f"l{i}" for i in range(n)], "layer": np.repeat(np.arange(6), 4).astype(float),
        "role": np.tile(["attn_q", "attn_k", "mlp_up", "mlp_down"], 6), "alpha": alpha, "status": "success",
        "raw_alpha": alpha + rng.uniform(0, 2, n) * (rng.random(n) < 0.5), "num_fingers": rng.integers(0, 3, n),
        "rand_distance": rng.uniform(0, 0.5, n),
    })


MODEL_FUNCS = {"alpha_hist": plot_alpha_hist, "correlation_flow": plot_correlation_flow,
               "raw_vs_fixed_alpha": plot_raw_vs_fixed_alpha, "alpha_vs_rand_distance": plot_alpha_vs_rand_distance}


@pytest.mark.parametrize("kind", [*LAYER_KINDS, *MODEL_FUNCS])
@pytest.mark.parametrize("given_ax", [False, True])
def test_each_function_alone(kind, given_ax, planted, tmp_path):
    calls = _layer_calls(planted) | {k: (lambda ax, f=f: f(_details(), ax)) for k, f in MODEL_FUNCS.items()}
    ax_in = plt.subplots()[1] if given_ax else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = calls[kind](ax_in)
        if given_ax:
            assert ax is ax_in
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        ax.figure.savefig(tmp_path / "f.png", dpi=100)
    assert png_size(tmp_path / "f.png")[0] > 300


def test_loglog_draws_fit_xmin_and_detx_lines(planted):
    evals, fit, _ = planted
    d = detx(evals)
    ax = plot_esd_loglog(evals, fit, detx_value=d.value)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    vlines = {line.get_color(): line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1}
    assert vlines["red"] == pytest.approx(fit.xmin)
    assert vlines["purple"] == pytest.approx(d.value)
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1
    x, y = dashed[0].get_data()
    slope = np.polyfit(np.log(x), np.log(y), 1)[0]
    assert slope == pytest.approx(-fit.alpha)


def _direct_ks(tail: np.ndarray, alpha: float) -> float:
    """Plain-loop KS distance, as weightwatcher's powerlaw package defines it (lower CDF step)."""
    xmin, n = tail[0], tail.size
    return max(abs((1 - (tail[j] / xmin) ** (1 - alpha)) - j / n) for j in range(n))


def test_ks_curve_is_the_fits_scan(planted):
    evals, fit, _ = planted
    xmins, ds = ks_curve(fit)
    assert xmins.size > 100
    assert ds.min() == pytest.approx(fit.D) and xmins[np.argmin(ds)] == fit.xmin
    data = np.sort(evals)
    for k in (0, 40, 120):
        tail = data[data >= xmins[k]]
        alpha = 1 + tail.size / np.sum(np.log(tail / tail[0]))
        assert ds[k] == pytest.approx(_direct_ks(tail, alpha), rel=1e-9)


def test_randomized_esd_mp_edge_for_gaussian(planted):
    _, _, gauss = planted
    ax = plot_randomized_esd(gauss, 800, 200)
    edge = next(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--")
    assert edge == pytest.approx((np.sqrt(800) + np.sqrt(200)) ** 2, rel=0.03)  # entry variance 1


@pytest.mark.parametrize("func, column, option", [
    (plot_raw_vs_fixed_alpha, "raw_alpha", "fix_fingers"), (plot_alpha_vs_rand_distance, "rand_distance", "randomize"),
])
def test_model_plots_name_missing_columns(func, column, option):
    details = _details().drop(columns=[column])
    with pytest.raises(ConfigError, match=f"`{column}` column.*{option}"):
        func(details)


def test_write_model_plots_skips_absent_columns(tmp_path):
    from tailscope.plots import write_model_plots

    written = write_model_plots(tmp_path, _details().drop(columns=["raw_alpha", "rand_distance"]))
    assert sorted(p.name for p in written) == ["model_alpha_hist.png", "model_correlation_flow.png"]
    written = write_model_plots(tmp_path / "all", _details())
    assert len(written) == 4
    for path in written:
        assert_real_image(path)


def test_config_and_cli(minilm_dir, tmp_path, capsys):
    assert AnalysisConfig().plot_target is None
    assert AnalysisConfig(plot=True).plot_target == "./tailscope-plots"
    assert AnalysisConfig(plot_dir=tmp_path).plot_target == str(tmp_path)
    assert AnalysisConfig(plot_dir=tmp_path).plot is True
    with pytest.raises(ConfigError, match="plot_dir"):
        AnalysisConfig(plot_dir=3)
    with pytest.raises(ConfigError, match="`plot`"):
        AnalysisConfig(plot="yes")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="plot_dir.*is not a directory"):
        tailscope.analyze({"w": np.eye(20)}, plot_dir=str(blocker / "sub"), progress=False)
    from tailscope.cli import main

    out = tmp_path / "cli"
    assert main(["analyze", str(minilm_dir), "--layers", "5", "--quiet", "--plots", str(out)]) == 0
    assert f"plots in {out}" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"0005_encoder.layer.0.attention.output.dense_{k}.png" for k in ("esd", "esd_loglog", "ks_xmin")]
                           + ["model_alpha_hist.png", "model_correlation_flow.png"])


def test_randomized_esd_in_pipeline_is_seeded(tmp_path):
    """The shuffle behind randomized_esd.png follows `seed`: same seed, same picture; another seed, another."""
    rng = np.random.default_rng(1)
    model = {"fc.weight": rng.standard_normal((400, 100)) * rng.pareto(2.5, 100)}

    def picture(seed: int, out: str) -> bytes:
        tailscope.analyze(model, config=AnalysisConfig(plot_dir=str(tmp_path / out), seed=seed, progress=False, detx=True, randomize=True))
        return (tmp_path / out / "0000_fc_randomized_esd.png").read_bytes()

    first = picture(0, "a")
    assert picture(0, "b") == first
    assert picture(1, "c") != first
