"""The lineage spec is enough: docs/lineage-format.md is current with the code, and a
second reader written from it alone (tests/ref_decoder.py: struct, hashlib, hmac, cbor2)
reads the golden vectors and a fresh demo lineage exactly as ``edgegov lineage decode``
does, verifies their hash chains and MACs, and refuses tampered copies."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cbor2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ref_decoder as ref  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "v1"
GOLDEN_KEY = bytes(range(100, 132))
SPEC = (REPO / "docs" / "lineage-format.md").read_text()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgegov_cli.main", *args],
                          capture_output=True, text=True)


def _cli_decode(path: Path) -> list[dict]:
    proc = _cli("lineage", "decode", str(path), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _same_rows(mine: list[dict], theirs: list[dict]) -> None:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert a == b, (a, b)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = _cli("demo", "--simulated-time", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "edgegov-demo.lineage", out / "edgegov-demo.key"


def test_code_tables_in_the_lineage_spec_are_generated_from_the_code():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "render_codes.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_reference_reader_uses_no_edgegov_code(tmp_path):
    out = tmp_path / "rows.jsonl"
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import ref_decoder as r; "
            f"rows = r.decode(r.read_ring(open({str(GOLDEN / 'lineage.img')!r}, 'rb').read())); "
            f"open({str(out)!r}, 'w').write(str(len(rows))); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'edgegov'], 'edgegov'")
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert int(out.read_text()) > 100


def test_the_spec_worked_ring_example_reads_as_one_record():
    header = bytes.fromhex(re.search(r"^header  ([0-9a-f ]+)$", SPEC, re.M).group(1))
    frame = bytes.fromhex(re.search(r"^frame   ([0-9a-f ]+)$", SPEC, re.M).group(1))
    block = header + frame
    image = block + b"\xff" * (256 - len(block)) + b"\xff" * 256
    ring = ref.read_ring(image)
    assert ring.block_size == 256 and ring.problems == []
    assert ring.records == [(0x01020304, b"abc")]
    assert ring.offsets == {0x01020304: 28}


def test_every_golden_record_reads_as_its_recorded_value():
    entries = json.loads((GOLDEN / "records.json").read_text())
    for entry in entries:
        assert _jsonable(ref.record(bytes.fromhex(entry["hex"]))) == entry["value"]


def test_the_golden_chain_from_seq_0_gives_every_checkpoint_head_and_mac():
    """The chain in byte notation, recomputed from every record the golden run appended
    (those wrap-around overwrote included); the spec's worked example quotes these."""
    stored = [(e["seq"], bytes.fromhex(e["hex"])) for e in
              json.loads((GOLDEN / "records.json").read_text()) if e["seq"] >= 0]
    assert [s for s, _ in stored] == list(range(len(stored)))
    rep = ref.verify(stored, (), GOLDEN_KEY)
    assert rep.ok and rep.checkpoints == rep.heads_checked == rep.macs_checked >= 14
    checkpoints = [ref.record(p) for _, p in stored if p[1] == 5]
    first, second = checkpoints[0], checkpoints[1]
    assert first[2] == bytes(32) and second[2] == first[3]
    for quoted in (first[3].hex(), first[4].hex(), second[3].hex()):
        assert quoted in SPEC
    assert ref.mac_of(GOLDEN_KEY, first[3]) == first[4]


def test_golden_image_reads_as_the_golden_jsonl_and_as_edgegov_decodes_it():
    ring = ref.read_ring((GOLDEN / "lineage.img").read_bytes())
    mine = ref.decode(ring)
    golden = [json.loads(line) for line in (GOLDEN / "lineage.jsonl").read_text().splitlines()]
    _same_rows(mine, golden)
    _same_rows(mine, _cli_decode(GOLDEN / "lineage.img"))
    # (the BOOT was overwritten by wrap-around: the records before the first surviving
    # checkpoint are shown unplaced)
    assert {row["kind"] for row in mine} >= {"decision", "event", "checkpoint", "gap",
                                             "envelope"}
    assert any(row.get("unplaced") for row in mine)


