"""weightwatcher 0.7.7's API on top of tailscope, so existing notebooks run with a one-line change.

    import tailscope.compat as ww          # was: import weightwatcher as ww
    watcher = ww.WeightWatcher(model=model)
    details = watcher.analyze(layers=[5], min_evals=50)
    summary = watcher.get_summary(details)

Every weightwatcher keyword goes through one table, `KEYWORDS`: it is either renamed to a
tailscope option, or accepted only at weightwatcher's default value (a non-default value raises a
`ConfigError` naming the keyword and the closest tailscope equivalent; nothing is silently
ignored). Details carry exactly weightwatcher's columns for the options given (layer_id, name,
then the rest sorted, as weightwatcher orders them) and the same layer_id numbering.

Differences kept on purpose (see README, "Coming from weightwatcher"): a failed fit is NaN with
status 'failed', not alpha = -1 labelled 'over-trained'; num_fingers is the true count (weightwatcher's
is one less); `randomize` is one seeded shuffle (weightwatcher draws 5 unseeded ones for layers with
fewer than 100 eigenvalues); with `inverse=True` a pooled Conv2D layer is inverted once
(weightwatcher re-inverts earlier slices).

Rank columns are weightwatcher's here, where tailscope's own differ (`tailscope.spectrum.rank`):
matrix_rank / rank_loss count singular values above sv_max * N * eps64 whatever precision the
values carry (tailscope: eps of the storage / route precision, as numpy.linalg.matrix_rank), and
weak_rank_loss counts eigenvalues below an absolute `tolerance` (tailscope: tolerance * lambda_max).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pandas as pd

from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError

# weightwatcher's default details columns (analyze with no option)
BASE_COLUMNS = (
    "D", "M", "N", "Q", "alpha", "alpha_weighted", "entropy", "has_esd", "lambda_max", "layer_type",
    "log_alpha_norm", "log_norm", "log_spectral_norm", "longname", "matrix_rank", "norm", "num_evals",
    "num_pl_spikes", "rank_loss", "rf", "sigma", "spectral_norm", "stable_rank", "status", "sv_max",
    "sv_min", "warning", "weak_rank_loss", "xmax", "xmin",
)
DESCRIBE_COLUMNS = ("M", "N", "Q", "layer_type", "longname", "num_evals", "rf")
# columns an option adds, named as weightwatcher names them
OPTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "fix_fingers": ("num_fingers", "raw_alpha"),
    "detx": ("ERG_gap", "detX_num", "detX_val", "detX_val_unrescaled", "num_ERG_spikes"),
    "mp_fit": ("W_scale", "bulk_max", "bulk_min", "mp_softrank", "num_spikes", "sigma_mp"),
    "randomize": (
        "max_rand_eval", "num_traps", "rand_W_scale", "rand_bulk_max", "rand_bulk_min", "rand_distance",
        "rand_mp_softrank", "rand_num_spikes", "rand_sigma_mp", "ww_maxdist", "ww_softrank",
    ),
}
SUMMARY_METRICS = ("log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "stable_rank", "mp_softrank")


@dataclasses.dataclass(frozen=True)
class Keyword:
    """How one weightwatcher keyword maps: to a tailscope option, or only its default is accepted."""

    default: Any
    option: str | None = None  # tailscope option name; None = only the default is accepted
    convert: Callable[[Any], Any] = lambda v: v
    closest: str = ""  # what to use instead, for the error


def _fit_name(value: Any) -> str:
    if str(value).lower() not in ("pl", "power_law"):
        raise ConfigError(
            f"weightwatcher option `fit={value!r}` is not supported by tailscope.compat (weightwatcher then "
            "replaces alpha by the TPL exponent); closest: tailscope.analyze(..., fit='TPL'), which adds "
            "tpl_alpha, tpl_lambda and the likelihood-ratio tests beside the power-law alpha"
        )
    return "PL"


def _fingers(value: Any) -> str | None:
    if value in (False, None):
        return None
    if value != "clip_xmax":
        raise ConfigError(f"weightwatcher option `fix_fingers={value!r}` is not supported; use fix_fingers='clip_xmax'")
    return value


KEYWORDS: dict[str, Keyword] = {
    "layers": Keyword([], "layers", lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,)),
    "min_evals": Keyword(8, "min_evals"),
    "max_evals": Keyword(15000, "max_evals"),
    "max_N": Keyword(50000, "max_n"),
    "conv2d_norm": Keyword(True, "conv2d_norm"),
    "tolerance": Keyword(1e-6, "tolerance"),
    "inverse": Keyword(False, "inverse"),
    "randomize": Keyword(False, "randomize"),
    "mp_fit": Keyword(False, "mp_fit"),
    "fix_fingers": Keyword(False, "fix_fingers", _fingers),
    "max_fingers": Keyword(10, "max_fingers"),
    "finger_thresh": Keyword(1.0, "finger_thresh"),
    "fit": Keyword("PL", "fit", _fit_name),
    "detX": Keyword(False, "detx"),
    "plot": Keyword(False, "plot"),
    "savefig": Keyword("ww-img", "plot_dir", lambda v: v if isinstance(v, str) else None),
    "base_model": Keyword(None, "base"),
    "peft": Keyword(False, "peft"),
    # accepted at their default only
    "min_size": Keyword(None, closest="min_evals"),
    "max_size": Keyword(None, closest="max_evals"),
    "glorot_fix": Keyword(False, closest="none (tailscope never rescales W)"),
    "ww2x": Keyword(False, closest="conv2d='unfold' for one matrix per Conv2D"),
    "pool": Keyword(True, closest="conv2d='unfold' for one matrix per Conv2D"),
    "conv2d_fft": Keyword(False, closest="conv2d='unfold'"),
    "fft": Keyword(False, closest="conv2d='unfold'"),
    "deltas": Keyword(False, closest="none"),
    "intra": Keyword(False, closest="none"),
    "vectors": Keyword(False, closest="none"),
    "channels": Keyword(None, closest="none (tailscope reads PyTorch layouts)"),
    "stacked": Keyword(False, closest="none"),
    "xmin_max": Keyword(None, closest="none"),
    "sparsify": Keyword(True, closest="none"),
    "ERG": Keyword(False, closest="detX=True"),
    "pl_package": Keyword("ww", closest="none (tailscope's fit is weightwatcher's 'WW' fit)"),
    "xmax": Keyword(None, closest="none"),
    "start_ids": Keyword(0),  # handled by the facade: added to layer_id
    # no effect on results: tailscope always computes exact float64 eigenvalues
    "svd_method": Keyword("fast"),
}


def translate(kwargs: dict[str, Any]) -> dict[str, Any]:
    """tailscope options for weightwatcher keywords, or a ConfigError naming the offending one."""
    options: dict[str, Any] = {}
    for key, value in kwargs.items():
        spec = KEYWORDS.get(key)
        if spec is None:
            raise ConfigError(f"weightwatcher keyword `{key}` is unknown to tailscope.compat; known: {', '.join(sorted(KEYWORDS))}")
        if spec.option is not None:
            options[spec.option] = spec.convert(value)
        elif key not in ("start_ids", "svd_method") and not _is_default(value, spec.default):
            raise ConfigError(f"weightwatcher option `{key}={value!r}` is not supported by tailscope; closest: {spec.closest}")
    return options


def _is_default(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def ww_columns(options: dict[str, Any], describe: bool = False) -> list[str]:
    """weightwatcher's column list for these options: layer_id, name, then the rest sorted."""
    rest = set(DESCRIBE_COLUMNS if describe else BASE_COLUMNS)
    for option, cols in OPTION_COLUMNS.items():
        if options.get(option):
            rest.update(cols)
    return ["layer_id", "name", *sorted(rest)]


