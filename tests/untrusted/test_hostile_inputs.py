"""Hostile files: mutated safetensors/GGUF files give a result or one clean
TailscopeError, never another exception, a hang or a memory blow-up; each malformation named in
the issue gives a one-line CLI error naming the file and the problem, exit code 2."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import tailscope

from fuzzing import (
    MAX_RSS_GROWTH_MB,
    check_file,
    edit_header,
    gguf_bytes,
    header_edits,
    mutate,
    mutations,
    one_tensor_gguf,
    rss_mb,
    safetensors_bytes,
    torch_bytes,
)

SRC = str(Path(__file__).resolve().parents[2] / "src")
SCALE = float(os.environ.get("TAILSCOPE_FUZZ_SCALE", "1"))  # raise locally for a longer hunt
ST_SEED = safetensors_bytes()
TORCH_SEED = torch_bytes()


def fuzz_settings(examples: int):  # noqa: ANN201
    """Deterministic (same cases every CI run), no hypothesis deadline: `check_file` has its own
    per-case time limit that also catches hangs inside one call."""
    return settings(max_examples=int(examples * SCALE), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _gguf_seed() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return gguf_bytes(Path(tmp))


GGUF_SEED = _gguf_seed()


@pytest.fixture(scope="module")
def st_seed() -> bytes:
    return ST_SEED


@pytest.fixture(scope="module")
def gguf_seed() -> bytes:
    return GGUF_SEED


@pytest.fixture(scope="module")
def torch_seed() -> bytes:
    return TORCH_SEED


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cases")


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """Peak RSS over every fuzz case of this module grows by at most MAX_RSS_GROWTH_MB."""
    start = rss_mb()
    yield
    assert rss_mb() - start < MAX_RSS_GROWTH_MB


def test_seed_files_are_valid(st_seed, gguf_seed, case_dir):
    (case_dir / "seed.safetensors").write_bytes(st_seed)
    (case_dir / "seed.gguf").write_bytes(gguf_seed)
    st = tailscope.analyze(case_dir / "seed.safetensors", progress=False, min_evals=0).details
    assert len(st) == 2 + 2 * 2  # 2 dense + 2 experts x gate/up
    # the dense rows fit; each 4x4 expert slice has 4 eigenvalues, too few for a tail
    assert list(st["status"]) == ["success", *["degenerate"] * 4, "success"], list(st["status"])
    gg = tailscope.analyze(case_dir / "seed.gguf", progress=False, min_evals=0).details
    assert len(gg) == 3 + 2 and set(gg["status"]) <= {"success", "failed", "degenerate"}


@given(ops=mutations(len(ST_SEED), 400))  # the JSON header is the first ~400 bytes
@fuzz_settings(1500)
def test_mutated_safetensors_bytes(st_seed, case_dir, ops):
    path = case_dir / "bytes.safetensors"
    path.write_bytes(mutate(st_seed, ops))
    check_file(path)


@given(edits=header_edits([
    "layers.0.mlp.up_proj.weight", "layers.0.mlp.down_proj.weight", "layers.0.mlp.experts.gate_up_proj",
    "layers.0.norm.weight", "layers.0.ids",
]))
@fuzz_settings(1000)
def test_hostile_safetensors_headers(st_seed, case_dir, edits):
    path = case_dir / "header.safetensors"
    path.write_bytes(edit_header(st_seed, edits))
    check_file(path)


@given(ops=mutations(len(GGUF_SEED), 700))  # metadata and tensor infos come first
@fuzz_settings(1500)
def test_mutated_gguf_bytes(gguf_seed, case_dir, ops):
    path = case_dir / "bytes.gguf"
    path.write_bytes(mutate(gguf_seed, ops))
    check_file(path)


@given(ops=mutations(len(TORCH_SEED), len(TORCH_SEED)))
@fuzz_settings(400)
def test_mutated_torch_checkpoint_bytes(torch_seed, case_dir, ops):
    path = case_dir / "bytes.bin"
    path.write_bytes(mutate(torch_seed, ops))
    check_file(path)


def test_torch_seed_is_valid(torch_seed, case_dir):
    (case_dir / "seed.bin").write_bytes(torch_seed)
    assert len(tailscope.analyze(case_dir / "seed.bin", progress=False, min_evals=0).details) == 2


# -- explicit malformations: one line, the file and the problem, exit code 2 ---------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "tailscope", *args], capture_output=True, text=True, timeout=300, env=env)


def one_line_error(path: Path, *fragments: str) -> str:
    proc = run_cli("analyze", str(path), "--quiet")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tailscope: error: ") and "Traceback" not in proc.stderr, proc.stderr
    for fragment in (str(path), *fragments):
        assert fragment in lines[0], lines[0]
    return lines[0]


def _with_header(st_seed: bytes, change) -> bytes:  # noqa: ANN001
    length = struct.unpack("<Q", st_seed[:8])[0]
    header = json.loads(st_seed[8 : 8 + length])
    change(header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + st_seed[8 + length :]


def test_header_length_larger_than_file(st_seed, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(st_seed) + 10) + st_seed[8:])
    one_line_error(path, "truncated safetensors file", "header of")


def test_offsets_out_of_range(st_seed, tmp_path):
    path = tmp_path / "model.safetensors"

    def push(h):  # noqa: ANN001
        h["layers.0.norm.weight"]["data_offsets"] = [10**6, 10**6 + 32]

    path.write_bytes(_with_header(st_seed, push))
    one_line_error(path, "layers.0.norm.weight", "out of range")


def test_overlapping_offsets(st_seed, tmp_path):
    path = tmp_path / "model.safetensors"

    def overlap(h):  # noqa: ANN001
        h["layers.0.norm.weight"]["data_offsets"] = list(h["layers.0.mlp.up_proj.weight"]["data_offsets"][:1])
        h["layers.0.norm.weight"]["data_offsets"].append(h["layers.0.norm.weight"]["data_offsets"][0] + 32)

    path.write_bytes(_with_header(st_seed, overlap))
    one_line_error(path, "overlap")


def test_dtype_shape_not_matching_byte_count(st_seed, tmp_path):
    path = tmp_path / "model.safetensors"

    def widen(h):  # noqa: ANN001
        h["layers.0.mlp.up_proj.weight"]["shape"] = [12, 9]

    path.write_bytes(_with_header(st_seed, widen))
    one_line_error(path, "layers.0.mlp.up_proj.weight", "do not match dtype F32 x shape [12, 9]")


def test_header_claiming_1e12_elements_is_refused_before_allocation(st_seed, tmp_path):
    path = tmp_path / "model.safetensors"

    def huge(h):  # noqa: ANN001
        h["layers.0.mlp.up_proj.weight"]["shape"] = [10**6, 10**6]

    path.write_bytes(_with_header(st_seed, huge))
    tracemalloc.start()
    try:
        with pytest.raises(tailscope.TailscopeError, match="do not match dtype F32 x shape"):
            tailscope.analyze(path, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # numpy's allocations are traced: nothing near 4 TB was attempted


def test_gguf_tensor_of_1e12_elements_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    data, n_dims_at = one_tensor_gguf(path)
    dims_at = n_dims_at + 4
    data[dims_at : dims_at + 16] = struct.pack("<QQ", 10**6, 10**6)
    path.write_bytes(bytes(data))
    one_line_error(path, "blk.0.attn_q.weight", "past the end of the file")


def test_index_pointing_at_missing_shard(st_seed, tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(st_seed)
    index = {"weight_map": {"layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
                            "layers.0.extra.weight": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    one_line_error(tmp_path, "model.safetensors.index.json", "model-00002-of-00002.safetensors", "does not exist")


def test_index_that_is_not_json(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text("{weight_map: nope")
    one_line_error(tmp_path, "model.safetensors.index.json", "the file is not valid JSON")


def test_index_naming_a_shard_outside_the_directory(st_seed, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "secret.safetensors").write_bytes(st_seed)
    index = {"weight_map": {"a.weight": "../secret.safetensors", "b.weight": "../../../../etc/passwd"}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    one_line_error(model, "outside the model directory", "refusing to read it")


def test_symlink_out_of_the_model_directory(st_seed, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "elsewhere.safetensors").write_bytes(st_seed)
    (model / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    one_line_error(model, "outside the model directory")


def test_empty_directory(tmp_path):
    one_line_error(tmp_path, "no weights found")


def test_gguf_bad_magic(gguf_seed, tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUX" + gguf_seed[4:])
    one_line_error(path, "not a GGUF file (bad magic)")


def test_probe_config_json_not_json(tmp_path):
    model = tmp_path / "hf-model"
    model.mkdir()
    (model / "config.json").write_text("{'model_type': llama,")
    from tailscope.probes.loading import load_for_probe

    with pytest.raises(tailscope.TailscopeError, match=r"config\.json.*not valid JSON"):
        load_for_probe(model)


@pytest.mark.parametrize("shard", ["a\x00b", "x" * 5000, "", ".", "sub/"], ids=["nul-byte", "too-long", "empty", "dot", "dir"])
def test_index_with_hostile_shard_names(st_seed, tmp_path, shard):
    (tmp_path / "model.safetensors").write_bytes(st_seed)
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"layers.0.ids": shard}}))
    with pytest.raises(tailscope.TailscopeError, match=r"model\.safetensors\.index\.json: (shard|names shard)"):
        tailscope.analyze(tmp_path, progress=False)
