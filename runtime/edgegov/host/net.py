"""Loopback helpers shared by the service, the benchmarks, the emulators and the tests."""

from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 5.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on ``host:port``, or raise RuntimeError."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port}")


__all__ = ["free_port", "wait_port"]
