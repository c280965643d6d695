"""Durable results: rows survive a SIGKILL, resume gives the same table, and concurrent
runs on different models never mix their rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tailscope
from tailscope.report.store import HEADER, ResultStore, content_digest, options_digest
from tailscope.sources import open_source

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _model(path: Path, n: int, seed: int, shape=(120, 80), dtype=np.float32) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {f"layers.{i}.mlp.up_proj.weight": rng.standard_normal(shape).astype(dtype) for i in range(n)}
    tensors["layers.0.norm.weight"] = np.ones(shape[1], dtype)
    save_file(tensors, str(path))
    return path


def _records(path: Path) -> list[dict]:
    """Every complete line of a results file after its header (all must parse)."""
    data = path.read_bytes()
    assert data.startswith(HEADER), data[:80]
    lines = data[len(HEADER):].split(b"\n")
    assert lines[-1] == b"", "the file does not end with a newline"
    return [json.loads(line) for line in lines[:-1]]


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "tailscope", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_resume_reuses_rows_and_gives_the_same_table(tmp_path):
    model = _model(tmp_path / "m.safetensors", 4, seed=0)
    results = tmp_path / "runs"
    plain = tailscope.analyze(model, progress=False)
    first = tailscope.analyze(model, progress=False, results=results)
    second = tailscope.analyze(model, progress=False, results=results)
    pd.testing.assert_frame_equal(first.details, plain.details, check_exact=True)
    pd.testing.assert_frame_equal(second.details, plain.details, check_exact=True)
    assert (first.reused, second.reused) == (0, 4)
    (only,) = results.iterdir()
    assert only == Path(first.results_file) and only.name.startswith("m.safetensors-")
    assert len(_records(only)) == 4  # the rerun appended nothing


def test_row_options_and_content_are_part_of_the_key(tmp_path):
    model = _model(tmp_path / "m.safetensors", 2, seed=0)
    results = tmp_path / "r.jsonl"
    tailscope.analyze(model, progress=False, results=results)
    other = tailscope.analyze(model, progress=False, results=results, evals_thresh=1e-3)
    assert other.reused == 0  # a row option changed: recomputed
    assert tailscope.analyze(model, progress=False, results=results, detx=True).reused == 0  # diagnostics too
    assert tailscope.analyze(model, progress=False, results=results, layers=["layers.1"]).reused == 1  # selection is not
    _model(model, 2, seed=1)  # same names, new weights
    changed = tailscope.analyze(model, progress=False, results=results)
    assert changed.reused == 0
    pd.testing.assert_frame_equal(changed.details, tailscope.analyze(model, progress=False).details, check_exact=True)
    assert len(_records(results)) == 8


def test_torn_and_garbage_lines_are_ignored_and_cut(tmp_path):
    model = _model(tmp_path / "m.safetensors", 3, seed=0)
    results = tmp_path / "r.jsonl"
    full = tailscope.analyze(model, progress=False, results=results)
    lines = results.read_bytes().split(b"\n")[1:-1]
    # keep the header, row 0, a garbage line and half of row 1 (a writer killed mid-line)
    results.write_bytes(HEADER + lines[0] + b"\n" + b"not json\n" + lines[1][: len(lines[1]) // 2])
    resumed = tailscope.analyze(model, progress=False, results=results)
    assert resumed.reused == 1
    pd.testing.assert_frame_equal(resumed.details, full.details, check_exact=True)
    raw = results.read_bytes().split(b"\n")[1:-1]
    assert raw[1] == b"not json" and len(raw) == 4  # torn tail cut before appending
    assert [json.loads(r)["name"] for r in raw[:1] + raw[2:]] == ["layers.0.mlp.up_proj", "layers.1.mlp.up_proj", "layers.2.mlp.up_proj"]


def test_first_record_of_a_key_wins(tmp_path):
    cfg = tailscope.AnalysisConfig()
    store = ResultStore(tmp_path / "r.jsonl", options_digest(cfg))
    key = store.key("a", "c0")
    store.append(key, {"alpha": 2.5})
    store.append(key, {"alpha": 9.0})
    assert ResultStore(tmp_path / "r.jsonl", options_digest(cfg)).get(key) == {"alpha": 2.5}
    other = ResultStore(tmp_path / "r.jsonl", options_digest(cfg.replace(seed=1)))
    assert other.get(other.key("a", "c0")) is None and len(other.rows) == 1


def test_bad_results_option(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(tailscope.TailscopeError, match="`results`.*is a file"):
        tailscope.analyze({}, results=tmp_path / "file.txt")
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(tailscope.TailscopeError, match="`results`.*is a directory"):
        tailscope.analyze({}, results=tmp_path / "d.jsonl")
    with pytest.raises(tailscope.TailscopeError, match="`results`"):
        tailscope.analyze({}, results=3)


def test_sigkill_mid_run_then_resume_is_identical(tmp_path):
    n = 60  # ~1 s of work after the first row on an idle 2-core machine
    model = _model(tmp_path / "big.safetensors", n, seed=3, shape=(400, 300), dtype=np.float16)
    results = tmp_path / "results.jsonl"
    proc = _cli("analyze", str(model), "--quiet", "--results", str(results))
    deadline = time.monotonic() + 120
    while not (results.exists() and results.read_bytes().count(b"\n") >= 2):  # the header and a row
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = [r["name"] for r in _records_tolerant(results)]
    assert 1 <= len(done) < n, f"the run was not interrupted mid-way ({len(done)} of {n} rows)"

    resumed = _cli("analyze", str(model), "--quiet", "--results", str(results), "--out", str(tmp_path / "out.parquet"))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"({len(done)} rows reused, {n - len(done)} new)" in err

    records = _records(results)  # every line complete and parseable
    names = [r["name"] for r in records]
    assert len(names) == len(set(names)) == n  # no duplicated row
    assert names[: len(done)] == done
    uninterrupted = tailscope.analyze(model, progress=False).details
    pd.testing.assert_frame_equal(tailscope.analyze(model, progress=False, results=results).details, uninterrupted, check_exact=True)
    cli_table = pd.read_parquet(tmp_path / "out.parquet")
    assert list(cli_table["name"]) == list(uninterrupted["name"])
    for col in ("alpha", "D", "xmin", "lambda_max", "log_norm", "entropy"):
        np.testing.assert_array_equal(cli_table[col].to_numpy(float), uninterrupted[col].to_numpy(float))


def _records_tolerant(path: Path) -> list[dict]:
    """Complete lines after the header only: a SIGKILL may have left a torn last line."""
    return [json.loads(line) for line in path.read_bytes().removeprefix(HEADER).split(b"\n")[:-1]]


@pytest.mark.parametrize("layout", ["directory", "one shared file"])
def test_four_concurrent_models_keep_separate_tables(tmp_path, layout):
    models = [_model(tmp_path / f"model{i}.safetensors", 8, seed=10 + i, shape=(200, 150)) for i in range(4)]
    results = tmp_path / ("results" if layout == "directory" else "all.jsonl")
    outs = [tmp_path / f"out{i}.parquet" for i in range(4)]
    procs = [_cli("analyze", str(m), "--quiet", "--results", str(results), "--out", str(o)) for m, o in zip(models, outs)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "lock" not in err.lower()
    for model, out in zip(models, outs):
        expected = tailscope.analyze(model, progress=False).details
        got = pd.read_parquet(out)
        assert list(got["name"]) == list(expected["name"])
        np.testing.assert_array_equal(got["alpha"].to_numpy(float), expected["alpha"].to_numpy(float))
        again = tailscope.analyze(model, progress=False, results=results)
        assert again.reused == len(expected)
        pd.testing.assert_frame_equal(again.details, expected, check_exact=True)
    files = sorted(results.iterdir()) if layout == "directory" else [results]
    assert len(files) == (4 if layout == "directory" else 1)
    records = [r for f in files for r in _records(f)]
    assert len(records) == 4 * 8 and len({(r["name"], r["content"]) for r in records}) == 32
    if layout == "directory":  # each file holds exactly its own model's rows
        for f in files:
            model = next(m for m in models if f.name.startswith(m.name))
            own = {content_digest(ref.load()) for ref in open_source(model).refs() if ref.skip_reason is None}
            assert {r["content"] for r in _records(f)} == own and len(own) == 8


def test_rows_with_every_diagnostic_round_trip_exactly(tmp_path):
    model = _model(tmp_path / "m.safetensors", 2, seed=5, shape=(150, 100))
    options = dict(detx=True, randomize=True, mp_fit=True, fix_fingers="clip_xmax", dragon_kings=True, bootstrap=5, fit="TPL")
    plain = tailscope.analyze(model, progress=False, **options).details
    tailscope.analyze(model, progress=False, results=tmp_path / "r.jsonl", **options)
    again = tailscope.analyze(model, progress=False, results=tmp_path / "r.jsonl", **options)
    assert again.reused == 2 and len(plain.columns) > 45
    pd.testing.assert_frame_equal(again.details, plain, check_exact=True)
