"""The content cache: a tensor seen before, under any name and in any model, is not computed again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

import tailscope
from tailscope.errors import ConfigError

NUMERIC = ["alpha", "D", "xmin", "lambda_max", "log_norm", "stable_rank", "entropy", "num_pl_spikes"]


def _models(tmp_path):
    """Model A (6 matrices); model B = A's matrices renamed, one of them changed (a 'fine-tune')."""
    rng = np.random.default_rng(0)
    mats = [rng.standard_t(3, size=(300, 120)).astype(np.float32) for _ in range(6)]
    save_file({f"model.layers.{i}.mlp.up_proj.weight": m for i, m in enumerate(mats)}, str(tmp_path / "a.safetensors"))
    tuned = dict({f"blocks.{i}.ffn.weight": m for i, m in enumerate(mats)})
    tuned["blocks.5.ffn.weight"] = mats[5] + np.float32(0.5)
    save_file(tuned, str(tmp_path / "b.safetensors"))
    return tmp_path / "a.safetensors", tmp_path / "b.safetensors"


def _rows_in(cache) -> int:
    return sum(1 for _ in open(cache / "rows.jsonl")) - 1  # the header line


def test_shared_tensors_are_computed_once_and_rows_are_exact(tmp_path):
    a, b = _models(tmp_path)
    cache = tmp_path / "cache"
    first = tailscope.analyze(a, cache=cache, progress=False)
    assert first.reused == 0 and _rows_in(cache) == 6
    again = tailscope.analyze(b, cache=cache, progress=False)
    assert again.reused == 5 and _rows_in(cache) == 7  # only the changed matrix was computed
    fresh = tailscope.analyze(b, progress=False).details
    assert list(again.details["name"]) == list(fresh["name"])  # B's names, not A's
    pd.testing.assert_frame_equal(again.details[NUMERIC], fresh[NUMERIC], check_exact=True)
    assert tailscope.analyze(a, cache=cache, progress=False).reused == 6  # an unchanged model: nothing computed


def test_compare_with_a_cache_computes_each_distinct_tensor_once(tmp_path):
    a, b = _models(tmp_path)
    cache = tmp_path / "cache"
    comp = tailscope.compare(a, b, cache=cache, progress=False)
    assert _rows_in(cache) == 7
    assert comp.reports[1].reused == 5


def test_other_options_do_not_share_rows(tmp_path):
    a, _ = _models(tmp_path)
    cache = tmp_path / "cache"
    tailscope.analyze(a, cache=cache, progress=False)
    assert tailscope.analyze(a, cache=cache, progress=False, detx=True).reused == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"cache": 3}, "directory path"),
    ({"cache": "c", "results": "r.jsonl"}, "one of `cache` and `results`"),
])
def test_bad_cache_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        tailscope.AnalysisConfig(**kwargs)
