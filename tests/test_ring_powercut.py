"""Power-cut campaign for the ring log (littlefs-style power-loss testing).

One workload is recorded once on an ``EmulatedFlash``: 210 appends of 0..29-byte payloads
on 4 blocks of 256 bytes, a sync every 3 appends, starting 100 records below the u32
sequence wrap and 10 sector starts below the erase-sequence wrap. It wraps the ring about
six times: 674 mutating operations (647 progs holding 5,721 bytes, 27 erases), 95 syncs.

* byte campaign: power is cut at every byte of every prog of that run and at 3 points of
  every erase (5,802 cut points), once per fill of the unwritten rest -- 0xFF, 0x00,
  random, stale data from the block's previous lap: 23,208 cut points in all;
* reorder campaign: at every other one of those points, a random subset of the writes since
  the last sync lands, in random order, plus the torn one (11,604 cut points);
* op campaign: the workload re-run live with power lost at each of the 674 operations
  (none of its bytes land, its region reads 0x00), through the device's own cut knob;
* double cut: 300 runs with a second cut in the life after the first recovery.

After each cut the device is rebooted and recovered. The checks: no record committed
(synced) and still in an unerased block is lost; no accepted record differs from what was
appended (so no torn record is accepted); the recovered sequence is gap-free and
``next_seq`` follows it; and (at every third cut point) appending after recovery works on
the strict emulated NOR -- never programming over non-erased bytes -- and is recovered.

The same harness is then run on deliberately weak rings (no CRC; no barrier at a sector
change) and must report failures: a harness that passes a weak format proves nothing.
"""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "emulation"))

from edgegov.core.ring import P_BAD_HEADER, P_TORN, RingLog  # noqa: E402
from emuflash import (  # noqa: E402
    FILL_00,
    FILL_FF,
    FILL_RANDOM,
    FILL_STALE,
    FILLS,
    OP_ERASE,
    OP_SYNC,
    EmulatedFlash,
    NorViolation,
    PowerCut,
    replay_cuts,
)

M = 0xFFFFFFFF
BS, BC = 256, 4
FIRST_SEQ = 2**32 - 100  # the workload crosses the u32 sequence wrap
FIRST_ERASE_SEQ = 2**32 - 10  # ... and the erase-sequence wrap
N_APPENDS = 210
SYNC_EVERY = 3


def payload_for(i):
    n = (i * 7) % 30
    return bytes((i * 31 + k * 17 + (k * k)) & 0xFF for k in range(n))


class WeakRing(RingLog):
    """Length prefix + seq, no CRC: a torn payload looks like a record."""

    TRAILER = 0

    def _commit(self, b, off, crc):
        pass

    def _committed(self, b, off, crc):
        return True


class NoBarrierRing(RingLog):
    """CRC framing, but no sync around a sector change: a new sector can survive while the
    end of the previous one does not."""

    def _start_sector(self, b):
        sync = self._bd.sync
        self._bd.sync = lambda: None
        try:
            RingLog._start_sector(self, b)
        finally:
            self._bd.sync = sync


class Tracker:
    """Follows a ring on a traced ``EmulatedFlash``: the payload of each seq, the block and
    op index of each record's commit (its CRC prog), and, once power is cut, which records
    must have survived. ``old`` maps seq -> block for records recovered before this life
    (durable by definition)."""

    def __init__(self, ring, dev, payloads=None, old=None):
        self.ring, self.dev = ring, dev
        self.ring_cls = type(ring)
        self.payloads = dict(payloads or {})
        self.old = dict(old or {})
        self.commits = []  # (seq, block, op index of its commit)
        self._must = {}

    def workload(self, n=N_APPENDS, start=0, sync_every=SYNC_EVERY):
        for i in range(start, start + n):
            p = payload_for(i)
            # Known before append: a cut may land the whole record yet never return.
            self.payloads[self.ring.next_seq] = p
            seq = self.ring.append(p)
            self.commits.append((seq, self.dev.trace[-1][1], self.dev.ops - 1))
            if i % sync_every == sync_every - 1:
                self.ring.sync()
        return self

    @property
    def trace(self):
        return self.dev.trace

    def _index(self):
        # Op indices of syncs and erases; the op in flight at a cut counts as done.
        self.sync_points, erases, idx = [], [], 0
        for op in self.dev.trace:
            if op[0] == OP_SYNC:
                self.sync_points.append(idx)
                continue
            if op[0] == OP_ERASE:
                erases.append((idx, op[1]))
            idx += 1
        if self.dev.cut_op is not None and self.dev.cut_op[0] == OP_ERASE:
            erases.append((idx, self.dev.cut_op[1]))
        self.n_ops = idx

        def first_erase(block, after):
            return min([j for j, b in erases if b == block and j > after] or [1 << 60])

        self.erased_at = {s: first_erase(b, -1) for s, b in self.old.items()}
        self.erased_at.update({s: first_erase(b, c) for s, b, c in self.commits})
        self.commit_op = {s: c for s, _, c in self.commits}
        self.commit_op.update({s: -1 for s in self.old})

    def must_have(self, cut):
        """Seqs that must survive a cut during op ``cut``: durable before it (old, or
        committed before a sync that preceded the cut), and in a block not erased since."""
        if cut not in self._must:
            if not self._must:
                self._index()
            last_sync = max((s for s in self.sync_points if s <= cut), default=-1)
            self._must[cut] = {
                s
                for s, c in self.commit_op.items()
                if (c < last_sync or s in self.old) and self.erased_at[s] > cut
            }
        return self._must[cut]


