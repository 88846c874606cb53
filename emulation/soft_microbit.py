"""A software micro:bit: the real minimal firmware (firmware/microbit: egmain, egg, egr and
the generated egc) run by CPython against stand-ins for ``microbit``, ``utime``,
``machine``, ``micropython`` and ``gc``, with the same harness API as ``MicrobitQemu``
(``uart``, ``gpio_out()``, ``pin_level()``, ``system_reset()``).

Why: the HIL scenarios run here in a couple of seconds on the very firmware source the
QEMU board runs frozen in flash (tests/test_hil_qemu.py runs them there too, slower), so
a transcript difference between the two points at the VM or the HAL, not the governor.
Time is virtual and deterministic: the board's
``utime.ticks_ms`` advances only by its own ``sleep_ms`` (one control period each), and
every write to the GPIO OUT register is logged with the board time, so latencies are
measured in board milliseconds, not host wall time. The host side paces nothing: the board
thread sleeps ``period_pace_s`` of wall time per period (default 2 ms: a 20 ms period runs
10× faster than real time) so UART bytes interleave as on a real link, and a host stalled
for a few milliseconds on a loaded machine does not look like a lost link to the board.
"""

from __future__ import annotations

import builtins
import socket
import threading
import time
import types
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware" / "microbit"
PIN_BIT = {0: 3, 1: 2, 2: 1, 8: 18, 12: 20, 16: 16}  # as on the nRF51
_WRAP = 1 << 30


class _Hang(BaseException):
    """Raised inside the board thread to stop it (reset / power off)."""


