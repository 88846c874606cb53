"""One writer per lineage file: an exclusive ``flock`` on a sidecar ``PATH.lock``.

The lock is taken before the lineage file is read, created or written, and held for the
life of the process (the kernel drops it when the process ends, however it ends, so a
crash never leaves a stale lock). The sidecar holds the holder's PID as text, so a second
``edgegov run`` on the same file can say who holds it. The sidecar is never removed:
unlinking a lock file lets two processes each hold a lock on a different inode.

A sidecar rather than the lineage file itself, because the lineage file is created under a
temporary name and renamed into place (``FileBlockDevice``): a lock on the old inode would
not stop a writer of the new one.
"""

from __future__ import annotations

import fcntl
import os


class LineageInUse(RuntimeError):
    """Another process holds the lineage file's lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(f"{path}: lineage in use by {who} (an edgegov run writes it); stop "
                         "that one or give another --lineage")
        self.path = path
        self.pid = pid


class DeviceInUse(RuntimeError):
    """Another instance of the same device is live on the broker (another lineage file)."""

    def __init__(self, device: str, boot: object = None) -> None:
        super().__init__(f"device {device}: another edgegov run is online on this broker "
                         f"(retained state online, boot {boot}); refusing a second instance "
                         "(two would take each other's MQTT client id in turn)")
        self.device = device


class LineageLock:
    """The exclusive writer's lock of ``lineage_path`` (``acquire()`` or ``with``)."""

    def __init__(self, lineage_path: str | os.PathLike) -> None:
        self.path = os.fspath(lineage_path)
        self.lock_path = self.path + ".lock"
        self.fd = -1

    def acquire(self) -> LineageLock:
        """Take the lock or raise ``LineageInUse`` (never waits)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LineageInUse(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> LineageLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def holder(lineage_path: str | os.PathLike) -> int | None:
    """PID holding the lock of ``lineage_path``, or None when nobody does."""
    try:
        fd = os.open(os.fspath(lineage_path) + ".lock", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or -1
    finally:
        os.close(fd)
    return None


__all__ = ["LineageLock", "LineageInUse", "DeviceInUse", "holder"]
