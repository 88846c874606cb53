"""The envelope a gateway runs, on disk: replaced atomically, the previous one kept.

    DIR/envelope.toml        the envelope in force (its TOML source: a gateway compiles and
                             admits it again, and keeps its host-side [modbus] settings)
    DIR/envelope.prev.toml   the one before it (what ``rollback`` restores)

``apply(blob)`` keeps a power cut at any point from leaving anything but exactly the old or
exactly the new envelope in force:

1. write ``envelope.toml.new`` and fsync it;
2. copy the current envelope to ``envelope.prev.toml.new``, fsync, rename it over
   ``envelope.prev.toml`` (the current one is untouched so far);
3. rename ``envelope.toml.new`` over ``envelope.toml`` (atomic on POSIX) and fsync the
   directory so the rename is durable.

``load()`` ignores (and removes) ``*.new`` leftovers, and refuses a current file that
admission refuses (``EnvelopeConfigError``), so a torn file can never be taken for one.
``rollback()`` is ``apply(previous)``: the two swap places. Every file operation goes
through ``Disk``, which the power-cut tests replace with one that loses what was not
synced.
"""

from __future__ import annotations

import os
from pathlib import Path

CURRENT = "envelope.toml"
PREVIOUS = "envelope.prev.toml"
NEW = ".new"


class Disk:
    """The few file operations the store needs (the real ones)."""

    def write(self, path: Path, data: bytes) -> None:
        """Write ``path`` and fsync it."""
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def sync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def compile_source(source: bytes, name: str):
    """Envelope TOML bytes → ``CompiledEnvelope`` (``EnvelopeConfigError`` when refused)."""
    from .compile import compile_text
    from .problems import EnvelopeConfigError, Problem

    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EnvelopeConfigError([Problem(name, (), f"not UTF-8 text: {err}")]) from None
    return compile_text(text, name)


class EnvelopeStore:
    """The gateway's current and previous compiled envelopes in one directory."""

    def __init__(self, directory: str | Path, disk: Disk | None = None,
                 current: str = CURRENT, previous: str = PREVIOUS) -> None:
        self.dir = Path(directory)
        self.disk = disk or Disk()
        self.current, self.previous = current, previous

    @classmethod
    def for_file(cls, path: str | Path, disk: Disk | None = None) -> EnvelopeStore:
        """The store of a service's ``--config`` file: ``cell.toml`` in force, the previous
        one kept as ``cell.prev.toml`` beside it."""
        path = Path(path)
        return cls(path.parent, disk, path.name, f"{path.stem}.prev{path.suffix}")

    def load(self) -> tuple[bytes | None, bytes | None]:
        """(current, previous) sources after cleaning up an interrupted apply. A current
        file that admission refuses raises ``EnvelopeConfigError``; a bad previous one reads
        as None."""
        from .problems import EnvelopeConfigError

        for name in (self.current + NEW, self.previous + NEW):
            self.disk.remove(self.dir / name)
        current = self.disk.read(self.dir / self.current)
        if current is not None:
            compile_source(current, str(self.dir / self.current))  # raises for a torn file
        previous = self.disk.read(self.dir / self.previous)
        try:
            if previous is not None:
                compile_source(previous, str(self.dir / self.previous))
        except EnvelopeConfigError:
            previous = None
        return current, previous

    def apply(self, source: bytes) -> str:
        """Make ``source`` (envelope TOML, admitted) the envelope in force; the current one
        becomes the previous. Returns the compiled hash (hex)."""
        compiled = compile_source(source, "<pushed envelope>")
        d = self.dir
        cur, prev = d / self.current, d / self.previous
        self.disk.write(d / (self.current + NEW), source)
        current = self.disk.read(cur)
        if current is not None:
            self.disk.write(d / (self.previous + NEW), current)
            self.disk.rename(d / (self.previous + NEW), prev)
        self.disk.rename(d / (self.current + NEW), cur)
        self.disk.sync_dir(d)
        return compiled.hash

    def read_counter(self) -> int:
        """The last push counter accepted (0: none yet)."""
        raw = self.disk.read(self.dir / (self.current + ".counter"))
        try:
            return int(raw.decode()) if raw else 0
        except ValueError:
            return 1 << 63  # unreadable: refuse everything until an operator looks

    def write_counter(self, counter: int) -> None:
        """Keep ``counter`` (before the change is applied: a verified push is used up)."""
        path = self.dir / (self.current + ".counter")
        self.disk.write(path.with_name(path.name + NEW), str(counter).encode())
        self.disk.rename(path.with_name(path.name + NEW), path)
        self.disk.sync_dir(self.dir)

    def rollback(self) -> str:
        """Put the previous envelope back in force (the current one becomes the previous)."""
        _, previous = self.load()
        if previous is None:
            raise FileNotFoundError(f"{self.dir / self.previous}: no previous envelope to roll "
                                    "back to")
        return self.apply(previous)


__all__ = ["EnvelopeStore", "Disk", "compile_source", "CURRENT", "PREVIOUS"]
