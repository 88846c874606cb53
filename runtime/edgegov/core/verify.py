"""Verify a lineage: every frame's CRC (the ring scan) and the hash chain of checkpoints.

The chain: the writer starts from ``SHA-256(32 zero bytes)``, feeds it ``u32 seq || payload``
for every record, and each CHECKPOINT closes the segment: it stores the previous head and
``head = digest``, plus ``HMAC(device key, head)`` when keyed; the next segment starts from
``SHA-256(head)`` and its first record is the checkpoint itself (so its state is covered).
So a record changed (even with its CRC recomputed), removed or reordered
breaks its segment's head; a segment removed breaks the link to the next checkpoint; with
the key, a rewritten chain fails the MACs. Records after the last checkpoint are covered by
their CRCs only and are reported as such.
"""

import hashlib
import struct

from .lineage import ZERO_HEAD, checkpoint_mac
from .record import GAP_OVERWRITTEN, K_CHECKPOINT, K_GAP, RecordError, decode
from .ring import HEADER_SIZE, P_GAP, P_TORN

_FRAME_OVERHEAD = 10  # u16 length + u32 seq + u32 CRC around each payload


class Finding:
    """One problem: what, at which record sequence number and byte offset (-1 unknown)."""

    def __init__(self, message, seq=-1, offset=-1, fatal=True):
        self.message = message
        self.seq = seq
        self.offset = offset
        self.fatal = fatal

    def __str__(self):
        where = []
        if self.seq >= 0:
            where.append("seq %d" % self.seq)
        if self.offset >= 0:
            where.append("offset %d" % self.offset)
        return "%s (%s)" % (self.message, ", ".join(where)) if where else self.message


class VerifyReport:
    def __init__(self):
        self.records = 0
        self.checkpoints = 0
        self.keyed_checkpoints = 0
        self.uncovered_head = 0  # records the chain can't reach (before an anchor, after a hole)
        self.uncovered_tail = 0  # records after the last checkpoint (CRC only)
        self.findings = []

    @property
    def ok(self):
        for f in self.findings:
            if f.fatal:
                return False
        return True

    @property
    def first_bad(self):
        for f in self.findings:
            if f.fatal:
                return f
        return None


def record_offsets(sectors, records, block_size):
    """Byte offset of each record's frame in the image, by sequence number."""
    offsets = {}
    by_seq = {}
    for seq, payload in records:
        by_seq[seq] = len(payload)
    for block, _eseq, first, end, _frozen in sectors:
        off = HEADER_SIZE
        seq = first
        while seq != end and seq in by_seq:
            offsets[seq] = block * block_size + off
            off += by_seq[seq] + _FRAME_OVERHEAD
            seq = (seq + 1) & 0xFFFFFFFF
    return offsets


def verify(records, scan_problems=(), key=None, offsets=None, genesis_seq=0, envelopes=None):
    """Check ``records`` (``(seq, payload)`` in ring order) and the ring scan's problems.

    ``genesis_seq`` is the sequence number of a ring's very first record: when it is still
    present the chain is checked from the start, else from the first checkpoint.

    Every record must decode (a payload that is not a record is named at once, CRC or not).
    When a segment's chain breaks, ``envelopes`` (digest → Envelope, as ``replay`` takes
    them) let verify name the first record of that segment that a replay cannot re-derive
    from the records before it (from the previous segment's start, so an edited checkpoint
    state is named too); without them the checkpoint that closes the segment is named.
    Findings come in ring order: ``first_bad`` is the first record proved bad.
    """
    rep = VerifyReport()
    offsets = offsets or {}
    for p in scan_problems:
        if p.code == P_GAP:
            continue  # holes are judged below, against the device's own GAP records
        torn = p.code == P_TORN
        msg = "torn tail (an unfinished write, ignored)" if torn else str(p.args[0])
        rep.findings.append(Finding(msg, p.seq, p.offset, fatal=not torn))
    rep.records = len(records)
    findings = rep.findings
    ranges = []  # (first, count) of every range the device recorded as overwritten
    holes = []  # (finding, prev, seq): worded once every GAP record is known
    h = None
    head = None
    covered = 0
    uncovered = 0
    prev = None
    opening = -1  # index of the record that opened the current segment (-1: unanchored)
    openings = []  # (opening index, closing checkpoint index) of every segment checked
    broken = []  # the same, for segments whose chain is broken
    for i, (seq, payload) in enumerate(records):
        if prev is not None and seq != (prev + 1) & 0xFFFFFFFF:
            hole = Finding("", seq, offsets.get(seq, -1), fatal=False)
            findings.append(hole)
            holes.append((hole, prev, seq))
            h = None  # the chain resumes at the next checkpoint
            head = None
            opening = -1
        prev = seq
        if h is None and seq == genesis_seq:
            head = ZERO_HEAD
            h = hashlib.sha256(ZERO_HEAD)
            opening = i
        kind = payload[1] if len(payload) > 1 else -1
        if kind == K_CHECKPOINT:
            n_bad = _fatal_count(rep)
            checked = h is not None
            h, head = _checkpoint(rep, seq, payload, h, head, key, offsets)
            if checked and opening >= 0:
                openings.append((opening, i))
                if _fatal_count(rep) > n_bad:
                    broken.append((opening, i))
            opening = i if h is not None else -1
            covered = 0
            if h is not None:  # the checkpoint itself (its state) opens the next segment
                h.update(struct.pack("<I", seq))
                h.update(payload)
            continue
        # A record that is not a valid record of the format is bad, whatever its CRC says.
        try:
            rec = decode(payload)
        except RecordError as e:
            findings.append(Finding("record does not decode (%s): its payload was changed"
                                    % e, seq, offsets.get(seq, -1)))
        else:
            if kind == K_GAP and rec[4] == GAP_OVERWRITTEN and rec[2] >= 0:
                ranges.append((rec[2], rec[3]))
        if h is None:
            uncovered += 1
            continue
        h.update(struct.pack("<I", seq))  # chain_update, inline: once per record
        h.update(payload)
        covered += 1
    rep.uncovered_head = uncovered
    for hole, before, seq in holes:
        hole.message = _hole_message(before, seq, ranges)
    rep.uncovered_tail = covered
    if broken and envelopes:
        _pinpoint(rep, records, openings, broken, envelopes, offsets)
    _in_ring_order(rep, records)
    return rep


