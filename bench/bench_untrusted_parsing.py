"""Cost of parsing untrusted input safely, against the unchecked way, measured in the same run:

- a safetensors-shaped header of 91,000 tensors (DeepSeek-V3's count) through `parse_json`
  (depth pre-scan, integer and duplicate-key hooks) against plain `json.loads`;
- PEFT pattern keys matched by our DFA against `re.match(rf"(.*\\.)?({key})$")` for the modules of
  a Llama-7B-sized adapter (32 layers x 7 projections, 224 modules) and 8 realistic keys.

    PYTHONPATH=src python bench/bench_untrusted_parsing.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tailscope.sources.peft_patterns import pattern_tables  # noqa: E402
from tailscope.untrusted.json_loader import parse_json  # noqa: E402

from timing import best_of  # noqa: E402

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj")
KEYS = ["q_proj", "v_proj", r"layers\.0\.self_attn\.k_proj", "model.layers.31.mlp.down_proj", r"layers\.\d+\.mlp\.up_proj",
        "^model.layers.1.self_attn.o_proj", "(gate|up)_proj", r"layers\.[0-9]{1,2}\.self_attn\.(q|o)_proj"]


def header(n: int) -> bytes:
    entries, offset = {}, 0
    for i in range(n):
        size = 4096 * 4096 * 2
        entries[f"model.layers.{i // 1000}.mlp.experts.{i % 1000}.down_proj.weight"] = {
            "dtype": "BF16", "shape": [4096, 4096], "data_offsets": [offset, offset + size]}
        offset += size
    entries["__metadata__"] = {"format": "pt"}
    return json.dumps(entries).encode()


def main() -> None:
    raw = header(91_000)
    text = raw.decode()
    plain = best_of(lambda: json.loads(text), 3)
    safe = best_of(lambda: parse_json(raw, "model.safetensors", "safetensors header"), 3)
    print(f"header of {len(raw) / 2**20:.1f} MiB, 91,000 tensors: json.loads {plain * 1e3:.0f} ms, "
          f"parse_json {safe * 1e3:.0f} ms ({safe / plain:.2f}x)")

    modules = [f"model.layers.{layer}.{p}" for layer in range(32) for p in PROJECTIONS]
    patterns = {k: 8 for k in KEYS}

    def ours() -> list[object]:
        _, alphas = pattern_tables({}, patterns, "adapter_config.json")
        return [alphas.lookup(m, 16) for m in modules]

    def with_re() -> list[object]:
        return [next((v for k, v in patterns.items() if re.match(rf"(.*\.)?({k})$", m)), 16) for m in modules]

    assert ours() == with_re()
    t_ours, t_re = best_of(ours, 5), best_of(with_re, 5)
    print(f"{len(KEYS)} pattern keys x {len(modules)} modules: re {t_re * 1e3:.1f} ms, "
          f"our DFA (compile included) {t_ours * 1e3:.1f} ms ({t_ours / t_re:.1f}x)")


if __name__ == "__main__":
    main()
