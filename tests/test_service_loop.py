"""The service loop without the network, on scripted time: wire decoding hands raw values
to the governor, refusals are published with reasons, the lineage records them, fuzzed
payloads never crash nor move an output outside the envelope nor refresh liveness; the
reconnect delay schedule and period deadlines are pure functions."""

from __future__ import annotations

import json
import math
import os

from edgegov.adapters.resilience import Backoff, Outbox, backoff_delay_ms
from edgegov.config.compile import compile_file
from edgegov.core import codes
from edgegov.core.envelope import Envelope
from edgegov.core.governor import Governor
from edgegov.core.record import K_DECISION, decode
from edgegov.core.replay import Replayer
from edgegov.core.verify import verify
from edgegov.host.lineage_store import open_lineage, read_dump
from edgegov.operator import OperatorSigner
from edgegov.service.clock import ScriptedClock, next_deadline_ms
from edgegov.service.loop import GovernorService
from edgegov.service.topics import Topics
from edgegov.service.wire import (
    MAX_PAYLOAD_BYTES,
    Scaler,
    decode_command,
    decode_operator,
    decode_telemetry,
    encode_operator,
)
from hypothesis import given
from hypothesis import strategies as st
from service_harness import ENVELOPE, KEY

COMPILED = compile_file(ENVELOPE)
ENV = Envelope.from_blob(COMPILED.blob, COMPILED.digest)
SCALER = Scaler(COMPILED)


def cmd(doc) -> object:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return decode_command(raw, SCALER)


def test_engineering_units_become_scaled_ints():
    ev = cmd({"seq": 3, "values": {"spindle": 1500, "press": 40.25, "coolant": 7}}).event
    assert ev.seq == 3 and ev.values == {"spindle": 1500, "press": 402, "coolant": 7}


def test_raw_bad_values_reach_the_governor_as_they_came():
    ev = decode_command(b'{"seq":1,"values":{"spindle":NaN,"press":-Infinity}}', SCALER).event
    assert math.isnan(ev.values["spindle"]) and ev.values["press"] == -math.inf
    assert cmd({"seq": 1, "values": [1, 2]}).event.values == [1, 2]
    assert cmd({"seq": 1, "values": {"spindle": "9"}}).event.values == {"spindle": "9"}
    assert cmd({"seq": 1, "values": {"spindle": True}}).event.values == {"spindle": True}
    huge = decode_command(b'{"seq":1,"values":{"spindle":1e999999999}}', SCALER).event
    assert huge.values["spindle"] > 1 << 40


def test_unusable_payloads_carry_a_note():
    assert cmd(b"{nope").note == "malformed_json"
    assert cmd(b"[1]").note == "not_an_object"
    assert cmd(b" " * (MAX_PAYLOAD_BYTES + 1)).note == "oversized"
    many = {"seq": 1, "values": {f"k{i}": i for i in range(100)}}
    assert cmd(many).note == "oversized"
    assert cmd(many).event.values is None


def make_service(tmp_path=None):
    gov = Governor(ENV, KEY)
    posted = []
    lineage = None
    if tmp_path is not None:
        lineage = open_lineage(tmp_path / "l.bin", ENV, KEY, group_commit=True, durable=False,
                               block_count=32)
    svc = GovernorService(gov, Topics(ENV.device_id), lambda *a: posted.append(a), lineage)
    svc.boot(0, COMPILED.blob)
    return svc, posted


def messages(posted, kind):
    return [json.loads(p[1]) for p in posted if p[0].endswith("/" + kind)]


def test_refusals_are_published_with_reasons_and_recorded(tmp_path):
    svc, posted = make_service(tmp_path)
    clock = ScriptedClock()
    svc.cycle(clock.advance(5))  # the never-seen e-stop input trips first: causes settled
    svc.submit(cmd(b"{nope"), clock.advance(5))
    svc.submit(cmd({"seq": 2, "values": {"turbo": 1}}), clock.advance(5))
    # bad telemetry while TRIPPED keeps its own verdict and reason (only ticks show the regime)
    svc.submit(decode_telemetry(b'{"values":{"door_closed":1}}', SCALER), clock.advance(5))
    svc.cycle(clock.advance(5))
    refusals = [(m["input"], m["reason"], m.get("note")) for m in messages(posted, "event")
                if m["event"] == "rejected"]
    assert refusals == [("command", "wrong_type", "malformed_json"),
                        ("command", "unknown_channel", None),
                        ("telemetry", "wrong_type", None)]
    svc.stop(clock.advance(5))
    dump = read_dump(tmp_path / "l.bin")
    assert verify(dump.records, dump.problems, KEY, dump.offsets, 0).ok
    assert Replayer(dump.envelopes()).run(dump.records).identical


