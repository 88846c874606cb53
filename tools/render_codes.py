"""Render every numeric code of the lineage format as Markdown tables, from the code itself.

    python tools/render_codes.py            # rewrite the tables in docs/lineage-format.md
    python tools/render_codes.py --check    # exit 1 if the doc's tables are out of date

The tables sit between ``<!-- codes:begin -->`` and ``<!-- codes:end -->``. Numbers come
from ``edgegov.core.codes`` (and the record, envelope and ring modules); the words are the
ones ``edgegov.names`` prints, so the doc, the decoder's output and the code cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgegov import names
from edgegov.core import codes, envelope, record
from edgegov.host.lineage_read import GAP_CAUSES, KIND_NAMES

DOC = Path(__file__).resolve().parents[1] / "docs" / "lineage-format.md"
BEGIN = "<!-- codes:begin -->"
END = "<!-- codes:end -->"


def _consts(module, prefix: str) -> dict[int, str]:
    """value → constant name (without the prefix, lower case) for ``prefix*`` ints."""
    found = {}
    for name in dir(module):
        value = getattr(module, name)
        if name.startswith(prefix) and type(value) is int:
            found[value] = name[len(prefix):].lower()
    return found


def _table(title: str, intro: str, rows, header=("Code", "Name")) -> str:
    lines = [f"#### {title}", "", intro, "", "| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if i == 0 else "---" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _named(table: dict[int, str]):
    return [(code, f"`{name}`") for code, name in sorted(table.items())]


_MARKS = {"nan": "NaN", "pos_inf": "+Inf", "neg_inf": "-Inf", "float": "any other float",
          "other": "any other type (array, map, ...)", "huge": "an integer beyond 64 bits",
          "text": "text that is not valid Unicode (a lone surrogate)"}
_TEXT_STANDIN = ("`[6, bytes]` (two elements): the text the bytes give as UTF-8 with lone "
                 "surrogates allowed (Python's `surrogatepass`); bytes that do not decode "
                 "count as marker 4")


def _markers():
    rows = []
    for code, name in sorted(_consts(record, "M_").items()):
        standin = _TEXT_STANDIN if name == "text" else _standin(record.unmark(code))
        rows.append((code, f"`{name}`", _MARKS.get(name, name), standin))
    return rows


def _standin(v) -> str:
    if isinstance(v, float):
        text = {float("inf"): "+Infinity", float("-inf"): "-Infinity"}.get(v, repr(v))
        return "NaN (float)" if v != v else f"{text} (float)"
    if isinstance(v, int):
        return f"2^{v.bit_length() - 1} (integer)"
    if isinstance(v, str):
        return f'the text "{v}"'
    return f"a value of no type the governor accepts, shown as `{v!r}`"


def tables() -> str:
    parts = [
        _table("Record kinds", "The first element of every record.",
               [(k, f"`{n}`") for k, n in sorted(KIND_NAMES.items())]),
        _table("Verdicts", "`verdict = vr // 64`; ordered by severity, the worst wins.",
               [(c, f"`{n}`") for c, n in sorted(names.VERDICTS.items())]),
        _table("Reasons", "`reason = vr % 64`.", _named(names.REASONS)),
        _table("Events", "The `event_code` of each `[event_code, arg]` in `events`.",
               _named(names.EVENTS)),
        _table("Operator actions", "The `action` of an operator input `[4, action, ...]`.",
               _named(names.OPS)),
        _table("Event inputs", "The tag of an EVENT's `input` (a tick is the bare integer 3); "
               "1 is a command, which is a DECISION record instead.",
               _named(_consts(codes, "EV_"))),
        _table("Governor states", "`state[1]` of a CHECKPOINT.", _named(names.STATES)),
        _table("Trip causes", "Bit flags: `state[2]` of a CHECKPOINT and the `arg` of the "
               "`boot` event. Shown lowest bit first.",
               [(c, f"`{n}`") for c, n in sorted(names.CAUSES.items())], ("Bit", "Name")),
        _table("Link stages", "`state[17]` of a CHECKPOINT.", _named(names.LINKS)),
        _table("Faults", "The `code` of a fault input `[5, code, active]` and the `arg` of "
               "`fault` / `fault_cleared` events (0..29; codes not listed are shown as "
               "`fault<code>`).", _named(names.FAULTS)),
        _table("GAP causes", "The `cause` of a GAP record.",
               [(c, f"`{GAP_CAUSES[c]}`") for c in sorted(GAP_CAUSES)]),
        _table("Value markers", "A marker array `[code]` (one element; `text` has two) "
               "standing for a value CBOR must not carry, and the stand-in value a reader "
               "substitutes for it.", _markers(),
               ("Code", "Name", "For", "Stand-in")),
        _table("Stop categories", "A channel's `stop` in the envelope blob.",
               [(c, f"`{n.upper()}`") for c, n in sorted(_consts(codes, "STOP_").items())]),
        _table("Breach actions", "A channel's `on_breach` / `on_rate` and an interlock's "
               "`action` in the envelope blob (equal to the verdict they produce).",
               _named(_consts(codes, "ACT_"))),
        _table("Hold behaviours", "A channel's `hold` in the envelope blob.",
               _named(_consts(codes, "HOLD_"))),
        _table("Interlock operators", "The `op` of an interlock condition in the envelope "
               "blob.", [(i, f"`{op}`") for i, op in enumerate(envelope.OPS)]),
    ]
    return "\n\n".join(parts)


def render(text: str) -> str:
    """``text`` (the doc) with the tables between the markers replaced."""
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END)
    return text[:start] + "\n" + tables() + "\n" + text[end:]


def main() -> int:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        print(f"{DOC}: no {BEGIN} ... {END} markers", file=sys.stderr)
        return 2
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print(f"{DOC}: code tables are out of date: run python tools/render_codes.py",
                  file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
