"""`tailscope.prune`: a new checkpoint whose attention/MLP matrices are pruned to allocated sparsities.

source -> analysis (alpha per matrix) -> allocation (AlphaPruning's map, `allocation.py`) ->
masks (magnitude, or Wanda with norms from a calibration pass, `wanda.py`) -> checkpoint, written
tensor by tensor by `smoothing.writer.rewrite_checkpoint` (untouched tensors copied byte for byte,
a GGUF source dequantized to float32 safetensors) with the sidecar ``tailscope_pruning.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError, InputError
from tailscope.smoothing.run import select
from tailscope.smoothing.writer import check_destination, rewrite_checkpoint
from tailscope.sources import MatrixRef, Source, open_source
from tailscope.surgery.allocation import allocate
from tailscope.surgery.config import PRUNABLE_ROLES, PruneConfig
from tailscope.surgery.masks import magnitude_mask, wanda_mask
from tailscope.surgery.report import PRUNE_SIDECAR, PRUNE_TOOL, SurgeryReport
from tailscope.surgery.texts import CALIBRATION, read_text


def prune(src: str | Path, dst: str | Path | None = None, *, sparsity: float = 0.5, allocation: str = "alpha",
          method: str = "magnitude", by: str = "block", epsilon: float = 0.3, metric: str = "alpha",
          calibration: str | Path | None = None, context: int = 512, details: pd.DataFrame | None = None,
          dry_run: bool = False, overwrite: bool = False, **options: Any) -> SurgeryReport:
    """Write a copy of `src` whose attention and MLP matrices are pruned (unstructured).

    Args:
        src: safetensors file or directory (sharded or not), or a dense GGUF file (written as
            float32 safetensors). Wanda needs a loadable model: a Hugging Face directory or GGUF.
        dst: new directory (refused when it is, contains or lies inside `src`); not needed for a dry run.
        sparsity: target fraction of the prunable parameters set to zero, in (0, 1).
        allocation: ``"alpha"`` (AlphaPruning's map of alpha), ``"uniform"`` or ``"farms"``.
        method: ``"magnitude"`` or ``"wanda"``.
        by: ``"block"`` (map each block's mean metric) or ``"matrix"``.
        epsilon: half-width of the map, in [0, 1).
        metric: the analysis column ``allocation="alpha"`` maps.
        context: tokens per calibration window (Wanda). See `PruneConfig`.
        calibration: Wanda's calibration text (a `Path` or the text itself); default: the bundled
            public-domain calibration text, separate from the held-out text.
        details: an analysis table of `src` (``tailscope.analyze(src).details``) to reuse instead
            of analyzing again.
        dry_run: only compute and return the allocation.
        overwrite: replace a non-empty `dst`.
        **options: `AnalysisConfig` fields (``layers`` narrows the pruned matrices, min_evals, ...).

    Returns:
        A `SurgeryReport` whose rows give each matrix's alpha, mapped metric, allocated and
        achieved sparsity; the same rows are written to ``dst/tailscope_pruning.json``.
    """
    cfg = PruneConfig(sparsity=sparsity, allocation=allocation, method=method, by=by, epsilon=epsilon,
                      metric=metric, context=context)
    acfg = AnalysisConfig.from_kwargs(**{"progress": False, **options})
    source = open_editable(src)
    if not dry_run:  # refuse a bad destination before minutes of analysis and calibration
        if dst is None:
            raise ConfigError("Expected argument `dst` (the output directory), but got None")
        check_destination(Path(dst), source, overwrite, PRUNE_SIDECAR, PRUNE_TOOL)
    refs = prunable(source, acfg)
    table = allocate(_table(refs, cfg, acfg, source, details), sparsity=cfg.sparsity, allocation=cfg.allocation,
                     epsilon=cfg.epsilon, by=cfg.by, metric=cfg.metric_column)
    report = SurgeryReport(PRUNE_TOOL, str(src), None if dry_run else str(dst), _settings(cfg, calibration),
                           [_row(r) for r in table.to_dict("records")], dry_run=dry_run)
    if dry_run:
        report.summary = _summary(report.rows, "sparsity")
        return report
    alloc = {r["name"]: r for r in report.rows}
    modules = module_names(source, refs) if cfg.method == "wanda" else {}
    norms = _wanda_norms(source, refs, modules, alloc, cfg, calibration) if modules else {}

    def edit(ref: MatrixRef, values: np.ndarray, tensor: str, dtype: str) -> np.ndarray:
        row = alloc[ref.name]
        s = row["sparsity"]
        mask = wanda_mask(values, norms[modules[ref.name]], s) if norms else magnitude_mask(values, s)
        row.update(tensor=tensor, dtype=dtype, pruned=int(mask.sum()), achieved=float(mask.mean()))
        new = np.array(values, copy=True)
        new[mask] = 0
        return new

    def finish() -> dict[str, Any]:
        report.summary = _summary(report.rows, "achieved")
        return report.to_dict()

    rewrite_checkpoint(source, refs, edit, Path(dst), overwrite=overwrite, sidecar=(PRUNE_SIDECAR, PRUNE_TOOL, finish))
    return report


def open_editable(src: str | Path) -> Source:
    """The source, refused unless it is safetensors or GGUF (the formats a checkpoint can be rewritten from)."""
    source = open_source(Path(src))
    if source.format not in ("safetensors", "gguf"):
        raise InputError(src, f"surgery reads safetensors files/directories or GGUF files, not {source.format} weights")
    return source


def prunable(source: Source, cfg: AnalysisConfig) -> list[MatrixRef]:
    """The selected 2-D matrices inside the transformer blocks whose role AlphaPruning prunes."""
    refs = [r for r in select(source, cfg) if r.role in PRUNABLE_ROLES and r.layer is not None]
    if not refs:
        raise ConfigError(f"`layers` {list(cfg.layers)} selects no prunable matrix (attention or MLP projection "
                          f"inside a transformer block: {', '.join(PRUNABLE_ROLES)}) in {source.name}")
    return refs


def _table(refs: list[MatrixRef], cfg: PruneConfig, acfg: AnalysisConfig, source: Source,
           details: pd.DataFrame | None) -> pd.DataFrame:
    rows = pd.DataFrame({"name": [r.name for r in refs], "layer": [r.layer for r in refs],
                         "role": [r.role for r in refs], "shape": ["x".join(map(str, r.shape)) for r in refs],
                         "params": [int(np.prod(r.shape)) for r in refs]})
    if cfg.allocation == "uniform" and details is None:
        return rows.assign(alpha=np.nan)
    if details is None:
        from tailscope.analysis.pipeline import analyze

        details = analyze(source.path, config=_with_metric(acfg, column_of(cfg))).details
    column = column_of(cfg)
    if column not in details.columns:
        raise ConfigError(f"allocation={cfg.allocation!r} maps the analysis column `{column}`, which this analysis "
                          f"does not have (columns: {', '.join(c for c in details.columns if 'alpha' in c)}); "
                          + ("analyze with farms=True" if cfg.allocation == "farms" else
                             "pick an existing column with `metric` (alpha_hill needs hill='median' or 'peak')"))
    keep = [c for c in dict.fromkeys(("name", "alpha", column)) if c in details.columns]
    merged = rows.merge(details[keep].drop_duplicates("name"), on="name", how="left")
    absent = merged.loc[merged["alpha"].isna() & ~merged["name"].isin(details["name"]), "name"].tolist()
    if absent:
        raise ConfigError(f"`details` has no row for {len(absent)} prunable matrices, e.g. {', '.join(absent[:3])}")
    return merged


def _settings(cfg: PruneConfig, calibration: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"sparsity": cfg.sparsity, "allocation": cfg.allocation, "method": cfg.method,
                           "by": cfg.by, "epsilon": cfg.epsilon if cfg.allocation != "uniform" else None,
                           "metric": cfg.metric_column if cfg.allocation != "uniform" else None}
    if cfg.method == "wanda":
        out.update(calibration=read_text(calibration, CALIBRATION)[0], context=cfg.context)
    return out


def _row(r: dict[str, Any]) -> dict[str, Any]:
    def num(v: Any) -> Any:
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else (float(v) if isinstance(v, (float, np.floating)) else v)

    return {"name": r["name"], "layer": int(r["layer"]), "role": r["role"], "shape": r["shape"], "params": int(r["params"]),
            "alpha": num(r.get("alpha")), "metric": num(r.get("metric")), "sparsity": float(r["sparsity"])}


def _summary(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    params = np.array([r["params"] for r in rows], dtype=np.float64)
    values = np.array([r[key] for r in rows], dtype=np.float64)
    return {"matrices": len(rows), "parameters": int(params.sum()), f"mean {key}": float(np.sum(params * values) / params.sum()),
            "min": float(values.min()), "max": float(values.max())}


def module_names(source: Source, refs: list[MatrixRef]) -> dict[str, str]:
    """{matrix name: its Hugging Face module name} (GGUF tensors renamed as `gguf_hf` does)."""
    hf = {r.longname: r.longname for r in refs}
    if source.format == "gguf":
        from tailscope.sources.gguf_hf import hf_tensor_names

        hf = {t.name: name for t, name in hf_tensor_names(source.path)[1]}
    return {r.name: hf[r.longname].removesuffix(".weight") for r in refs}


def _wanda_norms(source: Source, refs: list[MatrixRef], modules: dict[str, str], alloc: dict[str, dict[str, Any]],
                 cfg: PruneConfig, calibration: Any) -> dict[str, np.ndarray]:
    from tailscope.probes.loading import load_for_probe, release
    from tailscope.surgery.wanda import activation_norms, calibration_ids

    experts = [r.name for r in refs if r.expert is not None]
    if experts:
        raise ConfigError(f"method='wanda' needs one Linear module per matrix; expert matrices ({experts[0]}, ...) "
                          "are fused in transformers' MoE blocks: use method='magnitude' or exclude them with `layers`")
    path = Path(source.path)
    if path.suffix.lower() != ".gguf" and not path.is_dir():
        raise InputError(path, "method='wanda' runs the model: expected a Hugging Face model directory or a .gguf file")
    _, text = read_text(calibration, CALIBRATION)
    model, tokenizer = load_for_probe(path)
    try:
        sparsities = {modules[r.name]: alloc[r.name]["sparsity"] for r in refs}
        return activation_norms(model, calibration_ids(tokenizer, text, cfg.context), sparsities)
    finally:
        del model
        release()


def column_of(cfg: PruneConfig) -> str:
    """The analysis column the allocation maps."""
    return cfg.metric_column


def _with_metric(acfg: AnalysisConfig, column: str) -> AnalysisConfig:
    """The analysis options that compute `column`: farms=True for alpha_farms; for alpha_hill the
    median xmin (AlphaPruning's default) unless `hill` is already set."""
    if column == "alpha_farms" and not acfg.farms:
        return acfg.replace(farms=True)
    if column == "alpha_hill" and acfg.hill is None:
        return acfg.replace(hill="median")
    return acfg