def test_recorded_operator_mac_checks_are_what_the_key_gives():
    """``authentic`` of every operator input, recomputed from the spec's op_mac: the golden
    run has genuine actions and a forged one (an all-zero MAC)."""
    stored = [(e["seq"], bytes.fromhex(e["hex"])) for e in
              json.loads((GOLDEN / "records.json").read_text()) if e["seq"] >= 0]
    checks = ref.operator_checks(stored, GOLDEN_KEY)
    assert {authentic for _, authentic, _ in checks} == {True, False}
    assert all(authentic == ok for _, authentic, ok in checks), checks
    assert not any(ok for _, _, ok in ref.operator_checks(stored, bytes(32)))


def test_golden_image_verifies_with_its_key_and_not_with_another():
    ring = ref.read_ring((GOLDEN / "lineage.img").read_bytes())
    good = ref.verify(ring.records, ring.problems, GOLDEN_KEY)
    assert good.ok and good.heads_checked >= 4 and good.macs_checked == good.checkpoints
    bad = ref.verify(ring.records, ring.problems, bytes(32))
    assert not bad.ok and "MAC" in bad.bad[0][1]


def test_demo_lineage_reads_as_edgegov_decodes_it_and_verifies_with_the_demo_key(demo):
    lineage, key_file = demo
    ring = ref.read_ring(lineage.read_bytes())
    mine = ref.decode(ring)
    _same_rows(mine, _cli_decode(lineage))
    assert sum(row["kind"] == "decision" for row in mine) > 1000
    assert not [row for row in mine if row["kind"] == "error" or row.get("unplaced")]
    key = ref.read_key(key_file)
    assert key == bytes(range(32))  # the spec: the HMAC key is the decoded hex, not the text
    rep = ref.verify(ring.records, ring.problems, key)
    assert rep.ok, rep.bad
    assert rep.checkpoints == rep.heads_checked == rep.macs_checked >= 5
    checks = ref.operator_checks(ring.records, key)
    assert checks and all(authentic == ok for _, authentic, ok in checks)


# ---------------------------------------------------------------- tampered copies

def _decision_before_last_checkpoint(ring):
    ckpts = [i for i, (_, p) in enumerate(ring.records) if p[1] == 5]
    for i in range(ckpts[-1] - 1, ckpts[-2], -1):
        seq, payload = ring.records[i]
        rec = ref.record(payload)
        if rec[0] == 2 and 0 <= rec[6] < 20:
            return seq, rec
    raise AssertionError("no DECISION to tamper with")


def _rewrite(image: bytearray, ring, seq: int, payload: bytes, fix_crc=True) -> None:
    """Replace record ``seq``'s payload (same length), recomputing its frame CRC."""
    off = ring.offsets[seq]
    n = struct.unpack_from("<H", image, off)[0]
    assert n == len(payload)
    image[off + 6:off + 6 + n] = payload
    if fix_crc:
        start = off - off % ring.block_size
        seed = zlib.crc32(bytes(image[start:start + 20]))
        struct.pack_into("<I", image, off + 6 + n, zlib.crc32(bytes(image[off:off + 6 + n]), seed))


def test_a_record_changed_with_its_crc_recomputed_breaks_the_chain(demo, tmp_path):
    lineage, key_file = demo
    image = bytearray(lineage.read_bytes())
    ring = ref.read_ring(bytes(image))
    seq, rec = _decision_before_last_checkpoint(ring)
    rec[6] += 1  # the margin
    _rewrite(image, ring, seq, cbor2.dumps(rec))
    bad = ref.read_ring(bytes(image))
    assert bad.problems == ring.problems  # every frame still checks
    rep = ref.verify(bad.records, bad.problems, ref.read_key(key_file))
    assert not rep.ok and "head" in rep.bad[0][1] and rep.bad[0][0] > seq
    (tmp_path / "t.lineage").write_bytes(bytes(image))  # edgegov agrees
    assert _cli("lineage", "verify", str(tmp_path / "t.lineage"),
                "--key", str(key_file)).returncode == 1


