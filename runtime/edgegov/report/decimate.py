"""Which records a report plots: every one that mattered, and enough of the rest.

A browser stays responsive with some 10⁵ points per plot, a long dump has 10⁶ records and
more, and most of them are ALLOW decisions where nothing happened. So every *important*
record (any verdict but ALLOW, any event, boots, gaps, what-if differences) is kept, and
the others are thinned per bucket of consecutive records: the first and last of the bucket
and, per plotted series, the records holding its minimum and maximum. The shape of every
line survives (peaks included) at any zoom down to one bucket. Dumps under
``keep_all_below`` records are not thinned at all.
"""

from __future__ import annotations

DEFAULT_BUCKETS = 4000
KEEP_ALL_BELOW = 50_000


class Decimator:
    """Streams ``offer(index, item, values, important)`` in record order; returns the items
    to keep, in order, as soon as their bucket is complete (``finish()`` for the last)."""

    def __init__(self, total: int, buckets: int = DEFAULT_BUCKETS,
                 keep_all_below: int = KEEP_ALL_BELOW):
        self.size = 1 if total < keep_all_below else -(-total // buckets)
        self.offered = 0
        self.kept = 0
        self._bucket = -1
        self._picked: dict[int, object] = {}
        self._first = None
        self._last = None
        self._lo: dict[int, tuple] = {}
        self._hi: dict[int, tuple] = {}

    def offer(self, index: int, item, values, important: bool) -> list:
        self.offered += 1
        if self.size == 1:
            self.kept += 1
            return [item]
        out = []
        bucket = index // self.size
        if bucket != self._bucket:
            out = self._flush()
            self._bucket = bucket
        if important:
            self._picked[index] = item
            return out
        entry = (index, item)
        if self._first is None:
            self._first = entry
        self._last = entry
        lows = self._lo
        highs = self._hi
        for k, v in enumerate(values):
            if v is None:
                continue
            lo = lows.get(k)
            if lo is None or v < lo[0]:
                lows[k] = (v, entry)
            hi = highs.get(k)
            if hi is None or v > hi[0]:
                highs[k] = (v, entry)
        return out

    def finish(self) -> list:
        return [] if self.size == 1 else self._flush()

    def _flush(self) -> list:
        picked = self._picked
        for entry in (self._first, self._last):
            if entry is not None:
                picked[entry[0]] = entry[1]
        for extreme in (self._lo, self._hi):
            for _, (index, item) in extreme.values():
                picked[index] = item
        out = [picked[i] for i in sorted(picked)]
        self.kept += len(out)
        self._picked = {}
        self._first = self._last = None
        self._lo, self._hi = {}, {}
        return out


__all__ = ["Decimator", "DEFAULT_BUCKETS", "KEEP_ALL_BELOW"]
