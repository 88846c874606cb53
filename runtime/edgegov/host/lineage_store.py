"""Gateway lineage files: open one to write (resuming the hash chain), read one as a dump.

A lineage file is a ring over a preallocated file (``FileBlockDevice``): the same sector
and record format a board writes to flash, so ``edgegov lineage verify|decode|replay``
read a gateway file and a dump pulled from a device alike.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.lineage import Lineage
from edgegov.core.replay import envelopes_in
from edgegov.core.ring import (
    ERASED_LEN,
    HEADER_SIZE,
    U32_MAX,
    LineageError,
    RingLog,
    check_image,
    detect_block_size,
)
from edgegov.core.verify import record_offsets

from .attest import SUFFIX as ATTESTATION_SUFFIX
from .filebd import FileBlockDevice

DEFAULT_BLOCK_SIZE = 4096
DEFAULT_BLOCK_COUNT = 256  # 1 MiB: hours of a 100 Hz loop at typical record sizes


def open_lineage(path, env: Envelope, key: bytes | None = None, *, block_size=DEFAULT_BLOCK_SIZE,
                 block_count=DEFAULT_BLOCK_COUNT, durable=True, group_commit=False,
                 checkpoint_every=256):
    """Open (or create) a lineage file and return a ``Lineage`` ready for ``boot``.

    An existing file is recovered: the writer continues after its last committed record and
    the hash chain continues from its last checkpoint.
    """
    existed = Path(path).exists() and Path(path).stat().st_size > 0
    # An attestation of an earlier orderly stop no longer names the last record once this
    # writer appends: remove it (the next orderly stop writes a new one).
    Path(os.fspath(path) + ATTESTATION_SUFFIX).unlink(missing_ok=True)
    bd = FileBlockDevice(path, block_size, block_count, durable=durable,
                         group_commit=group_commit)
    ring = RingLog(bd)
    if not existed or ring.recover(quick=True).count == 0:
        ring.format()
    lineage = Lineage(ring, env, key, checkpoint_every=checkpoint_every)
    lineage.device = bd  # the host flushes it once per control period in group-commit mode
    if existed:
        lineage.resume()  # the hash chain goes on as a verifier walks it
    return lineage


def load_envelope(blob: bytes, digest: bytes) -> Envelope:
    if hashlib.sha256(blob).digest() != digest:
        raise LineageError("an ENVELOPE record's blob does not match its digest")
    return Envelope.from_blob(blob, digest)


@dataclass
class Dump:
    """A lineage image read from a file: its records, the scan's problems, and where each
    record sits."""

    path: str
    block_size: int
    records: list
    problems: list
    offsets: dict
    sectors: list = field(default_factory=list)
    torn_tail: bool = False

    def envelopes(self) -> dict:
        return envelopes_in(self.records, load_envelope)

    @property
    def genesis_seq(self) -> int:
        return 0


def read_dump(path, block_size: int | None = None) -> Dump:
    """Read a lineage file or a pulled dump image. Raises ``LineageError`` when it cannot
    be a ring at all; damaged records inside are reported in ``problems``."""
    try:
        image = Path(path).read_bytes()
    except OSError as err:
        raise LineageError(f"{path}: cannot read: {err.strerror}") from None
    return read_image(image, block_size, str(path))


def read_image(image: bytes, block_size: int | None = None, path: str = "<image>") -> Dump:
    """``read_dump`` of an image already in memory (a pulled dump, a file's bytes).

    One walk of the ring gives it all: the same records, problems, sectors and offsets as
    ``scan_image`` followed by ``RingLog.sectors`` and ``record_offsets``."""
    if block_size is None:
        block_size = detect_block_size(image)
    block_size = check_image(image, block_size)
    ring = _DumpRing(bytes(image), block_size)
    rep = ring.recover()
    sectors = ring.sectors()
    records: list = []
    offsets: dict = {}
    for block, *_ in sectors:
        kept, at = ring.frames[block]
        records += kept
        offsets.update(at)
    if len(offsets) != len(records):  # a seq stored twice: place records as verify does
        offsets = record_offsets(sectors, records, block_size)
    return Dump(str(path), block_size, records, list(rep.problems), offsets, sectors,
                rep.torn_tail)


_FRAME_HEAD = struct.Struct("<HI").unpack_from
_FRAME_CRC = struct.Struct("<I").unpack_from


def walk_frames(image: bytes, start: int, block_size: int, seq: int, seed: int):
    """The valid frames of the sector at byte ``start`` of ``image``, in one pass: the
    frames ``RingLog._walk`` accepts (``_frame_len_in``: in the sector, not erased, the next
    seq, the CRC seeded with the header's). Returns ``(seq, off, records, offsets)``: the
    seq and in-sector offset after the last valid frame, ``[(seq, payload)]`` and
    ``{seq: frame offset in the image}``."""
    mv = memoryview(image)
    crc32 = binascii.crc32
    head = _FRAME_HEAD
    word = _FRAME_CRC
    last = start + block_size - 4  # where a frame's CRC word may start at the latest
    p = start + HEADER_SIZE
    records = []
    offsets = {}
    while p + 6 <= last:
        n, s = head(image, p)
        q = p + 6 + n
        if q > last or n == ERASED_LEN or s != seq or word(image, q)[0] != crc32(mv[p:q], seed):
            break
        records.append((seq, image[p + 6 : q]))
        offsets[seq] = p
        seq = seq + 1 if seq != U32_MAX else 0
        p = q + 4
    return seq, p - start, records, offsets


# The same walk in C (edgegov._recenc) where it is built; EDGEGOV_PURE_RECORDS=1 at import
# keeps the Python code, as it does for records.
try:
    from edgegov._recenc import PURE as _PURE
    from edgegov._recenc import walk_frames as _c_walk_frames
except ImportError:
    _PURE, _c_walk_frames = True, None
fast_walk_frames = walk_frames if _PURE or _c_walk_frames is None else _c_walk_frames


class _DumpRing(RingLog):
    """A ring over a dump's bytes whose recovery walk keeps the frames it accepts
    (``frames``: block → (records, offsets)), so reading them needs no second walk."""

    def __init__(self, image: bytes, block_size: int):
        super().__init__(RamBlockDevice(block_size, len(image) // block_size, image))
        self.frames: dict = {}

    def _walk_image(self, image, b):
        bs = self._bsize
        seq, off, records, offsets = fast_walk_frames(image, b * bs, bs, self._base[b],
                                                      self._seeds[b])
        self.frames[b] = (records, offsets)
        return seq, off
