"""Rank columns on exact low-rank matrices at several scales, against numpy.linalg.matrix_rank."""

from __future__ import annotations

import numpy as np

import tailscope
import tailscope.compat as ww
from science.common import markdown_table

TITLE = "Rank: matrix_rank, rank_loss and weak_rank_loss on exact low-rank matrices"
SCALES = (1e-3, 1.0, 1e3)


def low_rank(rng: np.random.Generator, n: int, m: int, k: int, scale: float, dtype: type) -> np.ndarray:
    return (scale * rng.standard_normal((n, k)) @ rng.standard_normal((k, m)) / np.sqrt(k)).astype(dtype)


def run(quick: bool) -> str:
    rng = np.random.default_rng(0)
    shapes = ((512, 256, 64),) if quick else ((512, 256, 64), (1536, 576, 100), (384, 384, 32))
    rows = []
    for n, m, k in shapes:
        for dtype in (np.float32, np.float64):
            for scale in SCALES:
                w = low_rank(rng, n, m, k, scale, dtype)
                row = tailscope.analyze({"w.weight": w}, progress=False).details.iloc[0]
                legacy = ww.WeightWatcher(model={"w.weight": w}).analyze()
                rows.append((f"{n}x{m} rank {k}", np.dtype(dtype).name, f"{scale:g}", int(np.linalg.matrix_rank(w)),
                             int(row["matrix_rank"]), int(row["rank_loss"]), int(row["weak_rank_loss"]),
                             int(legacy["matrix_rank"].iloc[0]), int(legacy["weak_rank_loss"].iloc[0])))
    head = ["matrix", "dtype", "scale", "numpy matrix_rank", "matrix_rank", "rank_loss", "weak_rank_loss",
            "compat matrix_rank", "compat weak_rank_loss"]
    note = ("W = scale * A B / sqrt(k), A: N x k, B: k x M Gaussian, stored in the dtype shown. Must hold: matrix_rank = "
            "numpy's, rank_loss = M - k, weak_rank_loss the same at every scale. The compat facade keeps weightwatcher's "
            "rules (float64 eps whatever the storage, an absolute weak-rank tolerance): its matrix_rank of a float32 "
            "matrix counts rounding noise as rank.")
    return note + "\n\n" + markdown_table(head, rows)
