# The envelope a full-core board runs, on its flash: two slots and a counter log over the
# block-device port (edgegov.core.blockdev), so a power cut at any step of a change leaves
# exactly the old or exactly the new envelope in force (firmware/PROTOCOL.md, "Envelope
# push").
#
# Layout from block ``first``: slot 0 (``slot_blocks`` blocks), slot 1 (as many), then two
# blocks of counter log.
#
# A slot: a 44-byte header at offset 0 -- magic "EGV1", generation (u32 BE), blob length
# (u32 BE), SHA-256 of the blob -- then the header's CRC-32 (u32 BE, 4 bytes), then the
# blob from offset 48 on. A slot counts when its magic, CRC and length are right and the blob
# hashes to the header's digest; of two that count, the newer generation (wrap-safe) is in
# force and the other is the previous one (what a rollback restores).
#
# ``write(blob)`` goes to the slot not in force: erase it, program the blob and the header,
# sync, program the CRC, sync. Until that last CRC is durable the slot does not count, so the
# old envelope stays in force; the previous one is given up when its slot is erased.
#
# The counter log keeps the last accepted push counter: 12-byte entries (u64 BE counter,
# CRC-32 of it), appended in one block; when it is full the other block is erased and the
# next entry goes there. The counter is the largest valid entry in either block, so a torn
# entry or erase never lowers it.
import binascii
import hashlib
import struct

from edgegov.core.blockdev import erased_buffer

MAGIC = b"EGV1"
HEADER = 44
BLOB_AT = 48
ENTRY = 12
_M = 0xFFFFFFFF


def _newer(a, b):
    return a != b and ((a - b) & _M) < 0x80000000


