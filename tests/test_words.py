"""Words for people, codes for machines: the event payloads keep the numeric code and its
argument and add what they mean (docs/mqtt.md, "Events"); the demo's story groups repeats
so a trip stays in view."""

from __future__ import annotations

import json

from edgegov import names
from edgegov.config.compile import compile_file
from edgegov.core import codes
from edgegov.core.envelope import Envelope
from edgegov.core.events import TICK, Telemetry
from edgegov.core.governor import Governor
from edgegov.demo import OTHER_ENVELOPE, Story
from edgegov.operator import OperatorSigner
from edgegov.service.loop import GovernorService
from edgegov.service.topics import Topics
from edgegov.service.wire import Inbound, Scaler, decode_telemetry
from service_harness import ENVELOPE, KEY

COMPILED = compile_file(ENVELOPE)
ENV = Envelope.from_blob(COMPILED.blob, COMPILED.digest)


def test_event_arguments_in_words_beside_the_codes():
    # The spindle cell's inputs in file order: door_closed 0, estop_button 1, pressure 2.
    assert names.describe_event(codes.E_INPUT_STALE, 1, ENV) == {
        "event": "input_stale", "arg": 1, "code": 23, "input_name": "estop_button"}
    assert names.describe_event(codes.E_RESET_REFUSED, codes.R_CAUSE_PRESENT) == {
        "event": "reset_refused", "arg": codes.R_CAUSE_PRESENT, "code": 4,
        "reason": "cause_present"}
    assert names.describe_event(codes.E_BLOCKING_CAUSES, 32) == {
        "event": "blocking_causes", "arg": 32, "code": 27, "causes": ["interlock"]}
    trip = names.describe_event(codes.E_TRIP, 5)  # reason 5 = interlock
    assert (trip["reason"], trip["cause"], trip["code"], trip["arg"]) == (
        "interlock", "interlock", 2, 5)
    assert names.describe_event(codes.E_TRIP, codes.R_ABOVE_MAX)["cause"] == "limit"
    assert names.describe_event(codes.E_LINK_STALE, 158)["silent_ms"] == 158
    assert names.describe_event(codes.E_MODE, 1, ENV)["mode"] == "setup"
    assert names.describe_event(codes.E_BOOT, 1)["causes"] == ["boot"]
    assert names.event_text(names.describe_event(codes.E_BLOCKING_CAUSES, 2 | 32)) == \
        "blocked by: estop_input, interlock"
    assert names.event_text(names.describe_event(codes.E_COUNTER_BEHIND, 7)) == \
        "operator counter 7 behind the last accepted one"
    assert names.event_text(names.describe_event(codes.E_LINK_STALE, 158)) == \
        "link stale after 158 ms of silence"
    assert names.event_text(names.describe_event(codes.E_MODE, 1, ENV)) == "mode: setup"
    assert names.event_text(names.describe_event(codes.E_ARM, 1, ENV)) == "arm: mode setup"


def _service():
    posted = []
    svc = GovernorService(Governor(ENV, KEY), Topics(ENV.device_id),
                          lambda *a: posted.append(a))
    svc.boot(0, COMPILED.blob)
    return svc, posted


def _events(posted):
    return [json.loads(p[1]) for p in posted if p[0].endswith("/event")]


def test_published_trip_names_cause_rule_and_input():
    svc, posted = _service()
    signer = OperatorSigner(KEY, ENV.device_id)
    healthy = {"door_closed": True, "estop_button": False, "hydraulic_pressure": 2000}
    svc.submit(Inbound(Telemetry(healthy)), 10)
    svc.submit(Inbound(signer.sign(codes.OP_RESET)), 20)
    svc.submit(Inbound(signer.sign(codes.OP_ARM)), 30)
    svc.submit(Inbound(Telemetry({**healthy, "estop_button": True})), 40)
    svc.submit(Inbound(signer.sign(codes.OP_RESET)), 50)
    svc.cycle(60)
    events = _events(posted)
    arm = next(e for e in events if e["event"] == "arm")
    assert arm["mode"] == "run"
    trip = next(e for e in events if e["event"] == "trip")
    assert trip["code"] == codes.E_TRIP and trip["arg"] == codes.R_ESTOP_INPUT
    assert (trip["cause"], trip["reason"], trip["rule"]) == ("estop_input", "estop_input",
                                                             "estop")
    refused = next(e for e in events if e["event"] == "reset_refused")
    assert refused["arg"] == codes.R_CAUSE_PRESENT and refused["reason"] == "cause_present"
    blocking = events[events.index(refused) + 1]
    assert blocking["event"] == "blocking_causes" and blocking["causes"] == ["estop_input"]
    assert blocking["arg"] == codes.C_ESTOP_INPUT
    assert names.event_text(trip) == "TRIP: estop_input (rule estop)"


def test_refusals_keep_the_reason_code():
    svc, posted = _service()
    svc.cycle(5)  # the never-seen e-stop input trips first: causes settled
    svc.submit(decode_telemetry(b'{"values": {"door_closed": 1}}', Scaler(COMPILED)), 10)
    rejected = next(e for e in _events(posted) if e["event"] == "rejected")
    assert rejected["reason"] == "wrong_type"
    assert rejected["reason_code"] == codes.R_WRONG_TYPE


def test_trip_margin_is_in_the_channels_unit():
    svc, posted = _service()
    gov = svc.gov
    d = gov.d
    svc.cycle(10)
    d.channel, d.margin = ENV.ch_index["press"], -30  # 30 steps of 0.1 mm
    assert svc.vocab.margin(d) == {"channel": "press", "margin_eng": -3, "unit": "mm"}
    svc.submit(Inbound(TICK), 20)


def test_story_groups_reset_refused_pairs_so_the_trip_stays_in_view():
    story = Story()
    story.add(10.0, "TRIP: interlock (rule interlocks.door_open)")
    for i in range(40):
        story.add(10.1 + i * 0.3, "operator: reset")
        story.add(10.1 + i * 0.3, "reset refused: interlock")
    assert len(story) == 3
    assert story.tail(12)[0].endswith("TRIP: interlock (rule interlocks.door_open)")
    assert story.rows()[1][1] == "operator: reset  (×40, until 21.80 s)"


def test_story_groups_commands_by_key_not_by_sequence_number():
    story = Story()
    for seq in range(5):
        story.add(seq / 10, f"command #{seq}: CLAMP (accel)", key="CLAMP accel")
    assert story.rows() == [(0.0, "command #0: CLAMP (accel)  (×5, until 0.40 s)")]


def test_the_demo_hint_names_an_envelope_that_exists_and_checks():
    assert OTHER_ENVELOPE.exists()
    assert compile_file(OTHER_ENVELOPE).admitted.device_id == ENV.device_id


def test_a_refusal_argument_is_always_a_reason_never_a_cause_mask():
    # arm while TRIPPED: reason 28 (not_allowed); read as a cause mask, 28 would wrongly say
    # estop_operator, link_lost, limit. The causes come apart, in blocking_causes.
    doc = names.describe_event(codes.E_ARM_REFUSED, codes.R_NOT_ALLOWED, ENV)
    assert "causes" not in doc and doc["reason"] == "not_allowed"
    assert names.event_text(doc) == "arm refused: not_allowed"
    blocking = names.describe_event(codes.E_BLOCKING_CAUSES, 28, ENV)
    assert blocking["causes"] == ["estop_operator", "link_lost", "limit"]
