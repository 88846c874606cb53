"""Replay exactness and what-if: long randomized governor runs through a real lineage ring.

Each run drives the governor with a random mix of commands (valid, out of range, too fast,
NaN, ±Inf, bools, unknown names, stale sequence numbers), telemetry (door, e-stop,
pressure, stale gaps), operator actions (reset, arm, pause, resume, mode, approve, deny,
e-stop; correctly signed, forged and replayed), faults and ticks at random intervals, and
records it with ``Lineage`` into a ring. Replay must reproduce every record byte for byte.
"""

import random
from decimal import Decimal

import pytest
from edgegov.config.compile import compile_file, compile_text
from edgegov.core import codes
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.events import TICK, Command, Fault, Operator, Telemetry
from edgegov.core.governor import Governor
from edgegov.core.lineage import Lineage
from edgegov.core.replay import Replayer, envelopes_in
from edgegov.core.ring import RingLog
from edgegov.demo import EXAMPLE
from edgegov.host.lineage_store import load_envelope
from edgegov.operator import OperatorSigner
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = b"replay-test-key-0123456789abcdef"
OPS = (codes.OP_RESET, codes.OP_ARM, codes.OP_PAUSE, codes.OP_RESUME, codes.OP_MODE,
       codes.OP_APPROVE, codes.OP_DENY, codes.OP_ESTOP)


class RandomWorld:
    """A misbehaving world that reacts to the governor (so it gets armed often enough to
    see every verdict): commands good and bad, telemetry, operator actions signed,
    forged and replayed, faults and ticks, mostly at a 10 ms period with silences."""

    def __init__(self, seed: int, signer: OperatorSigner):
        self.rng = random.Random(seed)
        self.signer = signer
        self.now = 0
        self.seq = 0
        self.door, self.estop, self.pressure = True, False, 2000
        self.spindle = 0
        self.asked = []

    def next(self, d):
        rng = self.rng
        self.now += rng.choice((10,) * 12 + (1, 5, 20, 200, 700))
        for k in range(d.n_events):
            if d.ev_code[k] == codes.E_APPROVAL_ASKED:
                self.asked.append(d.ev_arg[k])
        if d.state == codes.ST_TRIPPED:
            if rng.random() < 0.15:
                return Fault(rng.randint(0, 3), False)  # the cause goes away
            if rng.random() < 0.2:
                return self._op(codes.OP_RESET, 0)
        if d.state in (codes.ST_DISARMED, codes.ST_PAUSED) and rng.random() < 0.2:
            action = codes.OP_ARM if d.state == codes.ST_DISARMED else codes.OP_RESUME
            mode = 1 if rng.random() < 0.15 else 0
            return self._op(rng.choice((action, action, codes.OP_MODE)), mode)
        roll = rng.random()
        if roll < 0.55:
            return self._command()
        if roll < 0.8:
            return self._telemetry()
        if roll < 0.86:
            if self.asked and rng.random() < 0.6:
                return self._op(rng.choice((codes.OP_APPROVE, codes.OP_DENY)), self.asked.pop())
            return self._op(rng.choice(OPS), rng.randint(0, 1))
        if roll < 0.865:
            return Fault(rng.randint(0, 3), rng.random() < 0.3)
        return TICK

    def _command(self):
        rng = self.rng
        self.seq += 1 if rng.random() > 0.02 else -1
        self.spindle = max(0, min(7_600, self.spindle + rng.choice((-40, 0, 20, 40, 300))))
        spindle = self.spindle
        spike = rng.random()
        if spike < 0.04:
            spindle = rng.choice((9_000, 9_500, 12_000))  # approval needed, or beyond it
        values = {"spindle": spindle, "press": rng.randint(0, 7) * 40,
                  "coolant": rng.randint(0, 100)}
        bad = rng.random()
        if bad < 0.02:
            values["spindle"] = rng.choice([float("nan"), float("inf"), True, "x", 1 << 80])
        elif bad < 0.03:
            values["turbo"] = 1
        elif bad < 0.04:
            values = {}
        elif bad < 0.3:
            del values["coolant"]
        return Command(self.seq, values)

    def _telemetry(self):
        rng = self.rng
        if rng.random() < 0.01:
            self.door = not self.door
        if rng.random() < 0.005 or (self.estop and rng.random() < 0.2):
            self.estop = not self.estop
        if not self.door and rng.random() < 0.2:
            self.door = True
        self.pressure = rng.choice((self.pressure,) * 8 + (300, 2000))
        return Telemetry({"door_closed": self.door, "estop_button": self.estop,
                          "hydraulic_pressure": self.pressure})

    def _op(self, action, arg):
        op = self.signer.sign(action, arg)
        forge = self.rng.random()
        if forge < 0.04:
            return Operator(op.action, op.arg, op.counter, bytes(32))
        if forge < 0.08:
            return Operator(op.action, op.arg, max(0, op.counter - 2), op.mac)
        return op


