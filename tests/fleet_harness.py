"""Real processes for the fleet tests: ``edgegov fleet sim`` and ``edgegov fleet collect``.

Each runs as a child process (so a collector can be SIGKILLed mid-pull); its stderr lines
are collected as they come, so a test can wait for a progress line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from edgegov.fleet.archive import Archive

CLI = [sys.executable, "-m", "edgegov_cli.main"]


class Proc:
    """A child process whose output lines are kept (``lines``) as they arrive."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self.proc = subprocess.Popen(CLI + args, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, needle: str, timeout_s: float = 30.0) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line with {needle!r} within {timeout_s}s:\n" + self.text())

    def text(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


def sim(workdir: Path, url: str, *extra: str) -> Proc:
    return Proc(["fleet", "sim", "--mqtt", url, "--workdir", str(workdir / "sim"),
                 "--hz", "20", *extra], workdir)


def collector(workdir: Path, url: str, archive: str, name: str, *extra: str,
              store: str | None = None) -> Proc:
    args = ["fleet", "collect", "--mqtt", url, "--keys", str(workdir / "sim" / "keys"),
            "--archive", archive, "--name", name, "--progress-s", "1", "--no-report", *extra]
    if store:
        args += ["--store", store]
    return Proc(args, workdir)


def wait_archived(archive: str, store: str | None, count: int, timeout_s: float = 60.0,
                  procs: tuple = ()) -> list[dict]:
    """Wait until the archive holds ``count`` incidents; return them."""
    end = time.monotonic() + timeout_s
    rows: list[dict] = []
    while time.monotonic() < end:
        with Archive.open(archive, store) as a:
            rows = a.incidents()
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    logs = "\n---\n".join(p.text() for p in procs)
    raise AssertionError(f"{len(rows)} of {count} incidents archived in {timeout_s}s\n{logs}")
