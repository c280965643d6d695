"""tailscope.compat against weightwatcher 0.7.7 itself: same calls, same rows, ids, columns and numbers."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

import tailscope.compat as tsww
from tailscope.errors import ConfigError

torch = pytest.importorskip("torch")
nn = torch.nn

NUMERIC = ["alpha", "lambda_max", "log_norm", "stable_rank", "entropy", "xmin", "D", "alpha_weighted", "log_spectral_norm",
           "raw_alpha", "detX_val", "detX_val_unrescaled", "mp_softrank", "bulk_max", "bulk_min", "sigma_mp", "W_scale"]


def resnet_like() -> nn.Module:
    """A torchvision-free ResNet-shaped stack: stem conv, two residual-style blocks, head."""
    torch.manual_seed(0)
    block = lambda c: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))  # noqa: E731
    return nn.Sequential(nn.Conv2d(3, 32, 7, stride=2), block(32), nn.Conv2d(32, 64, 1), block(64), nn.Flatten(), nn.Linear(64, 10))


def vgg_like() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3),
        nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def tiny_mistral() -> nn.Module:
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(2)
    cfg = MistralConfig(vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return MistralForCausalLM(cfg).eval()


MODELS = {"resnet_like": resnet_like, "vgg_like": vgg_like, "tiny_mistral": tiny_mistral}
CALLS = {
    "default": {},
    "min_evals": {"min_evals": 50},
    "max_evals": {"min_evals": 20, "max_evals": 100},
    "layers": {"layers": [1, 2, 3]},
    "fix_fingers": {"fix_fingers": "clip_xmax"},
    "detX": {"detX": True},
    "randomize": {"randomize": True},
    "mp_fit": {"mp_fit": True},
}
# weightwatcher's randomize / mp_fit take minutes on MiniLM: those run on the small models only
CASES = [(m, c) for m in ("minilm", *MODELS) for c in sorted(CALLS) if not (m == "minilm" and c in ("randomize", "mp_fit", "layers"))]


def _model(name: str, minilm_dir):
    return str(minilm_dir) if name == "minilm" else MODELS[name]()


def _both(model, call: str, method: str = "analyze") -> tuple[pd.DataFrame, pd.DataFrame]:
    import weightwatcher as ww

    with contextlib.redirect_stdout(io.StringIO()):
        ref = getattr(ww.WeightWatcher(model=model), method)(**CALLS[call])
    ours = getattr(tsww.WeightWatcher(model=model), method)(**CALLS[call])
    return ref, ours


@pytest.mark.parametrize("name, call", CASES)
def test_analyze_same_rows_ids_columns_numbers(name, call, minilm_dir):
    ref, ours = _both(_model(name, minilm_dir), call)
    if ref.empty:  # nothing selected (MiniLM has no layer with <= 100 eigenvalues): weightwatcher gives no columns
        assert ours.empty
        return
    assert list(ours.columns) == list(ref.columns)
    assert ours["layer_id"].tolist() == ref["layer_id"].tolist()
    assert ours["name"].tolist() == ref["name"].tolist()
    for col in ("M", "N", "num_evals", "rf"):
        assert ours[col].astype(int).tolist() == ref[col].astype(int).tolist(), col
    for col in ("detX_num", "num_ERG_spikes", "ERG_gap", "num_spikes"):
        if col in ref:
            assert ours[col].tolist() == ref[col].tolist(), col
    if "raw_alpha" in ref:  # num_fingers: ours is the true count, weightwatcher's one less where it clipped
        clipped = ref["num_fingers"] > 0
        assert (ours.loc[clipped, "num_fingers"] == ref.loc[clipped, "num_fingers"] + 1).all()
    ok = ref["alpha"] > 0  # weightwatcher's failed fits are alpha = -1 (num_pl_spikes -1); ours are NaN
    assert ok.mean() > 0.75
    assert ours.loc[ok, "num_pl_spikes"].tolist() == ref.loc[ok, "num_pl_spikes"].tolist()
    if "detX_num" in ref:
        # when the whole spectrum is the detX tail weightwatcher's loop stops one eigenvalue late
        # (src/tailscope/fit/detx.py); compare detX values where it does not
        ok &= ref["detX_num"] < ref["num_evals"]
    for col in (c for c in NUMERIC if c in ref):
        a, b = ours.loc[ok, col].astype(float).to_numpy(), ref.loc[ok, col].astype(float).to_numpy()
        tol = 0.01 if col in ("alpha", "alpha_weighted", "raw_alpha") else 1e-4 * np.maximum(np.abs(b), 1e-12)
        assert np.all(np.abs(a - b) <= tol), (col, np.abs(a - b).max())


@pytest.mark.parametrize("name", ["minilm", "vgg_like"])
def test_describe_same_rows(name, minilm_dir):
    ref, ours = _both(_model(name, minilm_dir), "default", "describe")
    assert list(ours.columns) == list(ref.columns)
    assert ours[["layer_id", "name", "M", "N", "rf"]].astype(str).values.tolist() == ref[["layer_id", "name", "M", "N", "rf"]].astype(str).values.tolist()


def test_summary_and_details_like_weightwatcher():
    import weightwatcher as ww

    model = vgg_like()
    with contextlib.redirect_stdout(io.StringIO()):
        w = ww.WeightWatcher(model=model)
        w.analyze()
        expected = w.get_summary()
    ours = tsww.WeightWatcher(model=model)
    ours.analyze()
    got = ours.get_summary(ours.get_details())
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-3), key


def test_get_esd_equals_weightwatcher():
    import weightwatcher as ww

    model = vgg_like()
    with contextlib.redirect_stdout(io.StringIO()):
        expected = ww.WeightWatcher(model=model).get_ESD(layer=7)
    got = tsww.WeightWatcher(model=model).get_ESD(layer=7)
    np.testing.assert_allclose(got, np.sort(expected), rtol=1e-8)
    shuffled = tsww.WeightWatcher(model=model).get_ESD(layer=7, random=True)
    assert shuffled.shape == got.shape and not np.allclose(shuffled, got)
    assert shuffled.sum() == pytest.approx(got.sum(), rel=1e-9)  # same entries: same Frobenius norm


def test_inverse_matches_weightwatcher_on_a_dense_layer():
    import weightwatcher as ww

    x = np.random.default_rng(3).standard_normal((300, 120))
    with contextlib.redirect_stdout(io.StringIO()):
        ref = ww.WeightWatcher(model=ww_single_layer(x)).analyze(inverse=True)
    ours = tsww.WeightWatcher(model=tsww.SingleLayerModel(weights=x)).analyze(inverse=True)
    assert ours["lambda_max"].item() == pytest.approx(ref["lambda_max"].item(), rel=1e-8)
    assert ours["alpha"].item() == pytest.approx(ref["alpha"].item(), abs=1e-8)
    evals = np.linalg.eigvalsh(x.T @ x)
    assert ours["lambda_max"].item() == pytest.approx(1.0 / evals.min(), rel=1e-8)


def ww_single_layer(x: np.ndarray) -> nn.Module:
    layer = nn.Linear(x.shape[1], x.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(x))
    return nn.Sequential(layer)


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"glorot_fix": True}, ["glorot_fix"]),
        ({"pool": False}, ["pool", "conv2d='unfold'"]),
        ({"vectors": True}, ["vectors"]),
        ({"pl_package": "powerlaw"}, ["pl_package"]),
        ({"fit": "TPL"}, ["fit", "fit='TPL'"]),
        ({"fix_fingers": "xmin_peak"}, ["fix_fingers", "clip_xmax"]),
        ({"no_such_option": 1}, ["no_such_option"]),
    ],
)
def test_unsupported_options_raise_naming_them(kwargs, names):
    with pytest.raises(ConfigError) as info:
        tsww.WeightWatcher(model=vgg_like()).analyze(**kwargs)
    for name in names:
        assert name in str(info.value)


def test_defaults_of_unsupported_options_are_accepted():
    details = tsww.WeightWatcher(model=vgg_like()).analyze(glorot_fix=False, pool=True, vectors=False, svd_method="accurate")
    assert len(details) > 0


def test_import_alias_and_start_ids():
    from tailscope.compat import weightwatcher as ww

    details = ww.WeightWatcher(model=vgg_like()).analyze(start_ids=1)
    base = tsww.WeightWatcher(model=vgg_like()).analyze()
    assert (details["layer_id"] == base["layer_id"] + 1).all()


def mlp() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(120, 300), nn.ReLU(), nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 10))


@pytest.mark.parametrize("method, percent", [("svd", 0.5), ("detX", 0.8), ("alpha_min", 0.8)])
def test_svd_smoothing_like_weightwatcher(method, percent):
    """The same rank per layer as weightwatcher's SVDSmoothing; ours the exact best rank-k
    approximation (Eckart-Young), so never further from W than weightwatcher's (its truncated SVD
    is approximate even with svd_method='accurate')."""
    import weightwatcher as ww

    ref, ours, orig = mlp(), mlp(), mlp()
    with contextlib.redirect_stdout(io.StringIO()):
        ww.WeightWatcher(model=ref).SVDSmoothing(method=method, percent=percent, svd_method="accurate")
    returned = tsww.WeightWatcher(model=ours).SVDSmoothing(method=method, percent=percent)
    assert returned is ours  # in place, as weightwatcher
    changed = 0
    for i in (0, 2, 4):
        w, a, b = (m[i].weight.detach().double().numpy() for m in (orig, ref, ours))
        k = np.linalg.matrix_rank(a, tol=1e-5)
        assert np.linalg.matrix_rank(b, tol=1e-5) == k
        s = np.linalg.svd(w, compute_uv=False)
        assert np.linalg.norm(w - b) == pytest.approx(np.sqrt(np.sum(s[k:] ** 2)), rel=1e-4, abs=1e-6)
        assert np.linalg.norm(w - b) <= np.linalg.norm(w - a) + 1e-6
        changed += k < s.size
    assert changed >= 2  # the two large weight matrices were smoothed


def test_svd_smoothing_only_selected_layers_and_refuses_conv():
    model, untouched = mlp(), mlp()
    tsww.WeightWatcher(model=model).SVDSmoothing(layers=[3], method="svd", percent=0.3)  # layer_id 3 = model[2]
    assert torch.equal(model[0].weight, untouched[0].weight)
    assert not torch.equal(model[2].weight, untouched[2].weight)
    assert np.linalg.matrix_rank(model[2].weight.detach().numpy()) == int(0.3 * 200)
    with pytest.raises(ConfigError, match="only 2-D weight matrices"):
        tsww.WeightWatcher(model=vgg_like()).SVDSmoothing(layers=[1], method="svd")
    with pytest.raises(ConfigError, match="tailscope.smooth"):
        tsww.WeightWatcher(model="some/dir").SVDSmoothing()


def test_svd_sharpness_removes_the_traps():
    """Three huge entries are correlation traps (they survive shuffling as MP spikes): SVDSharpness
    removes as many top components, taking the large singular values they make with them."""
    model = mlp()
    w = model[2].weight.detach().numpy().copy()
    w[0, 0], w[5, 7], w[9, 9] = 3.0, -3.0, 3.0
    with torch.no_grad():
        model[2].weight.copy_(torch.from_numpy(w))
    tsww.WeightWatcher(model=model).SVDSharpness(layers=[3])  # layer_id 3 = model[2]
    s_before, s_after = np.linalg.svd(w, compute_uv=False), np.linalg.svd(model[2].weight.detach().numpy(), compute_uv=False)
    assert s_before[2] > 2.5 and s_after[0] < 1.2  # the three trap components are gone; the bulk ends near 1.05
    np.testing.assert_allclose(s_after[: s_before.size - 3], s_before[3:], rtol=1e-4)


def test_distances_is_refused_with_the_equivalent():
    with pytest.raises(ConfigError, match="base=model_1"):
        tsww.WeightWatcher().distances(vgg_like(), vgg_like())


def test_base_model_delta_matches_weightwatcher():
    import weightwatcher as ww

    base, tuned = mlp(), mlp()
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01 * torch.randn_like(p))
    with contextlib.redirect_stdout(io.StringIO()):
        ref = ww.WeightWatcher(model=tuned, base_model=base).analyze()
    ours = tsww.WeightWatcher(model=tuned, base_model=base).analyze()
    assert ours["layer_id"].tolist() == ref["layer_id"].tolist()
    np.testing.assert_allclose(ours["lambda_max"], ref["lambda_max"], rtol=1e-4)
    np.testing.assert_allclose(ours["alpha"], ref["alpha"], atol=0.01)
