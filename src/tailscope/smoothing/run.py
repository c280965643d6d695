"""`tailscope.smooth`: a new checkpoint whose chosen matrices keep only some singular components.

Streaming: each selected matrix is read, decomposed (float64 SVD), rebuilt as U_k S_k V_k^T, cast
back to its stored dtype and written in place of the original bytes; everything else is copied as
bytes (`writer.rewrite_checkpoint`, shared with `tailscope.prune` and `tailscope.remove_traps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tailscope.analysis.matrix import skip_reason
from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError, InputError, printable
from tailscope.smoothing.methods import smooth_matrix
from tailscope.smoothing.writer import rewrite_checkpoint
from tailscope.sources import MatrixRef, Source, open_source

SIDECAR = "tailscope_smoothing.json"
TOOL = "tailscope.smooth"
_METHOD_WORDS = {"detx": "detX tail", "rmt": "above MP bulk", "svd": "top percent", "alpha_min": "power-law tail", "sharpen": "top removed"}


@dataclass
class SmoothReport:
    """What smoothing did (or, for a dry run, would do) to each selected matrix."""

    source: str
    destination: str | None
    method: str
    percent: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["changed"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": TOOL, "source": self.source, "method": self.method,
            "percent": self.percent if self.method == "svd" else None, "tensors": self.rows,
        }

    def to_text(self) -> str:
        """One line per selected matrix: kept rank / rank and the fraction of the Frobenius norm kept."""
        head = f"{'matrix':<48} {'role':<9} {'shape':>11} {'kept':>6} {'rank':>6} {'frob_kept':>9}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            kept = r["kept_rank"] if r["changed"] else "-"
            lines.append(
                f"{printable(r['name'])[:48]:<48} {r['role']:<9} {r['shape']:>11} {kept!s:>6} {r['original_rank']:>6} "
                f"{r['frob_kept']:>9.4f}  {r['note'] if r['changed'] else 'unchanged: ' + r['note']}"
            )
        n = len(self.changed)
        verb = "would change" if self.dry_run else "changed"
        lines.append(f"{self.method} ({_METHOD_WORDS[self.method]}): {verb} {n} of {len(self.rows)} selected matrices")
        return "\n".join(lines)


def smooth(src: str | Path, dst: str | Path | None = None, *, layers: Any = (), method: str = "detx",
           percent: float = 0.8, dry_run: bool = False, overwrite: bool = False, seed: int = 0,
           config: AnalysisConfig | None = None, **options: Any) -> SmoothReport:
    """Write a copy of `src` whose selected matrices are replaced by a low-rank approximation.

    Args:
        src: safetensors file, directory (sharded with an index or not), or dense GGUF file.
        dst: new directory; must not exist or be empty unless ``overwrite``. Not needed for a dry run.
        layers: which matrices (AnalysisConfig's selector: ids, roles like ``"mlp_down"``, name regexes).
        method: ``detx`` (default), ``rmt``, ``svd`` (keeps ``int(percent * rank)``), ``alpha_min``
            or ``sharpen`` (removes the top components); see `tailscope.smoothing.methods`.
        percent: fraction of the rank kept by ``svd``.
        dry_run: compute and return the table without writing anything.
        overwrite: replace a non-empty `dst`.
        seed: seed of the shuffle of ``sharpen``.
        config: an `AnalysisConfig` to start from.
        **options: further `AnalysisConfig` fields (min_evals, max_evals, max_n, ...).

    Returns:
        A `SmoothReport`; the same rows are written to ``dst/tailscope_smoothing.json``.
    """
    base = {"layers": layers, "smooth_method": method, "smooth_percent": percent, "seed": seed, **options}
    cfg = config.replace(**base) if config is not None else AnalysisConfig.from_kwargs(**base)
    src = Path(src)
    source = open_source(src)
    if source.format not in ("safetensors", "gguf"):
        raise InputError(src, f"smoothing reads safetensors files/directories or GGUF files, not {source.format} weights")
    selected = select(source, cfg)
    report = SmoothReport(str(src), None if dry_run else str(dst), cfg.smooth_method, cfg.smooth_percent, dry_run=dry_run)
    if dry_run:
        for ref in selected:
            report.rows.append(_row(ref, _smooth(ref.load(), cfg), ref.dtype, cfg.smooth_method))
        return report
    if dst is None:
        raise ConfigError("Expected argument `dst` (the output directory), but got None")

    def edit(ref: MatrixRef, values: np.ndarray, tensor: str, dtype: str) -> np.ndarray | None:
        result = _smooth(values, cfg)
        report.rows.append(_row(ref, result, dtype, cfg.smooth_method) | {"tensor": tensor})
        return result.matrix

    rewrite_checkpoint(source, selected, edit, Path(dst), overwrite=overwrite,
                       sidecar=(SIDECAR, TOOL, report.to_dict))
    return report


def select(source: Source, cfg: AnalysisConfig) -> list[MatrixRef]:
    """The 2-D matrices (or expert slices) the `layers` selection keeps and that can be analyzed."""
    refs = [r for r in source.refs() if skip_reason(r, cfg) is None and len(r.shape) == 2]
    if not refs:
        raise ConfigError(f"`layers` {list(cfg.layers)} selects no 2-D weight matrix in {source.name}")
    return refs


def _smooth(array: np.ndarray, cfg: AnalysisConfig):  # noqa: ANN202 - methods.Smoothed
    return smooth_matrix(array, cfg.smooth_method, percent=cfg.smooth_percent, seed=cfg.seed, evals_thresh=cfg.evals_thresh)


def _row(ref: MatrixRef, result: Any, dtype_out: str, method: str) -> dict[str, Any]:
    c = result.choice
    return {
        "name": ref.name, "tensor": ref.longname, "expert": ref.expert, "layer_id": ref.layer_id, "role": ref.role,
        "shape": "x".join(map(str, ref.shape)), "dtype": dtype_out, "method": method,
        "changed": result.matrix is not None, "kept_rank": c.kept if result.matrix is not None else c.rank,
        "kept_from": c.start, "original_rank": c.rank, "frob_kept": result.frob_kept,
        "rel_error": result.rel_error, "note": c.note,
    }
