"""Fine-tune deltas: analyze W - W_base for every matrix present in both models.

Pairs are matched by matrix name (expert slices included) and streamed: each pair's loader
reads one tensor from each source and subtracts, so at most one pair (plus the read-ahead) is in
memory, never either model. The difference is float32, rounded to nearest: exact whenever the two
entries are within a factor 2^15 of each other (bf16 or fp16 weights and a fine-tune's small
moves), else off by at most half a float32 ulp (2^-24 relative), far below what any spectral
column resolves. A float64 difference held three matrices per pair where float32 holds two: on
two Mistral-7B-shaped layers with `base=` the peak anonymous memory was 1552 MiB in float64. Any name present on one side only, or a shape that differs, is an
error listing a few of them and the count: silently analyzing a subset would hide that the two
checkpoints are not what the user thinks. `layers=` narrows both sides before matching.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import numpy as np

from tailscope.errors import InputError
from tailscope.sources import MatrixRef, Source

SHOWN = 5


def _listing(items: list[str]) -> str:
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _delta_loader(ft: MatrixRef, base: MatrixRef) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        w = np.array(ft.load(), dtype=np.float32)  # our own copy: a source may hand out a model's memory
        w -= base.load()
        return w

    return load


def check_pairs(ft_names: dict[str, MatrixRef], base_names: dict[str, MatrixRef], ft: str, base: str) -> None:
    """Raise one InputError naming every kind of mismatch (a few names each, and their counts)."""
    only_ft = [n for n in ft_names if n not in base_names]
    only_base = [n for n in base_names if n not in ft_names]
    shapes = [f"{n} {ft_names[n].shape} vs {base_names[n].shape}" for n in ft_names
              if n in base_names and ft_names[n].shape != base_names[n].shape]
    problems = []
    if only_ft:
        problems.append(f"{len(only_ft)} matrices only in the model: {_listing(only_ft)}")
    if only_base:
        problems.append(f"{len(only_base)} only in the base: {_listing(only_base)}")
    if shapes:
        problems.append(f"{len(shapes)} with different shapes: {_listing(shapes)}")
    if problems:
        raise InputError(ft, f"does not match base {base}: " + "; ".join(problems)
                         + " (narrow both with `layers=`, e.g. layers='-embed')")


def delta_source(source: Source, base: Source, keep: Callable[[MatrixRef], bool], name: str) -> Source:
    """`source` whose kept matrices each load W - W_base of their `base` counterpart.

    The pairing is checked when the refs are first listed (at planning, before any tensor is read);
    refs that `keep` rejects pass through unchanged, so the plan reports them as skipped as usual.
    """

    def refs() -> Iterator[MatrixRef]:
        ft_refs = list(source.refs())
        kept = {r.name: r for r in ft_refs if keep(r)}
        base_refs = {r.name: r for r in base.refs() if keep(r)}
        check_pairs(kept, base_refs, source.name, base.name)
        for ref in ft_refs:
            yield dataclasses.replace(ref, loader=_delta_loader(ref, base_refs[ref.name])) if ref.name in kept else ref

    return Source(name, refs, "delta", source.path, source.metadata)
