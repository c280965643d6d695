"""Small files that claim (or, before the bounds, cost) a lot of memory: tests and the benchmark.

Each writer builds its file from raw bytes (no library that would refuse to write it), and big
data regions are holes (`truncate`), so a "1.5 GB" file takes no disk.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

GGUF_F32, GGUF_F16 = 0, 1


def safetensors_header_file(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> Path:
    """A safetensors file whose data region is a hole; `tensors` maps name -> (dtype, shape, nbytes)."""
    header, offset = {}, 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return path


def fused_experts_safetensors(path: Path, n_experts: int) -> Path:
    """One HF fused expert tensor of `n_experts` 1 x 8 F16 matrices (16 bytes each)."""
    name = "model.layers.0.mlp.experts.down_proj"
    return safetensors_header_file(path, {name: ("F16", [n_experts, 1, 8], n_experts * 16)})


def big_matrix_safetensors(path: Path, n: int = 50000, m: int = 15000) -> Path:
    """One n x m F16 matrix of zeros in a hole (50000 x 15000: 1.5 GB apparent, nothing on disk)."""
    return safetensors_header_file(path, {"model.layers.0.mlp.down_proj.weight": ("F16", [n, m], n * m * 2)})


def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_file(path: Path, tensors: list[tuple[str, tuple[int, ...], int, int]], data_bytes: int) -> Path:
    """A GGUF v3 file without metadata; `tensors` lists (name, numpy shape, ggml type, data offset),
    and the data region (`data_bytes`, aligned at 32) is a hole."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 0))
    for name, shape, ggml_type, offset in tensors:
        out += _gguf_string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))  # GGUF stores fastest-first
        out += struct.pack("<IQ", ggml_type, offset)
    out += b"\0" * (-len(out) % 32)
    with open(path, "wb") as fh:
        fh.write(out)
        fh.truncate(len(out) + data_bytes)
    return path


def gguf_stacked_experts(path: Path, n_experts: int) -> Path:
    """A llama.cpp ``ffn_down_exps`` tensor of `n_experts` 1 x 8 F32 matrices."""
    return gguf_file(path, [("blk.0.ffn_down_exps.weight", (n_experts, 1, 8), GGUF_F32, 0)], n_experts * 32)


def gguf_aliased(path: Path, n_entries: int, side: int = 256) -> Path:
    """`n_entries` side x side F16 tensors that all point at the same bytes (one matrix's worth)."""
    tensors = [(f"blk.{i}.attn_q.weight", (side, side), GGUF_F16, 0) for i in range(n_entries)]
    return gguf_file(path, tensors, side * side * 2)


def stride0_torch(path: Path, n: int = 50000, m: int = 15000) -> Path:
    """A torch.save'd 1-element storage viewed as n x m with strides (0, 0): a few KB."""
    import torch

    torch.save({"model.layers.0.mlp.down_proj.weight": torch.zeros(1).expand(n, m)}, path)
    return path


def wide_lora_adapter(directory: Path, r: int = 16, n_in: int = 4_000_000, n_out: int = 64) -> Path:
    """A PEFT adapter whose lora_A is r x n_in F32 (256 MB of holes at the defaults): its dense
    update (n_out x n_in) has N = n_in > max_n, so nothing needs reading."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 2 * r}))
    stem = "base_model.model.model.layers.0.mlp.up_proj"
    safetensors_header_file(directory / "adapter_model.safetensors", {
        f"{stem}.lora_A.weight": ("F32", [r, n_in], r * n_in * 4),
        f"{stem}.lora_B.weight": ("F32", [n_out, r], n_out * r * 4),
    })
    return directory
