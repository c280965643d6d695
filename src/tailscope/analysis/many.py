"""Many checkpoints, one table: `analyze` each path in turn and stack the details with a model column."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailscope.analysis.pipeline import analyze
from tailscope.errors import ConfigError, InputError
from tailscope.untrusted.regular_files import read_regular_text

if TYPE_CHECKING:
    import pandas as pd

MAX_LIST_BYTES = 16 * 2**20  # a list of model paths


def analyze_many(paths: list[Any], **options: Any) -> "pd.DataFrame":
    """One details table over many checkpoints, a ``model`` column first (each path as given).

    Models run one after the other, each with the executor in `options`; the paths of a
    ``LIST.txt`` are read by `read_list`.
    """
    import pandas as pd

    if not paths:
        raise ConfigError("Expected `paths` to name at least one model, but got none")
    tables = []
    for path in paths:
        details = analyze(path, **options).details
        tables.append(details.assign(model=str(path))[["model", *details.columns]])
    return pd.concat(tables, ignore_index=True)


def read_list(list_file: str | Path) -> list[str]:
    """Model paths from a text file, one a line; blank lines and '#' comments ignored.

    Relative paths are taken relative to the list file's directory.
    """
    p = Path(list_file)
    if not p.exists():
        raise InputError(p, "no such list file")
    lines = [ln.split("#", 1)[0].strip() for ln in read_regular_text(p, MAX_LIST_BYTES, "list file").splitlines()]
    paths = [str((p.parent / ln) if not Path(ln).is_absolute() else Path(ln)) for ln in lines if ln]
    if not paths:
        raise InputError(p, "the list names no model")
    return paths
