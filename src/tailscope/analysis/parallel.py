"""Parallel executors: a local process pool and Ray, each task reading its own tensor by path.

No array crosses the driver: a task carries (path, index of the matrix in the plan, options).
The worker reopens the source (a header read, cached per worker process), rebuilds the same plan,
loads matrix `index` itself and returns only its row. So a model must be a path on storage every
worker can read (shared storage for a Ray cluster); an in-memory model is refused.

Rows come back in plan order, a progress bar advancing as each arrives; at most
``2 * workers`` tasks are in flight, so driver memory stays a handful of rows. BLAS threads are
split between workers (cores // workers each) so the pool does not oversubscribe the CPU.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError, require
from tailscope.sources import MatrixRef

_PLANS: dict[tuple[str, AnalysisConfig], list[MatrixRef]] = {}


def check_path(model: Any, executor: str) -> str:
    """The model's path as a string, or a clear error for what a worker cannot reopen."""
    if not isinstance(model, (str, Path)):
        raise ConfigError(f"Expected a path with `executor`={executor!r} (each worker reads its own tensor), "
                          f"but got an in-memory {type(model).__name__}; use executor='serial'")
    return str(Path(model).resolve())


def _plan_for(path: str, config: AnalysisConfig) -> list[MatrixRef]:
    from tailscope.analysis.matrix import plan
    from tailscope.sources import open_source

    key = (path, config)
    if key not in _PLANS:
        _PLANS.clear()  # one model at a time per worker: bounded memory
        _PLANS[key] = plan(open_source(path, max_refs=config.max_refs), config)[0]
    return _PLANS[key]


def analyze_task(path: str, index: int, name: str, config: AnalysisConfig, device: str, threads: int) -> dict[str, Any]:
    """One row, computed where this runs: reopen `path`, load matrix `index` of the plan, analyze it."""
    from threadpoolctl import threadpool_limits

    from tailscope.analysis.matrix import analyze_matrix

    ref = _plan_for(path, config)[index]
    if ref.longname != name:
        raise ConfigError(f"{path}: the worker's plan differs from the driver's at {index} ({ref.longname} != {name})")
    with threadpool_limits(limits=threads):
        return analyze_matrix(ref, ref.load(), config, device)


def blas_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def in_order(submit: Callable[[int], Any], wait: Callable[[Any], dict[str, Any]], total: int, window: int,
             bar: Any) -> Iterator[dict[str, Any]]:
    """Rows 0..total-1 in order, with at most `window` tasks submitted and not yet collected."""
    pending: deque = deque()
    nxt = 0
    while nxt < total or pending:
        while nxt < total and len(pending) < window:
            pending.append(submit(nxt))
            nxt += 1
        row = wait(pending.popleft())
        bar.update(1)
        yield row


def run_process(path: str, refs: list[MatrixRef], config: AnalysisConfig, device: str) -> Iterator[dict[str, Any]]:
    """A local spawn-started process pool of `config.workers` processes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tailscope.analysis.executors import progress_bar

    workers = config.workers or min(len(refs), os.cpu_count() or 1) or 1
    threads = blas_threads(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool, \
            progress_bar(len(refs), config, f"analyzing ({workers} processes)") as bar:
        yield from in_order(lambda i: pool.submit(analyze_task, path, i, refs[i].longname, config, device, threads),
                            lambda fut: fut.result(), len(refs), 2 * workers, bar)


def run_ray(path: str, refs: list[MatrixRef], config: AnalysisConfig, device: str) -> Iterator[dict[str, Any]]:
    """One Ray task per matrix on the cluster at `config.address` (or a local instance)."""
    ray = require("ray", "ray")
    from tailscope.analysis.executors import progress_bar

    if not ray.is_initialized():
        ray.init(address=config.address, ignore_reinit_error=True, log_to_driver=False,
                 **({} if config.address else {"num_cpus": config.workers or None}))
    workers = config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(num_cpus=1)(analyze_task)
    with progress_bar(len(refs), config, f"analyzing (ray, {workers} slots)") as bar:
        yield from in_order(lambda i: task.remote(path, i, refs[i].longname, config, device, 1),
                            ray.get, len(refs), 2 * workers, bar)


def run_parallel(model: Any, refs: list[MatrixRef], config: AnalysisConfig, device: str) -> list[dict[str, Any]]:
    """Rows in plan order from the executor `config.executor` ('process' or 'ray')."""
    path = check_path(model, config.executor)
    run = run_process if config.executor == "process" else run_ray
    return list(run(path, refs, config, device))
