"""Architecture card: published Mistral-7B / Mixtral-8x7B configs, config-only
directories, and the closed-form count checked against the weights of tiny checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import InputError

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"


def test_mistral_7b_card(capsys):
    card = tailscope.card(CONFIGS / "mistral-7b-v0.1")
    assert (card.n_layers, card.hidden_size, card.n_heads, card.n_kv_heads, card.gqa_group, card.head_dim) == (32, 4096, 32, 8, 4, 128)
    assert card.sliding_window == 4096 and card.rope_theta == 10000.0 and card.vocab_size == 32000
    assert card.n_experts is None
    assert card.params_total == 7_241_732_096  # the published 7.24B
    assert card.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 KV heads x 128, bf16
    assert main(["describe", str(CONFIGS / "mistral-7b-v0.1")]) == 0
    out = capsys.readouterr().out
    assert "7.24B" in out and "131,072 bytes/token" in out and "GQA group 4" in out


def test_mixtral_8x7b_card(capsys):
    card = tailscope.describe(CONFIGS / "mixtral-8x7b-v0.1").card
    assert (card.n_experts, card.experts_per_token, card.rope_theta) == (8, 2, 1e6)
    assert card.sliding_window is None
    assert card.params_total == 46_702_792_704
    assert card.params_active == 12_879_925_248
    assert card.kv_bytes_per_token == 131072
    assert main(["describe", str(CONFIGS / "mixtral-8x7b-v0.1" / "config.json")]) == 0
    out = capsys.readouterr().out
    assert "46.7B" in out and "12.9B" in out and "active per token" in out and "131,072 bytes/token" in out


@pytest.mark.parametrize("fixture", ["tiny_mistral_dir", "tiny_mixtral_dir", "tiny_mixtral_fused_dir"])
def test_formula_equals_weights(fixture, request):
    """The closed-form count equals the parameters actually stored (an independent count)."""
    desc = tailscope.describe(request.getfixturevalue(fixture))
    assert desc.card.params_in_weights == desc.card.params_total
    assert not desc.details.empty


def test_tiny_mixtral_active_params(tiny_mixtral_dir):
    import torch
    from transformers import AutoModelForCausalLM

    card = tailscope.card(tiny_mixtral_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_mixtral_dir)
    total = sum(p.numel() for p in model.parameters())
    one_expert = sum(p.numel() for n, p in model.named_parameters() if "experts" in n) // 4  # 4 experts
    assert card.params_total == total
    assert card.params_active == total - 2 * one_expert  # top-2 of 4 experts
    del torch


def test_gguf_card(smollm_gguf):
    card = tailscope.card(smollm_gguf)
    assert (card.family, card.n_layers, card.hidden_size, card.n_kv_heads, card.vocab_size) == ("llama", 30, 576, 3, 49152)
    assert card.tied_embeddings
    assert card.params_total == 134_515_008  # SmolLM2-135M (tied embeddings)


def test_missing_and_bad_config(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        tailscope.card(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="config.json: not a valid config.json"):
        tailscope.card(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "architectures": ["BertModel"]}))
    card = tailscope.card(tmp_path)
    assert card.params_total is None and card.kv_bytes_per_token is None  # no closed form, not a decoder
