"""Structural fuzzing of every reader: JSON documents, tensor tables and patterns are generated
piece by piece (depth, integer sizes, value types, names, shapes, regexes) and every entry point a
user reaches (describe and analyze through the CLI and the API, resumed runs, compare, smooth)
must either succeed or raise one clean `TailscopeError` naming the file, exit code 2 from the CLI,
within `CASE_SECONDS` and a bounded memory growth. Where an oracle exists the outcome is checked
too: `parse_json` against `json.loads`, the pattern matcher against `re`, a resumed run against a
fresh one. `TAILSCOPE_FUZZ_SCALE=10` runs ten times the cases."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import tailscope
from tailscope.cli import main
from tailscope.errors import InputError
from tailscope.sources.peft_patterns import CompiledKey, PatternError, _Budget
from tailscope.untrusted.json_loader import MAX_DEPTH, parse_json

from fuzzing import (
    CASE_SECONDS,
    CATASTROPHIC,
    MAX_RSS_GROWTH_MB,
    Obj,
    Raw,
    field_values,
    gguf_files,
    index_files,
    json_values,
    module_texts,
    pattern_texts,
    rarely,
    rss_mb,
    safetensors_files,
    supported_patterns,
    tensor_names,
    time_limit,
    to_json,
    torch_tables,
)

SCALE = float(os.environ.get("TAILSCOPE_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int):  # noqa: ANN201
    """The same cases on every CI run; no hypothesis deadline (`time_limit` bounds each case)."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """Peak RSS over every case of this module grows by at most MAX_RSS_GROWTH_MB."""
    start = rss_mb()
    yield
    assert rss_mb() - start < MAX_RSS_GROWTH_MB


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _clean_error(exc: BaseException, where: str) -> None:
    text = str(exc)
    assert text.strip() and "\n" not in text, f"error is not one line: {text!r}"
    assert where in text, f"error does not name the file ({where}): {text}"


def contract(where: Path | str, *calls) -> str:  # noqa: ANN002
    """'ok' when every call returns; 'refused' at the first TailscopeError (one line naming `where`);
    any other exception, or running past CASE_SECONDS, fails the case."""
    try:
        with time_limit(CASE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for call in calls:
                call()
    except tailscope.TailscopeError as exc:
        _clean_error(exc, str(where))
        event(f"refused: {_kind(exc)}")
        return "refused"
    event("ok")
    return "ok"


def _kind(exc: BaseException) -> str:
    """The error with its numbers and quoted parts removed, for hypothesis' statistics."""
    text = str(exc).split(": ", 1)[-1]
    return re.sub(r"'[^']*'|\d+|\(.*", "_", text)[:60]


def cli(*args: str, where: Path | str) -> int:
    """`tailscope ARGS` in this process, printing into strict UTF-8 streams as a terminal would; exit
    code 0, or 2 with one 'tailscope: error:' line naming `where`."""
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict") for _ in range(2))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(CASE_SECONDS), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(list(args))
        out.flush()
        err.flush()
    text = err.buffer.getvalue().decode()
    assert code in (0, 2), (code, text)
    if code == 2:
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tailscope: error: ") and str(where) in lines[0], text
    return code


def same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True, check_dtype=False)


# -- JSON: the loader itself, against json.loads -------------------------------------------------------


@given(value=json_values)
@fuzz_settings(1500)
def test_parse_json_refuses_cleanly_or_agrees_with_json(value):
    text = to_json(value)
    raw = text.encode("utf-8", "surrogatepass")
    start = time.perf_counter()
    try:
        parsed = parse_json(raw, "case.json", "document")
    except InputError as exc:
        _clean_error(exc, "case.json")
        return
    finally:
        assert time.perf_counter() - start < 2
    assert json.dumps(parsed) == json.dumps(json.loads(text))  # re-encoded: NaN != NaN
    json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # valid Unicode throughout


def test_parse_json_limits_at_their_edges():
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "f", "doc") is not None
    for raw, problem in [
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested 65 levels deep"),
        (b'{"a": ' + b"9" * 41 + b"}", "integer of 41 digits"),
        (b'{"a": 1, "a": 2}', "holds the key 'a' twice"),
        (b'["\\ud800"]', "lone surrogate U+D800"),
        (b'{"\\udfff": 1}', "lone surrogate U+DFFF"),
        (b"\xff{}", "not UTF-8 text"),
        (b"{nope", "not valid JSON"),
    ]:
        with pytest.raises(InputError, match=re.escape(problem)):
            parse_json(raw, "f", "doc")
    assert parse_json(b'["[[[[", "\\"]]]", "\\ud83d\\ude00"]', "f", "doc") == ["[[[[", '"]]]', "\U0001f600"]  # brackets in strings, a pair
    assert parse_json(b'{"a": ' + b"9" * 40 + b"}", "f", "doc") == {"a": int("9" * 40)}


