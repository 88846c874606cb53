"""Content-addressed files beside the archive database: dumps and reports by SHA-256.

A file lives at ``ROOT/ab/abcdef…`` (the first two hex digits fan the directory out), with
an optional suffix (``.html`` for reports). Writing is idempotent and atomic: the bytes go
to a temporary file in the same directory, are flushed, and are renamed into place, so a
collector killed mid-write leaves either nothing or the whole file, and two collectors
writing the same dump write the same name.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class StoreError(Exception):
    """A stored file that is missing or does not match its name."""


class Store:
    """Files named by the SHA-256 of their content under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path(self, sha256: str, suffix: str = "") -> Path:
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str = "", durable: bool = True) -> str:
        """Store ``data``; return its SHA-256 (hex). A file already there is kept."""
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(digest, suffix)
        if final.exists() and final.stat().st_size == len(data):
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
        return digest

    def get(self, sha256: str, suffix: str = "") -> bytes:
        """The stored bytes, checked against their name."""
        path = self.path(sha256, suffix)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise StoreError(f"{path}: {err.strerror}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"{path}: content does not match its SHA-256")
        return data


__all__ = ["Store", "StoreError"]
