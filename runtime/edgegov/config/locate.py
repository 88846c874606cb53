"""Find the TOML line a dotted location comes from (tomllib keeps no positions)."""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _split_key(raw: str) -> tuple[str, ...]:
    parts = []
    for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', raw):
        parts.append(part.strip().strip("\"'"))
    return tuple(p for p in parts if p)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every table header and key path in ``text`` to its 1-based line number."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    open_quote = None  # inside a multi-line string: nothing there is a key
    for number, line in enumerate(text.splitlines(), start=1):
        was_open = open_quote
        open_quote = _multiline_state(line, open_quote)
        if was_open:
            continue
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            for n in range(1, len(table) + 1):  # [channel.spindle] also locates "channel"
                lines.setdefault(table[:n], number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault(table + _split_key(key.group(1)), number)
    return lines


def _multiline_state(line: str, open_quote: str | None) -> str | None:
    """Which triple quote is still open after ``line`` (None: none)."""
    i = 0
    while i < len(line):
        if open_quote is None:
            if line[i] == "#":
                break
            for quote in ('"""', "'''"):
                if line.startswith(quote, i):
                    open_quote = quote
                    i += 3
                    break
            else:
                i += 1
        elif line.startswith(open_quote, i):
            open_quote = None
            i += 3
        else:
            i += 1
    return open_quote


def line_of(lines: dict[tuple[str, ...], int], loc: tuple) -> int | None:
    """The line of the longest prefix of ``loc`` that the file names, if any."""
    path = tuple(str(part) for part in loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None
