"""E-stop output backends with readback: the loop drives the level the governor decided.

A backend is told the level every cycle (``drive(level, now_ms)``) and reports a readback
mismatch as a host fault code (``check(now_ms)``): asserted but not confirmed within
``readback_ms`` — or confirmed at the wrong level — is itself a fault, which the loop feeds
to the governor as ``Fault(F_ESTOP_READBACK)`` (a trip that a reset can clear only once the
readback agrees again).

``MqttRelayEstop`` drives a relay board on MQTT: it publishes the level (retained, QoS 1)
on ``edgegov/D/estop/set`` and the relay answers on ``edgegov/D/estop/state``. A Modbus
coil backend (write the coil, read it back) implements the same three methods; it comes with
the Modbus adapter.
"""

from __future__ import annotations

import json

from ..names import F_ESTOP_READBACK, F_LINEAGE, F_OUTPUT


class NoEstopOutput:
    """No e-stop output wired: the level is only published with the state."""

    def drive(self, level: bool, now_ms: int) -> None:
        self.level = level

    def readback(self, payload: bytes, now_ms: int) -> None:
        pass

    def check(self, now_ms: int) -> bool | None:
        return None


class MqttRelayEstop:
    """An MQTT relay: publish the commanded level, compare what the relay reports."""

    def __init__(self, post, set_topic: str, readback_ms: int = 500) -> None:
        self.post = post  # post(topic, payload, qos, retain)
        self.set_topic = set_topic
        self.readback_ms = readback_ms
        self.level: bool | None = None
        self.since_ms = 0
        self.confirmed: bool | None = None
        self.faulted = False

    def drive(self, level: bool, now_ms: int) -> None:
        if level != self.level:
            self.level = level
            self.since_ms = now_ms
            self.republish()

    def republish(self) -> None:
        if self.level is not None:
            self.post(self.set_topic, json.dumps({"estop": self.level}).encode(), 1, True)

    def readback(self, payload: bytes, now_ms: int) -> None:
        try:
            doc = json.loads(payload)
            value = doc.get("estop") if isinstance(doc, dict) else None
        except ValueError:
            value = None
        self.confirmed = value if isinstance(value, bool) else None

    def check(self, now_ms: int) -> bool | None:
        """True: a mismatch just became a fault; False: it just cleared; None: no change."""
        bad = self.level is not None and self.confirmed != self.level
        if bad and not self.faulted and now_ms - self.since_ms >= self.readback_ms:
            self.faulted = True
            return True
        if not bad and self.faulted:
            self.faulted = False
            return False
        return None


__all__ = ["NoEstopOutput", "MqttRelayEstop", "F_ESTOP_READBACK", "F_LINEAGE", "F_OUTPUT"]
