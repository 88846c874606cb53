"""Reading a dump in one walk (``read_image``: the recovery walk keeps the frames it accepts)
gives the ``Dump`` the two-walk reading gives: ``scan_image`` (recover, then ``read_all``
checking every frame again), ``RingLog.sectors`` and ``record_offsets`` — and the same
``Dump`` as a ring that reads the device frame by frame. Same records, problems (text,
offset, seq, code), offsets, sectors, torn tail and genesis seq, so the same verify result,
on rings whole, wrapped, frozen, torn, damaged, with duplicated sequence numbers, and on
lineages the governor wrote. Each test runs with the frame walk in Python and in C
(``edgegov._recenc.walk_frames``, where it is built)."""

from __future__ import annotations

import binascii
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "emulation"))

from edgegov.core.blockdev import RamBlockDevice  # noqa: E402
from edgegov.core.ring import LineageError, RingLog, scan_image  # noqa: E402
from edgegov.core.verify import record_offsets, verify  # noqa: E402
from edgegov.demo import default_envelope  # noqa: E402
from edgegov.host import lineage_store  # noqa: E402
from edgegov.host.lineage_store import Dump, read_image, walk_frames  # noqa: E402
from edgegov.report.reading import load  # noqa: E402
from edgegov.report.sample import generate  # noqa: E402
from emuflash import EmulatedFlash, PowerCut  # noqa: E402

M = 0xFFFFFFFF

try:
    from edgegov._recenc import walk_frames as c_walk_frames
except ImportError:
    c_walk_frames = None


@pytest.fixture(autouse=True, params=["python", "c"])
def walk(request, monkeypatch):
    """Which frame walk ``read_image`` runs."""
    if request.param == "c":
        if c_walk_frames is None:
            pytest.skip("edgegov._recenc is not built")
        monkeypatch.setattr(lineage_store, "fast_walk_frames", c_walk_frames)
    else:
        monkeypatch.setattr(lineage_store, "fast_walk_frames", walk_frames)
    return lineage_store.fast_walk_frames


class ThroughRead:
    """A RAM device that is not a ``RamBlockDevice``: the ring reads it frame by frame."""

    def __init__(self, image, block_size):
        self.ram = RamBlockDevice(block_size, len(image) // block_size, image)
        self.block_size, self.block_count = block_size, self.ram.block_count

    def read(self, block, offset, buf):
        self.ram.read(block, offset, buf)


def two_walks(image: bytes, block_size: int, path: str = "<image>") -> Dump:
    """The reading before one walk served both: scan, then a second ring for the sectors."""
    rep = scan_image(image, block_size)
    ring = RingLog(RamBlockDevice(block_size, len(image) // block_size, image))
    ring.recover()
    sectors = ring.sectors()
    return Dump(path, block_size, rep.records, list(rep.problems),
                record_offsets(sectors, rep.records, block_size), sectors, rep.torn_tail)


def frame_by_frame(image: bytes, block_size: int, path: str = "<image>") -> Dump:
    """The same through the device port, frame by frame (no in-place code at all)."""
    ring = RingLog(ThroughRead(image, block_size))
    rep = ring.recover()
    records = ring.read_all()
    sectors = ring.sectors()
    return Dump(path, block_size, records, list(rep.problems),
                record_offsets(sectors, records, block_size), sectors, rep.torn_tail)


def fields(d: Dump):
    problems = [(type(p).__name__, str(p), p.msg, p.offset, p.seq, p.code) for p in d.problems]
    return (d.path, d.block_size, d.records, [type(p) for _, p in d.records], problems,
            list(d.offsets.items()), d.sectors, d.torn_tail, d.genesis_seq)


def verdict(d: Dump, envelopes=None):
    r = verify(d.records, d.problems, None, d.offsets, d.genesis_seq, envelopes)
    return (r.ok, r.records, r.checkpoints, r.keyed_checkpoints, r.uncovered_head,
            r.uncovered_tail, [(str(f), f.seq, f.offset, f.fatal) for f in r.findings])


def assert_same(image: bytes, block_size: int) -> Dump:
    fast = read_image(image, block_size, "<image>")
    want = fields(two_walks(image, block_size))
    assert fields(fast) == want
    assert fields(frame_by_frame(image, block_size)) == want
    assert verdict(fast) == verdict(two_walks(image, block_size))
    return fast


def random_ring(seed: int, records: int, block_size=512, blocks=8, **fmt) -> bytes:
    rnd = random.Random(seed)
    ram = RamBlockDevice(block_size, blocks)
    ring = RingLog(ram)
    ring.format(**fmt)
    for _ in range(records):  # wraps the ring several times
        ring.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 60))))
        if rnd.random() < 0.01:
            ring.freeze(ring.next_seq - 3, ring.next_seq - 1)
    return bytes(ram.buf)


