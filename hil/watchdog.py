"""The external watchdog of a board without one (the micro:bit's nRF51 in QEMU has no WDT
model): the firmware toggles a kick pin once per healthy control period; this supervisor
watches that pin from outside (sampling: poll several times per kick period) (QMP GPIO reads, or a software board's register) and pulls
the reset line when it has not toggled for ``timeout_s`` of host time, as a hardware
watchdog chip (e.g. a TPL5010 or a MAX6369) would.
"""

from __future__ import annotations

import threading
import time


class KickSupervisor:
    """Poll ``board.pin_level(pin)``; no toggle for ``timeout_s`` → ``board.system_reset()``."""

    def __init__(self, board, pin: int, timeout_s: float = 1.0, poll_s: float = 0.005):
        self.board = board
        self.pin = pin
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.resets = 0
        self.toggles = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> KickSupervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last = self.board.pin_level(self.pin)
        seen = time.monotonic()
        while not self._stop.wait(self.poll_s):
            level = self.board.pin_level(self.pin)
            now = time.monotonic()
            if level != last:
                last, seen = level, now
                self.toggles += 1
            elif now - seen > self.timeout_s:
                self.board.system_reset()
                self.resets += 1
                seen = time.monotonic()


__all__ = ["KickSupervisor"]