class EnvelopeStore:
    def __init__(self, bd, first=0, slot_blocks=2):
        self.bd = bd
        self.bs = bd.block_size
        self.first = first
        self.k = slot_blocks
        self.capacity = slot_blocks * self.bs - BLOB_AT
        self.log = first + 2 * slot_blocks  # store_blocks(slot_blocks) blocks in all
        self._slots = [None, None]  # (gen, blob, digest) per slot that counts
        self.counter = 0
        self.reload()

    # ---------------------------------------------------------------- reading
    def reload(self):
        """Read both slots and the counter log again (after a boot)."""
        self._slots = [self._read_slot(0), self._read_slot(1)]
        self.counter = self._read_counter()

    def _read(self, slot, offset, n):
        """``n`` bytes of ``slot`` from ``offset`` (across its blocks)."""
        out = bytearray(n)
        got = 0
        while got < n:
            pos = offset + got
            b, off = pos // self.bs, pos % self.bs
            step = min(n - got, self.bs - off)
            chunk = bytearray(step)
            self.bd.read(self.first + slot * self.k + b, off, chunk)
            out[got:got + step] = chunk
            got += step
        return out

    def _read_slot(self, slot):
        head = self._read(slot, 0, BLOB_AT)
        if bytes(head[0:4]) != MAGIC:
            return None
        if struct.unpack(">I", head[HEADER:BLOB_AT])[0] != binascii.crc32(head[0:HEADER]):
            return None
        gen, n = struct.unpack(">II", head[4:12])
        if n > self.capacity:
            return None
        blob = bytes(self._read(slot, BLOB_AT, n))
        digest = hashlib.sha256(blob).digest()
        if digest != bytes(head[12:HEADER]):
            return None
        return (gen, blob, digest)

    def _in_force(self):
        a, b = self._slots
        if a is None or b is None:
            return 1 if a is None and b is not None else 0 if a is not None else -1
        return 0 if _newer(a[0], b[0]) else 1

    def current(self):
        """(blob, digest) in force, or None (an empty store: the board's file then)."""
        i = self._in_force()
        return None if i < 0 else self._slots[i][1:]

    def previous(self):
        """(blob, digest) of the envelope before it, or None."""
        i = self._in_force()
        if i < 0 or self._slots[1 - i] is None:
            return None
        return self._slots[1 - i][1:]

    def boot_blob(self, deployed):
        """The blob to boot on: the one in force, or ``deployed`` (the board's
        ``envelope.cbor``) written as the first when the store is empty (after a deploy)."""
        if self.current() is None:
            self.write(deployed)
        return self.current()[0]

    # ---------------------------------------------------------------- writing
    def write(self, blob):
        """Make ``blob`` the envelope in force; the one in force now becomes the previous.
        Returns its digest."""
        if len(blob) > self.capacity:
            raise ValueError("envelope larger than the slot")
        i = self._in_force()
        gen = 1 if i < 0 else (self._slots[i][0] + 1) & _M
        target = self._target(i)
        base = self.first + target * self.k
        for b in range(self.k):
            self.bd.erase(base + b)
        self._slots[target] = None
        self._prog(base, BLOB_AT, blob)
        digest = hashlib.sha256(blob).digest()
        head = MAGIC + struct.pack(">II", gen, len(blob)) + digest
        self._prog(base, 0, head)
        self.bd.sync()
        self._prog(base, HEADER, struct.pack(">I", binascii.crc32(head)))
        self.bd.sync()
        self._slots[target] = (gen, bytes(blob), digest)
        return digest

    def _target(self, in_force):
        """The slot a write goes to: never the one in force."""
        return 0 if in_force < 0 else 1 - in_force

    def _prog(self, base, offset, data):
        done = 0
        while done < len(data):
            pos = offset + done
            b, off = pos // self.bs, pos % self.bs
            step = min(len(data) - done, self.bs - off)
            self.bd.prog(base + b, off, data[done:done + step])
            done += step

    # ---------------------------------------------------------------- the counter
    def _entries(self, block):
        """(largest valid counter, index of the first erased entry) of a log block."""
        best = -1
        free = 0
        buf = bytearray(ENTRY)
        blank = erased_buffer(ENTRY)
        for e in range(self.bs // ENTRY):
            self.bd.read(block, e * ENTRY, buf)
            if buf == blank:
                continue
            free = e + 1
            if struct.unpack(">I", buf[8:12])[0] == binascii.crc32(buf[0:8]):
                v = struct.unpack(">Q", buf[0:8])[0]
                if v > best:
                    best = v
        return best, free

    def _read_counter(self):
        a = self._entries(self.log)[0]
        b = self._entries(self.log + 1)[0]
        return max(a, b, 0)

    def keep_counter(self, counter):
        """Persist ``counter`` as the last accepted one (synced before it returns)."""
        a, fa = self._entries(self.log)
        b, fb = self._entries(self.log + 1)
        block, free = (self.log, fa) if a >= b else (self.log + 1, fb)
        if free >= self.bs // ENTRY:
            block = self.log + 1 if block == self.log else self.log
            self.bd.erase(block)
            free = 0
        raw = struct.pack(">Q", counter)
        self.bd.prog(block, free * ENTRY, raw + struct.pack(">I", binascii.crc32(raw)))
        self.bd.sync()
        self.counter = counter


class FileBlockDevice:
    """The block-device port over a preallocated file (``edgegov deploy`` writes it erased:
    a deploy resets the store). On littlefs a file's update is itself atomic at flush, so the
    slots' protocol is a second line there; on raw flash it is the first."""

    def __init__(self, path, block_size, block_count):
        self.block_size = block_size
        self.block_count = block_count
        self.f = open(path, "r+b")

    def read(self, block, offset, buf):
        self.f.seek(block * self.block_size + offset)
        self.f.readinto(buf)

    def prog(self, block, offset, data):
        self.f.seek(block * self.block_size + offset)
        self.f.write(data)

    def erase(self, block):
        self.f.seek(block * self.block_size)
        self.f.write(erased_buffer(self.block_size))

    def sync(self):
        self.f.flush()


def store_blocks(slot_blocks):
    """Blocks a store with ``slot_blocks`` per slot takes (two slots, two log blocks)."""
    return 2 * slot_blocks + 2


__all__ = ["EnvelopeStore", "FileBlockDevice", "store_blocks"]
