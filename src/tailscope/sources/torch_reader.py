"""PyTorch inputs: `.bin`/`.pt` state dicts (weights-only unpickling), in-memory state dicts, modules.

Only `torch.load(weights_only=True)` ever touches a pickle: it refuses any object that would need
code to be rebuilt, and we turn that refusal into an error that says how to convert the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from tailscope.config import AnalysisConfig
from tailscope.errors import InputError, require
from tailscope.sources.base import KIND_CONV1D, KIND_CONV2D, KIND_DENSE, KIND_EMBEDDING, MatrixRef
from tailscope.sources.naming import parse_name
from tailscope.sources.refs import TensorEntry, refs_from_entries
from tailscope.sources.tensor_names import checked_name
from tailscope.untrusted.regular_files import check_regular

MAX_WRAPPERS = 4  # {'state_dict': {'model': {...}}}: real checkpoints wrap once or twice
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


def load_state_dict_file(path: Path) -> Mapping[str, Any]:
    """A state dict from a pickle file, without running any code from it."""
    torch = require("torch", "torch")
    check_regular(path)
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about legacy pickle protocols; our error says more
            warnings.simplefilter("ignore")
            obj = _torch_load(torch, path)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling refused"
        raise InputError(
            path,
            "is not a weights-only state dict: loading it would run code from the file, which "
            f"tailscope never does ({first}). If you trust it, convert it once with "
            "`torch.save(torch.load(f, weights_only=False), ...)` to a plain state dict or, better, "
            "to safetensors with `safetensors.torch.save_file(state_dict, 'model.safetensors')`",
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler raises IndexError, KeyError, ... on corrupt bytes
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(path, f"cannot read as a PyTorch state dict ({type(exc).__name__}: {detail})") from None
    state = _unwrap(obj, path)
    check_storage(path, state)
    return state


def _torch_load(torch, path: Path):  # noqa: ANN001, ANN202
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
        if "mmap" not in str(exc):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _unwrap(obj: Any, path: Path | str) -> Mapping[str, Any]:
    """Accept {'state_dict': {...}} / {'model': {...}} wrappers (up to MAX_WRAPPERS deep) around a
    flat dict of tensors; a loop, not recursion, as a hostile pickle may nest them thousands deep."""
    torch = require("torch", "torch")
    for _ in range(MAX_WRAPPERS + 1):
        if not isinstance(obj, Mapping):
            break
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        inner = next((obj.get(k) for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    raise InputError(path, f"expected a state dict (a mapping of names to tensors), found {type(obj).__name__}")


def unreadable(tensor: Any) -> str | None:
    """Why a tensor has no dense values to read (a sparse, quantized or meta tensor), or None."""
    torch = require("torch", "torch")
    if not isinstance(tensor, torch.Tensor):
        return None
    if tensor.layout != torch.strided:
        return f"{str(tensor.layout).replace('torch.', '')} tensor (only dense tensors are analyzed)"
    if tensor.is_meta:
        return "meta tensor (it holds no values)"
    if tensor.is_quantized:
        return "quantized torch tensor (only dense float tensors are analyzed)"
    return None


def check_storage(path: Path | str, state: Mapping[str, Any]) -> None:
    """Refuse views that decode to more values than the file stores.

    A pickle records each tensor as (storage, offset, shape, strides): a 4-byte storage viewed as
    50000 x 15000 with strides (0, 0) would decode to 3 GB. Each strided tensor must have its
    own bytes (no two of its elements at one address: contiguous, transposed and sliced views
    pass) inside its storage, and two tensors may share bytes only as the same view (tied
    weights), which counts against `max_refs` like any tensor.
    """
    torch = require("torch", "torch")
    views: set[tuple] = set()
    spans: dict[int, list[tuple[int, int, str]]] = {}  # storage address -> (first byte, end, name) per view
    for name, t in state.items():
        if unreadable(t) is not None or not isinstance(t, torch.Tensor) or t.numel() == 0:
            continue
        first, end = _byte_span(path, name, t)
        address = t.untyped_storage().data_ptr()
        view = (address, first, tuple(t.shape), t.stride(), t.dtype)
        if view in views:
            continue  # the same view under another name: a tied weight
        views.add(view)
        spans.setdefault(address, []).append((first, end, name))
    for parts in spans.values():
        parts.sort()
        for (_, prev_end, prev), (cur_first, _, cur) in zip(parts, parts[1:]):
            if cur_first < prev_end:
                raise InputError(path, f"tensors '{prev}' and '{cur}' overlap in storage; refusing views that share bytes")


def _byte_span(path: Path | str, name: str, t: Any) -> tuple[int, int]:
    """[first, end) bytes of `t` in its storage, after checking that no two elements share an address."""
    dims = sorted((stride, size) for size, stride in zip(t.shape, t.stride()) if size > 1)
    reach = 1  # elements spanned by the dimensions checked so far
    for stride, size in dims:
        if stride < reach:
            raise InputError(path, f"tensor '{name}': its {t.numel()} elements overlap in storage (shape {tuple(t.shape)}, "
                                   f"strides {t.stride()}); refusing a view that decodes to more values than the file holds")
        reach = stride * (size - 1) + reach
    first = t.storage_offset() * t.element_size()
    end = first + reach * t.element_size()
    if end > t.untyped_storage().nbytes():
        raise InputError(path, f"tensor '{name}': its view runs past its storage ({end} > {t.untyped_storage().nbytes()} bytes)")
    return first, end


def _tensor_loader(tensor: Any):  # noqa: ANN202
    return lambda: as_numpy(tensor)


def state_dict_entries(state: Mapping[str, Any]) -> Iterator[TensorEntry]:
    for name, value in state.items():
        shape = tuple(getattr(value, "shape", ()))
        dtype = str(getattr(value, "dtype", type(value).__name__)).replace("torch.", "")
        is_float = bool(getattr(value, "is_floating_point", lambda: False)())

        def make_loader(expert: int | None, half: int | None, t: Any = value):  # noqa: ANN202
            if expert is not None:
                t = t[expert]
            if half is not None:
                rows = t.shape[0] // 2
                t = t[half * rows : (half + 1) * rows]
            return _tensor_loader(t)

        yield TensorEntry(name, shape, dtype, is_float, make_loader, unreadable(value))


def state_dict_refs(
    state: Mapping[str, Any], source: str, start_id: int = 0, max_refs: int = AnalysisConfig.max_refs
) -> Iterator[MatrixRef]:
    return refs_from_entries(state_dict_entries(state), source, start_id=start_id, max_refs=max_refs)


def _module_kind(module: Any) -> str | None:
    """weightwatcher's type detection: by class, or by a word in the class name."""
    torch = require("torch", "torch")
    nn = torch.nn
    typestr = str(type(module)).lower()
    if isinstance(module, nn.Linear) or "linear" in typestr:
        return KIND_DENSE
    if isinstance(module, nn.Conv1d) or "conv1d" in typestr:
        return KIND_CONV1D
    if isinstance(module, nn.Conv2d) or "conv2d" in typestr:
        return KIND_CONV2D
    if isinstance(module, nn.Embedding) or "embedding" in typestr:
        return KIND_EMBEDDING
    return None


