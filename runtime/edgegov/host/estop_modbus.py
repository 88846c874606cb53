"""E-stop output on a Modbus coil of a downstream drive, with readback.

Implements the e-stop backend seam of ``host.estop`` (``drive``/``readback``/``check``) over
a ``DriveClient``: ``drive`` hands the level to the client (its task writes the coil and
reads it back); ``check`` reports a readback that disagrees with the commanded level for
``readback_ms`` as fault ``F_ESTOP_READBACK`` (and its clearing once it agrees again). A
drive that does not answer at all is the client's ``F_DRIVE_LINK`` fault, not a readback
mismatch: the last readback is kept, never guessed.
"""

from __future__ import annotations


class ModbusCoilEstop:
    """The e-stop level on a drive's coil; a wrong readback is a fault."""

    def __init__(self, client, readback_ms: int = 200) -> None:
        self.client = client
        self.readback_ms = readback_ms
        self.level: bool | None = None
        self.since_ms = 0
        self.faulted = False

    def drive(self, level: bool, now_ms: int) -> None:
        if level != self.level:
            self.level = level
            self.since_ms = now_ms
        self.client.set_estop(level)

    def readback(self, payload: bytes, now_ms: int) -> None:
        pass  # the client reads the coil itself

    def check(self, now_ms: int) -> bool | None:
        """True: a mismatch just became a fault; False: it just cleared; None: no change."""
        c = self.client
        seen = c.readback is not None and c.readback_for == self.level
        bad = seen and c.readback != self.level
        late = self.level is not None and now_ms - self.since_ms >= self.readback_ms
        if bad and late and not self.faulted:
            self.faulted = True
            return True
        if self.faulted and seen and not bad:
            self.faulted = False
            return False
        return None


__all__ = ["ModbusCoilEstop"]
