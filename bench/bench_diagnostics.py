"""Time of the diagnostics on MiniLM: tailscope versus weightwatcher 0.7.7, measured in the same run.

    PYTHONPATH=src python bench/bench_diagnostics.py [MODEL_DIR]

Both run fix_fingers='clip_xmax' + detX + randomize + mp_fit on every layer of all-MiniLM-L6-v2
(default: $TAILSCOPE_MODELS/all-MiniLM-L6-v2, or ~/.cache/tailscope/models). Prints both wall
times, the ratio, and the agreement of the deterministic columns (alpha, raw_alpha, detX_num,
num_spikes, mp_softrank). weightwatcher takes minutes: it runs once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import tailscope


def main() -> None:
    default = Path(os.environ.get("TAILSCOPE_MODELS", Path.home() / ".cache/tailscope/models")) / "all-MiniLM-L6-v2"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    t0 = time.perf_counter()
    ours = tailscope.analyze(path, progress=False, fix_fingers="clip_xmax", detx=True, randomize=True, mp_fit=True).details
    t1 = time.perf_counter()
    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ww.WeightWatcher().analyze(model=str(path), fix_fingers="clip_xmax", detX=True, randomize=True, mp_fit=True)
    t2 = time.perf_counter()
    m = theirs.merge(ours, on="layer_id", suffixes=("_ww", "_ts"))
    print(f"layers: tailscope {len(ours)}, weightwatcher {len(theirs)}, matched {len(m)}")
    print(f"tailscope     (fix_fingers+detx+randomize+mp_fit): {t1 - t0:7.1f} s")
    print(f"weightwatcher (fix_fingers+detX+randomize+mp_fit): {t2 - t1:7.1f} s")
    print(f"ratio weightwatcher / tailscope: {(t2 - t1) / (t1 - t0):6.1f}x")
    for col in ("alpha", "raw_alpha", "mp_softrank"):
        print(f"  max |{col} diff|: {np.max(np.abs(m[col + '_ww'] - m[col + '_ts'])):.2e}")
    for col in ("detX_num", "num_spikes"):
        print(f"  {col} equal on {int((m[col + '_ww'] == m[col + '_ts']).sum())}/{len(m)} layers")
    print(f"  num_fingers: ours = weightwatcher's + 1 where fingers were cut: "
          f"{bool(((m.num_fingers_ts == m.num_fingers_ww + 1) | (m.num_fingers_ww == 0)).all())}")
    print(f"  rand_distance (random shuffles): median ours {m.rand_distance_ts.median():.3f}, ww {m.rand_distance_ww.median():.3f}")


if __name__ == "__main__":
    main()
