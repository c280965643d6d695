"""The command line as a user runs it: tables, files, exit codes and one-line errors."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tailscope


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tailscope", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("small") / "model.safetensors"
    save_file({
        "layers.0.mlp.up_proj.weight": rng.standard_normal((96, 48)).astype(np.float32),
        "layers.0.mlp.down_proj.weight": rng.standard_normal((48, 96)).astype(np.float32),
        "layers.0.norm.weight": np.ones(48, np.float32),
    }, str(path))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_analyze_writes_table_by_extension(small_model, tmp_path, suffix):
    out = tmp_path / f"details{suffix}"
    proc = run_cli("analyze", str(small_model), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "alpha" in proc.stdout and "summary of" in proc.stdout
    df = {".csv": pd.read_csv, ".json": pd.read_json, ".parquet": pd.read_parquet}[suffix](out)
    expected = tailscope.analyze(small_model, progress=False).details
    assert list(df["name"]) == list(expected["name"]) == ["layers.0.mlp.down_proj", "layers.0.mlp.up_proj"]
    np.testing.assert_allclose(df["alpha"], expected["alpha"], rtol=1e-12)


def test_describe_lists_matrices_and_skips(small_model):
    proc = run_cli("describe", str(small_model))
    assert proc.returncode == 0, proc.stderr
    assert "mlp_down" in proc.stdout and "mlp_up" in proc.stdout
    assert "2 matrices to analyze, 1 tensors skipped" in proc.stdout
    assert "not a matrix (1-D)" in proc.stdout


def test_layers_option_selects_roles(small_model):
    proc = run_cli("analyze", str(small_model), "--layers", "mlp_up", "--quiet")
    assert proc.returncode == 0
    assert "mlp_up" in proc.stdout and "mlp_down" not in proc.stdout


def test_console_script_is_installed(small_model):
    exe = Path(sys.executable).with_name("tailscope")
    proc = subprocess.run([str(exe), "describe", str(small_model)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "mlp_up" in proc.stdout


def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tailscope: error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    _one_line_error(run_cli("analyze", str(missing)), str(missing), "no such file")


def test_directory_without_weights(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    _one_line_error(run_cli("analyze", str(tmp_path)), str(tmp_path), "no weights found")


def test_truncated_safetensors(small_model, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(small_model.read_bytes()[:-100])
    _one_line_error(run_cli("analyze", str(bad)), str(bad), "data_offsets")


def test_corrupt_safetensors_header(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(struct.pack("<Q", 20) + b"{not json at all!!!}")
    _one_line_error(run_cli("analyze", str(bad)), str(bad), "not valid JSON")


def test_gguf_unknown_tensor_type(tmp_path):
    from fuzzing import one_tensor_gguf

    path = tmp_path / "m.gguf"
    data, n_dims_at = one_tensor_gguf(path)
    type_at = n_dims_at + 4 + 8 * 2  # after n_dims (u32) and the 2 dims (u64)
    data[type_at : type_at + 4] = struct.pack("<I", 199)
    path.write_bytes(bytes(data))
    _one_line_error(run_cli("analyze", str(path)), str(path), "unknown GGML tensor type 199")


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_that_is_not_weights_only_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "pytorch_model.bin"
    with open(bad, "wb") as fh:
        pickle.dump({"w.weight": _Evil(str(marker))}, fh)
    proc = run_cli("analyze", str(bad))
    _one_line_error(proc, str(bad), "weights-only", "safetensors")
    assert not marker.exists()


def test_debug_shows_traceback(tmp_path):
    proc = run_cli("analyze", str(tmp_path / "nope"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_bad_option_is_a_clear_error():
    with pytest.raises(tailscope.TailscopeError, match="min_evalz.*did you mean `min_evals`"):
        tailscope.analyze({}, min_evalz=3)
    with pytest.raises(tailscope.TailscopeError, match="Expected argument `device`"):
        tailscope.analyze({}, device="tpu")


def test_nan_and_zero_matrices_fail_alone(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    nan = rng.standard_normal((40, 20)).astype(np.float32)
    nan[3, 4] = np.nan
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": nan, "b.weight": np.zeros((40, 20), np.float32),
               "c.weight": rng.standard_normal((40, 20)).astype(np.float32)}, str(path))
    d = tailscope.analyze(path, progress=False).details.set_index("name")
    assert d.loc["a", "status"] == "failed" and "NaN/Inf" in d.loc["a", "reason"]
    assert d.loc["b", "status"] == "failed" and "zero" in d.loc["b", "reason"]
    assert d.loc["c", "status"] == "success" and np.isfinite(d.loc["c", "alpha"])
    assert np.isnan(d.loc["a", "alpha"]) and d.loc["a", "warning"] == ""
    proc = run_cli("analyze", str(path), "--out", str(tmp_path / "o.json"))
    assert proc.returncode == 0
    rows = json.loads((tmp_path / "o.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "failed", "success"]
