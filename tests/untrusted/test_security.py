"""Never unpickle: the only pickle reader in src/ is torch.load(weights_only=True); a
scan of the source's syntax trees keeps it so, and a planted torch checkpoint whose object would
create a file on load is refused without the file appearing."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "pickletools"}
LOADERS = {"load", "loads", "Unpickler", "open", "read_pickle"}


def _dotted(node: ast.AST) -> str:
    """'torch.load' for torch.load, 'np.load' for np.load, '' for anything not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def unsafe_loads(code: str) -> list[str]:
    """Every way `code` could unpickle something, as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
            bad = [a.name for a in node.names if a.name in LOADERS or a.name == "*"]
            found += [f"{node.lineno}: from {node.module} import {b}" for b in bad]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        if head.split(".")[-1:] and head.split(".")[-1] in UNPICKLERS and last in LOADERS:
            found.append(f"{node.lineno}: {name}()")
        elif name == "torch.load" and not _kw_is(node, "weights_only", True):
            found.append(f"{node.lineno}: torch.load() without weights_only=True")
        elif last == "load" and head in ("np", "numpy") and not _kw_is(node, "allow_pickle", False) and any(
            k.arg == "allow_pickle" for k in node.keywords
        ):
            found.append(f"{node.lineno}: {name}(allow_pickle=...)")
        elif last == "read_pickle":
            found.append(f"{node.lineno}: {name}()")
        elif last == "from_pretrained" and not _kw_is(node, "trust_remote_code", False) and any(
            k.arg == "trust_remote_code" for k in node.keywords
        ):
            found.append(f"{node.lineno}: {name}(trust_remote_code=...)")
    return found


def test_scanner_catches_each_pattern():
    planted = """
import pickle, torch, numpy as np, pandas as pd
from pickle import loads
from dill import load
pickle.load(f); pickle.Unpickler(f).load(); torch.load(p); torch.load(p, weights_only=False)
np.load(p, allow_pickle=True); pd.read_pickle(p); joblib.load(p)
AutoModel.from_pretrained(p, trust_remote_code=True)
torch.load(p, weights_only=True); np.load(p); np.load(p, allow_pickle=False)
AutoModel.from_pretrained(p, trust_remote_code=False)
"""
    found = unsafe_loads(planted)
    assert len(found) == 10, found  # the last two lines are safe


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_source_never_unpickles(path):
    assert unsafe_loads(path.read_text()) == []


def test_torch_load_is_called_weights_only():
    calls = [
        (path.name, node.lineno)
        for path in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and _dotted(node.func) == "torch.load"
    ]
    assert calls and {name for name, _ in calls} == {"torch_reader.py"}  # one reader, and it is checked above


class _CreatesFile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_planted_torch_checkpoint_is_refused_without_running(tmp_path, layout):
    import torch

    marker = tmp_path / "created-by-the-checkpoint"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    ckpt = model_dir / "pytorch_model.bin"
    torch.save({"layer.weight": torch.ones(4, 4), "evil": _CreatesFile(str(marker))}, ckpt)  # zip format
    target = ckpt if layout == "file" else model_dir
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "tailscope", "analyze", str(target)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and str(ckpt) in line, line
    assert "weights-only" in line and "safetensors.torch.save_file" in line, line
    assert not marker.exists()
