"""Build a Hugging Face causal LM from a GGUF file, with tailscope's own GGUF reader.

Why not ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``: it parses the whole file
twice (tokenizer arrays included), rebuilds its tensor-name map per module, and it loads a
Mixtral GGUF (``blk.N.ffn_*_exps``) silently as a dense Llama whose MLPs keep their random
initialization. Here the config comes from the ``llama.*`` metadata, every tensor is renamed
explicitly, llama.cpp's q/k row permutation is undone, and a load that would leave any weight
uninitialized, or any GGUF tensor unused, is refused.

llama.cpp's converter permutes the rows of q and k per head from HF's "half-split" rotary layout
(first half of the head = real parts) to its interleaved one (pairs); the inverse regroups each
head's rows from (half, 2) back to (2, half). Singular values are unchanged by it, so the weight
analysis never needs it; a forward pass does.

Supported: ``general.architecture == "llama"`` (Llama, Mistral, SmolLM, ...) and its MoE form
with stacked experts (Mixtral). Other architectures raise `InputError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from tailscope.errors import InputError, require
from tailscope.sources.gguf_reader import GGUFLoader, GGUFTensor, read_gguf
from tailscope.untrusted.json_loader import MAX_COUNT, Fields

ARCH = "llama"

# GGUF block tensor stem -> HF module path inside model.layers.N (dense Llama/Mistral).
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_gate_inp": "mlp.gate",  # Mixtral router
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_EXPERT_STEMS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")
_TOP = re.compile(r"^(\w+)\.(weight|bias)$")


def unpermute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's per-head q/k row permutation (interleaved rotary pairs -> HF half-split).

    llama.cpp maps HF row ``h*d + s*d/2 + j`` (s = 0 real half, 1 imaginary half) to row
    ``h*d + 2*j + s``; this is the inverse, for weights (rows, cols) and biases (rows,).

    >>> w = np.arange(8.0).reshape(8, 1)          # one head of 8 rows, gguf order
    >>> unpermute_rows(w, 1).ravel().tolist()      # even rows first, then odd rows
    [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]
    """
    rows = weight.shape[0]
    half = rows // n_head // 2
    grouped = weight.reshape(n_head, half, 2, *weight.shape[1:])
    return np.ascontiguousarray(grouped.swapaxes(1, 2).reshape(weight.shape))


def gguf_config(path: str | Path) -> Any:
    """The transformers config (LlamaConfig, MistralConfig or MixtralConfig) a GGUF file describes."""
    path = Path(path)
    tensors, meta = read_gguf(path)
    return _build_config(path, meta, {t.name: t for t in tensors})


