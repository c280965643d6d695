"""tailscope: how well each layer of a neural network is trained, from its weights alone.

>>> import tailscope
>>> sorted(tailscope.__all__)[:3]
['AnalysisConfig', 'Description', 'Report']
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["AnalysisConfig", "Description", "Report", "TailscopeError", "analyze", "analyze_many", "card", "compare", "describe"]

_LAZY = {
    "analyze": ("tailscope.analysis.pipeline", "analyze"),
    "describe": ("tailscope.analysis.pipeline", "describe"),
    "analyze_many": ("tailscope.analysis.many", "analyze_many"),  # many checkpoints, one table
    "probe": ("tailscope.probes", "probe"),  # activation probes
    "card": ("tailscope.sources.archcard", "card"),  # LLM workflows
    "compare": ("tailscope.comparison.compare", "compare"),
    "smooth": ("tailscope.smoothing", "smooth"),  # SVD smoothing
    "prune": ("tailscope.surgery", "prune"),
    "remove_traps": ("tailscope.surgery", "remove_traps"),
    "perplexity": ("tailscope.surgery", "perplexity"),
    "AnalysisConfig": ("tailscope.config", "AnalysisConfig"),
    "Report": ("tailscope.report.table", "Report"),
    "Description": ("tailscope.report.table", "Description"),
    "TailscopeError": ("tailscope.errors", "TailscopeError"),
}


def __getattr__(name: str) -> Any:
    """Import on first use, so that `import tailscope` stays cheap (no numpy, pandas or torch)."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tailscope' has no attribute {name!r}")
