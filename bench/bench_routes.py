"""Eigenvalue routes of W^T W per shape: time, and accuracy of the top eigenvalues vs an fp64 SVD.

    OMP_NUM_THREADS=2 python bench/bench_routes.py [--shapes 384x1536,4096x4096,...] [--top 50]
                                                   [--threads 1]

Routes:
  gram64   float64 Gram by SYRK row blocks + dsyevd (tailscope's route for small M)
  gram32   float32 Gram by SSYRK row blocks + ssyevd, eigenvalues promoted to float64
  svd64    float64 gesdd singular values, squared (weightwatcher's route; the oracle)
  svd32    float32 gesdd singular values, squared

The matrix is W (out x in) with Student-t(3) entries (a heavy tail, as trained weights have),
analyzed in its tall orientation (N >= M). Prints seconds per route (the fastest of enough runs
to fill ~1 s, at most 20), the ratio to gram64, and the largest relative error of the top `--top`
eigenvalues and of the power-law alpha against svd64. `--threads 1` runs BLAS on one thread, as
the compute pool of tailscope's executor does for small matrices.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tailscope.spectrum.routes import gram_eigenvalues  # noqa: E402

from timing import best_of  # noqa: E402

DEFAULT_SHAPES = "192x576,384x1536,576x1536,1024x3584,1024x4096,4096x4096,4096x14336"


def svd_evals(w: np.ndarray, dtype: type) -> np.ndarray:
    from scipy.linalg import svd

    s = svd(np.asarray(w, dtype=dtype), compute_uv=False, check_finite=False).astype(np.float64)
    return np.sort(s * s)


ROUTES = {
    "gram64": lambda w: gram_eigenvalues(w, np.float64),
    "gram32": lambda w: gram_eigenvalues(w, np.float32),
    "svd64": lambda w: svd_evals(w, np.float64),
    "svd32": lambda w: svd_evals(w, np.float32),
}


def alpha_of(evals: np.ndarray) -> float:
    from tailscope.fit.powerlaw import fit_power_law

    return float(fit_power_law(evals).alpha)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--threads", type=int, help="BLAS threads (default: the library's own)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads, user_api="blas") if args.threads else nullcontext():
        run(args)


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    print(f"{'shape':>11s} {'route':7s} {'seconds':>8s} {'vs gram64':>9s} {'top-k rel err':>13s} {'alpha rel err':>13s}")
    for text in args.shapes.split(","):
        out, inp = map(int, text.split("x"))
        w = (rng.standard_t(3, size=(out, inp)) / np.sqrt(3 * inp)).astype(np.float32)
        w = w.T if out < inp else w
        results = {}
        for name, route in ROUTES.items():
            t0 = time.perf_counter()
            evals = route(w)
            first = time.perf_counter() - t0
            repeat = min(20, int(1.0 / first)) if first < 0.5 else 0
            results[name] = (min(first, best_of(lambda route=route, w=w: route(w), repeat)) if repeat else first, evals)
        ref = results["svd64"][1]
        a_ref = alpha_of(ref)
        base = results["gram64"][0]
        for name, (sec, evals) in results.items():
            top = np.max(np.abs(evals[-args.top:] - ref[-args.top:]) / ref[-args.top:])
            da = abs(alpha_of(evals) - a_ref) / a_ref
            print(f"{text:>11s} {name:7s} {sec:8.4f} {base / sec:8.2f}x {top:13.1e} {da:13.1e}", flush=True)


if __name__ == "__main__":
    main()
