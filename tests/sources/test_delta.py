"""Fine-tune deltas: the delta of a model with itself plus a known low-rank
perturbation has exactly that perturbation's spectrum; mismatches are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import tailscope
from tailscope.cli import main
from tailscope.errors import InputError

TARGETS = {"model.layers.0.mlp.down_proj": np.array([3.0, 2.0, 0.5]), "model.layers.1.self_attn.q_proj": np.array([1.5, 0.25])}


@pytest.fixture(scope="module")
def pair(tiny_mistral_dir, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny Mistral (base, float32) and the same plus rank-3 / rank-2 perturbations (ft, float32:
    rounding W + P to float32 perturbs P's singular values by ~1e-9, hence rtol 1e-7 below)."""
    state = load_file(tiny_mistral_dir / "model.safetensors")
    base = tmp_path_factory.mktemp("base")
    save_file(state, base / "model.safetensors")
    rng = np.random.default_rng(1)
    for name, sv in TARGETS.items():
        w = state[name + ".weight"]
        n, m = w.shape
        u, _ = np.linalg.qr(rng.standard_normal((n, sv.size)))
        v, _ = np.linalg.qr(rng.standard_normal((m, sv.size)))
        state[name + ".weight"] = (w + (u * sv) @ v.T).astype(np.float32)
    ft = tmp_path_factory.mktemp("ft")
    save_file(state, ft / "model.safetensors")
    return ft, base


def test_delta_recovers_perturbation_spectrum(pair):
    ft, base = pair
    rep = tailscope.analyze(ft, base=base, progress=False)
    df = rep.details.set_index("name")
    for name, sv in TARGETS.items():
        row = df.loc[name]
        assert row["lambda_max"] == pytest.approx(sv.max() ** 2, rel=1e-7)
        assert row["norm"] == pytest.approx(np.sum(sv**2), rel=1e-7)  # sum of all eigenvalues
    unchanged = df.drop(index=list(TARGETS))
    assert (unchanged["status"] == "failed").all()  # zero deltas: no spectrum
    assert unchanged["reason"].str.contains("zero").all()


def test_delta_eigenvalues_exactly(pair):
    """All eigenvalues of the streamed delta, not only the summary columns."""
    from tailscope.sources import open_source
    from tailscope.sources.delta import delta_source
    from tailscope.spectrum.matrices import to_matrices
    from tailscope.spectrum.routes import compute_spectrum

    ft, base = pair
    src = open_source(ft)
    delta = delta_source(src, open_source(base), lambda r: r.name in TARGETS, "delta")
    for ref in (r for r in delta.refs() if r.name in TARGETS):
        spec = compute_spectrum(to_matrices(ref.load(), ref.kind), max(ref.shape))
        sv = TARGETS[ref.name]
        np.testing.assert_allclose(spec.evals[-sv.size:], np.sort(sv**2), rtol=1e-7)
        assert spec.evals[: -sv.size].max() < 1e-12  # the rest: float32 rounding noise only


def test_delta_streams_pairs(pair, monkeypatch):
    """Each pair's loader reads exactly one tensor from each side."""
    from tailscope.sources.delta import _delta_loader

    calls = []

    class Ref:
        def __init__(self, tag, arr):
            self.tag, self.arr = tag, arr

        def load(self):
            calls.append(self.tag)
            return self.arr

    out = _delta_loader(Ref("ft", np.ones((2, 2))), Ref("base", np.eye(2)))()
    assert calls == ["ft", "base"] and np.array_equal(out, np.ones((2, 2)) - np.eye(2))


def test_mismatch_is_a_clear_error(pair, tmp_path, tiny_mixtral_dir):
    ft, _ = pair
    with pytest.raises(InputError, match=r"does not match base .*only in the model: .*\(\+\d+ more\).*only in the base") as exc:
        tailscope.analyze(ft, base=tiny_mixtral_dir, progress=False)
    assert "\n" not in str(exc.value)
    state = load_file(ft / "model.safetensors")
    state["lm_head.weight"] = state["lm_head.weight"][:100]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(InputError, match=r"1 with different shapes: lm_head \(100, 64\) vs \(256, 64\)"):
        tailscope.analyze(tmp_path, base=ft, progress=False)
    rep = tailscope.analyze(tmp_path, base=ft, layers="-lm_head", progress=False)  # narrowed: fine
    assert "lm_head" not in set(rep.details["name"])


def test_cli_base(pair, capsys):
    ft, base = pair
    assert main(["analyze", str(ft), "--base", str(base), "--quiet", "--layers", "mlp_down"]) == 0
    out = capsys.readouterr().out
    assert "model.layers.0.mlp.down_proj" in out


def test_at_most_two_pairs_alive(pair, monkeypatch):
    """Streaming: during a whole delta analysis at most two pairs of tensors (the one being
    analyzed and the one read ahead) are alive at any time, however many matrices there are."""
    import weakref

    from tailscope.sources import safetensors_reader

    stats = {"loads": 0, "max": 0, "alive": 0}

    def release():
        stats["alive"] -= 1
    original = safetensors_reader.SafetensorsLoader.__call__

    def tracked(self):
        out = original(self)
        stats["loads"] += 1
        stats["alive"] += 1
        weakref.finalize(out, release)
        stats["max"] = max(stats["max"], stats["alive"])
        return out

    monkeypatch.setattr(safetensors_reader.SafetensorsLoader, "__call__", tracked)
    ft, base = pair
    rep = tailscope.analyze(ft, base=base, progress=False)
    assert len(rep.details) >= 15
    assert stats["loads"] == 2 * len(rep.details)
    assert stats["max"] <= 4


def test_delta_is_exact_float32_and_leaves_the_models_alone():
    """A fine-tune's close entries subtract exactly in float32; the in-memory models are not written."""
    from tailscope.sources import open_source
    from tailscope.sources.delta import delta_source

    rng = np.random.default_rng(4)
    base = {"a.weight": rng.standard_normal((300, 50)).astype(np.float32)}
    tuned = {"a.weight": (base["a.weight"] * (1 + 1e-3 * rng.standard_normal((300, 50)))).astype(np.float32)}
    kept = tuned["a.weight"].copy()
    src = open_source(tuned)
    (ref,) = delta_source(src, open_source(base), lambda r: True, "delta").refs()
    delta = ref.load()
    assert delta.dtype == np.float32
    assert np.array_equal(delta, kept.astype(np.float64) - base["a.weight"])
    assert np.array_equal(tuned["a.weight"], kept)
