"""Every option of an analysis, validated once at the door.

Defaults live here and nowhere else. weightwatcher 0.7.7's defaults are kept where it has the
option (min_evals=8, max_evals=15000, max_N=50000, the 1e-5 eigenvalue threshold of the fit, the
1e-6 weak-rank tolerance, pooled Conv2D slices scaled by conv2d_norm).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from tailscope.errors import ConfigError

Device = Literal["cpu", "cuda", "auto"]
Conv2dMode = Literal["slices", "unfold"]
FixFingers = Literal["clip_xmax", "dragon_kings"]
FitKind = Literal["PL", "TPL"]
SmoothMethod = Literal["detx", "rmt", "svd", "alpha_min", "sharpen"]
Executor = Literal["serial", "process", "ray"]
HillXmin = Literal["median", "peak"]  # PL_Alpha_Hill's xmin choices (tailscope.fit.hill)
FarmsFit = Literal["median", "peak", "ks"]  # how alpha_farms fits the pooled window ESD

ROLES: tuple[str, ...] = (
    "embed", "embed_pos", "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o",
    "mlp_gate", "mlp_up", "mlp_gate_up", "mlp_down", "router", "lm_head",
    "conv", "dense", "lora_A", "lora_B",
)

LayerSelector = int | str
DEFAULT_PLOT_DIR = "./tailscope-plots"


@dataclass(frozen=True)
class AnalysisConfig:
    """Options of `analyze` and `describe`.

    Args:
        layers: which matrices to analyze. Non-negative ints keep those layer_ids, negative ints
            drop them (weightwatcher's convention); a role name (e.g. ``"mlp_down"``) keeps that
            role; any other string is a regular expression searched in the tensor name; a string
            starting with ``-`` drops what the rest of it selects. Empty means all.
        min_evals: matrices with fewer eigenvalues (M * rf) are skipped.
        max_evals: matrices with more eigenvalues are skipped (0 = no limit).
        max_n: matrices whose long side N exceeds this are skipped.
        max_elements: matrices holding more values once decoded are skipped: N*M*rf for a
            matrix, r*(N+M) for LoRA factors. The default, 2^29 (2 GiB as float32), admits the
            largest matrix of every released LLM within the max_n / max_evals defaults (Command R+'s
            33792 x 12288 MLP, 415M) and refuses the 50000 x 15000 corner those two alone allow.
        max_refs: a model listing more matrices (each expert of a fused expert tensor counts) is
            refused before they are listed: describe holds ~1.3 KB per matrix, so the default
            200000 (~3x the 69k of Kimi-K2, the largest released MoE) costs ~260 MB.
        conv2d: ``"slices"`` pools the k*k kernel slices (weightwatcher's default), ``"unfold"``
            analyzes one (out, in*k*k) matrix.
        conv2d_norm: scale Conv2D slices by sqrt(1/2) as weightwatcher does.
        device: where eigenvalues are computed; ``"auto"`` takes CUDA when torch sees one.
        seed: seed of every random step.
        evals_thresh: only eigenvalues above this enter the power-law fit.
        tolerance: eigenvalues below tolerance * lambda_max count in weak_rank_loss (scale-invariant;
            the compat facade keeps weightwatcher's absolute count).
        inverse: analyze the ESD of the inverse correlation matrix (eigenvalues 1/lambda of
            W^T W; zero eigenvalues dropped), as weightwatcher's ``inverse=True``.
        fix_fingers: ``"clip_xmax"`` refits with up to `max_fingers` - 1 top eigenvalues removed
            (weightwatcher's rule, see `tailscope.fit.fingers`); adds raw_alpha, num_fingers.
            ``"dragon_kings"`` (ours) also removes the top eigenvalues the Dragon-King test flags.
        max_fingers: bound of the finger search (weightwatcher's default 10).
        detx: add the TRACE-LOG (detX) columns detX_num, detX_val, detX_val_rescaled,
            delta_lambda, delta_log10_lambda.
        randomize: add rand_distance, max_rand_eval, num_traps, rand_mp_edge from the spectrum of W
            with its entries shuffled (seeded by `seed` and the layer id).
        mp_fit: add num_spikes, mp_softrank, bulk_max, sigma_mp (weightwatcher's MP fit of the bulk).
        fit: ``"TPL"`` adds a truncated power law and the likelihood-ratio tests PL vs TPL and
            PL vs lognormal on the same tail; alpha stays the power-law alpha.
        dragon_kings: add dk_pvalue, dk_count (see `tailscope.fit.dragon`).
        bootstrap: number of bootstrap resamples for alpha_lo, alpha_hi (0 = off).
        confidence: level of the bootstrap interval; 1 - confidence is the Dragon-King test level.
        farms: add ``alpha_farms``, the power-law alpha of the pooled ESDs of fixed-aspect-ratio
            windows sampled from each matrix (FARMS, Ren et al. ICML 2025; `tailscope.rows.farms`),
            which removes the bias of alpha with the matrix's aspect ratio Q = N/M.
        farms_rows: window's shorter side (FARMS code default 100).
        farms_q: window aspect ratio, longer / shorter side (FARMS code default 2.0: 100 x 200).
        farms_per_dim: window positions along each side, so up to farms_per_dim^2 windows
            (FARMS code default 10: 100 windows).
        farms_fit: how the pooled ESD is fitted: ``"median"`` (PL_Alpha_Hill at the median
            eigenvalue, the FARMS code's default), ``"peak"`` (PL_Alpha_Hill, histogram-peak xmin)
            or ``"ks"`` (tailscope's KS-chosen power-law fit, as the `alpha` column).
        hill: add ``alpha_hill``, PL_Alpha_Hill of TempBalance / AlphaPruning with xmin at the
            ``"median"`` eigenvalue (AlphaPruning's default) or found near the histogram ``"peak"``
            (TempBalance's); `tailscope.fit.hill`.
        peft: read the path as a PEFT LoRA adapter directory (adapter_config.json +
            adapter_model.safetensors/.bin); one ``<module>.lora_BA`` row per adapted module.
        plot: write PNG figures (per layer and per model) to `plot_dir`.
        plot_dir: where the PNGs go; setting it turns `plot` on. Default ``./tailscope-plots``.
        smooth_method: how `smooth` chooses the components to keep (see tailscope.smooth).
        smooth_percent: fraction of the rank that ``smooth_method="svd"`` keeps, in (0, 1].
        results: durable results: a ``.jsonl`` file, or a directory holding one such
            file per model. Each finished row is appended and fsync'ed; a rerun with the same
            path reuses the rows already there (same tensor name, content and row options).
        cache: a directory shared by many models: rows are keyed by tensor content and
            row options only, not by name, so a tensor met again (an unchanged model, or the
            matrices a merged or fine-tuned model shares with its base) is computed once.
        executor: ``"serial"`` (one process, reading overlapped with computing), ``"process"``
            (a local pool) or ``"ray"``; the parallel ones need a path, each task reads its own tensor.
        workers: processes (or Ray slots in flight) for a parallel executor; 0 = one per CPU.
        address: the Ray cluster to join (``ray.init(address=...)``); None starts a local instance.
    """

    layers: tuple[LayerSelector, ...] = ()
    min_evals: int = 8
    max_evals: int = 15000
    max_n: int = 50000
    max_elements: int = 2**29
    max_refs: int = 200_000
    conv2d: Conv2dMode = "slices"
    conv2d_norm: bool = True
    device: Device = "cpu"
    seed: int = 0
    evals_thresh: float = 1e-5
    tolerance: float = 1e-6
    progress: bool = True
    inverse: bool = False
    # diagnostics (each adds its columns only when on)
    fix_fingers: FixFingers | None = None
    max_fingers: int = 10
    detx: bool = False
    randomize: bool = False
    mp_fit: bool = False
    fit: FitKind = "PL"
    dragon_kings: bool = False
    bootstrap: int = 0
    confidence: float = 0.95
    farms: bool = False  # aspect-ratio-unbiased alpha (tailscope.rows.farms)
    farms_rows: int = 100
    farms_q: float = 2.0
    farms_per_dim: int = 10
    farms_fit: FarmsFit = "median"
    hill: HillXmin | None = None  # PL_Alpha_Hill (tailscope.fit.hill)
    # LLM workflows
    peft: bool = False  # the path is a PEFT LoRA adapter directory: analyze each (alpha/r) * B @ A
    # plots
    plot: bool = False
    plot_dir: str | None = None
    # SVD smoothing (tailscope.smooth)
    smooth_method: SmoothMethod = "detx"
    smooth_percent: float = 0.8
    # durable, resumable results
    results: str | os.PathLike | None = None
    cache: str | os.PathLike | None = None  # content-addressed rows shared across models
    # performance and scale
    executor: Executor = "serial"
    workers: int = 0
    address: str | None = None
    _compiled: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, (int, str)):
            layers = (layers,)
        object.__setattr__(self, "layers", tuple(layers))
        _check_int("min_evals", self.min_evals, minimum=0)
        _check_int("max_evals", self.max_evals, minimum=0)
        _check_int("max_n", self.max_n, minimum=1)
        _check_int("max_elements", self.max_elements, minimum=1)
        _check_int("max_refs", self.max_refs, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_literal("conv2d", self.conv2d, Conv2dMode)
        _check_literal("device", self.device, Device)
        if not isinstance(self.peft, bool):
            raise ConfigError(f"Expected argument `peft` to be a bool, but got {self.peft!r}")
        for name in ("evals_thresh", "tolerance"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"Expected argument `{name}` to be a float >= 0, but got {value!r}")
        self._check_diagnostics()
        _check_literal("smooth_method", self.smooth_method, SmoothMethod)
        p = self.smooth_percent
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ConfigError(f"Expected argument `percent` (smooth_percent) to be a float in (0, 1], but got {p!r}")
        _check_literal("executor", self.executor, Executor)
        _check_int("workers", self.workers, minimum=0)
        if self.address is not None and not isinstance(self.address, str):
            raise ConfigError(f"Expected argument `address` to be a string like 'ray://host:10001', but got {self.address!r}")
        if self.max_evals and self.min_evals > self.max_evals:
            raise ConfigError(
                f"Expected `min_evals` <= `max_evals`, but got {self.min_evals} > {self.max_evals}"
            )
        _check_results(self.results)
        _check_cache(self.cache, self.results)
        object.__setattr__(self, "_compiled", tuple(_compile(s) for s in self.layers))
        # plots
        if not isinstance(self.plot, bool):
            raise ConfigError(f"Expected argument `plot` to be a bool, but got {self.plot!r}")
        if self.plot_dir is not None:
            if not isinstance(self.plot_dir, (str, os.PathLike)) or not str(self.plot_dir):
                raise ConfigError(f"Expected argument `plot_dir` to be a directory path, but got {self.plot_dir!r}")
            object.__setattr__(self, "plot_dir", str(self.plot_dir))
            object.__setattr__(self, "plot", True)  # a directory means plots are wanted

    @property
    def plot_target(self) -> str | None:
        """Directory of the PNGs, or None when no plot is asked for."""
        if not self.plot:
            return None
        return self.plot_dir if self.plot_dir is not None else DEFAULT_PLOT_DIR

    def _check_diagnostics(self) -> None:
        if self.fix_fingers is not None:
            _check_literal("fix_fingers", self.fix_fingers, FixFingers)
        _check_int("max_fingers", self.max_fingers, minimum=1)
        _check_literal("fit", self.fit, FitKind)
        _check_int("bootstrap", self.bootstrap, minimum=0)
        for name in ("detx", "randomize", "mp_fit", "dragon_kings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected argument `{name}` to be True or False, but got {getattr(self, name)!r}")
        self._check_shapes()
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 < c < 1.0:
            raise ConfigError(f"Expected argument `confidence` to be a float in (0, 1), but got {c!r}")

    def _check_shapes(self) -> None:
        """FARMS and Hill options."""
        if not isinstance(self.farms, bool):
            raise ConfigError(f"Expected argument `farms` to be True or False, but got {self.farms!r}")
        _check_int("farms_rows", self.farms_rows, minimum=2)
        _check_int("farms_per_dim", self.farms_per_dim, minimum=1)
        q = self.farms_q
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 1.0 <= q <= 1000.0:
            raise ConfigError(f"Expected argument `farms_q` to be a float in [1, 1000], but got {q!r}")
        _check_literal("farms_fit", self.farms_fit, FarmsFit)
        if self.hill is not None:
            _check_literal("hill", self.hill, HillXmin)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "AnalysisConfig":
        """Build a config from keyword options, naming any option that does not exist."""
        return build_checked(cls, kwargs)

    def replace(self, **changes: Any) -> "AnalysisConfig":
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def selects(self, layer_id: int, name: str, role: str) -> bool:
        """Whether the `layers` selection keeps this matrix."""
        keeps = [sel for sel in self._compiled if not sel[0]]
        drops = [sel for sel in self._compiled if sel[0]]
        if any(_matches(sel, layer_id, name, role) for sel in drops):
            return False
        return not keeps or any(_matches(sel, layer_id, name, role) for sel in keeps)


def build_checked(cls: type, kwargs: dict[str, Any]) -> Any:
    """`cls(**kwargs)` for an options dataclass, naming any option that does not exist (and its closest match)."""
    known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        hints = {u: _closest(u, known) for u in unknown}
        text = ", ".join(f"`{u}`" + (f" (did you mean `{h}`?)" if h else "") for u, h in hints.items())
        raise ConfigError(f"Unknown option {text}; options are: {', '.join(sorted(known))}")
    return cls(**kwargs)


def _compile(selector: LayerSelector) -> tuple[bool, str, Any]:
    """(is_exclusion, kind, value) for one selector."""
    if isinstance(selector, bool) or not isinstance(selector, (int, str)):
        raise ConfigError(
            f"Expected each entry of `layers` to be an int id, a role or a regex, but got {selector!r}"
        )
    if isinstance(selector, int):
        return (selector < 0, "id", abs(selector))
    negate = selector.startswith("-")
    text = selector[1:] if negate else selector
    if text in ROLES:
        return (negate, "role", text)
    try:
        return (negate, "regex", re.compile(text))
    except re.error as exc:
        raise ConfigError(f"Expected `layers` entry {selector!r} to be a valid regex: {exc}") from exc


def _matches(sel: tuple[bool, str, Any], layer_id: int, name: str, role: str) -> bool:
    _, kind, value = sel
    if kind == "id":
        return layer_id == value
    if kind == "role":
        return role == value
    return value.search(name) is not None


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"Expected argument `{name}` to be an int >= {minimum}, but got {value!r}")


def _check_literal(name: str, value: Any, kind: Any) -> None:
    allowed = get_args(kind)
    if value not in allowed:
        raise ConfigError(f"Expected argument `{name}` to be one of {allowed}, but got {value!r}")


def _check_results(value: Any) -> None:
    """A .jsonl file that is not a directory, or a directory (created on first use)."""
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"Expected argument `results` to be a path (a .jsonl file or a directory), but got {value!r}")
    path = os.fspath(value)
    is_jsonl = str(path).endswith(".jsonl")
    if is_jsonl and os.path.isdir(path):
        raise ConfigError(f"Expected argument `results` {str(path)!r} to be a .jsonl file, but it is a directory")
    if not is_jsonl and os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"Expected argument `results` {str(path)!r} to be a directory or to end in .jsonl, but it is a file")


def _check_cache(value: Any, results: Any) -> None:
    """A directory (created on first use); one of `cache` and `results`."""
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"Expected argument `cache` to be a directory path, but got {value!r}")
    if os.path.exists(value) and not os.path.isdir(value):
        raise ConfigError(f"Expected argument `cache` {os.fspath(value)!r} to be a directory, but it is a file")
    if results is not None:
        raise ConfigError("Expected one of `cache` and `results`, but got both (a cache also resumes a killed run)")


def _closest(word: str, candidates: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, sorted(candidates), n=1)
    return match[0] if match else None
