"""A character-level tokenizer (printable ASCII -> its code point) for the tiny random models,
whose vocabulary of 256 fits it: lets Wanda and perplexity run end to end offline."""

from __future__ import annotations

import shutil
from pathlib import Path


def with_char_tokenizer(model_dir: Path, out: Path) -> Path:
    """A copy of `model_dir` with a saved character tokenizer next to its weights."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    shutil.copytree(model_dir, out)
    vocab = {chr(i): i for i in range(32, 127)} | {"\n": 10, "[UNK]": 0}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(out)
    return out
