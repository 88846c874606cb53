"""The MQTT adapter: broker settings, the client, and message ⇄ (topic kind, bytes, reply).

Thin on purpose: no decisions, no retries (``resilience`` reconnects), no JSON (``service.
wire`` decodes). MQTT 5 request/response: when a message carries a ``ResponseTopic``, the
reply is published there with the same ``CorrelationData``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Decisions and events are small messages that must leave at once: Nagle's algorithm would
# hold one back until the previous one is acknowledged (tens of ms with delayed ACKs).
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class MqttUrlError(ValueError):
    """An ``--mqtt`` URL that cannot be used."""


@dataclass
class MqttSettings:
    """Where and how to connect. ``protocol`` 5 (MQTT 5) or 4 (3.1.1)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    protocol: int = 5
    keepalive_s: int = 5
    timeout_s: float = 5.0

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def parse_url(url: str, **overrides) -> MqttSettings:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise MqttUrlError(f"{url}: scheme must be mqtt:// or mqtts://")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise MqttUrlError(f"{url}: bad port") from None
    settings = MqttSettings(
        host=parts.hostname or "127.0.0.1", port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None, tls=tls)
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    return settings


def make_client(settings: MqttSettings, identifier: str | None = None,
                will: tuple[str, bytes] | None = None) -> aiomqtt.Client:
    """An aiomqtt client (construct inside the running loop). ``will`` is (topic, payload),
    sent retained with QoS 1 when the connection dies without a DISCONNECT."""
    protocol = aiomqtt.ProtocolVersion.V5 if settings.protocol == 5 else \
        aiomqtt.ProtocolVersion.V311
    return aiomqtt.Client(
        settings.host, settings.port, username=settings.username, password=settings.password,
        identifier=identifier, protocol=protocol, keepalive=settings.keepalive_s,
        timeout=settings.timeout_s, tls_context=settings.tls_context(),
        will=aiomqtt.Will(will[0], will[1], qos=1, retain=True) if will else None,
        clean_session=True if settings.protocol != 5 else None, socket_options=NO_DELAY)


def publish_now(client: aiomqtt.Client, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False, properties=None) -> bool:
    """Hand a QoS 0 publication to the client's MQTT session without awaiting it, and write
    it to the socket at once (paho would otherwise send it on the loop's next write turn,
    after whatever else is ready). True when the session took it; False for QoS 1 (the
    outbox keeps those until acknowledged, across reconnects) or when the session could
    not take it (not connected): the caller queues it. Uses the paho client under
    aiomqtt's (``_client``); without it, always False.

    Two things to respect. paho's callback lock is not reentrant: from inside a paho
    callback the message is left to the write turn. And aiomqtt registers the write turn
    on the next loop iteration (``call_soon_threadsafe(add_writer)``) but unregisters it
    at once: when this call has written everything, the registration still pending would
    leave a writer with nothing to write, run on every iteration (a busy loop). It is
    removed right after it is added, on the same iteration."""
    paho = getattr(client, "_client", None)
    if paho is None or qos != 0:
        return False
    try:
        info = paho.publish(topic, payload, qos, retain, properties)
        if info.rc != 0:
            return False
        in_callback = getattr(paho, "_in_callback_mutex", None)
        if in_callback is None or in_callback.locked():
            return True  # sent on the write turn
        paho.loop_write()
        if not paho.want_write():
            sock = paho.socket()
            if sock is not None:
                loop = asyncio.get_running_loop()
                loop.call_soon(loop.remove_writer, sock.fileno())
    except (ValueError, OSError):
        return False
    return True


def topic_of(message) -> str:
    return str(message.topic)


def payload_of(message) -> bytes:
    p = message.payload
    if isinstance(p, (bytes, bytearray)):
        return bytes(p)
    return b"" if p is None else str(p).encode()


def reply_address(message) -> tuple[str, bytes | None] | None:
    """(ResponseTopic, CorrelationData) of an MQTT 5 request, or None."""
    props = getattr(message, "properties", None)
    topic = getattr(props, "ResponseTopic", None) if props is not None else None
    if not topic or any(c in topic for c in "+#"):
        return None
    return topic, getattr(props, "CorrelationData", None)


def reply_properties(correlation: bytes | None) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    if correlation is not None:
        props.CorrelationData = correlation
    props.ContentType = "application/json"
    return props


def request_properties(response_topic: str, correlation: bytes,
                       expiry_s: int | None = None) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    if expiry_s:
        props.MessageExpiryInterval = expiry_s
    return props


__all__ = ["MqttSettings", "MqttUrlError", "parse_url", "make_client", "publish_now", "topic_of",
           "payload_of", "reply_address", "reply_properties", "request_properties"]