@pytest.mark.parametrize("seed", range(8))
def test_wrapped_frozen_and_damaged_rings_read_the_same(seed):
    image = bytearray(random_ring(seed, 400))
    rnd = random.Random(300 + seed)
    assert len(assert_same(bytes(image), 512).records) > 20
    for flips in (1, 3, 12):  # payloads, heads, commit words, sector headers, erased space
        for _ in range(flips):
            image[rnd.randrange(len(image))] ^= 1 << rnd.randrange(8)
        assert_same(bytes(image), 512)


def test_sequence_numbers_wrapping_past_2_to_the_32_read_the_same():
    dump = assert_same(random_ring(1, 80, first_seq=M - 40, first_erase_seq=M - 1), 512)
    seqs = [s for s, _ in dump.records]
    assert M in seqs and 0 in seqs


def test_a_sector_filled_to_its_last_byte_and_empty_payloads_read_the_same():
    ram = RamBlockDevice(256, 4)
    ring = RingLog(ram)
    ring.format()
    ring.append(b"\x5a" * ring.max_payload)  # the frame ends at the sector's last byte
    for i in range(30):
        ring.append(b"" if i % 2 else bytes([i]))
    dump = assert_same(bytes(ram.buf), 256)
    assert dump.records[0] == (0, b"\x5a" * ring.max_payload)
    assert dump.offsets[1] == 256 + 28


def test_torn_tails_and_torn_headers_read_the_same():
    for fill in ("random", "00", "ff", "stale"):
        dev = EmulatedFlash(256, 4, fill=fill, seed=5)
        ring = RingLog(dev)
        ring.format()
        for i in range(3):
            ring.append(bytes([i]) * 20)
        ring.sync()
        dev.cut_after, dev.cut_bytes = dev.ops + 1, 5  # a payload cut short
        with pytest.raises(PowerCut):
            ring.append(b"x" * 20)
        dev = dev.reboot()
        ring = RingLog(dev)
        ring.recover()
        for i in range(20):  # leaves the torn sector behind, marked
            ring.append(bytes([i]) * 20)
        dump = assert_same(ring.image(), 256)
        assert any(p.code == 1 for p in dump.problems)
        image = bytearray(ring.image())
        image[256 + 28 + 8] ^= 0x10  # damage a record in a sector that is not the head
        image[3 * 256 : 3 * 256 + 4] = b"EG\xff\xff"  # a sector header cut short
        assert_same(bytes(image), 256)


def test_a_seq_stored_in_two_sectors_is_placed_as_record_offsets_places_it():
    """Sector 0 holds seqs 0..19, sector 1 (a later lap, longer frames) seqs 10..14:
    records keep both, and the offsets are ``record_offsets``' (which takes a seq's length
    from its last copy), not simply where the walk found each frame."""
    sectors = []
    for lap, first, count, size in ((0, 0, 20, 3), (5, 10, 5, 7)):
        ram = RamBlockDevice(512, 2)
        ring = RingLog(ram)
        ring.format(first_seq=first, first_erase_seq=lap)
        for _ in range(count):
            ring.append(bytes([lap]) * size)
        sectors.append(bytes(ram.buf[:512]))
    image = sectors[0] + sectors[1] + b"\xff" * 512 * 2
    dump = assert_same(image, 512)
    assert len(dump.records) == 25 and len(dump.offsets) == 20
    assert dump.offsets[15] != 28 + 15 * 13  # where the frame is: not what verify is told


