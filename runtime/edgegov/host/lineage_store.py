"""Gateway lineage files: open one to write (resuming the hash chain), read one as a dump.

A lineage file is a ring over a preallocated file (``FileBlockDevice``): the same sector
and record format a board writes to flash, so ``edgegov lineage verify|decode|replay``
read a gateway file and a dump pulled from a device alike.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.lineage import Lineage
from edgegov.core.replay import envelopes_in
from edgegov.core.ring import LineageError, RingLog, detect_block_size, scan_image
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
    """``read_dump`` of an image already in memory (a pulled dump, a file's bytes)."""
    if block_size is None:
        block_size = detect_block_size(image)
    rep = scan_image(image, block_size)
    ring = RingLog(RamBlockDevice(block_size, len(image) // block_size, image))
    ring.recover()
    sectors = ring.sectors()
    offsets = record_offsets(sectors, rep.records, block_size)
    return Dump(str(path), block_size, rep.records, list(rep.problems), offsets, sectors,
                rep.torn_tail)
