"""Cost of `plot_dir`: MiniLM analyzed without plots, then with plots, in the same run.

    PYTHONPATH=src python bench/bench_plots.py [MODEL]

Prints both times, their ratio, the PNG count and the time per PNG. Default model: all-MiniLM-L6-v2
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
    t0 = time.perf_counter()
    plain = tailscope.analyze(model, progress=False)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        tailscope.analyze(model, plot_dir=out, progress=False)
        t2 = time.perf_counter()
        pngs = list(Path(out).glob("*.png"))
    extra = (t2 - t1) - (t1 - t0)
    print(f"{len(plain.details)} matrices")
    print(f"analyze, no plots:   {t1 - t0:6.1f} s")
    print(f"analyze, plot_dir:   {t2 - t1:6.1f} s  ({len(pngs)} PNGs, {1000 * extra / max(len(pngs), 1):.0f} ms per PNG)")
    print(f"ratio plots / no plots: {(t2 - t1) / (t1 - t0):5.2f}x")


if __name__ == "__main__":
    main()
