"""Options of `prune`, `remove_traps` and `perplexity`, validated once at the door (defaults live here only).

Which matrices are read (``layers``, ``min_evals``, ...) stays an `AnalysisConfig` field, as for
every other tool; these dataclasses hold what the surgery adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tailscope.config import _check_int, _check_literal, build_checked
from tailscope.errors import ConfigError

Allocation = Literal["alpha", "uniform", "farms"]
PruneMethod = Literal["magnitude", "wanda"]
AllocateBy = Literal["block", "matrix"]
METRIC_OF = {"alpha": "alpha", "farms": "alpha_farms"}  # the analysis column each allocation maps

# Roles AlphaPruning prunes: every Linear inside the transformer blocks except the MoE router.
PRUNABLE_ROLES = ("attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o", "mlp_gate", "mlp_up", "mlp_gate_up", "mlp_down")


def _check_fraction(name: str, value: Any, *, low_open: bool = True, high: float = 1.0) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > 0 if low_open else value >= 0) and value < high
    if not ok:
        interval = f"{'(' if low_open else '['}0, {high:g})"
        raise ConfigError(f"Expected argument `{name}` to be a float in {interval}, but got {value!r}")


@dataclass(frozen=True)
class PruneConfig:
    """Options of `tailscope.prune`.

    Args:
        sparsity: target fraction of the prunable parameters set to zero, in (0, 1).
        allocation: ``"alpha"`` (AlphaPruning's linear map of each matrix's alpha), ``"uniform"``
            (every matrix gets `sparsity`), ``"farms"`` (the map of the ``alpha_farms`` column).
        method: ``"magnitude"`` (smallest |W| per matrix) or ``"wanda"`` (smallest |W_ij| * ||x_j||
            per output row, x the matrix's input on the calibration text).
        by: ``"block"`` maps the mean metric of each transformer block (AlphaPruning's default),
            ``"matrix"`` each matrix's own.
        epsilon: half-width of the map's range [1 - epsilon, 1 + epsilon] x target, in [0, 1).
        metric: the analysis column `allocation="alpha"` maps (``"alpha"``; ``"alpha_hill"`` where
            the analysis has it). ``"farms"`` always maps ``alpha_farms``.
        context: tokens per calibration sequence (Wanda).
    """

    sparsity: float = 0.5
    allocation: Allocation = "alpha"
    method: PruneMethod = "magnitude"
    by: AllocateBy = "block"
    epsilon: float = 0.3
    metric: str = "alpha"
    context: int = 512

    def __post_init__(self) -> None:
        _check_fraction("sparsity", self.sparsity)
        _check_literal("allocation", self.allocation, Allocation)
        _check_literal("method", self.method, PruneMethod)
        _check_literal("by", self.by, AllocateBy)
        _check_fraction("epsilon", self.epsilon, low_open=False)
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"Expected argument `metric` to be an analysis column name, but got {self.metric!r}")
        _check_int("context", self.context, minimum=2)

    @property
    def metric_column(self) -> str:
        """The analysis column the allocation reads."""
        return METRIC_OF["farms"] if self.allocation == "farms" else self.metric

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "PruneConfig":
        return build_checked(cls, kwargs)


@dataclass(frozen=True)
class PerplexityConfig:
    """Options of `tailscope.perplexity`.

    Args:
        context: tokens per window; the text is cut into consecutive windows of this many tokens
            (the last one shorter), each scored on its own, so every token but each window's
            first is predicted once.
        device: where the model runs (``"auto"``: CUDA when torch sees one).
    """

    context: int = 512
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    def __post_init__(self) -> None:
        _check_int("context", self.context, minimum=2)
        _check_literal("device", self.device, Literal["cpu", "cuda", "auto"])

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "PerplexityConfig":
        return build_checked(cls, kwargs)
