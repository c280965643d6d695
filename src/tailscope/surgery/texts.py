"""The two public-domain texts shipped with tailscope (src/tailscope/data/README.md says where from).

The held-out text measures perplexity; the calibration text feeds Wanda's activation norms. They
come from different books, so pruning is never calibrated on the text it is scored on.
"""

from __future__ import annotations

from pathlib import Path

from tailscope.errors import InputError
from tailscope.untrusted.regular_files import read_regular_text

DATA = Path(__file__).resolve().parent.parent / "data"
HELDOUT = DATA / "heldout_alice.txt"
CALIBRATION = DATA / "calibration_loc_workshop.txt"
MAX_TEXT_BYTES = 64 * 2**20  # a text to tokenize in memory; the bundled ones are ~30 KB


def read_text(text: str | Path | None, default: Path) -> tuple[str, str]:
    """(label, text): a `Path` is read as UTF-8, a `str` is the text itself, None is `default`."""
    if text is None:
        text = default
    if isinstance(text, Path):
        if not text.exists():
            raise InputError(text, "text file not found")
        body = read_regular_text(text, MAX_TEXT_BYTES, "text file")
        label = text.name
    else:
        body, label = str(text), "<text>"
    if not body.strip():
        raise InputError(label, "the text is empty")
    return label, body
