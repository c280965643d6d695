"""What a probe found, for one model or several side by side (table, text, JSON, figure)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tailscope.errors import InputError
from tailscope.outputs import atomic_write, atomic_write_text

# Rows of the side-by-side table: (label, path into ModelProbe.summary_dict()).
TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("architecture", "architecture"),
    ("layers", "n_layers"),
    ("prompts / tokens", "prompt_tokens"),
    ("embedding norm (no pos 0)", "residual.embed_norm_no0"),
    ("final residual norm (no pos 0)", "residual.final_norm_no0"),
    ("final residual norm (pos 0)", "residual.final_norm_pos0"),
    ("total gain raw (no pos 0)", "residual.raw_no0.total_gain"),
    ("contracting layers raw (no pos 0)", "residual.raw_no0.contracting_count"),
    ("contracting fraction raw (no pos 0)", "residual.raw_no0.contracting_fraction"),
    ("largest gain raw (no pos 0)", "residual.raw_no0.max_gain"),
    ("  at layer", "residual.raw_no0.max_gain_layer"),
    ("largest gain raw (all tokens)", "residual.raw.max_gain"),
    ("  at layer", "residual.raw.max_gain_layer"),
    ("contracting layers after final norm", "residual.normed_no0.contracting_count"),
    ("last MLP gain |x+mlp|/|x| (no pos 0)", "residual.last_mlp_gain_no0"),
    ("last MLP |mlp|/|x| (no pos 0)", "residual.last_mlp_ratio_no0"),
    ("tied embeddings", "embeddings.tied"),
    ("W_E Frobenius", "embeddings.embed.fro"),
    ("W_E spectral", "embeddings.embed.spectral"),
    ("W_E mean row norm", "embeddings.embed.row_norm_mean"),
    ("W_E alpha", "embeddings.embed.alpha"),
    ("W_U Frobenius", "embeddings.unembed.fro"),
    ("W_U spectral", "embeddings.unembed.spectral"),
    ("W_U mean row norm", "embeddings.unembed.row_norm_mean"),
    ("W_U alpha", "embeddings.unembed.alpha"),
    ("W_U / W_E Frobenius", "embeddings.ratio_fro"),
    ("W_U / W_E spectral", "embeddings.ratio_spectral"),
    ("final-token entropy (nats)", "logits.entropy"),
    ("effective vocab exp(H)", "logits.effective_vocab"),
    ("top-k probability mass", "logits.top_k_mass"),
    ("logit std", "logits.logit_std"),
    ("logit range", "logits.logit_range"),
)


@dataclass
class ModelProbe:
    """One model's measurements.

    ``layers``: one row per depth (0 = embedding output, d = output of decoder layer d - 1, whose
    0-based index is in column ``layer``): residual norms and gains, raw and after the final norm,
    over all tokens and without position 0 (suffix ``_no0``), and the sub-block ratios of the layer.
    ``token_norms``: per prompt, the raw per-token norms [n_layers + 1, T].
    """

    name: str
    architecture: str
    n_layers: int
    prompts: list[str]
    n_tokens: list[int]
    layers: pd.DataFrame
    residual: dict[str, Any]
    embeddings: dict[str, Any] | None
    logits: dict[str, float]
    logits_per_prompt: list[dict[str, float]]
    token_norms: list[np.ndarray] = field(repr=False, default_factory=list)

    def summary_dict(self) -> dict[str, Any]:
        """Everything but the per-layer table and per-token norms, JSON-ready."""
        return _clean({
            "name": self.name, "architecture": self.architecture, "n_layers": self.n_layers,
            "prompt_tokens": f"{len(self.prompts)} / {sum(self.n_tokens)}",
            "residual": self.residual, "embeddings": self.embeddings, "logits": self.logits,
        })

    def to_dict(self) -> dict[str, Any]:
        """Full JSON-ready record (per-layer table and per-token norms included)."""
        out = self.summary_dict()
        out.update(_clean({
            "prompts": self.prompts, "n_tokens": self.n_tokens, "logits_per_prompt": self.logits_per_prompt,
            "layers": self.layers.astype(object).where(self.layers.notna(), None).to_dict(orient="records"),
            "token_norms": [a.tolist() for a in self.token_norms],
        }))
        return out


@dataclass
class ProbeReport:
    """Probes of one or more models; ``models`` keeps their order."""

    models: list[ModelProbe]

    def __getitem__(self, name: str) -> ModelProbe:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    @classmethod
    def combine(cls, reports: list["ProbeReport"]) -> "ProbeReport":
        """One report holding the models of several (for side-by-side tables and figures)."""
        return cls([m for r in reports for m in r.models])

    def table(self) -> pd.DataFrame:
        """Key numbers, one column per model."""
        data = {}
        for m in self.models:
            flat = m.summary_dict()
            data[m.name] = [_lookup(flat, path) for _, path in TABLE_ROWS]
        return pd.DataFrame(data, index=[label for label, _ in TABLE_ROWS])

    def to_text(self) -> str:
        """The side-by-side table as aligned text."""
        from tailscope.report.printing import printable_frame

        return printable_frame(self.table().map(_fmt)).to_string()

    def to_dict(self) -> dict[str, Any]:
        return {"models": [m.to_dict() for m in self.models]}

    def save(self, path: str | Path) -> Path:
        """Write the full report as JSON (the only format: it nests per-layer and per-token data)."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            raise InputError(path, "probe reports are saved as .json")
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))

    def plot(self, path: str | Path | None = None) -> Any:
        """The four-panel figure (see `tailscope.probes.plots.probe_figure`); saved when a path is given."""
        from tailscope.probes.plots import probe_figure

        fig = probe_figure(self)
        if path is not None:
            kind = Path(path).suffix.lstrip(".") or "png"
            atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=kind))
        return fig

    def __repr__(self) -> str:
        return f"ProbeReport({[m.name for m in self.models]})\n{self.to_text()}"


def _lookup(tree: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _clean(value: Any) -> Any:
    """numpy scalars -> Python, NaN -> None (strict JSON), recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
