"""The one-directional data flow, enforced on imports: the layer contract in pyproject.toml
(sources -> fit -> spectrum -> rows -> plots -> report -> analysis, workflows on top), no import
cycle between any two modules, and a cheap `import tailscope`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx

PKG = Path(__file__).resolve().parents[1] / "src" / "tailscope"
STAGES = {"sources", "spectrum", "fit", "rows", "analysis", "report", "plots"}
WORKFLOWS = {"comparison", "smoothing", "train", "probes", "compat", "surgery"}


def test_layer_contract_holds(capsys):
    """import-linter checks every import, function-level ones included, against the layers."""
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(PKG.parents[1] / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0 and "1 kept, 0 broken" in out, out[-3000:]


def test_no_import_cycle():
    graph = grimp.build_graph("tailscope", exclude_type_checking_imports=True)
    g = nx.DiGraph((m, d) for m in graph.modules for d in graph.find_modules_directly_imported_by(m))
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, cycles


def test_one_folder_per_stage_and_workflow():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert STAGES | WORKFLOWS <= folders, sorted((STAGES | WORKFLOWS) - folders)
    modules = {p.stem for p in PKG.glob("*.py")}
    assert modules <= {"__init__", "__main__", "_lazy", "cli", "config", "errors", "outputs"}, sorted(modules)


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
