"""The clock shim: the only place the service reads a clock.

The core takes ``now_ms`` as an argument; the loop asks a clock for it. ``MonotonicClock``
reads ``time.monotonic_ns`` (never wall time, so NTP steps cannot move it) and counts from
its creation, so ``now_ms`` starts near 0 on every boot like a board's ``ticks_ms``.
``ScriptedClock`` is advanced by hand in tests (nothing sleeps).
"""

from __future__ import annotations

import asyncio
import time


class MonotonicClock:
    """Milliseconds since this clock was created, from the monotonic clock."""

    def __init__(self) -> None:
        self._t0_ns = time.monotonic_ns()

    def now_ms(self) -> int:
        return (time.monotonic_ns() - self._t0_ns) // 1_000_000

    async def sleep_until(self, deadline_ms: int) -> None:
        delay_ms = deadline_ms - self.now_ms()
        await asyncio.sleep(max(0, delay_ms) / 1000)


class ScriptedClock:
    """A clock tests move by hand: ``advance(10)``; ``sleep_until`` only yields."""

    def __init__(self, start_ms: int = 0) -> None:
        self.t_ms = start_ms

    def now_ms(self) -> int:
        return self.t_ms

    def advance(self, delta_ms: int) -> int:
        self.t_ms += delta_ms
        return self.t_ms

    async def sleep_until(self, deadline_ms: int) -> None:
        self.t_ms = max(self.t_ms, deadline_ms)
        await asyncio.sleep(0)


def next_deadline_ms(last_deadline_ms: int, now_ms: int, period_ms: int) -> int:
    """The next period boundary after ``last_deadline_ms``; when the loop fell behind by
    more than one period, skip the missed boundaries instead of running them in a burst."""
    nxt = last_deadline_ms + period_ms
    if nxt <= now_ms - period_ms:
        nxt = now_ms - (now_ms - last_deadline_ms) % period_ms + period_ms
    return nxt


__all__ = ["MonotonicClock", "ScriptedClock", "next_deadline_ms"]
