"""tailscope's own Q8_0/Q4_0/Q4_1 decoders against the `gguf` package's, bit for bit: random
blocks (any byte pattern, so NaN/Inf/subnormal fp16 scales included), quantized tensors in a
file the package wrote, and every quantized tensor of the real SmolLM2 GGUF."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import tailscope
from tailscope.sources.gguf_quants import CHUNK, DEQUANTIZERS, dequantize
from tailscope.sources.gguf_reader import GGUFLoader, read_gguf


def reference(raw: np.ndarray, type_name: str, row: int = 32) -> np.ndarray:
    """gguf's values for these bytes, decoded in rows of `row` values (gguf loops over row groups)."""
    with np.errstate(all="ignore"):
        rows = raw.reshape(-1, row // 32 * DEQUANTIZERS[type_name][0])
        return gguf.quants.dequantize(rows, gguf.GGMLQuantizationType[type_name]).reshape(-1)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("type_name", sorted(DEQUANTIZERS))
def test_random_blocks_match_gguf_bit_for_bit(type_name: str) -> None:
    size = DEQUANTIZERS[type_name][0]
    blocks = 2 * CHUNK + 37  # several chunks and a partial one
    raw = np.random.default_rng(len(type_name)).integers(0, 256, blocks * size, dtype=np.uint8)
    with np.errstate(all="ignore"):
        ours = dequantize(raw, type_name)
    theirs = reference(raw, type_name)
    assert ours.shape == (blocks * 32,)
    assert np.isnan(theirs).any() and np.isinf(theirs).any()  # the random scales do cover NaN and Inf
    assert same_bits(ours, theirs)


def test_other_types_are_left_to_gguf() -> None:
    assert dequantize(np.zeros(210, np.uint8), "Q6_K") is None


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1"])
def test_quantized_file_loads_as_gguf_decodes_it(tmp_path, qtype: str) -> None:
    kind = gguf.GGMLQuantizationType[qtype]
    w = np.random.default_rng(1).standard_t(3, size=(96, 64)).astype(np.float32)
    path = tmp_path / f"{qtype}.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.ffn_up.weight", gguf.quants.quantize(w, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (tensor,), _ = read_gguf(path)
    loaded = GGUFLoader(str(path), tensor)()
    expected = gguf.quants.dequantize(gguf.quants.quantize(w, kind), kind)
    assert loaded.shape == (96, 64) and same_bits(loaded, expected)
    assert np.abs(loaded - w).max() < 0.2 * np.abs(w).max()  # and it is the matrix, not noise
    assert tailscope.analyze(str(path), progress=False).details["N"].tolist() == [96]


def test_smollm2_tensors_match_gguf(smollm_gguf) -> None:
    tensors = [t for t in read_gguf(smollm_gguf)[0] if t.type_name in DEQUANTIZERS]
    assert {t.type_name for t in tensors} == {"Q8_0", "Q4_1"} and len(tensors) == 211
    data = np.fromfile(smollm_gguf, dtype=np.uint8)
    for t in tensors:
        loaded = GGUFLoader(str(smollm_gguf), t)()
        assert same_bits(loaded.reshape(-1), reference(data[t.begin : t.begin + t.n_bytes], t.type_name, t.shape[-1])), t.name
