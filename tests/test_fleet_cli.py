"""``edgegov fleet ls|show|incidents`` read an archive; expected text computed by hand from
rows written here through the archive's own API (no broker needed)."""

from __future__ import annotations

import json
import subprocess

import pytest
from edgegov.fleet.archive import Archive
from fleet_harness import CLI

WALL = 1_796_400_000_000  # 2026-12-04T16:00:00.000Z


def _fleet(archive, *args) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["fleet", *args, "--archive", str(archive)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "fleet.sqlite"
    with Archive.open(str(path)) as a:
        a.note_state({"device": "cell-1", "status": "online", "state": "TRIPPED",
                      "mode": "run", "link": "ok", "estop": True, "trip_causes": ["limit"],
                      "boot": 2, "envelope": "ab" * 32}, WALL)
        a.note_state({"device": "cell-2", "status": "offline", "reason": "connection lost"},
                     WALL + 1000)
        a.add_decisions({"cell-1": (120, 7, 2)}, WALL + 2000)
        a.enqueue("trip:cell-1:2:5000", "cell-1", "trip", WALL + 100, 2, 5000, "limit")
        job = a.claim("c/0", WALL + 200, 30_000)
        a.finish(job, [{
            "id": "cell-1:2:5000", "device": "cell-1", "boot": 2, "trip_t_ms": 5000,
            "trip_wall_ms": WALL + 5000, "cause": "above_max", "cause_code": 1,
            "rule": "channels.spindle.max", "retrips": 1, "envelope": "ab" * 32,
            "firmware": "0.1.0", "dump_sha256": "cd" * 32, "dump_bytes": 131072,
            "records": 900, "verify_ok": 1, "macs_checked": 1, "verify_text": "OK",
            "replay_ok": 1, "replay_text": "identical", "report_sha256": "ef" * 32,
            "report_error": None, "job_id": job.id, "collector": "c/0",
            "archived_wall_ms": WALL + 6000, "attested": 1,
            "attest_text": "head seq 899 attested"}], "1 incident(s)", WALL + 6000)
    return path


def test_ls_lists_each_device_with_state_envelope_firmware_and_last_trip(archive):
    r = _fleet(archive, "ls")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["device", "status", "state", "link", "envelope", "firmware",
                                "boot", "decisions", "last", "trip"]
    assert lines[1].split() == ["cell-1", "online", "TRIPPED", "ok", "abababababab", "0.1.0",
                                "2", "120", "2026-12-04T16:00:05.000Z", "above_max"]
    assert lines[2].split() == ["cell-2", "offline", "-", "-", "-", "-", "-", "0", "-"]
    assert lines[3] == "2 devices, 1 online"


def test_ls_json_is_one_document_for_scripts(archive):
    doc = json.loads(_fleet(archive, "ls", "--json").stdout)
    one, two = doc["devices"]
    assert one["device"] == "cell-1" and one["trip_causes"] == ["limit"]
    assert (one["decisions"], one["clamps"], one["rejects"]) == (120, 7, 2)
    assert one["estop"] is True and one["last_trip_wall_ms"] == WALL + 5000
    assert two["status"] == "offline" and two["state"] is None


def test_show_prints_the_state_counters_and_incidents_with_report_paths(archive, tmp_path):
    r = _fleet(archive, "show", "cell-1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == ("cell-1: online, TRIPPED, link ok, mode run, e-stop asserted, boot 2, "
                        "last seen 2026-12-04T16:00:02.000Z")
    assert lines[1] == f"  envelope {'ab' * 32}; firmware 0.1.0"
    assert lines[2] == "  trip causes now: limit"
    assert lines[3] == "  decisions 120 (CLAMP 7, REJECT 2)"
    report = tmp_path / "fleet.sqlite.store" / "ef" / f"{'ef' * 32}.html"
    assert lines[4] == ("  2026-12-04T16:00:05.000Z cell-1 boot 2 t=5000 ms: above_max (1), "
                        f"1 more trips; verify ok; replay identical; {report}")


def test_incidents_json_carries_verify_replay_and_the_stored_files(archive, tmp_path):
    doc = json.loads(_fleet(archive, "incidents", "--json").stdout)
    (inc,) = doc["incidents"]
    assert inc["verify_ok"] is True and inc["replay_ok"] is True and inc["attested"] is True
    assert inc["dump_path"] == str(tmp_path / "fleet.sqlite.store" / "cd" / ("cd" * 32))
    assert doc["jobs"] == {"pending": 0, "running": 0, "done": 1, "failed": 0}
    text = _fleet(archive, "incidents", "--device", "cell-2").stdout
    assert text.strip() == "0 incidents; jobs pending 0, running 0, failed 0"


def test_an_unknown_device_or_a_missing_archive_is_one_line_and_exit_2(archive, tmp_path):
    r = _fleet(archive, "show", "nobody")
    assert r.returncode == 2 and r.stderr.strip() == (
        "nobody: not seen by any collector of this archive")
    r = _fleet(tmp_path / "none.sqlite", "ls")
    assert r.returncode == 2 and "no such archive" in r.stderr
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all, not even close" * 50)
    r = _fleet(tmp_path / "junk.sqlite", "incidents")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