# -- safetensors: one file ---------------------------------------------------------------------------


@given(data=safetensors_files())
@fuzz_settings(600)
def test_safetensors_headers_built_structurally(case_dir, data):
    path = case_dir / "model.safetensors"
    path.write_bytes(data)
    results = _fresh(case_dir / "results")
    first = {}

    def analyze():
        first["report"] = tailscope.analyze(path, progress=False, min_evals=0, results=results)

    def resume():
        again = tailscope.analyze(path, progress=False, min_evals=0, results=results)
        assert again.reused == len(again.details)
        same_numbers(again.details, first["report"].details)

    cli("describe", str(path), "--min-evals", "0", where=path)
    if contract(path, analyze, resume) == "ok":
        contract(path, lambda: tailscope.smooth(path, dry_run=True, min_evals=0))


# -- sharded safetensors: the index --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("sharded")
    where = {}
    for i, shard in enumerate(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]):
        tensors = {f"model.layers.{i}.mlp.up_proj.weight": rng.standard_normal((12, 8)).astype(np.float32),
                   f"model.layers.{i}.input_layernorm.weight": np.ones(8, np.float32)}
        save_file(tensors, str(root / shard))
        where.update(dict.fromkeys(tensors, shard))
    return root, where


@given(data=st.data())
@fuzz_settings(300)
def test_shard_indexes_built_structurally(sharded, case_dir, data):
    root, where = sharded
    (root / "model.safetensors.index.json").write_text(data.draw(index_files(where)), errors="surrogatepass")
    out = case_dir / "smoothed"
    if contract(root, lambda: tailscope.analyze(root, progress=False, min_evals=0)) == "ok":
        contract(root, lambda: tailscope.describe(root), lambda: tailscope.smooth(root, out, overwrite=True, min_evals=0))


# -- GGUF --------------------------------------------------------------------------------------------


@given(data=gguf_files())
@fuzz_settings(600)
def test_gguf_files_built_structurally(case_dir, data):
    path = case_dir / "model.gguf"
    path.write_bytes(data)
    cli("describe", str(path), "--min-evals", "0", where=path)
    cli("analyze", str(path), "--quiet", "--min-evals", "0", where=path)
    if contract(path, lambda: tailscope.card(path)) == "ok":
        contract(path, lambda: tailscope.compare(path, path, progress=False, min_evals=0),
                 lambda: tailscope.smooth(path, case_dir / "gguf-smoothed", overwrite=True, min_evals=0))


# -- PyTorch state dicts -----------------------------------------------------------------------------


@given(table=torch_tables())
@fuzz_settings(300)
def test_torch_state_dicts_built_structurally(case_dir, table):
    import torch

    path = case_dir / "model.pt"
    torch.save(table, path)
    results = _fresh(case_dir / "torch-results")
    contract(path, lambda: tailscope.describe(path),
             lambda: tailscope.analyze(path, progress=False, min_evals=0, results=results))
    flat = table
    while isinstance(flat, dict) and len(flat) == 1 and isinstance(next(iter(flat.values())), dict):
        flat = next(iter(flat.values()))  # the in-memory form of the same table
    contract("<state_dict>", lambda: tailscope.describe(flat).to_text().encode(),
             lambda: tailscope.analyze(flat, progress=False, min_evals=0, results=results).to_text().encode())


# -- PEFT adapters -----------------------------------------------------------------------------------

MODULES = ["base_model.model.model.layers.0.self_attn.q_proj", "base_model.model.model.layers.1.mlp.down_proj",
           "base_model.model.model.layers.10.self_attn.v_proj"]
FACTOR_SHAPES = st.one_of(st.just("ok"), st.sampled_from([(), (3,), (2, 3, 4), (0, 5), (5, 0), (3, 5), (2, 5, 1, 1)]))


