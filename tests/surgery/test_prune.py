"""`tailscope.prune`: the allocator against AlphaPruning's formula, the masks, the written
checkpoint (untouched tensors byte-identical, pruned ones exactly the masked original), Wanda
against an independent activation measurement, and bad input refused with the input untouched.

Oracles: the allocation formula written again in torch as AlphaPruning's `ww_sparsity` computes it;
sorting by hand for the masks; raw safetensors bytes; a forward hook on the dense model for Wanda.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from smoothing.test_smooth import _raw_tensor_bytes as _raw_tensors

import tailscope
from tailscope.cli import main
from tailscope.errors import ConfigError, InputError
from tailscope.surgery.allocation import allocate, block_means, linear_sparsities
from tailscope.surgery.masks import magnitude_mask, wanda_mask
from tailscope.surgery.report import PRUNE_SIDECAR

from char_tokenizer import with_char_tokenizer

torch = pytest.importorskip("torch")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# -- 1. the allocator ---------------------------------------------------------------------------


def _alphapruning_formula(metric, params, sparsity, epsilon):
    """AlphaPruning's ww_sparsity: linear map to [1 - eps, 1 + eps], rescaled by parameter count."""
    scores, prunables = torch.tensor(metric, dtype=torch.float64), torch.tensor(params, dtype=torch.float64)
    lo, hi = 1.0 - epsilon, 1.0 + epsilon
    ratios = ((scores - scores.min()) / (scores.max() - scores.min())) * (hi - lo) + lo
    return (ratios * torch.sum(prunables) * sparsity / torch.sum(prunables * ratios)).numpy()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sparsity,epsilon", [(0.5, 0.3), (0.7, 0.2), (0.6, 0.0), (0.3, 0.5)])
def test_allocator_is_alphapruning_formula(seed, sparsity, epsilon):
    rng = np.random.default_rng(seed)
    metric = rng.uniform(1.5, 12.0, 40)
    params = rng.integers(1000, 5_000_000, 40)
    ours = linear_sparsities(metric, params, sparsity, epsilon)
    np.testing.assert_allclose(ours, _alphapruning_formula(metric, params, sparsity, epsilon), rtol=1e-13, atol=0)
    assert np.sum(params * ours) / np.sum(params) == pytest.approx(sparsity, rel=1e-13)
    assert np.all(np.diff(ours[np.argsort(metric)]) >= -1e-15)  # larger alpha (less trained) is pruned more
    if epsilon:
        assert ours.max() / ours.min() == pytest.approx((1 + epsilon) / (1 - epsilon), rel=1e-12)


def test_block_mapping_uses_the_plain_block_mean_and_equal_metrics_give_uniform():
    table = pd_table(metric=[2.0, 4.0, 9.0, 3.0], layer=[0, 0, 1, 1], params=[10, 30, 10, 30])
    out = allocate(table, sparsity=0.5, allocation="alpha", epsilon=0.3, by="block", metric="alpha")
    assert out["metric"].tolist() == [3.0, 3.0, 6.0, 6.0]  # unweighted means, as AlphaPruning's block_wise
    np.testing.assert_allclose(out["sparsity"], linear_sparsities(np.array([3.0, 3, 6, 6]), np.array([10, 30, 10, 30]), 0.5, 0.3))
    assert block_means(np.array([1.0, 5.0, 7.0]), np.array([2, 2, 9])).tolist() == [3.0, 3.0, 7.0]
    flat = allocate(pd_table(metric=[4.0] * 3, layer=[0, 1, 2], params=[1, 2, 3]), sparsity=0.6, allocation="alpha",
                    epsilon=0.3, by="matrix", metric="alpha")
    assert flat["sparsity"].tolist() == [0.6] * 3


def pd_table(metric, layer, params):
    import pandas as pd

    return pd.DataFrame({"name": [f"m{i}" for i in range(len(metric))], "layer": layer, "params": params, "alpha": metric})


