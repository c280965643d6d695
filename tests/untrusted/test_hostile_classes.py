"""Each class of hostile input that used to end in a traceback or a hang, one explicit case per
reader: the CLI prints one line naming the file and the problem and exits with 2 (a real process,
so a regression that hangs is cut off by the timeout), and where only one tensor is bad the rest
of the model still analyzes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tailscope
from tailscope.errors import InputError

from fuzzing import safetensors_bytes

SRC = str(Path(__file__).resolve().parents[2] / "src")
ST_SEED = safetensors_bytes()
DEEP = "[" * 50_000 + "]" * 50_000
HUGE_INT = "9" * 5000


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "tailscope", *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tailscope: error: ") and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _header_text(text: str) -> bytes:
    """ST_SEED with its header replaced by `text` (its data kept)."""
    length = struct.unpack("<Q", ST_SEED[:8])[0]
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + ST_SEED[8 + length :]


def _header() -> dict:
    length = struct.unpack("<Q", ST_SEED[:8])[0]
    return json.loads(ST_SEED[8 : 8 + length])


def _adapter(root: Path, config: dict | str, factors: dict[str, tuple[int, ...]] | None = None) -> Path:
    """A PEFT adapter directory: adapter_config.json and safetensors factors (default: two modules, r=2)."""
    from safetensors.numpy import save_file

    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    rng = np.random.default_rng(0)
    factors = factors or {}
    tensors = {}
    for module in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"):
        for side, shape in (("A", (2, 16)), ("B", (24, 2))):
            name = f"base_model.model.{module}.lora_{side}.weight"
            tensors[name] = np.asarray(rng.standard_normal(factors.get(name, shape)), dtype=np.float32)
    save_file(tensors, str(root / "adapter_model.safetensors"))
    return root


LORA = {"peft_type": "LORA", "r": 2, "lora_alpha": 4}


# -- JSON nested deep, integers of thousands of digits, duplicate keys: every JSON reader ----------------


@pytest.mark.parametrize("payload, problem", [(DEEP, "levels deep (the limit is 64)"), (HUGE_INT, "integer of 5000 digits")],
                         ids=["deep", "huge-int"])
def test_json_limits_in_every_json_reader(tmp_path, payload, problem):
    header = tmp_path / "model.safetensors"
    header.write_bytes(_header_text('{"a": ' + payload + "}"))
    one_line_error(run_cli("analyze", str(header), "--quiet"), str(header), "safetensors header", problem)

    index_dir = tmp_path / "sharded"
    index_dir.mkdir()
    (index_dir / "model.safetensors").write_bytes(ST_SEED)
    (index_dir / "model.safetensors.index.json").write_text('{"weight_map": {"x": ' + payload + "}}")
    one_line_error(run_cli("describe", str(index_dir)), "model.safetensors.index.json", problem)

    config_dir = tmp_path / "config-only"
    config_dir.mkdir()
    (config_dir / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": ' + payload + "}")
    one_line_error(run_cli("describe", str(config_dir)), "config.json", problem)

    adapter = _adapter(tmp_path / "adapter", '{"peft_type": "LORA", "r": 2, "lora_alpha": ' + payload + "}")
    one_line_error(run_cli("analyze", str(adapter), "--peft", "--quiet"), "adapter_config.json", problem)


def test_duplicate_tensor_in_a_header_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    text = json.dumps(_header())[:-1] + ', "layers.0.ids": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}'
    path.write_bytes(_header_text(text))
    one_line_error(run_cli("describe", str(path)), str(path), "holds the key 'layers.0.ids' twice")


# -- values of the wrong type where a number or a mapping is expected ------------------------------------


@pytest.mark.parametrize("change, fragment", [
    ({"num_attention_heads": "2"}, "'num_attention_heads' must be an integer"),
    ({"rope_theta": "ten thousand"}, "'rope_theta' must be a finite number"),
    ({"rope_theta": None, "rope_parameters": {"rope_theta": [1]}}, "'rope_parameters.rope_theta' must be a finite number"),
    ({"architectures": "LlamaForCausalLM"}, "'architectures' must be an array of strings"),
    ({"tie_word_embeddings": "false"}, "'tie_word_embeddings' must be true or false"),
    ({"num_key_value_heads": 0}, "'num_key_value_heads' must be an integer in [1,"),
], ids=["string-heads", "text-theta", "nested-theta", "arch-string", "flag-string", "zero-kv-heads"])
def test_config_values_of_the_wrong_type(tmp_path, change, fragment):
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8, "intermediate_size": 16,
           "num_attention_heads": 2, "vocab_size": 10, **change}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    one_line_error(run_cli("describe", str(tmp_path)), str(tmp_path / "config.json"), fragment)
    with pytest.raises(InputError, match="config.json: " + fragment.replace("[", r"\[")):
        tailscope.card(tmp_path)


def test_a_list_for_a_config(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    one_line_error(run_cli("describe", str(tmp_path)), "config.json", "not a valid config.json (expected a JSON object, got list)")


def test_a_bad_config_beside_weights_only_loses_the_card(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(ST_SEED)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_attention_heads": "2"}))
    desc = tailscope.describe(tmp_path)
    assert desc.card is None and desc.details.equals(tailscope.describe(tmp_path / "model.safetensors").details)


@pytest.mark.parametrize("change, fragment", [
    ({"r": "2"}, "'r' must be an integer"), ({"lora_alpha": [4]}, "'lora_alpha' must be a finite number"),
    ({"use_rslora": "yes"}, "'use_rslora' must be true or false"), ({"alpha_pattern": ["q_proj"]}, "'alpha_pattern' must be an object"),
    ({"alpha_pattern": {"q_proj": "16"}}, "'alpha_pattern.q_proj' must be a finite number"),
    ({"rank_pattern": {"q_proj": 2.5}}, "'rank_pattern.q_proj' must be an integer"),
], ids=["r-string", "alpha-list", "rslora-string", "pattern-list", "pattern-value", "rank-float"])
def test_adapter_config_values_of_the_wrong_type(tmp_path, change, fragment):
    adapter = _adapter(tmp_path / "a", {**LORA, **change})
    one_line_error(run_cli("analyze", str(adapter), "--peft", "--quiet"), str(adapter / "adapter_config.json"), fragment)


# -- tensor names that are not valid UTF-8 text, or absurdly long ----------------------------------------


def test_lone_surrogate_in_a_header_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    header = _header()
    header["\ud800x"] = header.pop("layers.0.mlp.up_proj.weight")
    path.write_bytes(_header_text(json.dumps(header)))
    for command in ("analyze", "describe"):
        one_line_error(run_cli(command, str(path)), str(path), "lone surrogate U+D800")


def test_bad_names_in_a_state_dict_skip_their_tensor_only(tmp_path):
    import torch

    path = tmp_path / "model.pt"
    torch.save({"good.weight": torch.randn(24, 16), "\ud800bad.weight": torch.randn(24, 16),
                "x" * 5000: torch.randn(24, 16), "b\udcff.weight": torch.randn(24, 16)}, path)
    results = tmp_path / "results"
    proc = run_cli("analyze", str(path), "--quiet", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    assert "skipped: 2 tensor name is not valid UTF-8 text" in proc.stdout
    report = tailscope.analyze(path, progress=False, results=results)
    assert list(report.details["name"]) == ["good"] and report.reused == 1
    reasons = {ref.name: reason for ref, reason in report.skipped}
    assert reasons["\\ud800bad"] == "tensor name is not valid UTF-8 text"
    assert any("5000 characters is longer than the 1024-character limit" in r for r in reasons.values())
    shown = tailscope.describe(path).to_text()
    shown.encode("utf-8")  # printable, and every row still listed
    assert "4 tensors skipped" not in shown and "1 matrices to analyze, 3 tensors skipped" in shown


def test_gguf_name_that_is_not_utf8_skips_its_tensor(tmp_path):
    from fuzzing import one_tensor_gguf

    path = tmp_path / "m.gguf"
    data, _ = one_tensor_gguf(path, "blk.0.attn_q.weighX")
    path.write_bytes(bytes(data).replace(b"weighX", b"weigh\xff"))  # same length, not UTF-8
    report = tailscope.analyze(path, progress=False, min_evals=0)
    assert report.details.empty and [r for _, r in report.skipped] == ["tensor name is not valid UTF-8 text"]


# -- regular expressions from a file ------------------------------------------------------------------


def test_invalid_pattern_is_refused_naming_the_key(tmp_path):
    adapter = _adapter(tmp_path / "a", {**LORA, "alpha_pattern": {"q_proj(": 8}})
    one_line_error(run_cli("analyze", str(adapter), "--peft", "--quiet"), "adapter_config.json",
                   "alpha_pattern key 'q_proj(' is not a supported pattern: missing ')'")
    adapter = _adapter(tmp_path / "b", {**LORA, "rank_pattern": {"(?=q)q_proj": 2}})
    one_line_error(run_cli("analyze", str(adapter), "--peft", "--quiet"), "rank_pattern key '(?=q)q_proj'", "lookarounds")


def test_catastrophic_pattern_does_not_hang(tmp_path):
    """`(a+)+b` takes Python's re minutes on a 30-character name; here it is a linear walk."""
    adapter = _adapter(tmp_path / "a", {**LORA, "alpha_pattern": {"(a+)+b": 8, "(.*a){20}": 8, r"q_pro\w": 6}})
    start = time.perf_counter()
    df = tailscope.analyze(adapter, peft=True, progress=False, min_evals=0).details.set_index("name")
    assert time.perf_counter() - start < 30
    assert set(df["status"]) == {"degenerate"}  # rank-2 updates: 2 eigenvalues, no tail to fit
    q, down = df.loc["model.layers.0.self_attn.q_proj.lora_BA"], df.loc["model.layers.1.mlp.down_proj.lora_BA"]
    plain = tailscope.analyze(_adapter(tmp_path / "p", LORA), peft=True, progress=False, min_evals=0).details.set_index("name")
    assert q["lambda_max"] == pytest.approx(plain.loc[q.name, "lambda_max"] * (6 / 4) ** 2)  # alpha 6 instead of 4
    assert down["lambda_max"] == pytest.approx(plain.loc[down.name, "lambda_max"])


