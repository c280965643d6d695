"""Wanda's input-activation norms ||x_j||_2 for each pruned matrix, from a calibration text.

One forward pass of the whole calibration set (consecutive windows of `context` tokens, batched)
through the Hugging Face model, with a forward pre-hook on every pruned Linear: the hook measures
the norms of the input the Linear is about to see, prunes the Linear in place with `wanda_mask`,
and lets the forward go on. So each matrix is scored on the output of the already-pruned matrices
before it (Wanda's sequential layer-by-layer procedure, here within one pass and also within a
block), and the checkpoint writer, which recomputes the same mask from the same float32 weights
and these norms, writes exactly the model that was calibrated. The loaded model is discarded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tailscope.errors import InputError, require
from tailscope.surgery.masks import wanda_mask


def calibration_ids(tokenizer: Any, text: str, context: int) -> Any:
    """(windows, context) token ids: the text's full windows (all of it when shorter than one)."""
    torch = require("torch", "probe")
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    if ids.numel() < 2:
        raise InputError("calibration text", "has fewer than 2 tokens")
    n = ids.numel() // context
    return ids[None] if n == 0 else ids[: n * context].reshape(n, context).to(torch.long)


def activation_norms(model: Any, ids: Any, sparsities: dict[str, float]) -> dict[str, np.ndarray]:
    """{module name: ||x_j||_2 over all calibration tokens (float64)} for the modules in `sparsities`
    (module name -> the sparsity it is pruned to while the pass goes on)."""
    torch = require("torch", "probe")
    modules = dict(model.named_modules())
    missing = [name for name in sparsities if not isinstance(modules.get(name), torch.nn.Linear)]
    if missing:
        raise InputError(type(model).__name__, f"no Linear module for the pruned matrices {', '.join(missing[:5])}")
    norms: dict[str, np.ndarray] = {}

    def hook(name: str):  # noqa: ANN202
        def measure_and_prune(module: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, module.in_features).double()
            norms[name] = torch.sqrt((x * x).sum(0)).cpu().numpy()
            weight = module.weight.detach()
            mask = wanda_mask(weight.cpu().numpy(), norms[name], sparsities[name])
            weight[torch.from_numpy(mask).to(weight.device)] = 0
        return measure_and_prune

    handles = [modules[name].register_forward_pre_hook(hook(name)) for name in sparsities]
    try:
        with torch.no_grad():
            model(input_ids=ids.to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    unseen = sorted(set(sparsities) - set(norms))
    if unseen:
        raise InputError(type(model).__name__, f"the calibration pass never reached {', '.join(unseen[:5])}")
    return norms
