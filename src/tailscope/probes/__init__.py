"""Activation probes of Hugging Face causal LMs: residual-stream gains, sub-block gains,
(un)embedding norms and output entropy (the "Mistral paradox" questions). See docs/probes.md.

Names are imported on first use, so that the CLI can register `probe` without loading pandas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_PROMPTS", "ModelProbe", "ProbeConfig", "ProbeReport", "probe"]

_LAZY = {
    "DEFAULT_PROMPTS": "config", "ProbeConfig": "config",
    "ModelProbe": "report", "ProbeReport": "report", "probe": "runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
