"""Write edited tensors into safetensors files without holding more than one tensor in memory.

safetensors layout: 8-byte little-endian header length, a JSON header (name -> dtype, shape,
data_offsets relative to the data region), then the data region. Smoothing keeps every dtype and
shape, so a smoothed shard has the same header and the same offsets as its source: the shard is
copied byte for byte (untouched tensors stay bit-identical) and each smoothed tensor's bytes are
overwritten in place. A GGUF source has no safetensors to copy; `StreamWriter` writes a new file
from a list of (name, shape) whose data is then appended tensor by tensor.
"""

from __future__ import annotations

import json
import secrets
import shutil
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from tailscope.errors import InputError, OutputError
from tailscope.outputs import owned_entries, probe_directory, replace_directory, tree_files
from tailscope.sources import INDEX_NAME, MatrixRef, Source
from tailscope.sources.float8 import FLOAT8, float32_to_float8
from tailscope.sources.paths import is_inside
from tailscope.sources.safetensors_reader import SafetensorsLoader
from tailscope.untrusted.json_loader import MAX_INDEX_BYTES, read_json_file

# (matrix, its values as float32, the tensor name written, the dtype written) -> new values or None (unchanged)
Edit = Callable[[MatrixRef, np.ndarray, str, str], "np.ndarray | None"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx", ".ckpt", ".ot", ".tflite")
HF_SIDE_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
)


def encode(values: np.ndarray, dtype: str) -> bytes:
    """Little-endian bytes of `values` (float64) cast to a safetensors float dtype.

    BF16 goes through float32 and rounds to nearest even (what torch's float32 -> bfloat16 does);
    F8 rounds to nearest even and saturates at its largest finite value.
    """
    if dtype == "F64":
        return np.ascontiguousarray(values, dtype="<f8").tobytes()
    if dtype == "F32":
        return np.ascontiguousarray(values, dtype="<f4").tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(values, dtype="<f2").tobytes()
    if dtype == "BF16":
        bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return rounded.astype("<u2").tobytes()
    if dtype in FLOAT8:
        return float32_to_float8(values, dtype).tobytes()
    raise ValueError(f"cannot write dtype {dtype}")


def byte_range(loader: SafetensorsLoader) -> tuple[int, int]:
    """(absolute offset, byte count) of what the loader reads: a tensor, an expert, or half of one."""
    info = loader.info
    itemsize = (info.end - info.begin) // max(int(np.prod(info.shape)), 1)
    shape, begin = info.shape, info.begin
    if loader.expert is not None:
        shape = shape[1:]
        begin += loader.expert * int(np.prod(shape)) * itemsize
    count = int(np.prod(shape))
    if loader.half is not None:
        count //= 2
        begin += loader.half * count * itemsize
    return begin, count * itemsize


def patch(fh: BinaryIO, offset: int, data: bytes, expected: int, name: str) -> None:
    """Overwrite `expected` bytes at `offset` (the size check guards against a wrong range)."""
    if len(data) != expected:
        raise InputError(name, f"smoothed tensor has {len(data)} bytes where the file holds {expected}")
    fh.seek(offset)
    fh.write(data)


def copy_side_files(src_dir: Path, dst_dir: Path, *, everything: bool) -> list[str]:
    """Copy config/tokenizer/other non-weight files; `everything` copies subfolders and any name too.

    Links are followed only inside the model (`tailscope.sources.paths`): a link to a file or
    folder elsewhere is refused rather than have its target's content land in the output.
    """
    copied = []
    for item in sorted(src_dir.iterdir()):
        if item.name.startswith(".") or item.suffix.lower() in WEIGHT_SUFFIXES or item.name.endswith(".index.json"):
            continue
        if not everything and item.name not in HF_SIDE_FILES:
            continue
        if _copy_confined(item, dst_dir / item.name, src_dir.resolve(), set()):
            copied.append(item.name)
    return copied


def _copy_confined(item: Path, target: Path, real_root: Path, walking: set[Path]) -> bool:
    """Copy a file, or a folder without its weight files, whose real path is inside the model;
    False for what is neither (a FIFO, a socket)."""
    real = item.resolve()
    if not is_inside(real_root, real):
        raise InputError(item, f"links to {real}, outside the model directory {real_root}; tailscope never copies files "
                               "from outside the model (copy the file in, or remove the link)")
    if real.is_dir():
        if real in walking:
            raise InputError(item, f"links back to {real}, a folder being copied (a loop)")
        target.mkdir()
        for child in sorted(real.iterdir()):
            if not child.name.endswith(WEIGHT_SUFFIXES):
                _copy_confined(child, target / child.name, real_root, walking | {real})
        return True
    if real.is_file():
        shutil.copyfile(real, target)
        return True
    return False


