"""Lineage records: the governor's inputs and outcomes as compact CBOR (format version 1).

Each ring payload is one CBOR array whose first element is the record kind. The byte-level
spec is ``docs/lineage-format.md``; golden vectors live under ``tests/golden/``. Records hold
the *inputs* (event and time), so replay re-derives every decision, plus the outcome
(verdict, rule, reason, margin, outputs where they differ from what was asked, events) so a
replay can be compared field by field and a dump can be read without replaying.

``Encoder`` writes into one preallocated buffer (no allocation per record for the common
commands, ticks and telemetry); ``decode`` turns payload bytes back into plain values.
"""

from . import cbor
from .codes import (
    CLAMP,
    EV_FAULT,
    EV_OPERATOR,
    EV_SESSION,
    EV_TELEMETRY,
    EV_TICK,
)
from .compat import const

# Optional C accelerator (CPython, built by setup.py) for the common DECISION and EVENT
# records: byte-identical to the code below, which stays the reference and does everything
# the accelerator hands back (it returns False, having changed nothing). For decoding,
# ``_c_loads`` builds the same objects as ``cbor.loads`` or returns None where the Python
# decoder must run (and raise its own error). It is absent on MicroPython;
# EDGEGOV_PURE_RECORDS=1 at import keeps CPython on the Python code too.
try:
    from .._recenc import PURE as _pure
    from .._recenc import decision as _c_decision
    from .._recenc import event as _c_event
    from .._recenc import loads as _c_loads
except ImportError:
    _pure = True
if _pure:
    _c_decision = None
    _c_event = None
    _c_loads = None

FORMAT_VERSION = const(1)

K_BOOT = const(1)
K_DECISION = const(2)
K_EVENT = const(3)
K_GAP = const(4)
K_CHECKPOINT = const(5)
K_ENVELOPE = const(6)
K_TIME = const(7)

# Markers for values CBOR cannot carry (or that must stay distinguishable): [code]
M_NAN = const(0)
M_POS_INF = const(1)
M_NEG_INF = const(2)
M_FLOAT = const(3)  # any other float: not an integer, so a wrong type for the governor
M_OTHER = const(4)  # any other type (str, list, ...): a wrong type
M_HUGE = const(5)  # an int beyond 64 bits: out of range
M_TEXT = const(6)  # [6, bytes]: text that is not valid Unicode (a lone surrogate), as its
# UTF-8 with each surrogate written as three bytes ("surrogatepass")

_U64 = 0xFFFFFFFFFFFFFFFF
_BUF = const(1024)


class RecordError(ValueError):
    """A payload that is not a valid record of this format version."""


def _marker(v):
    """The marker code for a value CBOR should not carry as-is, or -1 if it can."""
    if v is None or isinstance(v, bool):
        return -1
    if isinstance(v, int):
        return -1 if -_U64 - 1 <= v <= _U64 else M_HUGE
    if isinstance(v, float):
        if v != v:
            return M_NAN
        if v == float("inf"):
            return M_POS_INF
        if v == float("-inf"):
            return M_NEG_INF
        return M_FLOAT
    if isinstance(v, (bytes, str)):
        return -1
    return M_OTHER


class Other:
    """The stand-in for a value of any other type (an array, an object, ...): the governor
    refuses it as a wrong type exactly as it refused the original, and the encoder writes
    it as the same marker ``[4]``, so a replay reproduces the record byte for byte."""

    __slots__ = ()

    def __repr__(self):
        return "<other type>"


OTHER = Other()


def unmark(code):
    """A stand-in value that the governor judges exactly as the recorded one, and that the
    encoder writes as the same marker."""
    if code == M_NAN:
        return float("nan")
    if code == M_POS_INF:
        return float("inf")
    if code == M_NEG_INF:
        return float("-inf")
    if code == M_FLOAT:
        return 0.5
    if code == M_HUGE:
        return 1 << 70
    if code == M_OTHER:
        return OTHER
    raise RecordError("unknown value marker %r" % (code,))


def _text_marker(raw):
    """The text an ``[6, bytes]`` marker carries (CPython: the exact string; a runtime
    without surrogate support gets the ``Other`` stand-in, judged the same)."""
    if not isinstance(raw, bytes):
        raise RecordError("bad text marker")
    try:
        return raw.decode("utf-8", "surrogatepass")
    except (UnicodeError, LookupError, TypeError):
        return OTHER


