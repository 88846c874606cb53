"""Ready means ready: once the service says ``online``, everything it listens to is heard.

A client that acts the instant it sees ``online`` (a command, a signed operator action
with an MQTT 5 response topic, and a lineage pull, sent from the very callback that saw the
state) must get every one answered. The service runs in-process against a real Mosquitto
and is started many times, each under its own topic prefix (no retained state from the
previous start); published before its subscriptions were acknowledged, ``online`` loses
this race on nearly every start.
"""

from __future__ import annotations

import asyncio
import json
import os

import aiomqtt
import pytest
from edgegov.adapters.mqtt import NO_DELAY, request_properties
from edgegov.core import auth, codes
from edgegov.service.runner import Runner, ServiceConfig
from edgegov.service.topics import Topics
from edgegov.service.wire import encode_operator
from mosquitto_fixture import needs_mosquitto
from service_harness import ENVELOPE, KEY, write_key

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]
STARTS = int(os.environ.get("READY_STARTS", "12"))


async def _one_start(broker, tmp_path, n: int) -> dict[str, bool]:
    prefix = f"ready{n}-{os.urandom(3).hex()}"
    cfg = ServiceConfig(envelope=str(ENVELOPE), key_file=str(write_key(tmp_path / "k.key")),
                        lineage=str(tmp_path / f"ready{n}.lineage"), mqtt_url=broker.url,
                        prefix=prefix, systemd=False, durable=False, lineage_blocks=16)
    runner = Runner(cfg)
    t = Topics(runner.env.device_id, prefix)
    answered = {"decision": False, "op": False, "pull": False}
    rid = os.urandom(4).hex()
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"ready-{prefix}",
                              protocol=aiomqtt.ProtocolVersion.V5,
                              socket_options=NO_DELAY) as client:
        await client.subscribe([(t.state, 1), (t.decision, 1), (f"{t.base}/reply/{rid}", 1),
                                (t.lineage_data(rid), 1)])
        stop, started = asyncio.Event(), asyncio.Event()
        service = asyncio.create_task(runner.serve(stop, started))
        try:
            async with asyncio.timeout(5):
                async for m in client.messages:
                    topic, doc = str(m.topic), json.loads(m.payload)
                    if topic == t.state and doc.get("status") == "online" and not answered.get(
                            "sent"):
                        answered["sent"] = True
                        await _act_at_once(client, t, rid)
                    elif topic == t.decision:
                        answered["decision"] = True
                    elif topic.startswith(f"{t.base}/reply/"):
                        answered["op"] = True
                    elif topic == t.lineage_data(rid):
                        answered["pull"] = True
                    if all(answered[k] for k in ("decision", "op", "pull")):
                        break
        except TimeoutError:
            pass
        finally:
            stop.set()
            await service
    answered.pop("sent", None)
    return answered


async def _act_at_once(client, t: Topics, rid: str) -> None:
    mac = auth.sign_op(KEY, t.device_id, codes.OP_RESET, 0, 1)
    await asyncio.gather(
        client.publish(t.cmd, json.dumps({"seq": 1, "values": {"spindle": 0}}), qos=1),
        client.publish(t.op, encode_operator(codes.OP_RESET, 0, 1, mac), qos=1,
                       properties=request_properties(f"{t.base}/reply/{rid}", b"r", 5)),
        client.publish(t.lineage_pull, json.dumps({"id": rid}), qos=1))


def test_actions_sent_the_instant_online_appears_are_answered(broker, tmp_path):
    async def starts():
        return [await _one_start(broker, tmp_path, n) for n in range(STARTS)]

    results = asyncio.run(starts())
    missed = [(n, [k for k, ok in r.items() if not ok]) for n, r in enumerate(results)
              if not all(r.values())]
    assert not missed, f"unanswered after online (start, inputs): {missed}"
