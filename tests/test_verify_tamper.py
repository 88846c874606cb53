"""verify names the first record it can prove bad, in every tamper class, on the demo's
lineage rebuilt by a forger who recomputes every CRC: a payload that is no longer CBOR, a
payload edited into another valid record, a record deleted, two records swapped, a
checkpoint's state edited, a checkpoint's head edited. The named seq and byte offset are
those of the record in the forged image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from edgegov.core import cbor, codes
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.record import K_CHECKPOINT, K_DECISION
from edgegov.core.ring import RingLog
from edgegov.core.verify import verify
from edgegov.host.lineage_store import read_dump

EDGEGOV = [sys.executable, "-m", "edgegov_cli.main"]
TARGET = 700  # the record the forger works on (index in the demo's lineage)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    subprocess.run(EDGEGOV + ["demo", "--simulated-time", "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    return out / "edgegov-demo.lineage"


def forge(src: Path, out: Path, records: list) -> Path:
    """Rebuild the ring from ``records`` (payloads only: the ring numbers them again and
    computes every CRC), as a forger with the format spec would."""
    dump = read_dump(src)
    ring = RingLog(RamBlockDevice(dump.block_size, src.stat().st_size // dump.block_size))
    ring.format(first_seq=records[0][0])
    for _, payload in records:
        ring.append(payload)
    out.write_bytes(ring.image())
    return out


def verify_cli(path: Path):
    proc = subprocess.run(EDGEGOV + ["lineage", "verify", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    failed = proc.stderr.strip().splitlines()[-1]
    seq, offset = (int(x) for x in failed.rsplit("at seq ", 1)[1].split(", offset "))
    first = next(line for line in proc.stdout.splitlines() if "FAIL:" in line)
    return seq, offset, first


def records_of(path):
    return list(read_dump(path).records)


def next_checkpoint(records, index):
    return next(seq for seq, p in records[index:] if p[1] == K_CHECKPOINT)


def test_a_payload_that_is_no_longer_cbor_is_named_as_that_record(demo, tmp_path):
    recs = records_of(demo)
    seq, payload = recs[TARGET]
    recs[TARGET] = (seq, payload[:-1])  # one byte short: truncated CBOR, CRC recomputed
    forged = forge(demo, tmp_path / "cut.lineage", recs)
    named, offset, first = verify_cli(forged)
    assert named == seq and offset == read_dump(forged).offsets[seq]
    assert "record does not decode" in first and f"seq {seq}" in first


def test_a_payload_that_is_no_longer_cbor_is_named_even_without_envelopes(demo, tmp_path):
    recs = records_of(demo)
    seq, payload = recs[TARGET]
    recs[TARGET] = (seq, b"\xff" + payload[1:])
    dump = read_dump(forge(demo, tmp_path / "ff.lineage", recs))
    rep = verify(dump.records, dump.problems, None, dump.offsets, dump.genesis_seq)
    assert rep.first_bad.seq == seq and rep.first_bad.offset == dump.offsets[seq]


def _first_clamp(recs):
    for i, (_, payload) in enumerate(recs):
        rec = cbor.loads(payload)
        if i > 300 and rec[0] == K_DECISION and rec[4] // 64 == codes.CLAMP:
            return i, rec
    raise AssertionError("no clamp")


def test_a_valid_edit_is_named_as_that_record(demo, tmp_path):
    recs = records_of(demo)
    i, rec = _first_clamp(recs)
    rec[4] = codes.ALLOW * 64  # the CLAMP rewritten as an ALLOW: valid CBOR, valid record
    recs[i] = (recs[i][0], cbor.dumps(rec))
    forged = forge(demo, tmp_path / "flip.lineage", recs)
    named, offset, first = verify_cli(forged)
    assert named == recs[i][0] and offset == read_dump(forged).offsets[named]
    assert "does not follow from the records before it (its verdict differs" in first


def test_without_envelopes_a_valid_edit_falls_back_to_the_closing_checkpoint(demo, tmp_path):
    recs = records_of(demo)
    i, rec = _first_clamp(recs)
    rec[4] = codes.ALLOW * 64
    recs[i] = (recs[i][0], cbor.dumps(rec))
    dump = read_dump(forge(demo, tmp_path / "flip.lineage", recs))
    rep = verify(dump.records, dump.problems, None, dump.offsets, dump.genesis_seq)
    assert rep.first_bad.seq == next_checkpoint(recs, i)
    assert "hash chain broken" in rep.first_bad.message


def test_a_deleted_record_is_named_before_the_checkpoint(demo, tmp_path):
    recs = records_of(demo)
    deleted_seq = recs[TARGET][0]
    closing = next_checkpoint(recs, TARGET) - 1  # renumbered: one less after the deletion
    del recs[TARGET]
    forged = forge(demo, tmp_path / "deleted.lineage", recs)
    named, offset, first = verify_cli(forged)
    assert deleted_seq <= named < closing, (named, closing)
    assert offset == read_dump(forged).offsets[named]
    assert "does not follow from the records before it" in first


def test_swapped_records_are_named_at_the_swap(demo, tmp_path):
    recs = records_of(demo)
    a, b = recs[TARGET][0], recs[TARGET + 1][0]
    recs[TARGET], recs[TARGET + 1] = (a, recs[TARGET + 1][1]), (b, recs[TARGET][1])
    forged = forge(demo, tmp_path / "swapped.lineage", recs)
    named, offset, first = verify_cli(forged)
    assert named in (a, b) and offset == read_dump(forged).offsets[named]
    assert "does not follow from the records before it" in first


def _checkpoint_after(recs, index):
    k = next(j for j in range(index, len(recs)) if recs[j][1][1] == K_CHECKPOINT)
    return k, cbor.loads(recs[k][1])


def test_an_edited_checkpoint_state_is_named_as_that_checkpoint(demo, tmp_path):
    recs = records_of(demo)
    k, rec = _checkpoint_after(recs, TARGET)
    rec[6][3] += 1  # one field of the governor state
    recs[k] = (recs[k][0], cbor.dumps(rec))
    forged = forge(demo, tmp_path / "state.lineage", recs)
    named, offset, first = verify_cli(forged)
    assert named == recs[k][0] and offset == read_dump(forged).offsets[named]
    assert "checkpoint state does not follow" in first


def test_an_edited_checkpoint_head_is_named_as_that_checkpoint(demo, tmp_path):
    recs = records_of(demo)
    k, rec = _checkpoint_after(recs, TARGET)
    rec[3] = bytes(32)
    recs[k] = (recs[k][0], cbor.dumps(rec))
    forged = forge(demo, tmp_path / "head.lineage", recs)
    named, offset, first = verify_cli(forged)
    assert named == recs[k][0] and offset == read_dump(forged).offsets[named]
    assert "hash chain broken" in first


def test_the_untouched_lineage_verifies(demo):
    proc = subprocess.run(EDGEGOV + ["lineage", "verify", str(demo)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "verify OK" in proc.stdout


def test_verify_help_states_the_three_exit_codes():
    text = " ".join(subprocess.run(EDGEGOV + ["lineage", "verify", "--help"],
                                   capture_output=True, text=True).stdout.split())
    assert "0 verified" in text and "1 a record or checkpoint proved bad" in text
    assert "2 unreadable" in text
