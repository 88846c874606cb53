"""Command summaries that end where their sentence ends.

click shortens a command's help to fit the listing of ``edgegov --help`` and cuts it
mid-sentence (``...``). ``fill_short_help`` gives every command without an explicit
``short_help`` its first sentence instead (the listing wraps it).
"""

from __future__ import annotations

import inspect

import click


def first_sentence(text: str) -> str:
    """The first sentence of the first paragraph (up to ``. ``, ``; `` or its end)."""
    para = inspect.cleandoc(text).split("\n\n", 1)[0].replace("\n", " ")
    for stop in (". ", "; "):
        head, sep, _ = para.partition(stop)
        if sep:
            para = head
    return para.rstrip(".") + "."


def fill_short_help(group: click.Group) -> None:
    """Set ``short_help`` of every command under ``group`` (recursively) that has none."""
    for cmd in group.commands.values():
        if not cmd.short_help and cmd.help:
            cmd.short_help = first_sentence(cmd.help)
        if isinstance(cmd, click.Group):
            fill_short_help(cmd)


__all__ = ["first_sentence", "fill_short_help"]