# -- FIFOs and other non-regular files -----------------------------------------------------------------


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("layout", ["safetensors", "gguf", "bin", "index", "config", "adapter_config", "results", "list"])
def test_a_fifo_never_blocks_a_reader(tmp_path, layout):
    ok = tmp_path / "ok.safetensors"
    ok.write_bytes(ST_SEED)
    args = {
        "safetensors": lambda: ("analyze", str(_fifo(tmp_path / "m.safetensors")), "--quiet"),
        "gguf": lambda: ("describe", str(_fifo(tmp_path / "m.gguf"))),
        "bin": lambda: ("analyze", str(_fifo(tmp_path / "m.bin")), "--quiet"),
        "index": lambda: ("analyze", str(_fifo(tmp_path / "d" / "model.safetensors.index.json").parent), "--quiet"),
        "config": lambda: ("describe", str(_fifo(tmp_path / "d" / "config.json").parent)),
        "adapter_config": lambda: ("analyze", str(_fifo(tmp_path / "d" / "adapter_config.json").parent), "--peft", "--quiet"),
        "results": lambda: ("analyze", str(ok), "--quiet", "--results", str(_fifo(tmp_path / "r.jsonl"))),
        "list": lambda: ("analyze-many", str(_fifo(tmp_path / "models.txt"))),
    }[layout]()
    one_line_error(run_cli(*args, timeout=60), "is a FIFO (named pipe), not a regular file; refusing to read it")


