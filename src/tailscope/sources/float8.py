"""8-bit floats (safetensors ``F8_E4M3`` and ``F8_E5M2``) decoded exactly by a 256-entry table.

E4M3 is the OCP "fn" variant (what torch's ``float8_e4m3fn`` and safetensors store): bias 7, no
infinities, only S.1111.111 is NaN, largest finite 448. E5M2 follows IEEE 754: bias 15,
exponent 31 holds infinities and NaNs, largest finite 57344. Every value of both is exact in
float32, so a table lookup is the exact decode.
"""

from __future__ import annotations

import numpy as np

FLOAT8 = ("F8_E4M3", "F8_E5M2")


def _table(exponent_bits: int, mantissa_bits: int, ieee_specials: bool) -> np.ndarray:
    code = np.arange(256)
    sign = np.where(code >> 7, -1.0, 1.0)
    exp = (code >> mantissa_bits) & ((1 << exponent_bits) - 1)
    frac = (code & ((1 << mantissa_bits) - 1)) / (1 << mantissa_bits)
    bias = (1 << (exponent_bits - 1)) - 1
    top = (1 << exponent_bits) - 1
    value = np.where(exp == 0, frac * 2.0 ** (1 - bias), (1 + frac) * 2.0 ** (exp - bias))
    if ieee_specials:
        value = np.where(exp == top, np.where(frac == 0, np.inf, np.nan), value)
    else:
        value = np.where((exp == top) & (frac == 1 - 1 / (1 << mantissa_bits)), np.nan, value)
    return (sign * value).astype(np.float32)


TABLES: dict[str, np.ndarray] = {"F8_E4M3": _table(4, 3, False), "F8_E5M2": _table(5, 2, True)}


def float8_to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored bytes (uint8) of an F8 tensor to a fresh float32 array of the same shape."""
    return TABLES[dtype][raw]


def float32_to_float8(values: np.ndarray, dtype: str) -> np.ndarray:
    """The nearest F8 code of each value (ties to the even code), saturating at the largest finite
    value, NaN to NaN: what writing a smoothed F8 matrix back needs."""
    table = TABLES[dtype]
    codes = np.flatnonzero(np.isfinite(table[:128]))  # non-negative finite codes, ascending in value
    grid = table[codes].astype(np.float64)
    x = np.asarray(values, dtype=np.float64)
    mag = np.minimum(np.abs(x), grid[-1])
    hi = np.clip(np.searchsorted(grid, mag), 1, len(grid) - 1)
    below, above = mag - grid[hi - 1], grid[hi] - mag
    up = (below > above) | ((below == above) & (codes[hi] % 2 == 0))
    out = np.where(up, codes[hi], codes[hi - 1]).astype(np.uint8)
    out |= np.signbit(x).astype(np.uint8) << 7
    out[np.isnan(x)] = 0x7F
    return out
