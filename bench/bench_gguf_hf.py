"""Load time of a GGUF causal LM: tailscope's gguf_hf versus transformers' gguf_file= loader.

    PYTHONPATH=src python bench/bench_gguf_hf.py [FILE.gguf]

Prints both load times, their ratio, the tokenizer load time and the largest logit difference.
Default file: SmolLM2-135M-Instruct.Q4_1.gguf, fetched by tools/fetch_models.py (cache: $TAILSCOPE_MODELS or .cache/models).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from tailscope.sources.gguf_hf import load_hf_causal_lm, load_tokenizer


def main() -> None:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
        from fetch_models import fetch  # type: ignore[import-not-found]

        path = fetch("smollm2")
    t0 = time.perf_counter()
    ours = load_hf_causal_lm(path)
    t1 = time.perf_counter()
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    t2 = time.perf_counter()
    tok = load_tokenizer(path)
    t3 = time.perf_counter()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        diff = float((ours(ids).logits - theirs(ids).logits).abs().max())
    print(f"tailscope gguf_hf load:        {t1 - t0:6.1f} s")
    print(f"transformers gguf_file= load:  {t2 - t1:6.1f} s")
    print(f"ratio transformers / tailscope: {(t2 - t1) / (t1 - t0):5.2f}x")
    print(f"tokenizer (AutoTokenizer gguf_file=): {t3 - t2:.1f} s")
    print(f"max |logit difference|: {diff:.3g}")


if __name__ == "__main__":
    main()
