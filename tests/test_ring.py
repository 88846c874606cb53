"""The ring log's behaviour: append/recover, wrap, sequence wrap, freeze, drop, torn tail,
bad blocks, dump scanning, and the file and MicroPython block devices."""

import os
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "emulation"))

from edgegov.core.blockdev import BlockDeviceError, MpBlockDevice, RamBlockDevice  # noqa: E402
from edgegov.core.ring import (  # noqa: E402
    HEADER_SIZE,
    P_BAD_HEADER,
    P_BAD_RECORD,
    P_GAP,
    P_TORN,
    LineageError,
    RingLog,
    scan_image,
)
from edgegov.host.filebd import FileBlockDevice, FileGeometryError  # noqa: E402
from emuflash import EmulatedFlash, PowerCut  # noqa: E402

BS, BC = 256, 4
M = 0xFFFFFFFF


def payload(i, n=20):
    return bytes((i * 13 + k) & 0xFF for k in range(n))


def new_ring(bd=None, **fmt):
    ring = RingLog(bd or EmulatedFlash(BS, BC))
    ring.format(**fmt)
    return ring


def fill(ring, start, count, n=20):
    return [ring.append(payload(i, n)) for i in range(start, start + count)]


def reopen(bd):
    ring = RingLog(bd)
    return ring, ring.recover()


# ------------------------------------------------------------------ append / recover


def test_records_come_back_after_reboot_byte_identical():
    dev = EmulatedFlash(BS, BC)
    ring = new_ring(dev)
    seqs = fill(ring, 0, 12)
    ring.sync()
    ring2, rep = reopen(dev.reboot())
    assert seqs == list(range(12))
    assert (rep.first_seq, rep.next_seq, rep.count, rep.torn_tail) == (0, 12, 12, False)
    assert ring2.read_all() == [(i, payload(i)) for i in range(12)]
    assert rep.problems == []


def test_append_after_recover_continues_the_sequence():
    dev = EmulatedFlash(BS, BC)
    ring = new_ring(dev)
    fill(ring, 0, 5)
    ring.sync()
    ring2, _ = reopen(dev.reboot())
    assert ring2.append(b"next") == 5
    assert ring2.read_all()[-1] == (5, b"next")


def test_append_before_recover_or_format_is_refused():
    with pytest.raises(LineageError):
        RingLog(EmulatedFlash(BS, BC)).append(b"x")


def test_blank_device_recovers_empty_and_starts_at_zero():
    ring, rep = reopen(EmulatedFlash(BS, BC))
    assert (rep.count, rep.next_seq, rep.sectors, rep.problems) == (0, 0, 0, [])
    assert ring.append(b"first") == 0
    assert ring.read_all() == [(0, b"first")]


def test_empty_and_largest_payloads():
    ring = new_ring()
    assert ring.max_payload == BS - HEADER_SIZE - 10
    ring.append(b"")
    ring.append(bytes(ring.max_payload))
    ring.append(b"\xff" * 7)  # erased-looking bytes are still data
    assert [p for _, p in ring.read_all()] == [b"", bytes(ring.max_payload), b"\xff" * 7]


def test_too_long_payload_raises_with_the_seq():
    ring = new_ring()
    with pytest.raises(LineageError) as e:
        ring.append(bytes(ring.max_payload + 1))
    assert e.value.seq == 0


def test_geometry_too_small_is_refused():
    with pytest.raises(LineageError):
        RingLog(EmulatedFlash(BS, 1))
    with pytest.raises(LineageError):
        RingLog(EmulatedFlash(HEADER_SIZE + 10, 4))


# ------------------------------------------------------------------ wrap


def test_wrap_keeps_the_newest_records_and_reports_what_it_overwrote():
    ring = new_ring()
    per_sector = (BS - HEADER_SIZE) // 30
    fill(ring, 0, per_sector * BC)
    assert ring.pop_overwritten() is None
    ring.append(payload(99))  # needs a new sector: the oldest (seqs 0..per_sector-1) goes
    assert ring.pop_overwritten() == (0, per_sector - 1)
    assert ring.pop_overwritten() is None
    seqs = [s for s, _ in ring.read_all()]
    assert seqs == list(range(per_sector, per_sector * BC + 1))


