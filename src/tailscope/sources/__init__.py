"""Readers: turn whatever the user points at into a stream of lazy MatrixRefs.

A reader never computes; it knows names, shapes and where the bytes are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from tailscope.config import AnalysisConfig
from tailscope.errors import InputError
from tailscope.sources.base import Geometry, MatrixRef, geometry
from tailscope.sources.gguf_reader import gguf_entries, read_gguf
from tailscope.sources.paths import inside as _inside
from tailscope.sources.refs import TensorEntry, refs_from_entries
from tailscope.sources.safetensors_reader import iter_file_tensors
from tailscope.untrusted.json_loader import MAX_INDEX_BYTES, read_json_file

__all__ = ["Source", "open_source", "MatrixRef", "Geometry", "geometry"]

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
INDEX_NAME = "model.safetensors.index.json"


@dataclass
class Source:
    """A model to read: a display name, its matrices (lazily) and whatever metadata it carries."""

    name: str
    refs: Callable[[], Iterator[MatrixRef]]
    format: str
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def open_source(obj: Any, *, start_id: int = 0, max_refs: int = AnalysisConfig.max_refs) -> Source:
    """Resolve a path, module or state dict to a `Source` (header reads only) of at most
    `max_refs` matrices."""
    if hasattr(obj, "named_modules"):
        from tailscope.sources.torch_reader import module_refs

        return Source(type(obj).__name__, lambda: module_refs(obj, type(obj).__name__, start_id), "module")
    if isinstance(obj, Mapping):
        from tailscope.sources.torch_reader import state_dict_refs

        return Source("<state_dict>", lambda: state_dict_refs(_as_tensors(obj), "<state_dict>", start_id, max_refs), "state_dict")
    if isinstance(obj, (str, Path)):
        return _open_path(Path(obj), start_id, max_refs)
    raise InputError(repr(obj)[:80], f"cannot analyze a {type(obj).__name__}: expected a path, an nn.Module or a state dict")


def _as_tensors(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept numpy arrays in a state dict by viewing them as tensors."""
    import numpy as np

    if not any(isinstance(v, np.ndarray) for v in state.values()):
        return state
    from tailscope.errors import require

    torch = require("torch", "torch")
    return {k: torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _open_path(path: Path, start_id: int, max_refs: int) -> Source:
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.is_dir():
        return _open_dir(path, start_id, max_refs)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _safetensors_source(path, [path], None, start_id, max_refs)
    if suffix == ".gguf":
        return _gguf_source(path, start_id, max_refs)
    if suffix in (".bin", ".pt", ".pth"):
        return _torch_source(path, [path], start_id, max_refs)
    if path.name == INDEX_NAME:
        return _open_dir(path.parent, start_id, max_refs)
    raise InputError(path, f"unknown weight file type '{suffix}'; expected one of {', '.join(WEIGHT_SUFFIXES)}")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # e.g. a name too long for the filesystem
        return False


def _open_dir(path: Path, start_id: int, max_refs: int) -> Source:
    index = path / INDEX_NAME
    if index.exists():
        _inside(path, index)
        files, order = _read_index(index, path)
        return _safetensors_source(path, files, order, start_id, max_refs)
    for pattern, opener in (("*.safetensors", "st"), ("*.bin", "pt"), ("*.pt", "pt"), ("*.pth", "pt"), ("*.gguf", "gguf")):
        files = sorted(p for p in path.glob(pattern) if p.is_file() and not p.name.startswith("adapter_"))
        if not files:
            continue
        files = [_inside(path, f) for f in files]
        if opener == "st":
            return _safetensors_source(path, files, None, start_id, max_refs)
        if opener == "pt":
            return _torch_source(path, files, start_id, max_refs)
        if len(files) > 1:
            raise InputError(path, f"holds {len(files)} GGUF files; point at one of them")
        return _gguf_source(files[0], start_id, max_refs)
    raise InputError(path, "no weights found (looked for *.safetensors, *.bin, *.pt, *.pth, *.gguf)")


def _read_index(index: Path, root: Path) -> tuple[list[Path], dict[Path, list[str]]]:
    """Shards in weightwatcher's order (sorted file names) with each shard's keys in index order."""
    data = read_json_file(index, "the file", MAX_INDEX_BYTES)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise InputError(index, "not a valid safetensors index (expected an object with a 'weight_map' object)")
    order: dict[Path, list[str]] = {}
    for key, shard in weight_map.items():
        if not isinstance(shard, str):
            raise InputError(index, f"shard of '{key}' is not a file name")
        try:
            shard_path = _inside(root, root / shard)
        except InputError as exc:
            raise InputError(index, f"shard '{shard}': {exc.problem}") from None
        if not _is_file(shard_path):
            raise InputError(index, f"names shard '{shard}' which does not exist or is not a file")
        order.setdefault(shard_path, []).append(key)
    files = sorted(order)
    return files, order


def _safetensors_source(
    path: Path, files: list[Path], order: dict[Path, list[str]] | None, start_id: int, max_refs: int
) -> Source:
    from tailscope.sources.safetensors_reader import read_header

    for f in files:  # validate every header up front: a bad shard fails before any work
        read_header(f)

    def entries() -> Iterator[TensorEntry]:
        for f in files:
            for info, _loader in iter_file_tensors(f, order.get(f) if order else None):
                yield _st_entry(f, info)

    return Source(str(path), lambda: refs_from_entries(entries(), str(path), start_id, max_refs), "safetensors", path)


def _st_entry(f: Path, info: Any) -> TensorEntry:
    from tailscope.sources.safetensors_reader import SafetensorsLoader

    return TensorEntry(
        info.name, info.shape, info.dtype, info.is_float,
        lambda expert, half: SafetensorsLoader(str(f), info, expert, half),
    )


def _gguf_source(path: Path, start_id: int, max_refs: int) -> Source:
    _, meta = read_gguf(path)
    refs = lambda: refs_from_entries(gguf_entries(path), str(path), start_id, max_refs)  # noqa: E731
    return Source(str(path), refs, "gguf", path, meta)


def _torch_source(path: Path, files: list[Path], start_id: int, max_refs: int) -> Source:
    from tailscope.sources.torch_reader import load_state_dict_file, state_dict_entries

    def entries() -> Iterator[TensorEntry]:
        for f in files:  # one shard in memory at a time
            yield from state_dict_entries(load_state_dict_file(f))

    return Source(str(path), lambda: refs_from_entries(entries(), str(path), start_id, max_refs), "torch", path)
