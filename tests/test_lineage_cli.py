"""The lineage CLI as a user runs it, on the lineage the main job writes."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from edgegov.core import cbor, codes
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.ring import RingLog
from edgegov.demo import EXAMPLE
from edgegov.host.lineage_store import read_dump

EDGEGOV = [sys.executable, "-m", "edgegov_cli.main"]


def edgegov(*args, check=None):
    proc = subprocess.run(EDGEGOV + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def demo_lineage(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = edgegov("demo", "--simulated-time", "--seconds", 12, "--out", out, check=0)
    path = out / "edgegov-demo.lineage"
    assert str(path.resolve()) in proc.stdout.replace("\n", "")
    assert "verify: OK" in proc.stdout and "replay: identical" in proc.stdout
    return path


def test_verify_accepts_the_demo_lineage(demo_lineage):
    proc = edgegov("lineage", "verify", demo_lineage, check=0)
    assert "verify OK" in proc.stdout


def test_simulated_demo_writes_the_key_its_lineage_verifies_with(demo_lineage):
    key = demo_lineage.parent / "edgegov-demo.key"
    proc = edgegov("lineage", "verify", demo_lineage, "--key", key, check=0)
    assert "checkpoint MACs checked" in proc.stdout


def test_verify_without_key_says_macs_were_not_checked(demo_lineage):
    proc = edgegov("lineage", "verify", demo_lineage, check=0)
    assert "MACs NOT checked" in proc.stdout


def test_verify_help_documents_exit_codes():
    proc = edgegov("lineage", "verify", "--help", check=0)
    assert "0 verified" in proc.stdout and "2 unreadable" in proc.stdout


def test_decode_jsonl_and_csv_agree_with_the_records(demo_lineage):
    rows = [json.loads(line) for line in edgegov("lineage", "decode", demo_lineage,
                                                  check=0).stdout.splitlines()]
    dump = read_dump(demo_lineage)
    assert [r["seq"] for r in rows] == [seq for seq, _ in dump.records]
    kinds = {r["kind"] for r in rows}
    assert {"boot", "envelope", "checkpoint", "decision", "event"} <= kinds
    trips = [r for r in rows if any(e["event"] == "trip" for e in r.get("events", []))]
    assert trips and all(r["verdict"] == "TRIP" for r in trips)
    table = list(csv.reader(io.StringIO(edgegov("lineage", "decode", demo_lineage, "--format",
                                                "csv", check=0).stdout)))
    assert table[0][:4] == ["seq", "offset", "kind", "t_ms"]
    assert "output_spindle" in table[0]
    assert len(table) == len(rows) + 1


def test_replay_is_identical_and_what_if_lists_differences(demo_lineage, tmp_path):
    assert "replay identical" in edgegov("lineage", "replay", demo_lineage, check=0).stdout
    tight = tmp_path / "tight.toml"
    tight.write_text(EXAMPLE.read_text().replace("max = 8000", "max = 3000", 1))
    report = tmp_path / "whatif.json"
    proc = edgegov("lineage", "replay", demo_lineage, "--envelope", tight, "--json", report,
                   check=1)
    assert "decisions differ" in proc.stdout
    diffs = json.loads(report.read_text())["records"]
    assert diffs and all(d["recorded"] != d["whatif"] for d in diffs)
    # The envelope the boot ran, given explicitly, is still applied: a what-if with no change.
    assert "what-if: 0 of" in edgegov("lineage", "replay", demo_lineage, "--envelope",
                                      EXAMPLE, check=0).stdout


def _reframe(path, out, change):
    """Rebuild a ring with one record changed and valid CRCs: what a forger would do."""
    dump = read_dump(path)
    ring = RingLog(RamBlockDevice(dump.block_size, len(Path(path).read_bytes()) // dump.block_size))
    ring.format(first_seq=dump.records[0][0])
    changed = None
    for seq, payload in dump.records:
        new = change(payload) if changed is None else None
        if new is not None:
            changed = seq
        ring.append(new or payload)
    Path(out).write_bytes(ring.image())
    return changed


def _flip_clamp_to_allow(payload):
    rec = cbor.loads(payload)
    if rec[0] == 2 and rec[4] // 64 == codes.CLAMP:
        rec[4] = codes.ALLOW * 64
        return cbor.dumps(rec)
    return None


def test_a_forged_record_fails_verify_and_replay(demo_lineage, tmp_path):
    forged = tmp_path / "forged.lineage"
    seq = _reframe(demo_lineage, forged, _flip_clamp_to_allow)
    assert seq is not None
    proc = edgegov("lineage", "verify", forged, check=1)
    assert "hash chain broken" in proc.stdout and "verify FAILED at seq" in proc.stderr
    proc = edgegov("lineage", "replay", forged, check=1)
    assert f"seq {seq}" in proc.stdout


def test_a_flipped_bit_is_named_by_seq_and_offset(demo_lineage, tmp_path):
    image = bytearray(demo_lineage.read_bytes())
    dump = read_dump(demo_lineage)
    seq, _ = dump.records[500]
    offset = dump.offsets[seq]
    image[offset + 8] ^= 0x10
    bad = tmp_path / "flipped.lineage"
    bad.write_bytes(bytes(image))
    proc = edgegov("lineage", "verify", bad, check=1)
    assert f"verify FAILED at seq {seq}, offset {offset}" in proc.stderr


def test_a_torn_tail_is_reported_but_verifies(tmp_path):
    ring = RingLog(RamBlockDevice(1024, 4))
    ring.format()
    from edgegov.config.compile import compile_file
    from edgegov.core.envelope import Envelope
    from edgegov.core.governor import Governor
    from edgegov.core.lineage import Lineage

    compiled = compile_file(EXAMPLE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    lineage = Lineage(ring, env)
    lineage.boot(Governor(env, b"k" * 16), 0)
    image = bytearray(ring.image())
    tail = ring._off  # where the next frame would start: write half a frame there
    image[tail : tail + 5] = b"\x10\x00\x03\x00\x00"
    path = tmp_path / "torn.lineage"
    path.write_bytes(bytes(image))
    proc = edgegov("lineage", "verify", path, check=0)
    assert "torn tail" in proc.stdout


@pytest.mark.parametrize("content", [b"", b"not a lineage at all" * 100, bytes(8192)])
def test_unreadable_input_is_a_clear_error_with_exit_2(tmp_path, content):
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    for command in ("verify", "replay", "decode"):
        proc = edgegov("lineage", command, path)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "not a readable lineage" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_decode_shows_telemetry_inputs_in_engineering_units(demo_lineage):
    rows = [json.loads(line) for line in edgegov("lineage", "decode", demo_lineage,
                                                  check=0).stdout.splitlines()]
    pressures = [r["input"]["values"]["hydraulic_pressure"] for r in rows
                 if r.get("input", {}).get("type") == "telemetry"
                 and "hydraulic_pressure" in r["input"]["values"]]
    # the example's input is 0.0..400.0 bar at 0.1 bar: scaled integers would exceed 400
    assert pressures and all(0 <= p <= 400 for p in pressures)
    assert max(pressures) > 40
