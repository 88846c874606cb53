"""An emulated BBC micro:bit v1 (nRF51822) in QEMU, driven from Python.

``MicrobitQemu`` boots ``qemu-system-arm -M microbit`` with a MicroPython hex (Debian's
``firmware-microbit-micropython`` by default), exposes the UART on a loopback TCP port and
QMP on a unix socket, and gives the harness what a bench gives a test engineer:

- ``uart``: a ``Uart`` (bytes in/out with read-until helpers and the raw REPL);
- ``gpio_out()``: the nRF51 GPIO OUT register (0x50000504) read through QMP, so an e-stop
  line is observed at the hardware level, not from what the firmware prints;
- ``system_reset()``: the reset button; ``stop()``/``cont()`` freeze virtual time;
- ``icount_shift``: ``-icount shift=N,sleep=off`` for deterministic virtual time
  (``icount_sleep=True``: ``sleep=on``, an idle board's clock follows the host's, so a
  host round trip is not a long silence in board time);
- ``baud``: host writes keep to that line rate (QEMU's UART has none of its own).

Pins (micro:bit edge connector → nRF51 GPIO bit): pin0 = P0.03, pin1 = P0.02,
pin2 = P0.01, pin8 = P0.18, pin16 = P0.16.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from edgegov.host.net import free_port

DEFAULT_HEX = "/usr/share/firmware-microbit-micropython/firmware.hex"
GPIO_OUT = 0x50000504
GPIO_DIR = 0x50000514
# micro:bit edge pin -> nRF51 GPIO number
PIN_BIT = {0: 3, 1: 2, 2: 1, 8: 18, 12: 20, 16: 16}


class EmulationError(RuntimeError):
    """QEMU is missing, did not start, or the board did not answer."""


def qemu_binary() -> str:
    found = shutil.which("qemu-system-arm")
    if not found:
        raise EmulationError("qemu-system-arm is not installed (tools/setup-system.sh)")
    return found



class Uart:
    """The board's UART over TCP: a byte stream with a buffer and deadlines."""

    def __init__(self, sock: socket.socket, baud: int = 0):
        self.sock = sock
        self.baud = baud  # > 0: writes keep to this line rate (10 bits a byte)
        self.buf = bytearray()
        self.log = bytearray()  # everything received (for failure messages)

    def write(self, data: bytes, pace: int = 0) -> None:
        """Send ``data``; with ``pace`` > 0, in pieces of that size with a small pause (the
        emulated UART has a small RX FIFO and MicroPython 1.9.2 a small ring). With
        ``baud`` set, no faster than that line rate: QEMU's nRF51 UART has no baud timing,
        so a burst otherwise lands at once and overruns the firmware's 64-byte RX ring."""
        if self.baud and not pace:
            t0, step = time.monotonic(), max(1, self.baud // 10 // 200)  # ~5 ms pieces
            for i in range(0, len(data), step):
                self.sock.sendall(data[i : i + step])
                due = t0 + (i + step) * 10 / self.baud
                while (left := due - time.monotonic()) > 0:
                    time.sleep(left)
            return
        if not pace:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), pace):
            self.sock.sendall(data[i : i + pace])
            time.sleep(0.002)

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(4096)
        except TimeoutError:
            return False
        if not chunk:
            raise EmulationError("UART connection closed")
        self.buf += chunk
        self.log += chunk
        del self.log[:-20000]
        return True

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Bytes up to and including ``marker`` (consumed), or ``EmulationError``."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                tail = bytes(self.log[-400:])
                raise EmulationError(f"timeout waiting for {marker!r}; last bytes: {tail!r}")
            self._fill(min(left, 0.2))

    def drain(self, quiet: float = 0.1) -> bytes:
        """Everything that arrives until the line is quiet for ``quiet`` seconds."""
        while self._fill(quiet):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    # -- MicroPython REPL
    def interrupt(self, timeout: float = 10.0) -> None:
        """Stop whatever runs and get a friendly ``>>>`` prompt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.write(b"\r\x03\x03")
            try:
                self.read_until(b">>> ", 1.0)
                self.drain(0.05)
                return
            except EmulationError:
                continue
        raise EmulationError("no REPL prompt; last bytes: %r" % bytes(self.log[-300:]))

    def echo_exec(self, line: str, timeout: float = 30.0, piece: int = 16,
                  tries: int = 8) -> str:
        """Run one line in the friendly REPL with echo flow control: at most ``piece``
        bytes in flight, each piece must come back as echo before the next is sent. The
        emulated UART has no baud timing, so a burst can overrun 1.9.2's RX ring while the
        REPL is in a GC pause; a lost byte shows as a missing echo, the line is cancelled
        (Ctrl-C) before it runs and sent again. Returns the line's output."""
        data = line.encode()
        if b"\r" in data or b"\n" in data or len(data) > 200:
            raise ValueError("echo_exec takes one line of at most 200 bytes")
        for _ in range(tries):
            try:
                for i in range(0, len(data), piece):
                    self.write(data[i : i + piece])
                    self.read_until(data[i : i + piece], min(timeout, 5.0))
            except EmulationError:
                self.interrupt()  # Ctrl-C drops the partial line: nothing ran
                continue
            self.write(b"\r")
            out = self.read_until(b">>> ", timeout)[:-4]
            return out.decode(errors="replace").removeprefix("\r\n").strip()
        raise EmulationError("line did not get through after %d tries: %r" % (tries, line[:60]))

    def raw_enter(self) -> None:
        self.interrupt()
        self.write(b"\x01")
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>", 5.0)

    def raw_exec(self, code: str | bytes, timeout: float = 30.0, pace: int = 16) -> str:
        """Run ``code`` in the raw REPL (entered already); its stdout, or raises on error."""
        if isinstance(code, str):
            code = code.encode()
        self.write(code, pace)
        self.write(b"\x04")
        self.read_until(b"OK", timeout)
        out = self.read_until(b"\x04", timeout)[:-1]
        err = self.read_until(b"\x04", timeout)[:-1]
        self.read_until(b">", timeout)
        if err:
            raise EmulationError("board raised: " + err.decode(errors="replace").strip())
        return out.decode(errors="replace")

    def raw_exit(self) -> None:
        self.write(b"\x02")
        self.read_until(b">>> ", 5.0)


