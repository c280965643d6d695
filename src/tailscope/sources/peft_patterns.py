"""PEFT's rank_pattern / alpha_pattern keys, matched without running a regular expression from a file.

PEFT looks a module up with ``re.match(rf"(.*\\.)?({key})$", module)``: a key is a regular
expression that must match the whole module name or a suffix of it that starts after a dot. A
backtracking engine (Python's `re`) runs a key like ``(a+)+b`` for minutes, and an invalid key
raises ``re.error``. Here a key is parsed by our own parser, which accepts the part of the syntax
that PEFT's keys use (and that needs no backtracking), and matched by a DFA built lazily from its
Thompson NFA, so matching costs at most (states x characters) and is counted:

- literals, ``.``, classes ``[a-z_]`` / ``[^.]``, the escapes ``\\d \\D \\w \\W \\s \\S`` and escaped
  punctuation (``\\.``);
- groups ``(...)`` / ``(?:...)``, alternation ``|``, the repeats ``* + ? {m} {m,} {,n} {m,n}``
  (n <= MAX_REPEAT; a lazy ``?`` after a repeat is accepted, it changes no match);
- the anchors ``^`` and ``$``.

Anything else (backreferences, lookarounds, inline flags, possessive repeats, ``\\b``) and any
syntax error is refused with an error naming the key. Limits: MAX_KEY_CHARS per key, MAX_STATES
per key after repeats are expanded, MAX_WORK steps for all keys of one adapter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tailscope.errors import InputError

MAX_KEY_CHARS = 1024
MAX_REPEAT = 100
MAX_STATES = 4096
MAX_WORK = 2_000_000  # closure visits + characters stepped, over every key and module of one adapter

_CLASS_ESCAPES: dict[str, Callable[[str], bool]] = {
    "d": str.isdecimal, "w": lambda c: c.isalnum() or c == "_", "s": str.isspace,
}
_BRACES = re.compile(r"\{([0-9]*)(?:(,)([0-9]*))?\}")


class PatternError(Exception):
    """A key outside the supported syntax; the message says where and why."""


# -- parser: pattern text -> AST -------------------------------------------------------------------
# nodes: ("char", predicate) ("cat", [nodes]) ("alt", [nodes]) ("rep", node, lo, hi|None) ("bol",) ("eol",)


@dataclass
class _Parser:
    text: str
    pos: int = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        c = self.peek()
        self.pos += 1
        return c

    def fail(self, why: str) -> PatternError:
        return PatternError(f"{why} at position {self.pos}")

    def parse(self) -> tuple:
        node = self.alternation()
        if self.pos < len(self.text):
            raise self.fail("unbalanced ')'")
        return node

    def alternation(self) -> tuple:
        branches = [self.concatenation()]
        while self.peek() == "|":
            self.take()
            branches.append(self.concatenation())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def concatenation(self) -> tuple:
        items: list[tuple] = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.repeat(self.atom()))
        return ("cat", items)

    def repeat(self, node: tuple) -> tuple:
        bounds = self.quantifier()
        if bounds is None:
            return node
        if node[0] in ("bol", "eol"):
            raise self.fail("nothing to repeat")
        if self.peek() == "?":
            self.take()  # lazy: the same yes/no answer
        elif self.peek() == "+":
            raise self.fail("possessive repeats are not supported")
        if self.peek() in ("*", "+", "?") or self.braces_at(self.pos):
            raise self.fail("multiple repeat")
        return ("rep", node, *bounds)

    def quantifier(self) -> tuple[int, int | None] | None:
        c = self.peek()
        if c in ("*", "+", "?"):
            self.take()
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        braces = self.braces_at(self.pos)
        if braces is None:
            return None
        self.pos = braces.end()
        lo = int(braces[1]) if braces[1] else 0
        hi = (None if braces[2] else lo) if not braces[3] else int(braces[3])
        if max(lo, hi or 0) > MAX_REPEAT:
            raise self.fail(f"a repeat count above {MAX_REPEAT}")
        if hi is not None and hi < lo:
            raise self.fail("min repeat greater than max repeat")
        return lo, hi

    def braces_at(self, pos: int) -> re.Match | None:
        """A repeat {m}, {m,}, {,n}, {m,n} or {,} at `pos`, as Python reads one ('{}', '{x}' are literals)."""
        m = _BRACES.match(self.text, pos)
        return m if m and m.group() != "{}" else None

    def atom(self) -> tuple:
        c = self.take()
        if c == "(":
            return self.group()
        if c in ("*", "+", "?"):
            raise self.fail("nothing to repeat")
        if c == "{" and self.braces_at(self.pos - 1):
            raise self.fail("nothing to repeat")
        if c == "[":
            return ("char", self.char_class())
        if c == "\\":
            return ("char", self.escape(in_class=False))
        if c == ".":
            return ("char", lambda x: x != "\n")
        if c == "^":
            return ("bol",)
        if c == "$":
            return ("eol",)
        return ("char", c)

    def group(self) -> tuple:
        if self.peek() == "?":
            self.take()
            if self.take() != ":":
                raise self.fail("only (?:...) groups are supported (no lookarounds, named groups or flags)")
        node = self.alternation()
        if self.take() != ")":
            raise self.fail("missing ')'")
        return node

    def escape(self, in_class: bool) -> Callable[[str], bool] | str:
        c = self.take()
        if not c:
            raise self.fail("a trailing backslash")
        if c.lower() in _CLASS_ESCAPES:
            test = _CLASS_ESCAPES[c.lower()]
            return test if c.islower() else (lambda x, t=test: not t(x))
        if not (c.isascii() and c.isalnum()):
            return c
        raise self.fail(f"the escape '\\{c}' is not supported")

    def char_class(self) -> Callable[[str], bool]:
        negate = self.peek() == "^"
        if negate:
            self.take()
        tests: list[Callable[[str], bool]] = []
        first = True
        while True:
            c = self.take()
            if not c:
                raise self.fail("unterminated character set")
            if c == "]" and not first:
                break
            first = False
            item = self.escape(in_class=True) if c == "\\" else c
            if self.peek() == "-" and self.text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                if callable(item):
                    raise self.fail("bad character range")
                self.take()
                end = self.take()
                end = self.escape(in_class=True) if end == "\\" else end
                if not isinstance(end, str) or end < item:
                    raise self.fail("bad character range")
                tests.append(lambda x, a=item, b=end: a <= x <= b)
            else:
                tests.append(item if callable(item) else (lambda x, a=item: x == a))
        return lambda x: any(t(x) for t in tests) != negate


# -- NFA (Thompson) and its lazily built DFA ---------------------------------------------------------

_CHAR, _SPLIT, _BOL, _EOL, _MATCH = range(5)


@dataclass
class _Program:
    kinds: list[int] = field(default_factory=list)
    outs: list[list[int]] = field(default_factory=list)
    tests: list[Callable[[str], bool] | str | None] = field(default_factory=list)

    def add(self, kind: int, outs: list[int], test: Callable[[str], bool] | str | None = None) -> int:
        if len(self.kinds) >= MAX_STATES:
            raise PatternError(f"more than {MAX_STATES} states once its repeats are expanded")
        self.kinds.append(kind)
        self.outs.append(outs)
        self.tests.append(test)
        return len(self.kinds) - 1

    def build(self, node: tuple, nxt: int) -> int:
        """Entry state of `node`, continuing at `nxt` (built back to front)."""
        tag = node[0]
        if tag == "char":
            return self.add(_CHAR, [nxt], node[1])
        if tag in ("bol", "eol"):
            return self.add(_BOL if tag == "bol" else _EOL, [nxt])
        if tag == "cat":
            for item in reversed(node[1]):
                nxt = self.build(item, nxt)
            return nxt
        if tag == "alt":
            return self.add(_SPLIT, [self.build(b, nxt) for b in node[1]])
        _, inner, lo, hi = node
        if hi is None:  # lo copies, then a loop
            loop = self.add(_SPLIT, [])
            self.outs[loop] = [self.build(inner, loop), nxt]
            nxt = loop
        else:
            for _ in range(hi - lo):  # optional copies, innermost last
                nxt = self.add(_SPLIT, [self.build(inner, nxt), nxt])
        for _ in range(lo):
            nxt = self.build(inner, nxt)
        return nxt


class _Budget:
    def __init__(self, source: str | Path) -> None:
        self.left, self.source = MAX_WORK, source

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise InputError(self.source, f"rank_pattern / alpha_pattern keys need more than {MAX_WORK:,} matching steps "
                                          "for this adapter's modules; refusing to match them")


class CompiledKey:
    """One key's matcher: ``matches(m)`` is ``re.match(rf"(.*\\.)?({key})$", m) is not None``."""

    def __init__(self, key: str, budget: _Budget) -> None:
        if len(key) > MAX_KEY_CHARS:
            raise PatternError(f"longer than {MAX_KEY_CHARS} characters")
        self.program = _Program()
        self.accept = self.program.add(_MATCH, [])
        self.start = self.program.build(_Parser(key).parse(), self.program.add(_EOL, [self.accept]))
        self.budget = budget
        self.steps: dict[tuple[frozenset[int], str, bool, bool], frozenset[int]] = {}

    def _closure(self, states: set[int], at_start: bool, at_end: bool) -> frozenset[int]:
        kinds, outs = self.program.kinds, self.program.outs
        seen, stack = set(states), list(states)
        while stack:
            s = stack.pop()
            kind = kinds[s]
            if kind == _SPLIT or (kind == _BOL and at_start) or (kind == _EOL and at_end):
                for t in outs[s]:
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
        self.budget.spend(len(seen))
        return frozenset(seen)

    def _step(self, states: frozenset[int], c: str, restart: bool, at_end: bool) -> frozenset[int]:
        key = (states, c, restart, at_end)
        cached = self.steps.get(key)
        if cached is None:
            kinds, outs, tests = self.program.kinds, self.program.outs, self.program.tests
            moved = {outs[s][0] for s in states if kinds[s] == _CHAR and (tests[s] == c if isinstance(tests[s], str) else tests[s](c))}
            if restart:
                moved.add(self.start)
            cached = self.steps[key] = self._closure(moved, at_start=False, at_end=at_end)
        return cached

    def matches(self, module: str) -> bool:
        """Walk the name once. The key may start at 0 or after a dot reached by PEFT's ``.*\\.``
        (which crosses no newline); ``$`` holds at the end and before a final newline, as in `re`."""
        self.budget.spend(len(module) + 1)
        n = len(module)
        eol = {n, n - 1} if module.endswith("\n") else {n}
        states = self._closure({self.start}, at_start=True, at_end=0 in eol)
        no_newline = True
        for i, c in enumerate(module):
            if self.accept in states:
                return True
            no_newline = no_newline and c != "\n"
            states = self._step(states, c, c == "." and no_newline, i + 1 in eol)
        return self.accept in states


class PatternTable:
    """PEFT's lookup of one pattern dict (rank_pattern or alpha_pattern): the value of the first
    key that matches a module, else the default."""

    def __init__(self, patterns: dict[str, object], source: str | Path, option: str, budget: _Budget | None = None) -> None:
        self.budget = budget or _Budget(source)
        self.entries: list[tuple[CompiledKey, object]] = []
        for key, value in patterns.items():
            try:
                self.entries.append((CompiledKey(key, self.budget), value))
            except PatternError as exc:
                raise InputError(source, f"{option} key {_shown(key)} is not a supported pattern: {exc} "
                                         "(accepted: literals, ., [classes], \\d \\w \\s, (groups), |, * + ? {m,n}, ^ $)") from None

    def lookup(self, module: str, default: object) -> object:
        for key, value in self.entries:
            if key.matches(module):
                return value
        return default


def pattern_tables(rank: dict[str, object], alpha: dict[str, object], source: str | Path) -> tuple[PatternTable, PatternTable]:
    """The two tables of one adapter, sharing one work budget."""
    budget = _Budget(source)
    return PatternTable(rank, source, "rank_pattern", budget), PatternTable(alpha, source, "alpha_pattern", budget)


def _shown(key: str) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."
