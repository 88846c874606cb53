"""The board's envelope store (firmware/edgegov_fw/envstore.py) under power cuts: two slots
and a committed header on the emulated NOR flash the ring's power-cut tests use.

One workload is recorded once: the first envelope written, a push (counter 5, then the new
envelope), a rollback (counter 6, then the old one again), and enough counters to fill a
counter-log block and move to the other. Power is then cut at every byte of every program
and at three points of every erase, once per fill of the unwritten rest (0xFF, 0x00,
random, stale), and the rebooted store must hold exactly the envelope in force before the
step or after it (never another, never none once one was written), a previous envelope that
is one of the two, and a counter no lower than the last one synced. After every fourth cut
a further write on the strict NOR (no programming over unerased bytes) must work. The same
campaign on a store that rewrites the slot in force must find cut points that lose it.
"""

from __future__ import annotations

import sys

import pytest
from edgegov.config.compile import compile_file
from service_harness import ENVELOPE, REPO

sys.path.insert(0, str(REPO / "emulation"))
sys.path.insert(0, str(REPO / "firmware"))

from edgegov_fw.envstore import BLOB_AT, EnvelopeStore  # noqa: E402
from emuflash import EmulatedFlash, NorViolation, replay_cuts  # noqa: E402

BS = 256
OLD = compile_file(ENVELOPE).blob
NEW = compile_file(REPO / "boards" / "envelopes" / "spindle-cell-tight.toml").blob
SLOT = -(-(max(len(OLD), len(NEW)) + BLOB_AT) // BS)
BLOCKS = 2 * SLOT + 2


class InPlaceStore(EnvelopeStore):
    """A weak store that rewrites the slot in force: a cut mid-write loses the envelope."""

    def _target(self, in_force):
        return max(in_force, 0)


def _workload(store_class=EnvelopeStore):
    """The recorded run and, per step, (ops before it, in force after, counter after)."""
    dev = EmulatedFlash(BS, BLOCKS, trace=True)
    store = store_class(dev, 0, SLOT)
    steps = []

    def step(fn, blob_after, counter_after):
        start = dev.ops
        fn()
        steps.append((start, dev.ops, blob_after, counter_after))

    step(lambda: store.write(OLD), OLD, 0)
    step(lambda: store.keep_counter(5), OLD, 5)
    step(lambda: store.write(NEW), NEW, 5)
    step(lambda: store.keep_counter(6), NEW, 6)
    step(lambda: store.write(OLD), OLD, 6)  # a rollback (the previous blob again)
    for c in range(7, 7 + BS // 12 + 2):  # fills a log block: the next goes to the other
        step(lambda c=c: store.keep_counter(c), OLD, c)
    return dev, steps


def _expected(steps, op_index):
    """(in force before, after; counter before, after) for a cut during ``op_index``."""
    before_blob, before_counter = None, 0
    for start, end, blob, counter in steps:
        if start <= op_index < end:
            return before_blob, blob, before_counter, counter
        before_blob, before_counter = blob, counter
    raise AssertionError(op_index)


def test_a_clean_run_keeps_the_new_and_the_previous_envelope():
    dev, steps = _workload()
    store = EnvelopeStore(dev.reboot(), 0, SLOT)
    assert store.current()[0] == OLD and store.previous()[0] == NEW
    assert store.counter == steps[-1][3] and store.counter > BS // 12


def test_a_power_cut_at_any_byte_leaves_the_old_or_the_new_envelope():
    dev, steps = _workload()
    cuts = 0
    for index, nbytes, fill, image, prev in replay_cuts(dev.trace, BS, BLOCKS):
        before, after, c_before, c_after = _expected(steps, index)
        flash = EmulatedFlash(BS, BLOCKS, image=image, prev_lap=prev)
        store = EnvelopeStore(flash, 0, SLOT)
        cur = store.current()
        where = f"cut in op {index} at byte {nbytes}, fill {fill}"
        assert (cur and cur[0]) in (before, after), where
        if before is not None:
            assert cur is not None, where
        previous = store.previous()
        assert previous is None or previous[0] in (OLD, NEW), where
        assert store.counter in (c_before, c_after), where
        if cuts % 4 == 0:
            try:
                store.write(NEW)
                store.keep_counter(c_after + 1)
            except NorViolation as err:  # pragma: no cover - the failure being tested for
                pytest.fail(f"{where}: {err}")
            again = EnvelopeStore(flash.reboot(), 0, SLOT)
            assert again.current()[0] == NEW and again.counter == c_after + 1, where
        cuts += 1
    print(f"envelope store: {cuts} cut points, each rebooted to the old or the new envelope")
    assert cuts > 4 * (len(OLD) + len(NEW))


def test_a_torn_slot_that_kept_its_header_is_not_taken():
    # the stale fill of a torn erase can leave a header whose CRC checks: the blob's
    # SHA-256 must then refuse it
    dev, _ = _workload()
    store = EnvelopeStore(dev.reboot(), 0, SLOT)
    image = bytearray(store.bd.mem)
    cur_slot = 0 if store._in_force() == 0 else 1
    image[(cur_slot * SLOT) * BS + BLOB_AT + 10] ^= 0x01
    hurt = EnvelopeStore(EmulatedFlash(BS, BLOCKS, image=bytes(image)), 0, SLOT)
    assert hurt.current()[0] == NEW and hurt.previous() is None


def test_the_campaign_catches_a_store_that_writes_in_place():
    dev, steps = _workload(InPlaceStore)
    failures = 0
    for index, _, _, image, prev in replay_cuts(dev.trace, BS, BLOCKS, fills=("ff",)):
        before, after, _, _ = _expected(steps, index)
        cur = InPlaceStore(EmulatedFlash(BS, BLOCKS, image=image, prev_lap=prev), 0, SLOT)
        got = cur.current()
        if (got and got[0]) not in (before, after) or (before is not None and got is None):
            failures += 1
    print(f"in-place store: {failures} cut points leave neither envelope")
    assert failures > 0


def test_a_deploy_writes_an_erased_slot_file_that_holds_every_shipped_envelope(tmp_path):
    # firmware/build.py: a full-core deploy resets the store; boot_main.py boots the
    # deployed envelope into it, then whatever a push put in force
    import build
    from edgegov_fw.envstore import FileBlockDevice, store_blocks

    board = build.load_board("rp2040-pico")
    files = build.full_core_files(OLD, board, b"k" * 32)
    k = build.ENVELOPE_SLOT_BLOCKS
    assert files["envelope.slots"] == b"\xff" * (build.ENVELOPE_BLOCK * store_blocks(k))
    assert f"ENVELOPE_SLOT_BLOCKS = {k}" in files["egboard.py"].decode()
    slots = tmp_path / "envelope.slots"
    slots.write_bytes(files["envelope.slots"])
    store = EnvelopeStore(FileBlockDevice(str(slots), build.ENVELOPE_BLOCK, store_blocks(k)),
                          0, k)
    assert store.boot_blob(OLD) == OLD
    for toml in sorted((REPO / "boards" / "envelopes").glob("*.toml")):
        assert len(compile_file(toml).blob) <= store.capacity, toml.name