def test_input_after_the_orderly_stop_is_dropped_and_the_lineage_stays_sealed(tmp_path):
    svc, posted = make_service(tmp_path)
    clock = ScriptedClock()
    svc.cycle(clock.advance(5))
    svc.stop(clock.advance(5))
    before = (tmp_path / "l.bin").read_bytes()
    sent = len(posted)
    # a command and a cycle that arrive while the broker link drains
    assert svc.submit(cmd({"seq": 1, "values": {"spindle": 0}}), clock.advance(5)) is None
    assert svc.healthy and len(posted) == sent
    assert (tmp_path / "l.bin").read_bytes() == before
    dump = read_dump(tmp_path / "l.bin")
    assert verify(dump.records, dump.problems, KEY, dump.offsets, 0).ok


def test_decide_then_settle_keeps_the_lineage_in_decision_order(tmp_path):
    """An adapter may perform a decision's effects before its record (``decide``); any
    later entry point records the pending one first, so the lineage order is the decision
    order, and nothing is published before ``settle``."""
    svc, posted = make_service(tmp_path)
    clock = ScriptedClock()
    seen = []
    svc.outputs = lambda scaled, now: seen.append((now, list(scaled)))
    svc.cycle(clock.advance(5))
    before = len(posted)
    t1 = clock.advance(5)
    d = svc.decide(cmd({"seq": 1, "values": {"turbo": 1}}), t1)
    assert d.verdict == codes.REJECT and len(posted) == before  # decided, not yet published
    svc.submit(cmd({"seq": 2, "values": {"nope": 1}}), clock.advance(5))  # settles seq 1 first
    svc.decide(cmd({"seq": 3, "values": {"x": 1}}), clock.advance(5))
    svc.cycle(clock.advance(5))  # settles seq 3 before its tick
    decisions = [m["seq"] for m in messages(posted, "decision")]
    assert decisions == [1, 2, 3]
    assert svc.settle() is None  # nothing pending: a no-op
    svc.stop(clock.advance(5))
    dump = read_dump(tmp_path / "l.bin")
    assert verify(dump.records, dump.problems, KEY, dump.offsets, 0).ok
    assert Replayer(dump.envelopes()).run(dump.records).identical
    kinds = [decode(payload)[0] for _, payload in dump.records]
    assert kinds.count(K_DECISION) == 3


def test_operator_wire_round_trip():
    signer = OperatorSigner(KEY, ENV.device_id)
    op = signer.sign(codes.OP_MODE, 1)
    ev = decode_operator(encode_operator(op.action, op.arg, op.counter, op.mac)).event
    assert (ev.action, ev.arg, ev.counter, ev.mac) == (op.action, 1, op.counter, op.mac)
    assert decode_operator(b'{"action":"launch","counter":1}').event.action == "launch"


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4)
                          | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12)
channel_values = st.dictionaries(st.sampled_from(["spindle", "press", "coolant", "turbo"]),
                                 json_value, max_size=4)
payloads = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda s, v: json.dumps({"seq": s, "values": v}).encode(), json_value,
              channel_values),
    st.builds(lambda v: json.dumps({"values": v}).encode(),
              st.dictionaries(st.sampled_from(["door_closed", "estop_button",
                                               "hydraulic_pressure", "x"]), json_value)),
)


@given(st.lists(st.tuples(st.sampled_from(["cmd", "telemetry", "op"]), payloads), max_size=30))
def test_fuzzed_payloads_never_crash_nor_leave_the_envelope(stream):
    svc, _ = make_service()
    gov = svc.gov
    signer = OperatorSigner(KEY, ENV.device_id)
    now = 0
    for action in (codes.OP_RESET, codes.OP_ARM):  # armed: the worst case for outputs
        svc.submit(decode_telemetry(json.dumps({"values": {
            "door_closed": True, "estop_button": False, "hydraulic_pressure": 200}}).encode(),
            SCALER), now)
        op = signer.sign(action)
        svc.submit(decode_operator(encode_operator(op.action, op.arg, op.counter, op.mac)), now)
    liveness = gov.last_valid_ms
    decode = {"cmd": lambda p: decode_command(p, SCALER),
              "telemetry": lambda p: decode_telemetry(p, SCALER), "op": decode_operator}
    for topic, payload in stream:
        now += 3
        before = gov.last_valid_ms
        decision = svc.submit(decode[topic](payload), now)
        if decision is not None and decision["verdict"] in ("REJECT",):
            assert gov.last_valid_ms == before  # refused input never counts as liveness
        svc.cycle(now)
        for i in range(ENV.n):
            lo = min(ENV.mode_min[m][i] for m in range(len(ENV.modes)))
            hi = max(ENV.mode_amax[m][i] for m in range(len(ENV.modes)))
            assert lo <= gov.out[i] <= hi
    assert gov.last_valid_ms >= liveness


