"""The pipeline: source -> MatrixRef stream -> matrices -> spectrum -> fit -> row -> Report.

(Named `pipeline`, not `analyze` as DESIGN.md suggests: a submodule named like the public
function would shadow `tailscope.analyze` once imported.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .config import AnalysisConfig
from .errors import ConfigError
from .diagnostics import optional_columns, primary_fit, shuffled_eigenvalues
from .fit.powerlaw import PowerLawFit
from .metrics import spectrum_columns
from .report.store import open_store
from .report.table import Description, Report
from .sources import MatrixRef, Source, geometry, open_source
from .spectrum import NumericalError, Spectrum, compute_spectrum, inverted
from .executors import run_serial
from .transforms import to_matrices
from .lowrank import lowrank_spectrum
from .sources.peft_reader import KIND_LOWRANK


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
        if ref.kind == KIND_LOWRANK:  # issue 4: LoRA update from its factors, never dense
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
    if config.plot_target:  # issue 3b: the spectrum and fit flow on, into the plot files
        plot_layer(row, mats, spec, fit, config, device)
    return row


def plot_layer(
    row: dict[str, Any], mats: list[np.ndarray], spec: Spectrum, fit: PowerLawFit, config: AnalysisConfig, device: str
) -> None:
    """Per-layer PNGs; the detX line with `detx`, the randomized ESD with `randomize` (issue 3b).

    The shuffled spectrum is recomputed here with the same seed as its columns (same values):
    plotting is the slow, optional path, so the column path stays free of it.
    """
    from .fit.detx import detx
    from .plots.files import write_layer_plots

    detx_value = detx(spec.evals).value if config.detx else None
    rand = shuffled_eigenvalues(mats, (config.seed, int(row["layer_id"])), device)[0] if config.randomize and mats else None
    write_layer_plots(
        config.plot_target, row, spec.evals, fit, detx_value=detx_value, rand_evals=rand, thresh=config.evals_thresh
    )


def model_key(source: Source) -> str:
    """Which results file a model's rows go to: its resolved path (or its display name)."""
    return str(source.path.resolve()) if source.path is not None else source.name


def analyze(model: Any, *, config: AnalysisConfig | None = None, base: Any = None, **options: Any) -> Report:
    """Per-matrix spectral diagnostics of a model, one row per weight matrix.

    Args:
        model: a path (safetensors file or directory, sharded index, GGUF, .bin/.pt state dict),
            an ``nn.Module`` or a state dict.
        config: an `AnalysisConfig`; keyword options override its fields (``results=PATH``
            makes the run durable and resumable, see `AnalysisConfig`).
        base: a base model (anything `model` can be). Without ``peft``: analyze W - W_base for
            every matrix of both (a fine-tune's delta), streamed pair by pair. With ``peft``:
            analyze the adapter and add each adapted base layer's alpha as ``base_alpha``.

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
    source = open_model(model, cfg)
    selected, skipped = plan(source, cfg)
    if cfg.plot_target:  # issue 3b: fail on an unusable plot_dir before any work
        from .plots.files import plot_directory

        plot_directory(cfg.plot_target)
    if base is not None and not cfg.peft:  # issue 4: fine-tune delta
        from .delta import delta_refs, open_base

        selected = delta_refs(source, open_base(base, cfg.max_refs), selected, cfg, lambda r: skip_reason(r, cfg) is None)
    store = open_store(cfg.results, model_key(source), cfg)  # issue 9
    if cfg.executor != "serial":  # issue 8: each worker reads its own tensor by path
        from .parallel import run_parallel

        if base is not None or cfg.peft or store is not None:
            raise ConfigError(f"Expected `executor`='serial' with `base`, `peft`, `results` or `cache`, but got {cfg.executor!r}")
        rows = run_parallel(model, selected, cfg, device)
    else:
        rows = list(run_serial(selected, cfg, device, store))
    if base is not None and cfg.peft:
        add_base_alpha(rows, base, cfg, device)
    stored = dict(results_file=str(store.path), reused=store.reused) if store else {}
    report = Report.from_rows(rows, source=source.name + (f" - {base}" if base is not None and not cfg.peft else ""),
                              config=cfg, skipped=skipped, **stored)
    if cfg.plot_target:  # issue 3b
        from .plots.files import write_model_plots

        write_model_plots(cfg.plot_target, report.details, name=Path(str(source.name)).name or str(source.name))
    return report


def open_model(model: Any, cfg: AnalysisConfig) -> Source:
    """The model as a Source: a PEFT adapter with `peft`, else any path, module or state dict."""
    return open_peft(model, cfg.max_refs) if cfg.peft else open_source(model, max_refs=cfg.max_refs)


def open_peft(model: Any, max_refs: int = AnalysisConfig.max_refs) -> Source:
    """A PEFT adapter directory as a Source of low-rank refs (issue 4)."""
    from .errors import InputError
    from .sources.peft_reader import peft_refs

    if not isinstance(model, (str, Path)) or not Path(model).is_dir():
        raise InputError(str(model)[:80], "`peft=True` needs an adapter directory (adapter_config.json + adapter_model.*)")
    refs, cfg = peft_refs(Path(model), max_refs=max_refs)
    return Source(str(model), lambda: iter(refs), "peft", Path(model), cfg)


def add_base_alpha(rows: list[dict[str, Any]], base: Any, cfg: AnalysisConfig, device: str) -> None:
    """Set ``base_alpha`` on each lora_BA row: the alpha of the base layer it adapts (NaN if none)."""
    wanted = {r["name"].removesuffix(".lora_BA"): r for r in rows}
    base_refs = open_source(base, max_refs=cfg.max_refs).refs()
    refs = [ref for ref in base_refs if ref.name in wanted and skip_reason(ref, cfg.replace(layers=())) is None]
    found = {row["name"]: row for row in run_serial(refs, cfg.replace(layers=()), device)}
    for name, row in wanted.items():
        row["base_alpha"] = found[name]["alpha"] if name in found and "alpha" in found[name] else float("nan")


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
    if isinstance(model, (str, Path)) and _config_only(model):  # size a model before downloading its weights
        from .archcard import card, find_config

        if find_config(model) is not None:  # a bad config.json is the error here, not "no weights"
            return Description.from_rows([], source=str(model), card=card(model))
    arch = model_card(model)
    source = open_model(model, cfg)
    rows = []
    for ref in source.refs():
        row = base_columns(ref, cfg)
        reason = skip_reason(ref, cfg)
        row.update(analyzed=reason is None, skip_reason=reason or "")
        rows.append(row)
    if arch is not None:
        arch = arch.with_weights(sum(int(np.prod(r.shape)) for r in source.refs() if not r.skip_reason or "non-float" not in r.skip_reason))
    return Description.from_rows(rows, source=source.name, metadata=source.metadata, card=arch)


def model_card(model: Any) -> Any:
    """The architecture card of a path with a config.json or GGUF metadata, else None (issue 4)."""
    from pathlib import Path

    from .archcard import card, find_config
    from .errors import InputError

    if not isinstance(model, (str, Path)):
        return None
    p = Path(model)
    if not (find_config(p) or p.suffix.lower() == ".gguf"):
        return None
    try:
        return card(p)
    except InputError:
        return None


def _config_only(model: Any) -> bool:
    from pathlib import Path

    p = Path(model)
    if p.name == "config.json":
        return True
    weights = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
    return p.is_dir() and not any(f.suffix in weights and not f.name.startswith("adapter_") for f in p.iterdir())


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