def test_a_sparsity_reaching_one_is_refused_with_the_epsilon_that_fits():
    table = pd_table(metric=[2.0, 9.0], layer=[0, 1], params=[1000, 10])
    with pytest.raises(ConfigError, match=r"below 1.*m1.*epsilon <= 0\.\d\d") as err:
        allocate(table, sparsity=0.9, allocation="alpha", epsilon=0.5, by="matrix", metric="alpha")
    fitting = float(str(err.value).rsplit("<= ", 1)[1])
    ok = allocate(table, sparsity=0.9, allocation="alpha", epsilon=fitting, by="matrix", metric="alpha")
    assert ok["sparsity"].max() < 1


def test_failed_fits_are_named_not_filled_in():
    table = pd_table(metric=[2.0, float("nan")], layer=[0, 1], params=[10, 10])
    with pytest.raises(ConfigError, match="fit failed for 1: m1"):
        allocate(table, sparsity=0.5, allocation="alpha", epsilon=0.3, by="matrix", metric="alpha")


# -- 2. masks -----------------------------------------------------------------------------------


def test_magnitude_mask_prunes_exactly_the_smallest():
    W = np.random.default_rng(0).standard_normal((37, 23)).astype(np.float32)
    mask = magnitude_mask(W, 0.61)
    assert mask.sum() == int(0.61 * W.size)
    assert np.abs(W[mask]).max() <= np.abs(W[~mask]).min()


def test_wanda_mask_ranks_each_row_by_weight_times_input_norm():
    rng = np.random.default_rng(1)
    W, norms = rng.standard_normal((20, 50)), rng.uniform(0.1, 10.0, 50)
    mask = wanda_mask(W, norms, 0.4)
    assert (mask.sum(1) == int(0.4 * 50)).all()
    score = np.abs(W) * norms
    for i in range(20):
        assert score[i, mask[i]].max() <= score[i, ~mask[i]].min()
    assert (mask != magnitude_mask(W, 0.4)).any()  # the input norms matter


# -- 3. the written checkpoint ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned(tiny_mistral_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "out"
    before = _digest(tiny_mistral_dir)
    report = tailscope.prune(tiny_mistral_dir, out, sparsity=0.6, epsilon=0.3, by="matrix")
    assert _digest(tiny_mistral_dir) == before  # the input is never modified
    return tiny_mistral_dir, out, report


def test_untouched_tensors_are_byte_identical_and_pruned_ones_are_the_masked_original(pruned):
    src, out, report = pruned
    old, new = _raw_tensors(src / "model.safetensors"), _raw_tensors(out / "model.safetensors")
    assert old.keys() == new.keys()
    rows = {r["tensor"]: r for r in report.rows}
    assert len(rows) == 14  # 7 projections x 2 blocks; embeddings, norms and lm_head stay
    for name in old:
        if name not in rows:
            assert new[name] == old[name], name
            continue
        a = np.frombuffer(old[name], dtype=np.float32)
        b = np.frombuffer(new[name], dtype=np.float32)
        pruned_entries = b == 0
        assert pruned_entries.sum() == int(rows[name]["sparsity"] * a.size) == rows[name]["pruned"]
        assert np.array_equal(b[~pruned_entries], a[~pruned_entries])  # kept weights bit for bit
        assert np.abs(a[pruned_entries]).max() <= np.abs(a[~pruned_entries]).min()


def test_sidecar_has_each_matrix_alpha_and_sparsity_and_the_target_mean(pruned):
    src, out, report = pruned
    side = json.loads((out / PRUNE_SIDECAR).read_text())
    assert side["tool"] == "tailscope.prune" and side["allocation"] == "alpha" and side["epsilon"] == 0.3
    rows = side["tensors"]
    alphas = tailscope.analyze(src, progress=False).details.set_index("name")["alpha"]
    for r in rows:
        assert r["alpha"] == pytest.approx(alphas[r["name"]]) and r["metric"] == pytest.approx(alphas[r["name"]])
    params = np.array([r["params"] for r in rows])
    s = np.array([r["sparsity"] for r in rows])
    assert np.sum(params * s) / params.sum() == pytest.approx(0.6, rel=1e-12)
    assert s.max() / s.min() == pytest.approx(1.3 / 0.7)
    assert side["summary"]["mean achieved"] == pytest.approx(0.6, abs=0.01)


