# The serial command link (firmware/PROTOCOL.md): "@" body "#" crc32(body) 8 hex "\n".
# Bytes outside a well-formed frame with a matching CRC are dropped and counted; nothing
# in here allocates while no frame completes (the idle control period stays allocation-free).
import binascii

_MAX = 120


class FrameReader:
    def __init__(self):
        self.buf = bytearray(_MAX)
        self.mv = memoryview(self.buf)
        self.n = -1  # -1: outside a frame
        self.bad = 0

    def feed(self, data, count, handle):
        """Scan ``count`` bytes of ``data``; call ``handle(mv, length)`` per valid frame."""
        buf = self.buf
        for i in range(count):
            b = data[i]
            if b == 64:  # '@' (re)starts a frame
                self.n = 0
            elif self.n >= 0:
                if b == 10 or b == 13:
                    self._done(handle)
                    self.n = -1
                elif self.n < _MAX:
                    buf[self.n] = b
                    self.n += 1
                else:
                    self.n = -1
                    self.bad += 1

    def _done(self, handle):
        n = self.n
        k = n - 9
        if k < 1 or self.buf[k] != 35:  # '#'
            self.bad += 1
            return
        want = 0
        for i in range(k + 1, n):
            c = self.buf[i]
            v = c - 48 if 48 <= c <= 57 else c - 87 if 97 <= c <= 102 else -1
            if v < 0:
                self.bad += 1
                return
            want = (want << 4) | v
        if binascii.crc32(self.mv[0:k]) != want:
            self.bad += 1
            return
        handle(self.mv, k)


def parse_ints(mv, start, end, out):
    """Decimal integers separated by spaces in mv[start:end] into ``out``; their count,
    or -1 on anything else. No allocation for small ints."""
    k = 0
    i = start
    while i < end:
        while i < end and mv[i] == 32:
            i += 1
        if i >= end:
            break
        neg = mv[i] == 45
        if neg:
            i += 1
        v = 0
        digits = 0
        while i < end and 48 <= mv[i] <= 57:
            v = v * 10 + mv[i] - 48
            i += 1
            digits += 1
        if not digits or digits > 15 or (i < end and mv[i] != 32) or k >= len(out):
            return -1
        out[k] = -v if neg else v
        k += 1
    return k


def frame(body):
    raw = body.encode() if isinstance(body, str) else body
    return b"@" + raw + (b"#%08x\n" % binascii.crc32(raw))
