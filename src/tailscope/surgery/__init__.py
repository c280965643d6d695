"""Spectral surgery: edits of a checkpoint chosen from its spectra, and the measure of their effect.

- `prune`: AlphaPruning's per-matrix sparsities from alpha, then magnitude or Wanda pruning;
- `remove_traps`: correlation traps (spikes of the shuffled ESD) replaced by random components;
- `perplexity`: a causal LM scored on a bundled public-domain held-out text (or any text).

Each writes (or scores) a new checkpoint streamed tensor by tensor; see the module docstrings.
"""

from __future__ import annotations

from tailscope._lazy import lazy_getattr

__all__ = ["Perplexity", "PerplexityConfig", "PruneConfig", "SurgeryReport", "perplexity", "prune", "remove_traps"]

__getattr__ = lazy_getattr(__name__, {
    "prune": "pruning", "remove_traps": "trap_removal", "perplexity": "evaluation", "Perplexity": "evaluation",
    "PruneConfig": "config", "PerplexityConfig": "config", "SurgeryReport": "report",
})
