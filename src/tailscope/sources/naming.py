"""Map tensor names of the common model families to a role, a layer index and an expert index.

Families covered: Llama/Mistral/Qwen/Gemma (HF names), Mixtral (per-expert ``w1/w2/w3`` and fused
``experts.gate_up_proj``/``down_proj``), GGUF (``blk.N.*``), BERT, GPT-2 (Conv1D), GPT-NeoX, Phi,
PEFT adapters. Anything else falls back to a role from the tensor's shape ("dense" / "conv").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blk|block|blocks|decoder\.layers|encoder\.layer)\.(\d+)(?:\.|$)")
_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)(?:\.|$)")

# Ordered: the first pattern found in the name (searched as a regex on the name without
# ".weight") decides the role.
_ROLE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"lora_A", "lora_A"),
    (r"lora_B", "lora_B"),
    # routers before the gate projections they resemble
    (r"block_sparse_moe\.gate$|mlp\.gate$|ffn_gate_inp|\.router(\.|$)", "router"),
    # embeddings and heads
    (r"(^|\.)(lm_head|embed_out|output)$", "lm_head"),
    (r"position_embeddings|(^|\.)wpe$|embed_positions", "embed_pos"),
    (r"token_type_embeddings", "embed_pos"),
    (r"embed_tokens|word_embeddings|(^|\.)wte$|token_embd|embed_in|(^|\.)embeddings?$", "embed"),
    # attention
    (r"q_proj|attn_q$|self\.query$|\.wq$", "attn_q"),
    (r"k_proj|attn_k$|self\.key$|\.wk$", "attn_k"),
    (r"v_proj|attn_v$|self\.value$|\.wv$", "attn_v"),
    (r"qkv_proj|c_attn|query_key_value|attn_qkv|Wqkv", "attn_qkv"),
    (r"o_proj|attn_output$|attention\.output\.dense|attn\.c_proj|attention\.dense|\.wo$|out_proj", "attn_o"),
    # MLP (Mixtral's per-expert w1 = gate, w3 = up, w2 = down)
    (r"gate_up_proj|ffn_gate_up", "mlp_gate_up"),
    (r"gate_proj|ffn_gate(_exps)?$|experts\.\d+\.w1$|\.w1$", "mlp_gate"),
    (r"up_proj|ffn_up(_exps)?$|intermediate\.dense|mlp\.c_fc|dense_h_to_4h|fc1|experts\.\d+\.w3$|\.w3$", "mlp_up"),
    (r"down_proj|ffn_down(_exps)?$|output\.dense|mlp\.c_proj|dense_4h_to_h|fc2|experts\.\d+\.w2$|\.w2$", "mlp_down"),
)
_COMPILED = tuple((re.compile(p), role) for p, role in _ROLE_PATTERNS)


@dataclass(frozen=True)
class NameInfo:
    """What a tensor name says about the matrix."""

    role: str
    layer: int | None
    expert: int | None


def strip_weight(name: str) -> str:
    """Tensor key without its trailing ``.weight`` (weightwatcher's layer name)."""
    return name[: -len(".weight")] if name.endswith(".weight") else name


def parse_name(name: str, ndim: int = 2) -> NameInfo:
    """Role, layer index and expert index from a tensor name.

    >>> parse_name("model.layers.3.self_attn.k_proj.weight")
    NameInfo(role='attn_k', layer=3, expert=None)
    >>> parse_name("model.layers.1.block_sparse_moe.experts.5.w2.weight")
    NameInfo(role='mlp_down', layer=1, expert=5)
    >>> parse_name("blk.0.ffn_up_exps.weight", ndim=3)
    NameInfo(role='mlp_up', layer=0, expert=None)
    """
    stem = strip_weight(name)
    layer_match = _LAYER.search(stem)
    expert_match = _EXPERT.search(stem)
    role = next((r for pattern, r in _COMPILED if pattern.search(stem)), None)
    if role is None:
        role = "conv" if ndim == 4 else "dense"
    return NameInfo(
        role=role,
        layer=int(layer_match.group(1)) if layer_match else None,
        expert=int(expert_match.group(1)) if expert_match else None,
    )
