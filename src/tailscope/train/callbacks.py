"""Logging of projections: a plain function for custom loops and a `transformers.TrainerCallback`."""

from __future__ import annotations

from typing import Any, Callable

from tailscope.errors import require
from tailscope.train.optimizer import ProjectionStats, SpectralProjection


def projection_records(stats: ProjectionStats) -> list[dict[str, Any]]:
    """One flat dict per layer: epoch, layer, status, alpha, tail, trace-log before/after, change."""
    return [
        {
            "epoch": stats.epoch, "layer": r.name, "status": r.status, "alpha": r.alpha, "tail": r.tail,
            "tracelog_before": r.tracelog_before, "tracelog_after": r.tracelog_after,
            "change": r.change, "seconds": r.seconds,
        }
        for r in stats.layers
    ]


def log_projection(stats: ProjectionStats, log: Callable[[str], None] | None = print,
                   target: float = 0.0) -> list[dict[str, Any]]:
    """Log one line per layer (alpha, trace-log gap to `target` before -> after, relative change)
    through `log` (None: silent) and return the records, e.g. for a metrics logger."""
    records = projection_records(stats)
    for rec in records:
        rec["tracelog_gap_before"] = rec["tracelog_before"] - target
        rec["tracelog_gap_after"] = rec["tracelog_after"] - target
        if log is not None:
            log(f"epoch {rec['epoch']:>3} {rec['layer']:<24} {rec['status']:<10} alpha={rec['alpha']:6.3f} "
                f"tail={rec['tail']:>4} tracelog gap {rec['tracelog_gap_before']:+9.3f} -> "
                f"{rec['tracelog_gap_after']:+.2e} change={rec['change']:.4f}")
    if log is not None:
        log(f"epoch {stats.epoch:>3} projection: {len(stats.projected)}/{len(stats.layers)} layers, "
            f"{stats.seconds * 1000:.1f} ms")
    return records


def SpectralProjectionCallback(projection: SpectralProjection, log: Callable[[str], None] | None = None):  # noqa: N802, ANN201
    """A `transformers.TrainerCallback` that calls ``projection.project(epoch)`` at each epoch end.

    Pass the same `SpectralProjection` as the Trainer's optimizer (``optimizers=(projection,
    None)``). Per-layer records go to `log` (if given), to ``callback.records`` and, as mean
    alpha / trace-log gap / change, to the Trainer's log history.
    """
    transformers = require("transformers", "probe")

    class _Callback(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.projection = projection
            self.records: list[dict[str, Any]] = []

        def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            epoch = int(round(state.epoch or 0)) - 1
            stats = self.projection.project(max(epoch, 0))
            target = self.projection.config.tracelog_target
            recs = log_projection(stats, log, target=target)
            self.records.extend(recs)
            done = [r for r in recs if r["status"] == "projected"]
            if done:
                state.log_history.append({
                    "epoch": state.epoch, "step": state.global_step,
                    "wwpgd/mean_alpha": sum(r["alpha"] for r in done) / len(done),
                    "wwpgd/mean_tracelog_gap": sum(abs(r["tracelog_gap_before"]) for r in done) / len(done),
                    "wwpgd/mean_change": sum(r["change"] for r in done) / len(done),
                    "wwpgd/seconds": stats.seconds,
                })
            return control

    return _Callback()