class Encoder:
    """Encodes records into one reusable buffer; ``n`` is the length of the last one.

    Keeps the context the compact fields are relative to: the previous record's time
    (``dt``), the previous command's sequence number, and the outputs after the previous
    record (``out`` lists only what differs from the expectation).
    """

    def __init__(self, env, capacity=_BUF):
        self.env = env
        self.buf = bytearray(capacity)
        self.n = 0
        self.t = 0
        self.seq_ref = 0
        self.prev_out = list(env.ch_safe)

    # -- low level: CBOR heads and scalars written in place
    def _room(self, k):
        """Grow the buffer for an unusually large record (never in steady state)."""
        if self.n + k > len(self.buf):
            self.buf.extend(bytes(max(k, len(self.buf))))

    def _head(self, major, v):
        if self.n + 9 > len(self.buf):
            self._room(9)
        b = self.buf
        p = self.n
        mt = major << 5
        if v < 24:
            b[p] = mt | v
            self.n = p + 1
        elif v < 0x100:
            b[p] = mt | 24
            b[p + 1] = v
            self.n = p + 2
        elif v < 0x10000:
            b[p] = mt | 25
            b[p + 1] = v >> 8
            b[p + 2] = v & 0xFF
            self.n = p + 3
        elif v < 0x100000000:
            b[p] = mt | 26
            b[p + 1] = (v >> 24) & 0xFF
            b[p + 2] = (v >> 16) & 0xFF
            b[p + 3] = (v >> 8) & 0xFF
            b[p + 4] = v & 0xFF
            self.n = p + 5
        else:
            b[p] = mt | 27
            for i in range(8):
                b[p + 1 + i] = (v >> (56 - 8 * i)) & 0xFF
            self.n = p + 9

    def int(self, v):
        if v >= 0:
            self._head(0, v)
        else:
            self._head(1, -1 - v)

    def array(self, n):
        self._head(4, n)

    def null(self):
        self._room(1)
        self.buf[self.n] = 0xF6
        self.n += 1

    def value(self, v):
        """Any recorded value: CBOR as-is where it can be, else a one-element marker."""
        code = _marker(v)
        if code >= 0:
            self._head(4, 1)
            self._head(0, code)
        elif isinstance(v, bool) or v is None:
            self._room(1)
            self.buf[self.n] = 0xF5 if v is True else 0xF4 if v is False else 0xF6
            self.n += 1
        elif isinstance(v, int):
            self.int(v)
        else:
            try:
                data = cbor.dumps(v)
            except UnicodeError:  # text with a lone surrogate (JSON "\ud800" can say so)
                self.array(2)
                self._head(0, M_TEXT)
                data = cbor.dumps(v.encode("utf-8", "surrogatepass"))
            self.raw(data)

    def raw(self, data):
        self._room(len(data))
        p = self.n
        self.buf[p : p + len(data)] = data
        self.n = p + len(data)

    def start(self, kind, length):
        self.n = 0
        self._head(4, length)
        self._head(0, kind)

    def payload(self):
        return memoryview(self.buf)[: self.n]

    # -- records
    def decision(self, cmd, now_ms, d):
        """DECISION = [2, dt, seq, values, vr, rule, margin, (out, (events))]."""
        if _c_decision is not None and _c_decision(self, cmd, now_ms, d):
            return
        extra = self._extras(d, cmd)
        self.start(K_DECISION, 7 + extra)
        self.int(now_ms - self.t)
        self.t = now_ms
        seq = cmd.seq
        if type(seq) is int and _marker(seq) < 0 and _marker(seq - self.seq_ref) < 0:
            self.int(seq - self.seq_ref)
            self.seq_ref = seq
        else:
            self.value(seq if type(seq) is not int else 1 << 70)
        self._values(cmd.values, self.env.ch_names, self.env.ch_index)
        self._outcome(d, extra, cmd)

    def event(self, ev, now_ms, d, authentic=True):
        """EVENT = [3, dt, input, vr, rule, margin, (out, (events))]."""
        if _c_event is not None and _c_event(self, ev, now_ms, d):
            return
        extra = self._extras(d, None)
        self.start(K_EVENT, 6 + extra)
        self.int(now_ms - self.t)
        self.t = now_ms
        kind = ev.kind
        if kind == EV_TICK:
            self._head(0, EV_TICK)
        elif kind == EV_TELEMETRY:
            self.array(2)
            self._head(0, EV_TELEMETRY)
            self._values(ev.values, self.env.in_names, self.env.in_index)
        elif kind == EV_OPERATOR:
            self.array(6)
            self._head(0, EV_OPERATOR)
            self.value(ev.action)
            self.value(ev.arg)
            self.value(ev.counter)
            mac = ev.mac
            self.value(bytes(mac) if isinstance(mac, (bytes, bytearray)) else None)
            self.value(bool(authentic))
        elif kind == EV_FAULT:
            self.array(3)
            self._head(0, EV_FAULT)
            self.value(ev.code)
            self.value(ev.active is not False)  # what the governor decides on
        elif kind == EV_SESSION:
            self.array(2)
            self._head(0, EV_SESSION)
            self.value(ev.session)
        else:
            raise RecordError("unknown event kind")
        self._outcome(d, extra, None)

    def _values(self, values, names, index):
        if not isinstance(values, dict):
            self.null()
            return
        n = len(names)
        if len(values) == n:
            vector = True
            for i in range(n):
                v = values.get(names[i], None)
                if not (type(v) is bool or (type(v) is int and _marker(v) < 0)):
                    vector = False
                    break
            if vector:
                self.array(n)
                for i in range(n):
                    v = values[names[i]]
                    if type(v) is bool:
                        self._room(1)
                        self.buf[self.n] = 0xF5 if v else 0xF4
                        self.n += 1
                    else:
                        self.int(v)
                return
        self._pairs(values, names, index)

    def _pairs(self, values, names, index):
        known = []
        unknown = []
        for k in values:
            if isinstance(k, str) and k in index:
                known.append(index[k])
            else:
                unknown.append(k)
        known.sort()
        unknown = sorted(unknown, key=_sort_key)
        self.array(len(known) + len(unknown))
        for i in known:
            self.array(2)
            self.int(i)
            self.value(values[names[i]])
        for k in unknown:
            self.array(2)
            self.value(k if isinstance(k, str) else repr(k))
            self.value(values[k])

    def _extras(self, d, cmd):
        """How many optional trailing fields: 0, 1 (out) or 2 (out, events)."""
        if d.n_events:
            return 2
        return 1 if self._out_differs(d, cmd) else 0

    def _expected(self, d, cmd, i):
        p = d.proposed[i]
        if cmd is not None and d.verdict <= CLAMP and p is not None:
            return p
        return self.prev_out[i]

    def _out_differs(self, d, cmd):
        out = d.output
        for i in range(self.env.n):
            if out[i] != self._expected(d, cmd, i):
                return True
        return False

    def _outcome(self, d, extra, cmd):
        self.int(d.verdict * 64 + d.reason)
        self.int(d.rule)
        self.int(d.margin)
        out = d.output
        if extra:
            count = 0
            for i in range(self.env.n):
                if out[i] != self._expected(d, cmd, i):
                    count += 1
            self.array(count)
            for i in range(self.env.n):
                if out[i] != self._expected(d, cmd, i):
                    self.array(2)
                    self.int(i)
                    self.int(out[i])
        if extra == 2:
            self.array(d.n_events)
            for k in range(d.n_events):
                self.array(2)
                self.int(d.ev_code[k])
                self.int(d.ev_arg[k])
        for i in range(self.env.n):
            self.prev_out[i] = out[i]

    def boot(self, now_ms, boot_count, reset_reason, fw_version, digest, op_counter, outputs,
             wall_ms=None):
        """BOOT = [1, t, boot_count, reset_reason, fw_version, envelope_digest, device_id,
        op_counter, outputs, wall_ms|null, format_version]."""
        self.start(K_BOOT, 11)
        self.int(now_ms)
        self.t = now_ms
        self.int(boot_count)
        self.int(reset_reason)
        self.raw(cbor.dumps(fw_version))
        self.raw(cbor.dumps(bytes(digest)))
        self.raw(cbor.dumps(self.env.device_id))
        self.int(op_counter)
        self.raw(cbor.dumps(list(outputs)))
        self.value(wall_ms)
        self.int(FORMAT_VERSION)
        self.seq_ref = 0
        for i in range(self.env.n):
            self.prev_out[i] = outputs[i]

    def envelope(self, digest, blob):
        """ENVELOPE = [6, digest, blob]: the compiled envelope the governor ran."""
        self.start(K_ENVELOPE, 3)
        self.raw(cbor.dumps(bytes(digest)))
        self.raw(cbor.dumps(bytes(blob)))

    def checkpoint(self, now_ms, prev_head, head, mac, state, wall_ms=None):
        """CHECKPOINT = [5, t, prev_head, head, mac|null, seq_ref, state, envelope_digest,
        (wall_ms)]: the trailing wall time only when the host knows it."""
        self.start(K_CHECKPOINT, 8 if wall_ms is None else 9)
        self.int(now_ms)
        self.t = now_ms
        self.raw(cbor.dumps(bytes(prev_head)))
        self.raw(cbor.dumps(bytes(head)))
        self.value(None if mac is None else bytes(mac))
        self.int(self.seq_ref)
        self.raw(cbor.dumps(state))
        self.raw(cbor.dumps(bytes(self.env.digest)))
        if wall_ms is not None:
            self.int(wall_ms)

    def time(self, now_ms, wall_ms):
        """TIME = [7, t, wall_ms]: the host's wall clock stepped; ``t`` is absolute and, unlike
        the other absolute times, not a base for the next record's ``dt``."""
        self.start(K_TIME, 3)
        self.int(now_ms)
        self.int(wall_ms)

    def gap(self, now_ms, first_lost, count, cause):
        """GAP = [4, t, first_lost_seq, count, cause]."""
        self.start(K_GAP, 5)
        self.int(now_ms)
        self.t = now_ms
        self.int(first_lost)
        self.int(count)
        self.int(cause)


