"""LoRA adapters: a PEFT adapter built with the `peft` package on a tiny Mistral gives one
lora_BA row per adapted module whose eigenvalues equal those of peft's own dense update."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import InputError

TARGETS = ["q_proj", "v_proj", "down_proj"]


def _adapter(base_dir: Path, out: Path, safe: bool, **lora_kw) -> dict[str, np.ndarray]:
    """Save a randomized LoRA adapter; return peft's dense update per module (its own oracle)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(target_modules=TARGETS, **lora_kw))
    dense = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if hasattr(mod, "lora_B") and "default" in getattr(mod, "lora_B", {}):
                mod.lora_B["default"].weight.normal_()  # B is zero at init: make the update nonzero
                mod.lora_A["default"].weight.normal_()
                dense[name.removeprefix("base_model.model.")] = mod.get_delta_weight("default").double().numpy()
    model.save_pretrained(out, safe_serialization=safe)
    return dense


@pytest.fixture(scope="module")
def adapter(tiny_mistral_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    return out, _adapter(tiny_mistral_dir, out, True, r=4, lora_alpha=8)


def test_one_row_per_module_and_dense_eigenvalues(adapter):
    from tailscope.sources.peft_reader import open_adapter

    path, dense = adapter
    assert (path / "adapter_model.safetensors").exists()
    rep = tailscope.analyze(path, peft=True, progress=False)
    df = rep.details.set_index("name")
    assert sorted(df.index) == sorted(f"{m}.lora_BA" for m in dense)
    assert len(dense) == 2 * len(TARGETS)
    refs = {r.name: r for r in open_adapter(path).refs()}
    from tailscope.spectrum.lowrank import lowrank_spectrum

    for module, w in dense.items():
        row = df.loc[f"{module}.lora_BA"]
        n, m = max(w.shape), min(w.shape)
        assert (row["N"], row["M"], row["num_evals"]) == (n, m, m)  # the dense matrix's geometry
        f = refs[f"{module}.lora_BA"].load()
        assert f.a.shape[0] == 4 and f.scale == pytest.approx(2.0)  # lora_alpha / r
        evals = lowrank_spectrum(f.a, f.b, f.scale, n, m).evals
        oracle = np.sort(np.linalg.eigvalsh(w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T))
        np.testing.assert_allclose(evals[-4:], oracle[-4:], rtol=1e-5)  # float32 factors in the file
        assert np.all(evals[:-4] == 0) and oracle[:-4].max() < 1e-9 * oracle[-1]
        assert row["lambda_max"] == pytest.approx(oracle[-1], rel=1e-5)
        assert row["norm"] == pytest.approx(oracle.sum(), rel=1e-5)
        assert row["matrix_rank"] == 4


def test_alpha_equals_dense_analysis(adapter):
    """The same fit as analyzing peft's dense update directly."""
    path, dense = adapter
    lora = tailscope.analyze(path, peft=True, progress=False).details.set_index("name")
    full = tailscope.analyze({f"{k}.weight": v for k, v in dense.items()}, progress=False, min_evals=0).details.set_index("name")
    for module in dense:
        a, b = lora.loc[f"{module}.lora_BA"], full.loc[module]
        assert a["status"] == b["status"]
        if b["status"] == "success":
            assert a["alpha"] == pytest.approx(b["alpha"], rel=1e-4)


def test_base_alpha(adapter, tiny_mistral_dir):
    path, dense = adapter
    rep = tailscope.analyze(path, peft=True, base=tiny_mistral_dir, progress=False)
    base = tailscope.analyze(tiny_mistral_dir, progress=False).details.set_index("name")
    for row in rep.details.itertuples():
        module = row.name.removesuffix(".lora_BA")
        assert row.base_alpha == pytest.approx(base.loc[module, "alpha"])


def test_bin_adapter_and_rslora(tiny_mistral_dir, tmp_path):
    dense = _adapter(tiny_mistral_dir, tmp_path, False, r=2, lora_alpha=4, use_rslora=True)
    assert (tmp_path / "adapter_model.bin").exists() and not (tmp_path / "adapter_model.safetensors").exists()
    df = tailscope.analyze(tmp_path, peft=True, progress=False).details.set_index("name")
    for module, w in dense.items():
        assert df.loc[f"{module}.lora_BA", "lambda_max"] == pytest.approx(np.linalg.norm(w, 2) ** 2, rel=1e-5)


def test_errors_and_cli(adapter, tmp_path, capsys, tiny_mistral_dir):
    path, _ = adapter
    with pytest.raises(InputError, match="no adapter_config.json"):
        tailscope.analyze(tmp_path, peft=True)
    assert main(["analyze", str(path), "--peft", "--quiet"]) == 0
    assert "model.layers.1.mlp.down_proj.lora_BA" in capsys.readouterr().out
    assert main(["analyze", str(path), "--peft", "--base", str(tiny_mistral_dir), "--quiet"]) == 0
    assert "base_alpha" in capsys.readouterr().out
