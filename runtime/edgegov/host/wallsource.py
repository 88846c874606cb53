"""Wall time into the lineage (the writer side of ``edgegov.host.walltime``).

The host reads its wall clock once per control period and hands the reading to the
lineage writer as data (``Lineage.set_wall``): BOOT and every CHECKPOINT carry the wall
time of their device time. When the wall clock moved more than ``STEP_MS`` away from where
the monotonic clock says it should be since the last reading (an NTP step, an operator
setting the date, a VM resumed), a TIME record ``[7, t, wall_ms]`` marks the step, so
device time on either side of it maps to the right wall time. Nothing decides on wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

STEP_MS = 1000  # a jump of the wall clock beyond this against monotonic time is a step


def system_wall_ms() -> int:
    """Milliseconds since the Unix epoch, UTC (the host's wall clock)."""
    return time.time_ns() // 1_000_000


class WallRecorder:
    """Feeds one lineage writer with wall-clock readings and records clock steps."""

    def __init__(self, lineage, read_wall_ms: Callable[[], int] = system_wall_ms,
                 step_ms: int = STEP_MS) -> None:
        self.lineage = lineage
        self.read_wall_ms = read_wall_ms
        self.step_ms = step_ms
        self.steps = 0

    def boot(self, now_ms: int) -> None:
        """Before ``Lineage.boot``: the reading BOOT will carry."""
        self.lineage.set_wall(now_ms, self.read_wall_ms())

    def cycle(self, now_ms: int) -> bool:
        """Once per period: a fresh reading; True when it was a step (a TIME record)."""
        wall = self.read_wall_ms()
        expected = self.lineage.wall_at(now_ms)
        if expected is not None and abs(wall - expected) > self.step_ms:
            self.steps += 1
            self.lineage.time_step(now_ms, wall)
            return True
        self.lineage.set_wall(now_ms, wall)
        return False


__all__ = ["WallRecorder", "STEP_MS", "system_wall_ms"]
