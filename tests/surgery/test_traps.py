"""Correlation traps: found on planted cases every time, never on pure random matrices, gone after
`remove_traps` (the shuffled ESD then fits Marchenko-Pastur), identical to analyze's `num_traps`,
and written like `smooth` (untouched tensors byte-identical, input never modified).

The full-size versions of the planted checks (1000 matrices each) are `bench/bench_traps.py`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import InputError
from tailscope.rows.diagnostics import shuffled_eigenvalues
from tailscope.surgery.report import TRAPS_SIDECAR
from tailscope.surgery.traps import mp_ks_distance, permutation, remove_matrix_traps, shuffled_traps, trap_cut

N, M = 400, 200
CUT = trap_cut(N, M, 1.0, 0.0)  # for unit-variance entries


def test_the_permutation_is_the_one_analyze_shuffles_with():
    w = np.random.default_rng(3).standard_normal((50, 30)).astype(np.float32)
    perm = permutation(w.size, (7, 4))
    ours = np.linalg.eigvalsh(np.asarray(w.ravel()[perm].reshape(w.shape), dtype=np.float64).T @ w.ravel()[perm].reshape(w.shape))
    theirs = shuffled_eigenvalues([w], (7, 4))[0]
    np.testing.assert_allclose(np.sort(ours), np.sort(theirs), rtol=1e-5)


@pytest.mark.parametrize("seed", range(40))
def test_a_planted_entry_spike_is_found_and_removed(seed):
    """A rank-one spike a e_i e_j^T with a^2 at the trap cut: one trap, none left after removal."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, M))
    i, j = rng.integers(N), rng.integers(M)
    w[i, j] += np.sqrt(CUT) * rng.choice([-1, 1])
    result = remove_matrix_traps(w, (seed, 0))
    assert len(result.traps) == 1 and result.traps_after == 0
    assert result.ks_after < 0.05
    assert abs(result.matrix[i, j]) < 5  # the huge entry is gone, back to bulk size
    assert result.traps[0].w_mode == 0  # it was W's largest singular direction
    assert np.linalg.norm(result.matrix) == pytest.approx(np.linalg.norm(w), rel=0.02)  # energy kept


@pytest.mark.parametrize("seed", range(10))
def test_a_planted_mean_spike_is_found_and_removed(seed):
    """The rank-one mean mu 1 1^T with mu^2 N M at twice the cut survives shuffling: one trap."""
    rng = np.random.default_rng(100 + seed)
    w = rng.standard_normal((N, M)) + np.sqrt(2 * CUT / (N * M))
    result = remove_matrix_traps(w, (seed, 1))
    assert len(result.traps) == 1 and result.traps_after == 0 and result.ks_after < 0.05
    assert abs(result.matrix.mean()) < 0.1 * np.sqrt(2 * CUT / (N * M))


def test_a_learned_low_rank_correlation_is_not_a_trap():
    """A delocalized rank-one spike far above the MP edge is a real correlation: shuffling
    spreads it into the bulk, so nothing is flagged and W is left unchanged."""
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal(N), rng.standard_normal(M)
    w = rng.standard_normal((N, M)) + 3 * np.sqrt(CUT) * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    assert np.linalg.svd(w, compute_uv=False)[0] ** 2 > 5 * CUT
    result = remove_matrix_traps(w, (0, 0))
    assert result.matrix is None and result.traps == []


def test_no_false_positive_on_200_pure_random_matrices_and_they_fit_mp():
    ks = []
    for seed in range(200):
        w = np.random.default_rng(10_000 + seed).standard_normal((N // 2, M // 2))
        _, comps, _, evals = shuffled_traps(w, (seed, 0))
        assert comps == [], seed
        ks.append(mp_ks_distance(evals, *w.shape, float(np.var(w))))
    assert max(ks) < 0.05


def test_ks_distance_separates_mp_from_a_different_law():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((N, M))
    evals = np.linalg.eigvalsh(w.T @ w)
    assert mp_ks_distance(evals, N, M, 1.0) < 0.02
    assert mp_ks_distance(evals, N, M, 1.3) > 0.1  # wrong variance
    heavy = rng.standard_t(2.5, (N, M))
    assert mp_ks_distance(np.linalg.eigvalsh(heavy.T @ heavy), N, M, float(np.var(heavy))) > 0.05  # fails the bar


# -- the checkpoint -----------------------------------------------------------------------------


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def trapped_file(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(9)
    trapped = rng.standard_normal((600, 300)).astype(np.float32)
    trapped.flat[rng.choice(trapped.size, 3, replace=False)] = 60.0  # three huge entries: three traps
    tensors = {"a.weight": trapped, "b.weight": rng.standard_normal((300, 200)).astype(np.float32),
               "a.bias": np.ones(600, dtype=np.float32)}
    save_file(tensors, str(tmp_path / "m.safetensors"))
    return tmp_path / "m.safetensors"


def test_remove_traps_removes_what_num_traps_counts_and_copies_the_rest(trapped_file, tmp_path):
    before = tailscope.analyze(trapped_file, progress=False, randomize=True).details.set_index("name")["num_traps"]
    assert before.to_dict() == {"a": 3, "b": 0}
    digest = _digest(trapped_file)
    report = tailscope.remove_traps(trapped_file, tmp_path / "out")
    assert _digest(trapped_file) == digest
    rows = {r["name"]: r for r in report.rows}
    assert rows["a"]["num_traps"] == 3 and rows["b"]["num_traps"] == 0 and not rows["b"]["changed"]
    out = tmp_path / "out" / "m.safetensors"
    after = tailscope.analyze(out, progress=False, randomize=True).details.set_index("name")["num_traps"]
    assert after.to_dict() == {"a": 0, "b": 0}
    from safetensors.numpy import load_file

    old, new = load_file(str(trapped_file)), load_file(str(out))
    assert new["b.weight"].tobytes() == old["b.weight"].tobytes() and new["a.bias"].tobytes() == old["a.bias"].tobytes()
    assert np.abs(new["a.weight"]).max() < 10
    from tailscope.report.html import write_html

    page = write_html(tailscope.analyze(out, progress=False), tmp_path / "r.html").read_text()
    assert "<h2>Correlation traps removed</h2>" in page and 'alt="Correlation traps removed"' in page
    side = json.loads((tmp_path / "out" / TRAPS_SIDECAR).read_text())
    assert side["summary"] == {"matrices": 2, "with traps": 1, "traps": 3, "left after": 0}
    assert [len(r["traps"]) for r in side["tensors"]] == [3, 0]


def test_cli_dry_run_and_bad_destination(trapped_file, capsys):
    assert main(["remove-traps", str(trapped_file), "--dry-run"]) == 0
    assert "traps: 3" in capsys.readouterr().out
    digest = _digest(trapped_file)
    with pytest.raises(InputError, match="must not contain"):
        tailscope.remove_traps(trapped_file, trapped_file.parent)
    assert main(["remove-traps", str(trapped_file), "-o", str(trapped_file)]) == 2
    assert main(["remove-traps", str(trapped_file)]) == 2  # neither --out nor --dry-run
    assert _digest(trapped_file) == digest