def test_a_damaged_frame_in_an_older_sector_is_refused(demo):
    lineage, key_file = demo
    image = bytearray(lineage.read_bytes())
    ring = ref.read_ring(bytes(image))
    seq = ring.records[1][0]  # in the first sector, which is not the head
    off = ring.offsets[seq]
    image[off + 7] ^= 0x01
    bad = ref.read_ring(bytes(image))
    assert [(p.code, p.seq) for p in bad.problems][0] == (ref.BAD_RECORD, seq)
    assert not ref.verify(bad.records, bad.problems, ref.read_key(key_file)).ok


def test_a_rewritten_chain_passes_without_the_key_and_fails_the_macs(demo):
    """Change a record, then recompute every head after it (as a forger can): the chain
    holds together, and only the device key tells."""
    lineage, key_file = demo
    image = bytearray(lineage.read_bytes())
    ring = ref.read_ring(bytes(image))
    seq, rec = _decision_before_last_checkpoint(ring)
    rec[6] += 1
    _rewrite(image, ring, seq, cbor2.dumps(rec))
    _rechain(image, ring)
    forged = ref.read_ring(bytes(image))
    assert ref.verify(forged.records, forged.problems).ok
    rep = ref.verify(forged.records, forged.problems, ref.read_key(key_file))
    assert not rep.ok and "MAC" in rep.bad[0][1]


def _rechain(image: bytearray, ring) -> None:
    import hashlib

    h, opened = hashlib.sha256(bytes(32)), bytes(32)
    for seq, _ in ring.records:
        off = ring.offsets[seq]
        n = struct.unpack_from("<H", image, off)[0]
        payload = bytes(image[off + 6:off + 6 + n])
        if payload[1] == 5:
            rec = ref.record(payload)
            rec[2], rec[3] = opened, h.digest()
            payload = cbor2.dumps(rec)
            _rewrite(image, ring, seq, payload)
            h, opened = hashlib.sha256(rec[3]), rec[3]
        h.update(struct.pack("<I", seq) + payload)


