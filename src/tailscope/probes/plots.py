"""The four-panel probe figure: residual norm and gain per layer (models overlaid), embedding vs
unembedding norms, output entropy. Each panel is a function taking ``ax=None`` and returning it.

Models with different depths are overlaid on a relative depth axis (layer / n_layers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tailscope.errors import require

if TYPE_CHECKING:
    from tailscope.probes.report import ModelProbe, ProbeReport


def _axes(ax: Any) -> Any:
    if ax is None:
        plt = require("matplotlib.pyplot", "plots")
        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def _x(model: ModelProbe, relative: bool) -> np.ndarray:
    depth = model.layers["depth"].to_numpy(dtype=float)
    return depth / model.n_layers if relative else depth


def _relative(report: ProbeReport) -> bool:
    return len({m.n_layers for m in report.models}) > 1


def _xlabel(relative: bool) -> str:
    return "relative depth (layer / n_layers)" if relative else "depth (0 = embedding, d = after layer d-1)"


def plot_residual_norms(report: ProbeReport, ax: Any = None) -> Any:
    """Residual-stream norm per depth, without position 0 (solid) and with it (dotted); log scale."""
    ax = _axes(ax)
    relative = _relative(report)
    for i, m in enumerate(report.models):
        color = f"C{i}"
        x = _x(m, relative)
        ax.plot(x, m.layers["norm_raw_no0"], "-o", ms=3, color=color, label=f"{m.name} (no pos 0)")
        ax.plot(x, m.layers["norm_raw"], ":", color=color, label=f"{m.name} (all tokens)")
    ax.set_yscale("log")
    ax.set_xlabel(_xlabel(relative))
    ax.set_ylabel("mean |h| (raw residual)")
    ax.set_title("Residual-stream norm")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def plot_gains(report: ProbeReport, ax: Any = None) -> Any:
    """Per-layer gain |h_out| / |h_in| (no position 0) and the MLP gain |x + mlp| / |x| (dashed)."""
    ax = _axes(ax)
    relative = _relative(report)
    for i, m in enumerate(report.models):
        x = _x(m, relative)
        ax.plot(x, m.layers["gain_raw_no0"], "-o", ms=3, color=f"C{i}", label=f"{m.name} layer gain")
        if "mlp_gain_no0" in m.layers:
            ax.plot(x, m.layers["mlp_gain_no0"], "--", color=f"C{i}", alpha=0.7, label=f"{m.name} MLP gain")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel(_xlabel(relative))
    ax.set_ylabel("gain (no pos 0); < 1 contracts")
    ax.set_title("Per-layer gain of the residual stream")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def plot_embedding_norms(report: ProbeReport, ax: Any = None) -> Any:
    """Frobenius and spectral norms of W_E and W_U per model (hatched when tied)."""
    ax = _axes(ax)
    bars = (("embed", "fro", "W_E Frobenius"), ("unembed", "fro", "W_U Frobenius"),
            ("embed", "spectral", "W_E spectral"), ("unembed", "spectral", "W_U spectral"))
    width = 0.8 / len(bars)
    names = [m.name for m in report.models]
    for j, (which, key, label) in enumerate(bars):
        values = [_emb(m, which, key) for m in report.models]
        hatch = ["//" if m.embeddings and m.embeddings["tied"] else "" for m in report.models]
        pos = np.arange(len(names)) + (j - (len(bars) - 1) / 2) * width
        for p, v, h in zip(pos, values, hatch):
            ax.bar(p, v, width, color=f"C{j}", hatch=h, label=label if p == pos[0] else None)
    every = [_emb(m, which, key) for m in report.models for which, key, _ in bars]
    positive = [v for v in every if np.isfinite(v) and v > 0]
    if positive and max(positive) / min(positive) > 30:  # models of very different scales
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 3, max(positive) * 2)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("norm" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title("Embedding vs unembedding (hatched: tied)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return ax


def _emb(model: ModelProbe, which: str, key: str) -> float:
    part = (model.embeddings or {}).get(which)
    return float(part[key]) if part else float("nan")


def plot_entropy(report: ProbeReport, ax: Any = None) -> Any:
    """Final-token softmax entropy (nats), averaged over prompts, labelled with exp(H)."""
    ax = _axes(ax)
    names = [m.name for m in report.models]
    entropy = [m.logits["entropy"] for m in report.models]
    bars = ax.bar(names, entropy, color=[f"C{i}" for i in range(len(names))])
    for bar, m in zip(bars, report.models):
        ax.annotate(f"exp(H)={m.logits['effective_vocab']:.3g}\ntop-k={m.logits['top_k_mass']:.2f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("entropy (nats)")
    ax.set_title("Output entropy (final token)")
    ax.set_ylim(0, max(entropy) * 1.3 if entropy and max(entropy) > 0 else 1)
    ax.grid(alpha=0.3, axis="y")
    return ax


def probe_figure(report: ProbeReport) -> Any:
    """The 2 x 2 figure of a probe report (one or several models)."""
    plt = require("matplotlib.pyplot", "plots")
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    plot_residual_norms(report, axes[0, 0])
    plot_gains(report, axes[0, 1])
    plot_embedding_norms(report, axes[1, 0])
    plot_entropy(report, axes[1, 1])
    fig.suptitle("tailscope probe: " + ", ".join(m.name for m in report.models))
    fig.tight_layout()
    return fig
