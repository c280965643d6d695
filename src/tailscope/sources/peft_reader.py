"""PEFT LoRA adapters: pair each module's lora_A (r x in) and lora_B (out x r) into one lazy ref.

The ref's loader returns the two small factors and the scale (lora_alpha / r, or
lora_alpha / sqrt(r) with use_rslora; per-module rank_pattern / alpha_pattern honoured, their keys
matched by `peft_patterns`, never run as regular expressions); the
dense update (out x in) is never formed. The row is named ``<module>.lora_BA`` with the module
name as the base model spells it (the ``base_model.model.`` prefix removed), so that it lines up
with the base model's own rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tailscope.config import AnalysisConfig
from tailscope.errors import InputError
from tailscope.sources import Source
from tailscope.sources.base import MatrixRef
from tailscope.sources.naming import parse_name
from tailscope.sources.paths import inside
from tailscope.sources.peft_patterns import PatternTable, pattern_tables
from tailscope.sources.tensor_names import checked_name
from tailscope.untrusted.json_loader import MAX_CONFIG_BYTES, Fields, read_json_file

KIND_LOWRANK = "lowrank"
PREFIX = "base_model.model."
_PAIR = re.compile(r"^(?P<module>.+)\.lora_(?P<emb>embedding_)?(?P<side>[AB])(?:\.(?P<adapter>[^.]+))?(?:\.weight)?$")


@dataclass(frozen=True)
class LowRankFactors:
    """The update scale * B @ A as its factors (float64)."""

    a: np.ndarray  # r x in
    b: np.ndarray  # out x r
    scale: float


@dataclass(frozen=True)
class _Scaling:
    """What each module's rank and scale come from: r, lora_alpha, use_rslora and the patterns."""

    r: int
    alpha: float
    rslora: bool
    ranks: PatternTable
    alphas: PatternTable

    def scale(self, module: str, rank: int) -> float:
        alpha = float(self.alphas.lookup(module, self.alpha))  # type: ignore[arg-type]
        return alpha / math.sqrt(rank) if self.rslora else alpha / rank


def _read_config(path: Path) -> tuple[dict[str, Any], _Scaling]:
    cfg_path = path / "adapter_config.json"
    if not cfg_path.exists():
        raise InputError(path, "not a PEFT adapter directory (no adapter_config.json)")
    cfg_path = inside(path, cfg_path)
    cfg = read_json_file(cfg_path, "the file", MAX_CONFIG_BYTES)
    fields = Fields.of(cfg, cfg_path, "the file")
    peft_type = (fields.text("peft_type") or "LORA").upper()
    if peft_type != "LORA":
        raise InputError(cfg_path, f"peft_type {peft_type!r} is not supported (only LORA)")
    if fields.flag("use_dora"):
        raise InputError(cfg_path, "DoRA adapters (use_dora=true) are not supported: their update is not B @ A")
    r, alpha = fields.integer("r", lo=1), fields.number("lora_alpha", lo=0)
    if r is None or not alpha:
        raise InputError(cfg_path, f"'r' and 'lora_alpha' must be positive numbers, got {cfg.get('r')!r} and {cfg.get('lora_alpha')!r}")
    ranks, alphas = (_pattern_values(fields, key, is_rank) for key, is_rank in (("rank_pattern", True), ("alpha_pattern", False)))
    tables = pattern_tables(ranks, alphas, cfg_path)
    return cfg, _Scaling(r, alpha, bool(fields.flag("use_rslora")), *tables)


def _pattern_values(fields: Fields, key: str, is_rank: bool) -> dict[str, float | int]:
    """rank_pattern (positive integers) or alpha_pattern (positive numbers), checked value by value."""
    patterns = fields.mapping(key)
    out: dict[str, float | int] = {}
    for name in patterns.data if patterns is not None else ():
        value = patterns.integer(name, lo=1) if is_rank else patterns.number(name, lo=0)
        if not value:
            raise InputError(fields.source, f"'{key}.{name}' must be a positive number, got {patterns.data[name]!r}")
        out[name] = value
    return out


Factor = tuple[tuple[int, ...], Callable[[], np.ndarray], "str | None"]  # (shape from the header, float64 loader, why unreadable)


def _tensors(path: Path) -> dict[str, Factor]:
    """name -> (shape, float64 loader, problem), from adapter_model.safetensors or (weights-only) adapter_model.bin.

    Shapes come from the safetensors header or the state dict's tensor metadata: no factor is
    read until its row is computed. A weights file that resolves outside the adapter directory
    is refused, as for models.
    """
    st = path / "adapter_model.safetensors"
    if st.exists():  # a FIFO or folder of that name: the reader says so
        from tailscope.sources.safetensors_reader import iter_file_tensors

        return {info.name: (info.shape, lambda ld=loader: np.asarray(ld(), dtype=np.float64), None)
                for info, loader in iter_file_tensors(inside(path, st))}
    pt = path / "adapter_model.bin"
    if pt.exists():
        from tailscope.sources.torch_reader import load_state_dict_file

        state = load_state_dict_file(inside(path, pt))
        return {k: _torch_factor(pt, k, v) for k, v in state.items()}
    raise InputError(path, "no adapter_model.safetensors or adapter_model.bin")


