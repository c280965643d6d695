"""Executors: run `analyze_matrix` over the selected matrices and yield rows in order.

Serial (default): reading overlaps computing: while one matrix's eigenvalues are computed, a
background thread reads and decodes the next one, so peak memory is about two matrices, never the
model.
"""

from __future__ import annotations

import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator

import numpy as np

from .config import AnalysisConfig
from .sources import MatrixRef


def prefetched(refs: Iterable[MatrixRef]) -> Iterator[tuple[MatrixRef, np.ndarray]]:
    """(ref, loaded array) pairs, reading the next matrix while the caller works on this one."""
    refs = list(refs)
    if not refs:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tailscope-read") as pool:
        pending: Future = pool.submit(refs[0].load)
        for i, ref in enumerate(refs):
            array = pending.result()
            if i + 1 < len(refs):
                pending = pool.submit(refs[i + 1].load)
            yield ref, array
            del array


def progress_bar(total: int, config: AnalysisConfig, desc: str):  # noqa: ANN202
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="matrix", file=sys.stderr, disable=None if config.progress else True, leave=False)




def run_serial(refs: list[MatrixRef], config: AnalysisConfig, device: str) -> Iterator[dict[str, Any]]:
    """Rows in order, one process, with read-ahead and a progress bar."""
    from .pipeline import analyze_matrix

    with progress_bar(len(refs), config, "analyzing") as bar:
        for ref, array in prefetched(refs):
            bar.set_postfix_str(ref.name[-40:], refresh=False)
            yield analyze_matrix(ref, array, config, device)
            bar.update(1)
