"""``edgegov run`` says what it does: one log line per state change, trip, reset, arm, link
stage and broker up/down, with the device id, on stderr; ``--log-format json`` for log
shippers; repeats held back; a trip always logged with its cause and rule."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time

import pytest
from edgegov.adapters.mqtt import parse_url
from edgegov.core import codes
from edgegov.service.client import send_op
from edgegov.service.log import RepeatFilter, TextFormatter, setup_logging
from edgegov.service.topics import Topics
from mosquitto_fixture import needs_mosquitto
from service_harness import DEVICE, KEY, Peer, ServiceProcess, plant_loop
from test_mqtt_service import cancel

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]


async def _story(broker) -> None:
    """Reset, arm, e-stop trip; the broker restarts underneath."""
    url = parse_url(broker.url)
    async with Peer(broker.port, "t-log") as peer:
        await peer.online()
        plant = [asyncio.create_task(plant_loop(peer))]
        await asyncio.sleep(0.2)
        await send_op(url, Topics(DEVICE), KEY, codes.OP_RESET)
        await send_op(url, Topics(DEVICE), KEY, codes.OP_ARM)
        await cancel(plant)
        plant = [asyncio.create_task(plant_loop(peer, estop_button=True))]
        await peer.wait_for("event", lambda m: m["event"] == "trip")
        await cancel(plant)
    broker.stop()
    await asyncio.sleep(1.0)
    broker.start()
    async with Peer(broker.port, "t-log2") as peer:
        await peer.online()
        await asyncio.sleep(0.3)


def _run(tmp_path, broker, *extra) -> str:
    svc = ServiceProcess(tmp_path, broker.url, *extra).start()
    try:
        asyncio.run(_story(broker))
        assert svc.terminate() == 0
    finally:
        svc.stop()
    return svc.output()


def test_text_log_tells_the_story_with_the_device_id(tmp_path, broker):
    out = _run(tmp_path, broker)
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert all(f" {DEVICE} " in line for line in lines), lines
    text = "\n".join(lines)
    for expected in ("started: device cell-7", "broker up: connected", "reset",
                     "arm: mode run", "state DISARMED → ARMED", "TRIP: estop_input (rule estop)",
                     "broker down", "broker up: reconnected", "stopped in order"):
        assert expected in text, (expected, text)
    trip = next(line for line in lines if "TRIP:" in line)
    assert " WARNING " in trip and "cause=estop_input" in trip and "rule=estop" in trip
    # README, "Log": (`broker up: reconnected to HOST:PORT after 3.1 s down`)
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    quoted = re.search(r"\(`(broker up: reconnected to [^`]+)`\)", readme).group(1)
    pattern = re.escape(quoted).replace("HOST:PORT", r"127\.0\.0\.1:\d+").replace(
        r"3\.1", r"\d+\.\d")
    assert re.search(pattern, text), (pattern, text)


def test_json_log_lines_parse_and_carry_the_fields(tmp_path, broker):
    out = _run(tmp_path, broker, "--log-format", "json")
    docs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert all(d["device"] == DEVICE and d["ts"].endswith("Z") for d in docs)
    trip = next(d for d in docs if d.get("event") == "trip")
    assert (trip["cause"], trip["rule"], trip["level"], trip["code"]) == (
        "estop_input", "estop", "WARNING", codes.E_TRIP)
    assert any(d["msg"].startswith("broker up: reconnected") for d in docs)


def test_repeats_are_held_back_then_counted():
    now = [0.0]
    f = RepeatFilter(window_s=60, clock=lambda: now[0])

    def rec(msg, **extra):
        r = logging.LogRecord("edgegov.link", logging.WARNING, __file__, 1, msg, (), None)
        r.__dict__.update(extra)
        return r

    assert f.filter(rec("MQTT link down: %s"))
    for _ in range(5):
        now[0] += 1
        assert not f.filter(rec("MQTT link down: %s"))
    assert f.filter(rec("TRIP", always=True))  # a trip is never held back
    assert f.filter(rec("other message"))
    now[0] += 60
    r = rec("MQTT link down: %s")
    assert f.filter(r) and r.repeats == 5
    assert "(5 more like it held back in the last 60 s)" in TextFormatter().format(r)


def test_logging_leaves_the_loop_at_once():
    """The loop only enqueues; a thread formats and writes (a slow stderr never blocks)."""
    stream = io.StringIO()
    logs = setup_logging(stream=stream, device="d-1")
    try:
        handler = logs.handler
        assert isinstance(handler, logging.handlers.QueueHandler)
        logging.getLogger("edgegov.service").info("hello %s", "there",
                                                  extra={"fields": {"k": 1}})
    finally:
        logs.close()
    assert stream.getvalue().rstrip().endswith("INFO d-1 hello there k=1")


def test_the_readme_trip_line():
    """README, "Log": the example line is what the service's event message for an
    interlock trip becomes, field by field up to the README's "...", time included."""
    import calendar
    import types
    from pathlib import Path

    from edgegov.config.compile import compile_file
    from edgegov.core.envelope import Envelope
    from edgegov.service.messages import Vocabulary

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = re.search(r"^(\S+Z) WARNING cell-7 TRIP: .*? \.\.\.$", readme, re.M)
    stamp, quoted = shown.group(1), shown.group(0)[:-len(" ...")]
    t_ms = int(re.search(r" t_ms=(\d+) ", quoted).group(1))
    compiled = compile_file(Path(__file__).resolve().parent.parent
                            / "boards/envelopes/spindle-cell.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    d = types.SimpleNamespace(now_ms=t_ms, reason=codes.R_INTERLOCK, state=codes.ST_TRIPPED,
                              rule=env.rules.index("interlocks.door_open"), margin=0,
                              channel=-1)
    doc = Vocabulary(env).event(d, codes.EV_TELEMETRY, codes.E_TRIP, codes.R_INTERLOCK)
    from edgegov import names

    r = logging.LogRecord("edgegov.service", logging.WARNING, __file__, 1, "%s",
                          (names.event_text(doc),), None)
    r.fields, r.device = doc, "cell-7"
    whole = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    r.created = calendar.timegm(whole) + int(stamp[20:23]) / 1000
    line = TextFormatter().format(r)
    assert line.startswith(quoted + " "), (line, quoted)


