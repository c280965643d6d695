"""Readers and naming: roles, layer indices and expert indices across model families and layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tailscope
from tailscope.sources import open_source


def _rows(obj) -> "list[dict]":
    return tailscope.describe(obj).details.to_dict("records")


def test_bert_roles(minilm_dir):
    d = tailscope.describe(minilm_dir).details.set_index("name")
    assert d.loc["embeddings.word_embeddings", "role"] == "embed"
    assert d.loc["embeddings.position_embeddings", "role"] == "embed_pos"
    for i in range(6):
        p = f"encoder.layer.{i}."
        assert d.loc[p + "attention.self.query", "role"] == "attn_q"
        assert d.loc[p + "attention.self.key", "role"] == "attn_k"
        assert d.loc[p + "attention.self.value", "role"] == "attn_v"
        assert d.loc[p + "attention.output.dense", "role"] == "attn_o"
        assert d.loc[p + "intermediate.dense", "role"] == "mlp_up"
        assert d.loc[p + "output.dense", "role"] == "mlp_down"
        assert d.loc[p + "output.dense", "layer"] == i
    assert d.loc["encoder.layer.0.intermediate.dense", ["N", "M", "Q", "num_evals"]].tolist() == [1536, 384, 4.0, 384]


def test_mistral_hf_names(tiny_mistral_dir):
    d = tailscope.describe(tiny_mistral_dir).details
    m = d[d["analyzed"]].set_index("name")
    assert m.loc["model.embed_tokens", "role"] == "embed"
    assert m.loc["lm_head", "role"] == "lm_head"
    expected = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                "self_attn.o_proj": "attn_o", "mlp.gate_proj": "mlp_gate", "mlp.up_proj": "mlp_up",
                "mlp.down_proj": "mlp_down"}
    for layer in range(2):
        for suffix, role in expected.items():
            name = f"model.layers.{layer}.{suffix}"
            assert m.loc[name, "role"] == role and m.loc[name, "layer"] == layer
    assert m.loc["model.layers.1.self_attn.k_proj", "shape"] == "32x64"  # GQA: 2 KV heads of 16


def _expert_table(path: Path):
    d = tailscope.describe(path, min_evals=1).details
    return d[d["expert"].notna()]


def test_mixtral_per_expert_layout(tiny_mixtral_dir):
    e = _expert_table(tiny_mixtral_dir)
    assert len(e) == 2 * 4 * 3  # layers x experts x (w1, w2, w3)
    assert sorted(e["expert"].unique()) == [0, 1, 2, 3]
    w1 = e[e["name"].str.endswith("w1")]
    assert set(w1["role"]) == {"mlp_gate"} and set(w1["shape"]) == {"96x64"}
    assert set(e[e["name"].str.endswith("w2")]["role"]) == {"mlp_down"}
    assert set(e[e["name"].str.endswith("w3")]["role"]) == {"mlp_up"}


def test_mixtral_fused_layout_splits_gate_and_up(tiny_mixtral_dir, tiny_mixtral_fused_dir):
    e = _expert_table(tiny_mixtral_fused_dir)
    assert len(e) == 2 * 4 * 3
    gate = e[e["role"] == "mlp_gate"]
    assert set(gate["shape"]) == {"96x64"} and set(e[e["role"] == "mlp_down"]["shape"]) == {"64x96"}
    assert "model.layers.1.mlp.experts.3.gate_proj" in set(gate["name"])
    # same seed, same weights: the fused gate half of expert 2 is the per-expert w1 of expert 2
    fused = {r.name: r for r in open_source(tiny_mixtral_fused_dir).refs()}
    split = {r.name: r for r in open_source(tiny_mixtral_dir).refs()}
    for e_idx in range(4):
        a = fused[f"model.layers.0.mlp.experts.{e_idx}.gate_proj"].load()
        b = split[f"model.layers.0.block_sparse_moe.experts.{e_idx}.w1"].load()
        c = fused[f"model.layers.0.mlp.experts.{e_idx}.up_proj"].load()
        d = split[f"model.layers.0.block_sparse_moe.experts.{e_idx}.w3"].load()
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
    router = tailscope.describe(tiny_mixtral_fused_dir).details.set_index("name").loc["model.layers.0.mlp.gate"]
    assert router["role"] == "router" and not router["analyzed"]  # 4 x 64: fewer than 8 eigenvalues


def test_mixtral_module_expands_fused_parameters():
    import torch
    from transformers import MixtralForCausalLM

    from conftest import tiny_mixtral_config

    torch.manual_seed(0)
    model = MixtralForCausalLM(tiny_mixtral_config())
    d = tailscope.describe(model).details
    experts = d[d["expert"].notna()]
    assert len(experts) == 2 * 4 * 3 and set(experts["role"]) == {"mlp_gate", "mlp_up", "mlp_down"}


def test_gpt2_conv1d_is_transposed_and_named():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=64))
    for source in (model, model.state_dict()):
        d = tailscope.describe(source).details
        d = d[d["analyzed"]].set_index("name")
        assert d.loc["transformer.h.1.attn.c_attn", "role"] == "attn_qkv"
        assert d.loc["transformer.h.1.attn.c_proj", "role"] == "attn_o"
        assert d.loc["transformer.h.0.mlp.c_fc", "role"] == "mlp_up"
        assert d.loc["transformer.h.0.mlp.c_proj", "role"] == "mlp_down"
        assert d.loc["transformer.h.0.mlp.c_fc", "layer"] == 0
        assert d.loc["transformer.h.0.mlp.c_fc", ["N", "M"]].tolist() == [256, 64]  # stored (in, out) = (64, 256)
        assert d.loc["transformer.wte", "role"] == "embed" and d.loc["transformer.wpe", "role"] == "embed_pos"
    assert tailscope.describe(model).details.set_index("name").loc["transformer.h.0.mlp.c_fc", "layer_type"] == "conv1d"


def test_smollm_gguf_roles_and_dequantization(smollm_gguf):
    d = tailscope.describe(smollm_gguf).details
    a = d[d["analyzed"]].set_index("name")
    assert len(a) == 1 + 30 * 7  # token_embd + 30 blocks; no output.weight (tied)
    assert "output" not in a.index
    assert a.loc["token_embd", "role"] == "embed" and a.loc["token_embd", "shape"] == "49152x576"
    roles = {"attn_q": "attn_q", "attn_k": "attn_k", "attn_v": "attn_v", "attn_output": "attn_o",
             "ffn_gate": "mlp_gate", "ffn_up": "mlp_up", "ffn_down": "mlp_down"}
    for suffix, role in roles.items():
        assert a.loc[f"blk.29.{suffix}", "role"] == role and a.loc[f"blk.29.{suffix}", "layer"] == 29
    assert a.loc["blk.0.attn_k", "shape"] == "192x576"  # (out, in) in numpy order
    # dequantization equals the gguf package's own reader
    import gguf

    reader = gguf.GGUFReader(str(smollm_gguf))
    refs = {r.longname: r for r in open_source(smollm_gguf).refs()}
    for t in reader.tensors:
        if t.name in ("blk.3.ffn_down.weight", "blk.7.attn_q.weight", "token_embd.weight"):
            expected = gguf.quants.dequantize(t.data, t.tensor_type)
            np.testing.assert_array_equal(refs[t.name].load(), expected)


def _write_gguf(path: Path, tensors: dict[str, np.ndarray], quantized: dict[str, np.ndarray] | None = None) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    for name, arr in tensors.items():
        w.add_tensor(name, arr.astype(np.float32))
    for name, arr in (quantized or {}).items():
        q = gguf.quants.quantize(arr.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_stacked_experts(tmp_path):
    import gguf

    rng = np.random.default_rng(0)
    gate = rng.standard_normal((4, 48, 32)).astype(np.float32)  # (experts, out, in)
    down = rng.standard_normal((4, 32, 48)).astype(np.float32)
    emb = rng.standard_normal((100, 32)).astype(np.float32)
    path = tmp_path / "moe.gguf"
    _write_gguf(path, {"blk.0.ffn_gate_exps.weight": gate, "blk.0.ffn_down_exps.weight": down},
                quantized={"token_embd.weight": emb})
    refs = {r.name: r for r in open_source(path).refs()}
    for e in range(4):
        g = refs[f"blk.0.ffn_gate_exps.{e}"]
        assert (g.role, g.layer, g.expert, g.shape) == ("mlp_gate", 0, e, (48, 32))
        np.testing.assert_array_equal(g.load(), gate[e])
        np.testing.assert_array_equal(refs[f"blk.0.ffn_down_exps.{e}"].load(), down[e])
    q = gguf.quants.quantize(emb, gguf.GGMLQuantizationType.Q8_0)
    np.testing.assert_array_equal(refs["token_embd"].load(), gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0))
    report = tailscope.analyze(path, progress=False)
    assert report.details["expert"].notna().sum() == 8


def test_sharded_directory_matches_single_file(tmp_path, minilm_dir):
    """A model split in shards with an index analyzes to the same rows as the single file."""
    import json

    from safetensors.numpy import load_file, save_file

    state = load_file(str(minilm_dir / "model.safetensors"))
    keys = list(state)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    weight_map = {}
    for fname, ks in halves.items():
        save_file({k: state[k] for k in ks}, str(tmp_path / fname))
        weight_map.update({k: fname for k in ks})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    a = tailscope.analyze(tmp_path, progress=False).details.set_index("name")
    b = tailscope.analyze(minilm_dir / "model.safetensors", progress=False).details.set_index("name")
    assert sorted(a.index) == sorted(b.index)
    np.testing.assert_allclose(a.loc[b.index, "alpha"], b["alpha"], rtol=1e-12)


def test_bin_state_dict_file(tmp_path):
    import torch

    torch.manual_seed(0)
    state = {"a.weight": torch.randn(80, 40), "a.bias": torch.randn(80), "b.weight": torch.randn(40, 60, dtype=torch.float16)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    d = tailscope.analyze(tmp_path / "pytorch_model.bin", progress=False).details
    assert list(d["name"]) == ["a", "b"] and list(d["layer_id"]) == [0, 1]
    ref = np.linalg.svd(state["b.weight"].float().numpy(), compute_uv=False) ** 2
    assert d.loc[1, "lambda_max"] == pytest.approx(ref.max(), rel=1e-6)


def test_bf16_decode_matches_torch_bit_for_bit():
    """Every bf16 bit pattern (NaNs, infinities, subnormals included), decoded as torch decodes it."""
    import torch

    from tailscope.sources.base import bf16_to_float32

    raw = np.arange(2**16, dtype=np.uint16).reshape(256, 256)
    ours = bf16_to_float32(raw)
    theirs = torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert ours.shape == (256, 256) and ours.dtype == np.float32
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