def test_a_frame_with_the_wrong_seq_ends_its_sector_even_with_a_good_crc():
    """A forger's frame: seq 7 renumbered 12, CRC recomputed (seeded with the header's)."""
    ram = RamBlockDevice(256, 4)
    ring = RingLog(ram)
    ring.format()
    for i in range(12):
        ring.append(bytes([i]) * 4)
    image = bytearray(ram.buf)
    p = 28 + 7 * 14
    image[p + 2 : p + 6] = (12).to_bytes(4, "little")
    seed = int.from_bytes(image[20:24], "little")
    image[p + 10 : p + 14] = binascii.crc32(image[p : p + 10], seed).to_bytes(4, "little")
    dump = assert_same(bytes(image), 256)
    assert [s for s, _ in dump.records] == list(range(7))
    assert [(x.seq, x.offset) for x in dump.problems] == [(7, p)]


def test_the_frame_walk_stops_where_the_ring_walk_stops(walk):
    image = bytearray(random_ring(3, 200))
    rnd = random.Random(3)
    for flips in (0, 2, 8):
        for _ in range(flips):
            image[rnd.randrange(len(image))] ^= 1 << rnd.randrange(8)
        ring = RingLog(RamBlockDevice(512, 8, bytes(image)))
        ring.recover()
        for b, _eseq, first, end, _frozen in ring.sectors():
            got = walk(bytes(image), b * 512, 512, first, ring._seeds[b])
            assert got == walk_frames(bytes(image), b * 512, 512, first, ring._seeds[b])
            seq, off, records, offsets = got
            assert (seq, off) == (end, ring._tail[b])
            assert [s for s, _ in records] == list(offsets) and len(records) == (end - first) & M


def test_the_c_walk_refuses_what_is_not_a_sector_of_a_dump():
    if c_walk_frames is None:
        pytest.skip("edgegov._recenc is not built")
    image = random_ring(3, 20)
    for args, error in (((bytearray(image), 0, 512, 0, 0), TypeError),
                        ((image, 512 * 8, 512, 0, 0), ValueError),
                        ((image, -1, 512, 0, 0), ValueError),
                        ((image, 0, 512, M + 1, 0), ValueError),
                        ((image, 0, 512, 0), TypeError)):
        with pytest.raises(error):
            c_walk_frames(*args)


@pytest.mark.parametrize("image, block_size", [
    (b"\xff" * 1000, 256), (b"\xff" * 256, 256), (b"\xff" * 1024, 0), (b"\xff" * 1024, "256"),
    (bytearray(b"\xff" * 1024), 300),
])
def test_what_cannot_be_a_ring_is_refused_with_the_same_words(image, block_size):
    with pytest.raises(LineageError) as before:
        two_walks(image, block_size)
    with pytest.raises(LineageError) as now:
        read_image(image, block_size)
    assert str(now.value) == str(before.value)


def test_images_that_are_not_bytes_read_as_their_bytes():
    image = random_ring(4, 300)
    want = fields(two_walks(image, 512))
    assert fields(read_image(bytearray(image), 512)) == want
    assert fields(read_image(memoryview(image), 512)) == want


@pytest.fixture(scope="module")
def governed(tmp_path_factory) -> Path:
    """A governor's lineage in a small ring: wrapped, frozen sectors, gaps, two boots."""
    path = tmp_path_factory.mktemp("governed") / "small.lineage"
    generate(path, default_envelope(), 6000, boots=2, block_count=24)
    return path


def test_a_governor_lineage_reads_and_verifies_the_same(governed, tmp_path):
    image = governed.read_bytes()
    dump = assert_same(image, 4096)
    assert dump.records[0][0] > 0, "the ring should have wrapped"
    loaded = load(governed)
    assert fields(loaded.dump) == fields(two_walks(image, 4096, str(governed)))
    assert (verdict(loaded.dump, loaded.envelopes)
            == verdict(two_walks(image, 4096), loaded.envelopes))
    damaged = bytearray(image)
    for k in (100, 1500, len(dump.records) - 2):  # records whose frames no longer check
        damaged[dump.offsets[dump.records[k][0]] + 8] ^= 0x10
    again = assert_same(bytes(damaged), 4096)
    assert not verdict(again)[0]


def test_a_truncated_lineage_reads_as_its_erased_completion(governed, tmp_path):
    image = governed.read_bytes()
    cut = tmp_path / "cut.lineage"
    cut.write_bytes(image[: len(image) - 5000])
    loaded = load(cut)
    padded = image[: len(image) - 5000] + b"\xff" * 5000
    assert fields(loaded.dump) == fields(two_walks(padded, 4096, str(cut)))
    assert any("truncated" in f for f in loaded.findings)
