"""Boot-time recovery (``recover(quick=True)``) places the writer exactly as a full scan.

Quick recovery walks only the head sector (and sectors that cannot be continued by their
successor); the power-cut workload of ``test_ring_powercut`` is replayed to every cut
point, with every fill, and after each cut both recoveries must agree on where the next
record goes, and records appended after a quick recovery must be read back by a full one.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "emulation"))

from edgegov.core.ring import RingLog  # noqa: E402
from emuflash import FILLS, EmulatedFlash, replay_cuts  # noqa: E402
from test_ring_powercut import BC, BS, record  # noqa: E402


def _placement(ring, rep):
    return (rep.next_seq, ring._block, ring._off, rep.torn_tail)


def test_quick_recovery_places_the_writer_like_a_full_scan_at_every_cut():
    run = record()
    checked = 0
    for n, (_i, _k, _fill, image, prev) in enumerate(
        replay_cuts(run.trace, BS, BC, fills=FILLS, seed=11)
    ):
        if n % 3:
            continue
        full = RingLog(EmulatedFlash(BS, BC, image=image, prev_lap=prev))
        want = _placement(full, full.recover())
        dev = EmulatedFlash(BS, BC, image=image, prev_lap=prev)
        quick = RingLog(dev)
        got = _placement(quick, quick.recover(quick=True))
        assert got == want, f"cut point {n}: quick {got} != full {want}"
        if n % 9 == 0:
            seqs = [quick.append(b"after-%d" % k) for k in range(2)]
            quick.sync()
            again = RingLog(dev)
            again.recover()
            assert again.read_all()[-2:] == [(s, b"after-%d" % k) for k, s in enumerate(seqs)]
        checked += 1
    assert checked > 7000, checked


def test_quick_recovery_on_an_intact_ring_reads_the_same_records():
    dev = EmulatedFlash(BS, BC)
    ring = RingLog(dev)
    ring.format()
    for k in range(150):
        ring.append(bytes([k]) * (k % 20))
        if k == 40:
            ring.freeze(30, 45)  # a frozen sector: wrap-around skips it, leaving a hole
        ring.sync()
    full, quick = RingLog(dev), RingLog(dev)
    full.recover()
    quick.recover(quick=True)
    assert quick.read_all() == full.read_all()
    assert quick.next_seq == full.next_seq == 150
