"""A ring on a RAM device is read in place (``RingLog._records_in``); every other device
frame by frame through ``read``. Both must yield the same records, damaged or not."""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgegov.core.blockdev import RamBlockDevice  # noqa: E402
from edgegov.core.ring import RingLog  # noqa: E402


class ThroughRead:
    """A RAM device that is not a ``RamBlockDevice``: the ring reads it frame by frame."""

    def __init__(self, ram):
        self.ram = ram
        self.block_size, self.block_count = ram.block_size, ram.block_count

    def read(self, block, offset, buf):
        self.ram.read(block, offset, buf)


def _image(records: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    ram = RamBlockDevice(512, 8)
    ring = RingLog(ram)
    ring.format()
    for _ in range(records):  # wraps the ring several times
        ring.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 60))))
    return bytes(ram.buf)


def _both(image: bytes, start_seq=None, flips=()):
    """Records read both ways; ``flips`` (offset, bit) are applied after recovery, as
    if the memory changed under the ring: the read re-checks every frame."""
    a, b = bytearray(image), bytearray(image)
    fast = RingLog(RamBlockDevice(512, 8, a))
    fast.recover()
    slow = RingLog(ThroughRead(RamBlockDevice(512, 8, b)))
    slow.recover()
    for off, bit in flips:
        a[off] ^= 1 << bit
        b[off] ^= 1 << bit
    assert fast._ram_image() is not None and slow._ram_image() is None
    return list(fast.records(start_seq)), list(slow.records(start_seq))


@pytest.mark.parametrize("seed", range(6))
def test_in_place_read_matches_frame_by_frame_read(seed):
    image = bytearray(_image(300, seed))
    rnd = random.Random(100 + seed)
    fast, slow = _both(bytes(image))
    assert fast == slow and len(fast) > 20
    assert _both(bytes(image), fast[len(fast) // 2][0]) == (slow[len(slow) // 2:],) * 2
    for _ in range(5):  # flipped bits: payloads, heads, commit words, sector headers
        image[rnd.randrange(len(image))] ^= 1 << rnd.randrange(8)
    fast, slow = _both(bytes(image))
    assert fast == slow
    assert len(fast) < 300
    image = bytes(image)
    whole, _ = _both(image)
    flips = [(rnd.randrange(len(image)), rnd.randrange(8)) for _ in range(3)]
    fast, slow = _both(image, flips=flips)
    assert fast == slow
    assert len(fast) < len(whole)


@pytest.mark.parametrize("seed", range(6))
def test_in_place_recovery_matches_frame_by_frame_recovery(seed):
    """A read-only image (a dump being scanned) is recovered in place too."""
    image = bytearray(_image(300, seed))
    rnd = random.Random(200 + seed)
    for flips in (0, 3, 12):
        for _ in range(flips):
            image[rnd.randrange(len(image))] ^= 1 << rnd.randrange(8)
        fast = RingLog(RamBlockDevice(512, 8, bytes(image)))
        slow = RingLog(ThroughRead(RamBlockDevice(512, 8, bytes(image))))
        got = [(str(p), p.offset, p.seq) for p in fast.recover().problems]
        assert got == [(str(p), p.offset, p.seq) for p in slow.recover().problems]
        assert fast.sectors() == slow.sectors() and fast._tail == slow._tail
        assert fast.read_all() == slow.read_all()
        assert fast.next_seq == slow.next_seq
