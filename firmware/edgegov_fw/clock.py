# The clock shim: the only place the firmware reads a clock. ticks_ms wraps (2**30 on
# 32-bit ports, 2**62 on the 64-bit unix port); now_ms() is monotonic and never wraps.


class Clock:
    def __init__(self, ticks_ms, ticks_diff):
        self._ticks = ticks_ms
        self._diff = ticks_diff
        self._last = ticks_ms()
        self.now = 0

    def now_ms(self):
        t = self._ticks()
        d = self._diff(t, self._last)
        if d > 0:  # ticks_diff is signed: a read racing backwards must not go back
            self.now += d
            self._last = t
        return self.now