def _is_module(model: Any) -> bool:
    return type(model).__module__.startswith(("torch", "transformers")) or hasattr(model, "named_modules")


def to_ww_frame(
    details: pd.DataFrame, options: dict[str, Any], start_ids: int, *, module: bool, describe: bool = False
) -> pd.DataFrame:
    """Our details as weightwatcher lays them out (its columns only; detX names swapped back).

    For an nn.Module weightwatcher's `name` is the last component of the module path
    (`q_proj`), for a checkpoint file the tensor name; tailscope always gives the full path.
    """
    df = details.copy()
    if module:
        df["name"] = df["longname"].astype(str).str.split(".").str[-1]
    df = df.assign(**_derived_columns(df))
    df["layer_id"] = df["layer_id"] + start_ids
    cols = ww_columns(options, describe)
    missing = [c for c in cols if c not in df]
    if missing and not df.empty:
        raise ConfigError(f"tailscope does not compute weightwatcher column(s) {missing} for these options")
    return df.reindex(columns=cols).reset_index(drop=True)


def _derived_columns(df: pd.DataFrame) -> dict[str, pd.Series]:
    """weightwatcher's columns that are renamings or simple functions of ours."""
    out: dict[str, pd.Series] = {}
    for col in ("matrix_rank", "rank_loss", "weak_rank_loss"):  # weightwatcher's rules, not tailscope.spectrum.rank's
        if f"ww_{col}" in df:
            out[col] = df[f"ww_{col}"]
    if "detX_num" in df:
        # weightwatcher's `detX_val_unrescaled` holds the mean-1 (rescaled) value: its names are swapped
        out.update(detX_val_unrescaled=df["detX_val_rescaled"], num_ERG_spikes=df["detX_num"],
                   ERG_gap=df["detX_num"] - df["num_pl_spikes"])
    if "max_rand_eval" in df:
        # weightwatcher's num_traps is the spike count of the MP fit to the shuffled spectrum
        out.update(num_traps=df["rand_num_spikes"], ww_softrank=df["max_rand_eval"] / df["lambda_max"],
                   ww_maxdist=df["lambda_max"] - df["max_rand_eval"])
    return out