@st.composite
def adapters(draw: st.DrawFn) -> tuple[str, dict[str, np.ndarray]]:
    """adapter_config.json text and the factor tensors: config values, pattern keys and factor
    shapes drawn, the rest a valid r=2 adapter."""
    config: Any = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "use_rslora": False}
    for key in draw(st.lists(st.sampled_from(["peft_type", "r", "lora_alpha", "use_rslora", "use_dora"]), max_size=2)):
        config[key] = draw(field_values)
    for key in ("rank_pattern", "alpha_pattern"):
        if draw(st.booleans()):
            keys = draw(st.lists(st.one_of(pattern_texts, tensor_names), max_size=3, unique=True))
            values = st.one_of(st.sampled_from([2, 4, 8.0]), field_values)
            config[key] = {k: draw(values) for k in keys}
    if rarely(draw, 10):
        config = draw(json_values)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    tensors = {}
    for module in draw(st.lists(st.sampled_from(MODULES), min_size=1, max_size=3, unique=True)):
        for side, ok in (("A", (2, 16)), ("B", (24, 2))):
            shape = draw(FACTOR_SHAPES)
            tensors[f"{module}.lora_{side}.weight"] = rng.standard_normal(ok if shape == "ok" else shape).astype(np.float32)
    if rarely(draw, 5):
        tensors[draw(tensor_names) + ".lora_A.weight"] = rng.standard_normal((2, 16)).astype(np.float32)
    return to_json(config), tensors


@given(adapter=adapters(), as_bin=st.booleans())
@fuzz_settings(300)
def test_peft_adapters_built_structurally(case_dir, adapter, as_bin):
    config_text, tensors = adapter
    root = _fresh(case_dir / "adapter")
    (root / "adapter_config.json").write_bytes(config_text.encode("utf-8", "surrogatepass"))
    if as_bin:
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, root / "adapter_model.bin")
    else:
        from safetensors.numpy import save_file

        try:
            save_file({k: v for k, v in tensors.items() if len(k) < 1000 and k.isprintable()}, str(root / "adapter_model.safetensors"))
        except Exception:  # noqa: BLE001 - names the safetensors writer itself refuses: not our input
            return
    cli("analyze", str(root), "--peft", "--quiet", "--min-evals", "0", where=root)
    contract(root, lambda: tailscope.describe(root, peft=True).to_text().encode())


def test_peft_scale_follows_the_patterns_as_peft_does(tmp_path):
    """An alpha_pattern and a rank_pattern key (regexes as PEFT reads them) give each module the
    update peft itself builds: the oracle is peft's own dense delta."""
    import torch
    from peft import LoraConfig, get_peft_model

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.ModuleDict({"q_proj": torch.nn.Linear(16, 24), "v_proj": torch.nn.Linear(16, 24)}) for _ in range(2))

    torch.manual_seed(0)
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], rank_pattern={r"layers\.1\.q_proj": 4},
                     alpha_pattern={r"layers\.\d\.v_proj": 16, "q_proj": 2})
    model = get_peft_model(Tiny(), cfg)
    dense = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if hasattr(mod, "lora_B") and "default" in getattr(mod, "lora_B", {}):
                mod.lora_A["default"].weight.normal_()
                mod.lora_B["default"].weight.normal_()
                dense[name.removeprefix("base_model.model.")] = mod.get_delta_weight("default").double().numpy()
    model.save_pretrained(tmp_path)
    df = tailscope.analyze(tmp_path, peft=True, progress=False, min_evals=0).details.set_index("name")
    assert len(df) == 4 and set(df["status"]) == {"degenerate"}  # rank 2 and 4: too few eigenvalues for a tail
    for module, w in dense.items():
        assert df.loc[f"{module}.lora_BA", "lambda_max"] == pytest.approx(np.linalg.norm(w, 2) ** 2, rel=1e-5)  # peft forms its delta in float32


# -- config.json and the architecture card ------------------------------------------------------------

CARD_KEYS = ["model_type", "num_hidden_layers", "n_layer", "hidden_size", "num_attention_heads", "num_key_value_heads",
             "head_dim", "intermediate_size", "vocab_size", "num_local_experts", "num_experts_per_tok",
             "moe_intermediate_size", "tie_word_embeddings", "torch_dtype", "architectures", "sliding_window",
             "use_sliding_window", "rope_theta", "rope_parameters", "max_position_embeddings", "attention_bias"]
LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8, "intermediate_size": 16,
         "num_attention_heads": 2, "vocab_size": 10, "architectures": ["LlamaForCausalLM"]}


@given(changes=st.dictionaries(st.sampled_from(CARD_KEYS), field_values, max_size=3), data=st.data())
@fuzz_settings(500)
def test_config_json_built_structurally(case_dir, changes, data):
    root = _fresh(case_dir / "config-only")
    text = to_json(data.draw(json_values) if data.draw(st.integers(0, 9)) == 9 else {**LLAMA, **changes})
    (root / "config.json").write_bytes(text.encode("utf-8", "surrogatepass"))
    cli("describe", str(root), where=root / "config.json")
    contract(root / "config.json", lambda: tailscope.card(root).to_text().encode())
    np.save(root / "unused.npy", np.zeros(1))  # not a weight file: still config-only
    from safetensors.numpy import save_file

    save_file({"layers.0.mlp.up_proj.weight": np.ones((12, 8), np.float32)}, str(root / "model.safetensors"))
    assert cli("describe", str(root), where=root) == 0  # with weights, a bad config only loses the card