def _sort_key(k):
    return k if isinstance(k, str) else repr(k)


GAP_DROPPED = const(1)  # the ring had no writable sector (all frozen)
GAP_OVERWRITTEN = const(2)  # wrap-around erased older records
GAP_HOST = const(3)  # the host lost records before they reached the ring


def decode(payload):
    """Payload bytes → the record as a list (CBOR array), checked for shape."""
    rec = _c_loads(payload) if _c_loads is not None else None
    if rec is None:
        try:
            rec = cbor.loads(payload)
        except cbor.CBORError as e:
            raise RecordError("record is not valid CBOR: " + str(e)) from None
    if not isinstance(rec, list) or not rec or not isinstance(rec[0], int):
        raise RecordError("record is not an array starting with its kind")
    kind = rec[0]
    size = _SIZES.get(kind)
    if size is None:
        raise RecordError("unknown record kind %r" % (kind,))
    if not size[0] <= len(rec) <= size[1]:
        raise RecordError("record kind %d has %d fields" % (kind, len(rec)))
    return rec


_SIZES = {
    K_BOOT: (11, 11),
    K_DECISION: (7, 9),
    K_EVENT: (6, 8),
    K_GAP: (5, 5),
    K_CHECKPOINT: (8, 9),
    K_ENVELOPE: (3, 3),
    K_TIME: (3, 3),
}


