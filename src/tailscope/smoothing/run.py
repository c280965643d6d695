"""`tailscope.smooth`: a new checkpoint whose chosen matrices keep only some singular components.

Streaming: each selected matrix is read, decomposed (float64 SVD), rebuilt as U_k S_k V_k^T, cast
back to its stored dtype and written in place of the original bytes; everything else is copied as
bytes. The new checkpoint is built in a temporary folder next to DST and renamed at the end, so a
failure leaves no half-written DST.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AnalysisConfig
from ..errors import ConfigError, InputError, OutputError, printable
from ..outputs import owned_entries, probe_directory, replace_directory, tree_files
from ..pipeline import skip_reason
from ..sources import INDEX_NAME, MatrixRef, Source, open_source
from ..untrusted.json_loader import MAX_INDEX_BYTES, read_json_file
from .methods import smooth_matrix
from .writer import StreamWriter, byte_range, copy_side_files, encode, patch

SIDECAR = "tailscope_smoothing.json"
TOOL = "tailscope.smooth"
_METHOD_WORDS = {"detx": "detX tail", "rmt": "above MP bulk", "svd": "top percent", "alpha_min": "power-law tail", "sharpen": "top removed"}


@dataclass
class SmoothReport:
    """What smoothing did (or, for a dry run, would do) to each selected matrix."""

    source: str
    destination: str | None
    method: str
    percent: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["changed"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": TOOL, "source": self.source, "method": self.method,
            "percent": self.percent if self.method == "svd" else None, "tensors": self.rows,
        }

    def to_text(self) -> str:
        """One line per selected matrix: kept rank / rank and the fraction of the Frobenius norm kept."""
        head = f"{'matrix':<48} {'role':<9} {'shape':>11} {'kept':>6} {'rank':>6} {'frob_kept':>9}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            kept = r["kept_rank"] if r["changed"] else "-"
            lines.append(
                f"{printable(r['name'])[:48]:<48} {r['role']:<9} {r['shape']:>11} {kept!s:>6} {r['original_rank']:>6} "
                f"{r['frob_kept']:>9.4f}  {r['note'] if r['changed'] else 'unchanged: ' + r['note']}"
            )
        n = len(self.changed)
        verb = "would change" if self.dry_run else "changed"
        lines.append(f"{self.method} ({_METHOD_WORDS[self.method]}): {verb} {n} of {len(self.rows)} selected matrices")
        return "\n".join(lines)


def smooth(src: str | Path, dst: str | Path | None = None, *, layers: Any = (), method: str = "detx",
           percent: float = 0.8, dry_run: bool = False, overwrite: bool = False, seed: int = 0,
           config: AnalysisConfig | None = None, **options: Any) -> SmoothReport:
    """Write a copy of `src` whose selected matrices are replaced by a low-rank approximation.

    Args:
        src: safetensors file, directory (sharded with an index or not), or dense GGUF file.
        dst: new directory; must not exist or be empty unless ``overwrite``. Not needed for a dry run.
        layers: which matrices (AnalysisConfig's selector: ids, roles like ``"mlp_down"``, name regexes).
        method: ``detx`` (default), ``rmt``, ``svd`` (keeps ``int(percent * rank)``), ``alpha_min``
            or ``sharpen`` (removes the top components); see `tailscope.smoothing.methods`.
        percent: fraction of the rank kept by ``svd``.
        dry_run: compute and return the table without writing anything.
        overwrite: replace a non-empty `dst`.
        seed: seed of the shuffle of ``sharpen``.
        config: an `AnalysisConfig` to start from.
        **options: further `AnalysisConfig` fields (min_evals, max_evals, max_n, ...).

    Returns:
        A `SmoothReport`; the same rows are written to ``dst/tailscope_smoothing.json``.
    """
    base = {"layers": layers, "smooth_method": method, "smooth_percent": percent, "seed": seed, **options}
    cfg = config.replace(**base) if config is not None else AnalysisConfig.from_kwargs(**base)
    src = Path(src)
    source = open_source(src)
    if source.format not in ("safetensors", "gguf"):
        raise InputError(src, f"smoothing reads safetensors files/directories or GGUF files, not {source.format} weights")
    selected = select(source, cfg)
    report = SmoothReport(str(src), None if dry_run else str(dst), cfg.smooth_method, cfg.smooth_percent, dry_run=dry_run)
    if dry_run:
        for ref in selected:
            report.rows.append(_row(ref, _smooth(ref.load(), cfg), ref.dtype, cfg.smooth_method))
        return report
    if dst is None:
        raise ConfigError("Expected argument `dst` (the output directory), but got None")
    final = _check_destination(Path(dst), source, overwrite)
    tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}")
    try:
        tmp.mkdir()
        writer = _write_gguf if source.format == "gguf" else _write_safetensors
        writer(source, selected, cfg, tmp, report)
        sidecar = report.to_dict() | {"files": tree_files(tmp)}  # what --overwrite may replace later
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1))
        replace_directory(tmp, final)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(final, f"cannot write the smoothed checkpoint: {exc.strerror or exc}{where}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def select(source: Source, cfg: AnalysisConfig) -> list[MatrixRef]:
    """The 2-D matrices (or expert slices) the `layers` selection keeps and that can be analyzed."""
    refs = [r for r in source.refs() if skip_reason(r, cfg) is None and len(r.shape) == 2]
    if not refs:
        raise ConfigError(f"`layers` {list(cfg.layers)} selects no 2-D weight matrix in {source.name}")
    return refs


def _smooth(array: np.ndarray, cfg: AnalysisConfig):  # noqa: ANN202 - methods.Smoothed
    return smooth_matrix(array, cfg.smooth_method, percent=cfg.smooth_percent, seed=cfg.seed, evals_thresh=cfg.evals_thresh)


def _row(ref: MatrixRef, result: Any, dtype_out: str, method: str) -> dict[str, Any]:
    c = result.choice
    return {
        "name": ref.name, "tensor": ref.longname, "expert": ref.expert, "layer_id": ref.layer_id, "role": ref.role,
        "shape": "x".join(map(str, ref.shape)), "dtype": dtype_out, "method": method,
        "changed": result.matrix is not None, "kept_rank": c.kept if result.matrix is not None else c.rank,
        "kept_from": c.start, "original_rank": c.rank, "frob_kept": result.frob_kept,
        "rel_error": result.rel_error, "note": c.note,
    }


def _check_destination(dst: Path, source: Source, overwrite: bool) -> Path:
    """Before any work: DST is not the source, is new, empty, or (with `overwrite`) an earlier
    output of ours holding nothing else, and its folder is writable."""
    src = Path(source.path).resolve()
    src_dir = src if src.is_dir() else src.parent
    final = dst.resolve()
    if final == src_dir or (src.is_dir() and final.is_relative_to(src_dir)) or src_dir.is_relative_to(final):
        raise InputError(dst, f"output must not contain or lie inside the source {source.path}")
    if final.exists() and not final.is_dir():
        raise OutputError(dst, "exists and is not a directory")
    if final.exists() and any(final.iterdir()):
        if not overwrite:
            raise OutputError(dst, "exists and is not empty; pass --overwrite (overwrite=True) to replace an earlier smoothing output")
        why = owned_entries(final, SIDECAR, (TOOL,))
        if why:
            raise OutputError(dst, f"--overwrite replaces only an earlier tailscope output, and this directory {why}; refusing to delete it")
    probe_directory(final.parent, "the smoothed checkpoint")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(final.parent, f"cannot create the output's folder: {exc.strerror or exc}") from None
    return final


def _write_safetensors(source: Source, selected: list[MatrixRef], cfg: AnalysisConfig, out: Path, report: SmoothReport) -> None:
    """Copy every shard byte for byte, then overwrite the selected matrices' bytes in place."""
    root = Path(source.path)
    src_dir = root if root.is_dir() else root.parent
    by_file: dict[str, list[MatrixRef]] = defaultdict(list)
    for ref in selected:
        by_file[str(Path(ref.loader.path).resolve())].append(ref)
    for shard in _shards(root):
        target = out / shard.name
        shutil.copyfile(shard, target)
        with open(target, "r+b") as fh:
            for ref in by_file.get(str(shard.resolve()), []):
                result = _smooth(ref.load(), cfg)
                report.rows.append(_row(ref, result, ref.dtype, cfg.smooth_method))
                if result.matrix is not None:
                    offset, size = byte_range(ref.loader)
                    patch(fh, offset, encode(result.matrix, ref.dtype), size, ref.longname)
    if (src_dir / INDEX_NAME).exists() and root.is_dir():
        shutil.copyfile(src_dir / INDEX_NAME, out / INDEX_NAME)
    copy_side_files(src_dir, out, everything=root.is_dir())


def _shards(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    index = root / INDEX_NAME
    if index.exists():
        names = sorted(set(read_json_file(index, "the file", MAX_INDEX_BYTES)["weight_map"].values()))  # checked by open_source
        return [root / n for n in names]
    return sorted(p for p in root.glob("*.safetensors") if p.is_file() and not p.name.startswith("adapter_"))


def _write_gguf(source: Source, selected: list[MatrixRef], cfg: AnalysisConfig, out: Path, report: SmoothReport) -> None:
    """GGUF -> one float32 model.safetensors with HF names, config.json and the tokenizer."""
    from ..sources.gguf_hf import hf_array, hf_tensor_names, load_tokenizer

    path = Path(source.path)
    config, pairs = hf_tensor_names(path)
    tokenizer = load_tokenizer(path)  # before any matrix is smoothed: a GGUF without one fails first
    chosen = {ref.longname: ref for ref in selected}
    writer = StreamWriter(out / "model.safetensors", [(hf, t.shape) for t, hf in pairs], "F32")
    try:
        for tensor, hf in pairs:
            values = hf_array(path, tensor, config)
            ref = chosen.get(tensor.name)
            if ref is not None:
                result = _smooth(values, cfg)
                report.rows.append(_row(ref, result, "F32", cfg.smooth_method) | {"tensor": hf})
                if result.matrix is not None:
                    values = result.matrix
            writer.write(hf, values)
    finally:
        writer.close()
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
