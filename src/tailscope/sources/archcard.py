"""Architecture card: what a checkpoint is, from its config alone (no weights needed).

People size a model before downloading it, so the card reads ``config.json`` (or a GGUF file's
metadata) and computes the parameter counts in closed form for Llama-style decoders (Llama,
Mistral, Mixtral, Qwen2, Gemma, ...):

- embeddings V*H, plus an untied lm_head V*H;
- per layer: attention H*(n_heads*hd) [q] + 2*H*(n_kv*hd) [k, v] + (n_heads*hd)*H [o] (plus the
  q/k/v biases of Qwen2-style models), two RMSNorm vectors 2*H, a gated MLP 3*H*I per expert and,
  for a mixture of experts, the router H*E;
- one final norm H.

Active parameters per token count top-k experts instead of all E. The KV cache holds a key and a
value vector (n_kv * head_dim each) per layer per token, stored in the config's dtype
(``torch_dtype``/``dtype``; 2 bytes — fp16/bf16 — when the config names none), as inference
engines keep it by default. With a sliding window the cache stops growing at the window length.
Families outside this template (BERT, GPT-2) get the shapes but no closed-form parameter count;
when weights are present, `describe` adds the count read from the weights themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tailscope.errors import InputError
from tailscope.untrusted.json_loader import MAX_CONFIG_BYTES, MAX_COUNT, Fields, read_json_file

GATED_FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "phi3", "olmo", "granite")
BIAS_QKV_FAMILIES = ("qwen2", "qwen2_moe")
DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8, "float8_e4m3fn": 1}


@dataclass(frozen=True)
class ArchitectureCard:
    """The architecture facts of a checkpoint; counts are None where the config does not say."""

    family: str
    architecture: str
    n_layers: int | None
    hidden_size: int | None
    intermediate_size: int | None
    n_heads: int | None
    n_kv_heads: int | None
    gqa_group: int | None
    head_dim: int | None
    sliding_window: int | None
    rope_theta: float | None
    vocab_size: int | None
    max_positions: int | None
    n_experts: int | None
    experts_per_token: int | None
    tied_embeddings: bool
    params_total: int | None
    params_active: int | None
    kv_dtype: str
    kv_bytes_per_token: int | None
    params_in_weights: int | None = None
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_weights(self, n_params: int) -> "ArchitectureCard":
        return ArchitectureCard(**{**asdict(self), "params_in_weights": n_params})

    def to_lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs, the form both the terminal and the HTML report print."""
        moe = f"{self.n_experts} experts, top-{self.experts_per_token}" if self.n_experts else "dense (no experts)"
        kv = "- (not a decoder)"
        if self.kv_bytes_per_token:
            kv = f"{self.kv_bytes_per_token:,} bytes/token ({self.kv_bytes_per_token / 1024:g} KiB, {self.kv_dtype})"
            if self.sliding_window:
                kv += f"; at most {self.kv_bytes_per_token * self.sliding_window / 2**20:g} MiB per sequence (window {self.sliding_window})"
        heads = _opt(self.n_heads)
        if self.n_kv_heads:
            heads += f" query, {self.n_kv_heads} KV (GQA group {self.gqa_group})"
        lines = [
            ("family", f"{self.family} ({self.architecture})" if self.architecture else self.family),
            ("layers", _opt(self.n_layers)), ("hidden size", _opt(self.hidden_size)),
            ("MLP size", _opt(self.intermediate_size)), ("heads", heads), ("head dim", _opt(self.head_dim)),
            ("sliding window", _opt(self.sliding_window) if self.sliding_window else "none"),
            ("RoPE theta", f"{self.rope_theta:g}" if self.rope_theta else "-"),
            ("vocab", _opt(self.vocab_size)), ("context", _opt(self.max_positions)), ("experts", moe),
            ("parameters", _params(self.params_total) + ("" if not self.n_experts else f" total, {_params(self.params_active)} active per token")),
            ("KV cache", kv),
        ]
        if self.params_in_weights is not None:
            lines.append(("parameters in weights", _params(self.params_in_weights)))
        return lines

    def to_text(self) -> str:
        return "\n".join(["architecture card:"] + [f"  {k:<22} {v}" for k, v in self.to_lines()])


