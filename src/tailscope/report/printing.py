"""Text safe for a terminal: cells and names escaped before they are printed."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tailscope.errors import printable


def printable_frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every text cell (and column name) made printable, for the terminal: escaping
    cells before `to_string` keeps the columns aligned."""
    def clean(v: Any) -> Any:
        return printable(v) if isinstance(v, str) else v

    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    out = df.assign(**{c: df[c].map(clean) for c in text}) if text else df
    return out.rename(columns=lambda c: clean(c), index=lambda i: clean(i))
