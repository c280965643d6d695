"""Fine-tune delta memory: peak anonymous RSS of `analyze(FT, base=BASE)` on two bf16 checkpoints.

One command: `python bench/bench_delta_memory.py [N_MATRICES]` (default 48 matrices of 49152 x 256,
1.13 GiB per model). Prints the peak RssAnon against one model's file size (the pair-by-pair
stream keeps it far below: never both models, nor one, in memory).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bigfile import RSS_SAMPLER, write_bf16_checkpoint  # noqa: E402

PROBE = RSS_SAMPLER + r"""
import tailscope
t = time.perf_counter()
report = tailscope.analyze(sys.argv[1], base=sys.argv[2], progress=False)
peak = max(peak, rss_anon())
print(json.dumps({"peak": peak, "rows": len(report.details), "ok": int((report.details.status == "success").sum()), "s": time.perf_counter() - t}))
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 48
    shapes = {f"model.layers.{i}.mlp.down_proj.weight": (49152, 256) for i in range(n)}
    with tempfile.TemporaryDirectory() as tmp:
        ft, base = Path(tmp, "ft", "model.safetensors"), Path(tmp, "base", "model.safetensors")
        ft.parent.mkdir()
        base.parent.mkdir()
        size = write_bf16_checkpoint(ft, shapes, seed=1)
        write_bf16_checkpoint(base, shapes, seed=2)
        out = subprocess.run([sys.executable, "-c", PROBE, str(ft), str(base)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"delta of two {size / 2**30:.2f} GiB bf16 checkpoints ({r['ok']}/{r['rows']} rows fitted, {r['s']:.0f} s): "
          f"peak RssAnon {r['peak'] / 2**20:.0f} MiB = {r['peak'] / size:.2f} x one model's file")


if __name__ == "__main__":
    main()
