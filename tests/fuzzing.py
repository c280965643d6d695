"""Small valid weight files and byte-level mutations of them, for the hostile-input tests.

A case passes when tailscope either analyzes the mutated file or raises a `TailscopeError`;
any other exception, a run longer than `CASE_SECONDS`, or resident memory growing by more than
`MAX_RSS_GROWTH_MB` fails it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import resource
import signal
import struct
import warnings
from pathlib import Path
from typing import Any, Iterator

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
    assert set(report.details["status"]) <= {"success", "failed", "degenerate"}
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


# -- structural generators: JSON, tensor tables and patterns built piece by piece ------------------
# (tests/untrusted/test_fuzz_inputs.py). Byte mutations above rarely produce a well-formed file with one
# hostile value inside; these build valid structures and put hostile values exactly where a reader
# expects a number, a mapping, a name or a shape.


@dataclasses.dataclass(frozen=True)
class Raw:
    """JSON text emitted verbatim: what json.dumps cannot write (an integer of 5000 digits, 50,000
    nested brackets) or will not (NaN written as a bare token)."""

    text: str


@dataclasses.dataclass(frozen=True)
class Obj:
    """A JSON object as its pairs, so that a key may repeat."""

    pairs: tuple[tuple[str, Any], ...]


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        value = Obj(tuple(value.items()))
    if isinstance(value, Obj):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(to_json, value)) + "]"
    return json.dumps(value)  # a lone surrogate comes out as its \ud800 escape


DEPTHS = [2, 63, 64, 65, 1000, 50_000]  # around the 64-level limit, then far beyond
LONE_SURROGATES = ["\ud800", "\udfff", "a\udc80b", "\ud83d"]
ODD_TEXT = ["", " ", "\x1b[31mred", "a\nb", "\u202eevil", "é", "日本", "a" * 1025, "x" * 5000, "\x00"]

deep_json = st.sampled_from(DEPTHS).map(lambda n: Raw("[" * n + "]" * n) if n % 2 else Raw('{"a":' * n + "1" + "}" * n))
big_ints = st.one_of(st.integers(41, 5000).map(lambda n: Raw("9" * n)), st.sampled_from([Raw("1" * 40), Raw("-" + "1" * 41)]))
hostile_text = st.one_of(st.text(max_size=8), st.sampled_from(LONE_SURROGATES + ODD_TEXT))
json_scalars = st.one_of(
    st.sampled_from(INTERESTING), st.integers(-(2**64), 2**64), big_ints, st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Raw("NaN"), Raw("-Infinity"), Raw("1e999"), Raw("-0"), Raw("1" * 300 + ".5")]),
    st.none(), st.booleans(), hostile_text,
)


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    pairs = st.lists(st.tuples(hostile_text, children), max_size=3)
    objects = pairs.map(lambda p: Obj(tuple(dict(p).items())))
    repeated = pairs.filter(bool).map(lambda p: Obj(tuple(p) + (p[0],)))  # a repeated key
    return st.one_of(st.lists(children, max_size=3), objects, st.lists(children, max_size=3), objects, repeated)


json_values = st.recursive(st.one_of(json_scalars, deep_json), _containers, max_leaves=8)
# well-formed JSON of the wrong type (what a careless writer produces): most replaced fields get one
# of these, so that the type checks behind the JSON limits run; json_values hit the limits themselves
plain_values = st.recursive(
    st.one_of(st.sampled_from(INTERESTING), st.integers(-(2**64), 2**64), st.floats(), st.none(), st.booleans(),
              st.text(max_size=8), st.sampled_from(ODD_TEXT)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)), max_leaves=6,
)
field_values = st.integers(0, 7).flatmap(lambda i: json_values if i == 7 else plain_values)  # one_of(*[a] * 7, b) is not 7:1


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws, and False in the simplest example (hypothesis starts from
    all-zero choices, so the valid structure must be what zero gives)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


def _unique(name: str, used: set[str]) -> str:
    while name in used:
        name += ".x"
    used.add(name)
    return name

TENSOR_NAMES = [
    "layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight", "layers.0.mlp.experts.gate_up_proj",
    "lm_head.weight", "model.norm.weight", "model.embed_tokens.weight", "layers.2.mlp.down_proj.weight", "position_ids",
]
tensor_names = st.one_of(st.sampled_from(TENSOR_NAMES), st.sampled_from(TENSOR_NAMES), hostile_text,
                         st.tuples(st.sampled_from(TENSOR_NAMES), hostile_text).map("".join))
dims = st.one_of(st.integers(0, 12), st.integers(0, 12), st.sampled_from(INTERESTING))
shapes = st.lists(dims, max_size=5)
ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I64": "<i8", "I8": "i1", "U8": "u1", "BOOL": "?",
             "F8_E4M3": "u1", "F8_E5M2": "u1"}
MAX_CASE_ELEMENTS = 4096  # a generated tensor holds at most this many values (a larger shape gets no bytes)


def _values(rng: np.random.Generator, count: int, np_dtype: str) -> bytes:
    if np_dtype == "<u2":  # bf16: the high halves of float32 values
        return (rng.standard_normal(count).astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    if np.dtype(np_dtype).kind == "f":
        return rng.standard_normal(count).astype(np_dtype).tobytes()
    return rng.integers(0, 2, count).astype(np_dtype).tobytes()


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """A safetensors file of 1-4 tensors whose header is built structurally: names, dtypes, shapes and
    offsets mostly consistent, with hostile values (types, sizes, depth, duplicate keys) put in."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pairs: list[tuple[str, Any]] = []
    data, used = bytearray(), set()
    for _ in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(list(ST_DTYPES) + ["Q4_0", "", "f32"] * rarely(draw, 5)))
        shape = draw(st.one_of(st.sampled_from([[12, 8], [8, 10], [2, 8, 4], [16, 16]]), shapes))
        count = math.prod(shape)
        np_dtype = ST_DTYPES.get(dtype, "<f4")
        if count <= MAX_CASE_ELEMENTS:
            begin = len(data)
            data += _values(rng, count, np_dtype)
            offsets: Any = [begin, len(data)]
        else:
            offsets = [len(data), len(data) + draw(st.integers(0, 64))]
        entry: dict[str, Any] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        hostile = ["dtype", "shape", "data_offsets", "entry", "dim", "offset"]
        for field in draw(st.lists(st.sampled_from(hostile), max_size=2)) if rarely(draw, 3) else ():
            if field == "entry":
                entry = draw(field_values)
                break
            if field == "dim" and shape:
                shape[draw(st.integers(0, len(shape) - 1))] = draw(field_values)
            elif field == "offset":
                offsets[draw(st.integers(0, 1))] = draw(field_values)
            elif field in entry:
                entry[field] = draw(field_values)
        pairs.append((_unique(draw(tensor_names), used), entry))
    if draw(st.booleans()):
        pairs.append(("__metadata__", draw(st.one_of(st.just({"format": "pt"}), field_values))))
    if rarely(draw, 30):
        pairs.append(pairs[0])  # the same tensor listed twice
    header: Any = draw(json_values) if rarely(draw, 20) else Obj(tuple(pairs))
    text = to_json(header).encode("utf-8", "surrogatepass")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(data)


