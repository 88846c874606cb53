"""Copy the firmware and the compiled envelope onto a board and check what landed.

- micro:bit v1 (MicroPython 1.9.2): its filesystem has no ``stat``, so ``mpremote fs cp``
  fails; files are written through the raw REPL in small chunks (``f.write(b'...')``), then
  read back as hex and compared by SHA-256.
- full-core boards: ``mpremote connect PORT fs cp`` per file, verified with
  ``mpremote fs sha256sum``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "emulation"))
sys.path.insert(0, str(HERE.parent / "hil"))

CHUNK = 48  # bytes per f.write() line: its repr (escapes) must fit one 200-byte REPL line


@dataclass
class Landed:
    name: str
    size: int
    sha256: str
    ok: bool


def _stop_loop(uart) -> None:
    """If the governor loop runs (Ctrl-C is disabled there), ask it to quit first."""
    from boardlink import frame

    uart.write(frame("Q"))
    uart.drain(0.2)


def raw_write(uart, name: str, data: bytes) -> None:
    """Write ``name`` from the friendly REPL, one echo-checked line per chunk
    (``Uart.echo_exec``: no byte lost on the way in). The file is still read back and
    hashed afterwards."""
    uart.echo_exec("f=open(%r,'wb')" % name)
    for i in range(0, len(data), CHUNK):
        out = uart.echo_exec("f.write(%r)" % data[i : i + CHUNK])
        if out != str(len(data[i : i + CHUNK])):
            raise OSError("writing %s at %d: %s" % (name, i, out))
    uart.echo_exec("f.close()")


READBACK = """f=open(%r,'rb')
while 1:
 b=f.read(48)
 if not b:break
 print(''.join(['%%02x'%%x for x in b]))
f.close()"""


def raw_read(uart, name: str) -> bytes:
    out = uart.raw_exec(READBACK % name, timeout=60)
    return bytes.fromhex("".join(out.split()))


def deploy_raw_repl(uart, files: dict[str, bytes], remove_main_first: bool = True) -> list[Landed]:
    """Write ``files`` through the REPL and verify each by reading it back (raw REPL)."""
    _stop_loop(uart)
    uart.interrupt()
    if remove_main_first:  # a half-written main.py must never boot
        uart.echo_exec("import os")
        uart.echo_exec("os.remove('main.py') if 'main.py' in os.listdir() else 0")
        soft_reset(uart)  # a clean heap for the writes (nothing left imported)
    landed = []
    names = sorted(files, key=lambda n: n == "main.py")  # main.py last
    for name in names:
        data = files[name]
        for _ in range(3):  # belt and braces: the read-back decides
            raw_write(uart, name, data)
            uart.raw_enter()
            back = raw_read(uart, name)
            uart.raw_exit()
            if back == data:
                break
        digest = hashlib.sha256(back).hexdigest()
        landed.append(Landed(name, len(back), digest,
                             back == data and digest == hashlib.sha256(data).hexdigest()))
    return landed


def soft_reset(uart) -> None:
    """Ctrl-D at the friendly prompt: soft reboot (heap cleared); back at ``>>>``."""
    from qemu_microbit import EmulationError

    uart.write(b"\x04")
    try:
        uart.read_until(b">>> ", 10.0)
        uart.drain(0.05)
    except EmulationError:
        uart.interrupt()


def reboot_raw_repl(uart) -> None:
    """Soft-reset the board from its REPL (machine.reset): it boots main.py."""
    uart.raw_enter()
    uart.write(b"import machine\nmachine.reset()\x04")


def deploy_mpremote(port: str, files: dict[str, bytes], workdir: Path) -> list[Landed]:
    """Copy ``files`` with mpremote and verify with its ``fs sha256sum``."""
    dirs = sorted({str(Path(n).parent) for n in files if "/" in n})
    base = [sys.executable, "-m", "mpremote", "connect", port]
    for d in dirs:
        parts = Path(d).parts
        for k in range(1, len(parts) + 1):
            subprocess.run(base + ["fs", "mkdir", ":" + "/".join(parts[:k])],
                           capture_output=True, timeout=60)
    landed = []
    for name, data in sorted(files.items(), key=lambda kv: kv[0] == "main.py"):
        local = workdir / name.replace("/", "__")
        local.write_bytes(data)
        subprocess.run(base + ["fs", "cp", str(local), ":" + name], check=True,
                       capture_output=True, timeout=120)
        res = subprocess.run(base + ["fs", "sha256sum", ":" + name], capture_output=True,
                             text=True, timeout=60)
        want = hashlib.sha256(data).hexdigest()
        landed.append(Landed(name, len(data), want, want in res.stdout))
    return landed


__all__ = ["Landed", "deploy_raw_repl", "deploy_mpremote", "raw_write", "raw_read",
           "reboot_raw_repl"]
