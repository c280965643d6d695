"""Perplexity of a causal LM on a text: exp of the mean next-token negative log-likelihood.

The text is tokenized once and cut into consecutive windows of `context` tokens (the last one
shorter); each window is scored on its own (no state carried over), so each token but a window's
first is predicted exactly once. One window at a time, under ``torch.no_grad``: memory is the
model plus one window's activations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tailscope.errors import InputError, require
from tailscope.surgery.config import PerplexityConfig
from tailscope.surgery.texts import HELDOUT, read_text


@dataclass(frozen=True)
class Perplexity:
    """The score of one model on one text."""

    perplexity: float
    nll: float  # mean negative log-likelihood per predicted token, nats
    tokens: int  # predicted tokens
    windows: int
    context: int
    text: str

    def __str__(self) -> str:
        return (f"perplexity {self.perplexity:.3f} (mean NLL {self.nll:.4f} nats over {self.tokens} tokens, "
                f"{self.windows} windows of <= {self.context}, text {self.text})")


def perplexity(model: Any, text: str | Path | None = None, *, tokenizer: Any = None,
               config: PerplexityConfig | None = None, **options: Any) -> Perplexity:
    """Perplexity of `model` on `text` (default: the bundled public-domain held-out text).

    Args:
        model: a Hugging Face model directory, a ``.gguf`` file, or a loaded causal LM (then pass
            `tokenizer`).
        text: a `Path` to a UTF-8 file, or the text itself as a `str`; None = the held-out text.
        tokenizer: the tokenizer of a loaded model (read from the model path otherwise).
        config: a `PerplexityConfig`; `options` override its fields.
        **options: `PerplexityConfig` fields (``context``, ``device``).
    """
    cfg = PerplexityConfig.from_kwargs(**{**(asdict(config) if config else {}), **options})
    label, body = read_text(text, HELDOUT)
    model, tokenizer = _open(model, tokenizer, cfg)
    ids = tokenizer(body, return_tensors="pt")["input_ids"][0]
    if ids.numel() < 2:
        raise InputError(label, "the text has fewer than 2 tokens")
    total, count, windows = score_windows(model, ids, cfg.context)
    return Perplexity(math.exp(total / count), total / count, count, windows, cfg.context, label)


def score_windows(model: Any, ids: Any, context: int) -> tuple[float, int, int]:
    """(summed NLL in nats, predicted tokens, windows) of the token ids `ids` in windows of `context`."""
    torch = require("torch", "probe")
    device = next(model.parameters()).device
    total, count, windows = 0.0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, ids.numel(), context):
                window = ids[start : start + context].to(device)[None]
                if window.shape[1] < 2:
                    continue
                logits = model(input_ids=window).logits[0, :-1].double()
                nll = torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="sum")
                total += float(nll)
                count += window.shape[1] - 1
                windows += 1
    finally:
        model.train(was_training)
    return total, count, windows


def _open(model: Any, tokenizer: Any, cfg: PerplexityConfig) -> tuple[Any, Any]:
    if isinstance(model, (str, Path)):
        from tailscope.probes.loading import load_for_probe

        device = cfg.device
        if device == "auto":
            device = "cuda" if require("torch", "probe").cuda.is_available() else "cpu"
        return load_for_probe(model, device=device)
    if tokenizer is None:
        raise InputError(type(model).__name__, "a loaded model needs its `tokenizer`")
    return model, tokenizer
