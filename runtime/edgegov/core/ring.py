"""A power-safe ring log of opaque records over the block-device port (``blockdev``).

Bytes in, bytes out: the ring stores payloads (the lineage layer's CBOR records) so that
whatever survives a power cut is either a record exactly as appended or absent.
``docs/lineage-format.md`` ("Storage: sectors and record framing") specifies every byte;
the constants below are that spec.

Sector (one block)::

    0  magic "EGRL" | 4 version=1 | 5 header size=28 | 6 u16 0 | 8 u32 erase_seq
    12 u32 base_seq | 16 u32 block_size | 20 u32 CRC32(bytes 0..19)
    24 freeze flag (0xFF clear, else frozen) | 25 torn mark (0xFF clear, else set)
    26..27 reserved (0xFF)
    28 record frames, back to back, then erased space

Record frame (little-endian)::

    u16 payload length | u32 seq | payload | u32 CRC32(header[0:20] + frame[0:6+n])

Commit rule: the CRC is programmed last, in its own ``prog``; seeding it with the sector
header makes a frame left over from an earlier lap of the block fail its check.

Use::

    ring = RingLog(bd)
    found = ring.recover()        # or ring.format() on a new device
    seq = ring.append(payload)    # allocation-free in steady state under MicroPython
    ring.sync()                   # once per control period: the commit point

MicroPython note: on 32-bit ports, ints of 2**30 and above are heap objects, so sequence
numbers past 2**30 and CRC values (three in four) cost an allocation per append there; the
64-bit unix port (where the zero-allocation test runs) keeps them all small.
"""

import binascii
import struct

from .blockdev import BlockDeviceError, RamBlockDevice, erased_buffer
from .compat import const

MAGIC = b"EGRL"
VERSION = const(1)
HEADER_SIZE = const(28)  # sector header; record frames start here
FREEZE_OFFSET = const(24)  # the freeze flag byte, outside the header CRC
TORN_OFFSET = const(25)  # the "torn tail left behind" mark, outside the header CRC
FRAME_HEAD = const(6)  # u16 length + u32 seq
FRAME_CRC = const(4)
ERASED_LEN = const(0xFFFF)  # a length field still erased: no frame here
MAX_PAYLOAD = const(0xFFFE)
U32_MAX = 0xFFFFFFFF
HALF = 0x80000000  # serial-number arithmetic: a is newer than b iff 0 < a - b < HALF

# Problem codes carried by ``LineageError.code`` in ``Recovery.problems``.
P_TORN = const(1)  # a write that never committed: a sector's torn tail or torn header
P_BAD_RECORD = const(2)  # a frame failing its CRC with valid frames after it: corruption
P_GAP = const(3)  # sequence jumps between consecutive sectors (overwritten/dropped/erased)
P_BAD_HEADER = const(4)  # a block that is neither erased nor a valid sector header

# Per-block state bits held in RAM (rebuilt by recover()).
_F_VALID = const(1)
_F_FROZEN = const(2)
_F_BAD = const(4)  # erase/prog failed this boot: do not write here
_F_TORN = const(8)  # frames end in non-erased bytes: never program the rest
_F_MARKED = const(16)  # its torn-tail mark is set: the writer left it after a crash

_SCRATCH = const(64)
_FLAG_SET = b"\x00"  # a flag byte programmed from 0xFF


class LineageError(Exception):
    """A lineage storage error or problem. ``offset`` (byte offset in the device image) and
    ``seq`` are -1 where unknown; ``code`` is one of the ``P_*`` codes for a problem found
    by a scan, 0 for a refused call."""

    def __init__(self, msg, offset=-1, seq=-1, code=0):
        super().__init__(msg)
        self.msg = msg
        self.offset = offset
        self.seq = seq
        self.code = code

    def __str__(self):
        return "%s (offset %d, seq %d)" % (self.msg, self.offset, self.seq)


class Recovery:
    """What ``recover()`` (or ``scan_image``) found.

    ``first_seq``/``next_seq``: oldest stored and next to be written sequence numbers;
    ``count``: records readable; ``torn_tail``: the newest sector ends in a record that
    never committed (absent; the writer starts a fresh sector); ``sectors``/``frozen``:
    valid and frozen sectors; ``problems``: ``LineageError`` values, in block order;
    ``records``: ``[(seq, payload)]`` from ``scan_image`` (None from ``recover``).
    """

    def __init__(self):
        self.first_seq = 0
        self.next_seq = 0
        self.count = 0
        self.torn_tail = False
        self.sectors = 0
        self.frozen = 0
        self.problems = []
        self.records = None

    def __repr__(self):
        return "Recovery(first_seq=%d, next_seq=%d, count=%d, torn_tail=%r, problems=%d)" % (
            self.first_seq,
            self.next_seq,
            self.count,
            self.torn_tail,
            len(self.problems),
        )