def _pairs(path: Path, names: list[str]) -> dict[str, dict[str, str]]:
    pairs: dict[str, dict[str, str]] = {}
    for name in names:
        m = _PAIR.match(name) if checked_name(name)[1] is None else None  # bad names: `_bad_names`
        if m:
            pairs.setdefault(m["module"], {})[m["side"]] = name
    broken = [f"{mod} (lora_{'A' if 'A' not in sides else 'B'} missing)" for mod, sides in pairs.items() if len(sides) != 2]
    if broken:
        raise InputError(path, f"{len(broken)} LoRA modules without both factors: {', '.join(broken[:5])}")
    if not pairs:
        raise InputError(path, "adapter holds no lora_A / lora_B tensors")
    return pairs


def peft_refs(path: Path, start_id: int = 0, max_refs: int = AnalysisConfig.max_refs) -> tuple[list[MatrixRef], dict[str, Any]]:
    """One lowrank ref per adapted module (shape = the dense update's, out x in), and the config."""
    cfg, scaling = _read_config(path)
    factors = _tensors(path)
    pairs = _pairs(path, list(factors))
    if len(pairs) > max_refs:
        raise InputError(path, f"lists {len(pairs)} LoRA modules, more than max_refs {max_refs}")
    refs = []
    for i, (module, sides) in enumerate(sorted(pairs.items())):
        (a_shape, la, a_problem), (b_shape, lb, b_problem) = factors[sides["A"]], factors[sides["B"]]  # r x in, out x r
        short = module[len(PREFIX):] if module.startswith(PREFIX) else module
        problem = a_problem or b_problem or _factor_problem(a_shape, b_shape, int(scaling.ranks.lookup(short, scaling.r)))  # type: ignore[arg-type]
        scale = scaling.scale(short, a_shape[0]) if problem is None else float("nan")
        info = parse_name(short + ".weight")
        refs.append(MatrixRef(
            name=f"{short}.lora_BA", longname=module, layer_id=start_id + i, kind=KIND_LOWRANK,
            shape=(b_shape[0], a_shape[1]) if problem is None else (), dtype="lora", role=info.role, layer=info.layer,
            expert=info.expert, source=str(path), loader=_factors_loader(la, lb, scale), skip_reason=problem,
            elements=math.prod(a_shape) + math.prod(b_shape),
        ))
    refs += _bad_names(path, list(factors), start_id + len(refs))
    return refs, cfg


def _factor_problem(a_shape: tuple[int, ...], b_shape: tuple[int, ...], rank: int) -> str | None:
    """Why lora_A (r x in) and lora_B (out x r) do not make an update, or None."""
    if len(a_shape) != 2 or len(b_shape) != 2:
        return f"LoRA factors must be 2-D, got lora_A of shape {tuple(a_shape)} and lora_B of shape {tuple(b_shape)}"
    if 0 in a_shape or 0 in b_shape:
        return f"empty LoRA factor (lora_A {tuple(a_shape)}, lora_B {tuple(b_shape)})"
    if b_shape[1] != a_shape[0]:
        return f"lora_B has {b_shape[1]} columns but lora_A {a_shape[0]} rows"
    if a_shape[0] != rank:
        return f"lora_A has {a_shape[0]} rows but adapter_config.json gives this module r={rank}"
    return None


def _bad_names(path: Path, names: list[str], first_id: int) -> list[MatrixRef]:
    """A skipped row for each tensor whose name cannot be shown or matched (see `tensor_names`)."""
    refs = []
    for name in names:
        shown, problem = checked_name(name)
        if problem is not None:
            refs.append(MatrixRef(name=shown, longname=shown, layer_id=first_id + len(refs), kind=KIND_LOWRANK, shape=(),
                                  dtype="lora", role=parse_name(shown).role, layer=None, expert=None, source=str(path),
                                  loader=_unreadable(path, problem), skip_reason=problem))
    return refs


def _unreadable(path: Path, problem: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raise InputError(path, problem)

    return load


def _torch_factor(path: Path, name: str, value: Any) -> Factor:
    """One tensor of adapter_model.bin: its shape, a float64 loader, and why it cannot be read (a
    sparse or meta tensor), or None."""
    from tailscope.sources.torch_reader import as_numpy, unreadable

    problem = unreadable(value)
    if problem is not None:
        problem = f"tensor '{checked_name(name)[0]}': {problem}"
        return (), _unreadable(path, problem), problem
    return tuple(getattr(value, "shape", ())), lambda: np.asarray(as_numpy(value), dtype=np.float64), None


def _factors_loader(la: Callable[[], np.ndarray], lb: Callable[[], np.ndarray], scale: float) -> Callable[[], Any]:
    return lambda: LowRankFactors(la(), lb(), float(scale))


def open_adapter(model: Any, max_refs: int = AnalysisConfig.max_refs) -> Source:
    """A PEFT adapter directory as a Source of low-rank refs: each LoRA update B @ A from its factors."""
    if not isinstance(model, (str, Path)) or not Path(model).is_dir():
        raise InputError(str(model)[:80], "`peft=True` needs an adapter directory (adapter_config.json + adapter_model.*)")
    refs, cfg = peft_refs(Path(model), max_refs=max_refs)
    return Source(str(model), lambda: iter(refs), "peft", Path(model), cfg)
