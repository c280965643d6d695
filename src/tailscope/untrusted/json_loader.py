"""JSON from files a user hands us: parsed within limits, then read through typed fields.

Python's `json` recurses once per nesting level (50,000 '[' raise RecursionError), converts
integers of any length (past 4300 digits a ValueError, before that quadratic time), keeps the last
of two equal keys (another parser may keep the first, and so read another tensor) and accepts lone
surrogate escapes ("\\ud800"), which no UTF-8 writer (pyarrow, the terminal, a results file) can
encode and which the safetensors library itself refuses. `parse_json` refuses each of these with
one `InputError` naming the file; `Fields` then reads values of the expected type or names the
key that holds something else. Every JSON reader of an input file goes through here: safetensors
headers, shard indexes, config.json, adapter_config.json and results lines. MAX_DEPTH and
MAX_INT_DIGITS are read at each call (assigning them changes every reader); the byte limits are
passed by each reader (docs/limits.md lists them all).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from tailscope.errors import InputError
from tailscope.untrusted.regular_files import read_regular

MAX_DEPTH = 64  # real files nest 3-5 levels (a config's rope_scaling, a header's entry)
MAX_INT_DIGITS = 40  # 2**128 has 39 digits; every real count, size or offset has at most 20
MAX_CONFIG_BYTES = 16 * 2**20  # config.json, adapter_config.json (real ones: a few KB)
MAX_COUNT = 2**40  # layers, heads, sizes, experts in a config: larger ones exist only in corrupt files
MAX_INDEX_BYTES = 64 * 2**20  # model.safetensors.index.json (one of 91k tensors, DeepSeek-V3's count: ~8 MB)

_ESCAPE = re.compile(rb"\\.", re.S)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_DIGITS_AS_ONES = bytes(ord("1") if chr(b).isdigit() and b < 128 else 0 for b in range(256))
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_DEPTH_CHUNK = 1 << 20


class _Refused(Exception):
    """Raised inside the json hooks; becomes one InputError."""


def parse_json(raw: bytes, source: str | Path, what: str) -> Any:
    """The value of JSON text `raw` (UTF-8) from `source`, or an InputError saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(source, f"{what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise InputError(source, f"{what} is nested {depth} levels deep (the limit is {MAX_DEPTH})")
    long_digits = raw.translate(_DIGITS_AS_ONES).find(b"1" * (MAX_INT_DIGITS + 1)) >= 0  # else no integer hook
    value = _loads(text, source, what, long_digits)
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value, source, what)
    return value


def _loads(text: str, source: str | Path, what: str, check_ints: bool) -> Any:
    """json.loads refusing repeated keys, and long integers where the text has a run of that many
    digits (the integer hook costs ~40% on a large header, so only then)."""
    import json

    hooks: dict[str, Any] = {"parse_int": _integer} if check_ints else {}
    try:
        return json.loads(text, object_pairs_hook=_object, **hooks)
    except _Refused as exc:
        raise InputError(source, f"{what} {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise InputError(source, f"{what} is not valid JSON ({exc})") from None


def read_json_file(path: str | Path, what: str, max_bytes: int) -> Any:
    """parse_json of a regular file of at most `max_bytes` bytes."""
    return parse_json(read_regular(path, max_bytes, what), path, what)


def nesting_depth(raw: bytes) -> int:
    """Deepest nesting of arrays and objects in `raw`, brackets inside strings not counted.

    Linear and in C (regex, translate, split, numpy): escapes are dropped first, so every remaining
    quote opens or closes a string, and the parts between an opening and a closing quote go.
    """
    skeleton = _ESCAPE.sub(b"", raw) if b"\\" in raw else raw
    skeleton = b"".join(skeleton.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    deepest, level = 0, 0
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    for start in range(0, codes.size, _DEPTH_CHUNK):
        chunk = codes[start : start + _DEPTH_CHUNK]
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int64)
        levels = level + np.cumsum(steps)
        deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _integer(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"holds an integer of {digits} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Refused(f"holds the key {_shown(twice)} twice (readers disagree on which one counts)")
    return obj


def _strings(value: Any) -> Iterator[str]:
    """Every key and string value in `value`, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _refuse_lone_surrogates(value: Any, source: str | Path, what: str) -> None:
    for s in _strings(value):
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                source, f"{what} holds a string that is not valid Unicode (lone surrogate U+{ord(s[exc.start]):04X})"
            ) from None


def _shown(value: Any) -> str:
    """A short, printable rendering of a value from a file, for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class Fields:
    """Typed reads of one JSON object (or GGUF metadata) from `source`.

    Each reader returns `default` when the key is absent or null, the value when it has the
    expected type and range, and otherwise raises an InputError naming the file and the key.
    """

    def __init__(self, data: Mapping[str, Any], source: str | Path, prefix: str = "") -> None:
        self.data, self.source, self.prefix = data, source, prefix

    @classmethod
    def of(cls, value: Any, source: str | Path, what: str) -> "Fields":
        if not isinstance(value, dict):
            raise InputError(source, f"{what} must be a JSON object, got {_type_name(value)}")
        return cls(value, source)

    def _bad(self, key: str, expected: str, value: Any) -> InputError:
        return InputError(self.source, f"'{self.prefix}{key}' must be {expected}, got {_shown(value)} ({_type_name(value)})")

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def _read(self, key: str, default: Any, ok: Callable[[Any], bool], expected: str) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        if not ok(value):
            raise self._bad(key, expected, value)
        return value

    def integer(self, key: str, lo: int = 0, hi: int = 2**63 - 1, default: int | None = None) -> int | None:
        ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi  # noqa: E731
        return self._read(key, default, ok, f"an integer in [{lo}, {hi}]")

    def number(self, key: str, lo: float = -math.inf, hi: float = math.inf, default: float | None = None) -> float | None:
        def ok(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)) and lo <= v <= hi

        value = self._read(key, None, ok, f"a finite number in [{lo:g}, {hi:g}]")
        return default if value is None else float(value)

    def text(self, key: str, default: str | None = None) -> str | None:
        return self._read(key, default, lambda v: isinstance(v, str), "a string")

    def flag(self, key: str, default: bool | None = None) -> bool | None:
        return self._read(key, default, lambda v: isinstance(v, bool), "true or false")

    def strings(self, key: str) -> list[str]:
        ok = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)  # noqa: E731
        return self._read(key, [], ok, "an array of strings")

    def mapping(self, key: str) -> "Fields | None":
        value = self._read(key, None, lambda v: isinstance(v, dict), "an object")
        return None if value is None else Fields(value, self.source, f"{self.prefix}{key}.")
