"""Sealed pulls: a real ``edgegov run`` over a real Mosquitto seals its ring and signs a head
attestation; ``lineage verify`` checks it, so a dump cut at a block boundary or after the
last checkpoint before the seal fails, while the untouched dump verifies. An orderly stop
seals and attests the lineage file too."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from edgegov.adapters.mqtt import parse_url
from edgegov.core.record import K_CHECKPOINT
from edgegov.host import attest
from edgegov.host.lineage_store import read_dump
from edgegov.service.client import pull_sealed
from edgegov.service.topics import Topics
from mosquitto_fixture import needs_mosquitto
from service_harness import DEVICE, KEY, Peer, ServiceProcess, write_key

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]


def edgegov(*args):
    return subprocess.run([sys.executable, "-m", "edgegov_cli.main", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def pulled(broker, tmp_path_factory):
    """(dump path, key file, service workdir): 300 commands, then a sealed pull."""
    work = tmp_path_factory.mktemp("sealed")
    before_ms = time.time_ns() // 1_000_000
    svc = ServiceProcess(work, broker.url).start()

    async def scenario():
        async with Peer(broker.port, "t-sealed") as peer:
            await peer.online()
            for i in range(300):
                await peer.command({"spindle": i % 50})
            await peer.wait_for("decision", lambda m: m["seq"] == 300, 20)
            return await pull_sealed(parse_url(broker.url), Topics(DEVICE), 20)

    try:
        got = asyncio.run(scenario())
        assert svc.proc.poll() is None
    finally:
        svc.stop()
    dump = work / "pulled.lineage"
    dump.write_bytes(got.image)
    attest.write(attest.path_for(dump), got.attestation)
    got.wall_bounds = (before_ms, time.time_ns() // 1_000_000)
    return dump, write_key(work / "pull.key"), got


def test_the_attestation_names_the_seal_as_the_last_record(pulled):
    _, _, got = pulled
    att = got.attestation
    assert set(att) == {"device", "head_seq", "chain_head", "counter", "mac"}
    assert att["device"] == DEVICE
    records = read_dump(pulled[0]).records
    assert records[-1][0] == att["head_seq"] and records[-1][1][1] == K_CHECKPOINT
    ok, why = attest.check(got.image, att, KEY)
    assert ok and "MAC checked" in why, why
    assert not attest.check(got.image, att, bytes(32))[0]  # another key


def test_the_service_records_its_wall_clock(pulled):
    from edgegov.core.record import K_BOOT, decode

    records = [decode(p) for _, p in read_dump(pulled[0]).records]
    lo, hi = pulled[2].wall_bounds
    boot = next(r for r in records if r[0] == K_BOOT)
    assert lo <= boot[9] <= hi  # read while the service started, between these two readings
    seal = records[-1]
    assert len(seal) == 9 and boot[9] <= seal[8] <= hi


def test_untouched_dump_verifies_with_its_attestation(pulled):
    dump, key, _ = pulled
    out = edgegov("lineage", "verify", dump, "--key", key)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "attestation: attested head seq" in out.stdout and "MAC checked" in out.stdout


def _cut(tmp_path, pulled, image: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(image)
    att = tmp_path / "att.json"
    att.write_text(json.dumps(pulled[2].attestation))
    return path, att


def test_dump_truncated_at_a_block_boundary_fails(pulled, tmp_path):
    dump, key, got = pulled
    d = read_dump(dump)
    seal_offset = d.offsets[got.attestation["head_seq"]]
    head_block = seal_offset // d.block_size
    assert head_block >= 1  # 300 commands fill more than one 4 KiB sector
    image = got.image[: head_block * d.block_size]
    path, att = _cut(tmp_path, pulled, image, "short.lineage")
    plain = edgegov("lineage", "verify", path, "--key", key)
    assert plain.returncode == 0, plain.stdout  # CRC and chain alone cannot tell
    out = edgegov("lineage", "verify", path, "--key", key, "--attestation", att)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"attested head seq {got.attestation['head_seq']} is not in the dump" in out.stdout
    assert "verify FAILED" in out.stderr and "Traceback" not in out.stderr


def test_dump_cut_after_the_last_checkpoint_before_the_seal_fails(pulled, tmp_path):
    dump, key, got = pulled
    d = read_dump(dump)
    seal = got.attestation["head_seq"]
    checkpoints = [s for s, p in d.records if p[1] == K_CHECKPOINT and s != seal]
    last = checkpoints[-1]
    assert seal - last > 2  # records between them: the ones a cut would hide
    cut_at = d.offsets[last + 1]
    # the ring has not wrapped: everything after `last` erased ends it cleanly there
    image = got.image[:cut_at] + b"\xff" * (len(got.image) - cut_at)
    path, att = _cut(tmp_path, pulled, bytes(image), "cut.lineage")
    assert read_dump(path).records[-1][0] == last
    plain = edgegov("lineage", "verify", path, "--key", key)
    assert plain.returncode == 0, plain.stdout
    out = edgegov("lineage", "verify", path, "--key", key, "--attestation", att)
    assert out.returncode == 1, out.stdout
    assert "not in the dump: cut or shortened after the pull" in out.stdout


def test_altered_attestation_fails_its_mac(pulled, tmp_path):
    dump, key, got = pulled
    forged = {**got.attestation, "head_seq": got.attestation["head_seq"] - 5}
    att = tmp_path / "forged.json"
    att.write_text(json.dumps(forged))
    out = edgegov("lineage", "verify", dump, "--key", key, "--attestation", att)
    assert out.returncode == 1 and "MAC does not match" in out.stdout, out.stdout
    att.write_text("{not json")
    bad = edgegov("lineage", "verify", dump, "--attestation", att)
    assert bad.returncode == 2 and "not JSON" in bad.stderr and "Traceback" not in bad.stderr
    att.write_text('{"device": "cell-7"}')
    bad = edgegov("lineage", "verify", dump, "--attestation", att)
    assert bad.returncode == 2 and "not an attestation" in bad.stderr, bad.stderr
    bad = edgegov("lineage", "verify", dump, "--attestation", tmp_path / "missing.json")
    assert bad.returncode == 2 and "cannot read" in bad.stderr, bad.stderr


def test_orderly_stop_seals_and_attests_the_file(broker, tmp_path):
    svc = ServiceProcess(tmp_path, broker.url).start()

    async def scenario():
        async with Peer(broker.port, "t-stop") as peer:
            await peer.online()
            for _ in range(50):  # the service subscribes just after it says online
                await peer.command({"spindle": 3})
                await asyncio.sleep(0.1)
                if peer.got["decision"]:
                    break
            assert peer.got["decision"]

    try:
        asyncio.run(scenario())
        assert svc.terminate() == 0
    finally:
        svc.stop()
    att_file = attest.path_for(svc.lineage)
    att = json.loads(att_file.read_text())
    assert read_dump(svc.lineage).records[-1][0] == att["head_seq"]
    out = edgegov("lineage", "verify", svc.lineage, "--key", svc.key_file)
    assert out.returncode == 0 and "attestation: attested head seq" in out.stdout, out.stdout
    svc.start()  # a new writer: the old attestation no longer names the last record
    try:
        for _ in range(100):
            if not att_file.exists():
                break
            time.sleep(0.1)
        assert not att_file.exists()
    finally:
        svc.stop()


def test_attestation_mac_covers_the_documented_bytes():
    # docs/lineage-format.md, Head attestation: "edgegov-att" 00 || u16le(len(device)) ||
    # device || u32le(head_seq) || chain_head || u64le(counter), HMAC-SHA256 with the key
    import hashlib
    import hmac

    chain_head = bytes(range(32))
    doc = attest.sign(KEY, "cell-7", 0x01020304, chain_head, 0x1122334455667788)
    message = (b"edgegov-att\x00" + b"\x06\x00" + b"cell-7" + b"\x04\x03\x02\x01" + chain_head
               + b"\x88\x77\x66\x55\x44\x33\x22\x11")
    assert doc["mac"] == hmac.new(KEY, message, hashlib.sha256).hexdigest()
    assert doc["chain_head"] == chain_head.hex() and doc["head_seq"] == 0x01020304


def test_chain_head_is_sha256_of_head_seq_and_payload(pulled):
    import hashlib

    _, _, got = pulled
    from edgegov.core.record import decode

    seq, payload = read_dump(pulled[0]).records[-1]
    expected = hashlib.sha256(bytes(decode(payload)[3]) + seq.to_bytes(4, "little") + payload)
    assert got.attestation["chain_head"] == expected.hexdigest()
