"""Planner sessions (README "The governor", *Planner sessions*; docs/mqtt.md ``session``).

A command may name its planner's session. A new session restarts the sequence, is recorded
(a ``Session`` input, event ``session`` whose arg is the previous session's last seq) and
must engage the link afresh: outputs hold until it does, so no motion is carried over.
Within a session a repeated or older seq stays ``stale_seq``. Figures from TEST_TOML:
hold_after 100 ms, trip_after 500 ms, engage_after 50 ms, spindle 1000 rpm/s hold=ramp.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from conftest import TEST_TOML, C, Command, Harness, compile_envelope
from edgegov.core.events import Session
from edgegov.core.record import K_EVENT, decode
from edgegov.core.replay import Replayer
from edgegov.host.lineage_read import decode_dump
from edgegov.service.wire import encode_command
from test_lineage_replay import _spindle_env, record_run


@pytest.fixture
def cell():
    h = Harness(compile_envelope(TEST_TOML))
    h.arm_live()
    return h


def session(h: Harness, s, dt: int = 0) -> dict:
    return h.handle(Session(s), dt)


def cmd(h: Harness, seq: int, dt: int = 10, **values) -> dict:
    return h.handle(Command(seq, values), dt)


def test_a_restarted_planner_at_seq_1_engages_afresh_without_carried_motion(cell):
    for _ in range(10):
        cell.cmd(dt=10, spindle=100)
    assert cell.out("spindle") == 100
    last = cell.gov.last_seq
    d = session(cell, "run-2", dt=10)
    assert (C.E_SESSION, last) in d["events"]
    assert (d["verdict"], d["reason"]) == (C.HOLD, C.R_LINK_NOT_ENGAGED)
    assert cell.gov.link == C.LINK_DOWN
    outs = []
    for seq in range(1, 6):  # 10 ms apart: HOLD while the new streak is under 50 ms
        d = cmd(cell, seq, spindle=100)
        assert (d["verdict"], d["seq"]) == (C.HOLD, seq)
        outs.append(cell.out("spindle"))
    # held: hold = "ramp" brings the spindle toward 0 at 1000 rpm/s: 10 rpm per 10 ms (the
    # session decision itself took the first 10)
    assert outs == [80, 70, 60, 50, 40]
    d = cmd(cell, 6, spindle=100)  # 50 ms of commands: engaged; this command is governed
    assert (C.E_LINK_ENGAGED, 50) in d["events"]
    assert cell.out("spindle") == 50  # from where the hold left it, 10 rpm per 10 ms


def test_within_a_session_repeated_or_older_seq_stays_stale(cell):
    session(cell, 7)
    for seq in range(1, 8):
        cmd(cell, seq, spindle=0)
    assert cell.gov.link == C.LINK_OK
    assert cmd(cell, 7, spindle=0)["reason"] == C.R_STALE_SEQ
    assert cmd(cell, 3, spindle=0)["reason"] == C.R_STALE_SEQ
    d = session(cell, 7)  # the same session again changes nothing
    assert d["events"] == [] and cell.gov.link == C.LINK_OK
    assert cmd(cell, 1, spindle=0)["reason"] == C.R_STALE_SEQ


def test_session_flapping_does_not_reset_the_stage_2_budget(cell):
    cell.tick(110)  # silent: stale at +110 ms after the last command
    assert cell.gov.link == C.LINK_STALE
    stale_since = cell.gov.stale_since_ms
    for k in range(1, 5):
        session(cell, f"s{k}", dt=50)  # a new session every 50 ms, no commands
        assert cell.gov.stale_since_ms == stale_since
    d = cell.tick(stale_since + 500 - cell.now)
    assert d["state"] == C.ST_TRIPPED and (C.E_LINK_LOST, 500) in d["events"]


def test_a_new_session_that_never_engages_trips_trip_after_ms_later(cell):
    d = session(cell, "b", dt=10)
    start = cell.now
    assert cell.gov.stale_since_ms == start
    cell.tick(499)
    assert cell.gov.state == C.ST_ARMED
    d = cell.tick(1)
    assert d["state"] == C.ST_TRIPPED and (C.E_LINK_LOST, 500) in d["events"]


def test_reset_after_link_loss_needs_a_command_of_the_new_session(cell):
    cell.tick(600)  # link lost: tripped
    assert cell.gov.state == C.ST_TRIPPED
    session(cell, "after-restart")
    cell.healthy()
    assert cell.op(C.OP_RESET)["reason"] == C.R_CAUSE_PRESENT
    cmd(cell, 1, spindle=0)
    assert cell.op(C.OP_RESET)["state"] == C.ST_DISARMED


@pytest.mark.parametrize("bad", [True, -1, 1 << 53, "", "x" * 65, 1.5, None, [1]])
def test_a_malformed_session_is_rejected_and_changes_nothing(cell, bad):
    before = (cell.gov.session, cell.gov.last_seq, cell.gov.link)
    d = session(cell, bad)
    assert (d["verdict"], d["reason"]) == (C.REJECT, C.R_WRONG_TYPE)
    assert (cell.gov.session, cell.gov.last_seq, cell.gov.link) == before


def test_sessions_replay_byte_for_byte_and_decode():
    env, blob = _spindle_env()
    events, now = [], 0

    def add(ev, dt=10):
        nonlocal now
        now += dt
        events.append((now, ev))

    from conftest import OpSigner, Telemetry
    tel = Telemetry({"door_closed": True, "estop_button": False, "hydraulic_pressure": 2000})
    ops = OpSigner(b"replay-test-key-0123456789abcdef", env.device_id)
    add(tel)
    add(ops(C.OP_RESET))
    add(ops(C.OP_ARM))
    for name in ("a", 12, "a"):
        add(Session(name))
        for seq in range(1, 30):
            add(Command(seq, {"spindle": 40 * seq}))
            if seq % 10 == 0:
                add(tel, 0)
    ring, seen, gov = record_run(events, env, blob)
    assert gov.session == "a" and any(s["events"] and s["events"][0][0] == C.E_SESSION
                                      for s in seen)
    records = ring.read_all()
    report = Replayer({env.digest: env}).run(records)
    assert report.identical and report.compared > 90
    inputs = [decode(p)[2] for _, p in records if decode(p)[0] == K_EVENT]
    assert [i[1] for i in inputs if isinstance(i, list) and i[0] == C.EV_SESSION] == [
        "a", 12, "a"]
    dump = SimpleNamespace(records=records, offsets={}, envelopes=lambda: {env.digest: env})
    rows = [r for r in decode_dump(dump) if r.get("input", {}).get("type") == "session"]
    assert [r["input"]["session"] for r in rows] == ["a", 12, "a"]


# ------------------------------------------------------------------ over MQTT (Mosquitto)

def test_mqtt_restarted_planner_gets_a_new_session(tmp_path, broker):
    from mosquitto_fixture import needs_mosquitto  # noqa: F401 - the broker fixture skips
    from service_harness import Peer, ServiceProcess, plant_loop
    from test_mqtt_service import armed_cell, cancel

    svc = ServiceProcess(tmp_path, broker.url).start()
    try:
        asyncio.run(_mqtt_scenario(broker, Peer, plant_loop, armed_cell, cancel))
    finally:
        svc.stop()


async def _mqtt_scenario(broker, Peer, plant_loop, armed_cell, cancel):
    async with Peer(broker.port, "t-session") as peer:
        await peer.online()
        tasks = await armed_cell(broker, peer)

        async def run(session, first, count):
            seq = first
            for seq in range(first, first + count):
                await peer.raw("cmd", encode_command(seq, {"spindle": 0}, session=session))
                await asyncio.sleep(0.02)
            return seq

        last = await run("p1", 1, 15)
        await peer.wait_for("event", lambda m: m["event"] == "link_engaged")
        await peer.wait_for("decision", lambda m: m["seq"] == last and m["verdict"] == "ALLOW")
        # the planner restarts: a new session, seq from 1 again
        last2 = await run("p2", 1, 15)
        ev = await peer.wait_for("event", lambda m: m["event"] == "session" and m["arg"] > 0)
        assert ev["arg"] == last and ev["input"] == "session"
        d = await peer.wait_for("decision", lambda m: m["seq"] == last2)
        assert d["verdict"] == "ALLOW", json.dumps(d)
        # the old planner's late command within p2: stale
        await peer.raw("cmd", encode_command(3, {"spindle": 0}, session="p2"))
        d = await peer.wait_for("decision", lambda m: m["seq"] == 3 and m["reason"] == "stale_seq")
        assert d["verdict"] == "REJECT"
        # a malformed session: refused with a note, nothing restarts
        await peer.raw("cmd", json.dumps({"seq": 99, "values": {"spindle": 0},
                                          "session": ["x"]}).encode())
        ev = await peer.wait_for("event", lambda m: m.get("event") == "rejected"
                                 and "session" in m.get("note", ""))
        assert ev["reason"] == "wrong_type"
        await cancel(tasks)



# ------------------------------------------------------------------ over Modbus (scripted)

def test_modbus_session_register_restarts_the_session_and_the_link_engages_afresh():
    from edgegov.adapters import modbus_map as mm
    from modbus_rig import ENV, MAP
    from test_modbus_fuzz import armed_frontend

    fe = armed_frontend(False)
    gov = fe.service.gov
    now, hb = 0, 0
    words = MAP.proposal_words(dict.fromkeys(ENV.ch_names, 0))

    def write(extra=()):
        nonlocal now, hb
        now += 10
        hb += 1
        return fe.write_holding(mm.H_HEARTBEAT, [hb, *words, *extra], now)

    assert MAP.session == mm.H_PROPOSALS + len(words)  # right after the proposals
    write([1])  # session 1 with the first proposal
    assert gov.session == 1
    while gov.link != C.LINK_OK:
        write([1])
        assert now < 1000
    assert gov.last_seq > 0
    # the PLC program restarts: session 2, heartbeat from 0 again
    hb = -1
    write([2])
    assert (gov.session, gov.last_seq, gov.link) == (2, 0, C.LINK_DOWN)
    held = 0
    while gov.link != C.LINK_OK:
        assert fe.last.verdict == C.HOLD
        held += 1
        write([2])
        assert now < 2000
    # engage_after_ms of proposals 10 ms apart under the new session
    assert held == ENV.engage_after_ms // 10
    # a write of the unchanged session alone changes nothing
    assert fe.write_holding(MAP.session, [2], now + 1) is None
    assert gov.link == C.LINK_OK


def test_modbus_session_over_a_real_pymodbus_client(tmp_path):
    """The PLC program restarts: one FC16 from H2 with heartbeat, proposals and a new session
    (docs/modbus.md); the link engages afresh and the session is in the lineage."""
    from edgegov.adapters import modbus_map as mm
    from edgegov.core import codes
    from modbus_rig import MAP, Rig

    async def scenario():
        async with Rig(tmp_path, "tcp") as rig:
            await rig.armed_and_live()
            await rig.plc.stop_heartbeat()
            plc = rig.plc
            words = MAP.proposal_words(plc.standing)
            plc.hb = 0
            rr = await plc.client.write_registers(mm.H_HEARTBEAT, [1, *words, 4242],
                                                  device_id=1)
            assert not rr.isError()
            assert rig.gov.session == 4242 and rig.gov.link != codes.LINK_OK
            plc.hb = 1
            plc.start_heartbeat()
            await rig.until(lambda: rig.gov.link == codes.LINK_OK, what="engaged afresh")
            regs = await plc.client.read_holding_registers(MAP.session, count=1, device_id=1)
            assert regs.registers == [4242]
            await plc.stop_heartbeat()
            rig.svc.settle()
            records = rig.svc.lineage.ring.read_all()
            inputs = [decode(p)[2] for _, p in records if decode(p)[0] == K_EVENT]
            assert [i for i in inputs if isinstance(i, list) and i[0] == C.EV_SESSION] == [
                [C.EV_SESSION, 4242]]

    asyncio.run(scenario())
