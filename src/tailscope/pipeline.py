"""The pipeline: source -> MatrixRef stream -> matrices -> spectrum -> fit -> row -> Report.

(Named `pipeline`, not `analyze` as DESIGN.md suggests: a submodule named like the public
function would shadow `tailscope.analyze` once imported.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import AnalysisConfig
from .errors import ConfigError
from .diagnostics import optional_columns, primary_fit, shuffled_eigenvalues
from .metrics import spectrum_columns
from .report.store import open_store
from .report.table import Description, Report
from .sources import MatrixRef, Source, geometry, open_source
from .spectrum import NumericalError, compute_spectrum, inverted
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
        if config.inverse:
            spec = inverted(spec)
    except NumericalError as exc:
        row.update(has_esd=False, status="failed", reason=str(exc), warning="")
        return row
    fit, finger_columns = primary_fit(spec.evals, config)
    row.update(spectrum_columns(spec, fit, config.tolerance), **finger_columns)
    row.update(optional_columns(mats, spec, fit, row, config, device))
    return row


def model_key(source: Source) -> str:
    """Which results file a model's rows go to: its resolved path (or its display name)."""
    return str(source.path.resolve()) if source.path is not None else source.name


def analyze(model: Any, *, config: AnalysisConfig | None = None, **options: Any) -> Report:
    """Per-matrix spectral diagnostics of a model, one row per weight matrix.

    Args:
        model: a path (safetensors file or directory, sharded index, GGUF, .bin/.pt state dict),
            an ``nn.Module`` or a state dict.
        config: an `AnalysisConfig`; keyword options override its fields (``results=PATH``
            makes the run durable and resumable, see `AnalysisConfig`).

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
    store = open_store(cfg.results, model_key(source), cfg)
    rows = list(run_serial(selected, cfg, device, store))
    stored = dict(results_file=str(store.path), reused=store.reused) if store else {}
    return Report.from_rows(rows, source=source.name, config=cfg, skipped=skipped, **stored)


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


def layer_eigenvalues(model: Any, layer: int | str, *, randomize: bool = False, seed: int = 0) -> np.ndarray:
    """Ascending eigenvalues of W^T W for one matrix, chosen by layer_id or name.

    With `randomize`, W's entries are shuffled first, exactly as `randomize=True` shuffles them.

    >>> import numpy as np
    >>> layer_eigenvalues({"fc.weight": np.diag([1.0, 2.0, 3.0])}, "fc").tolist()
    [1.0, 4.0, 9.0]
    """
    source = open_source(model)
    refs = [r for r in source.refs() if layer in (r.layer_id, r.name, r.longname)]
    if not refs:
        raise ConfigError(f"{source.name}: no matrix with layer_id or name {layer!r}")
    ref = refs[0]
    geo = geometry(ref.kind, ref.shape, "slices")
    if geo is None:
        raise ConfigError(f"{source.name}: {ref.name} is not a matrix (shape {ref.shape})")
    mats = to_matrices(ref.load(), ref.kind, "slices", True)
    if randomize:
        return shuffled_eigenvalues(mats, (seed, ref.layer_id))[0]
    return compute_spectrum(mats, geo.N).evals