def test_backoff_schedule_is_exponential_capped_and_jittered_down():
    assert [backoff_delay_ms(a) for a in range(8)] == [100, 200, 400, 800, 1600, 3200, 5000,
                                                       5000]
    assert backoff_delay_ms(10_000) == 5000
    assert backoff_delay_ms(3, jitter=0.5, u=0.5) == 600
    b = Backoff(base_ms=50, cap_ms=300)
    assert [b.next_ms() for _ in range(4)] == [50, 100, 200, 300]
    b.reset()
    assert b.next_ms() == 50


def test_outbox_drops_oldest_and_supersedes_retained_state():
    box = Outbox(limit=3)
    for i in range(5):
        box.post("t/decision", str(i).encode())
    assert box.dropped == 2 and [it[1] for it in box.items] == [b"2", b"3", b"4"]
    box = Outbox()
    box.post("t/state", b"old", 1, True)
    box.post("t/state", b"new", 1, True)
    assert [box.superseded(it) for it in box.items] == [True, False]


def test_period_deadlines_skip_missed_periods_instead_of_bursting():
    assert next_deadline_ms(100, 105, 10) == 110
    assert next_deadline_ms(100, 145, 10) == 150  # 4 periods late: resume on the grid


def test_estop_relay_readback_mismatch_is_a_fault():
    from edgegov.host.estop import MqttRelayEstop

    gov = Governor(ENV, KEY)
    posted = []
    relay = MqttRelayEstop(lambda *a: posted.append(a), Topics(ENV.device_id).estop_set, 500)
    svc = GovernorService(gov, Topics(ENV.device_id), lambda *a: posted.append(a), estop=relay)
    svc.boot(0)
    assert json.loads(posted[0][1]) == {"estop": True} and posted[0][3] is True  # retained
    svc.cycle(490)
    assert not gov.faults
    svc.cycle(500)  # asserted, never confirmed: a fault, latched as a trip cause
    assert gov.faults & (1 << 1) and "fault" in [m["event"] for m in messages(posted, "event")]
    svc.estop_readback(b'{"estop": true}', 510)
    svc.cycle(520)
    assert not gov.faults
    assert "fault_cleared" in [m["event"] for m in messages(posted, "event")]


def _durable_service(tmp_path):
    gov = Governor(ENV, KEY)
    lineage = open_lineage(tmp_path / "l.bin", ENV, KEY, group_commit=True, durable=True,
                           block_count=32)
    posted = []
    svc = GovernorService(gov, Topics(ENV.device_id), lambda *a: posted.append(a), lineage)
    svc.boot(0, COMPILED.blob)
    return svc, lineage.device, posted


def test_the_period_commit_runs_on_a_worker_and_a_lag_withholds_the_kick(tmp_path):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from edgegov.service.loop import COMMIT_LAG_LIMIT

    svc, dev, _ = _durable_service(tmp_path)
    clock = ScriptedClock()
    assert svc.cycle(clock.advance(10)) is True
    running = dev._commit
    assert running is not None  # an fdatasync handed to the worker thread
    running.result(5)
    assert dev.datasyncs >= 1
    # A disk that does not answer: the worker is stuck, so the next commit cannot finish.
    gate = threading.Event()
    dev._worker.shutdown(wait=True)
    dev._worker = ThreadPoolExecutor(1)
    dev._worker.submit(gate.wait, 10)
    kicks = []
    try:
        for i in range(COMMIT_LAG_LIMIT + 4):
            svc.submit(cmd({"seq": i + 1, "values": {"coolant": 0}}), clock.advance(1))
            kicks.append(svc.cycle(clock.advance(10)))
        # the stretch's first commit waits behind the stuck disk and is still running at
        # every later period: the kick stops once it has run for more than the limit
        assert kicks == [True] * (COMMIT_LAG_LIMIT + 1) + [False] * 3
        assert dev.lag == COMMIT_LAG_LIMIT + 3
    finally:
        gate.set()
    dev._commit.result(5)
    assert svc.cycle(clock.advance(10)) is True  # the disk answered: fed again
    assert dev.lag == 0
    svc.stop(clock.advance(10))


def test_a_failed_commit_is_a_lineage_fault(tmp_path):
    svc, dev, posted = _durable_service(tmp_path)
    clock = ScriptedClock()
    svc.cycle(clock.advance(10))
    dev._commit.result(5)
    assert not svc.gov.causes & codes.C_FAULT
    # The medium fails the next fdatasync for real: fdatasync on a pipe is EINVAL.
    r, w = os.pipe()
    real = dev.fd
    dev.fd, dev._dirty = w, True
    dev.commit_soon()
    assert isinstance(dev._commit.exception(5), OSError)
    dev.fd = real
    assert svc.cycle(clock.advance(10)) is False  # the failure is seen: no kick
    assert svc.lineage_errors == 1
    svc.cycle(clock.advance(10))  # the pending fault is decided: latched
    assert svc.gov.causes & codes.C_FAULT
    faults = [m for m in messages(posted, "event") if m["event"] == "fault"]
    assert faults and faults[0].get("fault") == "lineage", faults
    os.close(r)
    os.close(w)
    svc.stop(clock.advance(10))
