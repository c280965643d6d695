"""Write large bf16 safetensors checkpoints without holding them in memory (tests and benchmarks)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

# The start of a `python -c` script that samples the process's anonymous RSS (RssAnon: not the
# file-backed mmap pages the kernel can drop) every 20 ms into `peak`; `rss_anon()` reads it now.
RSS_SAMPLER = r"""
import json, sys, threading, time
peak = 0
def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
def sample():
    global peak
    while True:
        peak = max(peak, rss_anon()); time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
"""


def bf16_bytes(x: np.ndarray) -> bytes:
    """float32 -> bf16 (round to nearest even) as raw little-endian bytes."""
    u = x.astype(np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_bf16_checkpoint(path: Path, shapes: dict[str, tuple[int, int]], seed: int = 0, tile_rows: int = 4096) -> int:
    """Stream a bf16 safetensors file; each matrix repeats a random (tile_rows x M) block down its
    rows (full rank, cheap to generate). Returns the file size."""
    rng = np.random.default_rng(seed)
    header, offset = {}, 0
    for name, (n, m) in shapes.items():
        size = n * m * 2
        header[name] = {"dtype": "BF16", "shape": [n, m], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for n, m in shapes.values():
            tile = bf16_bytes(rng.standard_normal((min(tile_rows, n), m)) * 0.02)
            full, rest = divmod(n, min(tile_rows, n))
            for _ in range(full):
                fh.write(tile)
            fh.write(tile[: rest * m * 2])
    return path.stat().st_size


def write_sharded(directory: Path, shapes: dict[str, tuple[int, int]], n_shards: int, seed: int = 0) -> int:
    """The same matrices split over shards with a model.safetensors.index.json. Returns total bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    names = list(shapes)
    per = -(-len(names) // n_shards)
    weight_map, total = {}, 0
    for i in range(n_shards):
        part = {k: shapes[k] for k in names[i * per : (i + 1) * per]}
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        total += write_bf16_checkpoint(directory / fname, part, seed=seed + i)
        weight_map.update({k: fname for k in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return total
