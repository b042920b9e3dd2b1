"""Building a script's source from the shared Lua library: only the definitions it uses.

Owns splitting library text (``lua/_lib.lua`` and the rendered record schema) into its
top-level definitions (``local function f`` and ``local NAME = ...``, each with the comment
lines right above it), finding the names a script body references, and keeping the
definitions it needs, transitively, in their original order. Every EVALSHA runs the whole
preamble, so a definition a script never calls still costs a closure on each call.
Does not read files or talk to Redis (transitions.py does); pure and deterministic. Library
text of a shape it does not split safely raises ValueError (a bug of the package's own files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A long bracket ([[ ]], [==[ ]==]), a long comment, a line comment or a quoted string.
_SKIP = re.compile(
    r"""--\[(?P<lc>=*)\[.*?\](?P=lc)\]"""
    r"""|--[^\n]*"""
    r"""|\[(?P<ls>=*)\[.*?\](?P=ls)\]"""
    r"""|'(?:\\.|[^'\\\n])*'"""
    r'''|"(?:\\.|[^"\\\n])*"''',
    re.DOTALL,
)
_FUNCTION = re.compile(r"local\s+function\s+([A-Za-z_]\w*)\s*\(")
_LOCALS = re.compile(r"local\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=")
# A name not right after a word character, ':' (a method) or one '.' (a field; '..' concatenates).
_NAME = re.compile(r"(?<![\w:])(?<![^.]\.)[A-Za-z_]\w*")


def code_only(text: str) -> str:
    """``text`` with comments and string contents blanked, newlines kept (lines line up)."""

    def blank(m: re.Match[str]) -> str:
        s = m.group(0)
        if s.startswith("--"):
            return "\n" * s.count("\n")
        return "''" + "\n" * s.count("\n")

    return _SKIP.sub(blank, text)


def literals(text: str) -> set[str]:
    """The contents of the quoted strings ``text`` holds outside comments, escapes left as written."""
    return {m.group(0)[1:-1] for m in _SKIP.finditer(text) if m.group(0)[0] in "'\""}


def references(text: str) -> set[str]:
    """The identifiers ``text`` uses as names (not as ``.field`` or ``:method``)."""
    return set(_NAME.findall(code_only(text)))


@dataclass(frozen=True)
class Definition:
    """One top-level definition: the names it binds, its text, and the names it uses."""

    names: tuple[str, ...]
    text: str
    uses: frozenset[str]


@dataclass(frozen=True)
class Library:
    """Library text split: a prelude kept always (comments only) and its definitions."""

    prelude: str
    definitions: tuple[Definition, ...]

    def needed_by(self, body: str) -> list[Definition]:
        """The definitions ``body`` uses, directly or through another, in library order."""
        binds = {name: d for d in self.definitions for name in d.names}
        keep: set[Definition] = set()
        todo = [binds[n] for n in references(body) if n in binds]
        while todo:
            d = todo.pop()
            if d not in keep:
                keep.add(d)
                todo.extend(binds[n] for n in d.uses if n in binds)
        return [d for d in self.definitions if d in keep]

    def build(self, body: str) -> str:
        """The script source: the prelude, the definitions ``body`` needs, then ``body``."""
        return "".join([self.prelude, *(d.text for d in self.needed_by(body)), body])


def _bound(code_line: str) -> tuple[str, ...] | None:
    """The names a top-level line defines, or None when it starts no definition."""
    if m := _FUNCTION.match(code_line):
        return (m.group(1),)
    if m := _LOCALS.match(code_line):
        return tuple(n.strip() for n in m.group(1).split(","))
    return None


def _starts(lines: Sequence[str], code: Sequence[str]) -> list[tuple[int, tuple[str, ...]]]:
    """Where each definition's text begins (its comment lines above included), and its names."""
    starts = []
    for i, line in enumerate(code):
        names = _bound(line)
        if names is None:
            continue
        top = i
        while top > 0 and not code[top - 1].strip() and lines[top - 1].lstrip().startswith("--"):
            top -= 1  # a comment line right above it (no blank line between)
        starts.append((top, names))
    return starts


def _check(names: tuple[str, ...], code: Sequence[str]) -> None:
    """Refuse a definition whose text holds other top-level code than its own."""
    rows = [c.rstrip() for c in code if c.strip()]
    top = [c for c in rows[1:] if not c[0].isspace() and c[0] not in "})"]  # column 0
    if rows[0].startswith("local function"):
        if not top or top[0] != "end":
            raise ValueError(f"{names[0]}: a top-level function must close with 'end' at column 0")
        top = top[1:]
    if top:
        raise ValueError(f"{', '.join(names)}: top-level code inside the definition: {top[0]!r}")


def parse(text: str) -> Library:
    """Split library ``text`` into a prelude and definitions that concatenate back to it."""
    lines = text.splitlines(keepends=True)
    code = code_only(text).splitlines(keepends=True)
    if len(code) != len(lines):
        raise ValueError("unbalanced string or comment")
    starts = _starts(lines, code)
    first = starts[0][0] if starts else len(lines)
    if any(c.strip() for c in code[:first]):
        raise ValueError(f"top-level code before the first definition: {code[:first]!r}")
    definitions = []
    for k, (top, names) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        _check(names, code[top:end])
        chunk = "".join(lines[top:end])
        definitions.append(Definition(names, chunk, frozenset(references(chunk) - set(names))))
    return Library("".join(lines[:first]), tuple(definitions))


def join(parts: Iterable[Library]) -> Library:
    """Libraries one after the other (each prelude kept ahead of all definitions)."""
    parts = list(parts)
    return Library(
        "".join(p.prelude for p in parts),
        tuple(d for p in parts for d in p.definitions),
    )