# -- GGUF metadata arrays nested deep ------------------------------------------------------------------


@pytest.mark.parametrize("depth", [5, 50_000])
def test_gguf_arrays_nested_deep(tmp_path, depth):
    from fuzzing import G_ARR, _g_str, _nested_array

    path = tmp_path / "m.gguf"
    kv = _g_str(b"x.nested") + struct.pack("<I", G_ARR) + _nested_array(depth)[2]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv)
    one_line_error(run_cli("describe", str(path)), str(path), "GGUF metadata arrays nested more than 4 deep")
    ok = tmp_path / "ok.gguf"
    ok.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _g_str(b"x.nested") + struct.pack("<I", G_ARR) + _nested_array(4)[2])
    assert tailscope.describe(ok).details.empty  # four levels are read


# -- state dicts holding sparse, meta or quantized tensors; PEFT factors of the wrong shape ---------------


def test_sparse_and_meta_tensors_skip_only_themselves(tmp_path):
    import torch

    dense = torch.randn(24, 16)
    table = {"dense.weight": dense, "coo.weight": dense.to_sparse(), "csr.weight": dense.to_sparse_csr(),
             "meta.weight": torch.empty(24, 16, device="meta")}
    torch.save(table, tmp_path / "model.pt")
    for model in (table, tmp_path / "model.pt"):
        report = tailscope.analyze(model, progress=False)
        assert list(report.details["name"]) == ["dense"] and set(report.details["status"]) == {"success"}
        assert {ref.name: r for ref, r in report.skipped} == {
            "coo": "sparse_coo tensor (only dense tensors are analyzed)",
            "csr": "sparse_csr tensor (only dense tensors are analyzed)", "meta": "meta tensor (it holds no values)"}


