"""The torch route (CUDA, or CPU for testing the same code): float64 Gram + eigvalsh on `device`.

`device='cuda'` runs exactly this code on the GPU; the tests run it with the torch device 'cpu'
(spelled ``"torch:cpu"`` where a device string reaches `compute_spectrum`), so the GPU path is
exercised on machines without one. Matrices of one shape (the 8 experts of a Mixtral layer, the
k*k slices of a Conv2D) are stacked and solved in one batched eigvalsh call.
"""

from __future__ import annotations

import numpy as np

from tailscope.errors import ConfigError, require
from tailscope.spectrum.precision import GRAM_RELATIVE_FLOOR


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without one is an error."""
    if device == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if device == "auto":
            return "cpu"
        raise ConfigError("Expected argument `device`='cuda' to have torch installed: pip install 'tailscope[torch]'") from None
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ConfigError("Expected argument `device`='cuda' to find a CUDA GPU, but torch sees none")
    return "cuda" if has_cuda else "cpu"


def torch_device(device: str) -> str:
    """The torch device of a tailscope device string: 'torch:cpu' -> 'cpu', 'cuda' -> 'cuda'."""
    return device.removeprefix("torch:")


def torch_singular_values(w: np.ndarray, device: str = "cuda") -> np.ndarray:
    """Ascending singular values computed with torch on `device` (SVD fallback as on the CPU route)."""
    return torch_singular_values_batch([w], device)[0]


def torch_singular_values_batch(mats: list[np.ndarray], device: str = "cuda") -> list[np.ndarray]:
    """Ascending singular values of each matrix; same-shape matrices share one batched call."""
    torch = require("torch", "torch")
    out: list[np.ndarray | None] = [None] * len(mats)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(mats):
        groups.setdefault(tuple(w.shape), []).append(i)
    with torch.no_grad():
        for idx in groups.values():
            t = torch.stack([torch.as_tensor(np.ascontiguousarray(mats[i])) for i in idx])
            t = t.to(device=torch_device(device), dtype=torch.float64)
            evals = torch.linalg.eigvalsh(t.mT @ t).clamp_min(0)
            for k, i in enumerate(idx):
                e = evals[k]
                if e.numel() and e[0] <= GRAM_RELATIVE_FLOOR * e[-1]:
                    out[i] = torch.linalg.svdvals(t[k]).flip(0).cpu().numpy()
                else:
                    out[i] = e.sqrt().cpu().numpy()
    return out  # type: ignore[return-value]
