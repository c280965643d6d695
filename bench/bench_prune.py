"""Perplexity of SmolLM2-135M pruned uniformly vs alpha-allocated (AlphaPruning), magnitude and Wanda.

    PYTHONPATH=src python bench/bench_prune.py [FILE.gguf] [--sparsities 0.5,0.6,0.7] [--json out.json]

One run: the GGUF is dequantized once to float32 safetensors (the dense baseline), analyzed once
(alpha per matrix, reused by every allocation), then pruned with {uniform, alpha} x {magnitude,
wanda} at each sparsity with tailscope's defaults (by=block, epsilon=0.3, the bundled calibration
text) and scored on the bundled held-out text. Where epsilon=0.3 would give some matrix a sparsity
>= 1 (prune refuses it), the run uses the largest epsilon prune names as feasible, and says so; last, `remove_traps` on the dense model and its
perplexity. Prints one table with each perplexity and its ratio to the dense one measured in the
same run, and alpha-allocated / uniform per (method, sparsity).
Default file: SmolLM2-135M-Instruct.Q4_1.gguf, fetched by tools/fetch_models.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tailscope
from tailscope.errors import ConfigError
from tailscope.smoothing.writer import rewrite_checkpoint
from tailscope.sources import open_source


def dequantize(gguf: Path, out: Path) -> Path:
    """The GGUF as a float32 safetensors Hugging Face directory (nothing edited)."""
    rewrite_checkpoint(open_source(gguf), [], lambda *_: None, out, overwrite=True,
                       sidecar=("dequantized.json", lambda: {"source": str(gguf)}))
    return out


def prune_feasible(dense: Path, out: Path, s: float, method: str, allocation: str, details: object) -> tuple:
    """prune with epsilon 0.3, or with the largest epsilon its refusal names as feasible."""
    try:
        return tailscope.prune(dense, out, sparsity=s, method=method, allocation=allocation, details=details,
                               overwrite=True), (0.3 if allocation != "uniform" else None)
    except ConfigError as exc:
        if "use epsilon <=" not in str(exc):
            raise
        eps = float(str(exc).rsplit("<= ", 1)[1])
        print(f"  {exc}", flush=True)
        return tailscope.prune(dense, out, sparsity=s, method=method, allocation=allocation, details=details,
                               epsilon=eps, overwrite=True), eps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?")
    ap.add_argument("--sparsities", default="0.5,0.6,0.7")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    if args.gguf:
        gguf = Path(args.gguf)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
        from fetch_models import fetch  # type: ignore[import-not-found]

        gguf = fetch("smollm2")
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_prune_") as tmp:
        dense = dequantize(gguf, Path(tmp) / "dense")
        base = tailscope.perplexity(dense)
        rows.append({"method": "dense", "allocation": "-", "sparsity": 0.0, "ppl": base.perplexity, "seconds": 0.0})
        print(f"dense: {base}", flush=True)
        details = tailscope.analyze(dense, progress=False).details
        for s in (float(x) for x in args.sparsities.split(",")):
            for method in ("magnitude", "wanda"):
                for allocation in ("uniform", "alpha"):
                    t0 = time.perf_counter()
                    out = Path(tmp) / "pruned"
                    rep, eps = prune_feasible(dense, out, s, method, allocation, details)
                    ppl = tailscope.perplexity(out).perplexity
                    shutil.rmtree(out)
                    rows.append({"method": method, "allocation": allocation, "sparsity": s, "ppl": ppl,
                                 "achieved": rep.summary["mean achieved"], "max": rep.summary["max"], "epsilon": eps,
                                 "seconds": time.perf_counter() - t0})
                    print(f"{method:9} {allocation:7} {s:.2f}: ppl {ppl:10.2f} (epsilon {eps}, max sparsity "
                          f"{rep.summary['max']:.3f}) "
                          f"({rows[-1]['seconds']:.0f} s)", flush=True)
        t0 = time.perf_counter()
        rep = tailscope.remove_traps(dense, Path(tmp) / "untrapped", seed=0)
        ppl = tailscope.perplexity(Path(tmp) / "untrapped").perplexity
        rows.append({"method": "remove_traps", "allocation": "-", "sparsity": 0.0, "ppl": ppl,
                     "traps": rep.summary["traps"], "matrices_with_traps": rep.summary["with traps"],
                     "seconds": time.perf_counter() - t0})
    print_table(rows, base.perplexity, base, time.perf_counter() - t_start)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def print_table(rows: list[dict], dense: float, base: object, total: float) -> None:
    print(f"\nSmolLM2-135M-Instruct (Q4_1 dequantized to float32); held-out text: {base}")
    print(f"{'sparsity':>8} {'method':>9} {'uniform':>10} {'alpha':>10} {'alpha/uniform':>13} {'epsilon':>7} "
          f"{'max s':>6}   (perplexity; dense {dense:.2f})")
    by = {(r["method"], r["allocation"], r["sparsity"]): r for r in rows}
    for s in sorted({r["sparsity"] for r in rows if r["sparsity"] > 0}):
        for method in ("magnitude", "wanda"):
            u, a = by[(method, "uniform", s)], by[(method, "alpha", s)]
            print(f"{s:8.2f} {method:>9} {u['ppl']:10.2f} {a['ppl']:10.2f} {a['ppl'] / u['ppl']:13.3f} "
                  f"{a['epsilon']:7.2f} {a['max']:6.3f}")
    trap = next(r for r in rows if r["method"] == "remove_traps")
    print(f"remove_traps: {trap['traps']} traps in {trap['matrices_with_traps']} matrices; perplexity "
          f"{trap['ppl']:.2f} ({trap['ppl'] / dense:.3f} x dense)")
    print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()