def test_many_wraps_recover_to_a_gap_free_tail():
    dev = EmulatedFlash(BS, BC)
    ring = new_ring(dev)
    fill(ring, 0, 500, n=17)
    ring.sync()
    ring2, rep = reopen(dev.reboot())
    recs = ring2.read_all()
    assert recs[-1][0] == 499 and rep.next_seq == 500
    assert [s for s, _ in recs] == list(range(recs[0][0], 500))
    assert all(p == payload(s, 17) for s, p in recs)
    assert rep.problems == []


def test_sequence_numbers_wrap_across_2_to_the_32():
    dev = EmulatedFlash(BS, BC)
    ring = new_ring(dev, first_seq=M - 4, first_erase_seq=M - 1)
    seqs = fill(ring, 0, 25)  # 28 fit: nothing overwritten yet
    assert seqs[:6] == [M - 4, M - 3, M - 2, M - 1, M, 0]
    ring.sync()
    dev2 = dev.reboot()
    ring2, rep = reopen(dev2)
    assert [s for s, _ in ring2.read_all()] == seqs
    assert (rep.first_seq, rep.next_seq) == (M - 4, 20)
    assert [s for s, _ in ring2.records(start_seq=M)][:3] == [M, 0, 1]
    fill(ring2, 25, 40)  # wrap the ring too, erase sequence past 2**32 as well
    ring2.sync()
    ring3, rep3 = reopen(dev2.reboot())
    got = [s for s, _ in ring3.read_all()]
    assert got == list(range(got[0], 60)) and rep3.next_seq == 60
    assert rep3.problems == []


def test_records_start_seq_skips_older_records():
    ring = new_ring()
    fill(ring, 0, 10)
    assert [s for s, _ in ring.records(start_seq=7)] == [7, 8, 9]


# ------------------------------------------------------------------ freeze / drop


def test_freeze_survives_reboot_and_wrap_skips_frozen_sectors():
    dev = EmulatedFlash(BS, BC)
    ring = new_ring(dev)
    fill(ring, 0, 10)  # 7 per sector: sector 0 holds 0..6, sector 1 holds 7..9
    trip = 8
    assert ring.freeze(trip - 3, trip) == 2
    ring2, rep = reopen(dev.reboot())
    assert rep.frozen == 2
    assert [f for *_, f in ring2.sectors()] == [True, True]
    fill(ring2, 10, 200)
    overwritten = ring2.pop_overwritten()
    assert overwritten[0] > trip + 3, overwritten  # nothing around the trip was overwritten
    recs = dict(ring2.read_all())
    for s in range(0, 14):  # everything in the two frozen sectors is still there
        assert recs[s] == payload(s)
    assert max(recs) == 209
    ring3, rep3 = reopen(ring2._bd)
    assert rep3.frozen == 2 and dict(ring3.read_all()) == recs
    assert [p.code for p in rep3.problems] == [P_GAP]  # frozen island, then the live tail


def test_freeze_extends_to_records_written_after_the_trip():
    ring = new_ring()
    fill(ring, 0, 10)
    ring.freeze(5, 8)
    fill(ring, 10, 10)  # sector 1 fills up (..13), sector 2 holds 14..19
    assert ring.freeze(5, 8 + 10) == 3
    fill(ring, 20, 100)
    recs = dict(ring.read_all())
    assert all(recs[s] == payload(s) for s in range(0, 21))


def test_records_are_dropped_and_counted_when_every_other_sector_is_frozen():
    dev = EmulatedFlash(BS, BC)
    ring = new_ring(dev)
    fill(ring, 0, 21)  # sectors 0, 1, 2 full; 3 is next
    ring.freeze(0, 20)
    fill(ring, 21, 7)  # sector 3 fills
    before = ring.next_seq
    assert ring.append(payload(28)) == -1
    assert ring.append(payload(29)) == -1
    assert ring.dropped == 2 and ring.next_seq == before
    assert ring.unfreeze_all() == 3
    assert ring.append(b"room again") == before
    ring.sync()
    _, rep = reopen(dev.reboot())
    assert rep.next_seq == before + 1 and rep.frozen == 0


def test_unfreeze_all_with_a_frozen_head_keeps_the_sequence_going():
    dev = EmulatedFlash(BS, BC)
    ring = new_ring(dev)
    fill(ring, 0, 30)
    ring.freeze(0, 29)  # every sector with records, the head included
    ring.unfreeze_all()
    _, rep = reopen(dev.reboot())
    assert rep.next_seq == 30 and rep.frozen == 0 and rep.count == 0
    assert not any(ring.sectors()[i][4] for i in range(len(ring.sectors())))


