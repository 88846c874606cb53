"""Broker security configured for real: TLS listener, passwords, per-role ACLs.

The service connects as ``gov`` over TLS; a planner may only propose, an operator may only
send operator actions, an intruder may only read. Mosquitto acknowledges denied publishes
silently (it drops them), so every check is an end-to-end round trip.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest
from edgegov.adapters.mqtt import parse_url
from edgegov.core import codes
from edgegov.service.client import send_op
from edgegov.service.topics import Topics
from mosquitto_fixture import USERS, needs_mosquitto, secured_broker
from service_harness import DEVICE, KEY, Peer, ServiceProcess

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = secured_broker(tmp_path_factory.mktemp("mosquitto-tls"), DEVICE)
    yield b
    b.stop()


@pytest.fixture
def service(tmp_path, broker):
    pw = tmp_path / "gov.pw"
    pw.write_text(USERS["gov"])
    svc = ServiceProcess(tmp_path, broker.url, "--username", "gov", "--password-file", str(pw),
                         "--ca", broker.ca_file).start()
    yield svc
    svc.stop()


def tls(broker, user):
    import ssl

    return {"username": user, "password": USERS[user],
            "tls_context": ssl.create_default_context(cafile=broker.ca_file)}


def test_only_the_planner_gets_commands_decided(broker, service):
    async def scenario():
        async with Peer(broker.port, "planner", **tls(broker, "planner")) as planner, \
                Peer(broker.port, "intruder", **tls(broker, "intruder")) as intruder:
            await planner.online()
            await intruder.command({"spindle": 0}, seq=1000)
            await planner.command({"spindle": 0}, seq=1001)
            await planner.wait_for("decision", lambda m: m["seq"] == 1001)
            await intruder.wait_for("decision", lambda m: m["seq"] == 1001)  # it may read
            await asyncio.sleep(0.5)
            seen = {d["seq"] for d in planner.got["decision"] + intruder.got["decision"]}
            assert 1000 not in seen

    asyncio.run(scenario())


def test_no_anonymous_no_wrong_password_no_plaintext(broker, service):
    async def connect(**kw):
        async with aiomqtt.Client("127.0.0.1", broker.port, timeout=3, **kw):
            pass

    import ssl

    ctx = ssl.create_default_context(cafile=broker.ca_file)
    for kw in ({"tls_context": ctx},
               {"tls_context": ctx, "username": "planner", "password": "wrong"},
               {"username": "planner", "password": USERS["planner"]}):
        with pytest.raises(aiomqtt.MqttError):
            asyncio.run(connect(**kw))


def test_operator_actions_need_the_device_key(broker, service):
    settings = parse_url(broker.url, username="operator", password=USERS["operator"],
                         ca_file=broker.ca_file)
    topics = Topics(DEVICE)

    async def scenario():
        async with Peer(broker.port, "planner-watch", **tls(broker, "planner")) as watcher:
            await watcher.online()
        forged = await send_op(settings, topics, bytes(32), codes.OP_RESET)
        assert (forged["verdict"], forged["reason"]) == ("REJECT", "auth_failed")
        ok = await send_op(settings, topics, KEY, codes.OP_ESTOP, counter=7)
        assert ok["verdict"] == "TRIP" and ok["state"] == "TRIPPED"
        again = await send_op(settings, topics, KEY, codes.OP_ESTOP, counter=7)
        assert again["reason"] == "replayed"

    asyncio.run(scenario())
