"""`SpectralProjection`: any torch optimizer, plus the WW-PGD projection at epoch boundaries.

The wrapper *is* a `torch.optim.Optimizer` (schedulers, `transformers.Trainer` and checkpoints
accept it) whose `param_groups`, `state` and `defaults` are the wrapped optimizer's own objects,
so there is one state and one set of groups. `project(epoch)` does, per selected layer: one SVD
of ``weight.reshape(out, -1)`` in float64, the power-law and detX fits on its squared singular
values, the tail step of `tailscope.train.projection`, ``W += U diag(s' - s) V^T`` with the same
U, V, and the chosen treatment of the optimizer moments; it returns the costs and changes.
The trace-log is exact in float64; writing back rounds it to the weight's dtype (measured on a
128x128 layer: off by ~4e-9 in float32, ~1e-3 in bfloat16).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from tailscope.errors import ConfigError
from tailscope.train.config import ProjectionConfig
from tailscope.train.layers import TrainLayer, select_layers
from tailscope.train.projection import choose_tail, nearest_in_window, project_tail, tail_window

FIRST_MOMENTS = ("exp_avg", "momentum_buffer")


@dataclass(frozen=True)
class LayerProjection:
    """What one projection did to one layer (alpha, xmin, ... are measured before the step)."""

    name: str
    layer_id: int
    shape: tuple[int, int]
    status: str  # projected | skipped | infeasible | warmup
    reason: str = ""
    alpha: float = float("nan")
    xmin: float = float("nan")
    num_pl_spikes: int = 0
    detx_num: int = 0
    tail: int = 0  # eigenvalues projected (the chosen size moved into the realizable window)
    tail_chosen: int = 0  # tail size the `tail` option chose (before the cap)
    eta: float = 0.0
    tracelog_before: float = float("nan")  # normalized trace-log of the projected tail
    tracelog_after: float = float("nan")
    change: float = 0.0  # ||W' - W||_F / ||W||_F
    max_log_step: float = 0.0  # largest |log lambda' - log lambda| in the tail
    bulk_scale: float = 1.0
    svd_seconds: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class ProjectionStats:
    """All layers of one `project()` call and its wall time."""

    epoch: int
    layers: tuple[LayerProjection, ...]
    seconds: float

    @property
    def projected(self) -> tuple[LayerProjection, ...]:
        return tuple(r for r in self.layers if r.status == "projected")

    def to_frame(self):  # noqa: ANN201 - pandas.DataFrame
        import dataclasses

        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(r) for r in self.layers])


@dataclass
class _Basis:
    u: torch.Tensor
    vh: torch.Tensor
    ratio: torch.Tensor  # s' / s per singular direction


class SpectralProjection(torch.optim.Optimizer):
    """Wrap `optimizer`; call `project(epoch)` at epoch ends (or set ``every_steps``).

    >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    >>> opt = SpectralProjection(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    >>> isinstance(opt, torch.optim.Optimizer), opt.param_groups is opt.optimizer.param_groups
    (True, True)
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 config: ProjectionConfig | None = None, **options: Any) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"Expected `optimizer` to be a torch.optim.Optimizer, but got {type(optimizer).__name__}")
        if config is not None and options:
            raise ConfigError("Pass either `config` or keyword options to SpectralProjection, not both")
        self.optimizer = optimizer
        self.model = model
        self.config = config or ProjectionConfig(**options)
        self.layers: list[TrainLayer] = select_layers(model, self.config.selection())
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = [layer.name for layer in self.layers if id(layer.weight) not in owned]
        if missing:
            raise ConfigError(f"SpectralProjection: layers {missing[:3]} are not parameters of the wrapped optimizer")
        self.history: list[ProjectionStats] = []
        self.rounds = 0
        self._steps = 0
        for hooks in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
                      "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
                      "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks"):
            setattr(self, hooks, OrderedDict())
        self._patch_step_function()

    # -- the wrapped optimizer, passed through ---------------------------------------------------
    param_groups = property(lambda self: self.optimizer.param_groups,
                            lambda self, v: setattr(self.optimizer, "param_groups", v))
    state = property(lambda self: self.optimizer.state, lambda self, v: setattr(self.optimizer, "state", v))
    defaults = property(lambda self: self.optimizer.defaults,
                        lambda self, v: setattr(self.optimizer, "defaults", v))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self.optimizer.step(closure)
        self._steps += 1
        every = self.config.every_steps
        if every and self._steps % every == 0:
            self.project(self.rounds)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        out = self.optimizer.state_dict()
        out["spectral_projection"] = {"rounds": self.rounds, "steps": self._steps}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        mine = state_dict.pop("spectral_projection", {})
        self.optimizer.load_state_dict(state_dict)
        self.rounds = int(mine.get("rounds", 0))
        self._steps = int(mine.get("steps", 0))

    def __repr__(self) -> str:
        return f"SpectralProjection({self.optimizer!r}, layers={len(self.layers)}, config={self.config!r})"

    # -- the projection --------------------------------------------------------------------------
    @torch.no_grad()
    def project(self, epoch: int | None = None) -> ProjectionStats:
        """Project every selected layer once; `epoch` drives warm-up and ramp (default: rounds so far)."""
        epoch = self.rounds if epoch is None else int(epoch)
        start = time.perf_counter()
        eta = self.config.step_at(epoch)
        rows = []
        for layer in self.layers:
            if eta == 0.0:
                rows.append(LayerProjection(layer.name, layer.layer_id, layer.matrix_shape, "warmup",
                                            f"epoch {epoch} < warmup_epochs={self.config.warmup_epochs}"))
                continue
            row, basis = project_layer(layer, self.config, eta)
            rows.append(row)
            if basis is not None:
                self._update_moments(layer.weight, basis)
        self.rounds += 1
        stats = ProjectionStats(epoch, tuple(rows), time.perf_counter() - start)
        self.history.append(stats)
        return stats

    def _update_moments(self, weight: torch.Tensor, basis: _Basis) -> None:
        state = self.optimizer.state.get(weight)
        if not state or self.config.moments == "keep":
            return
        if self.config.moments == "reset":
            for key, value in list(state.items()):
                if torch.is_tensor(value) and value.shape == weight.shape:
                    value.zero_()
                elif key == "step":
                    state[key] = torch.zeros_like(value) if torch.is_tensor(value) else 0
            return
        for key in FIRST_MOMENTS:
            if key in state and torch.is_tensor(state[key]) and state[key].shape == weight.shape:
                rescale_in_basis(state[key], basis)