def seq_newer(a, b):
    """True if u32 sequence number ``a`` comes after ``b`` (serial-number arithmetic)."""
    d = (a - b) & U32_MAX
    return 0 < d < HALF


def _inc(x):
    # u32 increment without a mask: no mpz temporaries on 32-bit ports.
    x += 1
    if x > U32_MAX:
        return 0
    return x


class RingLog:
    """The ring of sectors over ``bd`` (see ``blockdev`` for the port contract).

    Call ``recover()`` (existing device) or ``format()`` (new one) before ``append``.
    Attributes: ``dropped`` counts records refused because every other sector is frozen;
    ``pop_overwritten()`` reports sequence ranges lost to wrap-around.
    """

    # Bytes after the payload that commit a frame; the weak-format test variant sets 0.
    TRAILER = FRAME_CRC

    def __init__(self, bd):
        self._bd = bd
        self._bsize = bd.block_size
        self._bcount = bd.block_count
        self._overhead = FRAME_HEAD + self.TRAILER
        # A device that writes several buffers in one call (the gateway's file: one
        # pwritev) takes a whole frame at once; flash devices get head, payload and commit
        # marker as three progs, in that order.
        self._progv = getattr(bd, "progv", None) if self.TRAILER == FRAME_CRC else None
        if self._bcount < 2:
            raise LineageError("a ring needs at least 2 blocks")
        if self._bsize < HEADER_SIZE + self._overhead + 1:
            raise LineageError("block_size %d too small for a sector" % self._bsize)
        self.max_payload = min(self._bsize - HEADER_SIZE - self._overhead, MAX_PAYLOAD)
        self._alloc_buffers()
        self._reset_tables()
        self._ready = False
        self.dropped = 0

    def _alloc_buffers(self):
        # Everything append touches is allocated here, once.
        self._hw = bytearray(FREEZE_OFFSET)  # sector header as written (bytes 0..23)
        self._hw[0:4] = MAGIC
        self._hw20 = memoryview(self._hw)[0:20]
        self._fh = bytearray(FRAME_HEAD)  # frame head being written
        self._cb = bytearray(FRAME_CRC)  # commit CRC being written
        self._hr = bytearray(HEADER_SIZE)  # header being read
        self._rh = bytearray(FRAME_HEAD)  # frame head being read
        self._rc = bytearray(FRAME_CRC)
        self._scr = bytearray(_SCRATCH)
        self._scrmv = memoryview(self._scr)
        self._ffs = erased_buffer(_SCRATCH)

    def _reset_tables(self):
        n = self._bcount
        self._flags = bytearray(n)
        self._eseq = [0] * n  # erase sequence of each valid sector
        self._base = [0] * n  # seq of its first record
        self._end = [0] * n  # seq after its last record
        self._tail = [0] * n  # byte offset after its last valid frame
        self._seeds = [0] * n  # its header CRC (seed of its frame CRCs)
        self._block = -1
        self._off = self._bsize  # "full": the next append starts a sector
        self._seed = 0
        self._next_seq = 0
        self._next_eseq = 0
        self._ow_pending = False
        self._ow_first = 0
        self._ow_last = 0

    # ------------------------------------------------------------------ writing

    def format(self, first_seq=0, first_erase_seq=0):
        """Erase every block and start an empty ring whose first record is ``first_seq``.

        Power-safe in the sense that a cut leaves either the old ring (possibly with some
        blocks erased) or the new empty one: the new header is written after a sync.
        """
        self._reset_tables()
        self._next_seq = first_seq & U32_MAX
        self._next_eseq = first_erase_seq & U32_MAX
        for b in range(1, self._bcount):
            self._erase_or_retire(b)
        self._ready = True
        if not self._roll(False):
            raise LineageError("no usable block to format")
        self._bd.sync()

    def _erase_or_retire(self, b):
        try:
            self._bd.erase(b)
        except BlockDeviceError:  # remember the bad block for this boot
            self._flags[b] = _F_BAD

    def append(self, payload):
        """Store ``payload`` (bytes-like, up to ``max_payload`` bytes) as the next record.

        Returns its sequence number, or -1 if it was dropped because every other sector
        is frozen (counted in ``dropped``). Not durable until ``sync()``.
        """
        n = len(payload)
        if not self._ready:
            raise LineageError("call recover() or format() before append()")
        if n > self.max_payload:
            raise LineageError("payload of %d bytes too long" % n, -1, self._next_seq)
        tries = self._bcount
        while tries:
            if self._off + n + self._overhead > self._bsize and not self._roll(False):
                break
            try:
                return self._write_frame(payload, n)
            except BlockDeviceError:  # a bad block: retire it (its tail is torn) and roll
                self._flags[self._block] |= _F_BAD | _F_TORN
                self._off = self._bsize
            tries -= 1
        self.dropped += 1
        return -1

    def _write_frame(self, payload, n):
        b = self._block
        off = self._off
        seq = self._next_seq
        bd = self._bd
        fh = self._fh
        struct.pack_into("<HI", fh, 0, n, seq)
        crc = binascii.crc32(payload, binascii.crc32(fh, self._seed))
        if self._progv is not None:
            struct.pack_into("<I", self._cb, 0, crc)
            self._progv(b, off, (fh, payload, self._cb))
        else:
            bd.prog(b, off, fh)
            if n:
                bd.prog(b, off + FRAME_HEAD, payload)
            self._commit(b, off + FRAME_HEAD + n, crc)
        self._off = off + n + self._overhead
        self._next_seq = _inc(seq)
        self._end[b] = self._next_seq
        return seq

    def _commit(self, b, off, crc):
        # The commit marker: its own prog, after the frame head and payload.
        struct.pack_into("<I", self._cb, 0, crc)
        self._bd.prog(b, off, self._cb)

    def _roll(self, allow_frozen):
        """Start a sector in the next usable block after the current one."""
        n = self._bcount
        cur = self._block
        for i in range(1, n + 1):
            b = (cur + i) % n
            f = self._flags[b]
            if b == cur or f & _F_BAD or (f & _F_FROZEN and not allow_frozen):
                continue
            try:
                self._start_sector(b)
                return True
            except BlockDeviceError:
                self._flags[b] = _F_BAD
        return False

    def _start_sector(self, b):
        self._note_overwrite(b)
        self._leave(self._block)
        bd = self._bd
        self._flags[b] = 0
        bd.erase(b)
        # Barrier: the erase, and every record of the sector before, are durable before
        # anything of the new sector can be, so no mix of laps or hole survives a cut.
        bd.sync()
        hw = self._hw
        struct.pack_into(
            "<BBHIII", hw, 4, VERSION, HEADER_SIZE, 0, self._next_eseq, self._next_seq, self._bsize
        )
        seed = binascii.crc32(self._hw20)
        struct.pack_into("<I", hw, 20, seed)
        bd.prog(b, 0, hw)
        self._adopt(b, self._next_eseq, self._next_seq, seed)
        self._next_eseq = _inc(self._next_eseq)

    def _leave(self, cur):
        # Leaving a head whose tail was torn by a crash: mark it so, durably (the sync
        # after the next erase), so later scans tell a crash tail from damaged data.
        if cur < 0 or (self._flags[cur] & (_F_TORN | _F_MARKED)) != _F_TORN:
            return
        try:
            self._bd.prog(cur, TORN_OFFSET, _FLAG_SET)
            self._flags[cur] |= _F_MARKED
        except BlockDeviceError:
            pass  # then it reads as damaged data: a louder report, nothing lost

    def _adopt(self, b, eseq, base, seed):
        # Make block b the (empty) head sector in the RAM tables.
        self._flags[b] = _F_VALID
        self._eseq[b] = eseq
        self._base[b] = base
        self._end[b] = base
        self._tail[b] = HEADER_SIZE
        self._seeds[b] = seed
        self._block = b
        self._off = HEADER_SIZE
        self._seed = seed

    def _note_overwrite(self, b):
        if not self._flags[b] & _F_VALID or self._base[b] == self._end[b]:
            return
        if not self._ow_pending:
            self._ow_first = self._base[b]
            self._ow_pending = True
        self._ow_last = (self._end[b] - 1) & U32_MAX

    def pop_overwritten(self):
        """``(first_seq, last_seq)`` of records lost to wrap-around since the last call, or
        None. Call it after ``append`` to write a GAP record; ranges not popped merge."""
        if not self._ow_pending:
            return None
        self._ow_pending = False
        return (self._ow_first, self._ow_last)

    def sync(self):
        """Make every appended record durable (the port's ``sync``)."""
        self._bd.sync()

    # ------------------------------------------------------------------ freezing

    def freeze(self, seq_from, seq_to):
        """Protect the sectors holding records ``seq_from..seq_to`` (inclusive, wrap-safe)
        from wrap-around, durably. Call again with a wider range as records are appended.
        Returns how many sectors hold part of the range (all now frozen)."""
        span = (seq_to - seq_from) & U32_MAX
        held = 0
        for b in range(self._bcount):
            if self._holds(b, seq_from, span):
                held += 1
                self._freeze_block(b)
        self._bd.sync()
        return held

    def _freeze_block(self, b):
        if self._flags[b] & _F_FROZEN:
            return
        try:
            # NOR allows 0xFF -> 0x00 on a programmed block; a torn flag byte reads as
            # non-0xFF (frozen) or 0xFF (not yet), both consistent.
            self._bd.prog(b, FREEZE_OFFSET, _FLAG_SET)
        except BlockDeviceError:
            # Cannot mark it; as a bad block it is still never rolled into this boot.
            self._flags[b] |= _F_BAD
            return
        self._flags[b] |= _F_FROZEN

    def _holds(self, b, seq_from, span):
        if not self._flags[b] & _F_VALID:
            return False
        base = self._base[b]
        count = (self._end[b] - base) & U32_MAX
        if count == 0:
            return False
        return ((base - seq_from) & U32_MAX) <= span or ((seq_from - base) & U32_MAX) < count

    def unfreeze_all(self):
        """Release every frozen sector by erasing it (after its dump was pulled).

        If the head sector is frozen the writer first moves to a new sector, durably, so
        the sequence carries on across the erase. Returns the number of sectors erased.
        """
        head = self._block
        if head >= 0 and self._flags[head] & _F_FROZEN:
            if not self._roll(False):
                self._roll(True)
            self._bd.sync()
        erased = 0
        for b in range(self._bcount):
            if self._flags[b] & _F_FROZEN and b != self._block:
                self._flags[b] = 0
                self._erase_or_retire(b)
                erased += 1
        self._bd.sync()
        return erased

    # ------------------------------------------------------------------ recovery

    def recover(self, quick=False):
        """Scan every sector, rebuild the state and place the writer after the last
        committed record. Never writes; never fails on torn or corrupt data. Returns a
        ``Recovery`` report.

        ``quick`` (boot): walk only the head sector's frames, and the frames of a sector
        whose successor starts too far on to be its continuation; every other sector is
        taken to end where the next begins. The writer is placed exactly as by a full scan
        (only the head is ever appended to), but damage inside older sectors is found by
        reading (``records``) or a full scan (``scan_image``), not here, and ``count`` may
        then include records that later fail their check."""
        self._reset_tables()
        rep = Recovery()
        damaged = bytearray(self._bcount)
        for b in range(self._bcount):
            damaged[b] = self._load_header(b)
        order = self._ordered_blocks()
        # A cut while a sector was being started leaves a damaged header in exactly the
        # block the writer rolls into next: that is a torn write, not corruption.
        head = order[-1] if order else -1
        nxt = self._roll_target(head)
        follow = self._successors(order) if quick else None
        for b in range(self._bcount):
            if self._flags[b] & _F_VALID:
                if follow is not None and b != head and follow[b] >= 0:
                    self._end[b] = follow[b]
                    self._tail[b] = self._bsize
                else:
                    self._walk(b, rep, head)
            elif damaged[b]:
                rep.problems.append(self._header_problem(b, b == nxt))
        self._place_writer(order, rep)
        self._summarise(order, rep)
        self._ready = True
        return rep

    def _successors(self, order):
        """Per block: the base of the next sector in ring order when it can continue this
        one (at most a sector's worth of records on), else -1 (walk it)."""
        follow = [-1] * self._bcount
        most = (self._bsize - HEADER_SIZE) // self._overhead
        for i in range(len(order) - 1):
            b = order[i]
            span = (self._base[order[i + 1]] - self._base[b]) & U32_MAX
            if span <= most:
                follow[b] = self._base[order[i + 1]]
        return follow

    def _load_header(self, b):
        """Load block b's header into the tables; return 1 if it is neither valid nor
        erased (damaged), else 0."""
        h = self._hr
        self._bd.read(b, 0, h)
        magic, ver, hsize, _, eseq, base, bsize, crc = struct.unpack_from("<4sBBHIIII", h, 0)
        ok = magic == MAGIC and ver == VERSION and hsize == HEADER_SIZE
        if not (ok and bsize == self._bsize and binascii.crc32(memoryview(h)[0:20]) == crc):
            return 0 if h == self._ffs[0:HEADER_SIZE] else 1
        self._flags[b] = _F_VALID
        if h[FREEZE_OFFSET] != 0xFF:
            self._flags[b] |= _F_FROZEN
        if h[TORN_OFFSET] != 0xFF:
            self._flags[b] |= _F_MARKED
        self._eseq[b] = eseq
        self._base[b] = base
        self._seeds[b] = crc
        return 0

    def _roll_target(self, head):
        # The block _roll would start next (bad blocks are not known before writing).
        for i in range(1, self._bcount + 1):
            b = (head + i) % self._bcount
            if b != head and not self._flags[b] & _F_FROZEN:
                return b
        return -1

    def _header_problem(self, b, torn):
        if torn:
            return LineageError("torn sector header (never committed)", b * self._bsize, -1, P_TORN)
        return LineageError("not a sector header", b * self._bsize, -1, P_BAD_HEADER)

    def _walk(self, b, rep, head):
        # Accept the longest run of valid consecutive frames; stop at the first that is not.
        image = self._ram_image()
        if image is not None and type(image) is bytes:  # a dump being scanned (host)
            seq, off = self._walk_image(image, b)
        else:
            seq = self._base[b]
            seed = self._seeds[b]
            off = HEADER_SIZE
            n = self._frame_len(b, off, seq, seed)
            while n >= 0:
                off += n + self._overhead
                seq = _inc(seq)
                n = self._frame_len(b, off, seq, seed)
        self._end[b] = seq
        self._tail[b] = off
        if not self._erased_from(b, off):
            self._flags[b] |= _F_TORN
            rep.problems.append(self._tail_problem(b, off, seq, head))

    def _walk_image(self, image, b):
        """``_walk``'s frame loop over a dump's bytes: ``(seq, off)`` after the last valid
        frame of block ``b``. A host reader of dumps may replace it with a loop that also
        keeps the frames it accepts (the same frames: see ``_frame_len_in``)."""
        mv = memoryview(image)
        seq = self._base[b]
        seed = self._seeds[b]
        off = HEADER_SIZE
        n = self._frame_len_in(image, mv, b, off, seq, seed)
        while n >= 0:
            off += n + self._overhead
            seq = _inc(seq)
            n = self._frame_len_in(image, mv, b, off, seq, seed)
        return seq, off

    def _tail_problem(self, b, off, seq, head):
        # Only the head sector can end in a write cut short, or one that did (marked when
        # the writer left it). Anywhere else, bytes after the last valid frame are damage
        # to data that was durable.
        where = b * self._bsize + off
        if b == head or self._flags[b] & _F_MARKED:
            return LineageError("torn record (never committed)", where, seq, P_TORN)
        return LineageError("record fails its check", where, seq, P_BAD_RECORD)

    def _peek_len(self, b, off):
        if off + self._overhead > self._bsize:
            return -1
        self._bd.read(b, off, self._rh)
        n = self._rh[0] | (self._rh[1] << 8)
        return n if n <= self._bsize - off - self._overhead else -1

    def _frame_len(self, b, off, seq, seed):
        """Payload length of the valid frame ``seq`` at ``off`` in block ``b``, else -1."""
        n = self._peek_len(b, off)
        if n < 0 or n == ERASED_LEN:
            return -1
        if struct.unpack_from("<I", self._rh, 2)[0] != seq:
            return -1
        crc = self._crc_range(b, off + FRAME_HEAD, n, binascii.crc32(self._rh, seed))
        return n if self._committed(b, off + FRAME_HEAD + n, crc) else -1

    def _committed(self, b, off, crc):
        self._bd.read(b, off, self._rc)
        return struct.unpack_from("<I", self._rc, 0)[0] == crc

    def _crc_range(self, b, off, n, crc):
        while n > 0:
            k = n if n < _SCRATCH else _SCRATCH
            chunk = self._scr if k == _SCRATCH else self._scrmv[0:k]
            self._bd.read(b, off, chunk)
            crc = binascii.crc32(chunk, crc)
            off += k
            n -= k
        return crc

    def _erased_from(self, b, off):
        while off < self._bsize:
            k = self._bsize - off
            if k >= _SCRATCH:
                self._bd.read(b, off, self._scr)
                if self._scr != self._ffs:
                    return False
                off += _SCRATCH
                continue
            chunk = self._scrmv[0:k]
            self._bd.read(b, off, chunk)
            for i in range(k):
                if chunk[i] != 0xFF:
                    return False
            return True
        return True

    def _ordered_blocks(self):
        """Valid blocks, oldest sector first, the head last.

        Erase sequences sit on the u32 circle; the head precedes the widest gap between
        neighbours and the oldest sector follows it. While they lie within 2**31 of each
        other (fewer than 2**31 sector starts between the oldest frozen sector and the
        head) this is serial-number order; for any other set it is still a total order.
        """
        eseq = self._eseq
        blocks = [b for b in range(self._bcount) if self._flags[b] & _F_VALID]
        blocks.sort(key=lambda b: (eseq[b], b))
        n = len(blocks)
        widest = -1
        start = 0
        for i in range(n):
            gap = (eseq[blocks[(i + 1) % n]] - eseq[blocks[i]]) & U32_MAX
            if gap > widest:
                widest = gap
                start = (i + 1) % n
        return blocks[start:] + blocks[:start]

    def _place_writer(self, order, rep):
        if not order:
            return  # empty device: the first append starts sector 0 at seq 0
        head = order[-1]
        self._block = head
        self._seed = self._seeds[head]
        self._next_seq = self._end[head]
        self._next_eseq = _inc(self._eseq[head])
        if self._flags[head] & _F_TORN:
            rep.torn_tail = True  # never program over it: _off stays "full", append rolls
        else:
            self._off = self._tail[head]

    def _summarise(self, order, rep):
        rep.next_seq = self._next_seq
        rep.first_seq = self._next_seq
        prev_end = -1
        for b in order:
            rep.sectors += 1
            if self._flags[b] & _F_FROZEN:
                rep.frozen += 1
            count = (self._end[b] - self._base[b]) & U32_MAX
            if count == 0:
                continue
            if prev_end < 0:
                rep.first_seq = self._base[b]
            elif prev_end != self._base[b]:
                at = b * self._bsize + HEADER_SIZE
                rep.problems.append(LineageError("sequence gap", at, prev_end, P_GAP))
            rep.count += count
            prev_end = self._end[b]

    # ------------------------------------------------------------------ reading

    def records(self, start_seq=None):
        """Yield ``(seq, payload_bytes)`` oldest first, from ``start_seq`` on if given
        (wrap-safe). Host use: allocates. Re-checks every frame as it reads."""
        buf = self._ram_image()
        if buf is not None:
            yield from self._records_in(buf, start_seq)
            return
        for b in self._ordered_blocks():
            seq = self._base[b]
            off = HEADER_SIZE
            for _ in range((self._end[b] - seq) & U32_MAX):
                n = self._frame_len(b, off, seq, self._seeds[b])
                if n < 0:
                    break
                if start_seq is None or ((seq - start_seq) & U32_MAX) < HALF:
                    payload = bytearray(n)
                    self._bd.read(b, off + FRAME_HEAD, payload)
                    yield seq, bytes(payload)
                off += n + self._overhead
                seq = _inc(seq)

    def _ram_image(self):
        """The bytes of a RAM device with this class's own frame checks, else None (then
        ``records`` reads through the device, frame by frame)."""
        bd = self._bd
        if (type(bd) is not RamBlockDevice or self.TRAILER != FRAME_CRC
                or type(self)._frame_len is not RingLog._frame_len
                or type(self)._committed is not RingLog._committed):
            return None
        return bd.buf

    def _records_in(self, buf, start_seq):
        """``records`` over a RAM device's bytes: each frame checked as ``_frame_len``
        does (``_frame_len_in``) and read once, in place."""
        mv = memoryview(buf)
        for b in self._ordered_blocks():
            seq = self._base[b]
            seed = self._seeds[b]
            off = HEADER_SIZE
            at = b * self._bsize + FRAME_HEAD
            for _ in range((self._end[b] - seq) & U32_MAX):
                n = self._frame_len_in(buf, mv, b, off, seq, seed)
                if n < 0:
                    break
                if start_seq is None or ((seq - start_seq) & U32_MAX) < HALF:
                    yield seq, bytes(mv[at + off : at + off + n])
                off += n + self._overhead
                seq = _inc(seq)

    def _frame_len_in(self, buf, mv, b, off, seq, seed):
        """``_frame_len`` on a RAM device's bytes, in place: the length within the sector
        and not erased, the seq, the CRC of head and payload against the commit word."""
        over = self._overhead
        if off + over > self._bsize:
            return -1
        p = b * self._bsize + off
        n = buf[p] | (buf[p + 1] << 8)
        if n > self._bsize - off - over or n == ERASED_LEN:
            return -1
        if struct.unpack_from("<I", buf, p + 2)[0] != seq:
            return -1
        q = p + FRAME_HEAD + n
        # Head and payload are contiguous here: one CRC over both is the chained CRC.
        return n if struct.unpack_from("<I", buf, q)[0] == binascii.crc32(mv[p:q], seed) else -1

    def sectors(self):
        """The sector map, oldest first: ``[(block, erase_seq, first_seq, end_seq, frozen)]``
        where ``end_seq`` is the seq after the sector's last record (host use: a dump's
        table of contents)."""
        out = []
        for b in self._ordered_blocks():
            frozen = bool(self._flags[b] & _F_FROZEN)
            out.append((b, self._eseq[b], self._base[b], self._end[b], frozen))
        return out

    def read_all(self):
        """All records as a list of ``(seq, payload_bytes)``, oldest first."""
        return list(self.records())

    def image(self):
        """The whole device as bytes (a dump for ``scan_image``)."""
        out = bytearray(self._bsize * self._bcount)
        mv = memoryview(out)
        for b in range(self._bcount):
            self._bd.read(b, 0, mv[b * self._bsize : (b + 1) * self._bsize])
        return bytes(out)

    @property
    def next_seq(self):
        """Sequence number the next appended record will get."""
        return self._next_seq


