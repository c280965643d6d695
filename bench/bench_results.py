"""Cost of durable results: MiniLM analyzed plain, with `results=` (hash + fsync per
row), and resumed from a complete results file; ratios against the plain run of the same process.

    PYTHONPATH=src python bench/bench_results.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import fetch_models  # noqa: E402

import tailscope  # noqa: E402


def timed(fn, repeats: int = 3):  # noqa: ANN001, ANN201
    """Best of `repeats` (the machine is shared: the minimum is the least disturbed run)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def fresh_results(model):  # noqa: ANN001, ANN201
    with tempfile.TemporaryDirectory() as tmp:
        return tailscope.analyze(model, progress=False, results=tmp)


def main() -> None:
    model = fetch_models.fetch("minilm")
    tailscope.analyze(model, progress=False)  # warm the page cache and imports
    plain_s, plain = timed(lambda: tailscope.analyze(model, progress=False))
    first_s, first = timed(lambda: fresh_results(model))
    with tempfile.TemporaryDirectory() as tmp:
        tailscope.analyze(model, progress=False, results=tmp)
        resume_s, resumed = timed(lambda: tailscope.analyze(model, progress=False, results=tmp))
    assert first.details.equals(plain.details) and resumed.details.equals(plain.details)
    rows = len(plain.details)
    print(f"MiniLM, {rows} rows: plain {plain_s:.2f} s")
    print(f"with results= (blake2b + fsync per row): {first_s:.2f} s  ratio {first_s / plain_s:.2f}")
    print(f"resumed, all {resumed.reused} rows reused:  {resume_s:.2f} s  ratio {resume_s / plain_s:.2f}")


if __name__ == "__main__":
    main()
