"""Shared by the validation sections: planted spectra and markdown tables."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pareto_tail(rng: np.random.Generator, n: int, alpha: float, xmin: float = 1.0) -> np.ndarray:
    """n i.i.d. draws of a continuous power law p(x) ~ x^-alpha above xmin (ascending)."""
    return np.sort(xmin * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0)))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table; floats with 3 decimals."""
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