def _jsonable(v):
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def test_a_gateway_lineage_chains_on_across_a_reboot(tmp_path):
    """The spec: the chain does not restart at a BOOT; the boot's checkpoint follows the
    last checkpoint of the previous run."""
    from edgegov.config.compile import compile_file
    from edgegov.core.envelope import Envelope
    from edgegov.core.events import Telemetry
    from edgegov.core.governor import Governor
    from edgegov.host.lineage_store import open_lineage

    compiled = compile_file(GOLDEN / "envelope.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    path = tmp_path / "gw.lineage"
    for boot in range(2):
        lineage = open_lineage(path, env, GOLDEN_KEY, block_size=1024, block_count=8,
                               checkpoint_every=8)
        gov = Governor(env, GOLDEN_KEY)
        lineage.boot(gov, 0, boot_count=boot, envelope_blob=compiled.blob)
        for t in range(1, 12):
            ok = Telemetry({"estop": False, "guard": True})
            lineage.record(ok, t, gov.handle(ok, t), gov)
        lineage.sync()
        lineage.device.close()  # a power cut: no closing checkpoint
    ring = ref.read_ring(path.read_bytes())
    rep = ref.verify(ring.records, ring.problems, GOLDEN_KEY)
    assert rep.ok, rep.bad
    assert rep.checkpoints == rep.heads_checked == rep.macs_checked >= 4
    recs = [ref.record(p) for _, p in ring.records]
    second_boot = [i for i, r in enumerate(recs) if r[0] == 1][1]
    before = [r for r in recs[:second_boot] if r[0] == 5][-1]
    after = next(r for r in recs[second_boot:] if r[0] == 5)
    assert after[2] == before[3]


def test_a_board_lineage_chains_on_across_a_reboot():
    """A full-core board (firmware/edgegov_fw/boot_main.py) recovers its ring and resumes
    the chain with ``Lineage.resume``: the ring verifies across the reboot."""
    from edgegov.config.compile import compile_file
    from edgegov.core.blockdev import RamBlockDevice
    from edgegov.core.envelope import Envelope
    from edgegov.core.events import Telemetry
    from edgegov.core.governor import Governor
    from edgegov.core.lineage import Lineage
    from edgegov.core.ring import RingLog

    compiled = compile_file(GOLDEN / "envelope.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    bd = RamBlockDevice(1024, 8)
    RingLog(bd).format()
    for boot in range(3):
        ring = RingLog(bd)
        ring.recover()
        lineage = Lineage(ring, env, GOLDEN_KEY, checkpoint_every=8)
        lineage.resume()
        gov = Governor(env, GOLDEN_KEY)
        lineage.boot(gov, 0, boot_count=boot, envelope_blob=compiled.blob)
        for t in range(1, 12 + boot):  # the last boot ends after its last checkpoint
            ok = Telemetry({"estop": False, "guard": True})
            lineage.record(ok, t, gov.handle(ok, t), gov)
    ring = ref.read_ring(RingLog(bd).image())
    rep = ref.verify(ring.records, ring.problems, GOLDEN_KEY)
    assert rep.ok, rep.bad
    assert sum(ref.record(p)[0] == 1 for _, p in ring.records) == 3
    assert rep.checkpoints == rep.heads_checked >= 6


def _section(title: str) -> str:
    return SPEC.split(f"### {title}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def test_the_spec_checkpoint_state_table_lists_the_governor_state_in_order():
    from edgegov.core.governor import Governor

    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", _section("CHECKPOINT state"), re.M)
    assert [int(i) for i, _ in rows] == list(range(len(Governor._STATE)))
    assert [name for _, name in rows] == [n.lstrip("_") for n in Governor._STATE]


def test_the_spec_rule_id_example_matches_the_golden_envelope():
    ring = ref.read_ring((GOLDEN / "lineage.img").read_bytes())
    (env,) = ref.envelopes(ring.records).values()
    quoted = re.findall(r"`([a-z_.]+)`\s+\((\d+)\)", _section("Rule ids"))
    assert len(quoted) >= 6
    for rule_id, index in quoted:
        assert env.rules[int(index)] == rule_id
    assert env.rules == sorted(env.rules)


def test_a_cut_between_boot_and_its_checkpoint_leaves_a_verifiable_lineage(tmp_path):
    """A power cut after the BOOT record but before the boot's checkpoint: the next boot
    chains on from the ring's start (seq 0), as a verifier walks it."""
    from edgegov.config.compile import compile_file
    from edgegov.core.envelope import Envelope
    from edgegov.core.events import Telemetry
    from edgegov.core.governor import Governor
    from edgegov.host.lineage_store import open_lineage

    compiled = compile_file(GOLDEN / "envelope.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    path = tmp_path / "cut.lineage"
    lineage = open_lineage(path, env, GOLDEN_KEY, block_size=1024, block_count=8)
    gov = Governor(env, GOLDEN_KEY)
    lineage.enc.boot(0, 0, 0, "cut", env.digest, 0, gov.start(0).output)
    assert lineage.ring.append(lineage.enc.payload()) == 0  # only the BOOT made it
    lineage.sync()
    lineage.device.close()
    lineage = open_lineage(path, env, GOLDEN_KEY, block_size=1024, block_count=8)
    gov = Governor(env, GOLDEN_KEY)
    lineage.boot(gov, 5, boot_count=1, envelope_blob=compiled.blob)
    ok = Telemetry({"estop": False, "guard": True})
    lineage.record(ok, 6, gov.handle(ok, 6), gov)
    lineage.checkpoint(gov, 7)
    lineage.sync()
    lineage.device.close()
    ring = ref.read_ring(path.read_bytes())
    assert [ref.record(p)[0] for _, p in ring.records] == [1, 1, 6, 5, 3, 5]
    rep = ref.verify(ring.records, ring.problems, GOLDEN_KEY)
    assert rep.ok and rep.heads_checked == 2, rep.bad
    assert _cli("lineage", "verify", str(path), "--key", str(_key_file(tmp_path))).returncode == 0


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "golden.key"
    path.write_text(GOLDEN_KEY.hex() + "\n")
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- any input shape

def _any_value():
    from hypothesis import strategies as st

    scalar = st.one_of(st.integers(-(1 << 70), 1 << 70), st.booleans(), st.none(),
                       st.sampled_from([float("nan"), float("inf"), float("-inf"), 2.5]),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                       st.binary(max_size=4), _lone_surrogates())
    return st.one_of(scalar, st.lists(scalar, max_size=2), st.dictionaries(
        st.text(max_size=3), scalar, max_size=2))


def _lone_surrogates():
    from hypothesis import strategies as st

    return st.sampled_from(["\ud800", "a\udfffb"])  # JSON "\ud800" can carry them


def _events():
    from edgegov.core.events import TICK, Command, Fault, Operator, Telemetry
    from hypothesis import strategies as st

    names = st.one_of(st.sampled_from(["axis", "tool", "turbo", "estop", "guard", ""]),
                      _lone_surrogates())
    values = st.one_of(st.dictionaries(names, _any_value(), max_size=3),
                       st.dictionaries(names, st.integers(-900, 900), max_size=3),
                       _any_value())
    seq = st.one_of(st.integers(-5, 1 << 66), _any_value())
    return st.lists(st.one_of(
        st.builds(Command, seq, values),
        st.builds(Telemetry, values),
        st.just(TICK),
        st.just(Telemetry({"n" * 1100: 1})),  # too large for a frame: a GAP (host) instead
        st.builds(Operator, st.one_of(st.integers(0, 9), _any_value()),
                  st.one_of(st.integers(-3, 3), _any_value()), _any_value(),
                  st.one_of(st.binary(min_size=32, max_size=32), _any_value())),
        st.builds(Fault, st.one_of(st.integers(0, 40), _any_value()), st.booleans()),
        st.sampled_from(["clock step", "reboot"]),  # the host's clock steps; a reboot
    ), min_size=1, max_size=80)


def _armed(env):
    """Reset, arm and engage the link, so the inputs after it meet an armed governor."""
    from edgegov.core import codes
    from edgegov.core.events import Command, Telemetry
    from edgegov.operator import OperatorSigner

    signer = OperatorSigner(GOLDEN_KEY, env.device_id)
    ok = Telemetry({"estop": False, "guard": True})
    return [ok, signer.sign(codes.OP_RESET), signer.sign(codes.OP_ARM)] + [
        Command(k, {"axis": 10 * k, "tool": k}) for k in range(1, 12)]


def test_any_recorded_input_reads_as_edgegov_reads_it():
    """Every value shape a peer can send (bad ones included), recorded by edgegov, decodes
    field by field the same in the reference reader (a small ring: wrap-around, GAPs)."""
    from edgegov.config.compile import compile_file
    from edgegov.core.blockdev import RamBlockDevice
    from edgegov.core.envelope import Envelope
    from edgegov.core.events import Command
    from edgegov.core.governor import Governor
    from edgegov.core.lineage import Lineage
    from edgegov.core.ring import RingLog
    from edgegov.host.lineage_read import decode_dump
    from edgegov.host.lineage_store import read_dump
    from hypothesis import given, settings
    from hypothesis import strategies as st

    compiled = compile_file(GOLDEN / "envelope.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)

    @settings(max_examples=60, deadline=None)
    @given(_events(), st.integers(0, 60), st.one_of(st.none(), st.integers(0, 1 << 42)))
    def run(events, wrap, wall_ms):
        bd = RamBlockDevice(1024, 4)
        RingLog(bd).format()
        filler = [Command((1 << 40) + k, {"axis": k % 30, "tool": 5}) for k in range(wrap)]
        lineage = gov = None
        start = 0
        for k, event in enumerate(["reboot"] + _armed(env) + events + filler):
            if event == "reboot":
                start = k  # device time starts again at each boot
            now = 3 * (k - start) + 1
            if event == "reboot":
                ring = RingLog(bd)
                ring.recover()
                lineage = Lineage(ring, env, GOLDEN_KEY, checkpoint_every=5)
                lineage.resume()
                gov = Governor(env, GOLDEN_KEY)
                boot_wall = None if wall_ms is None else wall_ms + 1_000_000 * k
                lineage.boot(gov, now, wall_ms=boot_wall, envelope_blob=compiled.blob)
            elif event == "clock step":
                lineage.time_step(now, 1_800_000_000_000 + 7 * now)
            else:
                lineage.record(event, now, gov.handle(event, now), gov)
        image = RingLog(bd).image()
        image = ring.image()
        path = Path(tmp) / "any.img"
        path.write_bytes(image)
        theirs = [json.loads(json.dumps(row)) for row in decode_dump(read_dump(path))]
        mine = [json.loads(json.dumps(row)) for row in ref.decode(ref.read_ring(image))]
        _same_rows(mine, theirs)
        assert ref.verify(ref.read_ring(image).records, (), GOLDEN_KEY).ok
        kinds.update(row["kind"] for row in mine)
        kinds.update("wall" for row in mine if "wall" in row)
        kinds.update("text marker" for _, p in ref.read_ring(image).records if b"\x82\x06" in p)

    import tempfile

    kinds: set = set()
    with tempfile.TemporaryDirectory() as tmp:
        run()
    assert {"gap", "decision", "event", "checkpoint", "envelope", "time", "boot",
            "wall", "text marker"} <= kinds, kinds


def test_the_reference_reader_command_decodes_verifies_and_refuses_a_non_lineage(tmp_path):
    script = str(REPO / "tests" / "ref_decoder.py")
    proc = subprocess.run([sys.executable, script, str(GOLDEN / "lineage.img"), "--key",
                           str(_key_file(tmp_path))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    decoded = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "lineage", "decode",
                              str(GOLDEN / "lineage.img")], capture_output=True, text=True)
    assert decoded.returncode == 0, decoded.stderr
    assert len(proc.stdout.splitlines()) == len(decoded.stdout.splitlines()) > 100
    assert proc.stderr.startswith("verify OK")
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"not a lineage\n")
    proc = subprocess.run([sys.executable, script, str(junk)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_head_attestation_holds_for_the_sealed_dump_and_fails_for_a_cut_one(tmp_path):
    """The spec's Head attestation, checked by the reference reader: a sealed gateway
    lineage satisfies its attestation; the same dump cut after the pull, or checked with
    another key, does not (and edgegov.host.attest agrees)."""
    from edgegov.config.compile import compile_file
    from edgegov.core.envelope import Envelope
    from edgegov.core.events import Telemetry
    from edgegov.core.governor import Governor
    from edgegov.host import attest
    from edgegov.host.lineage_store import open_lineage

    compiled = compile_file(GOLDEN / "envelope.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    path = tmp_path / "sealed.lineage"
    lineage = open_lineage(path, env, GOLDEN_KEY, block_size=1024, block_count=8)
    gov = Governor(env, GOLDEN_KEY)
    lineage.boot(gov, 0, envelope_blob=compiled.blob)
    for t in range(1, 30):
        ok = Telemetry({"estop": False, "guard": True})
        lineage.record(ok, t, gov.handle(ok, t), gov)
    doc = attest.seal(lineage, gov, 30, env.device_id, counter=123456789)
    lineage.sync()
    lineage.device.close()
    image = path.read_bytes()
    ring = ref.read_ring(image)
    assert ring.records[-1][0] == doc["head_seq"]
    assert ref.check_attestation(ring, doc, GOLDEN_KEY)[0]
    assert attest.check(image, doc, GOLDEN_KEY)[0]
    assert not ref.check_attestation(ring, doc, bytes(32))[0]
    cut = bytearray(image)
    off = ring.offsets[doc["head_seq"]]
    cut[off:off + 1] = b"\xff"  # the sealing checkpoint's frame no longer checks: cut there
    cut_ring = ref.read_ring(bytes(cut))
    assert ref.verify(cut_ring.records, cut_ring.problems, GOLDEN_KEY).ok  # alone: unseen
    assert not ref.check_attestation(cut_ring, doc, GOLDEN_KEY)[0]
    assert not attest.check(bytes(cut), doc, GOLDEN_KEY)[0]
