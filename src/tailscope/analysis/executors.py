"""Executors: run `analyze_matrix` over the selected matrices and yield rows in order.

Serial (default): reading overlaps computing: while one matrix's eigenvalues are computed, a
background thread reads and decodes the next one, so peak memory is about two large matrices
(plus at most POOL_BYTES of small ones in flight, below), never the model.

Small matrices (Gram work rf*N*M^2 under `POOLED_MAX_FLOPS`) are computed by a few threads at
once, each on one BLAS thread, rather than one at a time on the BLAS pool: a few-ms Gram or
eigensolve barely gains from a second BLAS thread, while two such solves side by side use both
cores fully (numpy's BLAS and LAPACK calls release the GIL: `spectrum.gram`). Measured on the 2-core machine, quiet:
24 384x384 plus 12 1536x384 Gram + syevd took 0.25 s serially on one BLAS thread, 0.20 s on two
BLAS threads, and 0.17 s as two threads of one BLAS thread each; two Mixtral-shaped layers at
quarter size (3584 x 1024 experts, work 3.8e9) took 3.85 s with the cut at 1e10 against 4.8 s at
1e9. From M ~ 2048 up a pooled pair is no faster than one matrix on two BLAS threads (4096 x 4096:
syevd 2.77 s per matrix pooled, 2.81 s alone) and holds twice the memory, so larger matrices wait
for the pooled ones to finish and then run alone with every BLAS thread. Rows come out in order.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, Iterable, Iterator

import numpy as np

from tailscope.analysis.matrix import analyze_matrix, base_columns
from tailscope.config import AnalysisConfig
from tailscope.errors import printable
from tailscope.report.store import ResultStore, content_digest
from tailscope.sources import MatrixRef, geometry
from tailscope.spectrum.routes import one_blas_thread

POOLED_MAX_FLOPS = 1e10  # below this Gram work (rf*N*M^2) a matrix is computed in the thread pool
MAX_COMPUTE_THREADS = 4
POOL_WINDOW = 16  # matrices in flight per compute thread, so that one long matrix does not idle the others
# (it was 4: MiniLM's 30522 x 384 embedding, first in the file, held the head of the queue while the
# other thread finished its share of 8 and waited; at 16, 0.31 -> 0.28 s, SmolLM2 2.45 -> 2.2 s)
POOL_BYTES = 256 * 2**20  # ... and at most this much of their decoded arrays held at once


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


class _NoBar:
    """What `progress_bar` gives with progress off: tqdm's interface, without importing tqdm (~20 ms)."""

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None


def progress_bar(total: int, config: AnalysisConfig, desc: str):  # noqa: ANN202
    if not config.progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="matrix", file=sys.stderr, disable=None, leave=False)


def compute_threads(config: AnalysisConfig, device: str) -> int:
    """Threads for small matrices: one per core (up to MAX_COMPUTE_THREADS) on the numpy route;
    one where the work is not thread-safe (matplotlib plots) or runs on torch."""
    if device != "cpu" or config.plot_target:
        return 1
    return max(1, min(MAX_COMPUTE_THREADS, len(os.sched_getaffinity(0))))


def is_small(ref: MatrixRef, config: AnalysisConfig) -> bool:
    geo = geometry(ref.kind, ref.shape, config.conv2d)
    return geo is not None and float(geo.rf) * geo.N * geo.M * geo.M < POOLED_MAX_FLOPS


def _ready(result: Future | dict[str, Any]) -> bool:
    return not isinstance(result, Future) or result.done()


def run_serial(
    refs: list[MatrixRef], config: AnalysisConfig, device: str, store: ResultStore | None = None
) -> Iterator[dict[str, Any]]:
    """Rows in order, one process, with read-ahead and a progress bar; with a `store`, rows it
    already holds are reused and each new one is stored as soon as it is made (in order)."""

    threads = compute_threads(config, device)
    pending: deque[tuple[MatrixRef, Any, Future | dict[str, Any], int]] = deque()
    with progress_bar(len(refs), config, "analyzing") as bar, ExitStack() as blas_pin, \
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tailscope-compute") as pool:

        held = 0  # bytes of the arrays of pooled matrices not yet finished

        def finish() -> dict[str, Any]:
            nonlocal held
            ref, key, result, nbytes = pending.popleft()
            held -= nbytes
            row = result.result() if isinstance(result, Future) else result
            if key is not None:
                store.append(key, row)  # type: ignore[union-attr]
            bar.set_postfix_str(printable(ref.name[-40:]), refresh=False)
            bar.update(1)
            return row

        pinned = False
        for ref, array, content in prefetched(refs, digest=store is not None):
            key = store.key(ref.name, content) if store is not None else None
            stored = store.reuse(key, base_columns(ref, config)) if store is not None else None
            if stored is not None:
                pending.append((ref, None, stored, 0))
            elif threads > 1 and is_small(ref, config):
                if not pinned:  # one BLAS thread per compute thread while pooled work runs
                    blas_pin.enter_context(one_blas_thread())
                    pinned = True
                nbytes = int(getattr(array, "nbytes", 0))  # a LoRA pair is small by construction
                pending.append((ref, key, pool.submit(analyze_matrix, ref, array, config, device), nbytes))
                held += nbytes
            else:
                while pending:
                    yield finish()
                blas_pin.close()  # a large matrix gets every BLAS thread
                pinned = False
                pending.append((ref, key, analyze_matrix(ref, array, config, device), 0))
            del array
            while pending and (len(pending) > POOL_WINDOW * threads or held > POOL_BYTES or _ready(pending[0][2])):
                yield finish()
        while pending:
            yield finish()
