"""Eigenvalue routes against an independent oracle, the fp64 SVD, on real layers.

For every MiniLM matrix and a spread sample of SmolLM2's (the GGUF dequantized): the top-50
eigenvalues of each route agree with the squared fp64 singular values to 1e-4 relative, and the
power-law alpha to 1e-3. Routes: the one `compute_spectrum` picks, fp64 Gram, fp32 Gram, and the
torch route run on the CPU (the code `device='cuda'` runs).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import svd

from tailscope.analysis.matrix import plan
from tailscope.config import AnalysisConfig
from tailscope.fit.powerlaw import fit_power_law
from tailscope.sources import geometry, open_source
from tailscope.spectrum.matrices import to_matrices
from tailscope.spectrum.routes import compute_spectrum, gram_eigenvalues, singular_values
from tailscope.spectrum.torch_route import torch_singular_values_batch

TOP = 50
SMOLLM_SAMPLE = 30


def _layers(path, sample: int | None):
    refs = plan(open_source(path), AnalysisConfig())[0]
    if sample is not None and len(refs) > sample:
        refs = [refs[i] for i in np.linspace(0, len(refs) - 1, sample).round().astype(int)]
    for ref in refs:
        geo = geometry(ref.kind, ref.shape, "slices")
        mats = [m if m.shape[0] >= m.shape[1] else m.T for m in to_matrices(ref.load(), ref.kind, "slices", True)]
        yield ref.name, mats, geo.N


def _svd_evals(mats) -> np.ndarray:
    return np.sort(np.concatenate([svd(np.asarray(m, np.float64), compute_uv=False) ** 2 for m in mats]))


def _routes(mats, n):
    yield "chosen", compute_spectrum(mats, n).evals
    for dtype in (np.float64, np.float32):
        yield np.dtype(dtype).name, np.sort(np.concatenate([gram_eigenvalues(m, dtype) for m in mats]))
    yield "torch:cpu", np.sort(np.concatenate([s * s for s in torch_singular_values_batch(mats, "torch:cpu")]))


def _check(path, sample):
    count = 0
    for name, mats, n in _layers(path, sample):
        ref = _svd_evals(mats)
        alpha_ref = fit_power_law(ref).alpha
        for route, evals in _routes(mats, n):
            top = np.abs(evals[-TOP:] - ref[-TOP:]) / ref[-TOP:]
            assert top.max() < 1e-4, (name, route, top.max())
            assert abs(fit_power_law(evals).alpha - alpha_ref) < 1e-3, (name, route)
        count += 1
    return count


def test_routes_match_fp64_svd_on_every_minilm_layer(minilm_dir):
    assert _check(minilm_dir, None) >= 36


def test_routes_match_fp64_svd_on_smollm_sample(smollm_gguf):
    assert _check(smollm_gguf, SMOLLM_SAMPLE) == SMOLLM_SAMPLE


def test_torch_route_rows_equal_numpy_rows(minilm_dir, monkeypatch):
    """The whole row (alpha, D, xmin, ...) from the torch route on a torch CPU device, as cuda would
    run it. The torch route computes in float64, so it is compared with numpy's float64 route."""
    import tailscope.spectrum.routes as spectrum
    from tailscope.analysis.matrix import analyze_matrix

    monkeypatch.setattr(spectrum, "FP32_MIN_M", 10**9)

    cfg = AnalysisConfig(randomize=True)
    refs = plan(open_source(minilm_dir), cfg)[0][:6]
    for ref in refs:
        array = ref.load()
        a, b = analyze_matrix(ref, array, cfg, "cpu"), analyze_matrix(ref, array, cfg, "torch:cpu")
        for col in ("alpha", "alpha_weighted", "xmin", "lambda_max", "D", "rand_distance"):
            assert b[col] == pytest.approx(a[col], rel=1e-6, abs=1e-9), (ref.name, col)


def test_torch_batch_of_repeated_shapes_equals_one_by_one():
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((96, 40)) for _ in range(4)] + [rng.standard_normal((50, 30))]
    batched = torch_singular_values_batch(mats, "torch:cpu")
    for m, s in zip(mats, batched):
        np.testing.assert_allclose(s, np.sort(svd(m, compute_uv=False)), rtol=1e-10)


def test_fp32_route_keeps_every_row_column(minilm_dir, monkeypatch, fp32_gram):
    """With the fp32 route forced on from M=1, MiniLM's rows equal the fp64 rows in every numeric
    column to 1e-4 relative (alpha to 1e-3 absolute), and the route was really taken somewhere."""
    import tailscope
    import tailscope.spectrum.routes as spectrum

    fp64 = tailscope.analyze(minilm_dir, progress=False, mp_fit=True).details
    taken = []
    real = spectrum.gram_eigenvalues

    def spy(w, dtype=np.float64):
        evals = real(w, dtype)
        taken.append((np.dtype(dtype).name, bool(evals[0] > spectrum.FP32_RELATIVE_FLOOR * evals[-1])))
        return evals

    monkeypatch.setattr(spectrum, "FP32_MIN_M", 1)
    monkeypatch.setattr(spectrum, "gram_eigenvalues", spy)
    fp32 = tailscope.analyze(minilm_dir, progress=False, mp_fit=True).details
    kept = sum(1 for d, ok in taken if d == "float32" and ok)
    assert kept >= 6, taken  # matrices with a wide bulk keep the fp32 result
    np.testing.assert_allclose(fp32["alpha"], fp64["alpha"], atol=1e-3)
    for col in fp64.columns:
        if fp64[col].dtype.kind == "f" and col not in ("alpha",):
            np.testing.assert_allclose(fp32[col], fp64[col], rtol=1e-4, atol=1e-9, err_msg=col)


