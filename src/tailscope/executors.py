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
from .report.store import ResultStore, content_digest
from .sources import MatrixRef


def _read(ref: MatrixRef, digest: bool) -> tuple[np.ndarray, str | None]:
    array = ref.load()
    return array, content_digest(array) if digest else None


def prefetched(refs: Iterable[MatrixRef], digest: bool = False) -> Iterator[tuple[MatrixRef, np.ndarray, str | None]]:
    """(ref, loaded array, content hash if asked) triples, reading (and hashing) the next matrix
    while the caller works on this one."""
    refs = list(refs)
    if not refs:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tailscope-read") as pool:
        pending: Future = pool.submit(_read, refs[0], digest)
        for i, ref in enumerate(refs):
            array, content = pending.result()
            if i + 1 < len(refs):
                pending = pool.submit(_read, refs[i + 1], digest)
            yield ref, array, content
            del array


def progress_bar(total: int, config: AnalysisConfig, desc: str):  # noqa: ANN202
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="matrix", file=sys.stderr, disable=None if config.progress else True, leave=False)




def run_serial(
    refs: list[MatrixRef], config: AnalysisConfig, device: str, store: ResultStore | None = None
) -> Iterator[dict[str, Any]]:
    """Rows in order, one process, with read-ahead and a progress bar; with a `store`, rows it
    already holds are reused and each new one is stored as soon as it is made."""
    from .pipeline import analyze_matrix, base_columns

    with progress_bar(len(refs), config, "analyzing") as bar:
        for ref, array, content in prefetched(refs, digest=store is not None):
            bar.set_postfix_str(ref.name[-40:], refresh=False)
            compute = lambda: analyze_matrix(ref, array, config, device)  # noqa: E731
            if store is None:
                yield compute()
            else:
                yield store.row(store.key(ref.name, content), base_columns(ref, config), compute)
            bar.update(1)
