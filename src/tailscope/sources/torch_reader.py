"""PyTorch inputs: `.bin`/`.pt` state dicts (weights-only unpickling), in-memory state dicts, modules.

Only `torch.load(weights_only=True)` ever touches a pickle: it refuses any object that would need
code to be rebuilt, and we turn that refusal into an error that says how to convert the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import InputError, require
from .base import KIND_CONV1D, KIND_CONV2D, KIND_DENSE, KIND_EMBEDDING, MatrixRef
from .naming import parse_name
from .refs import TensorEntry, refs_from_entries
from ..untrusted.regular_files import check_regular
from .tensor_names import checked_name

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
    return _unwrap(obj, path)


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


def _tensor_loader(tensor: Any):  # noqa: ANN202
    return lambda: tensor.detach().to("cpu").float().numpy()


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


def state_dict_refs(state: Mapping[str, Any], source: str, start_id: int = 0) -> Iterator[MatrixRef]:
    return refs_from_entries(state_dict_entries(state), source, start_id=start_id)


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
    from .refs import _expert_refs, is_fused_experts

    for pname, param in module.named_parameters(recurse=False):
        full = f"{longname}.{pname}" if longname else pname
        if pname == "weight" or not is_fused_experts(full, tuple(param.shape)):
            continue
        entry = next(state_dict_entries({full: param}))
        info = parse_name(full, ndim=3)
        common = dict(longname=full, layer_id=layer_id, dtype=entry.dtype, layer=info.layer, source=source)
        yield from _expert_refs(entry, common, info.role)


def as_numpy(value: Any) -> np.ndarray:
    """A tensor-like as float32 numpy."""
    if hasattr(value, "detach"):
        return value.detach().to("cpu").float().numpy()
    return np.asarray(value, dtype=np.float32)
