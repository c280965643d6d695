"""Activation probes of Hugging Face causal LMs: residual-stream gains, sub-block gains,
(un)embedding norms and output entropy (the "Mistral paradox" questions). See the README,
"Activation probes".

Names are imported on first use, so that the CLI can register `probe` without loading pandas.
"""

from __future__ import annotations

from tailscope._lazy import lazy_getattr

__all__ = ["DEFAULT_PROMPTS", "ModelProbe", "ProbeConfig", "ProbeReport", "probe"]

_LAZY = {
    "DEFAULT_PROMPTS": "config", "ProbeConfig": "config",
    "ModelProbe": "report", "ProbeReport": "report", "probe": "runner",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
