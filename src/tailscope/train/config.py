"""Options of the training-control tools (WW-PGD projection, AlphaLR), validated once at the door."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from tailscope.config import AnalysisConfig, LayerSelector, _check_int, _check_literal
from tailscope.errors import ConfigError

TailChoice = Literal["midpoint", "pl", "detx"]
MomentsPolicy = Literal["reset", "rescale", "keep"]
Preserve = Literal["norm", "bulk"]


@dataclass(frozen=True)
class ProjectionConfig:
    """Options of `SpectralProjection`.

    Args:
        layers: which layers to project, with `AnalysisConfig.layers` selectors (layer ids over
            ``named_modules()``, roles such as ``"mlp_down"``, regexes on the module name, ``-``
            to exclude). Empty = every Linear / Conv1D / Conv2d weight (embeddings are never
            projected: their spectrum is not an ESD of a learned map).
        target_alpha: power-law exponent of the target tail (HTSR critical point: 2).
        tail: which eigenvalues form the tail that is projected: ``"pl"`` the power-law tail
            (eigenvalues >= the fitted xmin, num_pl_spikes of them), ``"detx"`` the TRACE-LOG
            (detX) tail, ``"midpoint"`` (default) the rounded mean of the two sizes, as in the
            WW-PGD paper. The size is then moved to the nearest one for which the target is
            realizable (`tailscope.train.projection.tail_window`).
        tracelog_target: target of sum(log lambda_i) over the tail, with eigenvalues normalized so
            that their mean over the layer is 1 (SETOL's condition is 0).
        eta: step of the tail's *shape* toward the target quantiles, in (0, 1]; every tail
            eigenvalue covers at least this fraction of its log-distance to its target.
        tracelog_step: fraction of the trace-log gap closed per projection, in [0, 1]; 1 (default)
            makes the normalized trace-log exactly `tracelog_target` after every projection.
        warmup_epochs: epochs (``project(epoch)`` calls with epoch < warmup_epochs) left alone.
        ramp_epochs: after warm-up, eta grows linearly from eta / ramp_epochs to eta over this
            many epochs (0 = full step at once).
        min_tail: layers whose tail has fewer eigenvalues are left untouched.
        min_evals: layers with fewer eigenvalues (min(out, in)) are left untouched.
        alpha_tolerance: layers whose fitted alpha is within this of `target_alpha` get no shape
            step (only the trace-log retraction). 0 = always step.
        moments: what happens to the optimizer state of a projected weight. ``"reset"``
            (default): the weight's moments and step count are zeroed, so Adam restarts with its
            bias correction from the projected point. ``"rescale"``: the first moment (Adam's
            exp_avg, SGD's momentum_buffer) is expressed in the layer's singular basis (which the
            projection keeps) and each component is scaled by the factor its singular value was
            scaled by; second moments, per-entry curvature estimates, are kept. ``"keep"``: nothing
            is touched (the moments stay those of the old weight). Why reset: on the digits MLP
            (examples/pgd_digits.py, AdamW, 35 epochs, eta=tracelog_step=0.2, 2 paired seeds) the
            test accuracy was 98.9 (reset), 98.3 (keep) and 97.8 (rescale) against 98.9 without
            projection: momentum accumulated for the old spectrum pushes against the projection,
            and scaling it with singular values that grew several-fold makes that worse.
        preserve: ``"norm"`` (default) rescales the bulk by one common factor so that
            ||W||_F (the sum of all eigenvalues) is unchanged and the tail's guarantees hold in
            raw and in normalized units; ``"bulk"`` keeps the bulk's raw eigenvalues, and the
            guarantees hold in normalized units. Beware: with ``"bulk"`` the tail must grow in raw
            units to carry its target share of the mass, so ||W|| grows at every projection (the
            digits MLP diverged to chance accuracy with it).
        every_steps: if > 0, `step()` also projects every this many optimizer steps (warm-up and
            ramp then count projection rounds instead of epochs).
        evals_thresh: eigenvalues at or below this are ignored by the power-law fit.
    """

    layers: tuple[LayerSelector, ...] = ()
    target_alpha: float = 2.0
    tail: TailChoice = "midpoint"
    tracelog_target: float = 0.0
    eta: float = 0.5
    tracelog_step: float = 1.0
    warmup_epochs: int = 0
    ramp_epochs: int = 0
    min_tail: int = 5
    min_evals: int = 20
    alpha_tolerance: float = 0.0
    moments: MomentsPolicy = "reset"
    preserve: Preserve = "norm"
    every_steps: int = 0
    evals_thresh: float = 1e-5

    def __post_init__(self) -> None:
        selection = AnalysisConfig(layers=self.layers)  # validates the selectors
        object.__setattr__(self, "layers", selection.layers)
        _check_float("target_alpha", self.target_alpha, low=1.0, low_open=True)
        _check_float("tracelog_target", self.tracelog_target)
        _check_float("eta", self.eta, low=0.0, high=1.0, low_open=True)
        _check_float("tracelog_step", self.tracelog_step, low=0.0, high=1.0)
        _check_float("alpha_tolerance", self.alpha_tolerance, low=0.0)
        _check_float("evals_thresh", self.evals_thresh, low=0.0)
        for name, minimum in (("warmup_epochs", 0), ("ramp_epochs", 0), ("min_tail", 2),
                              ("min_evals", 3), ("every_steps", 0)):
            _check_int(name, getattr(self, name), minimum)
        _check_literal("tail", self.tail, TailChoice)
        _check_literal("moments", self.moments, MomentsPolicy)
        _check_literal("preserve", self.preserve, Preserve)

    def replace(self, **changes: Any) -> "ProjectionConfig":
        return dataclasses.replace(self, **changes)

    def step_at(self, epoch: int) -> float:
        """The shape step eta used at this epoch (0 during warm-up)."""
        if epoch < self.warmup_epochs:
            return 0.0
        if self.ramp_epochs == 0:
            return self.eta
        return self.eta * min(1.0, (epoch - self.warmup_epochs + 1) / self.ramp_epochs)

    def selection(self) -> AnalysisConfig:
        return AnalysisConfig(layers=self.layers)


def _check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b) or "finite"
        raise ConfigError(f"Expected argument `{name}` to be a float {bounds}, but got {value!r}")
