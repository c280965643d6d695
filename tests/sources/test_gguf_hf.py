"""GGUF -> Hugging Face model: same logits as transformers' own loader, refusal of incomplete loads.

Oracles: transformers' ``from_pretrained(dir, gguf_file=)`` on the real SmolLM2 GGUF; for Mistral
and Mixtral, a random HF model written to GGUF here the way llama.cpp's converter does it (names,
forward q/k permutation, stacked experts) must come back with its own logits.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")
pytest.importorskip("transformers")

from tailscope.errors import InputError, TailscopeError  # noqa: E402
from tailscope.sources.gguf_hf import gguf_to_hf, load_hf_causal_lm, unpermute_rows  # noqa: E402

from conftest import tiny_mistral_config, tiny_mixtral_config  # noqa: E402
from smollm_shared import gguf_tokenizer, transformers_gguf_model  # noqa: E402


def llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF half-split -> interleaved rows)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize("n_head,shape", [(1, (8, 3)), (4, (32, 5)), (3, (24,))])
def test_unpermute_inverts_llamacpp_permutation(n_head, shape):
    w = np.random.default_rng(0).standard_normal(shape)
    permuted = llamacpp_permute(w, n_head)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(unpermute_rows(permuted, n_head), w)


# -- the real SmolLM2 GGUF against transformers' own GGUF loader -------------------------------------


@pytest.fixture(scope="module")
def ours_smollm(smollm_gguf):
    start = time.perf_counter()
    model = load_hf_causal_lm(smollm_gguf)
    print(f"\ntailscope load_hf_causal_lm of {smollm_gguf.name}: {time.perf_counter() - start:.1f} s")
    return model


def test_smollm_logits_match_transformers_gguf_loader(smollm_gguf, ours_smollm):
    reference = transformers_gguf_model(smollm_gguf)
    tok = gguf_tokenizer(smollm_gguf)
    ids = tok("The capital of France is Paris, and the capital of Italy is", return_tensors="pt").input_ids
    with torch.no_grad():
        ours, theirs = ours_smollm(ids).logits, reference(ids).logits
    assert ours.shape == theirs.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert ours_smollm.config.tie_word_embeddings
    assert ours_smollm.lm_head.weight is ours_smollm.model.embed_tokens.weight


def test_smollm_state_dict_names_and_config(smollm_gguf):
    config, state = gguf_to_hf(smollm_gguf)
    reference = transformers_gguf_model(smollm_gguf)
    ref_state = reference.state_dict()
    assert set(state) == set(ref_state) - {"lm_head.weight"}
    for key in ("model.layers.7.self_attn.q_proj.weight", "model.layers.7.self_attn.k_proj.weight", "model.norm.weight"):
        torch.testing.assert_close(state[key], ref_state[key], rtol=0, atol=0)
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                  "intermediate_size", "vocab_size", "rms_norm_eps", "tie_word_embeddings"):
        assert getattr(config, field) == getattr(reference.config, field), field


# -- synthetic GGUF files written as llama.cpp writes them --------------------------------------------


def write_gguf(path, model, *, name="tiny", skip=(), extra=None):
    """Write an HF Llama/Mistral/Mixtral model to GGUF with llama.cpp's names and q/k permutation."""
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name(name)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    if cfg.model_type == "mixtral":
        writer.add_expert_count(cfg.num_local_experts)
        writer.add_expert_used_count(cfg.num_experts_per_tok)
    for gname, array in {**gguf_tensors(model), **(extra or {})}.items():
        if gname not in skip:
            writer.add_tensor(gname, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_tensors(model) -> dict[str, np.ndarray]:
    cfg = model.config
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"]}
    if not cfg.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out.update({
            f"blk.{i}.attn_norm.weight": sd[p + "input_layernorm.weight"],
            f"blk.{i}.ffn_norm.weight": sd[p + "post_attention_layernorm.weight"],
            f"blk.{i}.attn_q.weight": llamacpp_permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads),
            f"blk.{i}.attn_k.weight": llamacpp_permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads),
            f"blk.{i}.attn_v.weight": sd[p + "self_attn.v_proj.weight"],
            f"blk.{i}.attn_output.weight": sd[p + "self_attn.o_proj.weight"],
        })
        if cfg.model_type == "mixtral":
            gate_up = sd[p + "mlp.experts.gate_up_proj"]
            half = gate_up.shape[1] // 2
            out.update({
                f"blk.{i}.ffn_gate_inp.weight": sd[p + "mlp.gate.weight"],
                f"blk.{i}.ffn_gate_exps.weight": gate_up[:, :half],
                f"blk.{i}.ffn_up_exps.weight": gate_up[:, half:],
                f"blk.{i}.ffn_down_exps.weight": sd[p + "mlp.experts.down_proj"],
            })
        else:
            out.update({
                f"blk.{i}.ffn_gate.weight": sd[p + "mlp.gate_proj.weight"],
                f"blk.{i}.ffn_up.weight": sd[p + "mlp.up_proj.weight"],
                f"blk.{i}.ffn_down.weight": sd[p + "mlp.down_proj.weight"],
            })
    return out


def _random_model(kind: str, **overrides):
    from transformers import MistralForCausalLM, MixtralForCausalLM

    torch.manual_seed(1)
    if kind == "mixtral":
        return MixtralForCausalLM(tiny_mixtral_config(**overrides)).eval()
    return MistralForCausalLM(tiny_mistral_config(sliding_window=None, **overrides)).eval()


@pytest.mark.parametrize("kind,tied", [("mistral", False), ("mistral", True), ("mixtral", False)])
def test_synthetic_gguf_round_trip_logits(tmp_path, kind, tied):
    original = _random_model(kind, tie_word_embeddings=tied)
    path = write_gguf(tmp_path / f"{kind}.gguf", original, name=f"{kind} tiny")
    loaded = load_hf_causal_lm(path)
    assert type(loaded).__name__ == type(original).__name__
    assert loaded.config.tie_word_embeddings is tied
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, original(ids).logits, rtol=1e-5, atol=1e-5)


def test_missing_tensor_is_refused_by_name(tmp_path):
    path = write_gguf(tmp_path / "holey.gguf", _random_model("mistral"), skip=("blk.1.ffn_up.weight",))
    with pytest.raises(InputError, match=r"uninitialized.*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_hf_causal_lm(path)


def test_unknown_tensor_is_refused_by_name(tmp_path):
    extra = {"rope_freqs.weight": np.ones(8, dtype=np.float32)}
    path = write_gguf(tmp_path / "extra.gguf", _random_model("mistral"), extra=extra)
    with pytest.raises(InputError, match="rope_freqs.weight"):
        gguf_to_hf(path)


def test_moe_tensors_without_expert_count_are_refused(tmp_path):
    """A Mixtral file whose metadata lost expert_count must not become a dense model."""
    model = _random_model("mixtral")
    path = tmp_path / "moe.gguf"
    write_gguf(path, model)
    data = path.read_bytes().replace(b"llama.expert_count", b"llama.expert_coun_")  # same length
    path.write_bytes(data)
    with pytest.raises(TailscopeError, match="expert"):
        load_hf_causal_lm(path)


def test_other_architecture_is_refused(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), arch="gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InputError, match="architecture 'gpt2' is not supported"):
        gguf_to_hf(tmp_path / "gpt2.gguf")
