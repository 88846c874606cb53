"""Client side of the topic contract: operator actions and lineage pulls over MQTT.

Used by ``edgegov op``, ``edgegov lineage pull``, the demo and the tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass

import aiomqtt

from ..adapters.mqtt import MqttSettings, make_client, request_properties
from ..core import auth
from ..host import attest
from .topics import Topics
from .wire import encode_operator


class PullError(Exception):
    """A lineage pull that did not complete or did not match its checksum."""


def default_counter() -> int:
    """Operator counters must strictly increase: microseconds of wall time do, across
    invocations of the CLI, without a state file."""
    return time.time_ns() // 1000


async def send_op(settings: MqttSettings, topics: Topics, key: bytes, action: int, arg: int = 0,
                  counter: int | None = None, timeout_s: float = 5.0) -> dict | None:
    """Sign and publish one operator action; return the service's acknowledgement (the
    ``rejected``/decision message) when the broker speaks MQTT 5, else None.

    Without an explicit ``counter`` it uses max(microseconds of wall time, the device's last
    accepted counter + 1), the latter read from the retained state, so a station whose
    clock is behind is not refused as replayed."""
    if counter is None:
        last = await last_op_counter(settings, topics, min(timeout_s, 2.0))
        counter = default_counter() if last is None else max(default_counter(), last + 1)
    mac = auth.sign_op(key, topics.device_id, action, arg, counter)
    payload = encode_operator(action, arg, counter, mac)
    return await request(settings, topics.op, payload, topics, timeout_s)


async def last_op_counter(settings: MqttSettings, topics: Topics,
                          timeout_s: float = 2.0) -> int | None:
    """The device's last accepted operator counter from its retained state (``op_counter``),
    or None when there is no retained state (or it does not say) within ``timeout_s``."""
    rid = os.urandom(8).hex()
    async with make_client(settings, f"edgegov-state-{rid}") as client:
        await client.subscribe(topics.state, qos=1)
        try:
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    try:
                        value = json.loads(message.payload).get("op_counter")
                    except (ValueError, AttributeError):
                        return None
                    return value if type(value) is int and value >= 0 else None
        except TimeoutError:
            return None
    return None


async def request(settings: MqttSettings, topic: str, payload: bytes, topics: Topics,
                  timeout_s: float = 5.0) -> dict | None:
    """Publish ``payload``; with MQTT 5 wait for the reply on a private response topic."""
    rid = os.urandom(8).hex()
    async with make_client(settings, f"edgegov-cli-{rid}") as client:
        if settings.protocol != 5:
            await client.publish(topic, payload, qos=1)
            return None
        reply_topic = f"{topics.base}/reply/{rid}"
        await client.subscribe(reply_topic, qos=1)
        props = request_properties(reply_topic, rid.encode(), expiry_s=int(timeout_s) + 1)
        await client.publish(topic, payload, qos=1, properties=props)
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                return json.loads(message.payload)
    return None


@dataclass
class Pulled:
    """A sealed pull: the lineage image and the device's head attestation of its seal."""

    image: bytes
    attestation: dict


async def pull_lineage(settings: MqttSettings, topics: Topics, timeout_s: float = 20.0) -> bytes:
    """Ask the service for its lineage image and reassemble it; checks size and SHA-256."""
    return (await _pull(settings, topics, timeout_s, None))[0]


async def pull_sealed(settings: MqttSettings, topics: Topics, timeout_s: float = 20.0) -> Pulled:
    """Pull the lineage sealed: the service first closes its hash chain with a checkpoint,
    then sends the image and a MACed head attestation of that checkpoint, which must echo
    this pull's counter and name a record the image ends with (``edgegov.host.attest``).
    The MAC is checked by ``attest.check`` with the device key (``lineage verify --key``)."""
    counter = default_counter()
    image, att = await _pull(settings, topics, timeout_s, counter)
    problem = attest.shape_problem(att)
    if problem:
        raise PullError(f"lineage pull: no usable head attestation ({problem}); is the "
                        "service older than sealed pulls, or did the seal fail?")
    if att["counter"] != counter:
        raise PullError("lineage pull: the attestation answers another pull (counter "
                        f"{att['counter']}, sent {counter})")
    ok, why = attest.check(image, att, None)
    if not ok:
        raise PullError(f"lineage pull: {why}")
    return Pulled(image, att)


async def _pull(settings, topics, timeout_s, counter) -> tuple[bytes, dict | None]:
    rid = os.urandom(8).hex()
    chunks: dict[int, bytes] = {}
    meta: dict = {}
    request = {"id": rid} if counter is None else {"id": rid, "counter": counter}
    async with make_client(settings, f"edgegov-pull-{rid}") as client:
        data_topic = topics.lineage_data(rid)
        await client.subscribe(data_topic, qos=1)
        await client.publish(topics.lineage_pull, json.dumps(request).encode(), qos=1)
        try:
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    # amqtt (the embedded broker) has been seen to hand a new client a
                    # retained state it never subscribed to: only this pull's chunks count
                    if str(message.topic) != data_topic:
                        continue
                    doc = json.loads(message.payload)
                    chunks[doc["index"]] = base64.b64decode(doc["data"])
                    meta = doc
                    if len(chunks) == doc["count"]:
                        break
        except TimeoutError:
            hint = "" if chunks else (f": no answer; is edgegov run up for device "
                                      f"{topics.device_id} on this broker?")
            raise PullError(f"lineage pull timed out ({len(chunks)} chunks received){hint}") \
                from None
    image = b"".join(chunks[i] for i in range(meta["count"]))
    if len(image) != meta["size"] or hashlib.sha256(image).hexdigest() != meta["sha256"]:
        raise PullError("lineage pull: size or SHA-256 mismatch")
    return image, meta.get("attestation")


async def live_instance(settings: MqttSettings, topics: Topics, grace_s: float | None = None,
                        first_s: float = 0.3) -> dict | None:
    """The retained state of another live instance of this device on the broker, or None.

    A retained ``online`` that does not turn ``offline`` within ``grace_s`` (default 1.5 ×
    keepalive + 1 s: the broker publishes a dead connection's will by then) is a live
    instance. No state, ``offline``, an unreachable broker or a denied subscription: None.
    """
    grace_s = settings.keepalive_s * 1.5 + 1.0 if grace_s is None else grace_s
    rid = os.urandom(8).hex()
    last: dict | None = None
    try:
        async with make_client(settings, f"edgegov-probe-{rid}") as client:
            await client.subscribe(topics.state, qos=1)
            last = await _state_within(client, first_s, None)
            if last is not None and last.get("status") == "online":
                last = await _state_within(client, grace_s, last)
    except (OSError, aiomqtt.MqttError, TimeoutError):
        return None
    return last if last is not None and last.get("status") == "online" else None


async def _state_within(client, seconds: float, last: dict | None) -> dict | None:
    """The last state document seen within ``seconds``; stops early on ``offline``."""
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                try:
                    doc = json.loads(message.payload)
                except ValueError:
                    continue
                if isinstance(doc, dict):
                    last = doc
                    if doc.get("status") != "online":
                        return last
    except TimeoutError:
        pass
    return last


__all__ = ["send_op", "request", "pull_lineage", "pull_sealed", "Pulled", "PullError",
           "default_counter", "live_instance"]
