"""Agreement with weightwatcher 0.7.7 (the reference tool, a test-only dependency) on real models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tailscope

EXACT_COLUMNS = ["lambda_max", "log_norm", "stable_rank", "entropy", "xmin", "D"]
MORE_COLUMNS = ["sigma", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "norm", "sv_max", "xmax"]
INT_COLUMNS = ["M", "N", "num_evals", "rf", "num_pl_spikes"]
# weightwatcher counts rank with float64 eps on float32 values and weak rank with an absolute
# tolerance; tailscope keeps those numbers as ww_* columns (the compat facade reports them)
RANK_COLUMNS = ["matrix_rank", "rank_loss", "weak_rank_loss"]


@pytest.fixture(scope="session")
def ww_minilm(minilm_dir) -> pd.DataFrame:
    import weightwatcher as ww

    return ww.WeightWatcher().analyze(model=str(minilm_dir))


@pytest.fixture(scope="session")
def ts_minilm(minilm_dir) -> pd.DataFrame:
    return tailscope.analyze(minilm_dir, progress=False).details


def _merged(ww_df: pd.DataFrame, ts_df: pd.DataFrame) -> pd.DataFrame:
    return ww_df.merge(ts_df, on="layer_id", suffixes=("_ww", "_ts"), how="outer", indicator=True)


def _rel(a: pd.Series, b: pd.Series) -> np.ndarray:
    a, b = a.astype(float).to_numpy(), b.astype(float).to_numpy()
    return np.abs(a - b) / np.maximum(np.abs(a), 1e-12)


def test_same_layers_ids_and_names(ww_minilm, ts_minilm):
    m = _merged(ww_minilm, ts_minilm)
    assert (m["_merge"] == "both").all(), m.loc[m["_merge"] != "both", ["layer_id", "name_ww", "name_ts"]]
    assert (m["name_ww"] == m["name_ts"]).all()
    assert len(m) == 39  # 6 blocks x 6 matrices + 2 embeddings + pooler; token_type_embeddings (2 x 384) skipped


def test_alpha_within_001_on_every_layer(ww_minilm, ts_minilm):
    m = _merged(ww_minilm, ts_minilm)
    diff = np.abs(m["alpha_ww"] - m["alpha_ts"])
    # the issue allows 5% of layers to differ; on MiniLM none does, so none may
    assert (diff < 0.01).all(), m.loc[diff >= 0.01, ["name_ww", "alpha_ww", "alpha_ts"]]


@pytest.mark.parametrize("column", EXACT_COLUMNS + MORE_COLUMNS)
def test_metric_within_1e4_relative(ww_minilm, ts_minilm, column):
    m = _merged(ww_minilm, ts_minilm)
    rel = _rel(m[f"{column}_ww"], m[f"{column}_ts"])
    assert (rel < 1e-4).all(), m.loc[rel >= 1e-4, ["name_ww", f"{column}_ww", f"{column}_ts"]]


@pytest.mark.parametrize("column", INT_COLUMNS)
def test_integer_columns_equal(ww_minilm, ts_minilm, column):
    m = _merged(ww_minilm, ts_minilm)
    assert (m[f"{column}_ww"].astype(int) == m[f"{column}_ts"].astype(int)).all()


@pytest.mark.parametrize("column", RANK_COLUMNS)
def test_rank_columns_equal_weightwatchers_rule(ww_minilm, ts_minilm, column):
    m = _merged(ww_minilm, ts_minilm.rename(columns={f"ww_{column}": f"{column}_rule"}))
    assert (m[f"{column}_ww"].astype(int) == m[f"{column}_rule"].astype(int)).all()


def test_matrix_rank_is_numpys_on_the_stored_matrices(minilm_dir, ts_minilm):
    """Where weightwatcher's count differs (two float32 MiniLM matrices: 384 vs 383), ours is numpy's."""
    from safetensors.numpy import load_file

    tensors = load_file(str(minilm_dir / "model.safetensors"))
    for _, row in ts_minilm.iterrows():
        assert row["matrix_rank"] == np.linalg.matrix_rank(tensors[row["name"] + ".weight"]), row["name"]


def test_warnings_and_types_equal(ww_minilm, ts_minilm):
    m = _merged(ww_minilm, ts_minilm)
    assert (m["warning_ww"].fillna("") == m["warning_ts"].fillna("")).all()
    assert (m["layer_type_ww"].astype(str) == m["layer_type_ts"]).all()
    assert set(ww_minilm.columns) <= set(ts_minilm.columns)


def test_summary_matches_weightwatcher(minilm_dir, ww_minilm):
    import weightwatcher as ww

    expected = ww.WeightWatcher().get_summary(ww_minilm)
    got = tailscope.analyze(minilm_dir, progress=False).summary
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_module_input_matches_weightwatcher_on_a_small_mlp():
    """An nn.Module: weightwatcher numbers modules from 0 over named_modules(); so do we."""
    import torch
    import weightwatcher as ww

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 96), torch.nn.Embedding(300, 40)
    )
    expected = ww.WeightWatcher().analyze(model=model)
    got = tailscope.analyze(model, progress=False).details
    assert list(expected["layer_id"]) == list(got["layer_id"])
    assert np.allclose(expected["alpha"], got["alpha"], rtol=1e-8)
    assert np.allclose(expected["lambda_max"], got["lambda_max"], rtol=1e-8)
