"""Which weights of a live torch model the training tools act on, named as the analysis names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tailscope.config import AnalysisConfig
from tailscope.sources.base import KIND_CONV1D, KIND_CONV2D, KIND_DENSE
from tailscope.sources.torch_reader import module_refs

TRAINABLE_KINDS = (KIND_DENSE, KIND_CONV1D, KIND_CONV2D)


@dataclass(frozen=True)
class TrainLayer:
    """One weight the tools may change: its module, parameter and the analysis' name/id/role."""

    name: str
    layer_id: int
    role: str
    kind: str
    module: Any
    weight: Any  # the torch Parameter

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """Shape of the matrix whose spectrum is fitted and projected: (out, everything else)."""
        return int(self.weight.shape[0]), int(self.weight.numel() // self.weight.shape[0])

    @property
    def num_evals(self) -> int:
        return min(self.matrix_shape)


def select_layers(model: Any, selection: AnalysisConfig | None = None, min_evals: int = 0) -> list[TrainLayer]:
    """Linear / Conv1D / Conv2d weights of `model` kept by the selection, in module order.

    Layer ids and roles are those `tailscope.analyze(model)` reports (numbered over
    ``named_modules()``). A weight shared with an embedding (tied LM heads) and a weight seen
    twice are skipped: projecting one would silently change the other.
    """
    selection = selection or AnalysisConfig()
    modules = dict(model.named_modules())
    embedded = {id(m.weight) for m in modules.values() if _is_embedding(m)}
    seen: set[int] = set()
    out = []
    for ref in module_refs(model):
        module = modules.get(ref.longname)
        weight = getattr(module, "weight", None) if module is not None else None
        if ref.kind not in TRAINABLE_KINDS or weight is None or weight.ndim < 2 or not weight.is_floating_point():
            continue
        if id(weight) in embedded or id(weight) in seen or not weight.requires_grad:
            continue
        if not selection.selects(ref.layer_id, ref.name, ref.role):
            continue
        seen.add(id(weight))
        layer = TrainLayer(ref.name, ref.layer_id, ref.role, ref.kind, module, weight)
        if layer.num_evals >= min_evals:
            out.append(layer)
    return out


def _is_embedding(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.Embedding) and getattr(module, "weight", None) is not None
