"""A second lineage reader, written from docs/lineage-format.md alone.

It imports nothing of edgegov: only the standard library (struct, zlib's CRC-32, hashlib,
hmac, decimal, json) and cbor2. The words for codes are read from the spec's own code
tables, so the tables a third party would copy are the ones this reader uses. The suite
(tests/test_ref_decoder.py) runs it against the golden vectors and a fresh demo lineage
and compares it with ``edgegov lineage decode`` field by field.

    python tests/ref_decoder.py IMAGE [--key KEYFILE]     # JSON lines, then a verify line
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import struct
import sys
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import cbor2

SPEC = Path(__file__).resolve().parents[1] / "docs" / "lineage-format.md"

# -- the spec's constants ("Sector header", "Record frame", "Hash chain")
MAGIC = b"EGRL"
HEADER = 28
FRAME_OVERHEAD = 10
ERASED = 0xFFFF
Z = bytes(32)
CKPT_DOMAIN = b"edgegov-ckpt\x00"
U32 = 0xFFFFFFFF

TORN, BAD_RECORD, GAP, BAD_HEADER = 1, 2, 3, 4  # the ring problem codes


class RefError(ValueError):
    """Input the spec says a reader refuses."""


# ---------------------------------------------------------------- code tables from the spec

def spec_tables(text: str | None = None) -> dict[str, dict[int, list[str]]]:
    """``#### Title`` → {code: [cells after the code]} for every table under a heading."""
    text = SPEC.read_text() if text is None else text
    tables: dict[str, dict[int, list[str]]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("#### "):
            title = line[5:].strip()
            continue
        m = re.match(r"^\|\s*(-?\d+)\s*\|(.*)\|\s*$", line)
        if title and m:
            cells = [_unquote(c.strip()) for c in m.group(2).split("|")]
            tables.setdefault(title, {})[int(m.group(1))] = cells
    return tables


class Shown:
    """A stand-in of no type the governor accepts, shown in the decoded form as ``text``."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self):
        return self.text


TEXT_MARKER = object()  # the stand-in column of a two-element [code, bytes] text marker


def _unquote(cell: str) -> str:
    """A cell that is one code span (`` `ok` ``) → its text."""
    if len(cell) > 1 and cell[0] == cell[-1] == "`" and cell.count("`") == 2:
        return cell[1:-1]
    return cell


def _standin(text: str):
    """The stand-in column of the Value markers table → the value."""
    if text.startswith("`[") and "bytes]`" in text and "UTF-8" in text:
        return TEXT_MARKER
    m = re.match(r'^the text "(.*)"$', text)
    if m:
        return m.group(1)
    m = re.match(r"^a value of no type the governor accepts, shown as `(.*)`$", text)
    if m:
        return Shown(m.group(1))
    m = re.match(r"^2\^(\d+) \(integer\)$", text)
    if m:
        return 1 << int(m.group(1))
    m = re.match(r"^(\S+) \(float\)$", text)
    if m:
        return float(m.group(1).replace("Infinity", "inf"))
    raise RefError(f"unknown stand-in {text!r}")


def cells_name(tables, code):
    return tables["Value markers"][code][0]


class Words:
    """The code tables of the spec as lookups (``fallback`` + number for unnamed codes)."""

    def __init__(self, text: str | None = None):
        t = spec_tables(text)

        def names(title):
            return {code: cells[0] for code, cells in t[title].items()}

        self.kinds = names("Record kinds")
        self.verdicts = names("Verdicts")
        self.reasons = names("Reasons")
        self.events = names("Events")
        self.ops = names("Operator actions")
        self.states = names("Governor states")
        self.causes = names("Trip causes")
        self.faults = names("Faults")
        self.gap_causes = names("GAP causes")
        self.markers = {code: _standin(cells[-1]) for code, cells in t["Value markers"].items()}
        self.other = next(v for c, v in self.markers.items() if cells_name(t, c) == "other")
        self.event_fault = {code for code, name in self.events.items()
                            if name in ("fault", "fault_cleared")}


# ---------------------------------------------------------------- the ring ("Storage")

@dataclass
class Sector:
    block: int
    erase_seq: int
    base_seq: int
    header_crc: int
    frozen: bool
    torn_mark: bool
    records: list = field(default_factory=list)  # (seq, offset in image, payload)


@dataclass
class Problem:
    code: int
    offset: int
    seq: int


@dataclass
class Ring:
    block_size: int
    records: list  # (seq, payload) in ring order
    offsets: dict  # seq -> byte offset of its frame in the image
    problems: list


def _header(image: bytes, at: int, block_size: int):
    magic, ver, hsize, _, eseq, base, bsize, crc = struct.unpack_from("<4sBBHIIII", image, at)
    ok = (magic == MAGIC and ver == 1 and hsize == HEADER and bsize == block_size
          and zlib.crc32(image[at:at + 20]) == crc)
    return (eseq, base, crc) if ok else None


def block_size_of(image: bytes) -> int:
    if len(image) < HEADER:
        raise RefError("image shorter than a sector header")
    bsize = struct.unpack_from("<I", image, 16)[0]
    if _header(image, 0, bsize) is None:
        raise RefError("no valid sector header at offset 0")
    return bsize


def read_ring(image: bytes, block_size: int | None = None) -> Ring:
    bs = block_size or block_size_of(image)
    if len(image) % bs or len(image) < 2 * bs:
        raise RefError("image is not at least two whole blocks")
    count = len(image) // bs
    sectors, damaged = [], []
    for b in range(count):
        h = _header(image, b * bs, bs)
        if h is not None:
            sectors.append(Sector(b, h[0], h[1], h[2], image[b * bs + 24] != 0xFF,
                                  image[b * bs + 25] != 0xFF))
        elif image[b * bs:b * bs + HEADER] != b"\xff" * HEADER:
            damaged.append(b)
    order = _ordered(sectors)
    problems = []
    head = order[-1] if order else None
    for s in order:
        _walk(image, bs, s, s is head, problems)
    roll = _roll_target(head, order, count)
    for b in damaged:
        problems.append(Problem(TORN if b == roll else BAD_HEADER, b * bs, -1))
    records, offsets, prev_end = [], {}, None
    for s in order:
        if not s.records:
            continue
        if prev_end is not None and s.base_seq != prev_end:
            problems.append(Problem(GAP, s.block * bs + HEADER, prev_end))
        for seq, off, payload in s.records:
            records.append((seq, payload))
            offsets[seq] = off
        prev_end = (s.records[-1][0] + 1) & U32
    return Ring(bs, records, offsets, problems)


def _ordered(sectors: list[Sector]) -> list[Sector]:
    """Oldest first: the head precedes the widest gap of erase_seq on the u32 circle."""
    s = sorted(sectors, key=lambda x: (x.erase_seq, x.block))
    widest, start = -1, 0
    for i in range(len(s)):
        gap = (s[(i + 1) % len(s)].erase_seq - s[i].erase_seq) & U32
        if gap > widest:
            widest, start = gap, (i + 1) % len(s)
    return s[start:] + s[:start]


def _roll_target(head, order, count):
    if head is None:
        return -1
    frozen = {s.block for s in order if s.frozen}
    for i in range(1, count + 1):
        b = (head.block + i) % count
        if b != head.block and b not in frozen:
            return b
    return -1


def _walk(image: bytes, bs: int, s: Sector, is_head: bool, problems: list) -> None:
    base = s.block * bs
    off, seq = HEADER, s.base_seq
    while off + FRAME_OVERHEAD <= bs:
        n, fseq = struct.unpack_from("<HI", image, base + off)
        if n == ERASED or off + FRAME_OVERHEAD + n > bs or fseq != seq:
            break
        frame = image[base + off:base + off + 6 + n]
        crc = struct.unpack_from("<I", image, base + off + 6 + n)[0]
        if zlib.crc32(frame, s.header_crc) != crc:
            break
        s.records.append((seq, base + off, bytes(frame[6:])))
        off += n + FRAME_OVERHEAD
        seq = (seq + 1) & U32
    if image[base + off:base + bs].count(0xFF) != bs - off:
        problems.append(Problem(TORN if is_head or s.torn_mark else BAD_RECORD, base + off, seq))


# ---------------------------------------------------------------- records ("Records")

_COUNTS = {1: (11, 11), 2: (7, 9), 3: (6, 8), 4: (5, 5), 5: (8, 9), 6: (3, 3), 7: (3, 3)}


def _check_subset(v) -> None:
    if type(v) is int:
        if not -(1 << 64) <= v < (1 << 64):
            raise RefError("integer beyond 64 bits")
    elif isinstance(v, list):
        for x in v:
            _check_subset(x)
    elif isinstance(v, dict):
        keys = list(v)
        if any(type(k) is not int or k < 0 for k in keys) or keys != sorted(keys):
            raise RefError("map keys must be ascending non-negative integers")
        for x in v.values():
            _check_subset(x)
    elif not (v is None or type(v) in (bool, bytes, str)):
        raise RefError(f"not in the deterministic subset: {type(v).__name__}")


def cbor_value(payload: bytes):
    """One CBOR item of the deterministic subset (one encoding per value), else RefError."""
    try:
        v = cbor2.loads(payload)
    except Exception as err:  # noqa: BLE001 - any decode failure is a refusal
        raise RefError(f"not valid CBOR: {err}") from None
    _check_subset(v)
    if cbor2.dumps(v) != bytes(payload):
        raise RefError("not the one deterministic encoding")
    return v


def record(payload: bytes) -> list:
    rec = cbor_value(payload)
    if not isinstance(rec, list) or not rec or type(rec[0]) is not int:
        raise RefError("not an array starting with its kind")
    size = _COUNTS.get(rec[0])
    if size is None or not size[0] <= len(rec) <= size[1]:
        raise RefError("unknown kind or wrong field count")
    return rec


@dataclass
class Env:
    """What a reader needs of an envelope blob ("The envelope blob")."""

    modes: list
    ch_names: list
    ch_res: list
    in_names: list
    in_number: list
    in_res: list
    rules: list

    @classmethod
    def from_blob(cls, blob: bytes) -> Env:
        a = cbor_value(blob)
        if not (isinstance(a, list) and len(a) == 11 and a[0] == "edgegov-envelope" and a[1] == 1):
            raise RefError("not a version 1 envelope blob")
        return cls(a[3], [c[0] for c in a[5]], [c[2] for c in a[5]], [i[0] for i in a[6]],
                   [i[1] == 1 for i in a[6]], [i[6] for i in a[6]], a[10])


def envelopes(records) -> dict[bytes, Env]:
    found = {}
    for _, payload in records:
        try:
            rec = record(payload)
        except RefError:
            continue
        if rec[0] == 6 and rec[1] not in found:
            if hashlib.sha256(rec[2]).digest() != rec[1]:
                raise RefError("an ENVELOPE blob does not hash to its digest")
            found[rec[1]] = Env.from_blob(rec[2])
    return found


# ---------------------------------------------------------------- decoded form

def _eng(res: str, v):
    if type(v) is not int:
        return _plain(v)
    x = v * Decimal(res)
    return int(x) if x == x.to_integral_value() else float(x)


def _plain(v):
    if isinstance(v, float):
        if v != v:
            return "NaN"
        return ("Infinity" if v > 0 else "-Infinity") if v in (float("inf"), float("-inf")) else v
    if isinstance(v, bytes):
        return v.hex()
    if v is None or type(v) in (str, int, bool):
        return v
    return repr(v)


class Decoder:
    """Carries the context of "Context: time, command seq and expected output"."""

    def __init__(self, envs: dict, words: Words):
        self.envs = envs
        self.w = words
        self.env = None
        self.T = 0
        self.S = 0
        self.O = None
        self.placed = False

    # values and inputs
    def value(self, v):
        if isinstance(v, list):
            code = v[0] if v and type(v[0]) is int else None
            standin = self.w.markers.get(code)
            if standin is TEXT_MARKER and len(v) == 2:
                if type(v[1]) is not bytes:
                    raise RefError("bad text marker")
                try:
                    return v[1].decode("utf-8", "surrogatepass")
                except UnicodeError:
                    return self.w.other
            if len(v) != 1 or code is None or standin is None or standin is TEXT_MARKER:
                raise RefError("bad marker")
            return standin
        return v

    def values(self, fld, names):
        if fld is None:
            return None
        if not isinstance(fld, list):
            raise RefError("values must be an array or null")
        if fld and not isinstance(fld[0], list):
            if len(fld) != len(names) or any(type(x) not in (int, bool) for x in fld):
                raise RefError("bad vector")
            return dict(zip(names, fld, strict=True))
        out = {}
        for pair in fld:
            if not isinstance(pair, list) or len(pair) != 2:
                raise RefError("bad pair")
            k, v = pair
            if type(k) is int:
                if not 0 <= k < len(names):
                    raise RefError("index out of range")
                k = names[k]
            elif isinstance(k, list):  # an unknown name that is not valid Unicode
                k = self.value(k)
                if type(k) is not str:
                    raise RefError("bad key")
            elif type(k) is not str:
                raise RefError("bad key")
            out[k] = self.value(v)
        return out

    def row(self, seq: int, payload: bytes) -> dict:
        rec = record(payload)
        kind = rec[0]
        out = {"kind": self.w.kinds[kind]}
        if kind in (1, 5):
            env = self.envs.get(rec[5] if kind == 1 else rec[7])
            if env is None:
                raise RefError("envelope not in the dump")
            self.env, self.T, self.placed = env, rec[1], True
            if kind == 1:
                self.S, self.O = 0, list(rec[8])
                out.update(t_ms=rec[1], boot_count=rec[2], reset_reason=rec[3],
                           firmware=rec[4], envelope=rec[5].hex(), device=rec[6],
                           op_counter=rec[7], outputs=self.by_name(rec[8]), wall_ms=rec[9])
            else:
                st = rec[6]
                self.S, self.O = rec[5], list(st[8])
                out.update(t_ms=rec[1], head=rec[3].hex(), keyed=rec[4] is not None,
                           state=self.w.states.get(st[1], f"state{st[1]}"),
                           mode=env.modes[st[5]] if 0 <= st[5] < len(env.modes) else st[5],
                           trip_causes=[n for b, n in sorted(self.w.causes.items()) if st[2] & b],
                           outputs=self.by_name(st[8]))
                if len(rec) > 8:
                    out["wall_ms"] = rec[8]
            return out
        if kind == 4:
            self.T = rec[1]
            if rec[4] != 2:
                self.placed = False
            out.update(t_ms=rec[1], first_lost=rec[2], count=rec[3],
                       cause=self.w.gap_causes.get(rec[4], rec[4]))
            return out
        if kind == 6:
            out.update(envelope=rec[1].hex(), bytes=len(rec[2]))
            return out
        if kind == 7:
            out.update(t_ms=rec[1], wall_ms=rec[2])
            return out
        if not self.placed:
            out.update(unplaced=True, raw=repr(rec))
            return out
        out.update(self.call(kind, rec))
        return out

    def call(self, kind: int, rec: list) -> dict:
        env, w = self.env, self.w
        self.T += rec[1]
        out = {"t_ms": self.T}
        if kind == 2:
            if type(rec[2]) is int:
                self.S += rec[2]
                cmd_seq = self.S
            else:
                cmd_seq = self.value(rec[2])
            proposed = self.values(rec[3], env.ch_names)
            out["cmd_seq"] = _plain(cmd_seq)
            out["proposed"] = None if proposed is None else {
                str(k): _eng(env.ch_res[env.ch_names.index(k)], v) if k in env.ch_names
                else _plain(v) for k, v in proposed.items()}
            tail = rec[4:]
        else:
            out["input"] = self.input(rec[2])
            tail = rec[3:]
            proposed = None
        verdict, reason = tail[0] // 64, tail[0] % 64
        output = list(self.O)
        if kind == 2 and verdict <= 1 and proposed is not None:
            for i, name in enumerate(env.ch_names):
                if type(proposed.get(name)) is int:
                    output[i] = proposed[name]
        for pair in tail[3] if len(tail) > 3 else []:
            if not 0 <= pair[0] < len(output):
                raise RefError("output index out of range")
            output[pair[0]] = pair[1]
        self.O = output
        rule = tail[1]
        out.update(verdict=w.verdicts.get(verdict, f"verdict{verdict}"),
                   reason=w.reasons.get(reason, f"reason{reason}"),
                   rule=env.rules[rule] if 0 <= rule < len(env.rules) else None,
                   margin=tail[2], output=self.by_name(output),
                   events=[self.event(c, a) for c, a in (tail[4] if len(tail) > 4 else [])])
        return out

    def event(self, code: int, arg: int) -> dict:
        doc = {"event": self.w.events.get(code, f"event{code}"), "arg": arg}
        name = doc["event"]
        if code in self.w.event_fault and arg >= 0:
            doc["fault"] = self.w.faults.get(arg, f"fault{arg}")
        elif name.endswith("_refused"):
            doc["reason"] = self.w.reasons.get(arg, f"reason{arg}")
        elif name == "blocking_causes":
            doc["causes"] = [self.w.causes[bit] for bit in sorted(self.w.causes) if arg & bit]
        elif name == "counter_behind":
            doc["behind"] = arg
        return doc

    def input(self, fld) -> dict:
        env = self.env
        if fld == 3 and type(fld) is int:
            return {"type": "tick"}
        if not isinstance(fld, list) or not fld:
            raise RefError("bad event input")
        if fld[0] == 2:
            vals = self.values(fld[1], env.in_names) or {}
            shown = {}
            for k, v in vals.items():
                i = env.in_names.index(k) if k in env.in_names else -1
                shown[str(k)] = _eng(env.in_res[i], v) if i >= 0 and env.in_number[i] else _plain(v)
            return {"type": "telemetry", "values": shown}
        if fld[0] == 4:
            action = self.value(fld[1])
            return {"type": "operator",
                    "action": self.w.ops.get(action, f"op{action}") if type(action) is int
                    else _plain(action),
                    "arg": _plain(self.value(fld[2])), "counter": _plain(self.value(fld[3])),
                    "authentic": fld[5] is True}
        if fld[0] == 5:
            return {"type": "fault", "code": _plain(self.value(fld[1])), "active": fld[2] is True}
        if fld[0] == 6 and len(fld) == 2:
            return {"type": "session", "session": _plain(self.value(fld[1]))}
        raise RefError("unknown event input")

    def by_name(self, values) -> dict:
        env = self.env
        return {env.ch_names[i]: _eng(env.ch_res[i], v) for i, v in enumerate(values)}


def decode(ring: Ring, words: Words | None = None) -> list[dict]:
    """The decoded form of every record, in ring order."""
    dec = Decoder(envelopes(ring.records), words or Words())
    boots = boot_numbers(ring.records)
    wall = wall_anchors(ring.records, boots)
    rows, prev = [], None
    for (seq, payload), boot in zip(ring.records, boots, strict=True):
        if prev is not None and seq != (prev + 1) & U32:
            dec.placed = False
        prev = seq
        base = {"seq": seq, "offset": ring.offsets[seq]}
        try:
            row = {**base, **dec.row(seq, payload)}
        except (RefError, IndexError, KeyError, TypeError) as err:
            rows.append({**base, "kind": "error", "error": str(err), "bytes": payload.hex()})
            dec.placed = False
            continue
        if type(row.get("t_ms")) is int and wall.get(boot):
            row["wall"] = format_wall(wall_at(wall[boot], row["t_ms"]))
        rows.append(row)
    return rows


# ---------------------------------------------------------------- wall time ("Wall time")

def _kind(payload: bytes) -> int:
    try:
        return record(payload)[0]
    except RefError:
        return -1


def boot_numbers(records) -> list[int]:
    """The boot each record belongs to (step 1)."""
    out, n, seen = [], 0, False
    for _, payload in records:
        kind = _kind(payload)
        if kind == 1:
            n += 1 if seen else 0
            seen = True
        elif kind in (5, 7):
            seen = True
        out.append(n)
    return out


def wall_anchors(records, boots) -> dict[int, list]:
    """Boot → its sorted (t, wall_ms) anchors (step 2)."""
    found: dict[int, list] = {}
    for (_, payload), boot in zip(records, boots, strict=True):
        if _kind(payload) not in (1, 5, 7):
            continue
        rec = record(payload)
        wall = rec[9] if rec[0] == 1 else rec[8] if rec[0] == 5 and len(rec) > 8 else \
            rec[2] if rec[0] == 7 else None
        if type(wall) is int and type(rec[1]) is int:
            found.setdefault(boot, []).append((rec[1], wall))
    return {b: sorted(a) for b, a in found.items()}


def wall_at(anchors: list, t_ms: int) -> int:
    """Step 3."""
    before = [a for a in anchors if a[0] <= t_ms]
    t, wall = before[-1] if before else anchors[0]
    return wall + (t_ms - t)


def format_wall(wall_ms: int) -> str:
    secs, ms = divmod(wall_ms, 1000)
    when = datetime.datetime.fromtimestamp(secs, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


# ---------------------------------------------------------------- hash chain and MACs

def mac_of(key: bytes, head: bytes) -> bytes:
    return hmac.new(key, CKPT_DOMAIN + head, hashlib.sha256).digest()


@dataclass
class Verified:
    checkpoints: int = 0
    heads_checked: int = 0
    macs_checked: int = 0
    bad: list = field(default_factory=list)  # (seq, why): fatal findings, in order
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad


def verify(records, problems=(), key: bytes | None = None) -> Verified:
    """The verifier steps of "Hash chain and checkpoint MACs", plus the ring's problems."""
    rep = Verified()
    for p in problems:
        if p.code in (BAD_RECORD, BAD_HEADER):
            rep.bad.append((p.seq, f"ring problem {p.code} at offset {p.offset}"))
    h = opened = prev = None
    for seq, payload in records:
        if prev is not None and seq != (prev + 1) & U32:
            h = opened = None
            rep.notes.append(f"hole before seq {seq}")
        prev = seq
        if h is None and seq == 0:
            h, opened = hashlib.sha256(Z), Z
        if len(payload) > 1 and payload[1] == 5:
            try:
                rec = record(payload)
            except RefError as err:
                rep.bad.append((seq, f"checkpoint does not decode: {err}"))
                h = opened = None
                continue
            rep.checkpoints += 1
            if h is not None:
                rep.heads_checked += 1
                if rec[2] != opened:
                    rep.bad.append((seq, "prev_head does not match"))
                elif h.digest() != rec[3]:
                    rep.bad.append((seq, "head does not match the records"))
            if key is not None:
                rep.macs_checked += 1
                if rec[4] is None or not hmac.compare_digest(mac_of(key, rec[3]), rec[4]):
                    rep.bad.append((seq, "MAC does not match the key"))
            h, opened = hashlib.sha256(rec[3]), rec[3]
        if h is not None:
            h.update(struct.pack("<I", seq) + payload)
    return rep


def op_mac(key: bytes, device_id: str, action: int, arg: int, counter: int) -> bytes:
    msg = (b"edgegov-op\x00" + device_id.encode("utf-8") + b"\x00"
           + struct.pack(">BqQ", action, arg, counter))
    return hmac.new(key, msg, hashlib.sha256).digest()


def operator_checks(records, key: bytes) -> list[tuple[int, bool, bool]]:
    """(seq, recorded ``authentic``, recomputed) for every operator input after a BOOT or
    CHECKPOINT (which name the device through their envelope)."""
    envs, device, found = {}, None, []
    for _, payload in records:
        rec = record(payload)
        if rec[0] == 6:
            envs[rec[1]] = cbor_value(rec[2])[2]
    for seq, payload in records:
        rec = record(payload)
        if rec[0] in (1, 5):
            device = envs.get(rec[5] if rec[0] == 1 else rec[7])
        if rec[0] != 3 or not isinstance(rec[2], list) or rec[2][0] != 4 or device is None:
            continue
        _, action, arg, counter, mac, authentic = rec[2]
        ok = (type(action) is int and 0 < action < 256 and type(arg) is int
              and -(1 << 63) <= arg < (1 << 63) and type(counter) is int
              and 0 <= counter < (1 << 64) and type(mac) is bytes and len(mac) == 32
              and hmac.compare_digest(op_mac(key, device, action, arg, counter), mac))
        found.append((seq, authentic, ok))
    return found


def attestation_mac(key: bytes, device: str, head_seq: int, chain_head: bytes,
                    counter: int) -> bytes:
    dev = device.encode("utf-8")
    msg = (b"edgegov-att\x00" + struct.pack("<H", len(dev)) + dev + struct.pack("<I", head_seq)
           + chain_head + struct.pack("<Q", counter))
    return hmac.new(key, msg, hashlib.sha256).digest()


def check_attestation(ring: Ring, att: dict, key: bytes | None) -> tuple[bool, str]:
    """"Head attestation": does the dump hold the attested sealing checkpoint, unchanged,
    with an intact chain up to it (and, with the key, is the attestation the device's)?"""
    seq, head = att["head_seq"], bytes.fromhex(att["chain_head"])
    if key is not None:
        want = attestation_mac(key, att["device"], seq, head, att["counter"])
        if att["mac"] is None or not hmac.compare_digest(want, bytes.fromhex(att["mac"])):
            return False, "attestation MAC"
    index = next((i for i, (s, _) in enumerate(ring.records) if s == seq), None)
    if index is None:
        return False, "attested head not in the dump"
    payload = ring.records[index][1]
    rec = record(payload)
    if rec[0] != 5 or hashlib.sha256(rec[3] + struct.pack("<I", seq) + payload).digest() != head:
        return False, "not the attested sealing checkpoint"
    boots = [record(p) for _, p in ring.records[:index] if _kind(p) == 1]
    if boots and boots[-1][6] != att["device"]:
        return False, "another device"
    before = [p for p in ring.problems if p.seq == -1 or (p.seq - seq) & U32 >= 0x80000000]
    rep = verify(ring.records[:index + 1], before, key)
    if not rep.ok:
        return False, f"chain before the head: {rep.bad[0]}"
    return True, f"{len(ring.records) - index - 1} records after the seal not attested"


def read_key(path) -> bytes:
    """A key file ("Device key"): hex text (decoded) or else the raw bytes, ≥ 16 bytes."""
    raw = Path(path).read_bytes()
    try:
        key = bytes.fromhex(raw.strip().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) < 16:
        raise RefError("key shorter than 16 bytes")
    return key


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    try:
        ring = read_ring(Path(argv[0]).read_bytes())
        key = read_key(argv[argv.index("--key") + 1]) if "--key" in argv else None
    except (OSError, IndexError, RefError) as err:
        print(f"{argv[0]}: cannot read: {err}", file=sys.stderr)
        return 2
    for row in decode(ring):
        print(json.dumps(row, separators=(",", ":")))
    rep = verify(ring.records, ring.problems, key)
    verdict = "verify OK" if rep.ok else f"verify FAILED {rep.bad[0]!r}"
    print(f"{verdict} ({rep.checkpoints} checkpoints, {rep.heads_checked} heads, "
          f"{rep.macs_checked} MACs checked)", file=sys.stderr)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
