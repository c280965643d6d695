"""Files and folders a run writes: checked before any work, written whole or not at all.

`atomic_write` writes to a temporary file in the target's own directory, fsyncs it and renames
it over the target (one atomic rename on one filesystem), so a crash, a kill or a full disk leaves
the old file or the new one, never half of one; the temporary file is removed on failure. Every
`OSError` becomes an `OutputError` naming the path (one line, exit code 2 from the CLI).

`check_file` / `check_directory` run before an analysis computes anything: the extension, no
directory where a file goes (or the reverse), and a directory in which a file can really be
created. Writability is probed by creating and removing a file, because `os.access` answers
"yes" to root on a directory whose mode says no, and knows nothing of a full disk's quota.

`replace_directory` puts a finished folder in place of an earlier output of ours: it moves the old
one aside, renames the new one in, and only then deletes the old one; `owned_entries` decides
whether a folder is ours to replace: its sidecar lists every file in it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from tailscope.errors import ConfigError, OutputError


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _existing_ancestor(path: Path) -> Path:
    """The nearest part of `path` that exists (where a missing folder would be created)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_directory(directory: str | Path, what: str, target: str | Path | None = None) -> Path:
    """Fail now, not after the work, if no file can be created in `directory` (or in the folder
    that would hold it once created); the error names `target` (the file to be written) if given."""
    directory = Path(directory)
    named = directory if target is None else target
    base = _existing_ancestor(directory)
    if not base.is_dir():
        raise OutputError(named, f"cannot write {what} here: {base} is not a directory")
    name = base / f".tailscope-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(name)
    except OSError as exc:
        raise OutputError(named, f"cannot write {what} in {base}: {_reason(exc)}") from None
    return directory


def check_file(path: str | Path, option: str, suffixes: Iterable[str] | None = None) -> Path:
    """A file target that can be written: right extension, not a directory, writable folder."""
    path = Path(path)
    allowed = tuple(suffixes or ())
    if allowed and path.suffix.lower() not in allowed:
        raise ConfigError(f"Expected `{option}` to end in {', '.join(allowed)}, but got {str(path)!r}")
    if path.is_dir():
        raise OutputError(path, f"`{option}` is a directory; expected a file name")
    probe_directory(path.parent, f"`{option}`", path)
    return path


def check_directory(path: str | Path, option: str) -> Path:
    """A directory target that exists or can be created and written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, f"`{option}` exists and is not a directory")
    probe_directory(path, f"`{option}`")
    return path


def _temporary(path: Path) -> Path:
    """A new empty file beside `path` (created with the umask's mode, as a plain open would)."""
    while True:
        tmp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Run `write(tmp)` on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a directory; expected a file name")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path)
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        tmp = None
        fsync_path(path.parent)
    except OSError as exc:
        raise OutputError(path, f"cannot write: {_reason(exc)}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def tree_files(directory: Path) -> list[str]:
    """Every file and link under `directory`, as sorted relative POSIX paths (links not followed)."""
    out = []
    for root, dirs, files in os.walk(directory):
        here = Path(root)
        links = [d for d in dirs if (here / d).is_symlink()]  # os.walk lists a linked folder with the folders
        out += [(here / f).relative_to(directory).as_posix() for f in files + links]
    return sorted(out)


def owned_entries(directory: Path, sidecar: str, tools: tuple[str, ...]) -> str | None:
    """Why `directory` is not ours to replace, or None when its sidecar (written by one of
    `tools`) lists every file in it."""
    marker = directory / sidecar
    if marker.is_symlink() or not marker.is_file():
        return f"holds no {sidecar}, so it is not a tailscope output"
    try:
        data = json.loads(marker.read_bytes()[: 64 * 2**20])
    except (OSError, ValueError, RecursionError):
        return f"its {sidecar} is not one tailscope wrote"
    if not isinstance(data, dict) or data.get("tool") not in tools or not isinstance(data.get("files"), list):
        return f"its {sidecar} is not one tailscope wrote (no list of the files it wrote)"
    extra = sorted(set(tree_files(directory)) - set(map(str, data["files"])) - {sidecar})
    if extra:
        return f"holds files tailscope did not write ({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''})"
    return None


def replace_directory(new: Path, final: Path) -> None:
    """Rename the finished folder `new` to `final`; an existing `final` is moved aside first and
    deleted only once the new one is in place (restored if the rename fails)."""
    old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}") if final.exists() else None
    try:
        if old is not None:
            final.rename(old)
        try:
            new.rename(final)
        except OSError:
            if old is not None:
                old.rename(final)
            raise
        fsync_path(final.parent)
    except OSError as exc:
        raise OutputError(final, f"cannot put the output in place: {_reason(exc)}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
