"""The pieces of a signed envelope change on a gateway: the signed message (device, blob
hash, counter), the refusal rules (only DISARMED/TRIPPED, outputs inside the new envelope),
and the atomic store with the previous envelope kept — cut power at every step of an apply
and exactly the old or the new envelope is in force."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from conftest import ENVELOPES, KEY, compile_envelope
from edgegov.config.problems import EnvelopeConfigError
from edgegov.config.push import (
    Push,
    PushError,
    admitted,
    refusal,
    sign,
    sign_push,
    sign_rollback,
    verify,
)
from edgegov.config.store import CURRENT, PREVIOUS, Disk, EnvelopeStore
from edgegov.core import codes
from edgegov.core.envelope import Envelope
from edgegov.core.governor import Governor

CELL = (ENVELOPES / "spindle-cell.toml").read_text()
OLD_TOML = CELL.encode()
NEW_TOML = CELL.replace("max = 120.0", "max = 100.0", 1).encode()  # press tightened
OLD = compile_envelope(OLD_TOML.decode())
NEW = compile_envelope(NEW_TOML.decode())
DEVICE = OLD.admitted.device_id


# ----------------------------------------------------------------------------- signing


def test_a_signed_push_verifies_once_for_its_device():
    push = sign_push(KEY, DEVICE, NEW_TOML, counter=5)
    assert push.sha256 == NEW.hash
    assert verify(KEY, DEVICE, push, last_counter=4) is None
    assert admitted(push)[0].hash == NEW.hash
    assert verify(KEY, DEVICE, push, last_counter=5) == "replayed or stale counter 5 (last 5)"
    assert verify(KEY, "cell-8", push, 4) == "signed for device 'cell-7', this is 'cell-8'"
    assert verify(bytes(32), DEVICE, push, 4) == "bad MAC"
    swapped = Push(push.device, push.action, push.sha256, push.counter, push.mac, OLD_TOML)
    assert verify(KEY, DEVICE, swapped, 4) is None  # the MAC covers the hash, so …
    assert admitted(swapped) == (None, "the envelope does not compile to the signed sha256")
    later = Push(push.device, push.action, push.sha256, 6, push.mac, push.source)
    assert verify(KEY, DEVICE, later, 4) == "bad MAC"  # the counter is under the MAC


def test_rollback_names_the_previous_hash_and_carries_no_envelope():
    rb = sign_rollback(KEY, DEVICE, OLD.digest, counter=7)
    assert rb.source is None and rb.sha256 == OLD.hash
    assert verify(KEY, DEVICE, rb, 6) is None
    # the same hash and counter signed as a push is another message
    as_push = Push(DEVICE, "push", rb.sha256, 7, rb.mac, OLD_TOML)
    assert verify(KEY, DEVICE, as_push, 6) == "bad MAC"


def test_json_round_trip():
    push = sign_push(KEY, DEVICE, NEW_TOML, 9)
    assert Push.from_json(push.to_json()) == push


def test_a_pushed_envelope_is_admitted_again_on_the_gateway():
    bad = CELL.replace('stop = "SS1"', 'stop = "ss1"').encode()
    push = sign(KEY, DEVICE, "push", bytes(32), 3, bad)  # signed, but admission refuses it
    assert verify(KEY, DEVICE, push, 2) is None
    assert admitted(push) == (None, "refused by admission (1 problem): channels.spindle.stop:"
                                    " must be one of STO, SS1 (got 'ss1'; did you mean 'SS1'?)")


@pytest.mark.parametrize(("doc", "message"), [
    ([], "a push must be a JSON object"),
    ({"action": "push"}, "missing field 'counter'"),
    ({"action": "delete", "counter": 1}, "action must be push or rollback (got 'delete')"),
    ({"action": "push", "counter": -1}, "counter must be a whole number in 0..2^64-1"),
    ({"action": "push", "counter": True}, "counter must be a whole number in 0..2^64-1"),
    ({"action": "rollback", "counter": 1, "sha256": "zz", "mac": "00", "device": "d"},
     "malformed field"),
    ({"action": "rollback", "counter": 1, "sha256": "00" * 32, "mac": "00" * 32,
      "device": "d", "toml": "AAAA"},
     "a push carries the envelope (toml), a rollback does not"),
    ({"action": "push", "counter": 1, "sha256": "00" * 31, "mac": "00" * 32, "device": "d",
      "toml": "AAAA"}, "sha256 and mac must be 32 bytes"),
])
def test_malformed_push_is_one_line(doc, message):
    with pytest.raises(PushError) as info:
        Push.from_json(doc)
    assert message in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- when to apply


def booted() -> Governor:
    gov = Governor(Envelope.from_blob(OLD.blob, OLD.digest), KEY)
    gov.start(0)
    return gov


def test_applies_only_when_disarmed_or_tripped():
    gov = booted()
    new = Envelope.from_blob(NEW.blob, NEW.digest)
    assert gov.state == codes.ST_TRIPPED and refusal(gov, new) is None
    gov.state = codes.ST_DISARMED
    assert refusal(gov, new) is None
    gov.state = codes.ST_ARMED
    assert refusal(gov, new) == "refused while ARMED: disarm (or trip) first"
    gov.state = codes.ST_PAUSED
    assert refusal(gov, new) == "refused while PAUSED: disarm (or trip) first"


def test_refused_when_the_outputs_would_breach_the_new_envelope():
    gov = booted()
    gov.out[gov.env.ch_index["press"]] = 1100  # 110.0 mm: inside the old 120, not the new 100
    new = Envelope.from_blob(NEW.blob, NEW.digest)
    assert refusal(gov, new) == ("press's output 1100 lies outside the new range [0, 1000] "
                                 "(scaled)")
    gov.out[gov.env.ch_index["press"]] = 1000
    assert refusal(gov, new) is None


def test_refused_for_another_device_and_for_a_dropped_channel_not_at_rest():
    gov = booted()
    other = compile_envelope(CELL.replace('id = "cell-7"', 'id = "cell-8"'))
    assert refusal(gov, Envelope.from_blob(other.blob)) == (
        "the envelope is for device 'cell-8', this is 'cell-7'")
    start = CELL.index("[channels.coolant]")
    dropped = compile_envelope(CELL[:start] + CELL[CELL.index("[inputs.door_closed]"):])
    gov.out[gov.env.ch_index["coolant"]] = 10
    assert refusal(gov, Envelope.from_blob(dropped.blob)) == (
        "coolant is dropped but its output 10 is not at its safe value")


# ----------------------------------------------------------------------------- the store


def test_apply_keeps_the_previous_and_rollback_swaps_them(tmp_path):
    store = EnvelopeStore(tmp_path)
    assert store.load() == (None, None)
    assert store.apply(OLD_TOML) == OLD.hash
    assert store.apply(NEW_TOML) == NEW.hash
    assert store.load() == (NEW_TOML, OLD_TOML)
    assert store.rollback() == OLD.hash
    assert store.load() == (OLD_TOML, NEW_TOML)


def test_a_refused_envelope_is_never_stored(tmp_path):
    store = EnvelopeStore(tmp_path)
    store.apply(OLD_TOML)
    with pytest.raises(EnvelopeConfigError):
        store.apply(b"[device]\n")
    assert store.load() == (OLD_TOML, None)


def test_rollback_without_a_previous_is_refused(tmp_path):
    store = EnvelopeStore(tmp_path)
    store.apply(OLD_TOML)
    with pytest.raises(FileNotFoundError, match="no previous envelope"):
        store.rollback()


def test_a_torn_current_file_is_never_taken_for_an_envelope(tmp_path):
    (tmp_path / CURRENT).write_bytes(OLD_TOML[: OLD_TOML.index(b"[link]") + 3])
    with pytest.raises(EnvelopeConfigError):
        EnvelopeStore(tmp_path).load()


class Crash(Exception):
    pass


class CrashingDisk(Disk):
    """An in-memory disk that cuts power before operation ``at`` (counted from 0): what a
    process saw (``seen``) is lost, what was synced (``durable``) stays, a write in flight is
    torn to ``torn`` bytes, and renames not yet made durable by a directory sync survive
    only as ``keep`` says (any subset: the file system orders nothing)."""

    def __init__(self, durable: dict, at: int, torn: int = 0, keep=()) -> None:
        self.durable = dict(durable)
        self.seen = dict(durable)
        self.pending: list[tuple[str, str]] = []
        self.at, self.torn, self.keep, self.ops = at, torn, keep, 0

    def _op(self) -> None:
        if self.ops == self.at:
            self._cut()
        self.ops += 1

    def _cut(self):
        for i, (src, dst) in enumerate(self.pending):
            if i in self.keep and src in self.durable:
                self.durable[dst] = self.durable.pop(src)
        raise Crash

    def write(self, path, data):
        if self.ops == self.at:
            self.durable[path.name] = data[: self.torn]
        self._op()
        self.seen[path.name] = self.durable[path.name] = data

    def read(self, path):
        return self.seen.get(path.name)

    def rename(self, src, dst):
        self._op()
        self.seen[dst.name] = self.seen.pop(src.name)
        self.pending.append((src.name, dst.name))

    def sync_dir(self, path):
        self._op()
        for src, dst in self.pending:
            self.durable[dst] = self.durable.pop(src)
        self.pending = []

    def remove(self, path):
        self._op()
        self.seen.pop(path.name, None)
        self.durable.pop(path.name, None)


class MemDisk(CrashingDisk):
    def __init__(self, durable: dict) -> None:
        super().__init__(durable, at=-1)


def test_a_power_cut_at_every_step_leaves_exactly_the_old_or_the_new(tmp_path):
    before = {CURRENT: OLD_TOML, PREVIOUS: b"older"}
    outcomes = set()
    cuts = 0
    for at in range(8):
        for torn in (0, 1, len(NEW_TOML) // 2):
            for keep in [set(s) for n in range(3) for s in itertools.combinations(range(2), n)]:
                disk = CrashingDisk(before, at, torn, keep)
                try:
                    EnvelopeStore(tmp_path, disk).apply(NEW_TOML)
                except Crash:
                    cuts += 1
                rebooted = EnvelopeStore(tmp_path, MemDisk(disk.durable))
                current, _ = rebooted.load()
                assert current in (OLD_TOML, NEW_TOML), (at, torn, keep)
                outcomes.add(hashlib.sha256(current).hexdigest())
                assert not any(name.endswith(".new") for name in rebooted.disk.durable)
    # both ends reached: the cuts did land
    assert outcomes == {hashlib.sha256(t).hexdigest() for t in (OLD_TOML, NEW_TOML)}
    assert cuts > 20
