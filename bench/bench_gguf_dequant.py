"""Dequantization time of a GGUF's tensors: tailscope's own Q8_0/Q4_0/Q4_1 decoders versus the
`gguf` package's, per type, on the same bytes (pages already in memory), checking the values agree
bit for bit.

    python bench/bench_gguf_dequant.py [FILE.gguf] [--repeat 3]

Default file: SmolLM2-135M-Instruct.Q4_1.gguf, fetched by tools/fetch_models.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def main() -> None:
    import gguf

    from tailscope.sources.gguf_quants import DEQUANTIZERS, dequantize
    from tailscope.sources.gguf_reader import _mapped, read_gguf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the file; the fastest counts")
    args = parser.parse_args()
    if args.file:
        path = Path(args.file)
    else:
        from fetch_models import fetch  # type: ignore[import-not-found]

        path = fetch("smollm2")
    tensors = [t for t in read_gguf(path)[0] if t.type_name in DEQUANTIZERS]
    best: dict[str, list[float]] = defaultdict(lambda: [float("inf"), float("inf")])
    values: dict[str, int] = defaultdict(int)
    for t in tensors:
        values[t.type_name] += int(np.prod(t.shape))
    for _ in range(args.repeat):
        seconds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for t in tensors:
            raw = np.frombuffer(_mapped(str(path)), dtype=np.uint8, count=t.n_bytes, offset=t.begin)
            raw.sum()  # fault the pages in before either clock starts
            with np.errstate(all="ignore"):
                t0 = time.perf_counter()
                ours = dequantize(raw, t.type_name)
                t1 = time.perf_counter()
                theirs = gguf.quants.dequantize(raw.reshape(-1, t.shape[-1] // 32 * DEQUANTIZERS[t.type_name][0]), gguf.GGMLQuantizationType(t.ggml_type))
                t2 = time.perf_counter()
            if not np.array_equal(ours.view(np.uint32), theirs.reshape(-1).view(np.uint32)):
                raise SystemExit(f"{t.name}: values differ from gguf's")
            seconds[t.type_name][0] += t1 - t0
            seconds[t.type_name][1] += t2 - t1
        for name, (a, b) in seconds.items():
            best[name] = [min(best[name][0], a), min(best[name][1], b)]
    print(f"{path.name}: {len(tensors)} tensors, values bit-identical to gguf's")
    for name, (ours_s, theirs_s) in best.items():
        print(f"{name:5s} {values[name] / 1e6:7.1f}M values   tailscope {ours_s:6.3f} s   gguf {theirs_s:6.3f} s   "
              f"speed-up {theirs_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
