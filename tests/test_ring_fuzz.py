"""Fuzzing the ring's readers with Hypothesis: a valid image with bits flipped never yields
a record with the wrong content, and arbitrary bytes only ever give a clean result or a
``LineageError``, through ``scan_image`` and through ``recover`` + ``append``."""

import binascii
import struct

from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.ring import HEADER_SIZE, MAGIC, LineageError, RingLog, scan_image
from hypothesis import given, settings
from hypothesis import strategies as st

BS, BC = 256, 4
M = 0xFFFFFFFF


def _payload(seq):
    return bytes((seq * 7 + k * 3) & 0xFF for k in range(seq % 23))


def _valid_image():
    ring = RingLog(RamBlockDevice(BS, BC))
    ring.format(first_seq=M - 30)
    originals = {}
    for _i in range(70):  # wraps the ring once
        seq = ring.next_seq
        originals[seq] = _payload(seq)
        ring.append(originals[seq])
    ring.freeze(M - 5, M)
    return ring.image(), originals


IMAGE, ORIGINALS = _valid_image()


def _flip(image, bits):
    out = bytearray(image)
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return out


def _recover_and_append(image):
    """Recover on a device holding ``image``, append, recover again: the record must come
    back last (unless dropped: every other sector frozen). Returns the first recovery's
    records."""
    bd = RamBlockDevice(BS, len(image) // BS, bytearray(image))
    ring = RingLog(bd)
    ring.recover()
    records = ring.read_all()
    seq = ring.append(b"after")
    if seq >= 0:
        again = RingLog(bd)
        again.recover()
        assert again.read_all()[-1] == (seq, b"after")
    return records


@settings(max_examples=300)
@given(st.lists(st.integers(0, BS * BC * 8 - 1), min_size=1, max_size=6))
def test_bit_flips_never_yield_a_record_with_wrong_content(bits):
    image = _flip(IMAGE, bits)
    for records in (scan_image(bytes(image), BS).records, _recover_and_append(image)):
        for seq, payload in records:
            assert ORIGINALS.get(seq) == payload, (seq, bits)


@settings(max_examples=200)
@given(st.binary(max_size=3 * BS), st.sampled_from([None, 64, 128, 256]))
def test_arbitrary_bytes_give_a_result_or_a_lineage_error(data, block_size):
    try:
        rep = scan_image(data, block_size)
    except LineageError:
        return
    assert rep.count == len(rep.records)


@settings(max_examples=100)
@given(st.binary(min_size=2 * BS, max_size=4 * BS))
def test_arbitrary_bytes_through_recover_and_append(data):
    _recover_and_append(data[: len(data) // BS * BS])


def _header(eseq, base, frozen):
    h = bytearray(MAGIC + struct.pack("<BBHIII", 1, HEADER_SIZE, 0, eseq, base, BS))
    crc = binascii.crc32(h)
    return h + struct.pack("<I", crc) + (b"\x00" if frozen else b"\xff") + b"\xff" * 3, crc


def _frames(seed, base, items):
    out = bytearray()
    seq = base
    for payload, good_crc, seq_skip in items:
        seq = (seq + seq_skip) & M
        head = struct.pack("<HI", len(payload), seq)
        crc = binascii.crc32(payload, binascii.crc32(head, seed))
        out += head + payload + struct.pack("<I", crc if good_crc else crc ^ 1)
        seq = (seq + 1) & M
    return out


_frame_items = st.lists(
    st.tuples(st.binary(max_size=40), st.booleans(), st.sampled_from([0, 0, 0, 1, M])),
    max_size=8,
)
# Erase sequences within a few of each other (as on a real device), near any point of the
# u32 circle including the wrap; base sequences anywhere.
_sector = st.one_of(
    st.just(None),  # erased
    st.binary(min_size=BS, max_size=BS),  # garbage
    st.tuples(
        st.integers(-8, 8), st.integers(0, M), st.booleans(), _frame_items, st.binary(max_size=8)
    ),
)


def _build_sector(spec, eseq_ref):
    if spec is None:
        return b"\xff" * BS
    if isinstance(spec, bytes):
        return spec
    delta, base, frozen, items, junk = spec
    header, seed = _header((eseq_ref + delta) & M, base, frozen)
    body = header + _frames(seed, base, items) + junk
    return bytes(body[:BS]) + b"\xff" * (BS - min(len(body), BS))


@settings(max_examples=300)
@given(st.lists(_sector, min_size=2, max_size=5), st.integers(0, M))
def test_structured_garbage_never_breaks_recovery(sectors, eseq_ref):
    """Valid headers with random erase/base sequences, frames with good and bad CRCs and
    skipped seqs, garbage and erased blocks: recover, read, append, scan, no exception."""
    image = b"".join(_build_sector(s, eseq_ref) for s in sectors)
    rep = scan_image(image, BS)
    seqs = [s for s, _ in rep.records]
    assert len(seqs) == rep.count
    _recover_and_append(image)
