"""Lazy GGUF reader: our own header parser and Q8_0/Q4_0/Q4_1 decoders (`gguf_quants`), the
`gguf` package only to dequantize the other block types.

`gguf.GGUFReader` parses every metadata array into Python objects when it opens a file; for an LLM
that is the tokenizer's vocabulary and merges, 2.5 s for SmolLM2-135M before any weight is read.
This parser walks the same bytes but skips array contents, so opening costs milliseconds, and it
turns every structural defect into an `InputError` naming the file.

GGUF facts this relies on: dimensions are stored fastest-first, so the numpy shape is the reverse
(a 2-D weight comes out as (out, in)); tensor data starts at the next multiple of
`general.alignment` (default 32) after the tensor infos; q/k rows are permuted by llama.cpp's
converter, which leaves singular values unchanged.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from tailscope.errors import InputError, require
from tailscope.sources.base import bf16_to_float32
from tailscope.sources.gguf_quants import dequantize
from tailscope.sources.refs import TensorEntry
from tailscope.sources.safetensors_reader import MAX_DIM, _mapped
from tailscope.untrusted.regular_files import open_regular

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_PLAIN = {0: ("<f4", "F32"), 1: ("<f2", "F16"), 30: ("<u2", "BF16")}  # GGML types decoded without gguf
MAX_DIMS = 4
MAX_ARRAY_DEPTH = 4  # arrays of arrays: gguf-py writes them, llama.cpp refuses them; real files have none
_MIN_ITEM_BYTES = {_STRING: 8, _ARRAY: 12}  # a length (u64), or an element type (u32) and a count (u64)


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # numpy order
    ggml_type: int
    type_name: str
    begin: int
    n_bytes: int


_U64 = struct.Struct("<Q")


class _Cursor:
    def __init__(self, fh: BinaryIO, path: Path, size: int) -> None:
        self.fh, self.path, self.size = fh, path, size

    def unpack(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        data = self.fh.read(n)
        if len(data) < n:
            raise InputError(self.path, "truncated GGUF header")
        return struct.unpack(fmt, data)[0]

    def string_length(self) -> int:
        length = self.unpack("<Q")
        if length > self.size - self.fh.tell():
            raise InputError(self.path, f"GGUF string length {length} runs past the end of the file")
        return length

    def string(self, errors: str = "replace") -> str:
        """A metadata string (bad bytes replaced); tensor names keep theirs as surrogates
        ("surrogateescape"), so that `tensor_names` sees the name is not UTF-8 and skips it."""
        return self.fh.read(self.string_length()).decode("utf-8", errors=errors)

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            return self.skip_array(depth + 1)
        raise InputError(self.path, f"unknown GGUF metadata value type {vtype}")

    def skip_array(self, depth: int = 1) -> dict[str, int]:
        if depth > MAX_ARRAY_DEPTH:
            raise InputError(self.path, f"GGUF metadata arrays nested more than {MAX_ARRAY_DEPTH} deep")
        etype, count = self.unpack("<I"), self.unpack("<Q")
        smallest = struct.calcsize(_SCALARS[etype]) if etype in _SCALARS else _MIN_ITEM_BYTES.get(etype, 0)
        if count * smallest > self.size - self.fh.tell():
            raise InputError(self.path, f"GGUF array of {count} items runs past the end of the file")
        if etype in _SCALARS:
            self.fh.seek(count * smallest, 1)
        elif etype == _STRING:
            self.skip_strings(count)
        else:
            for _ in range(count):
                self.value(etype, depth)
        return {"array_length": count}

    def skip_strings(self, count: int) -> None:
        """Step over `count` length-prefixed strings by offsets in a memory map: the tokenizer's
        arrays (SmolLM2: 197k strings) took 0.3 s with a read and a seek per string."""
        pos, length_at = self.fh.tell(), _U64.unpack_from
        with mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for _ in range(count):
                if pos + 8 > self.size:
                    raise InputError(self.path, "truncated GGUF header")
                length = length_at(mm, pos)[0]
                pos += 8 + length
                if pos > self.size:
                    raise InputError(self.path, f"GGUF string length {length} runs past the end of the file")
        self.fh.seek(pos)


def read_gguf(path: str | Path) -> tuple[list[GGUFTensor], dict[str, Any]]:
    """Tensor infos (in file order) and scalar metadata of a GGUF file."""
    path = Path(path)
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        cur = _Cursor(fh, path, size)
        if fh.read(4) != b"GGUF":
            raise InputError(path, "not a GGUF file (bad magic)")
        version = cur.unpack("<I")
        if version not in (2, 3):
            raise InputError(path, f"unsupported GGUF version {version}")
        n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
        if n_tensors > size or n_kv > size:
            raise InputError(path, "corrupt GGUF header (impossible tensor or metadata count)")
        meta = {}
        for _ in range(n_kv):
            key = cur.string()
            meta[key] = cur.value(cur.unpack("<I"))
        raw = [_tensor_info(cur) for _ in range(n_tensors)]
        align = _alignment(path, meta.get("general.alignment", 32))
        data_start = -(-fh.tell() // align) * align
    tensors = [_finish(path, size, data_start, *r) for r in raw]
    _check_disjoint(path, tensors)
    return tensors, meta


def _check_disjoint(path: Path, tensors: list[GGUFTensor]) -> None:
    """Refuse tensors whose data overlap: entries pointing at the same bytes would turn a small
    file into any number of matrices (llama.cpp gives every tensor its own aligned slot)."""
    ordered = sorted((t for t in tensors if t.n_bytes), key=lambda t: t.begin)
    for prev, cur in zip(ordered, ordered[1:]):
        if cur.begin < prev.begin + prev.n_bytes:
            raise InputError(path, f"tensors '{prev.name}' and '{cur.name}' overlap in the file")


def _alignment(path: Path, value: Any) -> int:
    """general.alignment: a positive int (a string or array here is a corrupt file, not a crash)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(path, f"GGUF general.alignment {value!r} is not a positive integer")
    return value