def test_power_cut_while_freezing_leaves_a_usable_ring():
    for fill_kind in ("ff", "00", "random"):
        dev = EmulatedFlash(BS, BC, fill=fill_kind)
        ring = new_ring(dev)
        fill(ring, 0, 10)
        ring.sync()
        dev.cut_after = dev.ops  # the flag byte of the first sector
        with pytest.raises(PowerCut):
            ring.freeze(0, 3)
        ring2, rep = reopen(dev.reboot())
        assert rep.count == 10 and rep.frozen in (0, 1)
        fill(ring2, 10, 50)  # wrap works whatever the flag says


# ------------------------------------------------------------------ torn tail / bad blocks


def test_torn_tail_is_absent_and_the_writer_starts_a_fresh_sector():
    dev = EmulatedFlash(BS, BC, fill="random")
    ring = new_ring(dev)
    fill(ring, 0, 3)
    ring.sync()
    dev.cut_after, dev.cut_bytes = dev.ops + 2, 2  # half of record 3's CRC lands
    with pytest.raises(PowerCut):
        ring.append(payload(3))
    ring2, rep = reopen(dev.reboot())
    assert rep.torn_tail and rep.count == 3 and rep.next_seq == 3
    torn = [p for p in rep.problems if p.code == P_TORN]
    assert [(p.seq, p.offset) for p in torn] == [(3, HEADER_SIZE + 3 * 30)]
    assert ring2.append(b"after") == 3  # no NorViolation: not programmed over the torn bytes
    assert ring2.sectors()[-1][0] == 1
    assert ring2.read_all()[-2:] == [(2, payload(2)), (3, b"after")]


def test_bad_blocks_are_skipped():
    for bad in ({0}, {2}):
        dev = EmulatedFlash(BS, BC, bad_blocks=bad)
        ring = new_ring(dev)
        fill(ring, 0, 60)
        ring.sync()
        ring2, rep = reopen(dev.reboot(bad_blocks=bad))
        assert not {b for b, *_ in ring2.sectors()} & bad
        fill(ring2, 60, 30)
        recs = ring2.read_all()
        assert recs[-1] == (89, payload(89))
        assert [s for s, _ in recs] == list(range(recs[0][0], 90))


# ------------------------------------------------------------------ dumps


def test_scan_image_finds_records_and_block_size_without_a_device():
    ring = new_ring()
    fill(ring, 0, 12)
    rep = scan_image(ring.image())
    assert rep.records == [(i, payload(i)) for i in range(12)]
    assert (rep.first_seq, rep.next_seq, rep.problems) == (0, 12, [])


def test_scan_image_reports_a_corrupt_record_with_seq_and_offset():
    ring = new_ring()
    fill(ring, 0, 20)
    image = bytearray(ring.image())
    where = HEADER_SIZE + 2 * 30 + 6 + 5  # a payload byte of record 2 (sector 0)
    image[where] ^= 0x01
    rep = scan_image(bytes(image), BS)
    bad = [p for p in rep.problems if p.code == P_BAD_RECORD]
    assert [(p.seq, p.offset) for p in bad] == [(2, HEADER_SIZE + 2 * 30)]
    seqs = [s for s, _ in rep.records]
    assert 2 not in seqs and seqs[:2] == [0, 1] and seqs[-1] == 19
    assert any(p.code == P_GAP for p in rep.problems)


def test_scan_image_refuses_what_cannot_be_a_ring():
    with pytest.raises(LineageError):
        scan_image(b"\xff" * 1000, 256)
    with pytest.raises(LineageError):
        scan_image(b"\xff" * 256, 256)
    with pytest.raises(LineageError):
        scan_image(b"garbage" * 100)


def test_scan_image_tells_a_torn_sector_start_from_a_damaged_header():
    image = bytearray(new_ring().image())  # head in block 0: block 1 is started next
    image[BS : BS + 4] = b"EG\xff\xff"  # the next sector's header, cut short
    image[2 * BS : 2 * BS + 4] = b"junk"
    rep = scan_image(bytes(image), BS)
    assert [(p.code, p.offset) for p in rep.problems] == [(P_TORN, BS), (P_BAD_HEADER, 2 * BS)]