@st.composite
def index_files(draw: st.DrawFn, where: dict[str, str]) -> str:
    """model.safetensors.index.json text: a weight_map of the real tensors to their shards
    (`where`), with hostile entries, values or a hostile whole."""
    shards = sorted(set(where.values()))
    weight_map = list(where.items())
    used = set(where)
    for _ in range(draw(st.integers(0, 2)) if rarely(draw, 4) else 0):
        target = draw(st.one_of(st.sampled_from(shards + ["missing.safetensors", "../x.safetensors"]), field_values))
        weight_map.append((_unique(draw(tensor_names), used), target))
    if rarely(draw, 30):
        weight_map.append(weight_map[0])
    body: Any = Obj((("metadata", draw(st.one_of(st.just({"total_size": 1}), field_values))), ("weight_map", Obj(tuple(weight_map)))))
    if rarely(draw, 6):
        body = Obj((("weight_map", draw(field_values)),))
    if rarely(draw, 10):
        body = draw(json_values)
    return to_json(body)


# GGUF, written by our own encoder so that any field may lie: value types, array nesting and counts,
# tensor name bytes, dimensions, GGML types and offsets.
G_U8, G_I32, G_U32, G_F32, G_BOOL, G_STR, G_ARR, G_U64, G_F64 = 0, 5, 4, 6, 7, 8, 9, 10, 12
_G_FMT = {G_U8: "<B", G_I32: "<i", G_U32: "<I", G_F32: "<f", G_BOOL: "<?", G_U64: "<Q", G_F64: "<d"}
GGML_TYPES = {0: ("<f4", 1, 4), 1: ("<f2", 1, 2), 30: ("<u2", 1, 2), 8: (None, 32, 34)}  # type: (numpy, block, block bytes)


