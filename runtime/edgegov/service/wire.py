"""JSON payloads on the wire ⇄ core events, in engineering units ⇄ scaled integers.

Decoding never raises and never judges: whatever arrives is handed to the governor as the
event it claims to be, with the raw values it carried, so the governor refuses bad input
with its own reason codes and the lineage records it (a NaN stays a float NaN, a ``values``
that is not an object stays what it is, an unknown channel stays unknown). The wire layer
only does what the core cannot:

- numbers are converted from engineering units to the channel's (or input's) scaled
  integer, rounding half to even on the resolution (``CompiledEnvelope.to_scaled``);
  numbers whose magnitude no channel can hold become a stand-in of the same sign that the
  governor refuses as out of range exactly like the original;
- a payload that is not JSON, not an object, larger than ``MAX_PAYLOAD_BYTES``, or whose
  values would not fit one lineage record, becomes a command/event with no usable fields
  (``seq``/``values`` None), which the governor refuses as a wrong type; the host's reason
  (``note``) travels with it onto the ``event`` topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, DecimalException, localcontext

from .. import names
from ..core import codes
from ..core.events import Command, Operator, Telemetry

MAX_PAYLOAD_BYTES = 4096  # refused before parsing
MAX_ENTRIES = 64  # keys in one ``values`` object
VALUES_BUDGET = 512  # bytes one record may spend on values (the record buffer is 1 KiB)
_FAR = 1 << 62  # stand-in for magnitudes beyond any channel: refused as out of range
_MAX_DIGITS = 15  # |value| >= 1e15 in engineering units is out of any range

NOTE_MALFORMED = "malformed_json"
NOTE_NOT_OBJECT = "not_an_object"
NOTE_OVERSIZED = "oversized"


@dataclass
class Inbound:
    """One decoded message: the core event and the host's note about it (or None)."""

    event: object
    note: str | None = None


class Resolution:
    """One resolution, as a Decimal (``to_scaled``, the reference) and as the exact ratio
    ``num / den`` the common cases are scaled with in integer arithmetic (``scale``)."""

    __slots__ = ("dec", "num", "den")

    def __init__(self, dec: Decimal) -> None:
        self.dec = dec
        self.num, self.den = dec.as_integer_ratio()


class Scaler:
    """Resolutions of an envelope's channels and numeric inputs, for the wire."""

    def __init__(self, compiled) -> None:
        adm = compiled.admitted
        self.channels = {n: Resolution(Decimal(c.resolution)) for n, c in adm.channels.items()}
        self.inputs = {
            n: Resolution(Decimal(i.resolution or 1))
            for n, i in adm.inputs.items() if i.type == "number"
        }


