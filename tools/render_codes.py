"""Render the generated parts of docs/lineage-format.md from the code and the golden vectors.

    python tools/render_codes.py            # rewrite them in docs/lineage-format.md
    python tools/render_codes.py --check    # exit 1 if the doc is out of date

- Every numeric code as Markdown tables, between ``<!-- codes:begin -->`` and
  ``<!-- codes:end -->``. Numbers come from ``edgegov.core.codes`` (and the record and
  envelope modules); the words are the ones ``edgegov.names`` prints, so the doc, the
  decoder's output and the code cannot drift.
- The hash chain's worked example, between ``<!-- chain-example:begin -->`` and
  ``<!-- chain-example:end -->``, computed from ``tests/golden/v1/records.json`` (so a
  regenerated golden vector regenerates the example).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

from edgegov import names
from edgegov.core import codes, envelope, record
from edgegov.host.lineage_read import GAP_CAUSES, KIND_NAMES

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "lineage-format.md"
GOLDEN = REPO / "tests" / "golden" / "v1"
GOLDEN_KEY = bytes(range(100, 132))  # tools/make_golden.py
BEGIN = "<!-- codes:begin -->"
END = "<!-- codes:end -->"
EX_BEGIN = "<!-- chain-example:begin -->"
EX_END = "<!-- chain-example:end -->"
BOOT_FIELDS = ("", "t", "boot_count", "reset_reason", "", "", "", "op_counter", "outputs",
               "wall_ms", "")


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


def _hex(data: bytes, width: int = 28, indent: str = "      ") -> str:
    """Bytes as rows of spaced hex (the first row unindented)."""
    rows = [" ".join(f"{b:02x}" for b in data[i:i + width]) for i in range(0, len(data), width)]
    return ("\n" + indent).join(rows)


def _wrap(items: list[str], width: int = 80, indent: str = "         ") -> str:
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 2 > width:
            lines.append(line + ",")
            line = item
        else:
            line = f"{line}, {item}" if line else item
    return ("\n" + indent).join(lines + [line])


def _short(data: bytes) -> str:
    return f"{data[:2].hex()}…{data[-2:].hex()}"


def _cbor_text(v) -> str:
    if isinstance(v, bytes):
        return f"h'{_short(v)}'"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_cbor_text(x) for x in v) + "]"
    return {None: "null", True: "true", False: "false"}.get(v, str(v)) if not isinstance(
        v, int) or isinstance(v, bool) else str(v)


def chain_example() -> str:
    """The worked example of the hash chain, from the golden records."""
    import cbor2

    entries = json.loads((GOLDEN / "records.json").read_text())
    stored = [(e["seq"], bytes.fromhex(e["hex"])) for e in entries if e["seq"] >= 0]
    values = [cbor2.loads(p) for _, p in stored]
    kinds = [v[0] for v in values]
    if kinds[:3] != [1, 6, 5]:
        raise SystemExit("the golden run must start BOOT, ENVELOPE, CHECKPOINT")
    (s0, p0), (s1, p1), (s2, p2) = stored[:3]
    boot, env, ck0 = values[:3]
    h = hashlib.sha256(bytes(32))
    for seq, payload in stored[:2]:
        h.update(struct.pack("<I", seq) + payload)
    head0 = h.digest()
    mac0 = hmac.new(GOLDEN_KEY, b"edgegov-ckpt\x00" + head0, hashlib.sha256).digest()
    c1 = kinds.index(5, 3)
    h = hashlib.sha256(head0)
    for seq, payload in stored[2:c1]:
        h.update(struct.pack("<I", seq) + payload)
    head1 = h.digest()
    if (ck0[2], ck0[3], ck0[4]) != (bytes(32), head0, mac0) or values[c1][3] != head1:
        raise SystemExit("the golden checkpoints do not follow the chain")
    fields = _wrap([f"{n}={_cbor_text(v)}" if n else _cbor_text(v)
                    for n, v in zip(BOOT_FIELDS, boot, strict=True)])
    blob = env[2]
    at = p1.index(blob[:8])
    p1_text = (f"{_hex(p1[:4])} {_hex(env[1][:2])} … {_hex(env[1][-2:])} {_hex(p1[36:at])} "
               f"{_hex(blob[:5])} …")
    between = f"{c1 - 3} " + " and ".join(sorted({KIND_NAMES[k].upper() for k in kinds[3:c1]}))
    z_digest = hashlib.sha256(bytes(32)).hexdigest()
    last = stored[c1 - 1][0]
    u32 = {s: _hex(struct.pack("<I", s)) for s in (s0, s1, s2, s2 + 1, last)}
    head0_text = f"{_hex(head0[:4])} … {_hex(head0[-2:])}"
    domain = _hex(b"edgegov-ckpt" + bytes(1))
    return f"""From `tests/golden/v1/records.json` (every record the golden run appended, with its
ring seq) and the golden key `64 65 66 … 83` (the 32 bytes 100..131). The first segment is
the BOOT (seq {s0}, {len(p0)} bytes) and the ENVELOPE (seq {s1}, {len(p1)} bytes):

```
P_0 = {_hex(p0)}
      = [{fields}]
P_1 = {p1_text}   ({len(p1)} bytes)
      = [6, h'{_short(env[1])}', <{len(blob)}-byte envelope blob>]

hashed: 00 × 32 ‖ {u32[s0]} ‖ P_0 ‖ {u32[s1]} ‖ P_1   (32 + 4 + {len(p0)} + 4 + {len(p1)} bytes)
head(C_0) = {head0.hex()}
```

The 32 zero bytes themselves are hashed, not their digest: `SHA-256(Z)` =
`{z_digest[:8]}…{z_digest[-8:]}` appears nowhere in the chain.

The CHECKPOINT at seq {s2} ({len(p2)} bytes) begins `{_hex(p2[:6])} … 00 {_hex(p2[37:43])} …`:
`[5, t={ck0[1]}, prev_head=Z, head={_short(head0)}, mac, …]`, and

```
mac(C_0) = HMAC-SHA256(key, {domain} ‖ {head0_text})
         = {mac0.hex()}
```

The next segment is seqs {s2}..{last} (the checkpoint, then {between} records):

```
hashed: {head0_text} ‖ {u32[s2]} ‖ P_{s2} ‖ {u32[s2 + 1]} ‖ P_{s2 + 1} ‖ … ‖ {u32[last]} ‖ P_{last}
head(C_1) = {head1.hex()}
```

which the CHECKPOINT at seq {stored[c1][0]} stores as `head`, with `prev_head = {_short(head0)}`.
`tests/test_ref_decoder.py` recomputes these values from the records."""


def _between(text: str, begin: str, end: str, body: str) -> str:
    start = text.index(begin) + len(begin)
    return text[:start] + "\n" + body + "\n" + text[text.index(end):]


def render(text: str) -> str:
    """``text`` (the doc) with the generated parts between their markers replaced."""
    text = _between(text, BEGIN, END, tables())
    return _between(text, EX_BEGIN, EX_END, chain_example())


def main() -> int:
    text = DOC.read_text()
    for begin, end in ((BEGIN, END), (EX_BEGIN, EX_END)):
        if begin not in text or end not in text:
            print(f"{DOC}: no {begin} ... {end} markers", file=sys.stderr)
            return 2
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print(f"{DOC}: generated parts are out of date: run python tools/render_codes.py",
                  file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
