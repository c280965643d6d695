"""Small valid weight files and byte-level mutations of them, for the hostile-input tests.

A case passes when tailscope either analyzes the mutated file or raises a `TailscopeError`;
any other exception, a run longer than `CASE_SECONDS`, or resident memory growing by more than
`MAX_RSS_GROWTH_MB` fails it.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
from hypothesis import strategies as st

import tailscope

CASE_SECONDS = 10
MAX_RSS_GROWTH_MB = 512
# values that break size arithmetic: zero, off-by-one, 2^31/2^32/2^63/2^64 edges, 1e12 elements
INTERESTING = [0, 1, 2, 7, 8, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 10**12, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


def safetensors_bytes() -> bytes:
    """Five tensors covering F32, F16, BF16, a fused expert stack and a non-float vector."""
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {
        "layers.0.mlp.up_proj.weight": rng.standard_normal((12, 8)).astype(np.float32),
        "layers.0.mlp.down_proj.weight": rng.standard_normal((8, 10)).astype(np.float16),
        "layers.0.mlp.experts.gate_up_proj": rng.standard_normal((2, 8, 4)).astype(np.float32),
        "layers.0.norm.weight": np.ones(8, np.float32),
        "layers.0.ids": np.arange(3, dtype=np.int64),
    }
    raw = save(tensors, metadata={"format": "pt"})
    # rewrite one tensor as BF16 (numpy has no bfloat16): same bytes as F16, other decoding
    length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + length])
    header["layers.0.mlp.down_proj.weight"]["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + length :]


def one_tensor_gguf(path: Path, name: str = "blk.0.attn_q.weight") -> tuple[bytearray, int]:
    """A GGUF with one 16 x 32 F32 tensor written at `path`, as bytes to edit, and the offset of
    that tensor's n_dims field (u32; its two dims follow as u64, then its GGML type as u32)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor(name, np.ones((16, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = bytearray(path.read_bytes())
    return data, data.index(name.encode()) + len(name)


def gguf_bytes(tmp: Path) -> bytes:
    """A small GGUF written by the `gguf` package: F32, F16, Q8_0, stacked experts and a norm."""
    import gguf

    rng = np.random.default_rng(0)
    path = tmp / "seed.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_token_list(["a", "b", "c"])
    w.add_tensor("blk.0.attn_q.weight", rng.standard_normal((8, 12)).astype(np.float32))
    w.add_tensor("blk.0.attn_k.weight", rng.standard_normal((4, 12)).astype(np.float16))
    q = gguf.quants.quantize(rng.standard_normal((4, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.ffn_up.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.ffn_gate_exps.weight", rng.standard_normal((2, 6, 4)).astype(np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(12, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def torch_bytes() -> bytes:
    """A small torch.save zip checkpoint (read only through torch.load(weights_only=True))."""
    import io

    import torch

    gen = torch.Generator().manual_seed(0)
    buf = io.BytesIO()
    torch.save({"a.weight": torch.randn(12, 8, generator=gen), "b.weight": torch.randn(8, 10, generator=gen).half(),
                "norm": torch.ones(3)}, buf)
    return buf.getvalue()


@st.composite
def mutations(draw: st.DrawFn, size: int, hot: int) -> list[tuple]:
    """1-4 edits; positions favour the first `hot` bytes (the header)."""
    pos = st.one_of(st.integers(0, max(hot - 1, 0)), st.integers(0, size - 1))
    op = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("u32"), pos, st.sampled_from(INTERESTING).map(lambda v: v % 2**32)),
        st.tuples(st.just("u64"), pos, st.sampled_from(INTERESTING)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), pos, st.integers(1, 16)),
        st.tuples(st.just("truncate"), pos),
    )
    return draw(st.lists(op, min_size=1, max_size=4))


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for op, *args in ops:
        pos = min(args[0], max(len(buf) - 1, 0))
        if op == "flip" and buf:
            buf[pos] ^= 1 << args[1]
        elif op == "set" and buf:
            buf[pos] = args[1]
        elif op in ("u32", "u64"):
            packed = struct.pack("<I" if op == "u32" else "<Q", args[1])
            buf[pos : pos + len(packed)] = packed
        elif op == "insert":
            buf[pos:pos] = args[1]
        elif op == "delete":
            del buf[pos : pos + args[1]]
        elif op == "truncate":
            del buf[pos:]
    return bytes(buf)


class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def fire(signum, frame):  # noqa: ANN001
        raise CaseTimeout(f"case ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_file(path: Path) -> str:
    """'ok' or 'refused'; anything else raises (and fails the case)."""
    try:
        with time_limit(CASE_SECONDS):
            tailscope.describe(path)
            report = tailscope.analyze(path, progress=False, min_evals=0)
    except tailscope.TailscopeError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), f"error is not one line: {exc!r}"
        return "refused"
    assert set(report.details["status"]) <= {"success", "failed"}
    assert (report.details.loc[report.details["status"] == "failed", "reason"].str.len() > 0).all()
    return "ok"


JSON_VALUES = st.one_of(
    st.sampled_from(INTERESTING), st.integers(-(2**64), 2**64), st.floats(allow_nan=True), st.none(), st.booleans(),
    st.text(max_size=8), st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "BOOL", "F8_E4M3", "Q4_0", ""]),
    st.lists(st.sampled_from(INTERESTING), max_size=5),
)


@st.composite
def header_edits(draw: st.DrawFn, names: list[str]) -> list[tuple]:
    """1-3 edits of the safetensors JSON header: a field of a tensor, or one element of its
    shape or data_offsets, replaced by a hostile value (huge, negative, wrong type) or deleted."""
    edit = st.tuples(
        st.sampled_from(names), st.sampled_from(["dtype", "shape", "data_offsets", "__delete__"]),
        st.one_of(st.none(), st.integers(0, 4)), JSON_VALUES,
    )
    return draw(st.lists(edit, min_size=1, max_size=3))


def edit_header(data: bytes, edits: list[tuple], fix_length: bool = True) -> bytes:
    """Apply `header_edits` and rewrite the header (its length field updated when `fix_length`)."""
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    for name, field, index, value in edits:
        entry = header[name]
        if field == "__delete__":
            entry.pop(("dtype", "shape", "data_offsets")[(index or 0) % 3], None)
        elif index is not None and isinstance(entry.get(field), list) and entry[field]:
            entry[field][index % len(entry[field])] = value
        else:
            entry[field] = value
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if fix_length else length) + text + data[8 + length :]
