"""The planted correlation-trap checks at full size (tests/surgery/test_traps.py runs smaller ones).

    PYTHONPATH=src python bench/bench_traps.py [--n 1000] [--shape 500x250]

1. a rank-one entry spike a e_i e_j^T (a^2 at the trap cut, random sign and place) planted in a
   Gaussian matrix, N times: how often it is found (exactly one trap), how often none is left after
   `remove_matrix_traps`, and the largest KS distance of the shuffled ESD to MP afterwards;
2. the same for a mean spike mu 1 1^T (mu^2 N M at twice the cut);
3. N pure Gaussian matrices: false positives (traps found) and the largest KS distance to MP.
Prints the counts and the time per matrix (measured on the same shape in the same run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tailscope.surgery.traps import mp_ks_distance, remove_matrix_traps, shuffled_traps, trap_cut


def planted(kind: str, n: int, shape: tuple[int, int]) -> tuple[int, int, float]:
    N, M = shape
    cut = trap_cut(N, M, 1.0, 0.0)
    found = cleared = 0
    worst = 0.0
    for seed in range(n):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal(shape)
        if kind == "entry":
            w[rng.integers(N), rng.integers(M)] += np.sqrt(cut) * rng.choice([-1, 1])
        else:
            w += np.sqrt(2 * cut / (N * M))
        r = remove_matrix_traps(w, (seed, 0))
        found += len(r.traps) == 1
        cleared += r.traps_after == 0
        worst = max(worst, r.ks_after)
    return found, cleared, worst


def pure(n: int, shape: tuple[int, int]) -> tuple[int, float]:
    false, worst = 0, 0.0
    for seed in range(n):
        w = np.random.default_rng(10**6 + seed).standard_normal(shape)
        _, comps, _, evals = shuffled_traps(w, (seed, 0))
        false += len(comps)
        worst = max(worst, mp_ks_distance(evals, *shape, float(np.var(w))))
    return false, worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--shape", default="500x250")
    args = ap.parse_args()
    shape = tuple(int(x) for x in args.shape.split("x"))
    for kind in ("entry", "mean"):
        t0 = time.perf_counter()
        found, cleared, worst = planted(kind, args.n, shape)
        dt = (time.perf_counter() - t0) / args.n
        print(f"{kind} spike, {args.n} x {shape}: found {found}/{args.n}, none left after removal {cleared}/{args.n}, "
              f"max KS after {worst:.4f} ({dt * 1e3:.0f} ms per matrix)", flush=True)
    t0 = time.perf_counter()
    false, worst = pure(args.n, shape)
    dt = (time.perf_counter() - t0) / args.n
    print(f"pure Gaussian, {args.n} x {shape}: {false} false positives, max KS {worst:.4f} ({dt * 1e3:.0f} ms per matrix)")


if __name__ == "__main__":
    main()
