"""Durable results: every finished row is appended, fsync'ed, to a JSON-lines file as it is made.

Why JSON lines rather than SQLite: the only operations are "append one row" and "read all rows
once at start", which an append-only text file does with one write + fsync per row and nothing
else to configure; a writer killed mid-row leaves at most one torn last line, which readers skip
and the next writer cuts off; the file is readable with `jq`/pandas; and each model gets its own
file, so concurrent runs on different models never contend (appends to a shared file are
serialized with `flock`, so even two runs of one model stay line-atomic).

A row is reused only when all of its key matches: the tensor's name, a blake2b hash of its
content (the decoded float32 values, shape included, a lossless function of the stored bytes) and
a hash of every option that can change a row's numbers (all but `NOT_ROW_OPTIONS`), the tailscope
version and the record schema. Selection options (`layers`, `min_evals`, ...) only decide which
rows exist, so they are not part of the key. The columns that describe the row's position (`layer_id`, ...) are
recomputed on every run and overwrite the stored ones.

A results file starts with the line `HEADER` (files written before it existed start with a
record), and a file that starts with anything else is refused, never appended to or cut: a
`--results notes.jsonl` typo must not touch the user's notes. An append that fails (full disk,
read-only filesystem) is cut back to where it started and reported as an `OutputError`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tailscope.errors import InputError, OutputError
from tailscope.outputs import fsync_path
from tailscope.rows.metrics import COLUMNS, DIAGNOSTIC_COLUMNS
from tailscope.untrusted.json_loader import parse_json
from tailscope.untrusted.regular_files import read_regular

SCHEMA = 1
SUFFIX = ".jsonl"
# options that only decide which rows exist, or how the run is shown/stored; every other option
# (present or future) is assumed to change a row's numbers and is part of the key
NOT_ROW_OPTIONS = frozenset({"layers", "min_evals", "max_evals", "max_n", "max_elements", "max_refs", "progress",
                             "results", "cache", "executor", "workers", "address", "plot", "plot_dir"})
_TAIL_CHUNK = 1 << 16
MAX_LINE_BYTES = 2**20  # one row is ~2 KB; a longer line is skipped like a torn one
MAX_RESULTS_BYTES = 2**30  # read whole at start: ~500k rows
NUMERIC_COLUMNS = frozenset(COLUMNS[COLUMNS.index("M") : COLUMNS.index("has_esd")] + DIAGNOSTIC_COLUMNS)
HEADER = b'{"tailscope": "results", "schema": 1}\n'

Key = tuple[str, str, str]


def content_digest(array: np.ndarray) -> str:
    """blake2b of a tensor's values, dtype and shape."""
    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode(), digest_size=16)
    h.update(a.reshape(-1).view(np.uint8).data if a.size else b"")
    return h.hexdigest()


def options_digest(config: Any) -> str:
    """Hash of the options (and code version) that change a row's numbers."""
    from tailscope import __version__

    names = [f.name for f in dataclasses.fields(config) if not f.name.startswith("_") and f.name not in NOT_ROW_OPTIONS]
    values = {name: getattr(config, name) for name in names}
    values.update(version=__version__, schema=SCHEMA)
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def results_file(results: str | os.PathLike, model_key: str) -> Path:
    """PATH itself if it ends in .jsonl, else one file per model inside the directory PATH."""
    path = Path(results)
    if path.suffix == SUFFIX:
        return path
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_key).name)[:80].strip("._") or "model"
    tag = hashlib.blake2b(model_key.encode(), digest_size=4).hexdigest()
    return path / f"{stem}-{tag}{SUFFIX}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a results row")