def detect_block_size(image):
    """The block size written in the sector header at the start of ``image``."""
    if len(image) < HEADER_SIZE:
        raise LineageError("image shorter than a sector header", 0)
    magic, ver, hsize, _, _, _, bsize, crc = struct.unpack_from("<4sBBHIIII", image, 0)
    if magic != MAGIC or ver != VERSION or hsize != HEADER_SIZE:
        raise LineageError("no sector header at offset 0: give block_size", 0)
    if binascii.crc32(memoryview(image)[0:20]) != crc:
        raise LineageError("sector header at offset 0 fails its CRC: give block_size", 0)
    return bsize


def check_image(image, block_size=None):
    """The block size of ``image`` (``block_size``, or the one its first header gives),
    or ``LineageError`` when the image cannot be a ring of such blocks."""
    if not isinstance(image, (bytes, bytearray, memoryview)):
        raise LineageError("image must be bytes")
    if block_size is None:
        block_size = detect_block_size(image)
    if not isinstance(block_size, int) or block_size <= 0 or len(image) % block_size:
        raise LineageError("image of %d bytes is not whole blocks of %r" % (len(image), block_size))
    if len(image) < 2 * block_size:
        raise LineageError("image holds fewer than 2 blocks of %d bytes" % block_size)
    return block_size


def scan_image(image, block_size=None):
    """Scan a raw dump (the bytes of a whole device) without a device.

    Returns a ``Recovery`` whose ``records`` lists every readable record and whose
    ``problems`` list torn tails, corrupt records (with seq and byte offset), gaps and
    damaged headers. Raises ``LineageError`` only when the image cannot be a ring at all.
    """
    block_size = check_image(image, block_size)
    ring = RingLog(RamBlockDevice(block_size, len(image) // block_size, image))
    rep = ring.recover()
    rep.records = ring.read_all()
    return rep


__all__ = [
    "HEADER_SIZE",
    "LineageError",
    "P_BAD_HEADER",
    "P_BAD_RECORD",
    "P_GAP",
    "P_TORN",
    "Recovery",
    "RingLog",
    "check_image",
    "detect_block_size",
    "scan_image",
    "seq_newer",
]
