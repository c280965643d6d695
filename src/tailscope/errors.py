"""One exception family, raised at the public boundary with the user's input in the message."""

from __future__ import annotations

from pathlib import Path


class TailscopeError(Exception):
    """Base class of every error tailscope raises on purpose."""


class ConfigError(TailscopeError, ValueError):
    """An option has a wrong value: the message names the option, what was expected and what came."""


class InputError(TailscopeError):
    """A file or object cannot be read: the message names the file and the problem."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = _one_line(str(source))
        self.problem = _one_line(problem)
        super().__init__(f"{self.source}: {self.problem}")


class OutputError(TailscopeError):
    """A file or directory cannot be written (read-only, no permission, full disk, a directory in
    the way), or holds data tailscope will not overwrite: the message names the path and why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = _one_line(str(path))
        self.problem = _one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")


def printable(text: str) -> str:
    """`text` with every non-printable character written as its escape (``\x1b``, ``\n``,
    ``\u202e``): a name from a file can neither drive the terminal (ANSI escape sequences) nor
    reorder the text around it (bidirectional overrides), and it stays on its line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _one_line(text: str) -> str:
    """Escape control characters (a hostile file's tensor names may hold newlines) and cap the
    length, so an error stays one readable line."""
    text = printable(text)
    return text if len(text) <= 600 else text[:600] + "..."


class MissingDependencyError(TailscopeError, ImportError):
    """An optional dependency is needed for this feature."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the '{package}' package: pip install 'tailscope[{extra}]'"
        )


def require(module: str, extra: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise an error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra) from exc
