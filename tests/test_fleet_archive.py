"""The fleet archive on both engines: SQLite (WAL file) and a real PostgreSQL server.

Time is an argument of every queue operation (``now_wall_ms``), so lease expiry is scripted
here, never slept for.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
from edgegov.fleet.archive import Archive, ArchiveError, migrations
from edgegov.fleet.store import Store, StoreError
from edgegov.host.net import free_port
from postgres_fixture import needs_postgres, postgres  # noqa: F401 - the fixture

LEASE_MS = 10_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def target(request, tmp_path):
    """(archive target, store dir) for a fresh archive on each engine."""
    if request.param == "sqlite":
        return str(tmp_path / "fleet.sqlite"), None
    return request.getfixturevalue("postgres").database(), str(tmp_path / "store")


def _open(target, migrate=True):
    return Archive.open(target[0], target[1], migrate=migrate)


def _incident(job, n=0, **kw):
    row = {"id": f"{job.device}:1:{1000 + n}", "device": job.device, "boot": 1,
           "trip_t_ms": 1000 + n, "trip_wall_ms": 5000 + n, "cause": "estop",
           "cause_code": 1, "rule": None, "retrips": 0, "envelope": "ab" * 32,
           "firmware": "0.1.0", "dump_sha256": "cd" * 32, "dump_bytes": 4096, "records": 10,
           "verify_ok": 1, "macs_checked": 1, "verify_text": "ok", "replay_ok": 1,
           "replay_text": "identical", "report_sha256": None, "report_error": None,
           "job_id": job.id, "collector": job.lease_owner, "archived_wall_ms": 9000,
           "attested": None, "attest_text": None}
    row.update(kw)
    return row


def test_migrations_are_numbered_sql_files_in_the_package():
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert all(m.statements() for m in found)


def test_a_new_archive_gets_every_migration_and_reopening_applies_none(target):
    with _open(target, migrate=False) as a:
        assert a.schema_version() == 0
        assert a.migrate() == [m.version for m in migrations()]
    with _open(target) as a:
        assert a.schema_version() == migrations()[-1].version
        assert a.migrate() == []
        assert a.job_counts() == {"pending": 0, "running": 0, "done": 0, "failed": 0}


def test_an_archive_at_version_1_is_brought_up_to_date(target):
    first = migrations()[0]
    with _open(target, migrate=False) as a:
        with a.tx() as run:
            run("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_wall_ms BIGINT NOT NULL)")
            for s in first.statements():
                run(s)
            run("INSERT INTO schema_migrations VALUES (1, ?, 0)", (first.name,))
        assert a.schema_version() == 1
        assert a.migrate() == [m.version for m in migrations()[1:]]


def test_an_archive_newer_than_the_code_is_refused_with_one_line(target):
    with _open(target) as a:
        with a.tx() as run:
            run("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(ArchiveError, match="schema version 999 is newer"):
        _open(target)
    with pytest.raises(ArchiveError, match="schema version 999 is newer"):
        _open(target, migrate=False)


def test_the_same_trip_heard_twice_is_one_job(target):
    with _open(target) as a:
        assert a.enqueue("trip:d1:1:1000", "d1", "trip", 100, 1, 1000, "estop")
        assert not a.enqueue("trip:d1:1:1000", "d1", "trip", 200, 1, 1000, "estop")
        assert a.job_counts()["pending"] == 1


def test_a_lease_that_ran_out_is_claimed_again_and_the_old_worker_cannot_finish(target):
    with _open(target) as a:
        a.enqueue("trip:d1:1:1000", "d1", "trip", 100, 1, 1000, "estop")
        job_a = a.claim("A", 1_000, LEASE_MS)
        assert job_a.id == "trip:d1:1:1000" and job_a.attempts == 1
        assert a.claim("B", 1_000 + LEASE_MS - 1, LEASE_MS) is None  # A still holds it
        job_b = a.claim("B", 1_000 + LEASE_MS + 1, LEASE_MS)  # A died: its lease ran out
        assert job_b.id == job_a.id and job_b.attempts == 2 and job_b.lease_owner == "B"
        assert not a.renew(job_a, 12_000, LEASE_MS)
        assert a.finish(job_a, [_incident(job_a)], "late", 12_000) is None
        assert a.incidents() == []
        assert a.finish(job_b, [_incident(job_b)], "archived", 12_000) == 1
        (inc,) = a.incidents()
        assert inc["collector"] == "B" and inc["verify_ok"] is True
        assert a.job_counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0}


def test_an_incident_already_archived_by_another_job_is_not_archived_again(target):
    with _open(target) as a:
        a.enqueue("trip:d1:1:1000", "d1", "trip", 100)
        a.enqueue("request:d1:200", "d1", "request", 200)
        first = a.claim("A", 1_000, LEASE_MS)
        second = a.claim("B", 1_000, LEASE_MS)
        assert {first.id, second.id} == {"trip:d1:1:1000", "request:d1:200"}
        assert a.finish(first, [_incident(first)], "archived", 2_000) == 1
        assert a.finish(second, [_incident(second), _incident(second, 1)], "x", 2_000) == 1
        assert len(a.incidents("d1")) == 2


def test_a_failed_pull_is_retried_after_its_delay_then_given_up(target):
    with _open(target) as a:
        a.enqueue("trip:d1:1:1000", "d1", "trip", 100)
        job = a.claim("A", 1_000, LEASE_MS)
        assert a.fail(job, "timed out", 1_000, retry_at_ms=5_000)
        assert a.claim("A", 4_999, LEASE_MS) is None
        job = a.claim("A", 5_000, LEASE_MS)
        assert job.attempts == 2
        assert a.fail(job, "no key", 5_000, retry_at_ms=None)
        assert a.claim("A", 10**12, LEASE_MS) is None
        (row,) = a.jobs()
        assert row["state"] == "failed" and row["error"] == "no key"


def test_concurrent_workers_on_separate_connections_never_claim_one_job_twice(target):
    with _open(target) as a:
        for i in range(40):
            a.enqueue(f"trip:d{i}:1:1", f"d{i}", "trip", i)
    claimed: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        with _open(target) as mine:
            while (job := mine.claim(name, 1_000, LEASE_MS)) is not None:
                claimed.setdefault(job.id, []).append(name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 40
    assert all(len(owners) == 1 for owners in claimed.values())


def test_a_will_keeps_what_the_device_said_before_it_went_away(target):
    with _open(target) as a:
        a.note_state({"device": "d1", "status": "online", "state": "ARMED", "mode": "run",
                      "link": "ok", "estop": False, "trip_causes": [], "boot": 3,
                      "envelope": "ab" * 32}, 1_000)
        a.note_state({"device": "d1", "status": "offline", "reason": "connection lost"}, 2_000)
        a.add_decisions({"d1": (50, 3, 1)}, 2_500)
        a.add_decisions({"d1": (10, 0, 0)}, 3_000)
        dev = a.device("d1")
        assert dev["status"] == "offline" and dev["state"] == "ARMED" and dev["boot"] == 3
        assert (dev["decisions"], dev["clamps"], dev["rejects"]) == (60, 3, 1)
        assert dev["seen_wall_ms"] == 3_000


def test_a_directory_or_a_missing_parent_is_refused_with_one_line(tmp_path):
    with pytest.raises(ArchiveError, match="is a directory"):
        Archive.open(str(tmp_path))
    with pytest.raises(ArchiveError, match="does not exist"):
        Archive.open(str(tmp_path / "nope" / "fleet.sqlite"))


def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path):
    url = f"postgresql://me:secret@127.0.0.1:{free_port()}/fleet"
    with pytest.raises(ArchiveError) as err:
        Archive.open(url, tmp_path)
    assert "cannot connect" in str(err.value) and "secret" not in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ArchiveError, match="needs --store"):
        Archive.open(url)


def test_the_store_names_files_by_their_sha256_and_checks_them(tmp_path):
    store = Store(tmp_path)
    data = b"lineage image" * 100
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.path(digest) == tmp_path / digest[:2] / digest
    assert store.put(data) == digest and store.get(digest) == data
    store.path(digest).write_bytes(b"tampered")
    with pytest.raises(StoreError, match="does not match"):
        store.get(digest)


def test_collectors_opening_a_new_archive_at_once_migrate_it_once(target):
    errors: list[BaseException] = []
    applied: list[list[int]] = []

    def open_one() -> None:
        try:
            with Archive.open(target[0], target[1], migrate=False) as a:
                applied.append(a.migrate())
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied, key=len) == [[], [], [], [m.version for m in migrations()]]


def test_collectors_opening_a_new_sqlite_archive_at_once_all_open_it(tmp_path):
    """Two collectors of one group started together on one new SQLite file: both open it
    (SQLite's switch to WAL answers "database is locked" to the one that loses the race
    without waiting for the busy timeout)."""
    import subprocess
    import sys
    import time

    path = tmp_path / "shared.sqlite"
    code = ("import sys, time; from edgegov.fleet.archive import Archive; "
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
            "Archive.open(sys.argv[1]); print('open')")
    for _ in range(8):  # the race is narrow: rounds of six released at the same instant
        for stale in tmp_path.glob("shared.sqlite*"):
            stale.unlink() if stale.is_file() else None
        start = str(time.time() + 1.0)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path), start],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        results = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, [err for _, err in results]
    assert migrations()[-1].version in {r["version"] for r in Archive.open(str(path)).query(
        "SELECT version FROM schema_migrations")}