def _fatal_count(rep):
    return sum(1 for f in rep.findings if f.fatal)


def _pinpoint(rep, records, openings, broken, envelopes, offsets):
    """Name the first record of each broken segment that replay cannot re-derive."""
    from .replay import Replayer, ReplayError

    named = set(f.seq for f in rep.findings if f.fatal)
    previous = {}
    for k, (start, end) in enumerate(openings):
        previous[end] = openings[k - 1][0] if k and openings[k - 1][1] == start else start
    for start, end in broken:
        window = records[previous.get(end, start) : end + 1]
        inside = set(seq for seq, _ in records[start : end + 1])
        try:
            report = Replayer(envelopes).run(window)
        except ReplayError:
            continue  # e.g. an envelope the dump does not hold: the checkpoint is named
        for d in report.divergences:
            if d.seq in inside:
                if d.seq not in named:
                    rep.findings.append(Finding(_why(d), d.seq, offsets.get(d.seq, -1)))
                break


def _why(d):
    if d.note == "governor state differs":
        return ("checkpoint state does not follow from the records before it: the "
                "checkpoint was changed")
    if d.note.startswith("undecodable"):
        return d.note
    a, b = d.recorded, d.replayed
    what = "its outcome"
    if a is not None and b is not None and hasattr(a, "verdict") and hasattr(b, "verdict"):
        for field in ("verdict", "reason", "rule", "output", "events"):
            if getattr(a, field) != getattr(b, field):
                what = "its " + field
                break
    return ("record does not follow from the records before it (%s differs from the "
            "re-derived one): it was changed, or records before it in its segment were "
            "removed or reordered" % what)


def _in_ring_order(rep, records):
    """Sort findings by ring position (serial order from the first record's seq)."""
    if not records:
        return
    first = records[0][0]
    rep.findings.sort(key=lambda f: -1 if f.seq < 0 else (f.seq - first) & 0xFFFFFFFF)


def _hole_message(prev, seq, explained):
    """Records prev+1 .. seq-1 are missing: fine if the device said it overwrote them."""
    first = (prev + 1) & 0xFFFFFFFF
    last = (seq - 1) & 0xFFFFFFFF
    if _covered(first, (seq - first) & 0xFFFFFFFF, explained):
        return ("records %d..%d overwritten by wrap-around (recorded by the device); the "
                "chain resumes at the next checkpoint" % (first, last))
    # Wrap-around around frozen sectors leaves such holes, and in a small ring the GAP
    # record that told of them may itself be overwritten: say so, without failing.
    return ("records %d..%d absent at a sector boundary: overwritten by wrap-around (no "
            "surviving GAP record tells) or removed; the chain resumes at the next checkpoint"
            % (first, last))


def _covered(first, missing, ranges):
    """Do the (start, count) ranges cover first .. first+missing-1 (32-bit serial)?"""
    spans = []
    for start, count in ranges:
        rel = (start - first) & 0xFFFFFFFF
        back = (first - start) & 0xFFFFFFFF
        if rel < missing:
            spans.append((rel, min(missing, rel + count)))
        elif back < count:
            spans.append((0, min(missing, count - back)))
    spans.sort()
    reach = 0
    for lo, hi in spans:
        if lo > reach:
            return False
        reach = max(reach, hi)
    return reach >= missing


def _checkpoint(rep, seq, payload, h, head, key, offsets):
    off = offsets.get(seq, -1)
    try:
        rec = decode(payload)
    except RecordError as e:
        rep.findings.append(Finding("checkpoint does not decode: %s" % e, seq, off))
        return None, None
    prev_head, this_head, mac = rec[2], rec[3], rec[4]
    if not (_digest(prev_head) and _digest(this_head) and (mac is None or _digest(mac))):
        rep.findings.append(Finding("checkpoint fields have the wrong types", seq, off))
        return None, None
    rep.checkpoints += 1
    if h is not None:
        if prev_head != head:
            rep.findings.append(Finding("hash chain broken: checkpoint does not follow the "
                                        "previous one (records or a segment removed)", seq, off))
        elif h.digest() != this_head:
            rep.findings.append(Finding("hash chain broken: records before this checkpoint "
                                        "were changed, removed or reordered", seq, off))
    if mac is not None:
        rep.keyed_checkpoints += 1
    if key is not None:
        if mac is None:
            rep.findings.append(Finding("checkpoint carries no MAC but a key was given", seq, off))
        elif checkpoint_mac(key, this_head) != bytes(mac):
            rep.findings.append(Finding("checkpoint MAC does not match the device key", seq, off))
    return hashlib.sha256(this_head), this_head


def _digest(v):
    return isinstance(v, bytes) and len(v) == 32


__all__ = ["verify", "VerifyReport", "Finding", "record_offsets"]
