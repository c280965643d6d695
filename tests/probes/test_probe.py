"""tailscope.probe against independent computations: ``output_hidden_states=True`` for the residual
stream, a hand-written decoder layer for the sub-block gains, the logits for the entropy."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import tailscope  # noqa: E402
from tailscope.errors import ConfigError, InputError  # noqa: E402
from tailscope.probes.hooks import record_norms  # noqa: E402

from conftest import tiny_mistral_config, tiny_mixtral_config  # noqa: E402
from smollm_shared import gguf_tokenizer, transformers_gguf_model  # noqa: E402

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    return", "Water boils at a temperature of"]


class ByteTokenizer:
    """Minimal tokenizer for the random models: one token per UTF-8 byte (mod vocab)."""

    def __init__(self, vocab: int = 256) -> None:
        self.vocab = vocab

    def __call__(self, text, return_tensors="pt", add_special_tokens=True):
        ids = [b % self.vocab for b in text.encode()]
        return transformers.BatchEncoding({"input_ids": torch.tensor([ids])})


def random_model(kind: str, **overrides):
    torch.manual_seed(0)
    if kind == "mistral":
        return transformers.MistralForCausalLM(tiny_mistral_config(num_hidden_layers=3, **overrides))
    if kind == "mixtral":
        return transformers.MixtralForCausalLM(tiny_mixtral_config(num_hidden_layers=3, **overrides))
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=3, n_embd=32, n_head=2, vocab_size=256, n_positions=64, bos_token_id=0, eos_token_id=0))
    if kind == "neox":  # parallel residual
        return transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
            num_hidden_layers=3, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=256))
    raise ValueError(kind)


def hidden_state_oracle(model, ids_list):
    """Per-depth mean token norms (all tokens, without position 0), raw and after the final norm,
    from output_hidden_states: its last entry already has the final norm applied, so the raw last
    state comes from a second pass with the final norm replaced by the identity."""
    base = model.base_model
    norm_attr = next(n for n in ("norm", "ln_f", "final_layer_norm") if hasattr(base, n))
    final_norm = getattr(base, norm_attr)
    per_prompt = {"raw": [], "normed": []}
    with torch.no_grad():
        for ids in ids_list:
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
            setattr(base, norm_attr, torch.nn.Identity())
            try:
                raw_last = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
            finally:
                setattr(base, norm_attr, final_norm)
            raw = list(hs[:-1]) + [raw_last]
            normed = [final_norm(h) for h in hs[:-1]] + [hs[-1]]
            per_prompt["raw"].append(np.stack([h[0].double().norm(dim=-1).numpy() for h in raw]))
            per_prompt["normed"].append(np.stack([h[0].double().norm(dim=-1).numpy() for h in normed]))
    out = {}
    for view, arrays in per_prompt.items():
        out[view] = np.mean([a.mean(axis=1) for a in arrays], axis=0)
        out[view + "_no0"] = np.mean([a[:, 1:].mean(axis=1) for a in arrays], axis=0)
    return out


def entropy_oracle(model, ids_list):
    with torch.no_grad():
        ent = []
        for ids in ids_list:
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)
            ent.append(float(-(logp.exp() * logp).sum()))
    return float(np.mean(ent))


def check_against_oracle(report, model, ids_list):
    layers = report.models[0].layers
    oracle = hidden_state_oracle(model, ids_list)
    for view in ("raw", "normed", "raw_no0", "normed_no0"):
        base, _, suffix = view.partition("_")
        col = f"norm_{base}" + ("_no0" if suffix else "")
        gain_col = f"gain_{base}" + ("_no0" if suffix else "")
        np.testing.assert_allclose(layers[col].to_numpy(), oracle[view], rtol=1e-4)
        np.testing.assert_allclose(layers[gain_col].to_numpy()[1:], oracle[view][1:] / oracle[view][:-1], rtol=1e-4)
    assert report.models[0].logits["entropy"] == pytest.approx(entropy_oracle(model, ids_list), rel=1e-5, abs=1e-5)
    return oracle


# -- the real SmolLM2 (transformers' gguf_file= loader, loaded once per session) ------------------


@pytest.fixture(scope="module")
def smollm_report(smollm_gguf):
    model, tok = transformers_gguf_model(smollm_gguf), gguf_tokenizer(smollm_gguf)
    return tailscope.probe(model, tok, PROMPTS, name="smollm2"), model, tok


def test_smollm_probe_matches_hidden_states_and_logits(smollm_report):
    report, model, tok = smollm_report
    ids_list = [tok(p, return_tensors="pt").input_ids for p in PROMPTS]
    oracle = check_against_oracle(report, model, ids_list)
    m = report.models[0]
    assert m.n_layers == 30 and len(m.layers) == 31
    assert m.n_tokens == [ids.shape[1] for ids in ids_list]
    summary = m.residual["raw_no0"]
    gains = oracle["raw_no0"][1:] / oracle["raw_no0"][:-1]
    assert summary["contracting_count"] == int(np.sum(gains < 1))
    assert summary["max_gain"] == pytest.approx(gains.max(), rel=1e-4)
    assert summary["max_gain_layer"] == int(np.argmax(gains))


def test_smollm_position_zero_carries_the_massive_activation(smollm_report):
    """The known SmolLM2 trap: from layer ~11 on, token 0's norm is an order of magnitude larger."""
    report, *_ = smollm_report
    m = report.models[0]
    pos0 = np.mean([a[:, 0] for a in m.token_norms], axis=0)
    rest = m.layers["norm_raw_no0"].to_numpy()
    assert np.all(pos0[13:28] > 10 * rest[13:28])
    assert m.residual["raw"]["max_gain"] > m.residual["raw_no0"]["max_gain"]


