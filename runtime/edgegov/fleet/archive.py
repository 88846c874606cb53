"""The fleet archive: devices seen, the durable work queue and the archived incidents.

One schema on two engines: SQLite (the embedded default, one file in WAL mode) and
PostgreSQL (``postgresql://…``, psycopg 3) for an archive shared by collectors on several
machines. The schema is the versioned SQL in ``migrations/`` (``NNNN_name.sql``, portable
text run as-is on both); ``migrate()`` applies what a database lacks, under a lock, so
collectors starting together migrate once. Dumps and reports are files in a ``Store``
beside the database, named by their SHA-256; rows hold the names.

The work queue is what makes archiving exactly-once and back-pressured: hearing of a trip
inserts a ``pending`` job whose id is the trip's identity (a second insert of the same trip
does nothing); a worker claims one job at a time with a lease (``state='pending'`` or a
lease that ran out; on PostgreSQL ``FOR UPDATE SKIP LOCKED``), renews it while it works, and
finishes it in one transaction that inserts the incidents (primary key: the incident's
identity) only while it still holds the lease.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .store import Store

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
PG_LOCK_ID = 0x6564_6776  # pg_advisory_xact_lock key of the migrations ("edgv")
JOB_STATES = ("pending", "running", "done", "failed")


class ArchiveError(Exception):
    """An archive that cannot be opened or used (one line for people)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The SQL split at each ``;`` that ends a line (the files keep to that)."""
        body = "\n".join(line for line in self.sql.splitlines()
                         if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        m = MIGRATION_NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(found, key=lambda mig: mig.version)


@dataclass
class Job:
    id: str
    device: str
    kind: str
    boot: int | None
    trip_t_ms: int | None
    cause: str | None
    heard_wall_ms: int
    attempts: int
    lease_owner: str


_JOB_COLUMNS = "id, device, kind, boot, trip_t_ms, cause, heard_wall_ms, attempts, lease_owner"
INCIDENT_COLUMNS = (
    "id", "device", "boot", "trip_t_ms", "trip_wall_ms", "cause", "cause_code", "rule",
    "retrips", "envelope", "firmware", "dump_sha256", "dump_bytes", "records", "verify_ok",
    "macs_checked", "verify_text", "replay_ok", "replay_text", "report_sha256",
    "report_error", "job_id", "collector", "archived_wall_ms", "attested", "attest_text")
DEVICE_COLUMNS = (
    "device", "status", "state", "mode", "link", "estop", "trip_causes", "envelope",
    "firmware", "boot", "state_doc", "seen_wall_ms", "last_trip_wall_ms", "last_trip_cause",
    "decisions", "clamps", "rejects")


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


class Archive:
    """A connection to one archive. Thread-safe by a lock: one statement stream at a time
    (the collector keeps it on one worker thread anyway)."""

    def __init__(self, conn, dialect: str, store: Store, where: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.store = store
        self.where = where
        self._lock = threading.RLock()

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, target: str, store_dir: str | Path | None = None,
             migrate: bool = True) -> Archive:
        """``target``: a SQLite file path or a ``postgresql://`` URL. ``store_dir``: where
        dumps and reports go (default: ``PATH.store`` beside a SQLite file, required for
        PostgreSQL). Applies missing migrations unless ``migrate`` is False."""
        if is_postgres_url(target):
            if store_dir is None:
                raise ArchiveError(f"{_safe(target)}: a PostgreSQL archive needs --store DIR "
                                   "(where dumps and reports are kept)")
            archive = cls(_connect_pg(target), "postgresql", Store(store_dir), _safe(target))
        else:
            path = Path(target)
            if path.is_dir():
                raise ArchiveError(f"{path}: is a directory; give the archive's file name "
                                   "(e.g. fleet.sqlite)")
            if not path.parent.exists():
                raise ArchiveError(f"{path}: directory {path.parent} does not exist")
            store = Store(store_dir if store_dir is not None else f"{path}.store")
            archive = cls(_connect_sqlite(path), "sqlite", store, str(path))
        try:
            if migrate:
                archive.migrate()
            else:
                archive.check_version()
        except (sqlite3.Error, _pg_error()) as err:
            archive.close()
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ArchiveError(f"{archive.where}: cannot read or migrate the schema: "
                               f"{first}") from None
        return archive

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ statements

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    @contextmanager
    def tx(self):
        """One transaction; yields ``run(sql, params) -> cursor``. SQLite takes its write
        lock at the start (``BEGIN IMMEDIATE``), so a read-then-write cannot interleave."""
        with self._lock:
            if self.dialect == "postgresql":
                with self.conn.transaction():
                    yield self._runner()
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._runner()
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _runner(self):
        def run(sql: str, params=()):
            return self.conn.execute(self._sql(sql), tuple(params))

        return run

    def query(self, sql: str, params=()) -> list[dict]:
        with self._lock:
            cur = self.conn.execute(self._sql(sql), tuple(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    # ------------------------------------------------------------ migrations

    def schema_version(self) -> int:
        with self._lock:
            try:
                rows = self.query("SELECT MAX(version) AS v FROM schema_migrations")
            except (sqlite3.Error, _pg_error()) as err:
                if self.dialect == "postgresql":
                    self.conn.rollback()
                if "schema_migrations" in str(err):
                    return 0
                raise
        return rows[0]["v"] or 0

    def check_version(self) -> int:
        """The schema version, refusing one newer than this code knows."""
        version = self.schema_version()
        known = migrations()[-1].version
        if version > known:
            raise ArchiveError(f"{self.where}: archive schema version {version} is newer than "
                               f"this edgegov knows ({known}); upgrade edgegov")
        return version

    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks, in order, each recorded in
        ``schema_migrations``; return the versions applied (empty when up to date)."""
        applied = []
        with self.tx() as run:
            if self.dialect == "postgresql":
                # First: two collectors creating the same table at once collide in the
                # catalogue even with IF NOT EXISTS.
                run("SELECT pg_advisory_xact_lock(?)", (PG_LOCK_ID,))
            run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_wall_ms BIGINT NOT NULL)")
            have = {r[0] for r in run("SELECT version FROM schema_migrations").fetchall()}
            known = migrations()
            if have and max(have) > known[-1].version:
                raise ArchiveError(f"{self.where}: archive schema version {max(have)} is newer "
                                   f"than this edgegov knows ({known[-1].version}); upgrade "
                                   "edgegov")
            for mig in known:
                if mig.version in have:
                    continue
                for statement in mig.statements():
                    run(statement)
                run("INSERT INTO schema_migrations (version, name, applied_wall_ms) "
                    "VALUES (?, ?, ?)", (mig.version, mig.name, _wall_ms()))
                applied.append(mig.version)
        return applied

    # ------------------------------------------------------------ devices

    def note_state(self, doc: dict, seen_wall_ms: int) -> None:
        """Record a device's state message (or its will) in ``devices``."""
        device = doc.get("device")
        if not isinstance(device, str) or not device:
            return
        causes = doc.get("trip_causes")
        row = {
            "device": device, "status": str(doc.get("status") or "unknown"),
            "state": _text(doc.get("state")), "mode": _text(doc.get("mode")),
            "link": _text(doc.get("link")),
            "estop": None if doc.get("estop") is None else int(bool(doc.get("estop"))),
            "trip_causes": json.dumps(causes) if isinstance(causes, list) else None,
            "envelope": _text(doc.get("envelope")), "firmware": _text(doc.get("firmware")),
            "boot": doc.get("boot") if type(doc.get("boot")) is int else None,
            "state_doc": json.dumps(doc, sort_keys=True), "seen_wall_ms": seen_wall_ms,
        }
        cols = list(row)
        # A will carries only status: keep what the device said before it went away.
        keep = {"state", "mode", "link", "estop", "trip_causes", "envelope", "firmware", "boot"}
        sets = ", ".join(
            f"{c} = COALESCE(excluded.{c}, devices.{c})" if c in keep else f"{c} = excluded.{c}"
            for c in cols if c != "device")
        with self.tx() as run:
            run(f"INSERT INTO devices ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT (device) DO UPDATE SET {sets}", row.values())

    def add_decisions(self, counts: dict[str, tuple[int, int, int]], seen_wall_ms: int) -> None:
        """Add per-device (decisions, clamps, rejects) counted since the last call."""
        if not counts:
            return
        with self.tx() as run:
            for device, (n, clamps, rejects) in sorted(counts.items()):
                run("INSERT INTO devices (device, status, seen_wall_ms, decisions, clamps, "
                    "rejects) VALUES (?, 'online', ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE "
                    "SET decisions = devices.decisions + excluded.decisions, "
                    "clamps = devices.clamps + excluded.clamps, "
                    "rejects = devices.rejects + excluded.rejects, "
                    "seen_wall_ms = excluded.seen_wall_ms",
                    (device, seen_wall_ms, n, clamps, rejects))

    def devices(self) -> list[dict]:
        return [_device_row(r) for r in self.query(
            f"SELECT {', '.join(DEVICE_COLUMNS)} FROM devices ORDER BY device")]

    def device(self, device: str) -> dict | None:
        rows = self.query(f"SELECT {', '.join(DEVICE_COLUMNS)} FROM devices WHERE device = ?",
                          (device,))
        return _device_row(rows[0]) if rows else None

    # ------------------------------------------------------------ the work queue

    def enqueue(self, job_id: str, device: str, kind: str, heard_wall_ms: int,
                boot: int | None = None, trip_t_ms: int | None = None,
                cause: str | None = None) -> bool:
        """Add a pending job; False when a job with this id exists already (any state)."""
        with self.tx() as run:
            cur = run("INSERT INTO jobs (id, device, kind, boot, trip_t_ms, cause, "
                      "heard_wall_ms, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending') "
                      "ON CONFLICT (id) DO NOTHING",
                      (job_id, device, kind, boot, trip_t_ms, cause, heard_wall_ms))
            return cur.rowcount == 1

    def claim(self, owner: str, now_wall_ms: int, lease_ms: int) -> Job | None:
        """Take the oldest job that is pending (and due) or whose lease ran out."""
        lock = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        with self.tx() as run:
            row = run(
                "UPDATE jobs SET state = 'running', lease_owner = ?, lease_until_ms = ?, "
                "attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE "
                "(state = 'pending' AND not_before_ms <= ?) OR "
                "(state = 'running' AND lease_until_ms < ?) "
                f"ORDER BY heard_wall_ms, id LIMIT 1{lock}) RETURNING {_JOB_COLUMNS}",
                (owner, now_wall_ms + lease_ms, now_wall_ms, now_wall_ms)).fetchone()
        return Job(*row) if row else None

    def renew(self, job: Job, now_wall_ms: int, lease_ms: int) -> bool:
        """Extend the lease; False when the job is no longer this worker's."""
        with self.tx() as run:
            cur = run("UPDATE jobs SET lease_until_ms = ? WHERE id = ? AND state = 'running' "
                      "AND lease_owner = ? AND attempts = ?",
                      (now_wall_ms + lease_ms, job.id, job.lease_owner, job.attempts))
            return cur.rowcount == 1

    def finish(self, job: Job, incidents: list[dict], note: str, now_wall_ms: int) -> int | None:
        """Archive ``incidents`` and mark ``job`` done, in one transaction, only while the
        lease is still this worker's. Returns the number of incidents newly archived, or
        None when the lease was lost (nothing written)."""
        with self.tx() as run:
            cur = run("UPDATE jobs SET state = 'done', done_wall_ms = ?, note = ?, "
                      "lease_until_ms = NULL, error = NULL WHERE id = ? AND state = 'running' "
                      "AND lease_owner = ? AND attempts = ?",
                      (now_wall_ms, note, job.id, job.lease_owner, job.attempts))
            if cur.rowcount != 1:
                return None
            new = 0
            for inc in incidents:
                if inc.get("firmware"):
                    run("UPDATE devices SET firmware = ? WHERE device = ?",
                        (inc["firmware"], inc["device"]))
                row = [inc.get(c) for c in INCIDENT_COLUMNS]
                cur = run(f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)}) VALUES "
                          f"({', '.join('?' * len(row))}) ON CONFLICT (id) DO NOTHING", row)
                if cur.rowcount == 1:
                    new += 1
                    run("UPDATE devices SET last_trip_wall_ms = ?, last_trip_cause = ? "
                        "WHERE device = ? AND (last_trip_wall_ms IS NULL OR "
                        "last_trip_wall_ms <= ?)", (inc.get("trip_wall_ms"), inc["cause"],
                                                    inc["device"], inc.get("trip_wall_ms")))
            return new

    def fail(self, job: Job, error: str, now_wall_ms: int, retry_at_ms: int | None) -> bool:
        """Give the job back (pending again from ``retry_at_ms``) or, with None, mark it
        failed for good. False when the lease was lost."""
        state = "pending" if retry_at_ms is not None else "failed"
        with self.tx() as run:
            cur = run("UPDATE jobs SET state = ?, error = ?, not_before_ms = ?, "
                      "lease_owner = NULL, lease_until_ms = NULL, done_wall_ms = ? "
                      "WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?",
                      (state, error, retry_at_ms or 0,
                       None if retry_at_ms is not None else now_wall_ms,
                       job.id, job.lease_owner, job.attempts))
            return cur.rowcount == 1

    def job_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(JOB_STATES, 0)
        for r in self.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            counts[r["state"]] = r["n"]
        return counts

    def jobs(self, device: str | None = None) -> list[dict]:
        where, params = ("WHERE device = ?", (device,)) if device else ("", ())
        return self.query(
            "SELECT id, device, kind, boot, trip_t_ms, cause, heard_wall_ms, state, attempts, "
            f"lease_owner, done_wall_ms, note, error FROM jobs {where} "
            "ORDER BY heard_wall_ms, id", params)

    # ------------------------------------------------------------ incidents

    def incident_ids(self, device: str) -> set[str]:
        return {r["id"] for r in self.query("SELECT id FROM incidents WHERE device = ?",
                                            (device,))}

    def incidents(self, device: str | None = None) -> list[dict]:
        where, params = ("WHERE device = ?", (device,)) if device else ("", ())
        rows = self.query(f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM incidents {where} "
                          "ORDER BY trip_wall_ms, id", params)
        for r in rows:
            for flag in ("verify_ok", "macs_checked", "replay_ok"):
                r[flag] = bool(r[flag])
            r["attested"] = None if r["attested"] is None else bool(r["attested"])
            r["dump_path"] = str(self.store.path(r["dump_sha256"]))
            r["report_path"] = (str(self.store.path(r["report_sha256"], ".html"))
                                if r["report_sha256"] else None)
        return rows