def _tensor_info(cur: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
    name = cur.string(errors="surrogateescape")
    n_dims = cur.unpack("<I")
    if n_dims > MAX_DIMS:
        raise InputError(cur.path, f"tensor '{name}': {n_dims} dimensions")
    dims = tuple(cur.unpack("<Q") for _ in range(n_dims))
    if any(d > MAX_DIM for d in dims):
        raise InputError(cur.path, f"tensor '{name}': dimension {max(dims)} is impossibly large")
    return name, tuple(reversed(dims)), cur.unpack("<I"), cur.unpack("<Q")


def _finish(path: Path, size: int, data_start: int, name: str, shape: tuple[int, ...], ggml_type: int, offset: int) -> GGUFTensor:
    n_elements = math.prod(shape)  # Python ints: a corrupt dimension must not wrap around int64
    if ggml_type in _PLAIN:
        type_name = _PLAIN[ggml_type][1]
        n_bytes = n_elements * np.dtype(_PLAIN[ggml_type][0]).itemsize
    else:
        gguf = require("gguf", "gguf")
        try:
            qtype = gguf.GGMLQuantizationType(ggml_type)
        except ValueError:
            raise InputError(path, f"tensor '{name}': unknown GGML tensor type {ggml_type}") from None
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        if shape and shape[-1] % block:
            raise InputError(path, f"tensor '{name}': row of {shape[-1]} values is not a multiple of the {qtype.name} block {block}")
        type_name, n_bytes = qtype.name, n_elements // block * type_size
    begin = data_start + offset
    if begin + n_bytes > size:
        raise InputError(path, f"tensor '{name}': data runs past the end of the file (truncated?)")
    return GGUFTensor(name, shape, ggml_type, type_name, begin, n_bytes)


@dataclass(frozen=True)
class GGUFLoader:
    """Picklable loader: dequantizes one tensor, or one expert of a stacked expert tensor."""

    path: str
    tensor: GGUFTensor
    expert: int | None = None

    def __call__(self) -> np.ndarray:
        t = self.tensor
        shape, begin, n_bytes = t.shape, t.begin, t.n_bytes
        if self.expert is not None:
            n_bytes //= shape[0]
            begin += self.expert * n_bytes
            shape = shape[1:]
        raw = np.frombuffer(_mapped(self.path), dtype=np.uint8, count=n_bytes, offset=begin)
        if t.ggml_type in _PLAIN:
            np_dtype, name = _PLAIN[t.ggml_type]
            values = raw.view(np_dtype).reshape(shape)
            return bf16_to_float32(values) if name == "BF16" else values.astype(np.float32)
        try:
            with np.errstate(all="ignore"):  # NaN/Inf scales become a 'failed' row, not a warning
                out = dequantize(raw, t.type_name)  # our decoders; None for the types only gguf has
                if out is None:
                    gguf = require("gguf", "gguf")
                    rows = raw.reshape(int(np.prod(shape[:-1], dtype=np.int64)), -1)
                    out = gguf.quants.dequantize(rows, gguf.GGMLQuantizationType(t.ggml_type))
        except NotImplementedError as exc:
            raise InputError(self.path, f"tensor '{t.name}': cannot dequantize {t.type_name}: {exc}") from exc
        return np.ascontiguousarray(out, dtype=np.float32).reshape(shape)


def gguf_entries(path: Path) -> Iterator[TensorEntry]:
    tensors, _ = read_gguf(path)
    for t in tensors:
        yield TensorEntry(
            name=t.name, shape=t.shape, dtype=t.type_name, is_float=True,
            make_loader=lambda expert, half, t=t: GGUFLoader(str(path), t, expert),
        )