def test_meta_module_weights_skip_only_themselves():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.Linear(24, 16, device="meta"))
    report = tailscope.analyze(model, progress=False)
    assert list(report.details["status"]) == ["success"]
    assert [r for _, r in report.skipped] == ["meta tensor (it holds no values)"]


A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


@pytest.mark.parametrize("factors, reason", [
    ({A: ()}, "LoRA factors must be 2-D, got lora_A of shape () and lora_B of shape (24, 2)"),
    ({A: (16,)}, "LoRA factors must be 2-D, got lora_A of shape (16,)"),
    ({B: (24, 2, 1)}, "LoRA factors must be 2-D"),
    ({A: (0, 16), B: (24, 0)}, "empty LoRA factor (lora_A (0, 16), lora_B (24, 0))"),
    ({A: (3, 16)}, "lora_B has 2 columns but lora_A 3 rows"),
    ({A: (3, 16), B: (24, 3)}, "lora_A has 3 rows but adapter_config.json gives this module r=2"),
], ids=["0-D", "1-D", "3-D", "zero-rows", "mismatch", "rank-vs-config"])
def test_peft_factor_shapes_skip_their_module_only(tmp_path, factors, reason):
    adapter = _adapter(tmp_path / "a", LORA, factors)
    report = tailscope.analyze(adapter, peft=True, progress=False, min_evals=0)
    assert list(report.details["name"]) == ["model.layers.1.mlp.down_proj.lora_BA"]
    (skipped,) = report.skipped
    assert skipped[0].name == "model.layers.0.self_attn.q_proj.lora_BA" and skipped[1].startswith(reason), skipped[1]


# -- a corrupt results line is skipped like a torn one --------------------------------------------------


@pytest.mark.parametrize("line", [DEEP, '{"name": "x", "content": "c", "options": "o", "row": {"alpha": ' + HUGE_INT + "}}",
                                  "GOOD-WITH-A-STRING-ALPHA", '{"a": 1, "a": 2}', '["\\ud800"]', b"\xff\xfe"],
                         ids=["deep", "huge-int", "string-alpha", "duplicate-key", "surrogate", "not-utf8"])
def test_corrupt_results_line_is_skipped_on_resume(tmp_path, line):
    model = tmp_path / "model.safetensors"
    model.write_bytes(ST_SEED)
    results = tmp_path / "r.jsonl"
    first = tailscope.analyze(model, progress=False, min_evals=0, results=results)
    lines = results.read_bytes().split(b"\n")[:-1]
    if line == "GOOD-WITH-A-STRING-ALPHA":
        first_row = next(i for i, text in enumerate(lines) if b'"row"' in text)  # after the header line
        record = json.loads(lines[first_row])
        record["row"]["alpha"] = "2.5"
        lines[first_row] = json.dumps(record).encode()
    else:
        lines.insert(1, line if isinstance(line, bytes) else line.encode())
    results.write_bytes(b"\n".join(lines) + b"\n")
    proc = run_cli("analyze", str(model), "--quiet", "--min-evals", "0", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    resumed = tailscope.analyze(model, progress=False, min_evals=0, results=results)
    assert resumed.reused == len(first.details)
    assert np.array_equal(resumed.details["alpha"].to_numpy(), first.details["alpha"].to_numpy(), equal_nan=True)