def rescale_in_basis(moment: torch.Tensor, basis: _Basis) -> None:
    """m += sum_i (r_i - 1) (u_i^T m v_i) u_i v_i^T: each singular-direction component times r_i."""
    shape = moment.shape
    m = moment.reshape(shape[0], -1).double()
    coeff = torch.einsum("oi,ok,ki->k", m, basis.u, basis.vh)
    delta = (basis.u * ((basis.ratio - 1.0) * coeff)) @ basis.vh
    moment.copy_((m + delta).reshape(shape).to(moment.dtype))


def project_layer(layer: TrainLayer, config: ProjectionConfig, eta: float) -> tuple[LayerProjection, _Basis | None]:
    """One layer: SVD once, fit, step, write back. Returns the row and the basis for the moments."""
    start = time.perf_counter()
    weight = layer.weight
    base = dict(name=layer.name, layer_id=layer.layer_id, shape=layer.matrix_shape)
    if layer.num_evals < config.min_evals:
        return LayerProjection(**base, status="skipped",
                               reason=f"{layer.num_evals} eigenvalues < min_evals={config.min_evals}"), None
    w = weight.detach().reshape(weight.shape[0], -1).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)  # s descending
    svd_seconds = time.perf_counter() - start
    evals = (s.flip(0) ** 2).cpu().numpy()  # ascending
    tail = choose_tail(evals, config.tail, config.evals_thresh)
    fitted = dict(alpha=tail.fit.alpha, xmin=tail.fit.xmin, num_pl_spikes=tail.fit.n_tail if tail.fit.ok else 0,
                  detx_num=tail.detx_num, tail_chosen=tail.k, svd_seconds=svd_seconds)
    window = tail_window(evals, config.target_alpha, config.tracelog_target)
    k = nearest_in_window(tail.k, window)
    reason = _skip_reason(tail, k, evals, config) if window.size else (
        f"no tail size realizes alpha={config.target_alpha:g} with trace-log {config.tracelog_target:g}")
    if reason:
        return LayerProjection(**base, **fitted, status="skipped", reason=reason,
                               seconds=time.perf_counter() - start), None
    near = abs(tail.fit.alpha - config.target_alpha) <= config.alpha_tolerance
    step_eta = 0.0 if near else eta
    step = project_tail(evals, k, target_alpha=config.target_alpha, tracelog_target=config.tracelog_target,
                        eta=step_eta, tracelog_step=config.tracelog_step, preserve=config.preserve)
    common = dict(**base, **fitted, tail=k, eta=step_eta, tracelog_before=step.tracelog_before)
    if not step.ok:
        return LayerProjection(**common, status=step.status, reason=step.reason,
                               seconds=time.perf_counter() - start), None
    s_new = torch.from_numpy(np.sqrt(step.evals[::-1].copy())).to(s)
    delta = (u * (s_new - s)) @ vh
    weight.add_(delta.reshape(weight.shape).to(weight.dtype))
    ratio = torch.where(s > 0, s_new / s.clamp_min(torch.finfo(s.dtype).tiny), torch.ones_like(s))
    log_step = np.abs(np.log(step.evals[-k:]) - np.log(evals[-k:]))
    row = LayerProjection(**common, status="projected", tracelog_after=step.tracelog_after,
                          change=float(delta.norm() / w.norm().clamp_min(1e-300)),
                          max_log_step=float(log_step.max()), bulk_scale=step.bulk_scale,
                          seconds=time.perf_counter() - start)
    return row, _Basis(u, vh, ratio)


def _skip_reason(tail: Any, k: int, evals: np.ndarray, config: ProjectionConfig) -> str:
    if not tail.fit.ok:
        return f"power-law fit failed: {tail.fit.reason}"
    if k < config.min_tail:
        return f"tail of {k} eigenvalues < min_tail={config.min_tail}"
    if k >= evals.size:
        return "the tail is the whole spectrum: no bulk to balance the trace-log"
    if evals[-k] <= 0:
        return "zero eigenvalues in the tail"
    return ""
