"""The block-device port over a preallocated file: the lineage store of a gateway.

The file is exactly ``block_size * block_count`` bytes, created (when missing or empty)
filled with 0xFF (erased) and fully written so no block is sparse (no ENOSPC later); any
other size is refused with ``FileGeometryError``. ``prog`` is ``os.pwrite``,
``erase`` writes 0xFF over the block, ``sync`` is ``os.fdatasync``.

Group commit (``group_commit=True``): the ring calls ``sync()`` as often as it likes and
``sync()`` only notes that data is dirty; the service loop calls ``flush()`` once per
control period, which performs the ``fdatasync``. Declared loss window: on power loss (or a
kernel crash) the records appended since the last ``flush()`` -- at most one control
period -- may be lost; a crash of the process alone loses nothing (the page cache has the
writes). Order is kept even so: ``erase()`` flushes first, and the ``sync()`` that follows
an erase is performed at once, so a sector change is always durable in order (the ring's
recovery relies on that; see ``edgegov.core.ring``).

Background group commit (``commit_soon()``, what the gateway's loop calls once per period):
the ``fdatasync`` runs on a worker thread, so the loop never waits for the disk (an SD card
can take tens of ms). The writes it covers were all made before it started; a failure is
raised by the next ``commit_soon()``; while one is still running the next period's commit
waits for the period after (``lag`` counts the periods it has been running). The loss window
then is the records since the last completed commit: two periods while commits keep up.
A sector change and ``flush()`` stay synchronous (they wait for a running commit first).

``durable=False`` skips ``fdatasync`` entirely (tests, tmpfs); ordering across a power
cut is then not guaranteed.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

from edgegov.core.blockdev import check_geometry

_CHUNK = 1 << 16


class FileGeometryError(ValueError):
    """The file exists but its size does not match the requested geometry."""


class FileBlockDevice:
    """Block device over ``path`` (created and filled with 0xFF if missing)."""

    def __init__(
        self,
        path: str | os.PathLike,
        block_size: int,
        block_count: int,
        durable: bool = True,
        group_commit: bool = False,
    ):
        check_geometry(block_size, block_count)
        self.path = os.fspath(path)
        self.block_size = block_size
        self.block_count = block_count
        self.durable = durable
        self.group_commit = group_commit
        self._dirty = False
        self._erase_pending = False
        self._records = False  # prog since the last flush: an erase must make it durable first
        self.datasyncs = 0  # fdatasync calls performed: what group commit saves
        self.lag = 0  # periods the running background commit has been running
        self._worker: ThreadPoolExecutor | None = None
        self._commit: Future | None = None
        self.fd = self._open()

    # ------------------------------------------------------------ opening

    def _open(self) -> int:
        size = self.block_size * self.block_count
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return self._create(size)
        if os.fstat(fd).st_size == 0:  # e.g. made by mktemp: nothing in it to lose
            os.close(fd)
            return self._create(size)
        self._check_size(fd, size)
        return fd

    def _create(self, size: int) -> int:
        # Filled under a temporary name and renamed into place, so a crash while creating
        # never leaves a short file at ``path``.
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self._fill(fd, size)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        if self.durable:
            self._fsync_dir()
        return fd

    def _check_size(self, fd: int, size: int) -> None:
        actual = os.fstat(fd).st_size
        if actual != size:
            os.close(fd)
            raise FileGeometryError(
                f"{self.path}: {actual} bytes, but {self.block_count} blocks of "
                f"{self.block_size} bytes need {size}; wrong geometry, or not a lineage file"
            )

    def _fill(self, fd: int, size: int) -> None:
        chunk = b"\xff" * min(size, _CHUNK)
        done = 0
        while done < size:
            done += os.pwrite(fd, chunk[: size - done], done)
        if self.durable:
            os.fsync(fd)

    def _fsync_dir(self) -> None:
        # The new file's directory entry must be durable too, or the file may vanish.
        dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # ------------------------------------------------------------ the port

    def _offset(self, block: int, offset: int, n: int) -> int:
        if not 0 <= block < self.block_count or offset < 0 or offset + n > self.block_size:
            raise ValueError(f"block {block} offset {offset} length {n} out of range")
        return block * self.block_size + offset

    def read(self, block: int, offset: int, buf) -> None:
        """Fill ``buf`` from ``block``/``offset``."""
        n = len(buf)
        data = os.pread(self.fd, n, self._offset(block, offset, n))
        if len(data) != n:
            raise OSError(f"{self.path}: short read at block {block}")
        buf[:] = data

    def prog(self, block: int, offset: int, data) -> None:
        """Write ``data`` at ``block``/``offset``."""
        self._records = True
        self._write(self._offset(block, offset, len(data)), memoryview(data))

    def progv(self, block: int, offset: int, parts) -> None:
        """Write ``parts`` back to back at ``block``/``offset`` in one ``pwritev`` (a ring
        frame: head, payload, commit CRC). Before the next ``flush()`` the kernel may persist
        separate writes in any order anyway; recovery checks each frame's CRC."""
        views = [memoryview(p) for p in parts]
        n = sum(len(v) for v in views)
        pos = self._offset(block, offset, n)
        self._dirty = True
        self._records = True
        done = os.pwritev(self.fd, views, pos)
        if done < n:  # short write (rare): finish from where it stopped
            self._write(pos + done, memoryview(b"".join(views))[done:])

    def erase(self, block: int) -> None:
        """Write 0xFF over ``block``; in group-commit mode, flush earlier record writes
        first (a sector's records are durable before the block after it changes). Erases
        alone need no order among themselves: formatting a ring is one ``fdatasync`` at its
        end, not one per block."""
        if self.group_commit:
            if self._records:
                self.flush()
            self._erase_pending = True
        self._write(self._offset(block, 0, self.block_size), b"\xff" * self.block_size)

    def sync(self) -> None:
        """``fdatasync`` (deferred to ``flush()`` in group-commit mode, except after an
        erase)."""
        if not self.group_commit or self._erase_pending:
            self.flush()

    def flush(self) -> None:
        """Perform a pending ``fdatasync`` now (after a running background commit)."""
        self._join()
        if self._dirty and self.durable:
            os.fdatasync(self.fd)
            self.datasyncs += 1
        self._dirty = False
        self._erase_pending = False
        self._records = False

    def commit_soon(self) -> None:
        """The group-commit point, once per period, without waiting for the disk: start an
        ``fdatasync`` of everything written so far on the worker thread. Raises the
        ``OSError`` of an earlier one that failed. A commit still running is left to finish
        (``lag`` counts the periods); the next call starts the one that is due."""
        if self._commit is not None and not self._commit.done():
            self.lag += 1
            return
        self._join()  # a finished commit: raises its OSError
        if not (self._dirty and self.durable):
            self._dirty = False
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="lineage-commit")
        self._dirty = False  # writes from now on are for the next commit
        self.datasyncs += 1
        self._commit = self._worker.submit(os.fdatasync, self.fd)

    def _join(self) -> None:
        running, self._commit = self._commit, None
        self.lag = 0
        if running is not None:
            running.result()

    def _write(self, pos: int, data) -> None:
        self._dirty = True
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], pos + done)

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Flush and close the file."""
        if self.fd >= 0:
            try:
                self.flush()
            finally:
                if self._worker is not None:
                    self._worker.shutdown(wait=True)
                    self._worker = None
                fd, self.fd = self.fd, -1
                os.close(fd)

    def __enter__(self) -> FileBlockDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["FileBlockDevice", "FileGeometryError"]
