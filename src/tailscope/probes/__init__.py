"""Activation probes of Hugging Face causal LMs: residual-stream gains, sub-block gains,
(un)embedding norms and output entropy (the "Mistral paradox" questions). See docs/probes.md."""

from __future__ import annotations

from .config import DEFAULT_PROMPTS, ProbeConfig
from .report import ModelProbe, ProbeReport
from .runner import probe

__all__ = ["DEFAULT_PROMPTS", "ModelProbe", "ProbeConfig", "ProbeReport", "probe"]