class _Board:
    """One power-on of the board: fresh modules (RAM), shared pins (hardware)."""

    def __init__(self, hw: SoftMicrobit):
        self.hw = hw
        self.mods: dict[str, types.ModuleType] = {}
        self.rxbuf = bytearray()

    # -- stand-in modules
    def _microbit(self):
        hw, board = self.hw, self
        m = types.ModuleType("microbit")

        class Pin:
            PULL_UP = 1

            def __init__(self, n):
                self.n = n

            def write_digital(self, v):
                hw._write_pin(self.n, v)

            def read_digital(self):
                return hw.inputs.get(self.n, 1)

            def set_pull(self, p):
                pass

        class Uart:
            def any(self):
                board._poll()
                return len(board.rxbuf)

            def read(self, n):
                out = bytes(board.rxbuf[:n])
                del board.rxbuf[:n]
                return out

            def write(self, s):
                hw._board_sock.sendall(s.encode() if isinstance(s, str) else s)

        for n in PIN_BIT:
            setattr(m, f"pin{n}", Pin(n))
        m.uart = Uart()
        return m

    def _utime(self):
        hw = self.hw
        m = types.ModuleType("utime")
        m.ticks_ms = lambda: hw.board_ms % _WRAP
        m.ticks_add = lambda a, d: (a + d) % _WRAP
        m.ticks_diff = lambda a, b: ((a - b + _WRAP // 2) % _WRAP) - _WRAP // 2
        m.sleep_ms = hw._sleep_ms
        return m

    def _poll(self):
        try:
            while True:
                chunk = self.hw._board_sock.recv(4096)
                if not chunk:  # the host hung up: wait for the next one (a real UART)
                    self.hw._reconnect()
                    continue
                self.rxbuf += chunk
        except BlockingIOError:
            pass

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if name in self.mods:
            return self.mods[name]
        hw = self.hw
        if name == "microbit":
            mod = self._microbit()
        elif name == "utime":
            mod = self._utime()
        elif name == "machine":
            mod = types.ModuleType("machine")
            mod.mem32 = hw.mem32
        elif name == "micropython":
            mod = types.ModuleType("micropython")
            mod.kbd_intr = lambda c: None
        elif name == "gc":
            mod = types.ModuleType("gc")
            mod.collect = lambda: None
            mod.mem_free = lambda: -1  # not a heap figure: this is CPython
        elif name in hw.files:
            mod = types.ModuleType(name)
            mod.__dict__["__builtins__"] = self.builtins
            self.mods[name] = mod
            exec(compile(hw.files[name], name + ".py", "exec"), mod.__dict__)
            return mod
        else:
            raise ImportError(name)
        self.mods[name] = mod
        return mod

    def run(self):
        self.hw.boot_ms = self.hw.board_ms  # egmain's now_ms counts from here
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import
        try:
            if "main" in self.hw.files:
                self._import("main")
        except _Hang:
            pass


class SoftMicrobit:
    """The software board. ``files``: name → source as deployed (``build.microbit_files``)."""

    def __init__(self, files: dict[str, bytes], period_pace_s: float = 0.002,
                 serial: str = "pair"):
        self.files = {n[:-3]: d.decode() for n, d in files.items() if n.endswith(".py")}
        self.pace = period_pace_s
        self.board_ms = 0
        self.out = 0  # GPIO OUT register
        self.log: list[tuple[int, int]] = []  # (board_ms, OUT) after every pin write
        self.inputs: dict[int, int] = {}
        self.mem32 = {0x40000400: 1}  # POWER.RESETREAS: pin reset at power-on
        self.resets = 0
        self._stop = threading.Event()
        self._hung = threading.Event()
        self._thread: threading.Thread | None = None
        self.uart = None
        self.serial = serial  # "pair" (socketpair) or "tcp" (self.port, one client at a time)
        self.port = 0
        self.boot_ms = 0
        self._listener: socket.socket | None = None

    # -- harness API (as MicrobitQemu)
    def start(self) -> SoftMicrobit:
        from qemu_microbit import Uart

        if self.serial == "tcp":
            self._listener = socket.create_server(("127.0.0.1", 0))
            self.port = self._listener.getsockname()[1]
            host = socket.create_connection(("127.0.0.1", self.port))
            self._board_sock = self._listener.accept()[0]
        else:
            host, self._board_sock = socket.socketpair()
        self._board_sock.setblocking(False)
        self.uart = Uart(host)
        self._boot()
        return self

    def _boot(self):
        self._stop.clear()
        self._hung.clear()
        self._thread = threading.Thread(target=_Board(self).run, daemon=True)
        self._thread.start()

    def gpio_out(self) -> int:
        return self.out

    def pin_level(self, pin: int) -> int:
        return (self.out >> PIN_BIT[pin]) & 1

    def system_reset(self) -> None:
        """The reset line: the loop stops, RAM is lost, GPIOs go to their reset level."""
        self._stop.set()
        self._hung.clear()
        if self._thread is not None:
            self._thread.join(10)
        self.out = 0
        self.log.append((self.board_ms, 0))
        self.mem32[0x40000400] = 1  # RESETPIN
        self.resets += 1
        self._boot()

    def hang(self) -> None:
        """The loop stops (stuck in a driver, say): no more periods, no more kicks."""
        self._hung.set()

    def close(self) -> None:
        self._stop.set()
        self._hung.clear()
        if self._thread is not None:
            self._thread.join(10)
        if self.uart is not None:
            self.uart.sock.close()
        self._board_sock.close()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> SoftMicrobit:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- board side
    def _reconnect(self) -> None:
        if self._listener is None:
            raise _Hang
        self._board_sock.close()
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                self._board_sock = self._listener.accept()[0]
                self._board_sock.setblocking(False)
                return
            except TimeoutError:
                continue
        raise _Hang

    def _write_pin(self, n: int, v: int) -> None:
        bit = 1 << PIN_BIT[n]
        self.out = (self.out | bit) if v else (self.out & ~bit)
        self.log.append((self.board_ms, self.out))

    def _sleep_ms(self, ms: int) -> None:
        while self._hung.is_set() and not self._stop.is_set():
            time.sleep(0.01)
        if self._stop.is_set():
            raise _Hang
        self.board_ms += ms
        time.sleep(self.pace)


__all__ = ["SoftMicrobit", "PIN_BIT"]