def module_refs(model: Any, source: str = "<module>", start_id: int = 0) -> Iterator[MatrixRef]:
    """One ref per weight-carrying module, numbered over `named_modules()` as weightwatcher does;
    fused 3-D expert parameters (a module holding ``gate_up_proj``/``down_proj``) expand per expert."""
    for offset, (longname, module) in enumerate(model.named_modules()):
        layer_id = start_id + offset
        kind = _module_kind(module)
        weight = getattr(module, "weight", None)
        if kind is not None and weight is not None and hasattr(weight, "shape"):
            yield _module_ref(longname, layer_id, kind, weight, source)
        yield from _fused_params(module, longname, layer_id, source)


def _module_ref(longname: str, layer_id: int, kind: str, weight: Any, source: str) -> MatrixRef:
    shape = tuple(weight.shape)
    info = parse_name(longname, ndim=len(shape))
    if kind == KIND_CONV1D and len(shape) == 2:
        kind_out = KIND_CONV1D  # transformers' GPT-2 Conv1D stores (in, out); orientation is irrelevant
    else:
        kind_out = kind
    longname, bad_name = checked_name(longname)
    skip = bad_name or unreadable(weight) or (None if weight.is_floating_point() else f"non-float dtype {weight.dtype}")
    return MatrixRef(
        name=longname, longname=longname, layer_id=layer_id, kind=kind_out, shape=shape,
        dtype=str(weight.dtype).replace("torch.", ""), role=info.role, layer=info.layer,
        expert=info.expert, source=source, loader=_tensor_loader(weight), skip_reason=skip,
    )


def _fused_params(module: Any, longname: str, layer_id: int, source: str) -> Iterator[MatrixRef]:
    from tailscope.sources.refs import _expert_refs, is_fused_experts

    for pname, param in module.named_parameters(recurse=False):
        full = f"{longname}.{pname}" if longname else pname
        if pname == "weight" or not is_fused_experts(full, tuple(param.shape)):
            continue
        entry = next(state_dict_entries({full: param}))
        info = parse_name(full, ndim=3)
        common = dict(longname=full, layer_id=layer_id, dtype=entry.dtype, layer=info.layer, source=source)
        yield from _expert_refs(entry, common, info.role)


def as_numpy(value: Any) -> np.ndarray:
    """A tensor-like as float32 numpy, or float64 when it is float64: its owner kept digits that
    float32 would drop (and the row's dtype column says float64)."""
    if hasattr(value, "detach"):
        t = value.detach().to("cpu")
        return (t.double() if str(t.dtype) == "torch.float64" else t.float()).numpy()
    wide = getattr(value, "dtype", None) == np.float64
    return np.asarray(value, dtype=np.float64 if wide else np.float32)
