"""The host end of the firmware's serial command link (firmware/PROTOCOL.md).

Frames, both ways: ``@`` body ``#`` CRC-32 of the body as 8 hex digits, then ``\\n``. The
board ignores anything that is not a well-formed frame with a matching CRC. ``GovLink``
sends requests and waits for the matching reply frame; it works over any stream with
``write``/``read_until`` (``qemu_microbit.Uart`` over TCP, or ``SerialStream`` over a real
port through pyserial).
"""

from __future__ import annotations

import re
import time
import zlib

FRAME = re.compile(rb"@([^@#\r\n]{1,200})#([0-9a-f]{8})\n")


def frame(body: str) -> bytes:
    raw = body.encode()
    return b"@" + raw + b"#%08x\n" % zlib.crc32(raw)


def frames_in(data: bytes) -> list[str]:
    """Every valid frame body in ``data`` (CRC checked), in order."""
    out = []
    for m in FRAME.finditer(data):
        if int(m.group(2), 16) == zlib.crc32(m.group(1)):
            out.append(m.group(1).decode())
    return out


class LinkError(RuntimeError):
    pass


class GovLink:
    """Request/reply over the governor's link on top of a byte stream."""

    def __init__(self, stream):
        self.s = stream
        self.seen: list[str] = []  # every reply body received (for transcripts)
        self._pending = b""

    def _read_frame(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            found = FRAME.search(self._pending)
            while found:
                body, crc = found.group(1), int(found.group(2), 16)
                self._pending = self._pending[found.end():]
                if crc == zlib.crc32(body):
                    text = body.decode()
                    self.seen.append(text)
                    return text
                found = FRAME.search(self._pending)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self._pending += self.s.read_until(b"\n", min(left, 0.5))
            except Exception:  # noqa: BLE001 - a timeout on this read: try until deadline
                continue
            self._pending = self._pending[-4096:]

    def wait(self, prefix: str, timeout: float = 5.0) -> list[str]:
        """The next reply starting with ``prefix``, split into fields."""
        deadline = time.monotonic() + timeout
        while True:
            text = self._read_frame(max(deadline - time.monotonic(), 0))
            if text is None:
                raise LinkError(f"no {prefix!r} reply within {timeout}s")
            if text.split()[0] == prefix:
                return text.split()

    def request(self, body: str, prefix: str, timeout: float = 5.0, tries: int = 3) -> list[str]:
        for _ in range(tries):
            self.s.write(frame(body))
            try:
                return self.wait(prefix, timeout)
            except LinkError:
                continue
        raise LinkError(f"no {prefix!r} reply to {body!r}")

    # -- the governor's commands
    def command(self, seq: int, values) -> dict:
        f = self.request("C %d %s" % (seq, " ".join(str(v) for v in values)), "D")
        return _decision(f[2:])

    def operator(self, action: int, arg: int, counter: int) -> dict:
        f = self.request("A %d %d %d" % (action, arg, counter), "K")
        return _decision(f[2:])

    def status(self) -> dict:
        f = self.request("S", "S")
        keys = ("state", "link", "estop", "causes", "now_ms", "bad_frames", "lost", "next_seq",
                "heap_free")
        out = {k: int(v) for k, v in zip(keys, f[1:10], strict=True)}
        out["outputs"] = [int(x) for x in f[10:]]
        return out

    def pull_lineage(self, timeout: float = 5.0) -> bytes:
        """The board's whole lineage ring image, chunk by chunk (each chunk CRC-framed);
        ``timeout``: seconds per reply."""
        f = self.request("L", "L", timeout)
        size = int(f[1])
        image = bytearray()
        while len(image) < size:
            chunk = self.request("L %d" % len(image), "H", timeout)
            if int(chunk[1]) != len(image) or len(chunk) < 3:
                raise LinkError("lineage chunk out of order")
            image += bytes.fromhex(chunk[2])
        return bytes(image)

    def reply_to(self, body: str, prefixes: tuple[str, ...], timeout: float = 5.0,
                 tries: int = 3) -> list[str]:
        """Like ``request``, but the first reply starting with any of ``prefixes`` (``E``
        among them: a board that does not know the request answers at once)."""
        for _ in range(tries):
            self.s.write(frame(body))
            deadline = time.monotonic() + timeout
            while True:
                text = self._read_frame(max(deadline - time.monotonic(), 0))
                if text is None:
                    break
                if text.split()[0] in prefixes:
                    return text.split()
        raise LinkError(f"no reply to {body!r}")

    def set_time(self, wall_ms: int, timeout: float = 5.0) -> bool | None:
        """Send the host's wall clock (``T``); True when the board recorded a TIME record,
        None when its firmware has no ``T`` (micro:bit)."""
        f = self.reply_to("T %d" % wall_ms, ("T", "E"), timeout)
        return None if f[0] == "E" else f[1] == "1"

    def seal(self, counter: int, timeout: float = 5.0) -> dict | None:
        """Seal the board's lineage (``P``): its head attestation, or None when the firmware
        has no sealed pull (micro:bit) or could not seal."""
        f = self.reply_to("P %d" % counter, ("P", "E"), timeout)
        if f[0] == "E" or len(f) < 6:
            return None
        return {"device": " ".join(f[5:]), "head_seq": int(f[1]), "chain_head": f[2],
                "counter": int(f[3]), "mac": None if f[4] == "-" else f[4]}

    def begin_envelope(self, size: int, timeout: float = 5.0) -> int | None:
        """``V size``: None when the board takes an envelope of ``size`` bytes, else the
        ``E`` code (6: no envelope push on this firmware) or -1 (too large for its slot)."""
        f = self.reply_to("V %d" % size, ("V", "E"), timeout)
        if f[0] == "E":
            return int(f[1])
        return None if int(f[1]) == size else -1

    def push_envelope(self, action: int, counter: int, mac: bytes, blob: bytes = b"",
                      timeout: float = 5.0) -> dict:
        """A signed envelope change (firmware/PROTOCOL.md, Envelope push): ``V``, the blob
        in ``W`` chunks (a push, action 1; none for a rollback, action 2), then ``U``.
        ``{"result", "counter", "old", "new"}`` (hex digests), or ``{"error": code}`` when
        the board has no envelope push (``E 6``: micro:bit)."""
        f = self.reply_to("V %d" % len(blob), ("V", "E"), timeout)
        if f[0] == "E":
            return {"error": int(f[1])}
        if int(f[1]) != len(blob):
            raise LinkError(f"the board cannot hold an envelope of {len(blob)} bytes")
        for off in range(0, len(blob), 48):
            piece = blob[off:off + 48]
            got = self.request("W %d %s" % (off, piece.hex()), "W", timeout)
            if int(got[1]) != off + len(piece):
                raise LinkError("envelope chunk out of order")
        # once only: a second U with the same counter would be answered as a replay
        f = self.reply_to("U %d %d %s" % (action, counter, mac.hex()), ("U", "E"),
                          max(timeout, 10.0), tries=1)
        if f[0] == "E":
            return {"error": int(f[1])}
        return {"result": int(f[1]), "counter": int(f[2]), "old": f[3],
                "new": None if f[4] == "-" else f[4]}

    def quit(self) -> None:
        """Stop the board loop (e-stop asserted first) and return to its REPL."""
        self.request("Q", "Q")


def _decision(fields: list[str]) -> dict:
    # verdict reason state out... estop
    return {"verdict": int(fields[0]), "reason": int(fields[1]), "state": int(fields[2]),
            "outputs": [int(x) for x in fields[3:-1]], "estop": int(fields[-1])}


class SerialStream:
    """pyserial port (or URL: ``socket://host:port``, ``rfc2217://``) with the stream API
    the REPL and link helpers use."""

    def __init__(self, port: str, baudrate: int = 115200):
        import serial

        self.port = serial.serial_for_url(port, baudrate=baudrate, timeout=0.1)
        sock = getattr(self.port, "_socket", None)  # socket:// URL: no Nagle delay on echoes
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def sendall(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def recv(self, n: int) -> bytes:
        data = self.port.read(max(1, self.port.in_waiting or 1))
        if data:
            return data
        raise TimeoutError

    def settimeout(self, timeout: float) -> None:
        self.port.timeout = timeout

    def close(self) -> None:
        self.port.close()


__all__ = ["GovLink", "LinkError", "SerialStream", "frame", "frames_in"]
