"""How much smoothing some MLP matrices of SmolLM2-135M changes its outputs (numbers in the README).

    python tools/smooth_effects.py detx:down_proj:29-29 svd@0.9:gate_proj,up_proj,down_proj:20-29

Each argument is METHOD[@PERCENT]:PROJECTIONS:FIRST-LAST (HF block indices). The model is built
once from the GGUF (tailscope's loader); each variant smooths a copy in memory with the same
`smooth_matrix` that `tailscope smooth` writes, then reports greedy-token agreement on 5 prompts
(12 new tokens) and the perplexity of a fixed paragraph, against the unsmoothed model.
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
from test_smooth import PPL_TEXT, PROMPTS  # noqa: E402

from tailscope.smoothing.methods import smooth_matrix  # noqa: E402
from tailscope.sources.gguf_hf import load_hf_causal_lm, load_tokenizer  # noqa: E402


def outputs(model, tok):
    with torch.no_grad():
        gens = []
        for prompt in PROMPTS:
            ids = tok(prompt, return_tensors="pt").input_ids
            gens.append(model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:])
        ids = tok(PPL_TEXT, return_tensors="pt").input_ids
        return gens, float(torch.exp(model(ids, labels=ids).loss))


def variant(base, spec: str):
    method, projs, span = spec.split(":")
    method, _, pct = method.partition("@")
    first, last = map(int, span.split("-"))
    model = copy.deepcopy(base)
    for layer in range(first, last + 1):
        for proj in projs.split(","):
            weight = getattr(model.model.layers[layer].mlp, proj).weight
            out = smooth_matrix(weight.detach().numpy(), method, percent=float(pct or 0.8))
            if out.matrix is not None:
                weight.data = torch.tensor(out.matrix, dtype=torch.float32)
    return model


def main() -> None:
    path = fetch_models.fetch("smollm2")
    tok, base = load_tokenizer(path), load_hf_causal_lm(path)
    gen0, ppl0 = outputs(base, tok)
    for spec in sys.argv[1:]:
        gen1, ppl1 = outputs(variant(base, spec), tok)
        agree = np.mean([float((a == b).float().mean()) for a, b in zip(gen0, gen1)])
        same = sum(bool(torch.equal(a, b)) for a, b in zip(gen0, gen1))
        print(f"{spec:<45} agreement {agree:.3f}  identical {same}/5  perplexity {ppl0:.2f} -> {ppl1:.2f} ({ppl1 / ppl0 - 1:+.0%})", flush=True)


if __name__ == "__main__":
    main()
