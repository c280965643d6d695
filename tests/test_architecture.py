"""The one-directional data flow (source -> spectrum -> fit -> report), enforced on imports,
and a cheap `import tailscope`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "tailscope"

# stage -> stages it must never import
FORBIDDEN = {
    "sources": {"spectrum", "spectrum_torch", "fit", "metrics", "pipeline", "executors", "parallel", "report", "transforms", "diagnostics"},
    "spectrum": {"sources", "fit", "metrics", "pipeline", "executors", "parallel", "report", "diagnostics"},
    "fit": {"sources", "spectrum", "spectrum_torch", "pipeline", "executors", "parallel", "report", "diagnostics"},
    "report": {"sources", "spectrum", "spectrum_torch", "pipeline", "executors", "parallel", "diagnostics"},
    "diagnostics": {"sources", "pipeline", "executors", "parallel", "report"},  # issue 3: spectrum + fit only
    "plots": {"sources", "spectrum", "spectrum_torch", "pipeline", "executors", "parallel", "diagnostics"},
}


def _stage(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imported_stages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("tailscope."):
                found.add(node.module.split(".")[1])
            elif node.level > 0:
                depth = len(path.relative_to(PKG).parts) - 1  # 0 for top-level modules
                if node.level - 1 == depth and node.module:
                    found.add(node.module.split(".")[0])
                elif node.level - 1 < depth:
                    found.add(path.relative_to(PKG).parts[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("tailscope."))
    return found


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_stage_imports_flow_one_way(path):
    stage = _stage(path)
    bad = _imported_stages(path) & FORBIDDEN.get(stage, set())
    assert not bad, f"{path.relative_to(PKG)} ({stage}) imports {sorted(bad)}"


def test_import_is_cheap_and_side_effect_free():
    code = "import sys, tailscope; print(sorted(m for m in ('numpy', 'pandas', 'torch', 'scipy', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_no_submodule_shadows_a_public_function():
    """A submodule named like a lazy export (tailscope/compare.py next to `tailscope.compare`) would
    replace the function by the module once anything imports it."""
    import tailscope

    submodules = {p.stem for p in PKG.iterdir() if p.suffix == ".py"} | {p.name for p in PKG.iterdir() if p.is_dir()}
    assert not submodules & set(tailscope._LAZY), submodules & set(tailscope._LAZY)