class MicrobitQemu:
    """One emulated micro:bit. Use as a context manager; ``start()`` boots it."""

    def __init__(self, hex_path: str | os.PathLike = DEFAULT_HEX, icount_shift: int | None = None,
                 workdir: str | os.PathLike | None = None, serial: str = "tcp",
                 icount_sleep: bool = False, baud: int = 0):
        self.hex_path = Path(hex_path)
        self.baud = baud  # the host's line rate for uart writes (0: as fast as QEMU takes)
        self.icount_shift = icount_shift
        self.icount_sleep = icount_sleep
        self.serial = serial  # "tcp" (self.uart) or "pty" (self.pty_path for pyserial/mpremote)
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="egmb-")
        self.workdir = Path(workdir or self._tmp.name)
        self.proc: subprocess.Popen | None = None
        self.uart: Uart | None = None
        self.qmp = None
        self._qmp_lock = threading.Lock()  # a supervisor thread samples pins meanwhile
        self._hung = False
        self.port = 0
        self.pty_path = ""

    def command(self) -> list[str]:
        if not self.hex_path.exists():
            raise EmulationError(f"firmware hex {self.hex_path} not found "
                                 "(apt-get install firmware-microbit-micropython)")
        self.port = free_port()
        serial = (f"tcp:127.0.0.1:{self.port},server=on,wait=off,nodelay=on"
                  if self.serial == "tcp"
                  else "pty")
        cmd = [qemu_binary(), "-M", "microbit", "-nographic", "-monitor", "none",
               "-device", f"loader,file={self.hex_path}", "-serial", serial,
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if self.icount_shift is not None:
            sleep = "on" if self.icount_sleep else "off"
            cmd += ["-icount", f"shift={self.icount_shift},align=off,sleep={sleep}"]
        return cmd

    @property
    def qmp_path(self) -> str:
        return str(self.workdir / "qmp.sock")

    def start(self, timeout: float = 20.0) -> MicrobitQemu:
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        self._connect_qmp(deadline)
        if self.serial == "tcp":
            self._connect_uart(deadline)
        else:
            self.pty_path = self._find_pty()
        return self

    def _connect_qmp(self, deadline: float) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        while True:
            self._check_alive()
            if os.path.exists(self.qmp_path):
                try:
                    q = QEMUMonitorProtocol(self.qmp_path)
                    q.connect()
                    self.qmp = q
                    return
                except Exception:  # noqa: BLE001 - socket there, QEMU not listening yet
                    pass
            if time.monotonic() > deadline:
                raise EmulationError("QMP socket did not come up")
            time.sleep(0.05)

    def _connect_uart(self, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), 1.0)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # echo round trips
                self.uart = Uart(sock, self.baud)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise EmulationError("UART TCP port did not come up") from None
                time.sleep(0.05)

    def _find_pty(self) -> str:
        info = self.hmp("info chardev")
        found = re.search(r"serial0: filename=pty:(\S+)", info)
        if not found:
            raise EmulationError("no pty in: " + info)
        return found.group(1)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
            raise EmulationError(f"qemu exited with {self.proc.returncode}: {out.strip()}")

    # -- QMP
    def hmp(self, line: str) -> str:
        with self._qmp_lock:
            return self.qmp.cmd("human-monitor-command", **{"command-line": line})

    def read_word(self, addr: int) -> int:
        text = self.hmp(f"xp /1wx {addr:#x}")
        found = re.search(r":\s*0x([0-9a-fA-F]+)", text)
        if not found:
            raise EmulationError("unexpected xp answer: " + text)
        return int(found.group(1), 16)

    def gpio_out(self) -> int:
        """The GPIO OUT register, read from outside the firmware."""
        return self.read_word(GPIO_OUT)

    def pin_level(self, pin: int) -> int:
        return (self.gpio_out() >> PIN_BIT[pin]) & 1

    def system_reset(self) -> None:
        """The reset line: the board reboots (and runs again if it was hung)."""
        with self._qmp_lock:
            self.qmp.cmd("system_reset")
            if self._hung:
                self.qmp.cmd("cont")
                self._hung = False

    def hang(self) -> None:
        """The board locks up (the CPU stops; pins keep their levels) until a reset."""
        with self._qmp_lock:
            self.qmp.cmd("stop")
            self._hung = True

    def stop(self) -> None:
        with self._qmp_lock:
            self.qmp.cmd("stop")

    def cont(self) -> None:
        with self._qmp_lock:
            self.qmp.cmd("cont")

    def virtual_ns(self) -> int:
        """QEMU's virtual clock (``info time``-free: the icount clock via QMP ``query-...``
        is not exposed for this machine, so callers use the board's own ticks instead)."""
        raise NotImplementedError

    def close(self) -> None:
        if self.uart is not None:
            try:
                self.uart.sock.close()
            except OSError:
                pass
        if self.qmp is not None:
            try:
                self.qmp.close()
            except Exception:  # noqa: BLE001 - best effort on teardown
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> MicrobitQemu:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["MicrobitQemu", "Uart", "EmulationError", "DEFAULT_HEX", "PIN_BIT", "GPIO_OUT"]
