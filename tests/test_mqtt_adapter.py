"""``adapters.mqtt.publish_now`` against a real Mosquitto: a QoS 0 publication is on the
socket when the call returns (not on the loop's next write turn), reaches a subscriber,
leaves no write turn behind to spin, and a call from inside a paho callback (where paho
holds its non-reentrant callback lock) queues the message instead of deadlocking; QoS 1
is left to the outbox."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest
from edgegov.adapters.mqtt import make_client, parse_url, publish_now
from mosquitto_fixture import needs_mosquitto

pytestmark = [needs_mosquitto, pytest.mark.timeout(30)]


@contextlib.asynccontextmanager
async def _sub_and_pub(broker, tag: str):
    """A subscriber to ``adapter/#`` and a publisher, both made the service's way."""
    settings = parse_url(broker.url)
    async with make_client(settings, f"{tag}-sub") as sub, \
            make_client(settings, f"{tag}-pub") as pub:
        await sub.subscribe("adapter/#")
        yield sub, pub


async def _received(sub: aiomqtt.Client, n: int) -> list[tuple[str, bytes]]:
    got = []
    async with asyncio.timeout(5):
        async for m in sub.messages:
            got.append((str(m.topic), bytes(m.payload)))
            if len(got) == n:
                return got
    return got


def test_qos0_is_written_at_once_and_arrives(broker):
    async def main():
        async with _sub_and_pub(broker, "adapter") as (sub, pub):
            paho = pub._client
            assert publish_now(pub, "adapter/a", b"one")
            # No loop turn in between: the packet already left paho's queue for the socket.
            assert not paho._out_packet and not paho.want_write()
            assert publish_now(pub, "adapter/a", b"two")
            assert not publish_now(pub, "adapter/b", b"qos1", qos=1)  # the outbox's job
            assert await _received(sub, 2) == [("adapter/a", b"one"), ("adapter/a", b"two")]

    asyncio.run(main())


def test_no_write_turn_is_left_behind_to_spin(broker):
    """aiomqtt adds its writer one iteration late and removes it at once; a direct write
    must not leave that writer registered, or it runs on every loop iteration (100 % CPU)."""
    async def main():
        settings = parse_url(broker.url)
        async with make_client(settings, "adapter-spin") as pub:
            paho = pub._client
            turns = []
            write = paho.loop_write

            def counted():
                turns.append(1)
                return write()

            paho.loop_write = counted  # what aiomqtt's write turn calls
            for i in range(20):
                assert publish_now(pub, "adapter/spin", b"%d" % i)
            direct = len(turns)
            for _ in range(100):  # idle loop iterations: nothing is left to write
                await asyncio.sleep(0)
            assert direct == 20 and len(turns) - direct <= 2, len(turns) - direct

    asyncio.run(main())


@pytest.mark.timeout(10, method="thread")  # a deadlock cannot be interrupted: end the run
def test_publish_from_inside_a_paho_callback_is_queued_not_deadlocked(broker):
    async def main():
        async with _sub_and_pub(broker, "adapter2") as (sub, pub):
            paho = pub._client
            seen = []
            inner = paho.on_subscribe  # aiomqtt's; paho calls it under its callback lock

            def on_subscribe(*args):
                seen.append((publish_now(pub, "adapter/cb", b"from-callback"),
                             len(paho._out_packet)))
                inner(*args)

            paho.on_subscribe = on_subscribe
            await pub.subscribe("adapter/unused")  # returns only if the callback returned
            assert seen == [(True, 1)]  # taken by the session, queued for the write turn
            assert await _received(sub, 1) == [("adapter/cb", b"from-callback")]

    asyncio.run(main())