def random_run(seed, count, env, blob, **ring):
    """Drive a governor with a ``RandomWorld`` while recording; returns
    (ring, [(now, event)], [decision snapshots])."""
    world = RandomWorld(seed, OperatorSigner(KEY, env.device_id))
    gov = Governor(env, KEY)
    lineage = _lineage(env, **ring)
    d = lineage.boot(gov, 0, envelope_blob=blob)
    events, seen = [], []
    for _ in range(count):
        event = world.next(d)
        d = gov.handle(event, world.now)
        events.append((world.now, event))
        seen.append(d.snapshot())
        lineage.record(event, world.now, d, gov)
    lineage.checkpoint(gov, world.now)
    return lineage.ring, events, seen


def _lineage(env, block_size=4096, blocks=64, checkpoint_every=64, freeze_after=64):
    ring = RingLog(RamBlockDevice(block_size, blocks))
    ring.format()
    return Lineage(ring, env, KEY, checkpoint_every=checkpoint_every, freeze_after=freeze_after)


def record_run(events, env, blob, **ring):
    lineage = _lineage(env, **ring)
    gov = Governor(env, KEY)
    lineage.boot(gov, 0, envelope_blob=blob)
    seen = []
    for now, event in events:
        d = gov.handle(event, now)
        seen.append(d.snapshot())
        lineage.record(event, now, d, gov)
    lineage.checkpoint(gov, events[-1][0] if events else 0)
    return lineage.ring, seen, gov


def _spindle_env(text=None):
    compiled = compile_text(text, "test.toml") if text else compile_file(EXAMPLE)
    return Envelope.from_blob(compiled.blob, compiled.digest), compiled.blob


def _replay(ring, **kw):
    records = ring.read_all()
    return Replayer(envelopes_in(records, load_envelope), **kw).run(records)


@pytest.mark.parametrize("seed", range(6))
def test_long_random_run_replays_with_zero_divergence(seed):
    env, blob = _spindle_env()
    ring, _events, seen = random_run(seed, 4000, env, blob)
    verdicts = {s["verdict"] for s in seen}
    assert verdicts == {codes.ALLOW, codes.CLAMP, codes.REJECT, codes.ESCALATE, codes.HOLD,
                        codes.TRIP}, verdicts
    report = _replay(ring)
    assert report.identical, [(d.seq, d.note) for d in report.divergences[:3]]
    assert report.anchors[0] == (0, "boot")
    assert report.compared == len(ring.read_all()) - 1  # every record but ENVELOPE


def test_replay_with_the_device_key_reverifies_operator_macs():
    env, blob = _spindle_env()
    ring, _, _ = random_run(42, 2000, env, blob)
    assert _replay(ring, key=KEY).identical
    # With a wrong key every authentic action now fails its check: replay must diverge.
    assert not _replay(ring, key=b"another-key-000000000000000000000").identical


def test_wrapped_ring_replays_from_its_first_surviving_checkpoint():
    env, blob = _spindle_env()
    ring, _, _ = random_run(7, 6000, env, blob, block_size=1024, blocks=24, checkpoint_every=32,
                            freeze_after=None)
    records = ring.read_all()
    assert records[0][0] > 0, "the ring should have wrapped"
    # 1 KiB sectors cannot hold the envelope record: it comes from the user (--envelope).
    assert not envelopes_in(records, load_envelope)
    report = Replayer({env.digest: env}).run(records)
    assert report.identical, [(d.seq, d.note) for d in report.divergences[:3]]
    assert report.anchors[0][1] == "checkpoint"
    assert report.compared > 200


