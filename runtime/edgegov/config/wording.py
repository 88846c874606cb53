"""Config problems in the project's own words (never the validator's), with did-you-mean.

The schema is checked with pydantic, whose messages speak about Python ("Input should be a
valid integer"). A person editing a TOML file wants the key, what it may be and what it was:
``must be one of STO, SS1 (got 'sto'; did you mean 'STO'?)``. This module is the one place
that turns a validator error into such a line.
"""

from __future__ import annotations

import difflib
import types
import typing
from decimal import Decimal

# What a name pattern means, said in words (the schema's patterns are the keys).
PATTERN_WORDS = {
    r"^[a-z][a-z0-9_]{0,31}$": "lower-case letters, digits and _ (at most 32), starting with a"
                               " letter",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$": "letters, digits, _ . and - (at most 64), starting"
                                          " with a letter or digit",
}


def shown(value: object) -> str:
    """A value as the TOML file spells it: 'text', true/false, numbers, "a table"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def did_you_mean(word: object, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or '' when none is close."""
    if not isinstance(word, str):
        return ""
    options = sorted(str(c) for c in choices)
    folded = [c for c in options if c.lower() == word.lower() and c != word]
    close = folded or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choices_of(model: type, key: str) -> tuple[str, ...]:
    """The allowed values of a ``Literal`` field of ``model`` (empty if it is not one)."""
    field = model.model_fields.get(key)
    if field is None:
        return ()
    for arg in (field.annotation, *typing.get_args(field.annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return tuple(str(a) for a in typing.get_args(arg))
    return ()


def merge_unions(errors: list, model: type) -> list:
    """pydantic reports a value that fits no member of a union once per member, at
    ``(key, member tag)``: one error at ``(key,)`` instead, saying every member it may be."""
    out, merged = [], {}
    for e in errors:
        loc = e["loc"]
        field = model.model_fields.get(loc[0]) if loc else None
        if field is None or len(loc) < 2 or not _is_union(field.annotation):
            out.append(e)
            continue
        if loc[0] not in merged:
            merged[loc[0]] = {**e, "loc": loc[:1], "type": "union", "wants": []}
            out.append(merged[loc[0]])
        merged[loc[0]]["wants"].append(message({**e, "loc": loc[:1]}, model).split(" (got")[0])
    return out


def _is_union(annotation) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) > 1


def message(error: dict, model: type) -> str:
    """One validator error on ``model`` → the line a person reads (without the location)."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    key = str(error["loc"][0]) if error["loc"] else ""
    got = f" (got {shown(value)})"
    if kind == "union":
        wants = [w.removeprefix("must be ") for w in dict.fromkeys(error["wants"])]
        return f"must be {', or '.join(wants)}{got}"
    if kind == "literal_error":
        options = choices_of(model, key)
        return (f"must be one of {', '.join(options)} (got {shown(value)}"
                f"{did_you_mean(value, options).replace(' (', '; ').rstrip(')')})")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"])).removeprefix("Value error, ") + got
    simple = {
        "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "bool_type": "must be true or false",
        "string_type": "must be text",
        "dict_type": "must be a table",
        "model_type": "must be a table",
        "list_type": "must be a list",
    }
    if kind in simple:
        return simple[kind] + got
    bounds = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
              "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}
    if kind in bounds:
        bound, words = bounds[kind]
        return f"must be {words} {ctx.get(bound)}{got}"
    if kind in ("too_short", "too_long"):
        many = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        entry = "entry" if many == 1 else "entries"
        words = "at least" if kind == "too_short" else "at most"
        return f"needs {words} {many} {entry} (got {ctx.get('actual_length')})"
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(ctx.get("pattern"), "a different spelling")
        return f"must be {words}{got}"
    return str(error["msg"]) + got  # a kind the schema does not produce today


__all__ = ["message", "merge_unions", "did_you_mean", "shown", "choices_of", "PATTERN_WORDS"]