def test_the_default_route_is_fp64():
    """With the tie check, fp32 Gram was slower than fp64 on every checkpoint measured, so it is off."""
    from tailscope.spectrum.routes import blas_threads, route_dtype

    assert route_dtype((14336, 4096)) == route_dtype((1536, 576), np.float16) == np.float64
    assert blas_threads(1536, 576) is None  # the fp64 thread rule: 5e8 flops run threaded


def test_route_choice_by_shape(fp32_gram):
    """fp32 Gram from M = 256, clearly rectangular (MLP, GQA k/v and MoE expert shapes)."""
    from tailscope.spectrum.routes import route_dtype

    assert route_dtype((14336, 4096)) == np.float32
    assert route_dtype((4096, 4096)) == np.float64  # square: bulk down to 0, fp32 would be redone
    assert route_dtype((4096, 1024)) == np.float32  # 1.7x faster, measured on a quiet machine
    assert route_dtype((1536, 576)) == np.float32  # SmolLM2's MLP: 1.8x on one BLAS thread
    assert route_dtype((1536, 384)) == np.float32
    assert route_dtype((576, 192)) == np.float64  # below the cut: under a millisecond either way
    assert route_dtype((1000, 576)) == np.float64  # N < 2M
    assert route_dtype((1536, 576), np.float64) == np.float64  # a float64 matrix keeps its digits
    assert route_dtype((1536, 576), np.float16) == np.float32


def test_blas_threads_by_route(fp32_gram):
    """One BLAS thread for small work, and on the fp32 route up to 1e10 (a second thread slowed
    fp32 solves of 320 x 1280 and 1024 x 4096); every thread for large work."""
    from tailscope.spectrum.routes import blas_threads

    assert blas_threads(576, 192) == 1  # fp64, 2e7
    assert blas_threads(1536, 576, np.float64) is None  # fp64, 5e8
    assert blas_threads(1536, 576) == 1  # fp32, 5e8
    assert blas_threads(4096, 1024) == 1  # fp32, 4.3e9
    assert blas_threads(14336, 4096) is None  # fp32, 2.4e11
    assert blas_threads(4096, 4096) is None  # square: fp64, 6.9e10


def test_first_analysis_in_a_process_equals_the_next(tmp_path):
    """Bit-identical results from the first call on: the one-thread limit must hold for the first
    matrix too (threadpoolctl limits only BLAS libraries already loaded)."""
    import subprocess
    import sys

    code = """
import numpy as np, tailscope
from safetensors.numpy import save_file
rng = np.random.default_rng(3)
save_file({f"l{i}.weight": rng.standard_normal((400, 300)).astype(np.float16) for i in range(4)}, "m.safetensors")
runs = [tailscope.analyze("m.safetensors", progress=False).details["lambda_max"].to_numpy() for _ in range(3)]
print(all((r == runs[0]).all() for r in runs))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True", done.stderr[-2000:]


@pytest.mark.parametrize("ratio, via_svd", [(1e-11, False), (1e-15, True)])
def test_gram_floor_keeps_sv_min_accurate(ratio, via_svd):
    """Known singular values down to sqrt(ratio) * sv_max: above the floor the Gram route keeps
    sv_min to 1e-4 relative without an SVD; below it the SVD fallback runs and keeps it too."""
    rng = np.random.default_rng(3)
    m = 300
    u, _ = np.linalg.qr(rng.standard_normal((2 * m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    s = np.geomspace(np.sqrt(ratio), 1.0, m)
    sv, exact = singular_values((u * s) @ v.T)
    assert exact is via_svd
    np.testing.assert_allclose(sv[:5], s[:5], rtol=1e-4)
    np.testing.assert_allclose(sv[-50:], s[-50:], rtol=1e-10)


def test_fp32_eigensolve_is_lapack_without_the_gil():
    """`ssyevd_eigenvalues` gives LAPACK's eigenvalues through a ctypes C function, which ctypes
    calls with the GIL released (a PYFUNCTYPE would hold it, as scipy's f2py wrapper does), so
    pooled solves overlap."""
    import ctypes

    from scipy.linalg import eigh

    from tailscope.spectrum.routes import _ssyevd, ssyevd_eigenvalues

    solver = _ssyevd()
    assert solver is not None  # the installed scipy exports ssyevd; else the GIL-holding eigh is used
    assert not solver._flags_ & ctypes._FUNCFLAG_PYTHONAPI
    rng = np.random.default_rng(0)
    for n in (1, 7, 300, 1200):
        w = rng.standard_normal((2 * n + 3, n)).astype(np.float32)
        g = w.T @ w
        expected = eigh(g.astype(np.float64), eigvals_only=True)
        got = ssyevd_eigenvalues(g.copy())
        assert got.dtype == np.float32 and np.max(np.abs(got - expected)) < 1e-5 * expected[-1], n
