"""A real PostgreSQL server for the fleet tests, from Debian's ``postgresql`` binaries.

``initdb`` + ``pg_ctl`` in a temporary directory, listening on a free loopback port with
trust authentication, fsync off. PostgreSQL refuses to run as root: as root the cluster
belongs to ``nobody`` and every server command runs through ``runuser``. Each test gets a
fresh database (``Postgres.database()``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from edgegov.host.net import free_port, wait_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


BIN = _bin_dir()
needs_postgres = pytest.mark.skipif(
    BIN is None, reason="PostgreSQL server binaries not installed (tools/setup-system.sh)")


class Postgres:
    """One throwaway cluster; ``url(db)`` is what ``--archive`` takes."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="edgegov-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user = "nobody" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.root)

    def start(self) -> Postgres:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(BIN / "pg_ctl", "-D", self.data, "-o", opts, "-l", self.log, "-w", "start")
        wait_port(self.port, 20)
        return self

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    if BIN is None:
        pytest.skip("PostgreSQL server binaries not installed (tools/setup-system.sh)")
    pg = Postgres().start()
    yield pg
    pg.stop()
