"""Turn a stream of named tensors (from any file format) into MatrixRefs.

Layer ids follow weightwatcher for files and state dicts: every key ending in ``.weight`` gets the
next id (vectors included, so that ids line up with weightwatcher's); a float matrix whose key does
not end in ``.weight`` (a fused expert tensor) gets one too, other tensors (``position_ids``) none. Fused 3-D expert tensors expand to one
ref per expert (and per gate/up half), all sharing their tensor's layer_id. How many refs a
tensor expands to is known from its shape, so a model listing more than `max_refs` is refused
before the tensor that crosses the bound is expanded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from tailscope.config import AnalysisConfig
from tailscope.errors import InputError
from tailscope.sources.base import KIND_CONV1D, KIND_CONV2D, KIND_DENSE, MatrixRef
from tailscope.sources.naming import parse_name, strip_weight
from tailscope.sources.tensor_names import checked_name

LoaderFactory = Callable[[int | None, int | None], Callable[[], np.ndarray]]


@dataclass(frozen=True)
class TensorEntry:
    """A tensor as a file lists it: enough to describe it and to build loaders for its parts."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    is_float: bool
    make_loader: LoaderFactory  # (expert, half) -> loader
    problem: str | None = None  # why this tensor cannot be read (a sparse or meta tensor), if it cannot


def is_fused_experts(name: str, shape: tuple[int, ...]) -> bool:
    """A 3-D tensor stacking one matrix per expert (HF fused layout or GGUF ``*_exps``)."""
    return len(shape) == 3 and ("experts" in name or "_exps" in name)


def refs_from_entries(
    entries: Iterable[TensorEntry], source: str, start_id: int = 0, max_refs: int = AnalysisConfig.max_refs
) -> Iterator[MatrixRef]:
    """MatrixRefs for every tensor, numbered as weightwatcher numbers them; at most `max_refs`."""
    layer_id, listed = start_id, 0
    for entry in entries:
        listed += ref_count(entry)
        if listed > max_refs:
            raise InputError(source, f"lists more than {max_refs} matrices (tensor '{entry.name}' of shape "
                                     f"{entry.shape} crosses the bound); raise `max_refs` (--max-refs) if the model is real")
        counted = entry.name.endswith(".weight") or (entry.is_float and len(entry.shape) >= 2)
        this_id = layer_id if counted else -1
        if counted:
            layer_id += 1
        yield from _refs_for(entry, this_id, source)


def ref_count(entry: TensorEntry) -> int:
    """How many refs `entry` expands to: one per expert (and gate/up half) of a fused tensor, else one."""
    if _skip_reason(entry) is not None or not is_fused_experts(entry.name, entry.shape):
        return 1
    halves = 2 if parse_name(entry.name, ndim=3).role == "mlp_gate_up" else 1
    return entry.shape[0] * halves


def _refs_for(entry: TensorEntry, layer_id: int, source: str) -> Iterator[MatrixRef]:
    shape = entry.shape
    name, bad_name = checked_name(entry.name)
    info = parse_name(name, ndim=len(shape))
    common = dict(longname=name, layer_id=layer_id, dtype=entry.dtype, layer=info.layer, source=source)
    skip = bad_name or entry.problem or _skip_reason(entry)
    if skip is None and is_fused_experts(entry.name, shape):
        yield from _expert_refs(entry, common, info.role)
        return
    kind = {4: KIND_CONV2D, 3: KIND_CONV1D}.get(len(shape), KIND_DENSE)
    if skip is None and len(shape) == 3:
        kind = KIND_CONV1D
    yield MatrixRef(
        name=strip_weight(name), kind=kind, shape=shape, role=info.role, expert=info.expert,
        loader=entry.make_loader(None, None), skip_reason=skip, **common,
    )


def _skip_reason(entry: TensorEntry) -> str | None:
    if not entry.is_float:
        return f"non-float dtype {entry.dtype}"
    if len(entry.shape) < 2:
        return f"not a matrix ({len(entry.shape)}-D)"
    if len(entry.shape) > 4:
        return f"unsupported {len(entry.shape)}-D tensor"
    if 0 in entry.shape:
        return f"empty tensor (shape {entry.shape})"
    return None


def _expert_refs(entry: TensorEntry, common: dict, role: str) -> Iterator[MatrixRef]:
    """One ref per expert; a fused gate_up tensor gives a gate and an up matrix per expert."""
    n_experts, rows, cols = entry.shape
    stem = strip_weight(entry.name)
    base = stem.rsplit(".", 1)[0] if stem.endswith(("gate_up_proj", "down_proj", "gate_proj", "up_proj")) else stem
    halves: list[tuple[int | None, str, str, int]]
    if role == "mlp_gate_up":
        halves = [(0, "gate_proj", "mlp_gate", rows // 2), (1, "up_proj", "mlp_up", rows // 2)]
    else:
        suffix = stem.rsplit(".", 1)[-1] if base != stem else ""
        halves = [(None, suffix, role, rows)]
    for expert in range(n_experts):
        for half, suffix, sub_role, n_rows in halves:
            name = f"{base}.{expert}.{suffix}" if suffix else f"{base}.{expert}"
            yield MatrixRef(
                name=name, kind=KIND_DENSE, shape=(n_rows, cols), role=sub_role, expert=expert,
                loader=entry.make_loader(expert, half), **common,
            )
