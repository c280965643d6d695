"""compare: side-by-side summary, name-matched alphas and the two PNG plots."""

from __future__ import annotations

import numpy as np
import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import ConfigError


@pytest.fixture(scope="module")
def two(tiny_mistral_dir, tiny_mixtral_dir):
    return tailscope.analyze(tiny_mistral_dir, progress=False), tailscope.analyze(tiny_mixtral_dir, progress=False)


def test_summary_side_by_side(two, tmp_path):
    a, b = two
    comp = tailscope.compare(a, b, names=["mistral", "mixtral"], plots=tmp_path)
    s = comp.summary
    assert list(s.columns) == ["mistral", "mixtral"]
    for lab, rep in zip(comp.labels, two):
        ok = rep.details[rep.details["status"] == "success"]
        assert s.loc["mean alpha", lab] == pytest.approx(ok["alpha"].mean())
        assert s.loc["mean alpha_weighted", lab] == pytest.approx(ok["alpha_weighted"].mean())
        assert s.loc["mean log_norm", lab] == pytest.approx(rep.summary["log_norm"])
        assert s.loc["frac under-trained (alpha > 6)", lab] == pytest.approx((ok["alpha"] > 6).mean())
        assert s.loc["frac over-trained (alpha < 2)", lab] == pytest.approx((ok["alpha"] < 2).mean())
    # matched by name: the attention, embedding and head matrices both models have (not the experts)
    m = comp.matched
    names_a = set(a.details["name"])
    names_b = set(b.details["name"])
    assert set(m["name"]) == names_a & names_b and len(m) > 0
    row = m.iloc[0]
    assert row["mistral"] == pytest.approx(a.details.set_index("name").loc[row["name"], "alpha"])
    assert [p.name for p in comp.plot_files] == ["alpha_scatter.png", "alpha_hist.png"]
    for p in comp.plot_files:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_same_model_lies_on_diagonal(tiny_mistral_dir):
    comp = tailscope.compare(tiny_mistral_dir, tiny_mistral_dir, progress=False)
    assert comp.labels[0] != comp.labels[1]
    m = comp.matched
    np.testing.assert_array_equal(m[comp.labels[0]], m[comp.labels[1]])


def test_errors():
    with pytest.raises(ConfigError, match="at least two"):
        tailscope.compare("x")
    with pytest.raises(ConfigError, match="`names`"):
        tailscope.compare("a", "b", names=["one"])


def test_cli(tiny_mistral_dir, tiny_mixtral_fused_dir, tmp_path, capsys):
    code = main(["compare", str(tiny_mistral_dir), str(tiny_mixtral_fused_dir), "--plots", str(tmp_path), "--quiet",
                 "--out", str(tmp_path / "m.csv")])
    assert code == 0
    out = capsys.readouterr().out
    assert "mean alpha" in out and "matched by name" in out
    assert (tmp_path / "alpha_scatter.png").exists() and (tmp_path / "alpha_hist.png").exists() and (tmp_path / "m.csv").exists()
