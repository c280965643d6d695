"""The pipeline: source -> MatrixRef stream -> matrices -> spectrum -> fit -> row -> Report.

(Named `pipeline`, not `analyze` as DESIGN.md suggests: a submodule named like the public
function would shadow `tailscope.analyze` once imported.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .config import AnalysisConfig
from .fit.powerlaw import PowerLawFit, fit_power_law
from .metrics import spectrum_columns
from .report.table import Description, Report
from .sources import MatrixRef, Source, geometry, open_source
from .spectrum import NumericalError, Spectrum, compute_spectrum
from .executors import run_serial
from .transforms import to_matrices


def make_config(config: AnalysisConfig | None, options: dict[str, Any]) -> AnalysisConfig:
    if config is None:
        return AnalysisConfig.from_kwargs(**options)
    return config.replace(**options) if options else config


def base_columns(ref: MatrixRef, config: AnalysisConfig) -> dict[str, Any]:
    """What a row says before any eigenvalue is computed."""
    geo = geometry(ref.kind, ref.shape, config.conv2d)
    return {
        "layer_id": ref.layer_id, "name": ref.name, "longname": ref.longname, "layer_type": ref.kind,
        "role": ref.role, "layer": ref.layer, "expert": ref.expert, "shape": "x".join(map(str, ref.shape)),
        "dtype": ref.dtype, "M": geo.M if geo else None, "N": geo.N if geo else None,
        "Q": geo.Q if geo else None, "rf": geo.rf if geo else None,
        "num_evals": geo.num_evals if geo else None,
    }


def skip_reason(ref: MatrixRef, config: AnalysisConfig) -> str | None:
    """Why this matrix is not analyzed under `config`, or None."""
    if ref.skip_reason:
        return ref.skip_reason
    geo = geometry(ref.kind, ref.shape, config.conv2d)
    if geo is None:
        return f"not a matrix (shape {ref.shape})"
    if not config.selects(ref.layer_id, ref.name, ref.role):
        return "not selected by `layers`"
    if config.min_evals and geo.num_evals < config.min_evals:
        return f"num_evals {geo.num_evals} < min_evals {config.min_evals}"
    if config.max_evals and geo.num_evals > config.max_evals:
        return f"num_evals {geo.num_evals} > max_evals {config.max_evals}"
    if geo.N > config.max_n:
        return f"N {geo.N} > max_n {config.max_n}"
    return None


def plan(source: Source, config: AnalysisConfig) -> tuple[list[MatrixRef], list[tuple[MatrixRef, str]]]:
    """Split the source's matrices into those to analyze and those skipped (with the reason)."""
    selected, skipped = [], []
    for ref in source.refs():
        reason = skip_reason(ref, config)
        if reason is None:
            selected.append(ref)
        else:
            skipped.append((ref, reason))
    return selected, skipped


def analyze_matrix(ref: MatrixRef, array: np.ndarray, config: AnalysisConfig, device: str = "cpu") -> dict[str, Any]:
    """One details row. Numerical trouble gives a 'failed' row with a reason, never an exception."""
    row = base_columns(ref, config)
    try:
        mats = to_matrices(array, ref.kind, config.conv2d, config.conv2d_norm)
        spec = compute_spectrum(mats, row["N"], device)
        if spec.evals[-1] <= 0:
            raise NumericalError("all eigenvalues are zero (the matrix is zero)")
    except NumericalError as exc:
        row.update(has_esd=False, status="failed", reason=str(exc), warning="")
        return row
    fit = fit_power_law(spec.evals, thresh=config.evals_thresh)
    row.update(spectrum_columns(spec, fit, config.tolerance))
    if config.plot_target:  # issue 3b: the spectrum and fit flow on, into the plot files
        plot_layer(row, mats, spec, fit, config, device)
    return row


# issue 3b: plots
def shuffled_evals(mats: list[np.ndarray], n: int, device: str, seed: int, layer_id: int) -> np.ndarray:
    """Eigenvalues of each matrix with its entries shuffled (seeded per layer, so order-independent)."""
    rng = np.random.default_rng([seed, layer_id])
    shuffled = [rng.permutation(np.asarray(w).ravel()).reshape(w.shape) for w in mats]
    return compute_spectrum(shuffled, n, device).evals


def plot_layer(
    row: dict[str, Any], mats: list[np.ndarray], spec: Spectrum, fit: PowerLawFit, config: AnalysisConfig, device: str
) -> None:
    """Per-layer PNGs; the detX line and the randomized ESD only when those options exist and are on."""
    from .fit.detx import detx
    from .plots.files import write_layer_plots

    detx_value = detx(spec.evals).value if getattr(config, "detx", False) else None
    rand = None
    if getattr(config, "randomize", False):
        rand = shuffled_evals(mats, spec.N, device, config.seed, int(row["layer_id"]))
    write_layer_plots(
        config.plot_target, row, spec.evals, fit, detx_value=detx_value, rand_evals=rand, thresh=config.evals_thresh
    )


def analyze(model: Any, *, config: AnalysisConfig | None = None, **options: Any) -> Report:
    """Per-matrix spectral diagnostics of a model, one row per weight matrix.

    Args:
        model: a path (safetensors file or directory, sharded index, GGUF, .bin/.pt state dict),
            an ``nn.Module`` or a state dict.
        config: an `AnalysisConfig`; keyword options override its fields.

    Returns:
        A `Report` whose ``details`` DataFrame carries weightwatcher's columns.

    Example:
        >>> import numpy as np, tailscope
        >>> rng = np.random.default_rng(0)
        >>> report = tailscope.analyze({"fc.weight": rng.standard_normal((200, 100))}, progress=False)
        >>> print(report.details[["name", "N", "M", "num_evals", "status"]].to_string(index=False))
        name   N   M  num_evals  status
          fc 200 100        100 success
    """
    cfg = make_config(config, options)
    from .spectrum_torch import resolve_device

    device = resolve_device(cfg.device)
    source = open_source(model)
    selected, skipped = plan(source, cfg)
    if cfg.plot_target:  # issue 3b: fail on an unusable plot_dir before any work
        from .plots.files import plot_directory

        plot_directory(cfg.plot_target)
    rows = list(run_serial(selected, cfg, device))
    report = Report.from_rows(rows, source=source.name, config=cfg, skipped=skipped)
    if cfg.plot_target:  # issue 3b
        from .plots.files import write_model_plots

        write_model_plots(cfg.plot_target, report.details, name=Path(str(source.name)).name or str(source.name))
    return report


def describe(model: Any, *, config: AnalysisConfig | None = None, **options: Any) -> Description:
    """Every matrix found, with its role, layer and shape, and why any is skipped; no spectra.

    Example:
        >>> import numpy as np, tailscope
        >>> d = tailscope.describe({"fc.weight": np.zeros((20, 10)), "fc.bias": np.zeros(20)})
        >>> print(d.details[["name", "N", "M", "analyzed"]].to_string(index=False))
           name    N    M  analyzed
             fc   20   10      True
        fc.bias <NA> <NA>     False
        >>> d.skip_counts
        {'not a matrix (1-D)': 1}
    """
    cfg = make_config(config, options)
    source = open_source(model)
    rows = []
    for ref in source.refs():
        row = base_columns(ref, cfg)
        reason = skip_reason(ref, cfg)
        row.update(analyzed=reason is None, skip_reason=reason or "")
        rows.append(row)
    return Description.from_rows(rows, source=source.name, metadata=source.metadata)
