"""Bounded resources from any file: per-matrix elements, matrices per model, no two tensors (or
two elements of one tensor) on the same bytes, shapes from headers only, F8 decoded exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tailscope
from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError, InputError
from tailscope.sources import refs as refs_module
from tailscope.sources.float8 import float8_to_float32, float32_to_float8

import hostile_files as hf

# -- per-matrix elements -------------------------------------------------------------------------


def test_default_element_bound_admits_real_llm_matrices_and_refuses_the_corner():
    bound = AnalysisConfig().max_elements
    real = {"Command R+ mlp": 33792 * 12288, "Mistral-Large-2 mlp": 28672 * 12288, "Qwen2.5-72B mlp": 29568 * 8192,
            "Llama-3-70B mlp": 28672 * 8192, "Grok-1 mlp": 32768 * 6144, "Falcon-180B qkv": 15872 * 14848}
    assert all(n <= bound for n in real.values()), real
    assert 50000 * 15000 > bound  # what max_n and max_evals alone admit


def test_a_matrix_over_max_elements_is_skipped_without_reading_it(tmp_path, monkeypatch):
    path = hf.big_matrix_safetensors(tmp_path / "big.safetensors")  # 750M F16 zeros, a file hole
    monkeypatch.setattr("tailscope.sources.safetensors_reader.SafetensorsLoader.__call__",
                        lambda self: pytest.fail("a skipped matrix was read"))
    report = tailscope.analyze(path, progress=False)
    assert report.details.empty and report.skip_counts == {"elements > max_elements": 1}
    (reason,) = [r for _, r in report.skipped]
    assert reason == f"750000000 elements > max_elements {2**29}"
    described = tailscope.describe(path)
    assert not described.details["analyzed"].any()


def test_max_elements_is_an_option_and_a_flag(tmp_path, capsys):
    rng = np.random.default_rng(0)
    state = {"a.weight": rng.standard_normal((60, 40)), "b.weight": rng.standard_normal((30, 20))}
    report = tailscope.analyze(state, progress=False, max_elements=1000)
    assert list(report.details["name"]) == ["b"]
    with pytest.raises(ConfigError, match="max_elements"):
        AnalysisConfig(max_elements=0)
    from safetensors.numpy import save_file

    from tailscope.cli import main

    save_file({k: v.astype(np.float32) for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    assert main(["describe", str(tmp_path / "m.safetensors"), "--max-elements", "1000"]) == 0
    assert "skipped 1: elements > max_elements" in capsys.readouterr().out


# -- matrices per model: refused from the header, before a fused tensor is expanded --------------


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
def test_millions_of_experts_are_refused_before_expanding(tmp_path, monkeypatch, kind):
    writer = hf.fused_experts_safetensors if kind == "safetensors" else hf.gguf_stacked_experts
    path = writer(tmp_path / f"m.{kind}", 5_000_000)
    monkeypatch.setattr(refs_module, "_expert_refs", lambda *a: pytest.fail("expanded before refusing"))
    for call in (tailscope.describe, tailscope.analyze):
        with pytest.raises(InputError, match=r"lists more than 200000 matrices .*shape \(5000000, 1, 8\)"):
            call(path)


def test_max_refs_counts_every_expert_and_can_be_raised(tmp_path):
    path = hf.fused_experts_safetensors(tmp_path / "m.safetensors", 300)
    assert len(tailscope.describe(path).details) == 300
    with pytest.raises(InputError, match="lists more than 299 matrices"):
        tailscope.describe(path, max_refs=299)
    assert len(tailscope.describe(path, max_refs=300).details) == 300


def test_state_dict_and_peft_respect_max_refs(tmp_path):
    state = {f"l{i}.weight": np.ones((4, 4)) for i in range(5)}
    with pytest.raises(InputError, match="lists more than 4 matrices"):
        tailscope.describe(state, max_refs=4)
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    factors = {f"base_model.model.l{i}.lora_{s}.weight": ("F32", shape, 4 * 2 * 30) for i in range(2)
               for s, shape in (("A", [2, 30]), ("B", [30, 2]))}
    hf.safetensors_header_file(adapter / "adapter_model.safetensors", factors)
    assert len(tailscope.describe(adapter, peft=True, max_refs=2).details) == 2
    with pytest.raises(InputError, match="lists 2 LoRA modules, more than max_refs 1"):
        tailscope.describe(adapter, peft=True, max_refs=1)


# -- bytes shared by tensors ----------------------------------------------------------------------


def test_gguf_entries_on_the_same_bytes_are_refused(tmp_path):
    path = hf.gguf_aliased(tmp_path / "m.gguf", 2000)
    with pytest.raises(InputError, match="'blk.0.attn_q.weight' and 'blk.1.attn_q.weight' overlap in the file"):
        tailscope.describe(path)


def test_stride0_torch_view_is_refused(tmp_path):
    path = hf.stride0_torch(tmp_path / "s0.pt")
    assert path.stat().st_size < 4096
    with pytest.raises(InputError, match=r"750000000 elements overlap in storage .*strides \(0, 0\)"):
        tailscope.analyze(path, progress=False)


@pytest.mark.parametrize("view", ["overlapping", "partly shared"])
def test_other_overlapping_torch_views_are_refused(tmp_path, view):
    base = torch.arange(1000.0)
    if view == "overlapping":
        state = {"x.weight": base.as_strided((20, 20), (1, 1))}
        match = "overlap in storage"
    else:
        state = {"x.weight": base[:600].view(30, 20), "y.weight": base[400:].view(30, 20)}
        match = "'x.weight' and 'y.weight' overlap in storage"
    torch.save(state, tmp_path / "v.pt")
    with pytest.raises(InputError, match=match):
        tailscope.describe(tmp_path / "v.pt")


def test_legitimate_torch_layouts_still_read_exactly(tmp_path):
    """Tied weights, transposed and sliced views, a stride-0 size-1 axis (BERT's position_ids)."""
    g = torch.Generator().manual_seed(0)
    tied, wide, tall = torch.randn(40, 30, generator=g), torch.randn(40, 70, generator=g), torch.randn(50, 40, generator=g)
    state = {"enc.weight": tied, "dec.weight": tied, "t.weight": tall.t(), "cols.weight": wide[:, 10:40],
             "position_ids": torch.arange(512).expand((1, -1))}
    torch.save(state, tmp_path / "ok.pt")
    report = tailscope.analyze(tmp_path / "ok.pt", progress=False)
    expected = tailscope.analyze({k: v.contiguous() for k, v in state.items()}, progress=False)
    assert list(report.details["name"]) == ["enc", "dec", "t", "cols"]
    np.testing.assert_array_equal(report.details["alpha"], expected.details["alpha"])
    np.testing.assert_array_equal(report.details["lambda_max"], expected.details["lambda_max"])


# -- PEFT factors: shapes from the header, never loaded to learn them ------------------------------


def test_peft_factor_shapes_come_from_the_header(tmp_path, monkeypatch):
    adapter = hf.wide_lora_adapter(tmp_path / "lora")  # lora_A 16 x 4M (256 MB of holes)
    monkeypatch.setattr("tailscope.sources.safetensors_reader.SafetensorsLoader.__call__",
                        lambda self: pytest.fail("a factor was read"))
    report = tailscope.analyze(adapter, peft=True, progress=False)
    assert report.details.empty and report.skip_counts == {"N > max_n": 1}
    row = tailscope.describe(adapter, peft=True).details.iloc[0]
    assert (row["N"], row["M"], row["shape"]) == (4_000_000, 64, "64x4000000")


def test_lora_element_bound_counts_the_factors_not_the_update(tmp_path):
    adapter = hf.wide_lora_adapter(tmp_path / "lora", r=4, n_in=300, n_out=200)  # zeros: a 'failed' row
    assert len(tailscope.analyze(adapter, peft=True, progress=False, max_elements=4 * 500).details) == 1
    skipped = tailscope.analyze(adapter, peft=True, progress=False, max_elements=4 * 500 - 1)
    assert skipped.skip_counts == {"elements > max_elements": 1}


# -- F8 -------------------------------------------------------------------------------------------

F8 = [("F8_E4M3", torch.float8_e4m3fn), ("F8_E5M2", torch.float8_e5m2)]


@pytest.mark.parametrize("dtype,torch_dtype", F8)
def test_f8_table_equals_torch_on_every_code(dtype, torch_dtype):
    codes = torch.arange(256, dtype=torch.uint8)
    expected = codes.view(torch_dtype).float().numpy()
    np.testing.assert_array_equal(float8_to_float32(codes.numpy(), dtype), expected)


@pytest.mark.parametrize("dtype,torch_dtype", F8)
def test_f8_encoding_rounds_to_nearest_even_like_torch(dtype, torch_dtype):
    grid = np.unique(float8_to_float32(np.arange(256, dtype=np.uint8), dtype))
    grid = grid[np.isfinite(grid)]
    mids = (grid[:-1].astype(np.float64) + grid[1:]) / 2  # exact ties, all representable in float32
    values = np.concatenate([grid, mids, np.random.default_rng(0).uniform(grid[0], grid[-1], 10000)]).astype(np.float32)
    expected = torch.from_numpy(values).to(torch_dtype).view(torch.uint8).numpy()
    mine = float32_to_float8(values, dtype)
    zero = values == 0  # -0.0 and +0.0 both decode to zero; compare values there
    np.testing.assert_array_equal(mine[~zero], expected[~zero])
    np.testing.assert_array_equal(float8_to_float32(mine, dtype), float8_to_float32(expected, dtype))
    assert float8_to_float32(float32_to_float8(np.array([1e9, -1e9], np.float32), dtype), dtype).tolist() == [grid[-1], grid[0]]


@pytest.mark.parametrize("dtype,torch_dtype", F8)
def test_f8_safetensors_are_analyzed_as_torch_decodes_them(tmp_path, dtype, torch_dtype):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(1)
    w = (torch.randn(120, 80, generator=g) * 3).to(torch_dtype)
    save_file({"fc.weight": w}, str(tmp_path / "f8.safetensors"))
    header = json.loads((tmp_path / "f8.safetensors").read_bytes()[8:200].split(b"}}")[0] + b"}}")
    assert header["fc.weight"]["dtype"] == dtype
    report = tailscope.analyze(tmp_path / "f8.safetensors", progress=False)
    oracle = tailscope.analyze({"fc.weight": w.float()}, progress=False)  # torch's own decode
    assert report.details["status"].tolist() == ["success"] and report.details["dtype"].tolist() == [dtype]
    np.testing.assert_array_equal(report.details["alpha"], oracle.details["alpha"])
    np.testing.assert_array_equal(report.details["lambda_max"], oracle.details["lambda_max"])
    torch.save({"fc.weight": w}, tmp_path / "f8.pt")  # float8 inside a .pt file, too
    np.testing.assert_array_equal(tailscope.analyze(tmp_path / "f8.pt", progress=False).details["alpha"], oracle.details["alpha"])


def test_f8_matrices_are_smoothed_and_written_back_as_f8(tmp_path):
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(2)
    w = torch.randn(96, 64, generator=g).to(torch.float8_e4m3fn)
    save_file({"model.layers.0.mlp.down_proj.weight": w}, str(tmp_path / "m.safetensors"))
    tailscope.smooth(tmp_path / "m.safetensors", tmp_path / "out", method="svd", percent=0.5)
    out = load_file(str(tmp_path / "out" / "m.safetensors"))["model.layers.0.mlp.down_proj.weight"]
    assert out.dtype == torch.float8_e4m3fn
    u, sv, vt = torch.linalg.svd(w.double(), full_matrices=False)  # oracle: torch's decode, SVD and F8 cast
    expected = ((u[:, :32] * sv[:32]) @ vt[:32]).float().to(torch.float8_e4m3fn)
    same = (out.view(torch.uint8) == expected.view(torch.uint8)).float().mean().item()
    assert same > 0.99, same  # a value within float64 noise of a rounding tie may round the other way
