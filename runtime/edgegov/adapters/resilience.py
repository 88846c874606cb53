"""Staying connected, as its own layer over the thin MQTT adapter (cf. ``umqtt.robust``).

The governor's safety never depends on this layer: while the broker is away the loop goes
on deciding ticks locally (link stages fire on schedule, outputs follow); this layer only
reconnects with backoff, keeps a bounded queue of what to publish meanwhile (dropping the
oldest, counted), and re-publishes the retained state as soon as it is back.

``backoff_delay_ms`` is a pure function of the attempt number, tested without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..host.aio import cancel_and_wait, stop_requested

log = logging.getLogger("edgegov.link")


def backoff_delay_ms(attempt: int, base_ms: int = 100, cap_ms: int = 5_000, factor: int = 2,
                     jitter: float = 0.0, u: float = 0.0) -> int:
    """Delay before reconnect attempt ``attempt`` (0 = the first retry).

    ``base_ms * factor**attempt``, capped at ``cap_ms``; with ``jitter`` in [0, 1) the delay
    is reduced by up to that fraction, by the caller-supplied uniform sample ``u`` in [0, 1)
    (so many gateways do not reconnect in lockstep, and tests stay deterministic).
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    delay = cap_ms
    if attempt < 64 and base_ms * factor**attempt < cap_ms:
        delay = base_ms * factor**attempt
    return int(delay * (1.0 - jitter * u))


@dataclass
class Backoff:
    """Successive delays of ``backoff_delay_ms``; ``reset()`` after a good connection."""

    base_ms: int = 100
    cap_ms: int = 5_000
    jitter: float = 0.0
    attempt: int = 0

    def next_ms(self, u: float = 0.0) -> int:
        delay = backoff_delay_ms(self.attempt, self.base_ms, self.cap_ms, jitter=self.jitter, u=u)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Outbox:
    """A bounded publish queue: the loop posts without waiting; the oldest drop when full.

    A retained message supersedes any earlier one on its topic still queued (after a long
    outage only the latest state goes out, never an old one after it)."""

    def __init__(self, limit: int = 20_000) -> None:
        self.items: deque = deque()
        self.limit = limit
        self.dropped = 0
        self.posted = 0
        self.latest: dict[str, int] = {}  # retained topic -> newest post number
        self._ready = asyncio.Event()

    def post(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
             properties=None) -> None:
        if len(self.items) >= self.limit:
            self.items.popleft()
            self.dropped += 1
        self.posted += 1
        if retain:
            self.latest[topic] = self.posted
        self.items.append((topic, payload, qos, retain, properties, self.posted))
        self._ready.set()

    def superseded(self, item) -> bool:
        return item[3] and self.latest.get(item[0], 0) > item[5]

    async def wait(self) -> None:
        while not self.items:
            self._ready.clear()
            await self._ready.wait()


class ResilientLink:
    """Connect, serve, and on any MQTT error reconnect after a backoff, until stopped.

    ``connect()`` returns a fresh async-context client (aiomqtt); ``on_connected(client)``
    subscribes and re-publishes the state; ``on_message(message)`` is called for each
    inbound message and must not raise. With ``publish_now(client, topic, payload, qos,
    retain, properties) -> bool``, a post finding the queue empty while connected is offered
    to the client at once (saving the publisher task's turn); when it declines (False) the
    post is queued as usual.
    """

    def __init__(self, connect: Callable, on_connected: Callable[..., Awaitable],
                 on_message: Callable, errors: tuple = (Exception,),
                 backoff: Backoff | None = None, outbox: Outbox | None = None,
                 publish_now: Callable[..., bool] | None = None) -> None:
        self.connect = connect
        self.on_connected = on_connected
        self.on_message = on_message
        self.publish_now = publish_now
        self.sent_now = 0  # posts handed to the client at once
        self.errors = errors
        self.backoff = backoff or Backoff()
        self.outbox = outbox or Outbox()
        self.client = None
        self.connections = 0
        self.failures = 0
        self.stopping = False

    def post(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
             properties=None) -> None:
        client = self.client
        if (client is not None and self.publish_now is not None and not self.outbox.items
                and self.publish_now(client, topic, payload, qos, retain, properties)):
            self.sent_now += 1
            return
        self.outbox.post(topic, payload, qos, retain, properties)

    @property
    def connected(self) -> bool:
        return self.client is not None

    async def run(self) -> None:
        while not self.stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except self.errors as err:
                self.failures += 1
                log.warning("MQTT link down: %s", err)
            finally:
                self.client = None
            if self.stopping:
                return
            await asyncio.sleep(self.backoff.next_ms() / 1000)

    async def _session(self) -> None:
        async with self.connect() as client:
            self.client = client
            self.connections += 1
            self.backoff.reset()
            await self.on_connected(client)
            publisher = asyncio.create_task(self._publish(client))
            try:
                async for message in client.messages:
                    self.on_message(message)
            finally:
                await cancel_and_wait(publisher)

    async def _publish(self, client) -> None:
        items = self.outbox.items
        while not stop_requested():
            await self.outbox.wait()
            item = items[0]
            if not self.outbox.superseded(item):
                topic, payload, qos, retain, props, _ = item
                await client.publish(topic, payload, qos=qos, retain=retain, properties=props)
            if items and items[0] is item:
                items.popleft()  # only once sent: a failed publish is retried after reconnect

    async def drain(self, timeout_s: float = 2.0) -> bool:
        """Wait until everything posted has been published (or the timeout)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.outbox.items and self.connected and loop.time() < end:
            await asyncio.sleep(0.005)
        return not self.outbox.items


__all__ = ["backoff_delay_ms", "Backoff", "Outbox", "ResilientLink"]
