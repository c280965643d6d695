"""LoRA update spectrum: the r x r route (tailscope.spectrum.lowrank) against the dense route on B @ A.

One command: `python bench/bench_lora.py [N_OUT N_IN R]` (default 2048 5632 16, a TinyLlama-sized
MLP projection). Prints both times, their ratio and the largest relative eigenvalue difference.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tailscope.spectrum.lowrank import lowrank_spectrum
from tailscope.spectrum.routes import compute_spectrum


def main() -> None:
    n_out, n_in, r = (int(x) for x in sys.argv[1:4]) if len(sys.argv) > 3 else (2048, 5632, 16)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((r, n_in)).astype(np.float32)
    b = rng.standard_normal((n_out, r)).astype(np.float32)
    scale = 2.0
    n, m = max(n_out, n_in), min(n_out, n_in)
    t0 = time.perf_counter()
    low = lowrank_spectrum(a, b, scale, n, m).evals
    t_low = time.perf_counter() - t0
    t0 = time.perf_counter()
    w = scale * (b.astype(np.float64) @ a.astype(np.float64))
    dense = compute_spectrum([w.T if w.shape[0] < w.shape[1] else w], n).evals
    t_dense = time.perf_counter() - t0
    err = np.max(np.abs(low[-r:] - dense[-r:]) / dense[-r:])
    print(f"update {n_out}x{n_in}, r={r}: low-rank {t_low * 1e3:.2f} ms, dense {t_dense * 1e3:.0f} ms, "
          f"speed-up x{t_dense / t_low:.0f}, max rel. eigenvalue diff {err:.1e}")


if __name__ == "__main__":
    main()
