"""Forward hooks that record per-token norms of a decoder-only LM's residual stream and sub-blocks.

Only norms leave the hooks (one float per token), so a probe of a 7B model keeps no activations.
Hooks live inside `record_norms`, a context manager that removes every hook on exit, even when the
forward pass raises.

Where the residual stream is read, and why:
- before decoder layer 0 (a forward *pre*-hook on the layer): the embedding output after any
  position embeddings or scaling, i.e. ``output_hidden_states[0]``;
- after each decoder layer (its forward hook; in transformers 5 the output is a plain tensor,
  older versions return a tuple whose first item is the hidden state). The last one is taken
  *before* the final norm, unlike the last entry of ``output_hidden_states``;
- the "normed" view applies the model's final norm to each of these, which is what a logit lens
  sees; gains measured after a norm are close to 1 by construction and can mislead.

Sub-blocks: the attention and MLP deltas are the outputs of the modules whose results are added
to the residual stream (``self_attn``/``mlp``, or Gemma-2/OLMo-2's post-norms wrapped around them).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from tailscope.errors import InputError

_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "block_sparse_moe", "feed_forward", "ffn")
_FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")
_POST_NORMS = ("post_attention_layernorm", "post_feedforward_layernorm")  # Gemma-2/3, OLMo-2


@dataclass
class Anatomy:
    """Where the parts of a decoder-only LM are."""

    layers: Any
    final_norm: Any | None
    attn: list[Any | None]
    mlp: list[Any | None]
    parallel: bool


@dataclass
class TokenNorms:
    """Per-token L2 norms from one forward pass; every array has one entry per token.

    ``raw``/``normed``: [n_layers + 1, T] (row 0 = embedding output). Sub-block arrays are
    [n_layers, T]: ``attn_x`` the layer input, ``attn_delta`` the attention output, ``mlp_x`` the
    residual the MLP output is added to, ``mlp_delta`` the MLP output, ``mlp_out`` their sum.
    """

    raw: np.ndarray
    normed: np.ndarray | None
    attn_x: np.ndarray | None = None
    attn_delta: np.ndarray | None = None
    mlp_x: np.ndarray | None = None
    mlp_delta: np.ndarray | None = None
    mlp_out: np.ndarray | None = None


def find_anatomy(model: Any) -> Anatomy:
    """Locate decoder layers, final norm and per-layer attention/MLP modules of an HF causal LM."""
    base = getattr(model, "base_model", model)
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    layers = _layer_list(base, n_layers)
    if layers is None:
        raise InputError(type(model).__name__, "no list of decoder layers found (expected an HF causal LM)")
    final_norm = next((getattr(base, n) for n in _FINAL_NORM_NAMES if hasattr(base, n)), None)
    post = all(hasattr(layers[0], n) for n in _POST_NORMS) and hasattr(layers[0], "pre_feedforward_layernorm")
    attn = [_child(layer, ("post_attention_layernorm",) if post else _ATTN_NAMES) for layer in layers]
    mlp = [_child(layer, ("post_feedforward_layernorm",) if post else _MLP_NAMES) for layer in layers]
    return Anatomy(layers, final_norm, attn, mlp, parallel=_is_parallel(model.config))


def _layer_list(base: Any, n_layers: int | None) -> Any:
    import torch

    lists = [m for _, m in base.named_children() if isinstance(m, torch.nn.ModuleList)]
    if n_layers is not None:
        lists = [m for m in lists if len(m) == n_layers] or lists
    return lists[0] if lists else None


def _child(module: Any, names: tuple[str, ...]) -> Any | None:
    return next((getattr(module, n) for n in names if hasattr(module, n)), None)


def _is_parallel(config: Any) -> bool:
    """Attention and MLP both read the layer input (GPT-NeoX/Pythia, GPT-J, Phi, Falcon)."""
    if getattr(config, "use_parallel_residual", False) or getattr(config, "parallel_attn", False):
        return True
    return getattr(config, "model_type", "") in ("gptj", "phi", "cohere")


def _tensor(output: Any) -> Any:
    """The hidden-state tensor in a module's output (tensor in transformers 5, else a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _norms(x: Any) -> np.ndarray:
    """L2 norm of every token of a [1, T, d] tensor, as float64 numpy [T]."""
    return x[0].float().norm(dim=-1).double().cpu().numpy()


@dataclass
class _Recorder:
    anatomy: Anatomy
    raw: list[np.ndarray] = field(default_factory=list)
    normed: list[np.ndarray] = field(default_factory=list)
    sub: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _x: Any = None  # input of the current layer
    _attn: Any = None  # attention delta of the current layer

    def residual(self, x: Any) -> None:
        self.raw.append(_norms(x))
        if self.anatomy.final_norm is not None:
            self.normed.append(_norms(self.anatomy.final_norm(x)))

    def layer_input(self, module: Any, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["hidden_states"]
        self._x, self._attn = x, None
        if not self.raw:
            self.residual(x)

    def layer_output(self, module: Any, args: tuple, output: Any) -> None:
        self.residual(_tensor(output))

    def attn_output(self, module: Any, args: tuple, output: Any) -> None:
        delta = _tensor(output)
        self._attn = delta
        self._add("attn_x", _norms(self._x))
        self._add("attn_delta", _norms(delta))

    def mlp_output(self, module: Any, args: tuple, output: Any) -> None:
        delta = _tensor(output)
        x = self._x if self.anatomy.parallel or self._attn is None else self._x + self._attn
        self._add("mlp_x", _norms(x))
        self._add("mlp_delta", _norms(delta))
        self._add("mlp_out", _norms(x + delta))

    def _add(self, key: str, values: np.ndarray) -> None:
        self.sub.setdefault(key, []).append(values)

    def take(self) -> TokenNorms:
        n = len(self.anatomy.layers)
        if len(self.raw) != n + 1:
            raise InputError("probe", f"recorded {len(self.raw)} residual states for {n} layers (one forward pass of batch 1 expected)")
        sub = {k: np.stack(v) for k, v in self.sub.items() if len(v) == n}
        out = TokenNorms(np.stack(self.raw), np.stack(self.normed) if self.normed else None, **sub)
        self.raw, self.normed, self.sub, self._x, self._attn = [], [], {}, None, None
        return out


@contextlib.contextmanager
def record_norms(model: Any, anatomy: Anatomy | None = None) -> Iterator[_Recorder]:
    """Hooks recording `TokenNorms` per forward pass; call ``.take()`` after each one.

    Every hook is removed on exit, whatever happens inside the block.
    """
    anatomy = anatomy or find_anatomy(model)
    rec = _Recorder(anatomy)
    with contextlib.ExitStack() as stack:
        for layer, attn, mlp in zip(anatomy.layers, anatomy.attn, anatomy.mlp):
            stack.callback(layer.register_forward_pre_hook(rec.layer_input, with_kwargs=True).remove)
            stack.callback(layer.register_forward_hook(rec.layer_output).remove)
            if attn is not None and mlp is not None:
                stack.callback(attn.register_forward_hook(rec.attn_output).remove)
                stack.callback(mlp.register_forward_hook(rec.mlp_output).remove)
        yield rec
