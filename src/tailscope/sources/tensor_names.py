"""Tensor names as a file spells them, made safe to show, store and match.

A name reaches a DataFrame (pyarrow refuses a string it cannot encode as UTF-8), the terminal, a
results file and regular expressions, so two kinds of name make the tensor unusable while the rest
of the model still analyzes: text that is not valid Unicode (a lone surrogate from a pickle, or a
GGUF name whose bytes are not UTF-8) and a name longer than `MAX_NAME_CHARS`. Such a tensor keeps
a row, under a shown form of its name (bad characters escaped, a long name cut with a digest of
the whole so two cut names stay distinct), skipped with the reason.
"""

from __future__ import annotations

import hashlib

MAX_NAME_CHARS = 1024  # real names: under 200 characters (Mixtral's longest expert names ~60)
_CUT = 200


def checked_name(name: str) -> tuple[str, str | None]:
    """(name to show, None) for a usable name; (shown form, why the tensor is skipped) otherwise."""
    problem = None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = name.encode("utf-8", "backslashreplace").decode("utf-8")
        problem = "tensor name is not valid UTF-8 text"
    if len(name) > MAX_NAME_CHARS:
        digest = hashlib.blake2b(name.encode("utf-8"), digest_size=6).hexdigest()
        problem = problem or f"tensor name of {len(name)} characters is longer than the {MAX_NAME_CHARS}-character limit"
        name = f"{name[:_CUT]}...[{digest}]"
    return name, problem
