"""SVD smoothing: write a checkpoint whose chosen matrices keep only some singular components.

weightwatcher's `SVDSmoothing` / `SVDSharpness` (and LASER's layer-selective rank reduction) as a
streaming checkpoint-to-checkpoint tool; `methods` says which components each method keeps.
(Named `smoothing`, not `smooth`: a submodule named like the public function would shadow
`tailscope.smooth` once imported.)
"""

from __future__ import annotations

from tailscope.smoothing.run import SIDECAR, SmoothReport, smooth

__all__ = ["SIDECAR", "SmoothReport", "smooth"]
