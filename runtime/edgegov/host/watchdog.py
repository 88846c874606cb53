"""Gateway watchdogs: a Linux ``/dev/watchdog``-style device and systemd ``sd_notify``.

The service calls ``kick()`` only at the end of a complete, healthy control cycle (every
decision allowed it, every effect was performed, the lineage was appended and flushed), so
a hung or failing loop stops feeding and the hardware (or systemd) resets the gateway,
which boots safe.

``DeviceWatchdog``: opening the device arms it; any write is a keepalive; a timeout is set
with ``WDIOC_SETTIMEOUT`` when the driver supports it (a device that does not answers
``ENOTTY``; the timeout then stays the driver's and ``timeout_s`` reports None); writing
``'V'`` before close disarms it (magic close) and is done only on an orderly stop: a crash
closes without it and the hardware resets the machine.

``SystemdNotifier``: datagrams to ``$NOTIFY_SOCKET`` (a path, or an abstract socket when it
starts with ``@``): ``READY=1`` once outputs are safe, ``WATCHDOG=1`` per healthy cycle
(at most every ``WATCHDOG_USEC``/4 when systemd says how often it expects one),
``STOPPING=1`` on an orderly stop. Without ``$NOTIFY_SOCKET`` it does nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import time

WDIOC_KEEPALIVE = 0x80045705
WDIOC_SETTIMEOUT = 0xC0045706
WDIOC_GETTIMEOUT = 0x80045707


class DeviceWatchdog:
    """A watchdog character device: keepalive writes, optional timeout, magic close."""

    def __init__(self, path: str, timeout_s: int | None = None) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self.kicks = 0
        self.timeout_s = self._set_timeout(timeout_s) if timeout_s else self._get_timeout()

    def _set_timeout(self, timeout_s: int) -> int | None:
        try:
            buf = fcntl.ioctl(self.fd, WDIOC_SETTIMEOUT, struct.pack("i", timeout_s))
        except OSError as err:
            if err.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                return None  # the driver has a fixed timeout
            raise
        return struct.unpack("i", buf)[0]  # the driver may round

    def _get_timeout(self) -> int | None:
        try:
            buf = fcntl.ioctl(self.fd, WDIOC_GETTIMEOUT, struct.pack("i", 0))
        except OSError:
            return None
        return struct.unpack("i", buf)[0]

    def ready(self) -> None:
        """Nothing to announce: the device is armed since it was opened."""

    def kick(self) -> None:
        os.write(self.fd, b"\0")
        self.kicks += 1

    def stop(self, orderly: bool) -> None:
        """Close; disarm with the magic ``'V'`` only when ``orderly``."""
        if self.fd < 0:
            return
        try:
            if orderly:
                os.write(self.fd, b"V")
        finally:
            os.close(self.fd)
            self.fd = -1


def notify_address(value: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` → a socket address (``@name`` is the abstract ``\\0name``)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class SystemdNotifier:
    """``sd_notify`` over the ``$NOTIFY_SOCKET`` datagram socket (stdlib only)."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None,
                 clock=time.monotonic) -> None:
        self.address = notify_address(address) if address else None
        self.sock = None
        if self.address is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.min_interval_s = watchdog_usec / 4e6 if watchdog_usec else 0.0
        self._clock = clock
        self._last = -1e18
        self.sent: list[str] = []

    @classmethod
    def from_env(cls, environ=os.environ) -> SystemdNotifier:
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            usec = None  # systemd expects another process's keepalives
        return cls(environ.get("NOTIFY_SOCKET") or None, int(usec) if usec else None)

    def notify(self, text: str) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendto(text.encode(), self.address)
        except OSError:
            return  # systemd gone or not listening: nothing the governor can do about it
        self.sent.append(text)
        del self.sent[:-16]

    def ready(self) -> None:
        self.notify("READY=1\nSTATUS=governing")

    def kick(self) -> None:
        now = self._clock()
        if now - self._last >= self.min_interval_s:
            self._last = now
            self.notify("WATCHDOG=1")

    def stop(self, orderly: bool) -> None:
        if orderly:
            self.notify("STOPPING=1")
        if self.sock is not None:
            self.sock.close()
            self.sock = None


__all__ = ["DeviceWatchdog", "SystemdNotifier", "notify_address", "WDIOC_SETTIMEOUT"]