def value_of(v):
    """A decoded recorded value → the value to feed the governor."""
    if isinstance(v, list):
        if len(v) == 2 and v[0] == M_TEXT:
            return _text_marker(v[1])
        if len(v) != 1 or not isinstance(v[0], int):
            raise RecordError("bad value marker")
        return unmark(v[0])
    return v


def values_of(field, names):
    """A decoded ``values`` field → the name → value map the event carried."""
    if field is None:
        return None
    if not isinstance(field, list):
        raise RecordError("values must be an array or null")
    if field and not isinstance(field[0], list):
        if len(field) != len(names):
            raise RecordError("vector of values has the wrong length")
        for v in field:
            if not isinstance(v, int):
                raise RecordError("vector values must be integers or booleans")
        return dict(zip(names, field))
    out = {}
    for pair in field:
        if not isinstance(pair, list) or len(pair) != 2:
            raise RecordError("bad value pair")
        k, v = pair
        if isinstance(k, int) and not isinstance(k, bool):
            if not 0 <= k < len(names):
                raise RecordError("value index out of range")
            k = names[k]
        elif isinstance(k, list):
            k = value_of(k)  # an unknown name that is not valid Unicode
            if not isinstance(k, str):
                raise RecordError("bad value key")
        elif not isinstance(k, str):
            raise RecordError("bad value key")
        out[k] = value_of(v)
    return out


__all__ = [
    "Encoder",
    "RecordError",
    "decode",
    "values_of",
    "value_of",
    "Other",
    "OTHER",
    "FORMAT_VERSION",
    "K_BOOT",
    "K_DECISION",
    "K_EVENT",
    "K_GAP",
    "K_CHECKPOINT",
    "K_ENVELOPE",
    "K_TIME",
]
