"""Scaling: analyze time versus number of layers (2, 4, 8) and versus worker processes (1, 2).

    python bench/bench_scaling.py [--dims quarter|full] [--layers 2,4,8] [--workers 1,2]

Checkpoints: Mistral-shaped decoder layers, bf16, Student-t(3) entries, generated once under
the bench cache. ``--dims quarter`` (default) divides every dimension by 4 (H=1024, I=3584) so a
loaded laptop finishes in minutes; ``full`` uses Mistral-7B's shapes. Prints seconds per layer
(flat when time is linear in layers) and the speed-up of 2 workers over 1 on the largest checkpoint
(executor='process'; workers=1 is the same pool with one process, so the ratio is the parallel gain).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_vs_weightwatcher import mistral2_path  # noqa: E402


def checkpoint(layers: int, dims: str) -> Path:
    return mistral2_path(layers, div=4 if dims == "quarter" else 1)


def timed(path: Path, **options) -> float:
    import tailscope

    t0 = time.perf_counter()
    tailscope.analyze(path, progress=False, **options)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", choices=("quarter", "full"), default="quarter")
    parser.add_argument("--layers", default="2,4,8")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    counts = [int(x) for x in args.layers.split(",")]
    per_layer = {}
    for n in counts:
        sec = timed(checkpoint(n, args.dims))
        per_layer[n] = sec / n
        print(f"{n} layers: {sec:7.2f} s  ({sec / n:.2f} s per layer, {per_layer[n] / per_layer[counts[0]]:.2f}x the {counts[0]}-layer rate)", flush=True)
    big = checkpoint(counts[-1], args.dims)
    times = {w: timed(big, executor="process", workers=w) for w in (int(x) for x in args.workers.split(","))}
    first = next(iter(times))
    for w, sec in times.items():
        print(f"{counts[-1]} layers, executor='process', workers={w}: {sec:7.2f} s  (speed-up {times[first] / sec:.2f}x)")


if __name__ == "__main__":
    main()