class ResultStore:
    """Rows already computed (read once) and an fsync'ed append for each new one."""

    def __init__(self, path: Path, options: str) -> None:
        self.path, self.options = path, options
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create(path)
            data = read_regular(path, MAX_RESULTS_BYTES, "results file")
        except OSError as exc:
            raise OutputError(path, f"cannot use as a results file: {exc.strerror or exc}") from None
        if not _ours(data, path):
            raise OutputError(path, "exists and is not a tailscope results file (its first line is neither "
                                    f"{HEADER.decode().strip()} nor a results record); refusing to append to it")
        self.rows = self._read(data)
        self.reused = 0

    def key(self, name: str, content: str) -> Key:
        return (name, content, self.options)

    def _read(self, data: bytes) -> dict[Key, dict[str, Any]]:
        """Complete, well-formed lines only (others are skipped like a torn one); the first record of a key wins."""
        rows: dict[Key, dict[str, Any]] = {}
        for number, line in enumerate(data.split(b"\n")[:-1], 1):  # the part after the last newline is torn
            record = _parse(line, self.path, number)
            if record is not None:
                rows.setdefault((record["name"], record["content"], record["options"]), record["row"])
        return rows

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.rows.get(key)

    def append(self, key: Key, row: dict[str, Any]) -> None:
        """One line, written whole under an exclusive lock and fsync'ed before returning."""
        record = {"name": key[0], "content": key[1], "options": key[2], "row": row}
        line = (json.dumps(record, default=_jsonable, allow_nan=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            raise OutputError(self.path, f"cannot append a row: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _cut_torn_tail(fd)
            _append(fd, line)
        except OSError as exc:
            raise OutputError(self.path, f"cannot append a row (the rows before it are kept): {exc.strerror or exc}") from None
        finally:
            os.close(fd)  # releases the lock
        self.rows.setdefault(key, row)

    def reuse(self, key: Key, base: dict[str, Any]) -> dict[str, Any] | None:
        """The stored row for `key` with this run's position columns, or None (then compute and
        `append` it)."""
        stored = self.get(key)
        if stored is None:
            return None
        self.reused += 1
        return {**stored, **base}


def _parse(line: bytes, path: Path, number: int) -> dict[str, Any] | None:
    """The record of one line, or None for anything this module would not have written."""
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        record = parse_json(line, path, f"results line {number}")
    except InputError:
        return None
    ok = isinstance(record, dict) and isinstance(record.get("row"), dict)
    ok = ok and all(isinstance(record.get(k), str) for k in ("name", "content", "options"))
    return record if ok and _is_row(record["row"]) else None


def _is_row(row: dict[str, Any]) -> bool:
    """Scalars only, a known status, numbers (or null) in the numeric columns: a reused row must
    not break the table, its summary or a plot."""
    if row.get("status", "success") not in ("success", "failed", "degenerate"):
        return False
    for key, value in row.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            return False
        if key in NUMERIC_COLUMNS and isinstance(value, (bool, str)):
            return False
    return all(isinstance(row.get(k, ""), str) for k in ("name", "warning", "reason"))


def _create(path: Path) -> None:
    """Create the file with its header line already in it, unless it exists (another run may be
    creating it): the header is written to a temporary file that is then hard-linked into place,
    so no run ever sees our file without its header."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(path):x}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _append(fd, HEADER)
        os.close(fd)
        fd = -1
        _link_new(tmp, path)
        fsync_path(path.parent)
    except FileExistsError:
        pass
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, path: Path) -> None:
    """Hard-link `tmp` to `path` (FileExistsError if it exists); where the filesystem has no hard
    links, create `path` exclusively and write the header (a run opening it in that instant sees
    it empty, which it accepts)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _append(fd, HEADER)
        finally:
            os.close(fd)


def _ours(data: bytes, path: Path) -> bool:
    """Empty (just created elsewhere), or a first line that is our header or one of our records."""
    first = data.split(b"\n", 1)[0]
    return not data or data.startswith(HEADER) or (b"\n" in data and _parse(first, path, 1) is not None)


def _append(fd: int, line: bytes) -> None:
    """Write `line` whole and fsync it, or cut the file back to its size before (full disk)."""
    size = os.fstat(fd).st_size
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass  # the torn line is cut by the next writer, and readers skip it
        raise


def _cut_torn_tail(fd: int) -> None:
    """Under the lock, a file not ending in a newline means a writer died mid-line: cut it off."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        if end == size and chunk.endswith(b"\n"):
            return
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)


class ContentCache(ResultStore):
    """A store keyed by content and options only: one file shared by every model.

    Rows are reused across names: the stored row's numbers with this run's name and position
    columns, which is exact, since equal values give the same spectrum.
    """

    FILE = "rows.jsonl"

    def key(self, name: str, content: str) -> Key:
        return ("", content, self.options)


def open_store(results: str | os.PathLike | None, model_key: str, config: Any) -> ResultStore | None:
    """The store for one model's run: its results file, the shared cache, or None."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return ContentCache(Path(cache) / ContentCache.FILE, options_digest(config))
    if results is None:
        return None
    return ResultStore(results_file(results, model_key), options_digest(config))
