"""The MQTT topic contract of one device (``docs/mqtt.md`` documents every payload)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names under ``{prefix}/{device_id}``."""

    device_id: str
    prefix: str = "edgegov"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def op(self) -> str:
        return f"{self.base}/op"

    @property
    def decision(self) -> str:
        return f"{self.base}/decision"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def output(self) -> str:
        return f"{self.base}/output"

    @property
    def lineage_pull(self) -> str:
        return f"{self.base}/lineage/pull"

    def lineage_data(self, request_id: str) -> str:
        return f"{self.base}/lineage/data/{request_id}"

    @property
    def estop_set(self) -> str:
        return f"{self.base}/estop/set"

    @property
    def estop_state(self) -> str:
        return f"{self.base}/estop/state"

    @property
    def envelope(self) -> str:
        """Signed envelope changes (push, rollback) for this device."""
        return f"{self.base}/envelope"

    def inbound(self) -> tuple[str, ...]:
        """What the service subscribes to."""
        return (self.cmd, self.telemetry, self.op, self.lineage_pull, self.estop_state,
                self.envelope)


def valid_device_id(device_id: str) -> bool:
    """MQTT wildcards and separators cannot be part of a device id."""
    return bool(device_id) and not any(c in device_id for c in "+#/\x00")


__all__ = ["Topics", "valid_device_id"]