def record(ring_cls=RingLog, n=N_APPENDS):
    """Run the workload once on a fresh traced device."""
    dev = EmulatedFlash(BS, BC, trace=True)
    ring = ring_cls(dev)
    ring.format(first_seq=FIRST_SEQ, first_erase_seq=FIRST_ERASE_SEQ)
    return Tracker(ring, dev).workload(n)


# format() erases blocks 1..3 before starting block 0: an erase cut short there leaves a
# damaged header that no torn-write rule can tell from damage (the docs say so).
FORMAT_ERASES = BC - 1


def check_boot(run, dev, must, post_appends=2, cut=0):
    """Recover ``dev`` after a cut during op ``cut`` and return a list of violations."""
    ring = run.ring_cls(dev)
    try:
        rep = ring.recover()
        recs = ring.read_all()
    except Exception as e:  # any exception is a finding, not a crash of the campaign
        return [f"recover raised {e!r}"]
    bad = check_records(run.payloads, recs, must)
    allowed = (P_TORN, P_BAD_HEADER) if cut < FORMAT_ERASES else (P_TORN,)
    other = [p for p in rep.problems if p.code not in allowed]
    if other:  # a power cut leaves torn writes, never "damage"
        bad.append(f"power cut reported as {other!r}")
    seqs = [s for s, _ in recs]
    if seqs and rep.next_seq != (seqs[-1] + 1) & M:
        bad.append(f"next_seq {rep.next_seq} does not follow last record {seqs[-1]}")
    if not bad and post_appends:
        bad += check_post_append(run, dev, ring, seqs, post_appends, allowed)
    return bad


def check_records(payloads, recs, must):
    bad = []
    for seq, p in recs:
        if payloads.get(seq) != p:
            bad.append(f"accepted wrong content at seq {seq}")
            break
    for (a, _), (b, _) in zip(recs, recs[1:], strict=False):
        if b != (a + 1) & M:
            bad.append(f"gap between seq {a} and {b}")
            break
    lost = must - {s for s, _ in recs}
    if lost:
        bad.append(f"lost {len(lost)} committed records, first {min(lost)}")
    return bad


def check_post_append(run, dev, ring, seqs, n, allowed):
    try:
        new = [ring.append(b"after-cut-%d" % k) for k in range(n)]
        ring.sync()
        again = run.ring_cls(dev)
        rep = again.recover()
        tail = again.read_all()[-n:]
    except NorViolation as e:
        return [f"append after recovery broke the NOR contract: {e}"]
    want = [(s, b"after-cut-%d" % k) for k, s in enumerate(new)]
    if tail != want:
        return [f"records appended after recovery not recovered: {tail!r}"]
    if seqs and new[0] != (seqs[-1] + 1) & M:
        return ["append after recovery reused or skipped a seq"]
    other = [p for p in rep.problems if p.code not in allowed]
    if other:  # e.g. a crash tail left behind must still read as torn, not as damage
        return [f"after the next appends, the cut is reported as {other!r}"]
    return []


