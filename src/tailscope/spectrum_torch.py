"""The torch route (CUDA, or CPU for testing the same code): float64 Gram + eigvalsh on `device`."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, require
from .spectrum import GRAM_RELATIVE_FLOOR


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


def torch_singular_values(w: np.ndarray, device: str = "cuda") -> np.ndarray:
    """Ascending singular values computed with torch on `device` (SVD fallback as on the CPU route)."""
    torch = require("torch", "torch")
    with torch.no_grad():
        t = torch.as_tensor(np.ascontiguousarray(w)).to(device=device, dtype=torch.float64)
        evals = torch.linalg.eigvalsh(t.T @ t).clamp_min(0)
        if evals.numel() and evals[0] <= GRAM_RELATIVE_FLOOR * evals[-1]:
            return torch.linalg.svdvals(t).flip(0).cpu().numpy()
        return evals.sqrt().cpu().numpy()