# ---------------------------------------------------------------- connections


def _connect_sqlite(path: Path):
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        conn.execute("PRAGMA busy_timeout=30000")
        _wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as err:
        raise ArchiveError(f"{path}: cannot open as a SQLite archive: {err}") from None
    return conn


def _wal(conn, patience_s: float = 30.0) -> None:
    """Switch to WAL. Collectors opening a new archive at the same moment contend for the
    switch, and SQLite answers "database is locked" there without waiting for the busy
    timeout: retry until ``patience_s`` has passed."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _connect_pg(url: str):
    try:
        import psycopg
    except ImportError:
        raise ArchiveError("a PostgreSQL archive needs psycopg 3 (pip install "
                           "'edgegov[fleet]', or 'psycopg[binary]')") from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArchiveError(f"{_safe(url)}: cannot connect: {first}") from None


def _pg_error():
    try:
        import psycopg
    except ImportError:
        return sqlite3.Error
    return psycopg.Error


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _text(v) -> str | None:
    return v if isinstance(v, str) else None


def _device_row(r: dict) -> dict:
    r = dict(r)
    r["trip_causes"] = json.loads(r["trip_causes"]) if r["trip_causes"] else []
    r["estop"] = None if r["estop"] is None else bool(r["estop"])
    r.pop("state_doc", None)
    return r


def _wall_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


__all__ = ["Archive", "ArchiveError", "Job", "Migration", "migrations", "is_postgres_url",
           "INCIDENT_COLUMNS", "DEVICE_COLUMNS"]
