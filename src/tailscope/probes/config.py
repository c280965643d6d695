"""Options of `tailscope.probe`, validated once at the door (defaults live here only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tailscope.config import _check_int, build_checked
from tailscope.errors import ConfigError

DEFAULT_PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "In 1905, Albert Einstein published four papers that",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
)


@dataclass(frozen=True)
class ProbeConfig:
    """Options of a probe.

    Args:
        max_tokens: prompts are truncated to this many tokens.
        top_k: the top-k probability mass reported for the final token.
        weights: also measure the embedding/unembedding matrices (norms, alpha).
        add_special_tokens: let the tokenizer add its BOS/special tokens.
    """

    max_tokens: int = 512
    top_k: int = 10
    weights: bool = True
    add_special_tokens: bool = True

    def __post_init__(self) -> None:
        _check_int("max_tokens", self.max_tokens, minimum=1)
        _check_int("top_k", self.top_k, minimum=1)
        for name in ("weights", "add_special_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected argument `{name}` to be a bool, but got {getattr(self, name)!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "ProbeConfig":
        """Build from keyword options, naming any option that does not exist."""
        return build_checked(cls, kwargs)
