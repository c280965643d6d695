"""Run prompts through an HF causal LM once each, with hooks, and assemble a `ProbeReport`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tailscope.errors import InputError, require
from tailscope.probes.config import ProbeConfig
from tailscope.probes.embeddings import embedding_stats
from tailscope.probes.hooks import TokenNorms, find_anatomy, record_norms
from tailscope.probes.output import average_stats, logit_stats
from tailscope.probes.report import ModelProbe, ProbeReport
from tailscope.probes.residual import GainSummary, residual_table, subblock_table


def probe(model: Any, tokenizer: Any, prompts: str | Sequence[str], *, name: str | None = None,
          config: ProbeConfig | None = None, **options: Any) -> ProbeReport:
    """Residual-stream, sub-block, (un)embedding and output-entropy measurements of a causal LM.

    Each prompt runs alone (batch 1, no padding) in eval mode under ``torch.no_grad``, on the
    device the model is on; hooks are removed afterwards and the model's train/eval mode restored.

    Args:
        model: a Hugging Face causal LM (``AutoModelForCausalLM`` or a GGUF model from
            `tailscope.sources.gguf_hf.load_hf_causal_lm`).
        tokenizer: its tokenizer.
        prompts: one prompt or several; statistics are averaged over them.
        name: label of the model in tables and figures (default: its class name).
        config: a `ProbeConfig`; keyword options override its fields.
    """
    torch = require("torch", "probe")
    cfg = ProbeConfig.from_kwargs(**options) if config is None else ProbeConfig.from_kwargs(**{**asdict(config), **options})
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InputError("prompts", "expected one or more non-empty strings")
    anatomy = find_anatomy(model)
    records, finals, n_tokens = [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), record_norms(model, anatomy) as rec:
            for prompt in prompts:
                ids = _encode(tokenizer, prompt, cfg, _device(model))
                logits = model(input_ids=ids).logits
                records.append(rec.take())
                finals.append(logit_stats(logits[0, -1].float().cpu().numpy(), top_k=cfg.top_k))
                n_tokens.append(int(ids.shape[1]))
    finally:
        model.train(was_training)
    return ProbeReport([ModelProbe(
        name=name or type(model).__name__, architecture=type(model).__name__, n_layers=len(anatomy.layers),
        prompts=prompts, n_tokens=n_tokens, layers=layer_frame(records), residual=residual_summary(records),
        embeddings=_embeddings(model) if cfg.weights else None, logits=average_stats(finals),
        logits_per_prompt=finals, token_norms=[r.raw for r in records],
    )])


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _encode(tokenizer: Any, prompt: str, cfg: ProbeConfig, device: Any) -> Any:
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=cfg.add_special_tokens).input_ids
    ids = ids[:, : cfg.max_tokens]
    if ids.shape[1] == 0:
        raise InputError("prompts", f"prompt {prompt[:40]!r} tokenizes to no tokens")
    return ids.to(device)


def layer_frame(records: Sequence[TokenNorms]) -> pd.DataFrame:
    """Per-depth table: residual norms/gains and per-layer sub-block ratios, with and without pos 0."""
    n_depth = records[0].raw.shape[0]
    frame = pd.DataFrame({"depth": np.arange(n_depth)})
    frame["layer"] = pd.array([pd.NA] + list(range(n_depth - 1)), dtype="Int64")
    for skip, suffix in ((False, ""), (True, "_no0")):
        for key, values in residual_table(records, skip).items():
            frame[key + suffix] = values
        for key, values in subblock_table(records, skip).items():
            frame[key + suffix] = np.concatenate([[np.nan], values])
    return frame


def residual_summary(records: Sequence[TokenNorms]) -> dict[str, Any]:
    """Gain summaries (raw/normed x all tokens/no position 0), last-MLP gains, end-point norms."""
    out: dict[str, Any] = {}
    for skip, suffix in ((False, ""), (True, "_no0")):
        table = residual_table(records, skip)
        for view in ("raw", "normed"):
            if f"norm_{view}" in table:
                out[view + suffix] = asdict(GainSummary.of(table[f"norm_{view}"]))
        sub = subblock_table(records, skip)
        out["last_mlp_gain" + suffix] = float(sub["mlp_gain"][-1]) if sub else None
        out["last_mlp_ratio" + suffix] = float(sub["mlp_ratio"][-1]) if sub else None
        out["embed_norm" + suffix] = float(table["norm_raw"][0])
        out["final_norm" + suffix] = float(table["norm_raw"][-1])
    out["final_norm_pos0"] = float(np.mean([r.raw[-1, 0] for r in records]))
    return out


def _embeddings(model: Any) -> dict[str, Any]:
    w_e = model.get_input_embeddings().weight
    out_emb = model.get_output_embeddings()
    w_u = None if out_emb is None else out_emb.weight
    tied = w_u is not None and (w_u is w_e or w_u.data_ptr() == w_e.data_ptr())
    return embedding_stats(_numpy(w_e), None if w_u is None else _numpy(w_u), tied)


def _numpy(w: Any) -> np.ndarray:
    return w.detach().float().cpu().numpy()
