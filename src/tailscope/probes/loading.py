"""Open a model for probing: a Hugging Face directory or a GGUF file, plus its tokenizer."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from tailscope.errors import InputError, require


def load_for_probe(path: str | Path, *, device: str = "cpu", tokenizer: str | Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) ready to probe; float32 on the CPU, the checkpoint's dtype on CUDA.

    A GGUF file is built with `tailscope.sources.gguf_hf` (refuses incomplete loads); a directory
    goes through ``AutoModelForCausalLM.from_pretrained``. ``tokenizer`` overrides where the
    tokenizer is read from.
    """
    torch = require("torch", "probe")
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.suffix.lower() == ".gguf":
        from tailscope.sources.gguf_hf import load_hf_causal_lm, load_tokenizer

        model = load_hf_causal_lm(path)
        tok = _tokenizer(tokenizer) if tokenizer else load_tokenizer(path)
    elif path.is_dir():
        transformers = require("transformers", "probe")
        _check_config_json(path)
        dtype = torch.float32 if device == "cpu" else "auto"
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=False)
        tok = _tokenizer(tokenizer or path)
    else:
        raise InputError(path, "expected a Hugging Face model directory or a .gguf file")
    return model.to(device).eval(), tok


def _check_config_json(model_dir: Path) -> None:
    """A config.json that is not a JSON object is named here, not deep in transformers."""
    from tailscope.untrusted.json_loader import MAX_CONFIG_BYTES, read_json_file

    config = model_dir / "config.json"
    if not config.exists():
        raise InputError(model_dir, "no config.json: expected a Hugging Face model directory or a .gguf file")
    data = read_json_file(config, "the file", MAX_CONFIG_BYTES)
    if not isinstance(data, dict):
        raise InputError(config, f"not a JSON object (found {type(data).__name__})")


def _tokenizer(where: str | Path) -> Any:
    transformers = require("transformers", "probe")
    where = Path(where)
    try:
        if where.suffix.lower() == ".gguf":
            return transformers.AutoTokenizer.from_pretrained(str(where.parent), gguf_file=where.name)
        return transformers.AutoTokenizer.from_pretrained(str(where))
    except (OSError, ValueError) as exc:
        raise InputError(where, f"no usable tokenizer ({exc.__class__.__name__}: {str(exc)[:200]}); pass --tokenizer") from exc


def release() -> None:
    """Give a dropped model's memory back (CUDA cache included) before loading the next one."""
    gc.collect()
    torch = require("torch", "probe")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