class WeightWatcher:
    """Drop-in for `weightwatcher.WeightWatcher` (0.7.7), computed by tailscope."""

    def __init__(self, model: Any = None, framework: Any = None, base_model: Any = None, log_level: Any = None) -> None:
        self.model, self.base_model = model, base_model
        self.details: pd.DataFrame | None = None

    def _model(self, model: Any) -> Any:
        model = self.model if model is None else model
        if model is None:
            raise ConfigError("no model: pass model= to WeightWatcher(...) or to this method")
        self.model = model
        return model

    def _options(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], int]:
        if self.base_model is not None and kwargs.get("base_model") is None:
            kwargs["base_model"] = self.base_model
        options = translate({k: v for k, v in kwargs.items() if v is not None or k == "base_model"})
        options = {k: v for k, v in options.items() if not (k == "base" and v is None)}
        return options, int(kwargs.get("start_ids", 0) or 0)

    def analyze(self, model: Any = None, **kwargs: Any) -> pd.DataFrame:
        """weightwatcher's analyze: one row per analyzed layer, its columns, its layer_ids."""
        from tailscope.analysis.pipeline import analyze

        options, start = self._options(kwargs)
        model = self._model(model)
        report = analyze(model, progress=False, **options)
        self.details = to_ww_frame(report.details, options, start, module=_is_module(model))
        return self.details

    def describe(self, model: Any = None, **kwargs: Any) -> pd.DataFrame:
        """weightwatcher's describe: the layers analyze would take, without spectra."""
        from tailscope.analysis.pipeline import describe

        options, start = self._options(kwargs)
        model = self._model(model)
        desc = describe(model, **options).details
        return to_ww_frame(desc[desc["analyzed"]], options, start, module=_is_module(model), describe=True)

    def get_details(self) -> pd.DataFrame | None:
        return self.details

    def get_summary(self, details: pd.DataFrame | None = None) -> dict[str, float]:
        """Means of weightwatcher's summary metrics present in the details."""
        details = self.details if details is None else details
        if details is None:
            return {}
        return {m: float(details[m].mean()) for m in SUMMARY_METRICS if m in details}

    def get_ESD(self, model: Any = None, layer: int | str | None = None, random: bool = False, params: Any = None) -> np.ndarray:
        """Ascending eigenvalues of one layer (by layer_id or name); `random` shuffles W first (seed 0)."""
        from tailscope.analysis.pipeline import layer_eigenvalues

        if layer is None:
            raise ConfigError("get_ESD needs layer= (a layer_id or a name)")
        return layer_eigenvalues(self._model(model), layer, randomize=random)

    def SVDSmoothing(self, model: Any = None, percent: float = 0.8, pool: bool = True, layers: Any = (),  # noqa: N802
                     method: str = "detX", fit: str = "PL", plot: bool = False, start_ids: int = 0,
                     svd_method: str = "fast") -> Any:
        """Keep each selected layer's top components (weightwatcher's rule per `method`); the model
        is changed in place and returned, as weightwatcher does. The truncation is exact."""
        translate({"pool": pool, "fit": fit, "plot": plot})
        if method not in SMOOTH_METHODS:
            raise ConfigError(f"SVDSmoothing method {method!r} is not supported; choose from {sorted(SMOOTH_METHODS)}")
        return smooth_module(self._model(model), SMOOTH_METHODS[method], percent=percent, layers=layers, start_ids=start_ids)

    def distances(self, model_1: Any = None, model_2: Any = None, **kwargs: Any) -> Any:
        """Not provided: raises, naming the closest tailscope equivalent."""
        raise ConfigError("weightwatcher's distances() is not provided by tailscope.compat; closest: "
                          "tailscope.analyze(model_2, base=model_1), the spectrum of W_2 - W_1 per matrix "
                          "(its `norm` column is ||W_2 - W_1||_F^2)")

    def SVDSharpness(self, model: Any = None, pool: bool = True, layers: Any = (), plot: bool = False,  # noqa: N802
                     start_ids: int = 0) -> Any:
        """Remove each selected layer's top components, as many as the shuffled matrix has MP spikes
        (weightwatcher's rule; the shuffle is seeded here)."""
        translate({"pool": pool, "plot": plot})
        return smooth_module(self._model(model), "sharpen", percent=1.0, layers=layers, start_ids=start_ids)


