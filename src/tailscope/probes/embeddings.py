"""Norms and HTSR alpha of the embedding (W_E) and unembedding (W_U) matrices.

Hypothesis this answers: "the expansion hides in a large W_U" -- compare W_U's norms with W_E's
(ratio W_U / W_E) and with the residual-stream norms. Alpha and the spectral norm come from
`tailscope.analyze` on just these matrices, so they are the same numbers the weight analysis gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EMBED_KEY, UNEMBED_KEY = "embed_tokens.weight", "lm_head.weight"


def matrix_stats(w: np.ndarray) -> dict[str, float]:
    """Frobenius norm, normalized norms and row-norm statistics of a (vocab, d) matrix.

    ``fro_per_row`` = |W|_F / sqrt(vocab) (root-mean-square row norm, comparable across vocab
    sizes); ``fro_rms`` = |W|_F / sqrt(vocab * d) (root-mean-square entry).

    >>> s = matrix_stats(np.array([[3.0, 4.0], [0.0, 0.0]]))
    >>> s["fro"], s["row_norm_max"], s["row_norm_mean"]
    (5.0, 5.0, 2.5)
    """
    rows = np.linalg.norm(np.asarray(w, dtype=np.float64), axis=1)
    fro = float(np.sqrt(np.sum(rows**2)))
    return {
        "fro": fro,
        "fro_per_row": float(fro / np.sqrt(w.shape[0])),
        "fro_rms": float(fro / np.sqrt(w.size)),
        "row_norm_mean": float(rows.mean()),
        "row_norm_std": float(rows.std()),
        "row_norm_min": float(rows.min()),
        "row_norm_max": float(rows.max()),
    }


def spectral_stats(matrices: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Spectral norm (sv_max), alpha and stable rank of each matrix, from `tailscope.analyze`."""
    from tailscope.analysis.pipeline import analyze

    longest = max(max(w.shape) for w in matrices.values())
    report = analyze(dict(matrices), max_n=longest + 1, max_evals=0, min_evals=0, progress=False)
    out = {}
    for _, row in report.details.iterrows():
        out[f"{row['name']}.weight"] = {
            "spectral": float(row["sv_max"]),
            "alpha": float(row["alpha"]),
            "stable_rank": float(row["stable_rank"]),
            "alpha_status": str(row["status"]),
        }
    return out


def embedding_stats(w_e: np.ndarray, w_u: np.ndarray | None, tied: bool) -> dict[str, Any]:
    """Stats of W_E and W_U (the same numbers twice when tied) and their W_U / W_E ratios."""
    matrices = {EMBED_KEY: w_e} if tied or w_u is None else {EMBED_KEY: w_e, UNEMBED_KEY: w_u}
    spectral = spectral_stats(matrices)
    result: dict[str, Any] = {"tied": bool(tied), "has_unembedding": w_u is not None}
    result["embed"] = {**matrix_stats(w_e), **spectral[EMBED_KEY]}
    if w_u is None:
        result["unembed"] = None
        return result
    result["unembed"] = dict(result["embed"]) if tied else {**matrix_stats(w_u), **spectral[UNEMBED_KEY]}
    for key in ("fro", "spectral", "row_norm_mean"):
        result[f"ratio_{key}"] = result["unembed"][key] / result["embed"][key]
    return result