def to_scaled(value, resolution: Decimal):
    """A JSON value for a numeric channel/input → scaled int, or the raw value to refuse."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return value  # NaN/Infinity floats, strings, null, arrays, objects: as they came
    dec = Decimal(value) if isinstance(value, int) else value
    if not dec.is_finite():
        return float(dec)
    if dec and dec.adjusted() >= _MAX_DIGITS:
        return _FAR if dec > 0 else -_FAR
    try:
        with localcontext() as ctx:
            ctx.prec = 60
            return int((dec / resolution).to_integral_value(rounding=ROUND_HALF_EVEN))
    except DecimalException:
        return _FAR if dec > 0 else -_FAR


_LIMIT = 10**_MAX_DIGITS
# The ratio path equals ``to_scaled`` (60 digits, then half-even) whenever the exact quotient
# cannot sit within 60 digits' rounding of a half: true while den * q stays below this.
_EXACT_DEN = 10**40


def scale(value, res: Resolution):
    """``to_scaled(value, res.dec)``, in integer arithmetic for ints and plain decimals (what
    a JSON number is) below 1e15 in magnitude; everything else goes to ``to_scaled``."""
    t = type(value)
    if t is int:
        if -_LIMIT < value < _LIMIT and res.den <= _EXACT_DEN:
            return _half_even(value * res.den, res.num)
    elif t is Decimal and value.is_finite() and -_LIMIT < value < _LIMIT:
        p, q = value.as_integer_ratio()
        if res.den * q <= _EXACT_DEN:
            return _half_even(p * res.den, q * res.num)
    return to_scaled(value, res.dec)


def _half_even(a: int, b: int) -> int:
    """a / b (b > 0) rounded half to even."""
    q, r = divmod(a, b)
    r2 = 2 * r
    if r2 > b or (r2 == b and q & 1):
        return q + 1
    return q


def _parse(payload: bytes) -> tuple[object, str | None]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None, NOTE_OVERSIZED
    try:
        doc = json.loads(payload, parse_float=Decimal)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None, NOTE_MALFORMED
    if not isinstance(doc, dict):
        return None, NOTE_NOT_OBJECT
    return doc, None


def _cost(v) -> int:
    """Upper bound on the bytes a value takes in a lineage record."""
    if isinstance(v, str):
        return (len(v) if v.isascii() else len(v.encode("utf-8", "surrogatepass"))) + 5
    return 10


_TOO_BIG = object()


def _scaled(values, resolutions: dict):
    """The values map with every known key scaled, in one pass; ``_TOO_BIG`` when it would
    not fit one lineage record; anything that is not a map as it came."""
    if not isinstance(values, dict):
        return values
    if len(values) > MAX_ENTRIES:
        return _TOO_BIG
    budget = VALUES_BUDGET
    out = {}
    for k, v in values.items():
        budget -= _cost(k) + _cost(v)
        res = resolutions.get(k)
        out[k] = scale(v, res) if res is not None else _plain(v)
    return out if budget >= 0 else _TOO_BIG


def _plain(v):
    """Values the governor will judge without scaling (bool inputs, unknown keys)."""
    return float(v) if isinstance(v, Decimal) else v


def decode_command(payload: bytes, scaler: Scaler) -> Inbound:
    """``{"seq": int, "values": {channel: number}, "session"?: int | text}`` → ``Command``.
    A session that is not an int 0 <= s < 2**53 or text of 1 to 64 characters makes the
    command invalid (refused as a wrong type, with a note)."""
    doc, note = _parse(payload)
    if doc is None:
        return Inbound(Command(None, None), note)
    values = _scaled(doc.get("values"), scaler.channels)
    seq = _plain(doc.get("seq"))
    if values is _TOO_BIG or _cost(seq) > 64:
        return Inbound(Command(None, None), NOTE_OVERSIZED)
    session = doc.get("session")
    if session is not None and not _session_ok(session):
        return Inbound(Command(None, None), NOTE_BAD_SESSION)
    return Inbound(Command(seq, values, session=session))


NOTE_BAD_SESSION = "session must be an integer 0..2**53-1 or text of 1 to 64 characters"


def _session_ok(s) -> bool:
    if type(s) is int:
        return 0 <= s < 1 << 53
    return type(s) is str and 0 < len(s) <= 64


def decode_telemetry(payload: bytes, scaler: Scaler) -> Inbound:
    """``{"values": {input: bool | number}}`` → ``Telemetry``."""
    doc, note = _parse(payload)
    if doc is None:
        return Inbound(Telemetry(None), note)
    values = _scaled(doc.get("values"), scaler.inputs)
    if values is _TOO_BIG:
        return Inbound(Telemetry(None), NOTE_OVERSIZED)
    return Inbound(Telemetry(values))


def decode_operator(payload: bytes) -> Inbound:
    """``{"action": name | code, "arg": int, "counter": int, "mac": hex}`` → ``Operator``."""
    doc, note = _parse(payload)
    if doc is None:
        return Inbound(Operator(None, None, None, None), note)
    action, arg, counter = (_plain(doc.get(k)) for k in ("action", "arg", "counter"))
    if any(_cost(v) > 64 for v in (action, arg, counter)):
        return Inbound(Operator(None, None, None, None), NOTE_OVERSIZED)
    if isinstance(action, str):
        try:
            action = names.op_code(action)
        except KeyError:
            pass  # an unknown action name stays text: the governor refuses it
    return Inbound(Operator(action, 0 if arg is None else arg, counter, _mac(doc.get("mac"))))


def _mac(text) -> bytes | None:
    if not isinstance(text, str) or len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def encode_operator(action: int, arg: int, counter: int, mac: bytes) -> bytes:
    """The JSON an operator client publishes on ``op``."""
    return dumps({"action": names.op(action), "arg": arg, "counter": counter, "mac": mac.hex()})


def encode_command(seq: int, values: dict, session=None) -> bytes:
    doc = {"seq": seq, "values": values}
    if session is not None:
        doc["session"] = session
    return dumps(doc)


def dumps(doc) -> bytes:
    return _encode(doc).encode()


def _jsonable(v):
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return repr(v)


# One encoder for every message (json.dumps with options builds a new one per call).
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_jsonable).encode

INPUT_KINDS = {
    codes.EV_COMMAND: "command",
    codes.EV_TELEMETRY: "telemetry",
    codes.EV_TICK: "tick",
    codes.EV_OPERATOR: "operator",
    codes.EV_FAULT: "fault",
    codes.EV_SESSION: "session",
}

__all__ = [
    "Inbound",
    "Scaler",
    "to_scaled",
    "scale",
    "Resolution",
    "decode_command",
    "decode_telemetry",
    "decode_operator",
    "encode_operator",
    "encode_command",
    "dumps",
    "MAX_PAYLOAD_BYTES",
    "NOTE_MALFORMED",
    "NOTE_NOT_OBJECT",
    "NOTE_OVERSIZED",
]
