"""Host-side operator actions: sign with the device key and a monotonic counter."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .core import auth
from .core.events import Operator


class KeyFileError(Exception):
    """A device key file that is missing, malformed or readable by others."""


def load_key(path: str | Path) -> bytes:
    """Read a device key (hex or raw bytes, ≥ 16 bytes); refuse a group/world-readable file."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read key: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: key file must not be accessible by group or others (chmod 600)")
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) < 16:
        raise KeyFileError(f"{path}: key too short (need at least 16 bytes)")
    return key


def write_key(path: str | Path) -> bytes:
    """Create a new random device key file readable only by its owner."""
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


class OperatorSigner:
    """Signs operator actions for one device with a strictly increasing counter."""

    def __init__(self, key: bytes, device_id: str, counter: int = 0):
        self.key = key
        self.device_id = device_id
        self.counter = counter

    def sign(self, action: int, arg: int = 0) -> Operator:
        self.counter += 1
        mac = auth.sign_op(self.key, self.device_id, action, arg, self.counter)
        return Operator(action, arg, self.counter, mac)
