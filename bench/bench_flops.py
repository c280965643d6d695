"""The FLOP-bound model: how close tailscope's analyze is to a perfect implementation on this machine.

    OMP_NUM_THREADS=2 python bench/bench_flops.py [--case mistral2|mistral2q] [--repeat 1]

A perfect implementation of tailscope's route does, per matrix (tall N x M), one SYRK
(N*M^2 flops) in the route's precision, and one symmetric eigensolve of M x M. This script
measures on this machine, in the same run:
  - the SYRK rate (GFLOP/s) of dsyrk and ssyrk on an N x M block (the largest N, M in the case),
  - the syevd time for each distinct M in the precision the route uses,
each the fastest of --repeat runs, with the BLAS thread count tailscope uses for that M,
then sums the bound over the checkpoint's matrices and times `tailscope.analyze` (default
options, one process) on it, printing tailscope / bound. Everything else (reading safetensors,
bf16 -> fp32 conversion, the power-law fit) is overhead the ratio counts against tailscope.

Cases: mistral2 = two Mistral-7B-shaped layers (bench_vs_weightwatcher's checkpoint);
mistral2q = the same at a quarter of each dimension (H=1024, I=3584), for a loaded laptop.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_vs_weightwatcher import MISTRAL_LAYER, mistral2_path  # noqa: E402
from timing import best_of  # noqa: E402


def quarter_path(layers: int = 2) -> Path:
    """Two Mistral-shaped layers at a quarter of each dimension, bf16, generated once."""
    return mistral2_path(layers, div=4)


def syrk_rate(n: int, m: int, dtype: type, repeat: int) -> float:
    """GFLOP/s of one SYRK C = A^T A with A n x m (n*m^2 flops)."""
    from scipy.linalg.blas import dsyrk, ssyrk

    from tailscope.spectrum.routes import _limited

    a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, m)).astype(dtype))
    syrk = dsyrk if dtype == np.float64 else ssyrk
    with _limited(n, m):  # the BLAS threads tailscope uses for this shape
        return n * m * m / best_of(lambda: syrk(1.0, a, trans=1), repeat) / 1e9


def syevd_seconds(m: int, dtype: type, repeat: int) -> float:
    from scipy.linalg import eigh

    from tailscope.spectrum.routes import _limited

    a = np.random.default_rng(1).standard_normal((2 * m, m)).astype(dtype)
    g = a.T @ a
    with _limited(2 * m, m):
        return best_of(lambda: eigh(g, eigvals_only=True, driver="evd", check_finite=False), repeat)


def main() -> None:
    from tailscope.spectrum.routes import route_dtype

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("mistral2", "mistral2q"), default="mistral2")
    parser.add_argument("--repeat", type=int, default=3, help="runs per kernel; the fastest counts")
    args = parser.parse_args()
    path = mistral2_path() if args.case == "mistral2" else quarter_path()
    div = 1 if args.case == "mistral2" else 4
    shapes = [(r // div, c // div) for r, c in MISTRAL_LAYER.values()] * 2
    tall = [(max(s), min(s)) for s in shapes]
    n_big, m_big = max(tall)
    rates = {np.dtype(d).name: syrk_rate(min(n_big, 4096), m_big, d, args.repeat) for d in (np.float64, np.float32)}
    eig = {(m, np.dtype(route_dtype((n, m))).name): 0.0 for n, m in tall}
    for m, d in eig:
        eig[(m, d)] = syevd_seconds(m, np.dtype(d).type, args.repeat)
    bound = 0.0
    for n, m in tall:
        d = np.dtype(route_dtype((n, m))).name
        bound += n * m * m / (rates[d] * 1e9) + eig[(m, d)]
    for d, r in rates.items():
        print(f"syrk {d}: {r:7.1f} GFLOP/s")
    for (m, d), sec in sorted(eig.items()):
        print(f"syevd M={m} {d}: {sec:6.2f} s")
    import tailscope

    t0 = time.perf_counter()
    tailscope.analyze(path, progress=False)
    took = time.perf_counter() - t0
    print(f"{args.case}: {len(tall)} matrices, perfect-implementation bound {bound:.2f} s, tailscope {took:.2f} s, "
          f"ratio {took / bound:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
