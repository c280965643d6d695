"""The reduced version of examples/pgd_digits.py that CI runs: WW-PGD drives the MLP's layer
alphas closer to 2 than plain AdamW does, at an accuracy within 2 points of it (paired seeds)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pgd_digits.py"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("pgd_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pgd_digits"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_wwpgd_moves_alphas_to_2_and_keeps_accuracy(example):
    data = example.load_data(None)
    results = example.run_experiment(example.train_classifier, seeds=2, methods=("baseline", "wwpgd"),
                                     data=data, epochs=12)
    base, pgd = results["baseline"], results["wwpgd"]
    assert example.mean_alpha_distance(pgd) < example.mean_alpha_distance(base)
    for run in pgd:
        assert set(run.alphas) == {"0", "2"} and all(abs(a - 2.0) < 0.2 for a in run.alphas.values())
    diff = np.mean([p.metric - b.metric for p, b in zip(pgd, base)])
    assert diff > -2.0, f"WW-PGD lost {-diff:.2f} accuracy points"
    assert all(p.control_seconds > 0 for p in pgd)
    table = example.summarize("digits", results)
    assert "| wwpgd |" in table and "paired diff" in table


def test_char_transformer_runs_with_every_method(example):
    for method in example.METHODS:
        run = example.train_char(method, seed=0, epochs=1, batch=16)
        assert math.isfinite(run.extra["bits_per_char"]) and 0 <= run.metric <= 100
        assert "lm_head" in run.alphas and "layers.0.q_proj" in run.alphas


def test_script_runs_on_idx_files(example, tmp_path):
    """--data: the same MLP on MNIST-layout IDX files (tiny random ones here)."""
    import struct

    rng = np.random.default_rng(0)

    def write(name, array):
        head = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        (tmp_path / name).write_bytes(head + array.tobytes())

    for split, n in (("train", 96), ("t10k", 32)):
        write(f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write(f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    data = example.load_data(str(tmp_path))
    assert data[0].shape == (96, 784) and data[2].shape == (32, 784)
    run = example.train_classifier("wwpgd", 0, data, epochs=2)
    assert set(run.alphas) == {"0", "2"} and 0 <= run.metric <= 100
