"""Lazy safetensors reader: validates the header itself, then maps tensors on demand.

The header is parsed here rather than by `safe_open` so that every defect of an untrusted file
(truncation, a header longer than the file, offsets out of range or overlapping, a byte count
that does not match dtype x shape) becomes one `InputError` naming the file, and so that
`describe` needs nothing but the header. Tensor bytes are read through `mmap`: pages are
file-backed and the kernel may drop them, so resident anonymous memory stays one matrix.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tailscope.errors import InputError
from tailscope.sources.base import bf16_to_float32
from tailscope.sources.float8 import FLOAT8, float8_to_float32
from tailscope.untrusted.json_loader import parse_json
from tailscope.untrusted.regular_files import open_regular

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_DIM = 2**53  # larger dimensions exist only in corrupt headers (an empty tensor may claim any)

# safetensors dtype -> (numpy dtype of the stored bytes, is floating point)
_DTYPES: dict[str, tuple[str, bool]] = {
    "F64": ("<f8", True), "F32": ("<f4", True), "F16": ("<f2", True), "BF16": ("<u2", True),
    "I64": ("<i8", False), "I32": ("<i4", False), "I16": ("<i2", False), "I8": ("i1", False),
    "U8": ("u1", False), "U16": ("<u2", False), "U32": ("<u4", False), "U64": ("<u8", False),
    "BOOL": ("?", False), "F8_E4M3": ("u1", True), "F8_E5M2": ("u1", True),
}


@dataclass(frozen=True)
class TensorInfo:
    """One header entry, already validated."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute byte offset in the file
    end: int

    @property
    def is_float(self) -> bool:
        return _DTYPES[self.dtype][1]


def read_header(path: str | Path) -> tuple[list[TensorInfo], dict[str, str]]:
    """Parse and validate a safetensors header; tensors in file-offset order, and the metadata."""
    path = Path(path)
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise InputError(path, f"not a safetensors file: {size} bytes, shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES:
                raise InputError(path, f"safetensors header length {length} exceeds the {MAX_HEADER_BYTES}-byte limit")
            if 8 + length > size:
                raise InputError(path, f"truncated safetensors file: header of {length} bytes but the file has {size}")
            raw = fh.read(length)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from exc
    header = parse_json(raw, path, "safetensors header")
    if not isinstance(header, dict):
        raise InputError(path, "safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InputError(path, "safetensors __metadata__ is not a JSON object")
    data_start, data_size = 8 + length, size - 8 - length
    infos = [_parse_entry(path, name, entry, data_start, data_size) for name, entry in header.items()]
    infos.sort(key=lambda t: (t.begin, t.end))
    for prev, cur in zip(infos, infos[1:]):
        if cur.begin < prev.end:
            raise InputError(path, f"tensors '{prev.name}' and '{cur.name}' overlap in the file")
    return infos, {str(k): str(v) for k, v in metadata.items()}


def _parse_entry(path: Path, name: str, entry: Any, data_start: int, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise InputError(path, f"tensor '{name}': header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise InputError(path, f"tensor '{name}': unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape):
        raise InputError(path, f"tensor '{name}': shape {shape!r} is not a list of ints in [0, 2^53]")
    if (
        not isinstance(offsets, list) or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise InputError(path, f"tensor '{name}': data_offsets {offsets!r} is not a pair of ints")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise InputError(path, f"tensor '{name}': data_offsets {offsets} out of range (data is {data_size} bytes)")
    itemsize = np.dtype(_DTYPES[dtype][0]).itemsize
    expected = math.prod(shape) * itemsize  # Python ints: a huge shape must not wrap around int64
    if end - begin != expected:
        raise InputError(
            path, f"tensor '{name}': {end - begin} bytes do not match dtype {dtype} x shape {shape} ({expected} bytes)"
        )
    return TensorInfo(name, dtype, tuple(shape), data_start + begin, data_start + end)


@lru_cache(maxsize=64)
def _mapping(path: str, size: int, mtime: int) -> mmap.mmap:
    """One read-only map per file (keyed by size and mtime so a rewritten file is remapped)."""
    with open_regular(path) as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _mapped(path: str) -> mmap.mmap:
    st = os.stat(path)
    return _mapping(path, st.st_size, st.st_mtime_ns)


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Decode stored values (bf16 kept as uint16, F8 as uint8) to a fresh float32 array."""
    if dtype == "BF16":
        return bf16_to_float32(raw)
    if dtype in FLOAT8:
        return float8_to_float32(raw, dtype)
    return raw.astype(np.float32)


@dataclass(frozen=True)
class SafetensorsLoader:
    """Picklable loader of one tensor, or of one expert (and one half) of a fused expert tensor."""

    path: str
    info: TensorInfo
    expert: int | None = None
    half: int | None = None  # 0 = gate rows, 1 = up rows of a fused gate_up tensor

    def __call__(self) -> np.ndarray:
        info = self.info
        np_dtype = np.dtype(_DTYPES[info.dtype][0])
        shape = info.shape
        begin = info.begin
        if self.expert is not None:
            per_expert = int(np.prod(shape[1:])) * np_dtype.itemsize
            begin += self.expert * per_expert
            shape = shape[1:]
        count = int(np.prod(shape))
        try:
            raw = np.frombuffer(_mapped(self.path), dtype=np_dtype, count=count, offset=begin).reshape(shape)
            if self.half is not None:
                rows = shape[0] // 2
                raw = raw[self.half * rows : (self.half + 1) * rows]
            return to_float32(raw, info.dtype)
        except (OSError, ValueError) as exc:
            raise InputError(self.path, f"cannot read tensor '{info.name}': {exc}") from exc


def iter_file_tensors(path: Path, order: list[str] | None = None) -> Iterator[tuple[TensorInfo, SafetensorsLoader]]:
    """(info, loader) for each tensor, in `order` if given, else sorted by name as `safe_open` lists them."""
    infos, _ = read_header(path)
    by_name = {t.name: t for t in infos}
    names = order if order is not None else sorted(by_name)
    for name in names:
        if name not in by_name:
            raise InputError(path, f"tensor '{name}' listed in the index is not in this shard")
        yield by_name[name], SafetensorsLoader(str(path), by_name[name])