# -- results and cache lines ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resumable(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("resume")
    save_file({f"layers.{i}.mlp.up_proj.weight": rng.standard_normal((40, 24)).astype(np.float32) for i in range(3)},
              str(root / "model.safetensors"))
    return root / "model.safetensors", tailscope.analyze(root / "model.safetensors", progress=False).details


ROW_DAMAGE = st.sampled_from(["alpha=str", "alpha=list", "status=odd", "row=list", "name=int", "reason=dict", "alpha=true"])


def _damaged(line: bytes, damage: str) -> bytes:
    record = json.loads(line)
    field, value = damage.split("=")
    bad = {"str": "2.5", "list": [1], "odd": "fine", "int": 3, "dict": {"a": 1}, "true": True}[value]
    if field in ("row", "name"):
        record[field] = bad
    else:
        record["row"][field] = bad
    return json.dumps(record).encode()


@given(edits=st.lists(st.tuples(st.integers(0, 5), st.one_of(ROW_DAMAGE.map(lambda d: ("damage", d)),
                                                                json_values.map(lambda v: ("line", v)))),
                      min_size=1, max_size=3),
       cache=st.booleans())
@fuzz_settings(150)
def test_corrupt_results_lines_are_skipped_and_recomputed(resumable, case_dir, edits, cache):
    model, fresh = resumable
    store = _fresh(case_dir / "store")
    option = {"cache": store} if cache else {"results": store / "r.jsonl"}
    tailscope.analyze(model, progress=False, **option)
    (path,) = store.iterdir()
    lines = path.read_bytes().split(b"\n")[:-1]
    for at, (kind, edit) in edits:  # a record of ours with one value of the wrong type
        if kind == "damage":
            lines[at % len(lines)] = _damaged(lines[at % len(lines)], edit) if b'"row": {' in lines[at % len(lines)] else lines[at % len(lines)]
    for at, (kind, edit) in edits:  # a line that is not a record at all, after the header line that marks the file ours
        if kind == "line":
            lines.insert(1 + at % len(lines), to_json(edit).encode("utf-8", "surrogatepass").replace(b"\n", b" "))
    path.write_bytes(b"\n".join(lines) + b"\n")
    with time_limit(CASE_SECONDS):
        resumed = tailscope.analyze(model, progress=False, **option)
    same_numbers(resumed.details, fresh)


# -- PEFT pattern keys: the matcher against `re`, and bounded time -----------------------------------------


@given(key=supported_patterns, modules=st.lists(module_texts, min_size=1, max_size=6))
@fuzz_settings(1500)
def test_supported_patterns_match_as_re_does(key, modules):
    compiled = CompiledKey(key, _Budget("adapter_config.json"))
    for module in modules:
        assert compiled.matches(module) == (re.match(rf"(.*\.)?({key})$", module) is not None), (key, module)


@given(key=pattern_texts, modules=st.lists(module_texts, min_size=1, max_size=4))
@fuzz_settings(1500)
def test_any_pattern_text_is_refused_or_matches_as_re_does(key, modules):
    try:
        compiled = CompiledKey(key, _Budget("adapter_config.json"))
    except PatternError:
        return
    except InputError:  # the work budget
        return
    wrapped = re.compile(rf"(.*\.)?({key})$")  # what we accept, Python accepts
    for module in modules:
        if len(key) <= 24:  # `re` itself is only safe on short keys
            assert compiled.matches(module) == (wrapped.match(module) is not None), (key, module)


@pytest.mark.parametrize("key", CATASTROPHIC)
def test_catastrophic_patterns_finish_fast(key):
    module = "a" * 1000 + "!" if "a" in key else "x" * 1000 + "!"
    start = time.perf_counter()
    try:
        CompiledKey(key, _Budget("adapter_config.json")).matches(module)
    except InputError as exc:  # out of budget is fine too: bounded either way
        _clean_error(exc, "adapter_config.json")
    assert time.perf_counter() - start < 2.0


def test_raw_is_emitted_verbatim():
    assert to_json(Obj((("a", Raw("NaN")), ("a", [1])))) == '{"a":NaN,"a":[1]}'
