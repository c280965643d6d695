"""Diagnostics against weightwatcher 0.7.7 on MiniLM: fix_fingers, detX (all layers, one
weightwatcher run) and the MP fit (a few layers: weightwatcher's fit takes seconds per layer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tailscope

MP_LAYERS = [5, 8, 9, 11]


@pytest.fixture(scope="module")
def ww_fingers(minilm_dir) -> pd.DataFrame:
    import weightwatcher as ww

    return ww.WeightWatcher().analyze(model=str(minilm_dir), fix_fingers="clip_xmax", detX=True)


@pytest.fixture(scope="module")
def ts_fingers(minilm_dir) -> pd.DataFrame:
    return tailscope.analyze(minilm_dir, progress=False, fix_fingers="clip_xmax", detx=True).details


@pytest.fixture(scope="module")
def merged(ww_fingers, ts_fingers) -> pd.DataFrame:
    m = ww_fingers.merge(ts_fingers, on="layer_id", suffixes=("_ww", "_ts"))
    assert len(m) == len(ww_fingers) == len(ts_fingers) == 39
    return m


def test_fixed_and_raw_alpha_match(merged):
    for col in ("alpha", "raw_alpha"):
        diff = np.abs(merged[f"{col}_ww"] - merged[f"{col}_ts"])
        assert (diff < 0.01).mean() >= 0.95, merged.loc[diff >= 0.01, ["name_ww", f"{col}_ww", f"{col}_ts"]]
    assert (merged["raw_alpha_ts"] != merged["alpha_ts"]).sum() >= 5  # fingers do occur on MiniLM


def test_num_fingers_is_weightwatchers_plus_one(merged):
    """weightwatcher reports num_fingers = k - 1 when its fit dropped the top k eigenvalues."""
    fixed = merged["num_fingers_ww"] > 0
    assert ((merged["num_fingers_ts"] == merged["num_fingers_ww"] + 1) | ~fixed).all()
    assert (merged.loc[~fixed, "num_fingers_ts"] == 0).all()
    # num_pl_spikes counts every eigenvalue >= the clipped xmin, fingers included, in both
    assert (merged["num_pl_spikes_ww"] == merged["num_pl_spikes_ts"]).all()


def test_detx_matches_with_names_unswapped(merged):
    assert (merged["detX_num_ww"] == merged["detX_num_ts"]).all()
    # weightwatcher's detX_val is in the original units; its detX_val_unrescaled is the mean-1 value
    assert np.allclose(merged["detX_val_ww"], merged["detX_val_ts"], rtol=1e-6)
    assert np.allclose(merged["detX_val_unrescaled"], merged["detX_val_rescaled"], rtol=1e-6)


def test_mp_fit_matches_on_a_few_layers(minilm_dir):
    import weightwatcher as ww

    expected = ww.WeightWatcher().analyze(model=str(minilm_dir), layers=MP_LAYERS, mp_fit=True)
    got = tailscope.analyze(minilm_dir, progress=False, layers=MP_LAYERS, mp_fit=True).details
    m = expected.merge(got, on="layer_id", suffixes=("_ww", "_ts"))
    assert len(m) == len(MP_LAYERS)
    assert (m["num_spikes_ww"] == m["num_spikes_ts"]).all()
    for col in ("mp_softrank", "bulk_max", "bulk_min", "sigma_mp", "W_scale"):
        assert np.allclose(m[f"{col}_ww"], m[f"{col}_ts"], rtol=1e-4), col
