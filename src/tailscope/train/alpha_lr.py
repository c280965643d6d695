"""`AlphaLR`: TempBalance-style layer-wise learning rates from each layer's power-law alpha.

TempBalance (Zhou et al., NeurIPS 2023) gives well-trained layers (small alpha, heavy tail) a
smaller step and under-trained ones (large alpha) a larger one: each epoch, with alpha_min and
alpha_max the extremes over the selected layers,

    lr_layer = base_lr * (s_min + (alpha - alpha_min) / (alpha_max - alpha_min) * (s_max - s_min)).

Layers whose fit fails, and parameters outside the selected layers, keep multiplier 1; when all
alphas are equal every layer gets (s_min + s_max) / 2. This needs one param group per layer:
`layerwise_param_groups` builds them. Like every LRScheduler it sets absolute rates from the
groups' base rates, so it replaces (does not compose with) another scheduler on the same groups.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError
from tailscope.fit.powerlaw import fit_power_law
from tailscope.train.layers import TrainLayer, select_layers


def layerwise_param_groups(model: torch.nn.Module, lr: float, *, layers: tuple = (), min_evals: int = 20,
                           **group_options: Any) -> list[dict[str, Any]]:
    """One param group per selected layer (its weight and bias, tagged ``"layer"``), plus one for the rest."""
    chosen = select_layers(model, AnalysisConfig(layers=layers), min_evals=min_evals)
    groups, taken = [], set()
    for layer in chosen:
        params = [layer.weight] + [p for n, p in layer.module.named_parameters(recurse=False)
                                   if n != "weight" and p.requires_grad]
        taken.update(id(p) for p in params)
        groups.append({"params": params, "lr": lr, "layer": layer.name, **group_options})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    if rest:
        groups.append({"params": rest, "lr": lr, "layer": None, **group_options})
    return groups


def _layer_evals(layer: TrainLayer) -> np.ndarray:
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
    return np.sort((torch.linalg.svdvals(w) ** 2).cpu().numpy())


def layer_alphas(model: torch.nn.Module, *, layers: tuple = (), min_evals: int = 20) -> dict[str, float]:
    """Power-law alpha of every selected layer (NaN where the fit fails), keyed by layer name."""
    out = {}
    for layer in select_layers(model, AnalysisConfig(layers=layers), min_evals=min_evals):
        fit = fit_power_law(_layer_evals(layer))
        out[layer.name] = fit.alpha if fit.ok else float("nan")
    return out


def alpha_multipliers(alphas: dict[str, float], s_min: float, s_max: float) -> dict[str, float]:
    """The TempBalance map from alphas to LR multipliers (module docstring)."""
    good = [a for a in alphas.values() if math.isfinite(a)]
    if not good:
        return {name: 1.0 for name in alphas}
    lo, hi = min(good), max(good)
    out = {}
    for name, a in alphas.items():
        if not math.isfinite(a):
            out[name] = 1.0
        elif hi == lo:
            out[name] = (s_min + s_max) / 2
        else:
            out[name] = s_min + (a - lo) / (hi - lo) * (s_max - s_min)
    return out


class AlphaLR(torch.optim.lr_scheduler.LRScheduler):
    """Per-layer LR multipliers from alpha; call `step()` once per epoch (it also measures alphas).

    Groups need a ``"layer"`` key naming their layer (see `layerwise_param_groups`); groups without
    one keep their base rate. `multipliers` and `alphas` hold the last values.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module, s_min: float = 0.5,
                 s_max: float = 1.5, *, layers: tuple = (), min_evals: int = 20, last_epoch: int = -1) -> None:
        if not (isinstance(s_min, (int, float)) and isinstance(s_max, (int, float)) and 0 < s_min <= s_max):
            raise ConfigError(f"Expected 0 < `s_min` <= `s_max`, but got s_min={s_min!r}, s_max={s_max!r}")
        names = [g.get("layer") for g in optimizer.param_groups if g.get("layer")]
        if not names:
            raise ConfigError("AlphaLR needs one param group per layer, tagged with a 'layer' key: build the "
                              "optimizer with tailscope.train.layerwise_param_groups(model, lr)")
        self.model = model
        self.s_min, self.s_max = float(s_min), float(s_max)
        self.layer_names = {layer.name: layer for layer in
                            select_layers(model, AnalysisConfig(layers=layers), min_evals=min_evals)}
        unknown = [n for n in names if n not in self.layer_names]
        if unknown:
            raise ConfigError(f"AlphaLR: param groups name layers {unknown[:3]} that the model/selection lacks")
        self.alphas: dict[str, float] = {}
        self.multipliers: dict[str, float] = {}
        super().__init__(optimizer, last_epoch)

    def _measure(self) -> None:
        names = [g.get("layer") for g in self.optimizer.param_groups if g.get("layer")]
        self.alphas = {}
        for name in names:
            fit = fit_power_law(_layer_evals(self.layer_names[name]))
            self.alphas[name] = fit.alpha if fit.ok else float("nan")
        self.multipliers = alpha_multipliers(self.alphas, self.s_min, self.s_max)

    def step(self, epoch: int | None = None) -> None:  # noqa: D102 - LRScheduler.step
        self._measure()
        super().step(epoch) if epoch is not None else super().step()

    def get_lr(self) -> list[float]:
        return [base * self.multipliers.get(g.get("layer"), 1.0)
                for base, g in zip(self.base_lrs, self.optimizer.param_groups)]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "model", "layer_names")}
