"""FARMS (Ren et al., ICML 2025): alpha of the pooled ESDs of fixed-aspect-ratio submatrices.

The ESD of an N x M matrix with i.i.d. entries depends on its aspect ratio Q = N/M (Marchenko-
Pastur's law, and its heavy-tailed analogues), so the fitted alpha of layers of different shapes
(MLP 1536 x 576 against attention 576 x 576, GQA k/v 192 x 576) differs even for the same entry
distribution. FARMS removes that: it samples windows of one fixed shape from every matrix, pools
their eigenvalues and fits the pooled ESD, so every layer is measured at the same aspect ratio.

Windows (the public code's `fixed_sampling`, our own implementation): a window is `rows` x
`rows * q` (the shorter side `rows`, laid along the matrix's shorter side), placed on a grid of
`per_dim` positions along each side, evenly spaced from one edge to the other (step
(L - w) // (per_dim - 1), the last position clamped to the edge), so up to per_dim^2 windows,
overlapping where the matrix is small. A matrix smaller than a window along a side gets a window
shrunk to fit at the same aspect ratio where possible.

Defaults are the public FARMS code's (`net_esd_estimator_farms`): num_row_samples = 100 rows,
Q_ratio = 2.0 (100 x 200 windows), sampling_ops_per_dim = 10 (10 x 10 = 100 windows). The pooled
ESD is fitted as the FARMS code fits it by default, PL_Alpha_Hill with xmin at the median
eigenvalue (`tailscope.fit.hill`; option farms_fit='median'). The KS-chosen fit of the `alpha`
column is available (farms_fit='ks') but its xmin wanders on these pooled spectra: measured on
i.i.d. Student-t / Pareto matrices its spread across Q is 0.2-2.0, against < 0.07 for the median
Hill fit (`bench/science/farms.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_ROWS = 100
DEFAULT_Q = 2.0
DEFAULT_PER_DIM = 10


@dataclass(frozen=True)
class Windows:
    """Window size and grid: `rows` x round(rows * q) windows, `per_dim` positions per side."""

    rows: int = DEFAULT_ROWS
    q: float = DEFAULT_Q
    per_dim: int = DEFAULT_PER_DIM


def window_shape(n: int, m: int, spec: Windows) -> tuple[int, int]:
    """(long, short) sides of the windows of a tall N x M matrix: short = rows, long = rows * q,
    shrunk (keeping q where the matrix allows) to fit inside it."""
    short = min(spec.rows, m, int(n / spec.q))
    short = max(short, 1)
    long = min(n, max(short, int(round(short * spec.q))))
    return long, short


def starts(length: int, window: int, per_dim: int) -> list[int]:
    """Window offsets along one side: up to `per_dim`, evenly stepped, the last clamped to the edge."""
    room = length - window
    if room <= 0 or per_dim <= 1:
        return [0]
    step = max(1, room // (per_dim - 1))
    count = min(per_dim, room // step + 1)
    return sorted({min(i * step, room) for i in range(count)})


def windows_of(w: np.ndarray, spec: Windows) -> list[np.ndarray]:
    """The submatrices (views) of a tall N x M matrix, each `long x short`."""
    n, m = w.shape
    long, short = window_shape(n, m, spec)
    return [w[r : r + long, c : c + short] for r in starts(n, long, spec.per_dim) for c in starts(m, short, spec.per_dim)]


def farms_eigenvalues(mats: list[np.ndarray], spec: Windows = Windows(), device: str = "cpu") -> np.ndarray:
    """Pooled ascending eigenvalues of W_k^T W_k over every window W_k of every (tall) matrix.

    CPU: one stacked float64 Gram + eigvalsh per matrix (the windows share a shape); the torch
    route (`device` 'cuda' or 'torch:cpu') runs the same batched solve with torch."""
    parts = []
    for w in mats:
        stack = np.stack([np.asarray(x, dtype=np.float64) for x in windows_of(w, spec)])
        if device == "cpu":
            evals = np.linalg.eigvalsh(np.swapaxes(stack, 1, 2) @ stack)
        else:
            evals = _torch_eigvalsh(stack, device)
        parts.append(np.clip(evals.reshape(-1), 0.0, None))
    return np.sort(np.concatenate(parts))


def _torch_eigvalsh(stack: np.ndarray, device: str) -> np.ndarray:
    from tailscope.errors import require
    from tailscope.spectrum.torch_route import torch_device

    torch = require("torch", "torch")
    with torch.no_grad():
        t = torch.as_tensor(stack).to(device=torch_device(device), dtype=torch.float64)
        return torch.linalg.eigvalsh(t.mT @ t).cpu().numpy()