def gguf_to_hf(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """HF config and float32 state dict (HF names, q/k un-permuted) of a GGUF causal LM.

    Raises `InputError` when the file is not a llama-architecture GGUF or holds a tensor this map
    does not know (so that nothing is silently dropped).
    """
    torch = require("torch", "torch")
    path = Path(path)
    tensors, meta = read_gguf(path)
    by_name = {t.name: t for t in tensors}
    config = _build_config(path, meta, by_name)
    unknown = [t.name for t in tensors if _hf_target(t.name, config) is None]
    if unknown:
        raise InputError(path, f"GGUF tensors with no Hugging Face counterpart (refusing to drop them): {_listing(unknown)}")
    state: dict[str, Any] = {}
    for t in tensors:
        _add_tensor(state, path, t, config)
    return config, {k: torch.from_numpy(v) for k, v in _merge_experts(state, config).items()}


def load_hf_causal_lm(path: str | Path, *, dtype: Any = None) -> Any:
    """A ready-to-run HF causal LM (eval mode, CPU) built from a GGUF file.

    Every parameter of the model must come from the file: missing keys (other than a tied
    ``lm_head.weight``) or unexpected ones raise `InputError` naming them.
    """
    torch = require("torch", "torch")
    transformers = require("transformers", "probe")
    path = Path(path)
    config, state = gguf_to_hf(path)
    model_cls = getattr(transformers, config.architectures[0])
    with torch.device("cpu"), _skip_random_init():
        model = model_cls(config)
    result = model.load_state_dict(state, strict=False, assign=True)
    _refuse_incomplete(path, config, result.missing_keys, result.unexpected_keys)
    if config.tie_word_embeddings:
        model.tie_weights()
        if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
            raise InputError(path, "tied embeddings could not be tied in the built model")
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def _skip_random_init() -> Any:
    """transformers' `no_init_weights` (6 s -> 0.02 s for 135M params); safe because a load that
    leaves any parameter unassigned is refused. A no-op context where transformers lacks it."""
    import contextlib

    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        return contextlib.nullcontext()
    return no_init_weights()


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer stored in a GGUF file, through transformers (offline; 6-11 s for SmolLM2, measured on 2 shared cores)."""
    transformers = require("transformers", "probe")
    path = Path(path)
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # noqa: BLE001 - transformers' GGUF tokenizer raises ValueError, KeyError, ... on odd metadata
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(path, f"no usable tokenizer in the GGUF metadata ({type(exc).__name__}: {detail})") from None


# -- config -------------------------------------------------------------------------------------


def _build_config(path: Path, meta: dict[str, Any], by_name: dict[str, GGUFTensor]) -> Any:
    transformers = require("transformers", "probe")
    arch = meta.get("general.architecture")
    if arch != ARCH:
        raise InputError(path, f"GGUF architecture {arch!r} is not supported here (only {ARCH!r}: Llama, Mistral, Mixtral)")
    kw = _common_config(path, meta, by_name)
    meta_fields = Fields(meta, path)
    n_experts = meta_fields.integer(f"{ARCH}.expert_count", hi=MAX_COUNT) or 0
    has_exps = any(n.endswith("_exps.weight") for n in by_name)
    if n_experts or has_exps:
        if not (n_experts and has_exps):
            raise InputError(path, f"inconsistent MoE file: {ARCH}.expert_count={n_experts} but stacked expert tensors {'present' if has_exps else 'absent'}")
        kw.update(num_local_experts=n_experts, num_experts_per_tok=meta_fields.integer(f"{ARCH}.expert_used_count", 1, n_experts, 2))
        return transformers.MixtralConfig(**kw, sliding_window=None, architectures=["MixtralForCausalLM"])
    if "mistral" in str(meta.get("general.name", "")).lower():
        return transformers.MistralConfig(**kw, sliding_window=None, architectures=["MistralForCausalLM"])
    return transformers.LlamaConfig(**kw, attention_bias=_has_attn_bias(by_name), architectures=["LlamaForCausalLM"])


def _common_config(path: Path, meta: dict[str, Any], by_name: dict[str, GGUFTensor]) -> dict[str, Any]:
    fields = Fields(meta, path)

    def key(name: str, default: int | None = None, lo: int = 1) -> int:
        full = f"{ARCH}.{name}"
        value = fields.integer(full, lo=lo, hi=MAX_COUNT, default=default)
        if value is None:
            raise InputError(path, f"GGUF metadata key '{full}' is missing")
        return value

    if "token_embd.weight" not in by_name:
        raise InputError(path, "GGUF file has no token_embd.weight tensor")
    n_head = key("attention.head_count")
    hidden = key("embedding_length")
    head_dim = key("attention.key_length", key("rope.dimension_count", max(hidden // n_head, 1)))
    token = {k: fields.integer(f"tokenizer.ggml.{k}_token_id", hi=MAX_COUNT) for k in ("bos", "eos", "padding")}
    return dict(
        vocab_size=int(by_name["token_embd.weight"].shape[0]),
        hidden_size=hidden,
        intermediate_size=key("feed_forward_length"),
        num_hidden_layers=key("block_count", lo=0),
        num_attention_heads=n_head,
        num_key_value_heads=key("attention.head_count_kv", n_head),
        head_dim=head_dim,
        max_position_embeddings=key("context_length", 2048),
        rms_norm_eps=fields.number(f"{ARCH}.attention.layer_norm_rms_epsilon", 0, 1, 1e-5),
        rope_parameters=_rope(path, meta),
        tie_word_embeddings="output.weight" not in by_name,
        bos_token_id=token["bos"], eos_token_id=token["eos"], pad_token_id=token["padding"],
    )


def _rope(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(meta, path)
    rope = {"rope_type": "default", "rope_theta": fields.number(f"{ARCH}.rope.freq_base", 0, default=10000.0)}
    scaling = fields.text(f"{ARCH}.rope.scaling.type", "none")
    if scaling == "linear":
        rope.update(rope_type="linear", factor=fields.number(f"{ARCH}.rope.scaling.factor", 0, default=1.0))
    elif scaling != "none":
        raise InputError(path, f"rope scaling {scaling!r} is not supported (only none and linear)")
    return rope


def _has_attn_bias(by_name: dict[str, GGUFTensor]) -> bool:
    return any(n.startswith("blk.") and n.endswith(("attn_q.bias", "attn_k.bias")) for n in by_name)


# -- tensors ------------------------------------------------------------------------------------


def _hf_target(name: str, config: Any) -> str | None:
    """HF key for a GGUF tensor (expert stacks keep a private key until merged), or None."""
    block = _BLOCK.match(name)
    if block:
        layer, stem, suffix = block.groups()
        if stem in _EXPERT_STEMS and _is_moe(config):
            return f"model.layers.{layer}.mlp.experts.{stem}"
        if stem == "ffn_gate_inp" and not _is_moe(config):
            return None
        if stem in ("ffn_gate", "ffn_up", "ffn_down") and _is_moe(config):
            return None
        module = _BLOCK_NAMES.get(stem)
        return f"model.layers.{layer}.{module}.{suffix}" if module else None
    top = _TOP.match(name)
    if top and top.group(1) in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[top.group(1)]}.{top.group(2)}"
    return None


def _is_moe(config: Any) -> bool:
    return getattr(config, "num_local_experts", 0) > 0 and config.model_type == "mixtral"


def _add_tensor(state: dict[str, np.ndarray], path: Path, tensor: GGUFTensor, config: Any) -> None:
    state[_hf_target(tensor.name, config)] = hf_array(path, tensor, config)


def hf_array(path: str | Path, tensor: GGUFTensor, config: Any) -> np.ndarray:
    """One GGUF tensor as float32 in HF layout (q/k rows un-permuted)."""
    values = GGUFLoader(str(path), tensor)()
    stem = tensor.name.split(".")[-2]
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}.get(stem)
    if heads is None:
        return values
    if values.shape[0] % (2 * heads):
        raise InputError(path, f"tensor '{tensor.name}': {values.shape[0]} rows do not split into {heads} heads of rotary pairs")
    return unpermute_rows(values, heads)


def hf_tensor_names(path: str | Path) -> tuple[Any, list[tuple[GGUFTensor, str]]]:
    """HF config and (GGUF tensor, HF key) in file order, for streaming a dense GGUF tensor by tensor.

    Stacked experts need merging across tensors (`gguf_to_hf`), so MoE files are refused here.
    """
    path = Path(path)
    tensors, meta = read_gguf(path)
    by_name = {t.name: t for t in tensors}
    config = _build_config(path, meta, by_name)
    if _is_moe(config):
        raise InputError(path, "GGUF with stacked experts cannot be streamed tensor by tensor (use gguf_to_hf)")
    unknown = [t.name for t in tensors if _hf_target(t.name, config) is None]
    if unknown:
        raise InputError(path, f"GGUF tensors with no Hugging Face counterpart (refusing to drop them): {_listing(unknown)}")
    return config, [(t, _hf_target(t.name, config)) for t in tensors]


def _merge_experts(state: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
    """Stacked GGUF experts -> HF's fused ``gate_up_proj`` [E, 2I, H] (gate rows first) and ``down_proj``."""
    if not _is_moe(config):
        return state
    out = {k: v for k, v in state.items() if not k.endswith(_EXPERT_STEMS)}
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}.mlp.experts."
        parts = [state.get(prefix + stem) for stem in _EXPERT_STEMS]
        if any(p is None for p in parts):
            continue  # reported as missing keys by the load
        gate, up, down = parts
        out[prefix + "gate_up_proj"] = np.ascontiguousarray(np.concatenate([gate, up], axis=1))
        out[prefix + "down_proj"] = down
    return out


def _refuse_incomplete(path: Path, config: Any, missing: list[str], unexpected: list[str]) -> None:
    allowed = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = [k for k in missing if k not in allowed]
    if missing:
        raise InputError(path, f"refusing a model with uninitialized weights; missing from the GGUF: {_listing(missing)}")
    if unexpected:
        raise InputError(path, f"GGUF tensors the {config.architectures[0]} does not use: {_listing(unexpected)}")


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")
