"""Peak memory of crafted files that claim far more than they hold, each in a fresh subprocess.

    python bench/bench_hostile_memory.py [--scale 1.0] [--against OTHER/src]

Cases (tests/hostile_files.py writes them; data regions are file holes):
  stride0_torch   a ~1.4 KB torch.save'd 1-element storage viewed as 50000 x 15000, analyzed
  fused_experts   a safetensors fused expert tensor of 2M 1 x 8 experts (32 MB of holes), described
  gguf_exps       a GGUF ffn_down_exps tensor of 2M 1 x 8 experts (64 MB of holes), described
  gguf_aliased    5000 GGUF entries of 256 x 256 F16 all pointing at one matrix's 128 KB, analyzed
  wide_lora       a PEFT adapter whose lora_A is 16 x 4M F32 (256 MB of holes), analyzed with --peft
  big_matrix      a real 50000 x 15000 F16 matrix (750M elements, 1.5 GB of holes), analyzed

Each line gives the outcome (refused, rows, skipped), the wall time, the peak anonymous RSS (RssAnon
sampled every 20 ms: what the process really holds; file-backed mmap pages are not counted) and
ru_maxrss, and the ratio of the peak to the baseline measured in the same run: the same
subprocess analyzing one 64 x 64 matrix (safetensors; a .pt file for the torch case, whose
import alone holds ~100 MiB).
`--against DIR` runs every case a second time with another checkout's `src` (e.g. the code
before the bounds) and prints that peak too; `--scale` shrinks the claimed sizes (use it with
--against: the unbounded code really allocates them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import hostile_files as hf  # noqa: E402
from bigfile import RSS_SAMPLER  # noqa: E402

PROBE = RSS_SAMPLER + r"""
import resource
args = json.loads(sys.argv[1])
import tailscope
t = time.perf_counter()
try:
    fn = getattr(tailscope, args.pop("call"))
    result = fn(args.pop("path"), **args)
    frame = result.details
    skipped = frame["skip_reason"].astype(bool).sum() if "skip_reason" in frame else len(result.skipped)
    outcome = f"{len(frame)} rows, {int(skipped)} skipped"
except tailscope.TailscopeError as exc:
    outcome = "refused: " + str(exc).split(": ", 1)[-1][:70]
seconds = time.perf_counter() - t
peak = max(peak, rss_anon())
print(json.dumps({"outcome": outcome, "s": seconds, "anon": peak, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def cases(tmp: Path, scale: float) -> dict[str, dict]:
    n, m, experts = int(50000 * scale), int(15000 * scale), int(2_000_000 * scale)
    return {
        "stride0_torch": dict(call="analyze", path=str(hf.stride0_torch(tmp / "s0.pt", n, m)), progress=False),
        "fused_experts": dict(call="describe", path=str(hf.fused_experts_safetensors(tmp / "fused.safetensors", experts))),
        "gguf_exps": dict(call="describe", path=str(hf.gguf_stacked_experts(tmp / "exps.gguf", experts))),
        "gguf_aliased": dict(call="analyze", path=str(hf.gguf_aliased(tmp / "alias.gguf", int(5000 * scale) or 2)), progress=False),
        "wide_lora": dict(call="analyze", path=str(hf.wide_lora_adapter(tmp / "lora", n_in=int(4_000_000 * scale))), peft=True,
                          progress=False),
        "big_matrix": dict(call="analyze", path=str(hf.big_matrix_safetensors(tmp / "big.safetensors", n, m)), progress=False),
    }


def baselines(tmp: Path) -> dict[str, dict]:
    """One 64 x 64 matrix as safetensors, and as a torch file (torch's import alone is ~100 MiB)."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    save_file({"fc.weight": w}, str(tmp / "baseline.safetensors"))
    torch.save({"fc.weight": torch.from_numpy(w)}, tmp / "baseline.pt")
    return {"baseline": dict(call="analyze", path=str(tmp / "baseline.safetensors"), progress=False),
            "baseline_torch": dict(call="analyze", path=str(tmp / "baseline.pt"), progress=False)}


def measure(args: dict, src: Path) -> dict:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        return {"outcome": f"crashed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1][:60]}", "s": float("nan"),
                "anon": float("nan"), "maxrss": float("nan")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def line(name: str, r: dict, base: float) -> str:
    return (f"{name:14s} {r['s']:7.2f} s  peak RssAnon {r['anon'] / 2**20:7.0f} MiB ({r['anon'] / base:5.2f}x baseline)  "
            f"ru_maxrss {r['maxrss'] / 2**20:7.0f} MiB  {r['outcome']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the claimed sizes (default 1)")
    parser.add_argument("--against", type=Path, help="another checkout's src directory to measure the same files with")
    opts = parser.parse_args()
    ours = ROOT / "src"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = {name: measure(args, ours) for name, args in baselines(tmp).items()}
        for name, r in base.items():
            print(line(name, r, r["anon"]))
        for name, args in cases(tmp, opts.scale).items():
            ref = base["baseline_torch" if args["path"].endswith(".pt") else "baseline"]["anon"]
            print(line(name, measure(dict(args), ours), ref))
            if opts.against:
                print(line("  (against)", measure(dict(args), opts.against), ref))


if __name__ == "__main__":
    main()
