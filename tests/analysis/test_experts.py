"""Mixture of experts: one row per expert matrix in both Mixtral layouts, and the
per-layer expert summary."""

from __future__ import annotations

import numpy as np
import pytest

import tailscope
from tailscope.cli import main


@pytest.fixture(scope="module")
def reports(tiny_mixtral_dir, tiny_mixtral_fused_dir):
    return {
        "per_expert": tailscope.analyze(tiny_mixtral_dir, progress=False),
        "fused": tailscope.analyze(tiny_mixtral_fused_dir, progress=False),
    }


@pytest.mark.parametrize("layout", ["per_expert", "fused"])
def test_one_row_per_expert_matrix(reports, layout):
    df = reports[layout].details
    ex = df[df["expert"].notna()]
    assert len(ex) == 2 * 4 * 3  # layers x experts x (gate, up, down)
    keys = set(zip(ex["layer"].astype(int), ex["role"], ex["expert"].astype(int)))
    assert len(keys) == len(ex)
    assert set(ex["role"]) == {"mlp_down", "mlp_gate", "mlp_up"}


def test_layouts_agree_per_expert(reports):
    """Same seed, two layouts: the same matrices, hence the same alphas per (layer, role, expert)."""
    def keyed(df):
        ex = df[df["expert"].notna()]
        return {(int(r.layer), r.role, int(r.expert)): r.alpha for r in ex.itertuples()}

    a, b = keyed(reports["per_expert"].details), keyed(reports["fused"].details)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-6)


@pytest.mark.parametrize("layout", ["per_expert", "fused"])
def test_expert_summary_matches_rows(reports, layout):
    rep = reports[layout]
    table = rep.experts
    assert len(table) == 2 * 3
    df = rep.details
    for row in table.itertuples():
        sel = df[(df["layer"] == row.layer) & (df["role"] == row.role) & df["expert"].notna()]
        alphas = dict(zip(sel["expert"].astype(int), sel["alpha"].astype(float)))
        assert row.n_experts == 4
        assert row.alpha_mean == pytest.approx(np.mean(list(alphas.values())))
        assert row.alpha_min == pytest.approx(min(alphas.values()))
        assert row.alpha_max == pytest.approx(max(alphas.values()))
        assert row.most_trained_expert == min(alphas, key=alphas.get)
        assert row.least_trained_expert == max(alphas, key=alphas.get)
        # the router is 4 x 64: 4 eigenvalues, under min_evals, so reported as skipped
        assert row.router_shape == "4x64"
        assert "skipped" in row.router_note and "min_evals" in row.router_note


def test_router_fitted_when_allowed(tiny_mixtral_dir):
    rep = tailscope.analyze(tiny_mixtral_dir, progress=False, min_evals=4, layers=("router", "mlp_down"))
    routers = rep.details[rep.details["role"] == "router"]
    assert len(routers) == 2
    assert set(rep.experts["router_shape"]) == {"4x64"}
    assert not any("skipped" in n for n in rep.experts["router_note"])


def test_dense_model_has_no_expert_table(tiny_mistral_dir):
    rep = tailscope.analyze(tiny_mistral_dir, progress=False, layers="mlp_down")
    assert rep.experts.empty
    assert "experts (" not in rep.to_text()


def test_cli_prints_expert_summary(tiny_mixtral_fused_dir, capsys):
    assert main(["analyze", str(tiny_mixtral_fused_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "most trained = smallest alpha" in out
    assert "routers: layer 0 4x64 skipped" in out


def test_gguf_experts_and_card(tiny_mixtral_fused_dir, reports, tmp_path):
    """The same tiny Mixtral written as GGUF (stacked ffn_*_exps): same per-expert alphas, same card."""
    from sources.test_gguf_hf import write_gguf
    from transformers import MixtralForCausalLM

    path = write_gguf(tmp_path / "mixtral.gguf", MixtralForCausalLM.from_pretrained(tiny_mixtral_fused_dir))
    rep = tailscope.analyze(path, progress=False)
    ex = rep.details[rep.details["expert"].notna()]
    assert len(ex) == 2 * 4 * 3
    ours = {(int(r.layer), r.role, int(r.expert)): r.alpha for r in ex.itertuples()}
    ref = reports["fused"].details
    ref = {(int(r.layer), r.role, int(r.expert)): r.alpha for r in ref[ref["expert"].notna()].itertuples()}
    assert ours.keys() == ref.keys()
    np.testing.assert_allclose([ours[k] for k in ref], [ref[k] for k in ref], rtol=1e-6)
    assert len(rep.experts) == 6 and set(rep.experts["router_shape"]) == {"4x64"}
    card, hf = tailscope.card(path), tailscope.card(tiny_mixtral_fused_dir)
    assert (card.n_experts, card.experts_per_token) == (4, 2)
    assert (card.params_total, card.params_active) == (hf.params_total, hf.params_active)