def test_pruned_checkpoint_loads_and_runs(pruned):
    from transformers import MistralForCausalLM

    _, out, _ = pruned
    model = MistralForCausalLM.from_pretrained(out)
    zero = (model.model.layers[0].mlp.down_proj.weight == 0).float().mean().item()
    assert 0.3 < zero < 0.9
    assert torch.isfinite(model(torch.arange(10)[None]).logits).all()


def test_wanda_writes_the_mask_of_the_activation_norms(tiny_mistral_dir, tmp_path):
    src = with_char_tokenizer(tiny_mistral_dir, tmp_path / "src")
    text = "The quick brown fox jumps over the lazy dog. " * 40
    report = tailscope.prune(src, tmp_path / "w", sparsity=0.5, method="wanda", allocation="uniform",
                             calibration=text, context=128)
    rows = {r["tensor"]: r for r in report.rows}
    new = _raw_tensors(tmp_path / "w" / "model.safetensors")
    for name, r in rows.items():
        w = np.frombuffer(new[name], dtype=np.float32).reshape([int(x) for x in r["shape"].split("x")])
        assert ((w == 0).sum(1) == int(0.5 * w.shape[1])).all(), name  # per output row, as Wanda
    # oracle for the first pruned matrix (its input is untouched by any pruning): a hook on the dense model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dense, tok = AutoModelForCausalLM.from_pretrained(src), AutoTokenizer.from_pretrained(src)
    ids = tok(text, return_tensors="pt")["input_ids"][0]
    ids = ids[: ids.numel() // 128 * 128].reshape(-1, 128)
    seen = {}
    q = dense.model.layers[0].self_attn.q_proj
    q.register_forward_pre_hook(lambda m, a: seen.update(x=a[0].detach().reshape(-1, m.in_features).double()))
    with torch.no_grad():
        dense(input_ids=ids)
    norms = seen["x"].pow(2).sum(0).sqrt().numpy()
    W = q.weight.detach().double().numpy()
    expected = np.zeros_like(W, dtype=bool)
    order = np.argsort(np.abs(W) * norms, axis=1, kind="stable")[:, : W.shape[1] // 2]
    np.put_along_axis(expected, order, True, axis=1)
    got = np.frombuffer(new["model.layers.0.self_attn.q_proj.weight"], dtype=np.float32).reshape(W.shape) == 0
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, magnitude_mask(W, 0.5))


def test_html_report_of_the_pruned_checkpoint_shows_the_allocation(pruned, tmp_path):
    from tailscope.report.html import write_html

    _, out, report = pruned
    page = write_html(tailscope.analyze(out, progress=False), tmp_path / "r.html").read_text()
    section = page[page.index("<h2>Pruning</h2>"):]
    assert 'alt="Pruning" src="data:image/png;base64,' in section
    for row in report.rows:
        assert f"<td class=\"t\">{row['name']}</td>" in section
    assert section.count("<tr") >= len(report.rows) + 1


def test_dry_run_prints_the_allocation_and_writes_nothing(tiny_mistral_dir, tmp_path, capsys):
    assert main(["prune", str(tiny_mistral_dir), "--sparsity", "0.7", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "model.layers.1.mlp.up_proj" in out and "sparsity" in out and "mean sparsity: 0.7" in out
    assert not any(tmp_path.iterdir())


# -- 4. bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0, 1, 1.5, -0.1, float("nan")])
def test_sparsity_outside_the_open_interval_is_refused(tiny_mistral_dir, tmp_path, sparsity):
    with pytest.raises(ConfigError, match="`sparsity`"):
        tailscope.prune(tiny_mistral_dir, tmp_path / "o", sparsity=sparsity)
    assert main(["prune", str(tiny_mistral_dir), "--sparsity", str(sparsity), "-o", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_output_equal_to_or_inside_the_input_is_refused_and_the_input_untouched(tiny_mistral_dir, capsys):
    before = _digest(tiny_mistral_dir)
    for dst in (tiny_mistral_dir, tiny_mistral_dir / "pruned"):
        with pytest.raises(InputError, match="must not contain or lie inside the source"):
            tailscope.prune(tiny_mistral_dir, dst, sparsity=0.5, overwrite=True)
        assert main(["prune", str(tiny_mistral_dir), "--sparsity", "0.5", "-o", str(dst), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("tailscope: error: ") for line in err)
    assert _digest(tiny_mistral_dir) == before and not (tiny_mistral_dir / "pruned").exists()


def test_a_model_without_the_selected_layers_is_refused(tiny_mistral_dir, tmp_path):
    with pytest.raises(ConfigError, match="selects no prunable matrix"):
        tailscope.prune(tiny_mistral_dir, tmp_path / "o", sparsity=0.5, layers=["lm_head"])
    from safetensors.numpy import save_file

    save_file({"fc.weight": np.ones((20, 10), dtype=np.float32)}, str(tmp_path / "mlp.safetensors"))
    assert main(["prune", str(tmp_path / "mlp.safetensors"), "--sparsity", "0.5", "-o", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_farms_allocation_maps_alpha_farms(tiny_mistral_dir, tmp_path):
    """allocation='farms' maps the alpha_farms column of an independent farms=True analysis by
    AlphaPruning's formula; a details frame without that column is refused, naming it."""
    details = tailscope.analyze(tiny_mistral_dir, progress=False, farms=True).details
    report = tailscope.prune(tiny_mistral_dir, None, sparsity=0.5, allocation="farms", by="matrix", dry_run=True)
    farms = details.set_index("name")["alpha_farms"]
    names = [r["name"] for r in report.rows]
    metric = np.array([r["metric"] for r in report.rows])
    np.testing.assert_allclose(metric, farms.loc[names].to_numpy(), rtol=1e-12)
    expected = _alphapruning_formula(metric, np.array([r["params"] for r in report.rows]), 0.5, 0.3)
    np.testing.assert_allclose([r["sparsity"] for r in report.rows], expected, rtol=1e-9)
    assert main(["prune", str(tiny_mistral_dir), "--sparsity", "0.5", "--allocation", "farms", "--dry-run"]) == 0
    with pytest.raises(ConfigError, match="alpha_farms"):
        tailscope.prune(tiny_mistral_dir, tmp_path / "o", sparsity=0.5, allocation="farms",
                        details=tailscope.analyze(tiny_mistral_dir, progress=False).details)
    with pytest.raises(ConfigError, match="`no_such`"):
        tailscope.prune(tiny_mistral_dir, tmp_path / "o", sparsity=0.5, metric="no_such")


def test_wanda_on_a_lone_safetensors_file_is_refused(tiny_mistral_dir, tmp_path):
    with pytest.raises(InputError, match="runs the model"):
        tailscope.prune(tiny_mistral_dir / "model.safetensors", tmp_path / "o", sparsity=0.5, method="wanda")


# -- 5. the real model --------------------------------------------------------------------------


def test_smollm2_gguf_prune_dequantizes_and_keeps_the_rest_exact(smollm_gguf, tmp_path):
    """Blocks 28-29 pruned from the Q4_1 GGUF; every other tensor is gguf_hf's float32 exactly."""
    from tailscope.sources.gguf_hf import hf_array, hf_tensor_names

    report = tailscope.prune(smollm_gguf, tmp_path / "out", sparsity=0.6, layers=[r"^blk\.2[89]\."])
    assert len(report.rows) == 14 and {r["layer"] for r in report.rows} == {28, 29}
    new = _raw_tensors(tmp_path / "out" / "model.safetensors")
    config, pairs = hf_tensor_names(smollm_gguf)
    rows = {r["tensor"]: r for r in report.rows}
    for tensor, hf in pairs:
        if hf in rows:
            got = np.frombuffer(new[hf], dtype=np.float32)
            assert (got == 0).sum() == rows[hf]["pruned"] == int(rows[hf]["sparsity"] * got.size)
        elif tensor.name.startswith(("blk.0.", "token_embd", "output_norm")):
            assert new[hf] == np.ascontiguousarray(hf_array(smollm_gguf, tensor, config), dtype="<f4").tobytes()
    assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()
