"""Dequantizers for the GGUF block types that small and mid-size published models use most (Q8_0,
Q4_0, Q4_1), bit-identical to the `gguf` package's, which handles every other type.

Why our own: `gguf.quants` builds several full-size temporaries per tensor. On SmolLM2-135M
(pages already in memory) its Q8_0 token embedding (28.3M values) took 0.053 s and its 210
Q4_1 matrices (106M values) 0.28 s; here 0.018 s and 0.145 s (`python
bench/bench_gguf_dequant.py`). Each nibble plane is one masked multiply, the integer -> float32
cast done inside the ufunc and written straight into the output, a chunk of blocks at a time.
The arithmetic is the package's, in the same order (d * q, then + m), so the values are the
same bits; tests/sources/test_gguf_quants.py checks that on random blocks, NaN/Inf scales included.

Block layouts (ggml-common.h; 32 values per block, fp16 scales first):
  Q8_0  d, int8 q[32]:           x[j] = d * q[j]
  Q4_0  d, uint8 qs[16]:          x[j] = d * ((qs[j] & 15) - 8),  x[j+16] = d * ((qs[j] >> 4) - 8)
  Q4_1  d, m, uint8 qs[16]:       x[j] = d * (qs[j] & 15) + m,    x[j+16] = d * (qs[j] >> 4) + m
"""

from __future__ import annotations

from typing import Callable

import numpy as np

BLOCK = 32
CHUNK = 16384  # blocks per pass (2 MiB of output): each pass's temporaries stay in cache


def _scale(blocks: np.ndarray, at: int) -> np.ndarray:
    """The fp16 at byte `at` of each block as a float32 column."""
    return blocks[:, at : at + 2].copy().view(np.float16).astype(np.float32)


def _chunked(blocks: np.ndarray, decode: Callable[[np.ndarray, np.ndarray], None]) -> np.ndarray:
    """(blocks, 32) float32, filled CHUNK blocks at a time by decode(blocks_chunk, out_chunk)."""
    out = np.empty((blocks.shape[0], BLOCK), dtype=np.float32)
    for start in range(0, blocks.shape[0], CHUNK):
        decode(blocks[start : start + CHUNK], out[start : start + CHUNK])
    return out


def _q8_0(blocks: np.ndarray, out: np.ndarray) -> None:
    np.multiply(blocks[:, 2:].view(np.int8), _scale(blocks, 0), out=out, dtype=np.float32)


def _q4_0(blocks: np.ndarray, out: np.ndarray) -> None:
    qs, d, half = blocks[:, 2:], _scale(blocks, 0), BLOCK // 2
    np.multiply((qs & 15).view(np.int8) - np.int8(8), d, out=out[:, :half], dtype=np.float32)
    np.multiply((qs >> 4).view(np.int8) - np.int8(8), d, out=out[:, half:], dtype=np.float32)


def _q4_1(blocks: np.ndarray, out: np.ndarray) -> None:
    qs, d, half = blocks[:, 4:], _scale(blocks, 0), BLOCK // 2
    np.multiply(qs & 15, d, out=out[:, :half], dtype=np.float32)
    np.multiply(qs >> 4, d, out=out[:, half:], dtype=np.float32)
    out += _scale(blocks, 2)


DEQUANTIZERS: dict[str, tuple[int, Callable[[np.ndarray, np.ndarray], None]]] = {
    "Q8_0": (34, _q8_0), "Q4_0": (18, _q4_0), "Q4_1": (20, _q4_1),  # type name -> (bytes per block, decoder)
}


def dequantize(raw: np.ndarray, type_name: str) -> np.ndarray | None:
    """float32 values of the raw bytes of a tensor of this type (flat), or None for a type that
    only the `gguf` package decodes."""
    if type_name not in DEQUANTIZERS:
        return None
    size, decode = DEQUANTIZERS[type_name]
    return _chunked(raw.reshape(-1, size), decode).reshape(-1)
