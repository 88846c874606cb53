"""Every value shape a peer can send replays byte for byte.

Payloads go through the real intake: MQTT JSON through the wire decoder into the service
loop (``GovernorService`` on scripted time), Modbus register writes through the PLC
frontend into the same loop, and serial link frames through the board loop
(``firmware/edgegov_fw``) with a fake HAL. Whatever arrives (arrays, objects, nesting, big
integers, floats, NaN, text with lone surrogates, booleans, null, half register pairs,
malformed frames) is decided, recorded with nothing lost, and a fresh replay of the file or
ring reproduces every record exactly; verify finds nothing wrong.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from edgegov.adapters import modbus_map as mm
from edgegov.adapters.modbus_server import PlcFrontend
from edgegov.config.compile import compile_file
from edgegov.core import codes
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.governor import Governor
from edgegov.core.lineage import Lineage
from edgegov.core.record import K_DECISION, K_EVENT, decode
from edgegov.core.replay import Replayer, envelopes_in
from edgegov.core.ring import RingLog
from edgegov.core.verify import verify
from edgegov.host.lineage_store import load_envelope, open_lineage, read_dump
from edgegov.operator import OperatorSigner
from edgegov.service.loop import GovernorService
from edgegov.service.topics import Topics
from edgegov.service.wire import (
    Scaler,
    decode_command,
    decode_operator,
    decode_telemetry,
    encode_operator,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_harness import ENVELOPE, KEY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))

from edgegov_fw.link import frame  # noqa: E402
from edgegov_fw.loop import BoardLoop  # noqa: E402

COMPILED = compile_file(ENVELOPE)
ENV = Envelope.from_blob(COMPILED.blob, COMPILED.digest)
SCALER = Scaler(COMPILED)
PLANT = b'{"values":{"door_closed":true,"estop_button":false,"hydraulic_pressure":200.0}}'


class RawNumber(str):
    """A JSON number written exactly as given (1e999, -0.0, 1E-400, 25 digits, ...)."""


def to_json(v) -> str:
    """JSON text of ``v``: like json.dumps (NaN, Infinity and lone surrogates as Python
    writes them), with ``RawNumber`` as is."""
    if isinstance(v, RawNumber):
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k) + ":" + to_json(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(to_json(x) for x in v) + "]"
    return json.dumps(v)


texts = st.one_of(st.text(max_size=6),
                  st.text(st.characters(exclude_categories=()), max_size=4),  # surrogates too
                  st.sampled_from(["\ud800", "a\udfffb", "spindle", "press", "é", ""]))
raw_numbers = st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,12})?([eE][+-]?[0-9]{1,4})?",
                            fullmatch=True).map(RawNumber)
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(1 << 80), 1 << 80), st.integers(-2000, 9000),
    st.floats(allow_nan=True, allow_infinity=True), raw_numbers, texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=6)
channel_values = st.one_of(st.integers(-100, 9000), json_values)
names = st.one_of(st.sampled_from(["spindle", "press", "coolant", "pump"]), texts)
value_maps = st.dictionaries(names, channel_values, max_size=4)
inputs = st.dictionaries(
    st.one_of(st.sampled_from(["door_closed", "estop_button", "hydraulic_pressure"]), texts),
    st.one_of(st.booleans(), st.integers(0, 4000), json_values), max_size=4)

commands = st.fixed_dictionaries({"seq": st.one_of(st.just("next"), json_values),
                                  "values": st.one_of(value_maps, value_maps, json_values)})
operators = st.fixed_dictionaries({
    "action": st.one_of(st.sampled_from(["arm", "reset", "pause", "mode", "nope"]), json_values),
    "arg": json_values, "counter": json_values,
    "mac": st.one_of(st.just("00" * 32), json_values)})
messages = st.lists(st.one_of(
    st.tuples(st.just("cmd"), commands),
    st.tuples(st.just("telemetry"), st.fixed_dictionaries({"values": st.one_of(inputs,
                                                                                json_values)})),
    st.tuples(st.just("op"), operators),
    st.tuples(st.just("raw"), st.binary(max_size=20)),
    st.tuples(st.just("tick"), st.integers(1, 300)),
), min_size=1, max_size=25)


class Intake:
    """The service loop on scripted time over a real lineage file, armed to begin with."""

    def __init__(self, workdir: Path):
        self.path = workdir / "values.lineage"
        lineage = open_lineage(self.path, ENV, KEY, group_commit=True, durable=False,
                               block_count=64)
        self.svc = GovernorService(Governor(ENV, KEY), Topics(ENV.device_id), lambda *a: None,
                                   lineage)
        self.signer = OperatorSigner(KEY, ENV.device_id)
        self.now = 0
        self.seq = 0
        self.svc.boot(0, COMPILED.blob)
        self.telemetry(PLANT)
        for action in (codes.OP_RESET, codes.OP_ARM):
            op = self.signer.sign(action, 0)
            self.op(encode_operator(op.action, op.arg, op.counter, op.mac))

    def advance(self, ms: int = 10) -> None:
        self.now += ms
        self.svc.cycle(self.now)

    def command(self, payload: bytes) -> None:
        self.advance()
        self.svc.submit(decode_command(payload, SCALER), self.now)

    def telemetry(self, payload: bytes) -> None:
        self.advance()
        self.svc.submit(decode_telemetry(payload, SCALER), self.now)

    def op(self, payload: bytes) -> None:
        self.advance()
        self.svc.submit(decode_operator(payload), self.now)

    def send(self, kind: str, doc) -> None:
        if kind == "tick":
            self.advance(doc)
            return
        if kind == "raw":
            self.command(doc)
            return
        if kind == "cmd" and doc["seq"] == "next":
            self.seq += 1
            doc = {**doc, "seq": self.seq}
        payload = to_json(doc).encode()
        {"cmd": self.command, "telemetry": self.telemetry, "op": self.op}[kind](payload)

    def close(self):
        self.svc.stop(self.now + 1)
        assert self.svc.lineage_errors == 0, "a record was lost"
        return read_dump(self.path)


def assert_replays_exactly(records, envelopes=None) -> None:
    envelopes = envelopes if envelopes is not None else envelopes_in(records, load_envelope)
    report = Replayer(envelopes).run(records)
    assert report.identical, [(d.seq, d.note, d.recorded and vars(d.recorded))
                              for d in report.divergences[:2]]
    assert report.skipped == 0
    rep = verify(records)
    assert rep.ok, [str(f) for f in rep.findings]


def test_an_array_value_is_recorded_as_marker_4_rejected_and_replays_exactly(tmp_path):
    intake = Intake(tmp_path)
    intake.command(b'{"seq":1,"values":{"pump":[1]}}')
    intake.command(b'{"seq":2,"values":{"spindle":[1]}}')
    intake.command(b'{"seq":[3],"values":{"spindle":1}}')
    intake.op(b'{"action":[1],"arg":{"a":[2]},"counter":[3]}')
    dump = intake.close()
    decisions = [decode(p) for _, p in dump.records if decode(p)[0] == K_DECISION]
    pump, spindle, seq = decisions[-3:]
    assert pump[3] == [["pump", [4]]]
    assert pump[4] == codes.REJECT * 64 + codes.R_UNKNOWN_CHANNEL
    assert spindle[3] == [[ENV.ch_index["spindle"], [4]]]
    assert spindle[4] == codes.REJECT * 64 + codes.R_WRONG_TYPE
    assert seq[2] == [4] and seq[4] == codes.REJECT * 64 + codes.R_WRONG_TYPE
    op = decode(dump.records[-2][1])  # the last EVENT before the closing checkpoint
    assert op[0] == K_EVENT and op[2][1:4] == [[4], [4], [4]]
    assert_replays_exactly(dump.records)


def test_text_with_a_lone_surrogate_is_recorded_and_replays_exactly(tmp_path):
    intake = Intake(tmp_path)
    intake.command(b'{"seq":1,"values":{"spindle":"\\ud800"}}')
    intake.command(b'{"seq":2,"values":{"\\udfff":1,"\\ud800x":2}}')
    intake.telemetry(b'{"values":{"door_closed":"\\ud83d"}}')
    dump = intake.close()
    spindle = decode(dump.records[-4][1])
    # [6, bytes]: the text's UTF-8 with the surrogate as three bytes
    assert spindle[3] == [[ENV.ch_index["spindle"], [6, b"\xed\xa0\x80"]]]
    keys = decode(dump.records[-3][1])[3]
    assert keys == [[[6, b"\xed\xa0\x80x"], 2], [[6, b"\xed\xbf\xbf"], 1]]
    assert_replays_exactly(dump.records)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_any_json_a_peer_sends_replays_byte_for_byte(stream):
    with tempfile.TemporaryDirectory() as tmp:
        intake = Intake(Path(tmp))
        for kind, doc in stream:
            intake.send(kind, doc)
        dump = intake.close()
    assert_replays_exactly(dump.records)


register_writes = st.lists(st.one_of(
    st.tuples(st.just("holding"), st.integers(0, mm.build_map(ENV).holding_count + 1),
              st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=6)),
    st.tuples(st.just("coil"), st.integers(0, 2), st.lists(st.booleans(), min_size=1,
                                                             max_size=2)),
    st.tuples(st.just("tick"), st.integers(1, 300), st.just([])),
), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_writes, st.booleans())
def test_any_modbus_register_write_replays_byte_for_byte(stream, operator_actions):
    regmap = mm.build_map(ENV)
    with tempfile.TemporaryDirectory() as tmp:
        intake = Intake(Path(tmp))
        plc = PlcFrontend(intake.svc, regmap, KEY, operator_actions)
        for kind, address, words in stream:
            if kind == "tick":
                intake.advance(address)
                continue
            intake.advance()
            if kind == "holding":
                plc.write_holding(address, words[: max(1, regmap.holding_count - address)],
                                  intake.now)
            else:
                plc.write_coils(address, words, intake.now)
            intake.svc.settle()
        dump = intake.close()
    assert_replays_exactly(dump.records)


class LinkHal:
    """The board's hardware as the board loop sees it: a byte queue for the UART, time
    advanced by hand, pins as variables."""

    period_ms = 10

    def __init__(self):
        self.t = 1000
        self.rx = bytearray()
        self.tx = []
        self.pressed = False

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, d):
        return a + d

    def sleep_ms(self, ms):
        self.t += ms

    def read(self, buf):
        k = min(len(buf), len(self.rx))
        buf[:k] = self.rx[:k]
        del self.rx[:k]
        return k

    def write(self, data):
        self.tx.append(bytes(data))

    def set_estop(self, asserted):
        pass

    def estop_pressed(self):
        return self.pressed

    def write_outputs(self, outputs):
        pass

    def kick(self):
        pass

    def reset_cause(self):
        return 1

    def mem_free(self):
        return 100_000


ints = st.one_of(st.integers(-(10**15) + 1, 10**15 - 1), st.integers(-100, 9000))
serial_bodies = st.one_of(
    st.lists(ints, min_size=1, max_size=5).map(lambda v: "C " + " ".join(map(str, v))),
    st.tuples(ints, ints, ints, st.sampled_from(["00" * 32, "ab", "zz", "", "0" * 63])).map(
        lambda a: "A {} {} {} {}".format(*a)),
    st.tuples(st.integers(-(10**30), 10**30), ints, st.integers(0, 1 << 70)).map(
        lambda a: "A {} {} {} ".format(*a) + "11" * 32),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
)
serial_stream = st.lists(st.one_of(
    serial_bodies.map(lambda b: ("frame", b)),
    st.binary(max_size=16).map(lambda b: ("garbage", b)),
    st.booleans().map(lambda b: ("estop", b)),
    st.integers(1, 30).map(lambda n: ("periods", n)),
), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(serial_stream)
def test_any_serial_link_frame_replays_byte_for_byte(stream):
    hal = LinkHal()
    ring = RingLog(RamBlockDevice(1024, 32))
    ring.format()
    board = BoardLoop(hal, ENV, Lineage(ring, ENV, KEY, checkpoint_every=16), KEY,
                      COMPILED.blob)
    board.boot(1)
    signer = OperatorSigner(KEY, ENV.device_id)
    hal.rx += frame("C 1 0 0 0")
    for action in (codes.OP_RESET, codes.OP_ARM):
        op = signer.sign(action, 0)
        hal.rx += frame(f"A {op.action} 0 {op.counter} {op.mac.hex()}")
    board.cycle()
    hal.sleep_ms(hal.period_ms)
    for kind, item in stream:
        if kind == "frame":
            hal.rx += frame(item)
        elif kind == "garbage":
            hal.rx += item
        elif kind == "estop":
            hal.pressed = item
        for _ in range(item if kind == "periods" else 1):
            board.cycle()
            hal.sleep_ms(hal.period_ms)
    board.lineage.checkpoint(board.gov, board.gov.last_now)
    records = ring.read_all()
    assert_replays_exactly(records, {ENV.digest: ENV})


cbor_items = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 64), (1 << 64) - 1),
              st.binary(max_size=40), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)
FIELDS = {1: 11, 2: 7, 3: 6, 4: 5, 5: 8, 6: 3}  # record kind -> fields


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(sorted(FIELDS)).flatmap(
    lambda kind: st.lists(cbor_items, min_size=FIELDS[kind] - 1, max_size=FIELDS[kind] - 1)
    .map(lambda rest: [kind, *rest])), min_size=1, max_size=6), st.booleans())
def test_forged_records_of_any_field_types_are_errors_not_crashes(forged, what_if):
    """Valid CBOR records of the right kind and length whose fields are anything: replay,
    what-if and verify report them, none raises anything but the project's errors."""
    from edgegov.core import cbor
    from edgegov.core.replay import ReplayError

    ring = RingLog(RamBlockDevice(4096, 8))
    ring.format()
    lineage = Lineage(ring, ENV, KEY)
    gov = Governor(ENV, KEY)
    lineage.boot(gov, 0, envelope_blob=COMPILED.blob)
    first = ring.next_seq
    for rec in forged:
        ring.append(cbor.dumps(rec))  # behind the writer's back: outside its hash chain
    lineage.checkpoint(gov, 10)
    records = ring.read_all()
    try:
        Replayer({ENV.digest: ENV}, what_if=ENV if what_if else None).run(records)
    except ReplayError:
        pass
    rep = verify(records, envelopes={ENV.digest: ENV})
    assert not rep.ok
    assert first <= rep.first_bad.seq <= records[-1][0]  # a forged record, or the checkpoint


def test_a_boot_with_the_right_envelope_and_wrong_field_types_is_reported_not_raised():
    from edgegov.core import cbor

    good = [1, 0, 1, 0, "fw", ENV.digest, ENV.device_id, 0, [0, 0, 0], None, 1]
    for i, bad in ((1, "x"), (2, b"1"), (7, [1]), (8, [0, "a", 0]), (8, 5)):
        rec = list(good)
        rec[i] = bad
        report = Replayer({ENV.digest: ENV}).run([(0, cbor.dumps(rec))])
        assert not report.identical and report.divergences[0].seq == 0, (i, bad)
