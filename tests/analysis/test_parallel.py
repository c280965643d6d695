"""Parallel executors: the process pool and Ray give the serial rows; analyze-many."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import ConfigError

MINILM_LAYERS = (1, 2, 3, 4, 5, 6, 7, 8)  # a slice of MiniLM's matrices keeps the spawn test short


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows in the same order; floats equal up to BLAS summation order, which changes with the
    thread count (a worker runs BLAS on every thread, the serial pool on one): ~1e-15 in float64,
    ~1e-6 on the fp32 route that MiniLM's 30522 x 384 embedding takes."""
    assert list(a["name"]) == list(b["name"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, rtol=1e-5)


def test_process_executor_matches_serial(minilm_dir):
    serial = tailscope.analyze(minilm_dir, layers=MINILM_LAYERS, progress=False).details
    pooled = tailscope.analyze(minilm_dir, layers=MINILM_LAYERS, progress=False, executor="process", workers=2).details
    assert len(serial) >= 4 and (serial["status"] == "success").all()
    _same_rows(serial, pooled)


def test_parallel_executor_refuses_in_memory_models():
    with pytest.raises(ConfigError, match="in-memory dict"):
        tailscope.analyze({"fc.weight": np.eye(20)}, executor="process")


def test_executor_option_validated():
    with pytest.raises(ConfigError, match="executor"):
        tailscope.analyze({"fc.weight": np.eye(20)}, executor="threads")
    with pytest.raises(ConfigError, match="workers"):
        tailscope.AnalysisConfig(workers=-1)


def test_ray_executor_matches_serial(minilm_dir):
    import ray  # in the `test` extra: a missing ray fails this test rather than skipping it

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serial = tailscope.analyze(minilm_dir, layers=MINILM_LAYERS[:4], progress=False).details
        distributed = tailscope.analyze(minilm_dir, layers=MINILM_LAYERS[:4], progress=False, executor="ray").details
    finally:
        ray.shutdown()
    _same_rows(serial, distributed)


def test_analyze_many_cli(tmp_path, tiny_mistral_dir, tiny_mixtral_dir, capsys):
    listing = tmp_path / "models.txt"
    listing.write_text(f"# two checkpoints\n{tiny_mistral_dir}\n\n{tiny_mixtral_dir}\n")
    out = tmp_path / "all.csv"
    assert main(["analyze-many", str(listing), "--quiet", "--executor", "process", "--workers", "2", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table.columns[0] == "model"
    for path in (tiny_mistral_dir, tiny_mixtral_dir):
        alone = tailscope.analyze(path, progress=False).details
        mine = table[table["model"] == str(path)]
        assert list(mine["name"]) == list(alone["name"])
        np.testing.assert_allclose(mine["alpha"].to_numpy(float), alone["alpha"].to_numpy(float), rtol=1e-9)
    assert "tiny-mixtral" in capsys.readouterr().out


def test_analyze_many_bad_list(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert main(["analyze-many", str(empty)]) == 2
