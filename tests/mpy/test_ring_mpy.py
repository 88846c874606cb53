# The ring log under the MicroPython unix port:
#   micropython tests/mpy/runner.py test_ring_mpy
# append/recover/wrap/freeze/torn tail on RamBlockDevice, and proof that steady-state
# append allocates nothing. (Named *_mpy so it cannot clash with tests/test_ring.py when
# pytest collects this directory; under CPython the allocation checks have nothing to
# measure and return.)
import gc

from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.ring import HEADER_SIZE, P_TORN, RingLog, scan_image

BS = 256
BC = 4
M = 0xFFFFFFFF


def _payload(i, n):
    b = bytearray(n)
    for k in range(n):
        b[k] = (i * 13 + k) & 0xFF
    return bytes(b)


def _ring(bd=None, first_seq=0):
    ring = RingLog(bd or RamBlockDevice(BS, BC))
    ring.format(first_seq)
    return ring


def _reopen(bd):
    ring = RingLog(bd)
    return ring, ring.recover()


def test_append_then_recover_roundtrip():
    bd = RamBlockDevice(BS, BC)
    ring = _ring(bd)
    for i in range(12):
        assert ring.append(_payload(i, 20)) == i
    ring.sync()
    ring2, rep = _reopen(bd)
    assert rep.count == 12 and rep.next_seq == 12 and not rep.torn_tail
    recs = ring2.read_all()
    for i in range(12):
        assert recs[i] == (i, _payload(i, 20))


def test_wrap_keeps_newest_gap_free():
    bd = RamBlockDevice(BS, BC)
    ring = _ring(bd)
    for i in range(300):
        ring.append(_payload(i, i % 30))
    ring2, rep = _reopen(bd)
    recs = ring2.read_all()
    assert recs[-1][0] == 299 and rep.next_seq == 300
    first = recs[0][0]
    for k in range(len(recs)):
        assert recs[k] == (first + k, _payload(first + k, (first + k) % 30))
    assert ring.pop_overwritten() is not None


def test_sequence_wraps_past_u32():
    bd = RamBlockDevice(BS, BC)
    ring = _ring(bd, M - 2)
    seqs = [ring.append(b"abc") for _ in range(5)]
    assert seqs == [M - 2, M - 1, M, 0, 1]
    ring2, rep = _reopen(bd)
    assert rep.first_seq == M - 2 and rep.next_seq == 2


def test_torn_tail_is_absent():
    bd = RamBlockDevice(BS, BC)
    ring = _ring(bd)
    for i in range(3):
        ring.append(_payload(i, 20))
    # A frame head and payload with no CRC yet: what a cut before the commit leaves.
    off = HEADER_SIZE + 3 * 30
    bd.prog(0, off, b"\x14\x00\x03\x00\x00\x00")
    bd.prog(0, off + 6, _payload(3, 20))
    ring2, rep = _reopen(bd)
    assert rep.count == 3 and rep.next_seq == 3 and rep.torn_tail
    assert rep.problems[0].code == P_TORN and rep.problems[0].offset == off
    assert ring2.append(b"next") == 3
    assert ring2.read_all()[-1] == (3, b"next")


def test_freeze_survives_reboot_and_wrap():
    bd = RamBlockDevice(BS, BC)
    ring = _ring(bd)
    for i in range(10):
        ring.append(_payload(i, 20))
    assert ring.freeze(5, 8) == 2
    ring2, rep = _reopen(bd)
    assert rep.frozen == 2
    for i in range(10, 200):
        ring2.append(_payload(i, 20))
    recs = {}
    for s, p in ring2.read_all():
        recs[s] = p
    for s in range(14):
        assert recs[s] == _payload(s, 20)


def test_scan_image_of_a_dump():
    ring = _ring()
    for i in range(5):
        ring.append(_payload(i, 9))
    rep = scan_image(ring.image())
    assert rep.count == 5 and rep.records[4] == (4, _payload(4, 9))


def test_append_allocates_nothing_in_steady_state():
    if not hasattr(gc, "mem_alloc"):
        return  # CPython: no heap counter
    ring = _ring()
    payload = bytearray(48)
    for _i in range(100):  # warm up: first calls, first rolls
        ring.append(payload)
    gc.collect()
    before = gc.mem_alloc()
    for _i in range(400):  # ~80 sector changes (erase, header) included
        ring.append(payload)
    used = gc.mem_alloc() - before
    assert used == 0, used


def test_append_runs_with_the_heap_locked():
    try:
        from micropython import heap_lock, heap_unlock
    except ImportError:
        return  # CPython: nothing to lock
    ring = _ring()
    payload = bytearray(20)
    for _i in range(50):
        ring.append(payload)
    heap_lock()
    try:
        for _i in range(200):
            ring.append(payload)
        ring.sync()
    finally:
        heap_unlock()
