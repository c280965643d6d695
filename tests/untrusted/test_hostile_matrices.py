"""Numerically hostile matrices: each gives a row with a status and a reason, or is
skipped with a reason, and the healthy matrices analyzed with them are unaffected."""

from __future__ import annotations

import numpy as np
import pytest

import tailscope

N, M = 60, 40


def _state() -> dict:
    import torch

    rng = np.random.default_rng(0)
    g = lambda *shape: rng.standard_normal(shape or (N, M)).astype(np.float32)  # noqa: E731
    nan, inf = g(), g()
    nan[1, 2] = np.nan
    inf[0, 0] = -np.inf
    u, _ = rng.standard_normal(N), rng.standard_normal(M)  # the second draw keeps the later matrices as they were
    state = {
        "nan": nan, "inf": inf, "zeros": np.zeros((N, M), np.float32),
        "rank1": np.outer(rng.integers(1, 9, N), rng.integers(-8, 9, M)).astype(np.float32),  # exact in fp32
        "constant": np.full((N, M), 0.5, np.float32),
        "constant_rows": np.repeat(u[:, None], M, axis=1).astype(np.float32),
        "dynamic_range": (g() * np.logspace(-30, 30, M)).astype(np.float32),  # columns from 1e-30 to 1e30
        "near_fp32_max": np.full((N, M), 3e38, np.float32) * np.sign(g()),
        # shapes that take the fp32 Gram route (M >= 256, N >= 2M), whose Gram matrix overflows
        "dynamic_range_fp32_route": (g(512, 256) * np.logspace(-30, 30, 256)).astype(np.float32),
        "near_fp32_max_fp32_route": np.full((512, 256), 3e38, np.float32) * np.sign(g(512, 256)),
        "large_fp32_route": g(512, 256) * np.float32(1e20),
        "subnormal": g() * np.float32(1e-40),
        "fp16_overflow": torch.from_numpy(g() * 1e5).half(),  # |x| > 65504 became inf on the cast
        "fp16_ok": torch.from_numpy(g()).half(),
        "tiny_3x2": g(3, 2), "one_by_n": g(1, M), "n_by_one": g(N, 1), "one_by_one": g(1, 1),
        "empty": np.zeros((0, M), np.float32),
        "healthy": g(),
    }
    return {f"{k}.weight": (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in state.items()}


STATE = _state()
CASES = [k.removesuffix(".weight") for k in STATE]


@pytest.fixture(scope="module", params=[8, 0], ids=["min_evals=8", "min_evals=0"])
def report(request):
    return tailscope.analyze(STATE, progress=False, min_evals=request.param)


def _oracle_lambda_max(name: str) -> float:
    w = STATE[f"{name}.weight"].double().numpy()
    return float(np.linalg.svd(w, compute_uv=False)[0] ** 2)


EXPECTED = {  # name -> (status, reason fragment); "skip" means a skip reason instead of a row
    "nan": ("failed", "1 NaN/Inf entries"),
    "inf": ("failed", "1 NaN/Inf entries"),
    "zeros": ("failed", "all eigenvalues are zero"),
    "rank1": ("failed", "1 eigenvalue(s) above"),
    "constant": ("failed", "1 eigenvalue(s) above"),
    "constant_rows": ("failed", "1 eigenvalue(s) above"),
    "subnormal": ("failed", "0 eigenvalue(s) above"),
    "fp16_overflow": ("failed", "NaN/Inf entries"),
    "empty": ("skip", "empty tensor"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_hostile_matrix_gets_a_status_and_reason(report, name):
    details = report.details.set_index("name")
    skipped = {ref.name: reason for ref, reason in report.skipped}
    small = name in ("tiny_3x2", "one_by_n", "n_by_one", "one_by_one")
    if name == "empty" or (small and report.config.min_evals == 8):
        assert name not in details.index and skipped[name]
        assert ("empty tensor" if name == "empty" else "< min_evals 8") in skipped[name]
        return
    row = details.loc[name]
    assert row["status"] in ("success", "failed", "degenerate")  # degenerate: a spectrum with no tail to fit
    if row["status"] != "success":
        assert row["reason"] and np.isnan(row["alpha"]) and row["warning"] == ""
    else:
        assert np.isfinite(row["alpha"]) and row["reason"] == ""
    if name in EXPECTED:
        status, fragment = EXPECTED[name]
        assert row["status"] == status and fragment in row["reason"], (row["status"], row["reason"])
    if name.endswith("_fp32_route"):  # their fp32 Gram overflows; the fp64 route analyzes them
        assert row["status"] == "success", row["reason"]
    if bool(row["has_esd"]):  # whenever a spectrum exists, its top eigenvalue is right
        assert row["lambda_max"] == pytest.approx(_oracle_lambda_max(name), rel=1e-6)
    if name in ("rank1", "constant", "constant_rows"):
        assert row["matrix_rank"] == 1


def test_the_rest_of_the_model_still_runs(report):
    alone = tailscope.analyze({"healthy.weight": STATE["healthy.weight"]}, progress=False).details.iloc[0]
    row = report.details.set_index("name").loc["healthy"]
    assert row["status"] == "success" and row["alpha"] == alone["alpha"] and row["D"] == alone["D"]
    assert report.details.set_index("name").loc["fp16_ok", "status"] == "success"
    expected_rows = len(CASES) - 1 - (4 if report.config.min_evals == 8 else 0)
    assert len(report.details) == expected_rows


def test_hostile_rows_survive_the_results_file(tmp_path):
    """NaN/Inf values and failed rows round-trip exactly through the durable results file."""
    import pandas as pd

    plain = tailscope.analyze(STATE, progress=False, min_evals=0).details
    tailscope.analyze(STATE, progress=False, min_evals=0, results=tmp_path / "r.jsonl")
    again = tailscope.analyze(STATE, progress=False, min_evals=0, results=tmp_path / "r.jsonl")
    assert again.reused == len(plain)
    pd.testing.assert_frame_equal(again.details, plain, check_exact=True)
