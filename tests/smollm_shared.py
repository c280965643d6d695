"""Expensive SmolLM2 objects shared by several test files, built at most once per test session.

transformers' own ``gguf_file=`` loader is the independent oracle for the GGUF -> HF conversion
and the model the probe tests run on; it takes 20-45 s, so it is cached here (a module-level
cache is shared across test files, a fixture in one file is not).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path


@functools.lru_cache(maxsize=None)
def transformers_gguf_model(path: Path):
    """SmolLM2 loaded by transformers' ``from_pretrained(dir, gguf_file=name)`` (eval mode)."""
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    print(f"\ntransformers gguf_file= load of {path.name}: {time.perf_counter() - start:.1f} s")
    return model


@functools.lru_cache(maxsize=None)
def gguf_tokenizer(path: Path):
    """The GGUF file's tokenizer (transformers' AutoTokenizer, offline) via tailscope's helper."""
    from tailscope.sources.gguf_hf import load_tokenizer

    start = time.perf_counter()
    tok = load_tokenizer(path)
    print(f"\ntransformers tokenizer from {path.name}: {time.perf_counter() - start:.1f} s")
    return tok
