"""Open input files only when they are regular files, so a FIFO, a device or a socket named like
a model fails at once instead of blocking the reader forever.

The check is made on the opened descriptor (opened non-blocking, so opening a FIFO with no writer
returns at once), which leaves no window between checking a path and reading it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from tailscope.errors import InputError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def kind_of(mode: int) -> str:
    """'a FIFO (named pipe)', 'a directory', ... for a non-regular st_mode."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | Path) -> BinaryIO:
    """The file opened for binary reading, or an InputError if it is missing or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(path, f"is {kind_of(mode)}, not a regular file; refusing to read it")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path) -> None:
    """Raise unless `path` is a regular file (for readers that open the path themselves: torch, mmap)."""
    open_regular(path).close()


def read_regular(path: str | Path, max_bytes: int, what: str) -> bytes:
    """The whole file, if it is a regular file of at most `max_bytes` bytes."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise InputError(path, f"{what} of {size} bytes exceeds the {max_bytes}-byte limit")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # grew while we read it
        raise InputError(path, f"{what} exceeds the {max_bytes}-byte limit")
    return data


def read_regular_text(path: str | Path, max_bytes: int, what: str) -> str:
    """read_regular, decoded as UTF-8 (an InputError naming the first bad byte otherwise)."""
    data = read_regular(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
