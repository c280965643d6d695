"""The pipeline: source -> MatrixRef stream -> matrices -> spectrum -> fit -> row -> Report.

`analyze` opens a source (a model, a fine-tune's delta against its base, or a PEFT adapter), plans
it, runs an executor over the plan and builds the report; each stage lives in its own package.
(Named `pipeline`, not `analyze`: a submodule named like the public function would shadow
`tailscope.analyze` once imported.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tailscope.analysis.executors import run_serial
from tailscope.analysis.matrix import base_columns, plan, skip_reason
from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError
from tailscope.report.store import ResultStore, open_store
from tailscope.report.table import Description, Report
from tailscope.rows.diagnostics import shuffled_eigenvalues
from tailscope.sources import MatrixRef, Source, geometry, open_source
from tailscope.sources.archcard import card, config_only, find_config, model_card
from tailscope.sources.delta import delta_source
from tailscope.sources.peft_reader import open_adapter
from tailscope.spectrum.matrices import to_matrices
from tailscope.spectrum.routes import compute_spectrum


def make_config(config: AnalysisConfig | None, options: dict[str, Any]) -> AnalysisConfig:
    if config is None:
        return AnalysisConfig.from_kwargs(**options)
    return config.replace(**options) if options else config


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
    from tailscope.spectrum.torch_route import resolve_device

    device = resolve_device(cfg.device)
    source = open_model(model, cfg, base)
    selected, skipped = plan(source, cfg)
    if cfg.plot_target:  # fail on an unusable plot_dir before any work
        from tailscope.plots.files import plot_directory

        plot_directory(cfg.plot_target)
    store = open_store(cfg.results, model_key(source), cfg)
    rows = run(model, selected, cfg, device, store, base)
    if base is not None and cfg.peft:
        add_base_alpha(rows, base, cfg, device)
    stored = dict(results_file=str(store.path), reused=store.reused) if store else {}
    report = Report.from_rows(rows, source=source.name, config=cfg, skipped=skipped, **stored)
    if cfg.plot_target:
        from tailscope.plots.files import write_model_plots

        write_model_plots(cfg.plot_target, report.details, name=Path(str(source.name)).name or str(source.name))
    return report


def open_model(model: Any, cfg: AnalysisConfig, base: Any = None) -> Source:
    """The source to analyze: a PEFT adapter with `peft`, the delta W - W_base with `base`, else the model."""
    if cfg.peft:
        return open_adapter(model, cfg.max_refs)
    source = open_source(model, max_refs=cfg.max_refs)
    if base is None:
        return source
    base_source = open_source(base, max_refs=cfg.max_refs)
    return delta_source(source, base_source, lambda r: skip_reason(r, cfg) is None, f"{source.name} - {base}")


def run(model: Any, refs: list[MatrixRef], cfg: AnalysisConfig, device: str, store: ResultStore | None,
        base: Any) -> list[dict[str, Any]]:
    """Rows in plan order from the configured executor; parallel workers reopen `model` by path."""
    if cfg.executor == "serial":
        return list(run_serial(refs, cfg, device, store))
    if base is not None or cfg.peft or store is not None:
        raise ConfigError(f"Expected `executor`='serial' with `base`, `peft`, `results` or `cache`, but got {cfg.executor!r}")
    from tailscope.analysis.parallel import run_parallel

    return run_parallel(model, refs, cfg, device)


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
    if isinstance(model, (str, Path)) and config_only(model):  # size a model before downloading its weights
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