def byte_campaign(run, fills, reorder=False, every=1, max_failures=1):
    """Cut at every cut point of ``run`` (every ``every``-th one); returns (points, failures).
    Every third point also appends after recovery (the rest only recovers), for time."""
    points = 0
    failures = []
    cuts = replay_cuts(run.trace, BS, BC, fills=fills, reorder=reorder, seed=7)
    for n, (i, k, fill, image, prev) in enumerate(cuts):
        if n % every:
            continue
        points += 1
        dev = EmulatedFlash(BS, BC, image=image, prev_lap=prev)
        post = 2 if n % 3 == 0 else 0
        for msg in check_boot(run, dev, run.must_have(i), post, i):
            failures.append(f"op {i} byte {k} fill {fill}: {msg}")
        if len(failures) >= max_failures:
            break
    return points, failures


@pytest.fixture(scope="module")
def run():
    return record()


def test_workload_wraps_ring_and_sequence(run):
    seqs = [s for s, _, _ in run.commits]
    assert len(seqs) >= 200
    assert seqs[0] > seqs[-1], "the workload should cross the u32 sequence wrap"
    ring_bytes = sum(len(p) + 10 for p in run.payloads.values())
    assert ring_bytes > 4 * BS * BC, "the workload should wrap the ring several times"


@pytest.mark.parametrize("fill", FILLS)
def test_cut_at_every_byte_of_every_write(run, fill):
    points, failures = byte_campaign(run, (fill,))
    assert not failures, failures
    assert points > 5000, points  # every byte of ~650 progs plus 3 points per erase
    print(f"\n{fill}: {points} cut points")


def test_cut_at_every_operation_index_live(run):
    """littlefs style: re-run the workload live with power lost at op N, reboot, recover,
    check: the device's own cut knob, end to end."""
    run.must_have(0)
    for n_cut in range(run.n_ops):
        dev = EmulatedFlash(BS, BC, cut_after=n_cut, fill=FILL_00)
        with pytest.raises(PowerCut):
            record_on(dev)
        assert dev.ops == n_cut
        bad = check_boot(run, dev.reboot(), run.must_have(n_cut), 1, n_cut)
        assert not bad, (n_cut, bad)


def record_on(dev):
    dev.trace = []
    ring = RingLog(dev)
    ring.format(first_seq=FIRST_SEQ, first_erase_seq=FIRST_ERASE_SEQ)
    return Tracker(ring, dev).workload()


def test_out_of_order_writes_between_syncs(run):
    points, failures = byte_campaign(run, FILLS, reorder=True, every=2)
    assert not failures, failures
    assert points > 10000, points


def test_second_cut_during_the_life_after_recovery(run):
    rng = random.Random(3)
    run.must_have(0)
    for _ in range(300):
        first = rng.randrange(run.n_ops)
        dev = EmulatedFlash(BS, BC, cut_after=first, cut_bytes=rng.randrange(8), fill=FILL_STALE)
        with pytest.raises(PowerCut):
            record_on(dev)
        bad = second_life(dev, rng)
        assert not bad, (first, bad)


def second_life(dev, rng):
    """Recover, append with a second cut somewhere in the next 40 ops, recover, check."""
    knobs = dict(cut_after=rng.randrange(40), cut_bytes=rng.randrange(8), trace=True)
    bd = dev.reboot(fill=FILL_RANDOM, seed=rng.randrange(1000), **knobs)
    ring = RingLog(bd)
    ring.recover()
    old = {}
    for block, _, first, end, _ in ring.sectors():
        for k in range((end - first) & M):
            old[(first + k) & M] = block
    life = Tracker(ring, bd, payloads=dict(ring.read_all()), old=old)
    with pytest.raises(PowerCut):
        life.workload(10_000, start=1000, sync_every=2)
    again = RingLog(bd.reboot())
    again.recover()
    return check_records(life.payloads, again.read_all(), life.must_have(knobs["cut_after"]))


# ---------------------------------------------------------------- the harness must bite


def test_weak_framing_without_crc_is_caught():
    weak = record(WeakRing)
    points, failures = byte_campaign(weak, (FILL_FF, FILL_00), max_failures=5)
    assert failures, "the campaign passed a ring with no CRC: it cannot see torn records"
    assert any("wrong content" in f for f in failures), failures


def test_missing_sector_barrier_is_caught():
    weak = record(NoBarrierRing)
    points, failures = byte_campaign(weak, (FILL_RANDOM,), reorder=True, max_failures=3)
    assert failures, "the reorder campaign passed a ring without a barrier at sector change"