class StreamWriter:
    """A safetensors file written in one pass: header from the planned tensors, then their data in order."""

    def __init__(self, path: Path, tensors: list[tuple[str, tuple[int, ...]]], dtype: str = "F32") -> None:
        itemsize = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}[dtype]
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        self.sizes: dict[str, int] = {}
        for name, shape in tensors:
            size = int(np.prod(shape, dtype=np.int64)) * itemsize
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
            self.sizes[name] = size
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        self.order = [name for name, _ in tensors]
        self.dtype = dtype
        self.fh = open(path, "wb")
        self.fh.write(struct.pack("<Q", len(raw)) + raw)
        self.next = 0

    def write(self, name: str, values: np.ndarray) -> None:
        """Append the next tensor (they must come in the planned order)."""
        if self.order[self.next] != name:
            raise ValueError(f"expected tensor {self.order[self.next]!r}, got {name!r}")
        data = encode(values, self.dtype)
        if len(data) != self.sizes[name]:
            raise ValueError(f"tensor {name!r}: {len(data)} bytes, planned {self.sizes[name]}")
        self.fh.write(data)
        self.next += 1

    def close(self) -> None:
        self.fh.close()
        if self.next != len(self.order):
            raise ValueError(f"only {self.next} of {len(self.order)} planned tensors were written")


Sidecar = tuple[str, str, Callable[[], dict[str, Any]]]  # (file name, tool, builder called once every matrix is done)


def rewrite_checkpoint(source: Source, selected: list[MatrixRef], edit: Edit, dst: Path, *, overwrite: bool,
                       sidecar: Sidecar) -> Path:
    """Write a copy of `source` in which `edit` may replace each selected matrix, with the sidecar
    JSON next to the weights. The copy is built in a temporary folder beside `dst` and renamed
    into place at the end, so `dst` is either the old folder or the whole new one."""
    name, tool, build = sidecar
    final = check_destination(dst, source, overwrite, name, tool)
    tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}")
    try:
        tmp.mkdir()
        writer = _write_gguf if source.format == "gguf" else _write_safetensors
        writer(source, selected, edit, tmp)
        record = build() | {"files": tree_files(tmp)}  # what a later --overwrite may replace
        (tmp / name).write_text(json.dumps(record, indent=1))
        replace_directory(tmp, final)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(final, f"cannot write the checkpoint: {exc.strerror or exc}{where}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def check_destination(dst: Path, source: Source, overwrite: bool, sidecar: str, tool: str) -> Path:
    """Before any work: `dst` is not the source, is new, empty, or (with `overwrite`) an earlier
    output of `tool` holding nothing else, and its folder is writable."""
    src = Path(source.path).resolve()
    src_dir = src if src.is_dir() else src.parent
    final = Path(dst).resolve()
    if final == src_dir or (src.is_dir() and final.is_relative_to(src_dir)) or src_dir.is_relative_to(final):
        raise InputError(dst, f"output must not contain or lie inside the source {source.path}")
    if final.exists() and not final.is_dir():
        raise OutputError(dst, "exists and is not a directory")
    if final.exists() and any(final.iterdir()):
        if not overwrite:
            raise OutputError(dst, "exists and is not empty; pass --overwrite (overwrite=True) to replace an earlier output of this command")
        why = owned_entries(final, sidecar, (tool,))
        if why:
            raise OutputError(dst, f"--overwrite replaces only an earlier tailscope output, and this directory {why}; refusing to delete it")
    probe_directory(final.parent, "the new checkpoint")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(final.parent, f"cannot create the output's folder: {exc.strerror or exc}") from None
    return final


def _write_safetensors(source: Source, selected: list[MatrixRef], edit: Edit, out: Path) -> None:
    """Copy every shard byte for byte, then overwrite the edited matrices' bytes in place."""
    root = Path(source.path)
    src_dir = root if root.is_dir() else root.parent
    by_file: dict[str, list[MatrixRef]] = defaultdict(list)
    for ref in selected:
        by_file[str(Path(ref.loader.path).resolve())].append(ref)
    for shard in _shards(root):
        target = out / shard.name
        shutil.copyfile(shard, target)
        with open(target, "r+b") as fh:
            for ref in by_file.get(str(shard.resolve()), []):
                new = edit(ref, ref.load(), ref.longname, ref.dtype)
                if new is not None:
                    offset, size = byte_range(ref.loader)
                    patch(fh, offset, encode(new, ref.dtype), size, ref.longname)
    if (src_dir / INDEX_NAME).exists() and root.is_dir():
        shutil.copyfile(src_dir / INDEX_NAME, out / INDEX_NAME)
    copy_side_files(src_dir, out, everything=root.is_dir())


def _shards(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    index = root / INDEX_NAME
    if index.exists():
        names = sorted(set(read_json_file(index, "the file", MAX_INDEX_BYTES)["weight_map"].values()))  # checked by open_source
        return [root / n for n in names]
    return sorted(p for p in root.glob("*.safetensors") if p.is_file() and not p.name.startswith("adapter_"))


def _write_gguf(source: Source, selected: list[MatrixRef], edit: Edit, out: Path) -> None:
    """GGUF -> one float32 model.safetensors with HF names, config.json and the tokenizer."""
    from tailscope.sources.gguf_hf import hf_array, hf_tensor_names, load_tokenizer

    path = Path(source.path)
    config, pairs = hf_tensor_names(path)
    tokenizer = load_tokenizer(path)  # before any matrix is edited: a GGUF without one fails first
    chosen = {ref.longname: ref for ref in selected}
    writer = StreamWriter(out / "model.safetensors", [(hf, t.shape) for t, hf in pairs], "F32")
    try:
        for tensor, hf in pairs:
            values = hf_array(path, tensor, config)
            ref = chosen.get(tensor.name)
            new = edit(ref, values, hf, "F32") if ref is not None else None
            writer.write(hf, values if new is None else new)
    finally:
        writer.close()
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