def test_a_crash_tail_left_behind_stays_torn_while_later_damage_is_bad():
    dev = EmulatedFlash(BS, BC, fill="random")
    ring = new_ring(dev)
    fill(ring, 0, 3)
    ring.sync()
    dev.cut_after, dev.cut_bytes = dev.ops + 1, 5  # record 3's payload, cut short
    with pytest.raises(PowerCut):
        ring.append(payload(3))
    ring2, rep = reopen(dev.reboot())
    fill(ring2, 3, 12)  # leaves the torn sector 0 behind, marked; fills sectors 1 and 2
    image = bytearray(ring2.image())
    image[BS + HEADER_SIZE + 8] ^= 0x10  # damage a record in sector 1 (not the head)
    rep = scan_image(bytes(image))
    codes = [(p.code, p.offset // BS) for p in rep.problems if p.code != P_GAP]
    assert codes == [(P_TORN, 0), (P_BAD_RECORD, 1)]
    assert image[25] == 0x00 and image[BS + 25] == 0xFF  # the torn-tail mark


def test_frame_layout_is_as_specified():
    ring = new_ring(first_seq=0x01020304, first_erase_seq=7)
    ring.append(b"abc")
    img = ring.image()
    magic, ver, hsize, _, eseq, base, bsize, _ = struct.unpack_from("<4sBBHIIII", img, 0)
    assert (magic, ver, hsize, eseq, base, bsize) == (b"EGRL", 1, HEADER_SIZE, 7, 0x01020304, BS)
    assert img[24:28] == b"\xff" * 4
    n, seq = struct.unpack_from("<HI", img, HEADER_SIZE)
    assert (n, seq) == (3, 0x01020304)
    assert img[HEADER_SIZE + 6 : HEADER_SIZE + 9] == b"abc"
    import binascii

    crc = binascii.crc32(img[0:20] + img[HEADER_SIZE : HEADER_SIZE + 9])
    assert struct.unpack_from("<I", img, HEADER_SIZE + 9)[0] == crc


# ------------------------------------------------------------------ file device


def test_file_device_is_created_erased_and_reopens_with_its_records(tmp_path):
    path = tmp_path / "lineage.bin"
    with FileBlockDevice(path, BS, BC) as bd:
        assert path.read_bytes() == b"\xff" * (BS * BC)
        assert not (tmp_path / "lineage.bin.tmp").exists()
        ring = new_ring(bd)
        fill(ring, 0, 40)
        ring.sync()
    with FileBlockDevice(path, BS, BC) as bd:
        ring, rep = reopen(bd)
        assert rep.next_seq == 40
        assert ring.read_all()[-1] == (39, payload(39))


def test_file_device_of_the_wrong_size_is_refused_clearly(tmp_path):
    path = tmp_path / "lineage.bin"
    path.write_bytes(b"\xff" * 1000)
    with pytest.raises(FileGeometryError, match="1000 bytes.*4 blocks of 256 bytes need 1024"):
        FileBlockDevice(path, BS, BC)


def test_an_empty_existing_file_is_initialised(tmp_path):
    path = tmp_path / "made-by-mktemp"
    path.touch()
    with FileBlockDevice(path, BS, BC) as bd:
        assert RingLog(bd).recover().count == 0
    assert path.stat().st_size == BS * BC


def test_file_device_syncs_on_every_sync_without_group_commit(tmp_path):
    with FileBlockDevice(tmp_path / "l.bin", BS, BC) as bd:
        ring = new_ring(bd)
        before = bd.datasyncs
        for i in range(3):
            ring.append(payload(i))
            ring.sync()
        assert bd.datasyncs == before + 3


class _ThreeProgs(FileBlockDevice):
    progv = None  # the flash path: head, payload and commit marker as separate progs


def test_file_frames_in_one_write_are_the_same_bytes_as_three_progs(tmp_path):
    """The file device writes a frame with one pwritev; the image must be byte-identical to
    the flash path's three progs, across sector changes, and recover to the same records."""
    images, calls = [], []
    for cls, name in ((FileBlockDevice, "v.bin"), (_ThreeProgs, "p.bin")):
        with cls(tmp_path / name, BS, BC) as bd:
            writes = []
            orig = bd._write
            bd._write = lambda pos, data, w=writes, o=orig: (w.append(pos), o(pos, data))
            ring = new_ring(bd)
            writes.clear()
            for i in range(40):  # wraps the 4-block ring
                ring.append(payload(i))
            calls.append(len(writes))
        images.append((tmp_path / name).read_bytes())
    assert images[0] == images[1]
    assert calls[0] < calls[1]  # fewer writes: pwritev went straight to the file
    with FileBlockDevice(tmp_path / "v.bin", BS, BC) as bd:
        ring = RingLog(bd)
        ring.recover()
        assert [p for _, p in ring.read_all()] == [payload(i) for i in range(40)][-len(
            list(ring.read_all())):]


def test_group_commit_syncs_only_on_flush_and_at_sector_changes(tmp_path):
    with FileBlockDevice(tmp_path / "l.bin", BS, BC, group_commit=True) as bd:
        ring = new_ring(bd)
        before = bd.datasyncs
        for i in range(5):  # one control period: several records, a sync() each
            ring.append(payload(i))
            ring.sync()
        assert bd.datasyncs == before
        bd.flush()  # end of the period: the group commit
        assert bd.datasyncs == before + 1
        fill(ring, 5, 5)  # crosses into sector 1: ordered, so durable at once
        assert bd.datasyncs >= before + 2
        ring2, _ = reopen(bd)
        assert ring2.read_all()[-1] == (9, payload(9))


def test_file_device_durable_false_never_fsyncs(tmp_path):
    with FileBlockDevice(tmp_path / "l.bin", BS, BC, durable=False) as bd:
        ring = new_ring(bd)
        fill(ring, 0, 20)
        ring.sync()
        assert bd.datasyncs == 0
    assert os.path.getsize(tmp_path / "l.bin") == BS * BC


# ------------------------------------------------------------------ MicroPython protocol


class RAMBlockDev:
    """The RAM block device of the MicroPython docs ("Block devices", extended interface)."""

    def __init__(self, block_size, num_blocks, bad=()):
        self.block_size = block_size
        self.data = bytearray(b"\xff" * (block_size * num_blocks))
        self.bad = bad

    def readblocks(self, block_num, buf, offset=0):
        addr = block_num * self.block_size + offset
        buf[:] = self.data[addr : addr + len(buf)]

    def writeblocks(self, block_num, buf, offset=None):
        if block_num in self.bad:
            return -5  # -EIO
        offset = offset or 0
        addr = block_num * self.block_size + offset
        self.data[addr : addr + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            if arg in self.bad:
                return -5
            self.data[arg * self.block_size : (arg + 1) * self.block_size] = b"\xff" * BS
            return 0
        return 0


def test_micropython_block_device_adapter_runs_the_ring():
    raw = RAMBlockDev(BS, BC)
    ring = new_ring(MpBlockDevice(raw))
    fill(ring, 0, 50)
    ring.sync()
    ring2, rep = reopen(MpBlockDevice(raw))
    assert rep.next_seq == 50 and ring2.read_all()[-1] == (49, payload(49))
    assert scan_image(bytes(raw.data)).records == ring2.read_all()


def test_micropython_adapter_reports_failures_as_block_device_errors():
    bd = MpBlockDevice(RAMBlockDev(BS, BC, bad={1}))
    with pytest.raises(BlockDeviceError):
        bd.erase(1)
    with pytest.raises(BlockDeviceError):
        bd.prog(1, 0, b"x")
    ring = new_ring(bd)
    fill(ring, 0, 40)
    assert 1 not in {b for b, *_ in ring.sectors()}


def test_ram_device_views_an_existing_image():
    ring = new_ring(RamBlockDevice(BS, BC))
    fill(ring, 0, 5)
    view = RamBlockDevice(BS, BC, ring.image())
    assert RingLog(view).recover().count == 5
    with pytest.raises(ValueError):
        RamBlockDevice(BS, BC, b"short")


def test_golden_vector_matches_the_spec():
    """The worked example of docs/lineage-format.md, byte for byte."""
    ring = new_ring(RamBlockDevice(BS, 2), first_seq=0x01020304, first_erase_seq=7)
    ring.append(b"abc")
    img = ring.image()
    assert img[:28].hex(" ") == (
        "45 47 52 4c 01 1c 00 00 07 00 00 00 04 03 02 01 00 01 00 00 e7 7e 9a 50 ff ff ff ff"
    )
    assert img[28:41].hex(" ") == "03 00 04 03 02 01 61 62 63 06 9c fd 05"
    assert img[41:BS] == b"\xff" * (BS - 41)


def test_a_sector_that_cannot_take_the_freeze_flag_is_still_never_overwritten():
    class FlagFails(EmulatedFlash):
        def prog(self, block, offset, data):
            if offset == 24 and block == 0:
                raise BlockDeviceError("prog failed", block)
            super().prog(block, offset, data)

    ring = new_ring(FlagFails(BS, BC))
    fill(ring, 0, 10)
    assert ring.freeze(0, 3) == 1
    fill(ring, 10, 100)
    assert dict(ring.read_all())[0] == payload(0)
