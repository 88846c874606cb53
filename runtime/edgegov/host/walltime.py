"""Wall time of device time in a lineage (recorded, never used to decide).

Anchors are BOOT (field 9 ``wall_ms``), CHECKPOINT (trailing field 8 ``wall_ms``) and
TIME ``[7, t, wall_ms]`` records. The wall time of device time ``t`` in a boot is
``anchor.wall_ms + (t - anchor.t)`` for the latest anchor at or before ``t`` in that boot;
before the first anchor, the first anchor after it (same formula).
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Iterable

from ..core.record import K_BOOT, K_CHECKPOINT

K_TIME = 7  # TIME [7, t, wall_ms]: a step of the host clock (not yet written by the core)
_KIND_BY_NAME = {"BOOT": K_BOOT, "CHECKPOINT": K_CHECKPOINT, "TIME": K_TIME}


def _anchor(item) -> tuple[int, int | None, int | None]:
    """(kind, t_ms, wall_ms) of one record: a decoded CBOR array, (seq, array) or a decode dict."""
    if isinstance(item, dict):
        kind = item.get("kind")
        kind = _KIND_BY_NAME.get(str(kind).upper(), kind) if isinstance(kind, str) else kind
        return kind, item.get("t_ms"), item.get("wall_ms")
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (list, tuple)):
        item = item[1]
    if not isinstance(item, (list, tuple)) or not item:
        return -1, None, None
    kind = item[0]
    t = item[1] if len(item) > 1 else None
    wall = None
    if kind == K_BOOT and len(item) > 9:
        wall = item[9]
    elif kind == K_CHECKPOINT and len(item) > 8:
        wall = item[8]
    elif kind == K_TIME and len(item) > 2:
        wall = item[2]
    return kind, t, wall


class WallClock:
    """Maps (boot index, device ms) to wall ms from the anchors of each boot."""

    def __init__(self, boots: list[list[tuple[int, int]]]):
        self._boots = [sorted(b) for b in boots]
        # the stretch between two anchors the last ``at`` fell in: (boot, from, to, anchor)
        self._last = (-1, 0, 0, (0, 0))

    @classmethod
    def from_records(cls, records: Iterable) -> WallClock:
        """Collect anchors per boot; boot index 0 is the first BOOT (records before it: boot 0)."""
        boots: list[list[tuple[int, int]]] = []
        for item in records:
            kind, t, wall = _anchor(item)
            if kind == K_BOOT:
                boots.append([])
            if kind not in (K_BOOT, K_CHECKPOINT, K_TIME):
                continue
            if not boots:
                boots.append([])
            if isinstance(t, int) and isinstance(wall, int) and not isinstance(wall, bool):
                boots[-1].append((t, wall))
        return cls(boots)

    def at(self, boot_index: int, t_ms: int) -> int | None:
        """Wall ms (UTC) of device time ``t_ms`` in boot ``boot_index``; None when not known."""
        boot, lo, hi, (t0, w0) = self._last
        if boot == boot_index and lo <= t_ms < hi:  # (records come in time order)
            return w0 + (t_ms - t0)
        if not 0 <= boot_index < len(self._boots):
            return None
        anchors = self._boots[boot_index]
        if not anchors:
            return None
        i = bisect.bisect_right(anchors, (t_ms, float("inf"))) - 1
        t0, w0 = anchors[max(i, 0)]
        lo = anchors[i][0] if i >= 0 else float("-inf")
        hi = anchors[i + 1][0] if i + 1 < len(anchors) else float("inf")
        self._last = (boot_index, lo, hi, (t0, w0))
        return w0 + (t_ms - t0)

    @property
    def known(self) -> bool:
        """True when any boot has a wall-time anchor."""
        return any(self._boots)


def dump_wall_clock(records) -> WallClock:
    """The ``WallClock`` of a dump's ``(seq, payload)`` records (decodes only the anchors)."""
    return WallClock.from_records(_anchors(records))


def wall_span(records) -> tuple[int, int, int] | None:
    """(first, last, steps): the wall ms of the first and the last record carrying wall
    time in ring order, and the number of TIME records (clock steps); None when none does."""
    first = last = None
    steps = 0
    for kind, _, wall in (_anchor(r) for r in _anchors(records)):
        if kind == K_TIME:
            steps += 1
        if isinstance(wall, int) and not isinstance(wall, bool):
            first = wall if first is None else first
            last = wall
    return None if first is None else (first, last, steps)


def _anchors(records):
    from ..core.record import RecordError, decode

    for _, payload in records:
        if len(payload) > 1 and payload[1] in (K_BOOT, K_CHECKPOINT, K_TIME):
            try:
                yield decode(payload)
            except RecordError:
                continue


class BootIndex:
    """Follows ``WallClock.from_records``'s boot numbering record by record (by kind)."""

    def __init__(self) -> None:
        self.index = 0
        self._started = False

    def see(self, kind) -> int:
        if kind == K_BOOT:
            if self._started:
                self.index += 1
            self._started = True
        elif kind in (K_CHECKPOINT, K_TIME):
            self._started = True
        return self.index


class WallLookup:
    """Wall time by (seq, device ms) for the records of one dump: ``text(seq, t_ms)``."""

    def __init__(self, records) -> None:
        self.clock = dump_wall_clock(records)
        boots = BootIndex()
        self._boot = {seq: boots.see(p[1] if len(p) > 1 else -1) for seq, p in records} \
            if self.clock.known else {}

    def text(self, seq: int, t_ms) -> str | None:
        boot = self._boot.get(seq)
        if boot is None or type(t_ms) is not int:
            return None
        wall = self.clock.at(boot, t_ms)
        return None if wall is None else format_wall(wall)


def format_wall(wall_ms: int) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-12-04T06:33:11.123Z``."""
    secs, ms = divmod(int(wall_ms), 1000)
    dt = datetime.datetime.fromtimestamp(secs, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"
