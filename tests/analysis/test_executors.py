"""The serial executor's compute pool: small matrices run side by side on one BLAS thread each,
large ones alone on every BLAS thread, and the rows are the same, in the same order, as with no
pool at all."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_info

import tailscope
from tailscope.analysis import executors
from tailscope.spectrum import routes as spectrum


@pytest.fixture
def model():
    rng = np.random.default_rng(5)
    tensors = {f"small.{i}.weight": rng.standard_t(3, (200 + 10 * i, 120)) for i in range(6)}
    tensors["large.weight"] = rng.standard_t(3, (12000, 300))  # 12000 * 300^2 = 1.08e9 > the cut set below
    tensors.update({f"tail.{i}.weight": rng.standard_normal((150, 100)) for i in range(3)})
    return tensors


@pytest.fixture
def seen(monkeypatch):
    """Where each matrix was computed: (name, thread name, BLAS pinned to one thread)."""
    calls: list[tuple[str, str, bool]] = []
    original = executors.analyze_matrix

    def spy(ref, *args, **kwargs):
        calls.append((ref.name, threading.current_thread().name, spectrum._pinned.is_set()))
        return original(ref, *args, **kwargs)

    monkeypatch.setattr(executors, "analyze_matrix", spy)
    monkeypatch.setattr(executors.os, "sched_getaffinity", lambda pid: {0, 1})  # two cores, wherever the test runs
    monkeypatch.setattr(executors, "POOLED_MAX_FLOPS", 1e9)  # a "large" matrix that stays small for a test
    return calls


def test_small_matrices_are_pooled_and_large_ones_run_alone(model, seen):
    names = tailscope.analyze(model, progress=False).details["name"].tolist()
    assert names == [n.removesuffix(".weight") for n in model]  # rows in order
    where = {name: (thread, pinned) for name, thread, pinned in seen}
    assert where["large"] == ("MainThread", False)
    for name in names:
        if name != "large":
            assert where[name][0].startswith("tailscope-compute") and where[name][1], name


def test_pooled_rows_equal_unpooled_rows(model, seen, monkeypatch):
    blas_before = [lib["num_threads"] for lib in threadpool_info()]
    pooled = tailscope.analyze(model, progress=False).details
    assert [lib["num_threads"] for lib in threadpool_info()] == blas_before  # the one-thread pin is lifted
    monkeypatch.setattr(executors, "MAX_COMPUTE_THREADS", 1)
    alone = tailscope.analyze(model, progress=False).details
    assert all(thread == "MainThread" for _, thread, _ in seen[len(model):])
    numeric = pooled.select_dtypes("number").columns
    pd.testing.assert_frame_equal(pooled[numeric], alone[numeric], check_exact=False, rtol=1e-10)


def test_plots_and_torch_are_not_pooled(seen):
    config = tailscope.AnalysisConfig()
    assert executors.compute_threads(config, "cpu") == 2
    assert executors.compute_threads(config, "torch:cpu") == 1
    assert executors.compute_threads(config.replace(plot=True, plot_dir="x"), "cpu") == 1
