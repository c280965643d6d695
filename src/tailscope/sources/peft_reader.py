"""PEFT LoRA adapters: pair each module's lora_A (r x in) and lora_B (out x r) into one lazy ref.

The ref's loader returns the two small factors and the scale (lora_alpha / r, or
lora_alpha / sqrt(r) with use_rslora; per-module rank_pattern / alpha_pattern honoured); the
dense update (out x in) is never formed. The row is named ``<module>.lora_BA`` with the module
name as the base model spells it (the ``base_model.model.`` prefix removed), so that it lines up
with the base model's own rows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import AnalysisConfig
from ..errors import InputError
from .base import MatrixRef
from .naming import parse_name
from .paths import inside

KIND_LOWRANK = "lowrank"
PREFIX = "base_model.model."
_PAIR = re.compile(r"^(?P<module>.+)\.lora_(?P<emb>embedding_)?(?P<side>[AB])(?:\.(?P<adapter>[^.]+))?(?:\.weight)?$")


@dataclass(frozen=True)
class LowRankFactors:
    """The update scale * B @ A as its factors (float64)."""

    a: np.ndarray  # r x in
    b: np.ndarray  # out x r
    scale: float


def _read_config(path: Path) -> dict[str, Any]:
    cfg_path = path / "adapter_config.json"
    if not cfg_path.is_file():
        raise InputError(path, "not a PEFT adapter directory (no adapter_config.json)")
    cfg_path = inside(path, cfg_path)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(cfg_path, f"not valid JSON ({exc})") from None
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise InputError(cfg_path, f"peft_type {peft_type!r} is not supported (only LORA)")
    if cfg.get("use_dora"):
        raise InputError(cfg_path, "DoRA adapters (use_dora=true) are not supported: their update is not B @ A")
    for key in ("r", "lora_alpha"):
        if not isinstance(cfg.get(key), (int, float)) or cfg[key] <= 0:
            raise InputError(cfg_path, f"'{key}' must be a positive number, got {cfg.get(key)!r}")
    return cfg


Factor = tuple[tuple[int, ...], Callable[[], np.ndarray]]  # (shape from the header, float64 loader)


def _tensors(path: Path) -> dict[str, Factor]:
    """name -> (shape, float64 loader), from adapter_model.safetensors or (weights-only) adapter_model.bin.

    Shapes come from the safetensors header or the state dict's tensor metadata: no factor is
    read until its row is computed. A weights file that resolves outside the adapter directory
    is refused, as for models.
    """
    st = path / "adapter_model.safetensors"
    if st.is_file():
        from .safetensors_reader import iter_file_tensors

        return {info.name: (info.shape, lambda ld=loader: np.asarray(ld(), dtype=np.float64))
                for info, loader in iter_file_tensors(inside(path, st))}
    pt = path / "adapter_model.bin"
    if pt.is_file():
        from .torch_reader import as_numpy, load_state_dict_file

        state = load_state_dict_file(inside(path, pt))
        return {k: (tuple(getattr(v, "shape", ())), lambda v=v: np.asarray(as_numpy(v), dtype=np.float64))
                for k, v in state.items()}
    raise InputError(path, "no adapter_model.safetensors or adapter_model.bin")


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup: a key matching the end of the module name."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?{key}$", module):
            return value
    return default


def _pairs(path: Path, names: list[str]) -> dict[str, dict[str, str]]:
    pairs: dict[str, dict[str, str]] = {}
    for name in names:
        m = _PAIR.match(name)
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
    cfg = _read_config(path)
    factors = _tensors(path)
    pairs = _pairs(path, list(factors))
    if len(pairs) > max_refs:
        raise InputError(path, f"lists {len(pairs)} LoRA modules, more than max_refs {max_refs}")
    refs = []
    for i, (module, sides) in enumerate(sorted(pairs.items())):
        (a_shape, la), (b_shape, lb) = factors[sides["A"]], factors[sides["B"]]  # r x in and out x r
        short = module[len(PREFIX):] if module.startswith(PREFIX) else module
        r = a_shape[0]
        alpha = _pattern_value(cfg.get("alpha_pattern"), short, cfg["lora_alpha"])
        scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        info = parse_name(short + ".weight")
        refs.append(MatrixRef(
            name=f"{short}.lora_BA", longname=module, layer_id=start_id + i, kind=KIND_LOWRANK,
            shape=(b_shape[0], a_shape[1]), dtype="lora", role=info.role, layer=info.layer, expert=info.expert,
            source=str(path), loader=_factors_loader(la, lb, scale),
            skip_reason=None if b_shape[1] == r else f"lora_B has {b_shape[1]} columns but lora_A {r} rows",
            elements=math.prod(a_shape) + math.prod(b_shape),
        ))
    return refs, cfg


def _factors_loader(la: Callable[[], np.ndarray], lb: Callable[[], np.ndarray], scale: float) -> Callable[[], Any]:
    return lambda: LowRankFactors(la(), lb(), float(scale))