def test_a_changed_record_is_reported_as_a_divergence_at_its_seq():
    env, blob = _spindle_env()
    ring, _, _ = random_run(3, 1500, env, blob)
    records = ring.read_all()
    # Rewrite one DECISION's verdict/reason field (as a forger who recomputed CRCs would).
    from edgegov.core import cbor

    for index, (seq, payload) in enumerate(records):
        rec = cbor.loads(payload)
        if rec[0] == 2 and rec[4] // 64 == codes.CLAMP:
            rec[4] = codes.ALLOW * 64
            records[index] = (seq, cbor.dumps(rec))
            break
    else:
        pytest.fail("no clamp to tamper with")
    report = Replayer(envelopes_in(records, load_envelope)).run(records)
    assert not report.identical
    assert report.divergences[0].seq == seq


TIGHTER = {"max = 8000": "max = 5000"}


def test_what_if_with_a_tightened_envelope_lists_exactly_the_decisions_that_change():
    text = EXAMPLE.read_text()
    tight = text
    for old, new in TIGHTER.items():
        assert old in tight
        tight = tight.replace(old, new, 1)
    tight = tight.replace('on_breach = "escalate"', 'on_breach = "clamp"', 1)
    tight = tight.replace("approved_max = 10000\n", "", 1)
    env_a, blob_a = _spindle_env(text.replace('on_breach = "escalate"', 'on_breach = "clamp"', 1)
                                 .replace("approved_max = 10000\n", "", 1))
    env_b, _ = _spindle_env(tight)
    rng = random.Random(5)
    signer_a = OperatorSigner(KEY, env_a.device_id)
    events = [(0, Telemetry({"door_closed": True, "estop_button": False,
                             "hydraulic_pressure": 2000})),
              (1, signer_a.sign(codes.OP_RESET)), (2, signer_a.sign(codes.OP_ARM))]
    now, seq, target = 2, 0, 0
    for k in range(3000):  # an always-live link and fresh inputs: no tick-driven effects
        now += 10
        seq += 1
        if k % 300 == 0:
            target = rng.choice((2000, 4000, 6000, 7500))
        events.append((now, Command(seq, {"spindle": target, "press": 100})))
        if k % 10 == 0:
            events.append((now, Telemetry({"door_closed": True, "estop_button": False,
                                           "hydraulic_pressure": 2000})))
    ring, seen_a, _ = record_run(events, env_a, blob_a)
    # Independent expectation: run envelope B live over the same full stream.
    gov_b = Governor(env_b, KEY)
    gov_b.start(0)
    expected = set()
    for i, (now, event) in enumerate(events):
        d = gov_b.handle(event, now)
        a = seen_a[i]
        if event.kind == codes.EV_TICK and not a["record"]:
            continue
        rule_a = env_a.rules[a["rule"]] if a["rule"] >= 0 else ""
        rule_b = env_b.rules[d.rule] if d.rule >= 0 else ""
        if (a["verdict"], rule_a, a["output"]) != (d.verdict, rule_b, list(d.output)):
            expected.add((now, getattr(event, "seq", None)))
    assert len(expected) > 100
    report = _replay(ring, what_if=env_b)
    got = {(d.t, getattr(d.recorded.event, "seq", None)) for d in report.divergences}
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_replaying_arbitrary_payloads_raises_only_project_errors(payload):
    env, blob = _spindle_env()
    replayer = Replayer({env.digest: env})
    try:
        replayer.step(0, payload)
        replayer.step(1, payload)
    except Exception as err:  # noqa: BLE001 - the point is which errors escape
        from edgegov.core.replay import ReplayError

        assert isinstance(err, ReplayError), repr(err)


def test_values_scale_through_the_compiled_envelope():
    compiled = compile_file(EXAMPLE)
    assert compiled.to_scaled("press", Decimal("12.3")) == 123
    assert compiled.from_scaled("press", 123) == Decimal("12.3")