SMOOTH_METHODS = {"detX": "detx", "svd": "svd", "rmt": "rmt", "alpha_min": "alpha_min"}


def smooth_module(model: Any, method: str, *, percent: float, layers: Any, start_ids: int) -> Any:
    """weightwatcher's SVDSmoothing / SVDSharpness on an nn.Module: its 2-D weights, in place.

    Layers are chosen by weightwatcher's layer_ids (shifted by `start_ids`) and the usual
    `min_evals` / `max_evals` rules; a selected Conv2D or fused-expert tensor is refused, and one
    met while smoothing every layer is left as it is with a warning naming it.
    """
    import warnings

    import torch

    from tailscope.analysis.matrix import skip_reason
    from tailscope.smoothing.methods import smooth_matrix
    from tailscope.sources import open_source

    if not _is_module(model) or isinstance(model, dict):
        raise ConfigError("SVDSmoothing / SVDSharpness here need an nn.Module; for a checkpoint on disk use "
                          "tailscope.smooth(src, dst, method=..., layers=...) (CLI: tailscope smooth)")
    ids = [layers] if isinstance(layers, int) else list(layers or [])
    cfg = AnalysisConfig(layers=tuple(i - start_ids if i >= 0 else i + start_ids for i in ids))
    left_alone = []
    for ref in open_source(model).refs():
        if skip_reason(ref, cfg) is not None:
            continue
        weight = getattr(model.get_submodule(ref.longname), "weight", None) if ref.longname else None
        if weight is None or weight.dim() != 2:
            if ids:
                raise ConfigError(f"layer {ref.layer_id + start_ids} ({ref.longname}, {ref.kind}) cannot be smoothed: "
                                  "only 2-D weight matrices are")
            left_alone.append(ref.longname)
            continue
        result = smooth_matrix(weight.detach().cpu().double().numpy(), method, percent=percent)
        if result.matrix is not None:
            with torch.no_grad():
                weight.copy_(torch.from_numpy(result.matrix).to(weight.dtype))
    if left_alone:
        warnings.warn(f"left unsmoothed (not 2-D weight matrices): {', '.join(left_alone)}", stacklevel=3)
    return model


def SingleLayerModel(weights: Any) -> dict[str, np.ndarray]:  # noqa: N802 (weightwatcher's name)
    """A one-layer 'model' holding the matrix `weights` (rows = outputs), analyzable as layer 0."""
    array = np.asarray(weights)
    if array.ndim != 2:
        raise ConfigError(f"SingleLayerModel expects a 2-D matrix, got shape {array.shape}")
    return {"weights.weight": array}


