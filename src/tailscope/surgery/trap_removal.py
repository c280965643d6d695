"""`tailscope.remove_traps`: a new checkpoint whose correlation traps are replaced by random components.

Each selected matrix is read, its traps found with the shuffle `analyze(randomize=True, seed=...)`
uses for it (so the traps removed are the ones `num_traps` counts) and replaced (`traps.py`); the
checkpoint is written by `smoothing.writer.rewrite_checkpoint` with the sidecar ``tailscope_traps.json``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError
from tailscope.smoothing.run import select
from tailscope.smoothing.writer import rewrite_checkpoint
from tailscope.sources import MatrixRef
from tailscope.surgery.pruning import open_editable
from tailscope.surgery.report import TRAPS_SIDECAR, TRAPS_TOOL, SurgeryReport
from tailscope.surgery.traps import TrapRemoval, remove_matrix_traps


def remove_traps(src: str | Path, dst: str | Path | None = None, *, seed: int = 0, dry_run: bool = False,
                 overwrite: bool = False, **options: Any) -> SurgeryReport:
    """Write a copy of `src` in which every correlation trap of the selected matrices is replaced.

    Args:
        src: safetensors file or directory, or a dense GGUF file (written as float32 safetensors).
        dst: new directory (refused when it is, contains or lies inside `src`); not needed for a dry run.
        seed: the `analyze` seed whose shuffles define the traps (and seeds the replacements).
        dry_run: find and report the traps; write nothing.
        overwrite: replace a non-empty `dst`.
        **options: `AnalysisConfig` fields (``layers``, min_evals, ...).

    Returns:
        A `SurgeryReport` with one row per selected matrix: its traps (eigenvalue, cut, energy,
        the singular direction of W each overlaps most), the traps left in a fresh shuffle, the
        KS distance of the shuffled ESD to its MP law before and after, and ||W' - W|| / ||W||.
    """
    acfg = AnalysisConfig.from_kwargs(**{"progress": False, "seed": seed, **options})
    source = open_editable(src)
    refs = select(source, acfg)
    report = SurgeryReport(TRAPS_TOOL, str(src), None if dry_run else str(dst), {"seed": acfg.seed},
                           dry_run=dry_run)
    if dry_run:
        for ref in refs:
            report.rows.append(_row(ref, remove_matrix_traps(ref.load(), (acfg.seed, ref.layer_id)), ref.longname))
        report.summary = _summary(report.rows)
        return report
    if dst is None:
        raise ConfigError("Expected argument `dst` (the output directory), but got None")

    def edit(ref: MatrixRef, values: np.ndarray, tensor: str, dtype: str) -> np.ndarray | None:
        result = remove_matrix_traps(values, (acfg.seed, ref.layer_id))
        report.rows.append(_row(ref, result, tensor) | {"dtype": dtype})
        return result.matrix

    def finish() -> dict[str, Any]:
        report.summary = _summary(report.rows)
        return report.to_dict()

    rewrite_checkpoint(source, refs, edit, Path(dst), overwrite=overwrite, sidecar=(TRAPS_SIDECAR, TRAPS_TOOL, finish))
    return report


def _row(ref: MatrixRef, result: TrapRemoval, tensor: str) -> dict[str, Any]:
    return {"name": ref.name, "tensor": tensor, "layer_id": ref.layer_id, "layer": ref.layer, "role": ref.role,
            "shape": "x".join(map(str, ref.shape)), "num_traps": len(result.traps), "traps_after": result.traps_after,
            "ks_before": result.ks_before, "ks_after": result.ks_after, "rel_change": result.rel_change,
            "changed": result.matrix is not None, "traps": [{k: float(v) if k != "w_mode" else int(v)
                                                             for k, v in asdict(t).items()} for t in result.traps]}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"matrices": len(rows), "with traps": sum(r["num_traps"] > 0 for r in rows),
            "traps": sum(r["num_traps"] for r in rows), "left after": sum(r["traps_after"] for r in rows)}
