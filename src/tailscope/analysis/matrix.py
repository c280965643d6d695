"""One matrix through the stages: its plan entry (selected or why skipped), then spectrum -> fit -> row.

Executors (serial, process pool, Ray) all call `analyze_matrix`; it never raises on numerical
trouble, so one bad matrix gives a 'failed' row and the rest of the model still analyzes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tailscope.config import AnalysisConfig
from tailscope.fit.powerlaw import PowerLawFit
from tailscope.rows.diagnostics import optional_columns, primary_fit, shuffled_eigenvalues
from tailscope.rows.metrics import spectrum_columns
from tailscope.sources import MatrixRef, Source, geometry
from tailscope.sources.peft_reader import KIND_LOWRANK
from tailscope.spectrum.lowrank import lowrank_spectrum
from tailscope.spectrum.matrices import to_matrices
from tailscope.spectrum.routes import NumericalError, Spectrum, compute_spectrum, inverted


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
    if ref.loaded_elements > config.max_elements:
        return f"{ref.loaded_elements} elements > max_elements {config.max_elements}"
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
        if ref.kind == KIND_LOWRANK:  # LoRA update from its factors, never dense
            mats = []  # so no randomize columns: shuffling would need the dense update
            spec = lowrank_spectrum(array.a, array.b, array.scale, row["N"], row["M"])
        else:
            mats = to_matrices(array, ref.kind, config.conv2d, config.conv2d_norm)
            spec = compute_spectrum(mats, row["N"], device)
        if spec.evals[-1] <= 0:
            raise NumericalError("all eigenvalues are zero (the matrix is zero)")
        if config.inverse:
            spec = inverted(spec)
    except NumericalError as exc:
        row.update(has_esd=False, status="failed", reason=str(exc), warning="")
        return row
    fit, finger_columns = primary_fit(spec.evals, config)
    row.update(spectrum_columns(spec, fit, config.tolerance), **finger_columns)
    row.update(optional_columns(mats, spec, fit, row, config, device))
    if config.plot_target:  # the spectrum and fit flow on, into the plot files
        plot_layer(row, mats, spec, fit, config, device)
    return row


def plot_layer(
    row: dict[str, Any], mats: list[np.ndarray], spec: Spectrum, fit: PowerLawFit, config: AnalysisConfig, device: str
) -> None:
    """Per-layer PNGs; the detX line with `detx`, the randomized ESD with `randomize`.

    The shuffled spectrum is recomputed here with the same seed as its columns (same values):
    plotting is the slow, optional path, so the column path stays free of it.
    """
    from tailscope.fit.detx import detx
    from tailscope.plots.files import write_layer_plots

    detx_value = detx(spec.evals).value if config.detx else None
    rand = shuffled_eigenvalues(mats, (config.seed, int(row["layer_id"])), device)[0] if config.randomize and mats else None
    write_layer_plots(
        config.plot_target, row, spec.evals, fit, detx_value=detx_value, rand_evals=rand, thresh=config.evals_thresh
    )
