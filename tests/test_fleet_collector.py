"""``edgegov fleet collect`` against a real Mosquitto, simulated devices and both databases.

Every process is real: the simulator (the governor and service loop of each device), the
collectors (SIGKILLed mid-pull in the exactly-once test), Mosquitto and PostgreSQL.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from edgegov.fleet.archive import Archive
from edgegov.service import client as service_client
from fleet_harness import CLI, collector, sim, wait_archived
from mosquitto_fixture import needs_mosquitto
from postgres_fixture import needs_postgres, postgres  # noqa: F401 - the fixture

pytestmark = needs_mosquitto


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def archive(request, tmp_path):
    """(archive target, store dir or None) on each engine."""
    if request.param == "sqlite":
        return str(tmp_path / "fleet.sqlite"), None
    return request.getfixturevalue("postgres").database(), str(tmp_path / "store")


def _jobs(archive):
    with Archive.open(*archive) as a:
        return a.jobs()


def test_two_collectors_one_killed_mid_pull_archive_every_trip_exactly_once(
        broker, tmp_path, archive):
    devices = 4
    s = sim(tmp_path, broker.url, "--devices", str(devices), "--trip-every-s", "2",
            "--first-trip-s", "1", "--trips", "1", "--recover-s", "60",
            "--pull-delay-ms", "2500")
    procs = [s]
    try:
        s.wait_line("online and armed")
        a = collector(tmp_path, broker.url, *archive[:1], "A", "--workers", "1",
                      "--lease-s", "2", store=archive[1])
        b = collector(tmp_path, broker.url, *archive[:1], "B", "--workers", "1",
                      "--lease-s", "2", store=archive[1])
        procs += [a, b]
        line = a.wait_line(": pulling sim-", 30)  # A holds a lease and waits for the dump
        a.kill()
        killed_job = line.split()[1].rstrip(":")
        rows = wait_archived(*archive, devices, 60, procs)
    finally:
        for p in procs:
            p.stop()
    assert sorted(r["device"] for r in rows) == [f"sim-{i:04d}" for i in range(devices)]
    assert len({r["id"] for r in rows}) == devices
    assert all(r["verify_ok"] and r["macs_checked"] and r["replay_ok"] for r in rows)
    assert all(r["cause"] == "above_max" for r in rows)
    sealed = hasattr(service_client, "pull_sealed")  # head attestations, where pulls seal
    assert all(r["attested"] is (True if sealed else None) for r in rows)
    jobs = {j["id"]: j for j in _jobs(archive)}
    assert jobs[killed_job]["state"] == "done"
    assert jobs[killed_job]["attempts"] >= 2  # A's lease ran out; B took the job over
    (taken_over,) = [r for r in rows if r["job_id"] == killed_job]
    assert taken_over["collector"].startswith("B/")


def test_a_collector_stopped_mid_pull_gives_its_job_back_and_the_next_one_resumes_it(
        broker, tmp_path):
    target = str(tmp_path / "fleet.sqlite")
    s = sim(tmp_path, broker.url, "--devices", "1", "--trip-every-s", "1", "--first-trip-s",
            "0.5", "--trips", "1", "--recover-s", "600", "--pull-delay-ms", "3000")
    procs = [s]
    try:
        s.wait_line("online and armed")
        first = collector(tmp_path, broker.url, target, "first", "--lease-s", "600")
        procs.append(first)
        first.wait_line(": pulling sim-0000", 30)
        assert first.stop() == 0  # SIGTERM: an orderly stop, lease or not
        (job,) = _jobs((target, None))
        assert job["state"] == "pending" and job["error"] == "collector stopped"
        second = collector(tmp_path, broker.url, target, "second", "--lease-s", "600")
        procs.append(second)
        (row,) = wait_archived(target, None, 1, 30, procs)
    finally:
        for p in procs:
            p.stop()
    assert row["collector"].startswith("second/")
    jobs = _jobs((target, None))
    assert [j["state"] for j in jobs] == ["done"] * len(jobs), jobs
    assert jobs[0]["attempts"] == 2


def test_collector_and_devices_ride_out_a_broker_restart_and_the_next_trip_is_archived(
        broker, tmp_path):
    target = str(tmp_path / "fleet.sqlite")
    s = sim(tmp_path, broker.url, "--devices", "1", "--trip-every-s", "6", "--first-trip-s",
            "1", "--trips", "2", "--recover-s", "1")
    procs = [s]
    try:
        s.wait_line("online and armed")
        c = collector(tmp_path, broker.url, target, "steady")
        procs.append(c)
        wait_archived(target, None, 1, 30, procs)
        broker.stop()
        said = c.wait_line("broker: ", 20)  # it noticed, and retries with backoff
        # README, Fleet: "the collector says so (`broker: …; reconnecting in N ms`)"
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        quoted = re.search(r"says so \(`(broker: …; reconnecting in N ms)`\)", readme).group(1)
        pattern = re.escape(quoted).replace("…", ".+").replace("N", r"\d+")
        assert re.search(pattern, said), (pattern, said)
        broker.start()
        rows = wait_archived(target, None, 2, 60, procs)
    finally:
        if broker.proc is None:
            broker.start()
        for p in procs:
            p.stop()
    assert [r["device"] for r in rows] == ["sim-0000", "sim-0000"]
    assert len({r["id"] for r in rows}) == 2 and all(r["verify_ok"] for r in rows)


def test_a_burst_of_trips_across_the_fleet_queues_and_none_is_dropped(broker, tmp_path):
    devices = 24
    target = str(tmp_path / "fleet.sqlite")
    s = sim(tmp_path, broker.url, "--devices", str(devices), "--trip-every-s", "5",
            "--first-trip-s", "1.5", "--trips", "1", "--burst", "--recover-s", "60",
            "--pull-delay-ms", "250")
    procs = [s]
    try:
        s.wait_line("online and armed")
        c = collector(tmp_path, broker.url, target, "solo", "--workers", "1")
        procs.append(c)
        rows = wait_archived(target, None, devices, 90, procs)
        queued = [ln for ln in c.lines if "jobs pending" in ln
                  and "jobs pending 0," not in ln]
    finally:
        for p in procs:
            p.stop()
    assert len({r["device"] for r in rows}) == devices
    assert queued, "the burst never showed as queued work:\n" + c.text()


def test_a_device_that_tripped_before_any_collector_ran_is_archived_from_its_retained_state(
        broker, tmp_path):
    target = str(tmp_path / "fleet.sqlite")
    s = sim(tmp_path, broker.url, "--devices", "1", "--trip-every-s", "1", "--first-trip-s",
            "0.2", "--trips", "1", "--recover-s", "600")
    procs = [s]
    try:
        s.wait_line("online and armed")
        import time

        time.sleep(1.5)  # the trip happens with nobody listening; only the state remembers
        c = collector(tmp_path, broker.url, target, "late")
        procs.append(c)
        (row,) = wait_archived(target, None, 1, 30, procs)
    finally:
        for p in procs:
            p.stop()
    assert row["device"] == "sim-0000" and row["cause"] == "above_max"


def test_a_key_readable_by_others_fails_the_job_with_the_run_rule_and_archives_nothing(
        broker, tmp_path):
    target = str(tmp_path / "fleet.sqlite")
    s = sim(tmp_path, broker.url, "--devices", "1", "--trip-every-s", "1", "--first-trip-s",
            "1", "--trips", "1", "--recover-s", "600")
    procs = [s]
    try:
        s.wait_line("online and armed")
        (tmp_path / "sim" / "keys" / "sim-0000.key").chmod(0o644)
        c = collector(tmp_path, broker.url, target, "strict")
        procs.append(c)
        line = c.wait_line("FAILED", 30)
    finally:
        for p in procs:
            p.stop()
    assert "must not be accessible by group or others (chmod 600)" in line
    (job,) = _jobs((target, None))
    assert job["state"] == "failed" and "chmod 600" in job["error"]
    show = subprocess.run(CLI + ["fleet", "show", "sim-0000", "--archive", target],
                          capture_output=True, text=True)
    assert "failed (attempt 1): " in show.stdout and "chmod 600" in show.stdout


def test_a_pull_on_request_archives_the_dump_and_finds_no_incident(broker, tmp_path):
    target = str(tmp_path / "fleet.sqlite")
    s = sim(tmp_path, broker.url, "--devices", "1")
    procs = [s]
    try:
        s.wait_line("online and armed")
        c = collector(tmp_path, broker.url, target, "asked")
        procs.append(c)
        c.wait_line("group edgegov-collectors")
        out = subprocess.run(CLI + ["fleet", "pull", "sim-0000", "--archive", target],
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith("pull of sim-0000 queued (job request:sim-0000:")
        c.wait_line("no new incident in dump", 30)
    finally:
        for p in procs:
            p.stop()
    (job,) = _jobs((target, None))
    assert job["kind"] == "request" and job["state"] == "done"


@pytest.mark.parametrize("args, message", [
    (["--keys", "{tmp}/missing"], "key store is not a directory"),
    (["--archive", "{tmp}"], "is a directory; give the archive's file name"),
    (["--archive", "{tmp}/no/such/dir/fleet.sqlite"], "does not exist"),
    (["--archive", "postgresql://x@127.0.0.1:1/db"], "needs --store DIR"),
])
def test_bad_collector_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "keys").mkdir()
    base = {"--keys": str(tmp_path / "keys"), "--archive": str(tmp_path / "fleet.sqlite")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value.format(tmp=tmp_path)
    cmd = CLI + ["fleet", "collect", "--mqtt", "mqtt://127.0.0.1:1"]
    for flag, value in base.items():
        cmd += [flag, value]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_the_collector_refuses_mqtt_3_because_shared_subscriptions_need_mqtt_5(tmp_path):
    (tmp_path / "keys").mkdir()
    r = subprocess.run(CLI + ["fleet", "collect", "--mqtt", "mqtt://127.0.0.1:1", "--keys",
                              str(tmp_path / "keys"), "--archive", str(tmp_path / "f.sqlite"),
                              "--protocol", "4"], capture_output=True, text=True)
    assert r.returncode == 2 and "need MQTT 5" in r.stderr


def test_cli_module_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "fleet", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "collect" in r.stdout
