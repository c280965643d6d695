"""Per-matrix sparsities from a per-matrix metric: AlphaPruning's linear map (Lu et al., NeurIPS 2024).

With m_i the metric of matrix i (alpha: larger = thinner tail = less trained = pruned more), P_i its
parameter count, S the target sparsity and epsilon in [0, 1):

    r_i = (1 - epsilon) + 2 epsilon (m_i - min m) / (max m - min m)      in [1 - epsilon, 1 + epsilon]
    s_i = r_i * S * sum_j P_j / sum_j P_j r_j                             so sum P_i s_i / sum P_i = S

``by="block"`` first replaces m_i by the plain (unweighted) mean of the metric over the matrices of
its transformer block, AlphaPruning's default ``block_wise`` mapping; ``by="matrix"`` uses each
matrix's own metric. AlphaPruning's defaults are the metric PL_Alpha_Hill (``alpha_peak``) and
epsilon = 0.3; tailscope's default metric is its plain `alpha` column (the KS-chosen xmin MLE), and
any numeric column of an analysis (``alpha_hill``, ``alpha_farms``) plugs in the same way.

When every metric is equal the map is undefined (AlphaPruning divides by zero); every matrix then
gets S. A sparsity that would reach 1 is refused, naming the matrix and the largest epsilon that fits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tailscope.errors import ConfigError


def linear_sparsities(metric: np.ndarray, params: np.ndarray, sparsity: float, epsilon: float) -> np.ndarray:
    """s_i of the linear map above (no validation of the result).

    >>> linear_sparsities(np.array([2.0, 4.0]), np.array([1, 1]), 0.5, 0.2).round(3).tolist()
    [0.4, 0.6]
    """
    m = np.asarray(metric, dtype=np.float64)
    p = np.asarray(params, dtype=np.float64)
    span = m.max() - m.min()
    ratios = np.ones_like(m) if span == 0 else (1 - epsilon) + 2 * epsilon * (m - m.min()) / span
    return ratios * sparsity * p.sum() / np.sum(p * ratios)


def block_means(metric: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Each entry replaced by the plain mean of `metric` over the entries of its block."""
    series = pd.Series(np.asarray(metric, dtype=np.float64))
    return series.groupby(np.asarray(blocks)).transform("mean").to_numpy()


def allocate(table: pd.DataFrame, *, sparsity: float, allocation: str, epsilon: float, by: str, metric: str) -> pd.DataFrame:
    """`table` (one row per prunable matrix: name, layer, params and the metric column) with the
    columns ``metric`` (the value mapped, a block mean with by='block') and ``sparsity``."""
    out = table.copy()
    if allocation == "uniform":
        out["metric"] = out[metric] if metric in out else np.nan
        out["sparsity"] = float(sparsity)
        return out
    values = pd.to_numeric(out[metric], errors="coerce").to_numpy(dtype=np.float64)
    missing = out.loc[~np.isfinite(values), "name"].tolist()
    if missing:
        raise ConfigError(f"Expected a finite `{metric}` for every prunable matrix, but the fit failed for "
                          f"{len(missing)}: {', '.join(missing[:5])}; exclude them with `layers` or use allocation='uniform'")
    if by == "block":
        values = block_means(values, out["layer"].to_numpy())
    out["metric"] = values
    out["sparsity"] = linear_sparsities(values, out["params"].to_numpy(), sparsity, epsilon)
    _refuse_full(out, sparsity, epsilon)
    return out


def _refuse_full(out: pd.DataFrame, sparsity: float, epsilon: float) -> None:
    worst = out["sparsity"].idxmax()
    if out.at[worst, "sparsity"] < 1:
        return
    p, m = out["params"].to_numpy(dtype=np.float64), out["metric"].to_numpy()
    fits = next(e / 100 for e in range(int(epsilon * 100 + 1e-9), -1, -1) if linear_sparsities(m, p, sparsity, e / 100).max() < 1)
    raise ConfigError(
        f"Expected every allocated sparsity below 1, but epsilon={epsilon:g} at sparsity={sparsity:g} gives "
        f"{out.at[worst, 'name']} {out.at[worst, 'sparsity']:.3f}; use epsilon <= {fits:.2f}")