def test_a_lineage_fault_is_an_error_line_and_repeats_are_held(tmp_path):
    """What the service publishes becomes log lines: a lineage fault is an ERROR in words;
    the same state line twice within a minute is written once."""
    import types

    from edgegov.config.compile import compile_file
    from edgegov.core.envelope import Envelope
    from edgegov.service.activity import Activity
    from edgegov.service.clock import ScriptedClock
    from service_harness import ENVELOPE

    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    runner = types.SimpleNamespace(topics=Topics(env.device_id), clock=ScriptedClock(),
                                   env=env, service=None, link=None, lineage_path="x")
    stream = io.StringIO()
    logs = setup_logging(stream=stream)
    try:
        post = Activity(runner).tap(lambda *a: None)
        t = runner.topics
        fault = {"t_ms": 5, "event": "fault", "code": 18, "arg": 2, "fault": "lineage",
                 "input": "fault", "state": "TRIPPED"}
        post(t.event, json.dumps(fault).encode(), 1, False)
        state = {"status": "online", "state": "ARMED", "mode": "run", "link": "ok",
                 "estop": False, "trip_causes": []}
        for doc in (state, {**state, "state": "PAUSED"}, state, {**state, "state": "PAUSED"}):
            post(t.state, json.dumps(doc).encode(), 1, True)
    finally:
        logs.close()
    lines = stream.getvalue().splitlines()
    assert any(" ERROR cell-7 lineage cannot be written" in line and "fault=lineage" in line
               for line in lines), lines
    paused = [line for line in lines if "state ARMED → PAUSED" in line]
    assert len(paused) == 1, lines  # the second one within the minute is held back


def test_verbose_logs_every_decision(tmp_path, broker):
    """-v: one DEBUG line per decision (never held back as a repeat)."""
    import paho.mqtt.publish as publish

    svc = ServiceProcess(tmp_path, broker.url, "-v").start()
    try:
        async def online():
            async with Peer(broker.port, "t-v") as peer:
                await peer.online()

        asyncio.run(online())
        for seq in (1, 2, 3):
            publish.single(f"edgegov/{DEVICE}/cmd", json.dumps({"seq": seq, "values": {}}),
                           hostname="127.0.0.1", port=broker.port)
        time.sleep(0.5)
        assert svc.terminate() == 0
    finally:
        svc.stop()
    decisions = [line for line in svc.output().splitlines() if " DEBUG " in line
                 and "decision #" in line]
    assert [d.split("decision #")[1].split(":")[0] for d in decisions] == ["1", "2", "3"]
