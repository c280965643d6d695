"""Smoothing's claims (truncation keeps embeddings and perplexity) checked without tailscope's smoothing code: truncate with torch alone.

    python tools/truncation_check.py minilm     # cosine of sentence embeddings, MLP matrices at 80/90/95% of the rank
    python tools/truncation_check.py smollm2    # perplexity with the 1 or 6 smallest components of blocks 20-29's MLPs dropped

The models come from the PyPI wheels (tools/fetch_models.py); the sentences, prompts and text are
those of tests/smoothing/test_smooth.py. Only loading uses tailscope (the GGUF -> transformers loader).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tools")]

import fetch_models  # noqa: E402
from test_smooth import PPL_TEXT, SENTENCES  # noqa: E402


def truncate(linear: torch.nn.Linear, keep: int) -> None:
    """Replace the weight by its best rank-`keep` approximation (float64 SVD)."""
    u, s, vh = torch.linalg.svd(linear.weight.double(), full_matrices=False)
    linear.weight.copy_(((u[:, :keep] * s[:keep]) @ vh[:keep]).to(linear.weight.dtype))


def minilm() -> None:
    from transformers import AutoModel, AutoTokenizer

    path = fetch_models.fetch("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    mask = batch["attention_mask"].unsqueeze(-1).float()

    def embed(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        return (hidden * mask).sum(1) / mask.sum(1)

    original = embed(AutoModel.from_pretrained(path).eval())
    for parts in (("intermediate", "output"), ("intermediate",), ("output",)):
        for percent in (0.8, 0.9, 0.95):
            model = AutoModel.from_pretrained(path).eval()
            with torch.no_grad():
                for layer in model.encoder.layer:
                    for part in parts:
                        linear = getattr(layer, part).dense
                        truncate(linear, int(percent * min(linear.weight.shape)))  # weightwatcher's int(percent * M)
            cos = torch.nn.functional.cosine_similarity(original, embed(model)).numpy()
            print(f"{'+'.join(parts):22s} percent {percent:4.2f}: cosine min {cos.min():.3f} median {np.median(cos):.3f}")


def smollm2() -> None:
    from tailscope.sources.gguf_hf import load_hf_causal_lm

    from smollm_shared import gguf_tokenizer

    path = fetch_models.fetch("smollm2")
    base = load_hf_causal_lm(path).eval()
    ids = gguf_tokenizer(path)(PPL_TEXT, return_tensors="pt").input_ids

    def perplexity(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(torch.exp(model(ids, labels=ids).loss))

    print(f"original perplexity {perplexity(base):.3f}")
    for dropped in (1, 6):
        model = copy.deepcopy(base)
        with torch.no_grad():
            for block in model.model.layers[20:30]:
                for name in ("gate_proj", "up_proj", "down_proj"):
                    linear = getattr(block.mlp, name)
                    truncate(linear, min(linear.weight.shape) - dropped)
        print(f"{dropped} smallest component(s) dropped per MLP matrix of blocks 20-29: perplexity {perplexity(model):.3f}")


if __name__ == "__main__":
    {"minilm": minilm, "smollm2": smollm2}[sys.argv[1] if len(sys.argv) > 1 else "minilm"]()
