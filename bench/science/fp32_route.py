"""The float32 Gram route against an fp64 SVD on every layer of both bundled real models.

The route is off by default (`FP32_GRAM`); this section switches it on to measure it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.linalg import svd

import tailscope.spectrum.routes as routes
from tailscope.analysis.matrix import plan
from tailscope.config import AnalysisConfig
from tailscope.fit.powerlaw import fit_power_law
from tailscope.sources import geometry, open_source
from tailscope.spectrum.matrices import to_matrices
from tailscope.spectrum.routes import FP32_RELATIVE_FLOOR, _near_ks_tie, compute_spectrum, gram_eigenvalues, route_dtype

TITLE = "float32 route: alpha against an fp64 SVD on every layer of MiniLM and SmolLM2"
ROOT = Path(__file__).resolve().parents[2]


def _model_paths() -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "tools"))
    from fetch_models import fetch

    return {"all-MiniLM-L6-v2": str(fetch("minilm")), "SmolLM2-135M Q4_1": str(fetch("smollm2"))}


def _tall(ref) -> list[np.ndarray]:
    return [m if m.shape[0] >= m.shape[1] else m.T for m in to_matrices(ref.load(), ref.kind, "slices", True)]


def _fp32_kept(w: np.ndarray) -> bool | None:
    """None: not eligible for fp32; True: the fp32 result is kept; False: redone in fp64."""
    if route_dtype(w.shape, w.dtype) != np.float32:
        return None
    e = gram_eigenvalues(w, np.float32)
    return bool(e[0] > FP32_RELATIVE_FLOOR * e[-1] and not _near_ks_tie(e, w.shape[1]))


def model_row(name: str, path: str, limit: int | None) -> tuple:
    refs = plan(open_source(path), AnalysisConfig())[0][:limit]
    worst, eligible, kept, t_route, t_fp64 = 0.0, 0, 0, 0.0, 0.0
    for ref in refs:
        mats = _tall(ref)
        n = geometry(ref.kind, ref.shape, "slices").N
        oracle = np.sort(np.concatenate([svd(np.asarray(m, np.float64), compute_uv=False) ** 2 for m in mats]))
        t0 = time.perf_counter()
        evals = compute_spectrum(mats, n).evals
        t1 = time.perf_counter()
        for m in mats:
            gram_eigenvalues(m, np.float64)
        t_route, t_fp64 = t_route + t1 - t0, t_fp64 + time.perf_counter() - t1
        worst = max(worst, abs(fit_power_law(evals).alpha - fit_power_law(oracle).alpha))
        flags = [_fp32_kept(m) for m in mats]
        eligible += any(f is not None for f in flags)
        kept += any(f for f in flags)
        del mats
    return (name, len(refs), eligible, kept, eligible - kept, f"{worst:.2e}", f"{t_route:.2f}", f"{t_fp64:.2f}",
            f"{t_fp64 / t_route:.2f}")


def run(quick: bool) -> str:
    from science.common import markdown_table

    previous, routes.FP32_GRAM = routes.FP32_GRAM, True
    try:
        rows = [model_row(name, path, 40 if quick else None) for name, path in _model_paths().items()]
    finally:
        routes.FP32_GRAM = previous
    head = ["model", "layers", "fp32-eligible", "kept in fp32", "redone in fp64 (below the floor or near a KS tie)",
            "max abs(alpha - alpha_svd64)", "route s", "fp64 Gram s", "fp64 / route"]
    note = ("alpha from the chosen route (`compute_spectrum`) against alpha of the fp64 SVD's eigenvalues, every "
            "analyzed matrix; must hold: max < 1e-3. Times: the route (incl. the tie check and any fp64 redo) "
            "against an fp64 Gram + eigh of the same matrices, one run, wall clock, machine shared.")
    return note + "\n\n" + markdown_table(head, rows)