def test_smollm_reports_tied_embeddings(smollm_report):
    report, model, _ = smollm_report
    emb = report.models[0].embeddings
    assert emb["tied"] is True and emb["ratio_fro"] == 1.0
    w = model.get_input_embeddings().weight.detach().double()
    assert emb["embed"]["fro"] == pytest.approx(float(torch.linalg.norm(w)), rel=1e-6)
    assert emb["embed"]["spectral"] == pytest.approx(float(torch.linalg.eigvalsh(w.T @ w)[-1].sqrt()), rel=1e-6)
    assert np.isfinite(emb["embed"]["alpha"])


# -- random-initialized models built here ------------------------------------------------------


@pytest.mark.parametrize("kind", ["mistral", "mixtral", "gpt2", "neox"])
def test_random_models_all_layers_probed(kind):
    model = random_model(kind).eval()
    tok = ByteTokenizer()
    report = tailscope.probe(model, tok, PROMPTS[:2], name=kind)
    m = report.models[0]
    assert m.n_layers == 3 and len(m.layers) == 4
    for col in ("norm_raw", "norm_normed", "attn_ratio", "mlp_ratio", "mlp_gain"):
        values = m.layers[col].to_numpy(dtype=float)
        assert np.all(np.isfinite(values[0 if col.startswith("norm") else 1:])), col
    check_against_oracle(report, model, [tok(p).input_ids for p in PROMPTS[:2]])
    assert all(a.shape == (4, n) for a, n in zip(m.token_norms, m.n_tokens))


def test_subblock_gains_match_a_hand_written_mistral_layer():
    model = random_model("mistral").eval()
    tok = ByteTokenizer()
    report = tailscope.probe(model, tok, PROMPTS[0])
    ids = tok(PROMPTS[0]).input_ids
    expected = {"attn_ratio": [], "mlp_ratio": [], "mlp_gain": []}
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        x = hs[0]
        pos = model.model.rotary_emb(x, torch.arange(ids.shape[1])[None])
        for i, layer in enumerate(model.model.layers):
            attn = layer.self_attn(layer.input_layernorm(x), position_embeddings=pos, attention_mask=None)[0]
            mid = x + attn
            mlp = layer.mlp(layer.post_attention_layernorm(mid))
            n = lambda t: float(t[0].norm(dim=-1).mean())  # noqa: E731
            expected["attn_ratio"].append(n(attn) / n(x))
            expected["mlp_ratio"].append(n(mlp) / n(mid))
            expected["mlp_gain"].append(n(mid + mlp) / n(mid))
            x = mid + mlp
            if i + 1 < len(hs) - 1:  # the hand-written layer reproduces the model's own
                torch.testing.assert_close(x, hs[i + 1])
        torch.testing.assert_close(model.model.norm(x), hs[-1])
    layers = report.models[0].layers
    for key, values in expected.items():
        np.testing.assert_allclose(layers[key].to_numpy()[1:], values, rtol=1e-4)
    assert report.models[0].residual["last_mlp_gain"] == pytest.approx(expected["mlp_gain"][-1], rel=1e-4)


@pytest.mark.parametrize("tied", [True, False])
def test_tied_flag_and_unembedding_ratio(tied):
    model = random_model("mistral", tie_word_embeddings=tied).eval()
    emb = tailscope.probe(model, ByteTokenizer(), "abc").models[0].embeddings
    assert emb["tied"] is tied
    w_e = model.get_input_embeddings().weight.detach().double()
    w_u = model.get_output_embeddings().weight.detach().double()
    assert emb["ratio_fro"] == pytest.approx(float(torch.linalg.norm(w_u) / torch.linalg.norm(w_e)), rel=1e-6)
    assert emb["unembed"]["row_norm_max"] == pytest.approx(float(w_u.norm(dim=1).max()), rel=1e-6)


def test_hooks_are_removed_even_when_the_forward_fails():
    model = random_model("mistral").eval()

    def n_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = n_hooks()
    with pytest.raises(IndexError):
        with torch.no_grad(), record_norms(model):
            assert n_hooks() > before
            model(input_ids=torch.tensor([[10_000]]))  # out of the vocabulary
    assert n_hooks() == before
    tailscope.probe(model, ByteTokenizer(), "abc")
    assert n_hooks() == before and model.training is False


def test_probe_restores_training_mode_and_rejects_bad_input():
    model = random_model("mistral").train()
    tailscope.probe(model, ByteTokenizer(), "abc")
    assert model.training
    with pytest.raises(ConfigError, match="did you mean `top_k`"):
        tailscope.probe(model, ByteTokenizer(), "abc", topk=3)
    with pytest.raises(InputError, match="non-empty"):
        tailscope.probe(model, ByteTokenizer(), [])


def test_report_json_and_figure(tmp_path):
    import json

    reports = [tailscope.probe(random_model(k).eval(), ByteTokenizer(), PROMPTS[:2], name=k) for k in ("mistral", "mixtral")]
    from tailscope.probes import ProbeReport

    report = ProbeReport.combine(reports)
    table = report.table()
    assert list(table.columns) == ["mistral", "mixtral"]
    assert "mixtral" in report.to_text()
    data = json.loads(report.save(tmp_path / "probe.json").read_text())
    assert [m["name"] for m in data["models"]] == ["mistral", "mixtral"]
    assert len(data["models"][1]["layers"]) == 4
    png = tmp_path / "probe.png"
    fig = report.plot(png)
    assert png.stat().st_size > 20_000
    assert len(fig.axes) == 4 and all(ax.get_title() for ax in fig.axes)
