"""Regenerate the v1 golden lineage under tests/golden/v1 (maintainers only).

    python tools/make_golden.py

Writes ``lineage.img`` (a small ring image from a scripted run covering every record
kind and every event input), ``lineage.jsonl`` (its decode) and ``records.json`` (single
records with their bytes and decoded values). Golden files are a compatibility promise:
regenerate them only together with a format version change.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgegov.config.compile import compile_file
from edgegov.core import codes
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.events import TICK, Command, Fault, Operator, Session, Telemetry
from edgegov.core.governor import Governor
from edgegov.core.lineage import Lineage
from edgegov.core.ring import RingLog
from edgegov.operator import OperatorSigner

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "v1"
KEY = bytes(range(100, 132))
BLOCK_SIZE, BLOCK_COUNT = 1024, 6


def script(signer: OperatorSigner):
    """(now_ms, event) pairs: arm, clamp, reject, escalate+approve, bad input, trip..."""
    ok = Telemetry({"estop": False, "guard": True})
    s = [(0, ok), (1, signer.sign(codes.OP_RESET)), (2, signer.sign(codes.OP_ARM))]
    t, seq = 2, 0
    for k in range(6):  # engage the link
        t += 10
        seq += 1
        s.append((t, Command(seq, {"axis": 10 * k, "tool": 5 * k})))
    weird = [
        {"axis": 2000},                      # beyond approved: reject
        {"axis": 600},                       # escalate (approved later)
        {"axis": float("nan")},              # NaN
        {"axis": float("inf"), "tool": 1},   # +Inf
        {"axis": True},                      # bool
        {"turbo": 1},                        # unknown channel
        {"axis": 1 << 70},                   # huge int
        {},                                  # empty
        {"axis": 30, "tool": 200},           # tool above max: reject
    ]
    for values in weird:
        t += 10
        seq += 1
        s.append((t, Command(seq, values)))
        if values == {"axis": 600}:
            s.append((t + 1, signer.sign(codes.OP_APPROVE, seq)))
    s.append((t + 5, Operator(codes.OP_ARM, 0, 99, b"\x00" * 32)))  # forged
    s.append((t + 6, Telemetry({"estop": False, "guard": True})))
    s.append((t + 7, Command(seq, {"axis": 1})))  # repeated seq
    s.append((t + 8, Fault(3)))
    for k in range(1, 12):
        s.append((t + 8 + 20 * k, TICK))  # SS1 ramp, link stages
        s.append((t + 8 + 20 * k, Telemetry({"estop": False, "guard": True})))
    t += 300
    s += [(t, Fault(3, False)), (t + 1, Telemetry({"estop": False, "guard": True})),
          (t + 2, signer.sign(codes.OP_RESET)), (t + 3, signer.sign(codes.OP_MODE, 1)),
          (t + 4, signer.sign(codes.OP_ARM))]
    t += 4
    for k in range(150):  # a long steady run: the ring wraps (GAP records)
        t += 10
        seq += 1
        if k % 10 == 0:
            s.append((t, Telemetry({"estop": False, "guard": True})))
        s.append((t, Command(seq, {"axis": (k % 40) - 20, "tool": 10})))
    s.append((t + 5, Telemetry({"estop": False, "guard": False})))  # interlock trip
    s.append((t + 6, Telemetry({"estop": True, "guard": False})))  # e-stop input
    s.append((t + 7, signer.sign(codes.OP_RESET)))  # refused: e-stop pressed
    s.append((t + 8, Session("planner-2")))  # a restarted planner: seq from 1 again
    s.append((t + 9, Command(1, {"axis": 0})))
    return s


class _CapturingRing(RingLog):
    """Keeps every appended payload, including those wrap-around later overwrites."""

    def __init__(self, bd):
        super().__init__(bd)
        self.appended = []

    def append(self, payload):
        seq = super().append(payload)
        self.appended.append((seq, bytes(payload)))
        return seq


def run():
    compiled = compile_file(GOLDEN / "envelope.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    ring = _CapturingRing(RamBlockDevice(BLOCK_SIZE, BLOCK_COUNT))
    ring.format()
    lineage = Lineage(ring, env, KEY, checkpoint_every=16)
    gov = Governor(env, KEY)
    lineage.boot(gov, 0, boot_count=3, reset_reason=1, fw_version="golden",
                 envelope_blob=compiled.blob)
    now = 0
    for now, event in script(OperatorSigner(KEY, env.device_id)):
        lineage.record(event, now, gov.handle(event, now), gov)
    lineage.checkpoint(gov, now)
    return ring, compiled


def main() -> None:
    from edgegov.host.lineage_read import decode_dump
    from edgegov.host.lineage_store import read_dump

    ring, _ = run()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / "lineage.img").write_bytes(ring.image())
    dump = read_dump(GOLDEN / "lineage.img")
    with open(GOLDEN / "lineage.jsonl", "w") as f:
        for row in decode_dump(dump):
            f.write(json.dumps(row, sort_keys=True) + "\n")
    import cbor2

    records = [{"seq": seq, "hex": p.hex(), "value": _jsonable(cbor2.loads(p))}
               for seq, p in ring.appended]
    (GOLDEN / "records.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"{len(records)} records, image {len(ring.image())} bytes -> {GOLDEN}")


def _jsonable(v):
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


if __name__ == "__main__":
    main()