def _opt(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def human(n: int | None) -> str:
    """7241732096 -> '7.24B' (three significant digits)."""
    if n is None:
        return "-"
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _params(n: int | None) -> str:
    return "-" if n is None else f"{human(n)} ({n:,})"


def _first(f: Fields, *keys: str, lo: int = 1) -> int | None:
    """The first of `keys` present, as an integer in [lo, MAX_COUNT] (a string there is an error, not a crash)."""
    for k in keys:
        if f.raw(k) is not None:
            return f.integer(k, lo=lo, hi=MAX_COUNT)
    return None


def _rope_theta(f: Fields) -> float | None:
    theta = f.number("rope_theta", lo=0)
    rope = f.mapping("rope_parameters")
    if theta is None and rope is not None:
        theta = rope.number("rope_theta", lo=0)
    return theta


def card_from_config(cfg: dict[str, Any], source: str = "") -> ArchitectureCard:
    """The card of a Hugging Face config dictionary (each value type-checked: a wrong one is an
    InputError naming `source` and the key)."""
    f = Fields.of(cfg, source, "config.json")
    family = f.text("model_type", "unknown")
    L = _first(f, "num_hidden_layers", "n_layer", "num_layers", lo=0)
    H = _first(f, "hidden_size", "n_embd", "d_model")
    nh = _first(f, "num_attention_heads", "n_head")
    nkv = _first(f, "num_key_value_heads") or nh
    hd = _first(f, "head_dim") or (H // nh if H and nh else None)
    E = _first(f, "num_local_experts", "num_experts", "n_routed_experts", lo=0)
    topk = _first(f, "num_experts_per_tok", "moe_top_k", lo=0) if E else None
    I = _first(f, "intermediate_size", "n_inner")  # noqa: E741 (the papers' name for the MLP width)
    V = _first(f, "vocab_size")
    tied = f.flag("tie_word_embeddings", family in ("gemma", "gemma2"))
    total = active = None
    if family in GATED_FAMILIES and None not in (L, H, nh, hd, I, V):
        mlp = (_first(f, "moe_intermediate_size") or I) if E else I
        total, active = _llama_params(bool(f.flag("attention_bias")), family, L, H, nh, nkv, hd, mlp, V, E, topk, tied)
    dtype = (f.text("torch_dtype") or f.text("dtype") or "bfloat16").replace("torch.", "")
    arch = (f.strings("architectures") or [""])[0]
    decoder = family in GATED_FAMILIES or "CausalLM" in arch or "LMHead" in arch
    kv_bytes = None if not decoder else 2 * L * nkv * hd * DTYPE_BYTES.get(dtype, 2) if None not in (L, nkv, hd) else None
    window = _first(f, "sliding_window", lo=0)
    return ArchitectureCard(
        family=family, architecture=arch, n_layers=L, hidden_size=H,
        intermediate_size=I, n_heads=nh, n_kv_heads=nkv, gqa_group=nh // nkv if nh and nkv else None,
        head_dim=hd, sliding_window=window if f.flag("use_sliding_window", True) else None,
        rope_theta=_rope_theta(f), vocab_size=V, max_positions=_first(f, "max_position_embeddings", "n_positions", lo=0),
        n_experts=E, experts_per_token=topk, tied_embeddings=tied, params_total=total, params_active=active,
        kv_dtype=dtype if dtype in DTYPE_BYTES else f"{dtype} (assumed 2 bytes)", kv_bytes_per_token=kv_bytes, source=source,
    )


def _llama_params(bias, family, L, H, nh, nkv, hd, mlp, V, E, topk, tied) -> tuple[int, int]:  # noqa: ANN001
    """Total and active-per-token parameters of a Llama-style decoder (see the module docstring)."""
    attn = H * nh * hd + 2 * H * nkv * hd + nh * hd * H
    if family in BIAS_QKV_FAMILIES or bias:
        attn += nh * hd + 2 * nkv * hd + (H if bias else 0)
    mlp_one = 3 * H * mlp  # per expert: moe_intermediate_size where the config has one
    experts, used = (E, topk or E) if E else (1, 1)
    router = H * E if E else 0
    fixed = V * H * (1 if tied else 2) + H
    per_layer = attn + 2 * H + router
    return fixed + L * (per_layer + experts * mlp_one), fixed + L * (per_layer + used * mlp_one)


def _gguf_config(path: Path) -> dict[str, Any]:
    """A Hugging Face-style config from GGUF metadata (keys under ``{arch}.``)."""
    from tailscope.sources.gguf_reader import read_gguf

    tensors, meta = read_gguf(path)
    g = Fields(meta, path)
    arch = g.text("general.architecture", "unknown")

    def count(name: str, lo: int = 1) -> int | None:  # type-checked under its full GGUF key
        return g.integer(f"{arch}.{name}", lo=lo, hi=MAX_COUNT)

    by_name = {t.name: t for t in tensors}
    emb = by_name.get("token_embd.weight")
    experts = count("expert_count", lo=0)
    cfg = {
        "model_type": "mixtral" if (experts and arch == "llama") else arch,
        "architectures": [g.text("general.name", arch)],
        "num_hidden_layers": count("block_count", lo=0), "hidden_size": count("embedding_length"),
        "intermediate_size": count("feed_forward_length"), "num_attention_heads": count("attention.head_count"),
        "num_key_value_heads": count("attention.head_count_kv"),
        "head_dim": count("attention.key_length"), "rope_theta": g.number(f"{arch}.rope.freq_base", lo=0),
        "max_position_embeddings": count("context_length", lo=0),
        "vocab_size": int(emb.shape[0]) if emb is not None else None,
        "num_local_experts": experts or None, "num_experts_per_tok": count("expert_used_count", lo=0),
        "sliding_window": count("attention.sliding_window", lo=0),
        "tie_word_embeddings": "output.weight" not in by_name,
        "torch_dtype": "float16",  # llama.cpp keeps its KV cache in f16 by default
    }
    return cfg


def find_config(path: str | Path) -> Path | None:
    """config.json of a model directory or beside a weight file, if there is one."""
    p = Path(path)
    for cand in ((p / "config.json") if p.is_dir() else None, p if p.name == "config.json" else None, p.parent / "config.json"):
        if cand is not None and cand.exists():  # a FIFO or folder named config.json: read_json_file says so
            return cand
    return None


def card(path: str | Path) -> ArchitectureCard:
    """The architecture card of a model directory, a config.json or a GGUF file.

    Example:
        >>> import json, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2,
        ...     "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2, "vocab_size": 10}))
        >>> card(d).params_total  # 2*(4*64 + 2*8 + 3*8*16) + 2*80 + 8
        1480
    """
    p = Path(path)
    if p.suffix.lower() == ".gguf" and p.is_file():
        return card_from_config(_gguf_config(p), str(p))
    cfg_path = find_config(p)
    if cfg_path is None:
        raise InputError(p, "no config.json found (the architecture card needs one, or a GGUF file)")
    cfg = read_json_file(cfg_path, "the file", MAX_CONFIG_BYTES)
    if not isinstance(cfg, dict):
        raise InputError(cfg_path, f"not a valid config.json (expected a JSON object, got {type(cfg).__name__})")
    return card_from_config(cfg, str(cfg_path))


def model_card(model: Any) -> Any:
    """The architecture card of a path with a config.json or GGUF metadata, else None."""
    if not isinstance(model, (str, Path)):
        return None
    p = Path(model)
    if not (find_config(p) or p.suffix.lower() == ".gguf"):
        return None
    try:
        return card(p)
    except InputError:
        return None


def config_only(model: Any) -> bool:
    """Whether `model` is a config.json, or a directory with no weight files (size it from its config)."""
    p = Path(model)
    if p.name == "config.json":
        return True
    weights = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
    return p.is_dir() and not any(f.suffix in weights and not f.name.startswith("adapter_") for f in p.iterdir())