def _g_str(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def _g_value(value: tuple) -> bytes:
    """(type, payload) -> bytes; arrays are (G_ARR, element type, items, claimed count or None)."""
    vtype = value[0]
    if vtype in _G_FMT:
        return struct.pack(_G_FMT[vtype], value[1])
    if vtype == G_STR:
        return _g_str(value[1])
    if vtype == G_ARR and value[1] == "encoded":
        return value[2]
    if vtype == G_ARR:
        _, etype, items, claimed = value
        body = b"".join(_g_value(item) for item in items)  # elements carry no type tag of their own
        return struct.pack("<IQ", etype, len(items) if claimed is None else claimed) + body
    return b""  # an unknown type: no payload


def _nested_array(depth: int) -> tuple:
    """An array nested `depth` deep (one u32 at the bottom), already encoded: 50,000 levels would
    not fit Python's recursion as a tree."""
    return (G_ARR, "encoded", struct.pack("<IQ", G_ARR, 1) * (depth - 1) + struct.pack("<IQI", G_U32, 1, 1))


_g_scalars = st.one_of(
    st.tuples(st.just(G_U32), st.integers(0, 2**32 - 1)), st.tuples(st.just(G_I32), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(G_U64), st.sampled_from(INTERESTING)), st.tuples(st.just(G_F32), st.floats(width=32)),
    st.tuples(st.just(G_F64), st.floats()), st.tuples(st.just(G_BOOL), st.booleans()),
    st.tuples(st.just(G_STR), st.one_of(st.binary(max_size=8), st.sampled_from([b"llama", b"\xff\xfe", b"gpt2"]))),
    st.tuples(st.sampled_from([13, 99, 2**31]), st.none()),  # unknown value types
)
_g_values = st.one_of(
    _g_scalars, st.integers(1, 8).map(_nested_array), st.sampled_from([50_000]).map(_nested_array),
    st.tuples(st.just(G_ARR), st.just(G_U32), st.lists(st.tuples(st.just(G_U32), st.integers(0, 9)), max_size=3),
              st.one_of(st.none(), st.sampled_from(INTERESTING))),
    st.tuples(st.just(G_ARR), st.just(G_STR), st.lists(st.tuples(st.just(G_STR), st.binary(max_size=4)), max_size=3), st.none()),
)
GGUF_KEYS = ["general.architecture", "general.alignment", "general.name", "llama.block_count", "llama.embedding_length",
             "llama.attention.head_count", "llama.attention.head_count_kv", "llama.feed_forward_length",
             "llama.rope.freq_base", "llama.expert_count", "llama.context_length", "tokenizer.ggml.tokens"]
GGUF_NAMES = [b"blk.0.attn_q.weight", b"blk.0.ffn_up.weight", b"blk.0.ffn_gate_exps.weight", b"token_embd.weight",
              b"output_norm.weight", b"blk.0.attn_k.weight"]


# a complete one-block Llama (H=32, 2 heads of 16, 1 KV head, MLP 64, vocab 40): the metadata and
# tensors gguf_hf needs to rebuild a model, so that hostile values reach the card and smoothing too
LLAMA_META = [(b"llama.block_count", (G_U32, 1)), (b"llama.embedding_length", (G_U32, 32)),
              (b"llama.attention.head_count", (G_U32, 2)), (b"llama.attention.head_count_kv", (G_U32, 1)),
              (b"llama.feed_forward_length", (G_U32, 64)), (b"llama.context_length", (G_U32, 64)),
              (b"llama.rope.freq_base", (G_F32, 10000.0)), (b"llama.attention.layer_norm_rms_epsilon", (G_F32, 1e-5))]
LLAMA_TENSORS = [(b"token_embd.weight", [40, 32]), (b"blk.0.attn_q.weight", [32, 32]), (b"blk.0.attn_k.weight", [16, 32]),
                 (b"blk.0.attn_v.weight", [16, 32]), (b"blk.0.attn_output.weight", [32, 32]), (b"blk.0.ffn_gate.weight", [64, 32]),
                 (b"blk.0.ffn_up.weight", [64, 32]), (b"blk.0.ffn_down.weight", [32, 64]), (b"blk.0.attn_norm.weight", [32]),
                 (b"blk.0.ffn_norm.weight", [32]), (b"output_norm.weight", [32])]


@st.composite
def gguf_tensor(draw: st.DrawFn, name: bytes | None = None, shape: list[int] | None = None) -> tuple[bytes, list[int], int, bool]:
    """(name, numpy-order shape, GGML type, whether its offset lies): the given name/shape as F32
    unless a hostile name, shape or type is drawn."""
    if name is None or rarely(draw, 4):
        name = draw(st.one_of(st.sampled_from(GGUF_NAMES), st.binary(max_size=6), st.sampled_from([b"\xed\xa0\x80", b"x" * 2000])))
    if shape is None or rarely(draw, 4):
        shape = draw(st.one_of(st.sampled_from([[8, 32], [4, 64], [2, 6, 32], [32]]), st.lists(dims, max_size=5)))
    ggml = draw(st.sampled_from(list(GGML_TYPES) + [2, 99])) if rarely(draw, 3) else 0
    return name, shape, ggml, rarely(draw, 8)


@st.composite
def gguf_files(draw: st.DrawFn) -> bytes:
    """A GGUF v3 file: either a complete one-block Llama or 1-3 loose tensors, with metadata values
    of hostile types, nested or lying arrays, and tensors with hostile names, dimensions, types and
    offsets; data aligned as the format says."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    complete = draw(st.booleans())
    kvs = [(b"general.architecture", (G_STR, b"llama"))] + (LLAMA_META if complete else [])
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.one_of(st.sampled_from([k for k, _ in LLAMA_META] + [k.encode() for k in GGUF_KEYS]), st.binary(max_size=6)))
        kvs = [kv for kv in kvs if kv[0] != key] + [(key, draw(_g_values))]
    specs = [draw(gguf_tensor(n, s)) for n, s in LLAMA_TENSORS] if complete else \
        [draw(gguf_tensor()) for _ in range(draw(st.integers(1, 3)))]
    infos, blobs, offset = [], [], 0
    for name, shape, ggml, lies in specs:
        np_dtype, block, block_bytes = GGML_TYPES.get(ggml, (None, 32, 18))
        count = math.prod(shape)
        n_bytes = count // block * block_bytes if count <= MAX_CASE_ELEMENTS else draw(st.integers(0, 64))
        blob = _values(rng, n_bytes // np.dtype(np_dtype).itemsize, np_dtype) if np_dtype else rng.bytes(n_bytes)
        at = draw(st.sampled_from(INTERESTING)) if lies else offset
        dims_field = struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d % 2**64) for d in reversed(shape))
        infos.append(_g_str(name) + dims_field + struct.pack("<IQ", ggml, at % 2**64))
        blobs.append(blob.ljust(n_bytes, b"\0") + b"\0" * (-n_bytes % 32))
        offset += len(blobs[-1])
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs))
    head += b"".join(_g_str(k) + struct.pack("<I", v[0] % 2**32) + _g_value(v) for k, v in kvs) + b"".join(infos)
    return head + b"\0" * (-len(head) % 32) + b"".join(blobs)


# PyTorch state dicts: every kind of value a weights-only pickle can hold where a tensor is expected.
TORCH_KINDS = ["float32", "float16", "bfloat16", "float64", "int64", "bool", "complex64", "float8", "sparse_coo",
               "sparse_csr", "meta", "quantized", "transposed", "expanded", "int", "str", "list", "dict", "none"]


def torch_value(kind: str, shape: list[int], seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    shape = [d % 13 for d in shape]
    dense = torch.randn(*shape, generator=gen) if shape else torch.randn((), generator=gen)
    two_d = torch.randn(12, 8, generator=gen)
    table: dict[str, Any] = {
        "float32": lambda: dense, "float16": lambda: dense.half(), "bfloat16": lambda: dense.bfloat16(),
        "float64": lambda: dense.double(), "int64": lambda: dense.long(), "bool": lambda: dense > 0,
        "complex64": lambda: dense.to(torch.complex64), "float8": lambda: dense.to(torch.float8_e4m3fn),
        "sparse_coo": lambda: two_d.to_sparse(), "sparse_csr": lambda: two_d.to_sparse_csr(),
        "meta": lambda: torch.empty(tuple(shape), device="meta"), "quantized": lambda: torch.quantize_per_tensor(two_d, 0.1, 0, torch.qint8),
        "transposed": lambda: two_d.t(), "expanded": lambda: torch.randn(1, 8, generator=gen).expand(12, 8),
        "int": lambda: 7, "str": lambda: "weights", "list": lambda: [1, 2], "dict": lambda: {"a": two_d}, "none": lambda: None,
    }
    with warnings.catch_warnings():  # torch's notes on beta sparse layouts and deprecated quantization
        warnings.simplefilter("ignore")
        return table[kind]()


@st.composite
def torch_tables(draw: st.DrawFn) -> dict[str, Any]:
    """A state dict of 1-4 entries (names, shapes, dtypes, layouts, non-tensors), maybe wrapped."""
    seed = draw(st.integers(0, 2**16))
    table = {draw(tensor_names): torch_value(draw(st.sampled_from(TORCH_KINDS)), draw(shapes), seed + i)
             for i in range(draw(st.integers(1, 4)))}
    import torch

    table.setdefault("anchor.weight", torch.randn(12, 8, generator=torch.Generator().manual_seed(seed)))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 5, 50]))):
        table = {draw(st.sampled_from(["state_dict", "model", "module", "model_state_dict"])): table}
    return table


# PEFT keys: patterns from the supported syntax (compared with `re`), raw text and known catastrophes.
_pattern_atoms = st.sampled_from(["a", "b", "x", "_", "1", ".", r"\.", "[ab]", "[^a]", "[a-c.]", r"\d", r"\w", r"\W", "q_proj"])


def _pattern_ops(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(children, children).map("".join), st.tuples(children, children).map(lambda t: f"(?:{t[0]}|{t[1]})"),
        st.tuples(children, st.sampled_from(["*", "+", "?", "{2}", "{0,2}", "{1,}", "*?"])).map(lambda t: f"({t[0]}){t[1]}"),
    )


supported_patterns = st.tuples(st.sampled_from(["", "^"]), st.recursive(_pattern_atoms, _pattern_ops, max_leaves=6),
                               st.sampled_from(["", "$"])).map("".join)
CATASTROPHIC = ["(a+)+b", "(a|a)*c", "(a*)*b", "((a+)+)+$", "(.*a){20}", "(x+x+)+y", "(\\w+\\d?)+!", "(a|aa)+$"]
pattern_texts = st.one_of(supported_patterns, st.text(alphabet="ab.\\()[]{}|*+?^$-,:=!<1dw", max_size=10),
                          st.sampled_from(CATASTROPHIC + ["(?=a)", "(?i)a", "\\1", "a{200}", "[z-a]", "(", "x" * 2000]))
module_texts = st.text(alphabet="ab._x1\n", max_size=12)
