"""Bounded memory: a 3 GB bf16 checkpoint analyzes with peak anonymous RSS under 1.5 GB.

The analysis runs in a subprocess that samples RssAnon from /proc/self/status (anonymous memory
only: the file's mmap pages are file-backed and the kernel may drop them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bigfile import RSS_SAMPLER, write_bf16_checkpoint, write_sharded

LIMIT_BYTES = 1.5 * 2**30
# 60 tall matrices of 49152 x 512 in bf16 = 3.0 GB; tall-skinny keeps the eigen-work cheap
SHAPES = {f"model.layers.{i}.mlp.down_proj.weight": (49152, 512) for i in range(60)}

PROBE = RSS_SAMPLER + r"""
import tailscope
report = tailscope.analyze(sys.argv[1], progress=False)
peak = max(peak, rss_anon())
print(json.dumps({"peak": peak, "rows": len(report.details), "ok": int((report.details.status == "success").sum())}))
"""


def _measure(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_single_file_3gb_bf16_stays_under_limit(tmp_path):
    path = tmp_path / "model.safetensors"
    size = write_bf16_checkpoint(path, SHAPES)
    assert size > 3.0e9
    result = _measure(path)
    print(f"\n3 GB single file: peak RssAnon {result['peak'] / 2**20:.0f} MiB for {size / 2**30:.2f} GiB")
    assert result["rows"] == result["ok"] == len(SHAPES)
    assert result["peak"] < LIMIT_BYTES


@pytest.mark.slow
def test_sharded_3gb_bf16_stays_under_limit(tmp_path):
    size = write_sharded(tmp_path / "sharded", SHAPES, n_shards=4)
    assert size > 3.0e9
    result = _measure(tmp_path / "sharded")
    print(f"\n3 GB in 4 shards: peak RssAnon {result['peak'] / 2**20:.0f} MiB")
    assert result["rows"] == result["ok"] == len(SHAPES)
    assert result["peak"] < LIMIT_BYTES
