"""Wall time in the gateway's lineage: BOOT and every CHECKPOINT carry it, a clock step
writes a TIME record, nothing decides on it (replay identical), and decode/verify show it.
Scripted time and a scripted wall clock: expected values computed by hand."""

from __future__ import annotations

import json
import subprocess
import sys

from edgegov.core.governor import Governor
from edgegov.core.record import K_BOOT, K_CHECKPOINT, K_TIME, decode
from edgegov.core.replay import Replayer
from edgegov.core.verify import verify
from edgegov.host.lineage_read import decode_dump
from edgegov.host.lineage_store import open_lineage, read_dump
from edgegov.host.wallsource import WallRecorder
from edgegov.service.loop import GovernorService
from edgegov.service.topics import Topics
from service_harness import KEY, write_key
from test_service_loop import COMPILED, ENV, cmd

T0_WALL = 1_796_366_000_000  # 2026-12-04T06:33:20.000Z


class ScriptedWall:
    """A wall clock that follows device time, with steps where the script says."""

    def __init__(self):
        self.offset = T0_WALL
        self.now = 0

    def read(self) -> int:
        return self.offset + self.now


def run_scripted(tmp_path):
    wall = ScriptedWall()
    lineage = open_lineage(tmp_path / "w.lineage", ENV, KEY, group_commit=True, durable=False,
                           block_count=32, checkpoint_every=16)
    svc = GovernorService(Governor(ENV, KEY), Topics(ENV.device_id), lambda *a: None, lineage)
    svc.wall = WallRecorder(lineage, wall.read)
    svc.boot(0, COMPILED.blob)
    for t in range(10, 400, 10):
        wall.now = t
        if t == 200:
            wall.offset += 3_600_000  # the host's clock stepped one hour forward
        if t == 300:
            wall.offset -= 500  # half a second: drift, not a step
        svc.submit(cmd({"seq": t, "values": {"spindle": 0}}), t)
        svc.cycle(t)
    svc.stop(400)
    return tmp_path / "w.lineage"


def records_of(path, kind):
    return [decode(p) for _, p in read_dump(path).records if p[1] == kind]


def test_boot_checkpoints_and_a_step_carry_wall_time(tmp_path):
    path = run_scripted(tmp_path)
    boot = records_of(path, K_BOOT)[0]
    assert boot[9] == T0_WALL
    times = records_of(path, K_TIME)
    assert times == [[K_TIME, 200, T0_WALL + 3_600_000 + 200]]  # one step, not the drift
    def offset(t):  # what the scripted wall clock read at device time t, minus t
        return T0_WALL + (3_600_000 if t >= 200 else 0) - (500 if t >= 300 else 0)

    checkpoints = records_of(path, K_CHECKPOINT)
    assert len(checkpoints) > 3
    for ck in checkpoints:
        t = ck[1]
        # the host's last reading, advanced by device time: taken at this period's cycle or,
        # for a record written before it, the previous period's
        assert ck[8] in (t + offset(t), t + offset(t - 10)), (t, ck[8])


def test_wall_time_is_never_decided_on(tmp_path):
    dump = read_dump(run_scripted(tmp_path))
    rep = verify(dump.records, dump.problems, KEY, dump.offsets, 0)
    assert rep.ok, [str(f) for f in rep.findings]
    replay = Replayer(dump.envelopes()).run(dump.records)
    assert replay.identical, [d.note for d in replay.divergences[:3]]


def test_decode_shows_wall_time_of_every_placed_record(tmp_path):
    rows = list(decode_dump(read_dump(run_scripted(tmp_path))))
    by_t = {r["t_ms"]: r["wall"] for r in rows if r["kind"] == "decision"}
    assert by_t[10] == "2026-12-04T06:33:20.010Z"
    assert by_t[190] == "2026-12-04T06:33:20.190Z"
    assert by_t[210] == "2026-12-04T07:33:20.210Z"  # after the step
    step = [r for r in rows if r["kind"] == "time"]
    assert step == [{**step[0], "t_ms": 200, "wall_ms": T0_WALL + 3_600_200,
                     "wall": "2026-12-04T07:33:20.200Z"}]


def test_verify_prints_the_recorded_wall_time_span(tmp_path):
    path = run_scripted(tmp_path)
    key = write_key(tmp_path / "k")
    out = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "lineage", "verify",
                          str(path), "--key", str(key)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wall time 2026-12-04T06:33:20.000Z .. 2026-12-04T07:33:19.900Z" in out.stdout
    decoded = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "lineage", "decode",
                              str(path)], capture_output=True, text=True, check=True)
    first = json.loads(decoded.stdout.splitlines()[0])
    assert first["kind"] == "boot" and first["wall"] == "2026-12-04T06:33:20.000Z"


def test_replay_shows_the_recorded_wall_time_span(tmp_path):
    path = run_scripted(tmp_path)
    out = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "lineage", "replay",
                          str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wall time 2026-12-04T06:33:20.000Z .. 2026-12-04T07:33:19.900Z" in out.stdout


def test_time_record_and_checkpoint_wall_field_bytes():
    # TIME [7, 200, 1796366000000]: array(3) 83, 07, 200 = 18 c8, and the wall time
    # 0x1a23fc1df80 as a u64 (1b + 8 bytes big-endian); cbor2 (the oracle) agrees
    import cbor2
    from edgegov.core.record import Encoder

    enc = Encoder(ENV)
    enc.t = 190
    enc.time(200, 1_796_366_000_000)
    raw = bytes(enc.payload())
    assert raw.hex() == "830718c81b000001a23fc1df80"
    assert cbor2.loads(raw) == [7, 200, 1_796_366_000_000] and decode(raw) == [7, 200,
                                                                            1_796_366_000_000]
    assert enc.t == 190  # not a base for the next record's dt
    state = [0] * 9
    enc.checkpoint(300, bytes(32), bytes(32), None, state, 1_796_366_000_000)
    with_wall = bytes(enc.payload())
    enc.checkpoint(300, bytes(32), bytes(32), None, state)
    without = bytes(enc.payload())
    assert with_wall[0] == 0x89 and without[0] == 0x88  # 9 fields, or 8 when unknown
    assert with_wall[1:] == without[1:] + bytes.fromhex("1b000001a23fc1df80")


def test_report_header_shows_the_recorded_wall_time_span(tmp_path):
    from edgegov.report.build import build_report

    html = build_report(run_scripted(tmp_path))
    assert ("<span id='wall-span'>2026-12-04T06:33:20.000Z .. 2026-12-04T07:33:19.900Z"
            "</span> (UTC)") in html
