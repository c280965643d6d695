"""Cost of `plot_dir`: MiniLM analyzed without plots, then with plots, in the same run.

    PYTHONPATH=src python bench/bench_plots.py [MODEL]

Prints both wall and CPU times (CPU time is steadier on a shared machine), their ratio, the PNG
count and the time per PNG. Default model: all-MiniLM-L6-v2
from $TAILSCOPE_MODELS (as fetched by tools/fetch_models.py).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import tailscope

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import fetch_models  # noqa: E402


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else str(fetch_models.fetch("minilm"))
    w0, c0 = time.perf_counter(), time.process_time()
    plain = tailscope.analyze(model, progress=False)
    w1, c1 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as out:
        tailscope.analyze(model, plot_dir=out, progress=False)
        w2, c2 = time.perf_counter(), time.process_time()
        n = len(list(Path(out).glob("*.png")))
    print(f"{len(plain.details)} matrices, {n} PNGs")
    for label, a, b, c in (("wall", w0, w1, w2), ("CPU ", c0, c1, c2)):
        per_png = 1000 * ((c - b) - (b - a)) / max(n, 1)
        print(f"{label}: no plots {b - a:6.1f} s, plot_dir {c - b:6.1f} s, ratio {(c - b) / (b - a):5.2f}x, {per_png:.0f} ms per PNG")


if __name__ == "__main__":
    main()
