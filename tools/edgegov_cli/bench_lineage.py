"""``edgegov bench lineage``: record size and speed against peers, measured in one run.

The records come from the governor deciding the eight-axis stream of ``bench core`` (about
93 % allowed, 5 % clamped, 2 % rejected, 8 channels, telemetry every fifth period). Peers:

* size and encoding: the same fields (kind, time, sequence, proposed values, verdict,
  reason, rule, margin, outputs, events) as a plain array through ``cbor2.dumps``. Our
  encode runs the encoder as imported (the C accelerator ``edgegov._recenc`` where it is
  built and ``EDGEGOV_PURE_RECORDS`` is unset, ``"encoder": "c"``, else ``"python"``); the
  pure-Python encoder is timed in the same run too (``encode_py_us``);
* durable append: SQLite in WAL mode with ``synchronous=FULL``, one commit per record,
  against the ring on a preallocated file with ``fdatasync`` per record, same payloads,
  same directory;
* recovery scan: ``RingLog.recover(quick=True)`` (what a device does at boot) over a full
  multi-megabyte lineage file, and the full scan that checks every frame (``verify``);
* replay: re-deriving every recorded decision, against the real time the records span;
* what-if: ``run_whatif`` on the lineage ``edgegov demo --simulated-time`` writes (its 1 MB
  ring, 20 s of the scenario) with the README's strict envelope (the spindle trips above
  its maximum), reading and checking the image included, against the 20 s it spans (best
  of three runs).
"""

from __future__ import annotations

import binascii
import os
import sqlite3
import struct
import tempfile
import time
from pathlib import Path

import cbor2
from edgegov.config.compile import compile_file
from edgegov.core import record
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.events import Command
from edgegov.core.lineage import Lineage
from edgegov.core.record import Encoder
from edgegov.core.replay import Replayer, envelopes_in
from edgegov.core.ring import RingLog
from edgegov.host.filebd import FileBlockDevice
from edgegov.host.lineage_store import load_envelope

from .bench_core import ENVELOPE, KEY, PERIOD_MS, _armed_governor, _telemetry, make_stream


def _run_governor(env, stream):
    """Run the governor over ``stream`` with a lineage from boot on; return the ring and
    (command, now_ms, decision snapshot) for every command."""
    ring = RingLog(RamBlockDevice(4096, 4096))
    ring.format()
    lineage = Lineage(ring, env, KEY)
    gov, now, seq = _armed_governor(env, stream[0], lineage, compile_file(ENVELOPE).blob)
    tel = _telemetry()
    calls = []
    for k, values in enumerate(stream):
        now += PERIOD_MS
        if k % 5 == 0:
            d = gov.handle(tel, now)
            lineage.record(tel, now, d, gov)
        seq += 1
        cmd = Command(seq, values)
        d = gov.handle(cmd, now)
        calls.append((cmd, now, d.snapshot()))
        lineage.record(cmd, now, d, gov)
    return gov, ring, lineage, calls


def _same_fields(cmd, now, snap):
    """The decision's fields as a plain array, the way one would log them with cbor2."""
    fields = [2, now, cmd.seq, [cmd.values.get(n) for n in sorted(cmd.values)],
              snap["verdict"], snap["reason"], snap["rule"], snap["margin"], snap["output"]]
    if snap["events"]:
        fields.append([list(e) for e in snap["events"]])
    return fields


def sizes(ring, calls):
    ours = [len(p) for _, p in ring.read_all() if len(p) > 1 and p[1] == 2]
    ours = ours[max(0, len(ours) - len(calls)):]  # the stream's; first the link engages
    theirs = [len(cbor2.dumps(_same_fields(*c))) for c in calls]
    return ours, theirs


def encoder_name() -> str:
    """Which encoder ``Encoder.decision`` runs: the C accelerator or the Python code."""
    return "c" if record._c_decision is not None else "python"


def encode_times(env, calls, rounds=3):
    """Per record: our encode + frame vs cbor2.dumps of the same fields (best of rounds).

    Returns (ours, cbor2, pure Python) in microseconds: ``ours`` with the encoder as
    imported, ``pure Python`` with the C accelerator switched off for the timing; the
    three alternate within each round."""
    from edgegov.core.decision import Decision

    head = bytearray(6)
    decisions = []
    for cmd, now, snap in calls:
        d = Decision(env.n)
        d.verdict, d.reason = snap["verdict"], snap["reason"]
        d.rule, d.margin = snap["rule"], snap["margin"]
        d.output = snap["output"]
        for i, p in enumerate(snap["proposed"]):
            d.proposed[i] = p
        for code, arg in snap["events"]:
            d.event(code, arg)
        decisions.append((cmd, now, d))
    fields = [_same_fields(*c) for c in calls]
    clock = time.perf_counter_ns

    def ours():
        enc = Encoder(env)
        t0 = clock()
        for cmd, now, d in decisions:
            enc.decision(cmd, now, d)
            payload = enc.payload()
            struct.pack_into("<HI", head, 0, enc.n, 7)
            binascii.crc32(payload, binascii.crc32(head))
        return (clock() - t0) / len(decisions) / 1000

    def pure():
        saved = record._c_decision
        record._c_decision = None
        try:
            return ours()
        finally:
            record._c_decision = saved

    def theirs():
        t0 = clock()
        for f in fields:
            cbor2.dumps(f)
        return (clock() - t0) / len(fields) / 1000

    best = [float("inf")] * 3
    for _ in range(rounds):
        for i, timed in enumerate((ours, theirs, pure)):
            best[i] = min(best[i], timed())
    return best[0], best[1], best[2]


def durable_append(payloads, directory, count=300):
    """Microseconds per durable record: ring on a file (fdatasync) vs SQLite WAL FULL."""
    payloads = payloads[:count]
    path = Path(directory) / "bench.lineage"
    bd = FileBlockDevice(path, 4096, 256, durable=True)
    ring = RingLog(bd)
    ring.format()
    t0 = time.perf_counter()
    for p in payloads:
        ring.append(p)
        ring.sync()
    ours = (time.perf_counter() - t0) / len(payloads) * 1e6
    bd.close()
    db = sqlite3.connect(Path(directory) / "bench.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE lineage (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    t0 = time.perf_counter()
    for i, p in enumerate(payloads):
        db.execute("BEGIN")
        db.execute("INSERT INTO lineage VALUES (?, ?)", (i, p))
        db.execute("COMMIT")
    theirs = (time.perf_counter() - t0) / len(payloads) * 1e6
    db.close()
    return ours, theirs


def scan_ms_per_mb(payloads, directory, megabytes=8):
    """Fill a lineage file of ``megabytes`` and time ``recover()`` over it."""
    path = Path(directory) / "scan.lineage"
    blocks = megabytes * 256
    bd = FileBlockDevice(path, 4096, blocks, durable=False)
    ring = RingLog(bd)
    ring.format()
    i = 0
    while ring.next_seq < blocks * 4096 // (sum(len(p) for p in payloads[:100]) // 100 + 10):
        ring.append(payloads[i % len(payloads)])
        i += 1
    bd.close()
    size_mb = blocks * 4096 / 1e6
    figures = []
    for quick in (True, False):
        bd = FileBlockDevice(path, 4096, blocks, durable=False)
        t0 = time.perf_counter()
        found = RingLog(bd).recover(quick=quick)
        figures.append((time.perf_counter() - t0) * 1000 / size_mb)
        bd.close()
    return figures[0], figures[1], found.count


def replay_speedup(ring, span_ms):
    records = ring.read_all()
    envs = envelopes_in(records, load_envelope)
    t0 = time.perf_counter()
    report = Replayer(envs).run(records)
    elapsed = time.perf_counter() - t0
    if not report.identical:
        raise RuntimeError("bench replay diverged: the figures would be meaningless")
    return span_ms / 1000 / elapsed, report.compared


def whatif_speedup(directory, runs: int = 3):
    """(times real time by the clock, by CPU time, decisions, differing) of a what-if on
    the demo's lineage. CPU time: what the what-if itself costs on a shared machine."""
    import re

    from edgegov.config.compile import compile_text
    from edgegov.demo import EXAMPLE, default_envelope, run_scenario
    from edgegov.host.whatif import run_whatif

    path = Path(directory) / "demo.lineage"
    seconds = 20
    run_scenario(default_envelope(), seconds=seconds, lineage_path=path)
    text = re.sub(r'(?m)^on_breach = "escalate".*$', 'on_breach = "trip"', EXAMPLE.read_text())
    strict = compile_text(re.sub(r"(?m)^approved_max.*\n", "", text), "strict.toml")
    image = path.read_bytes()
    best = cpu = None
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_whatif(image, strict)
        elapsed, used = time.perf_counter() - t0, time.process_time() - c0
        best = elapsed if best is None else min(best, elapsed)
        cpu = used if cpu is None else min(cpu, used)
    if result.identical:
        raise RuntimeError("bench what-if found no difference: the figure would be meaningless")
    return seconds / best, seconds / cpu, result.decisions, result.differing


def run(decisions: int = 20_000, echo=print) -> dict:
    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    stream = make_stream(env, decisions)
    _gov, ring, _lineage, calls = _run_governor(env, stream)
    ours, theirs = sizes(ring, calls)
    verdicts = {}
    for _, _, snap in calls:
        verdicts[snap["verdict"]] = verdicts.get(snap["verdict"], 0) + 1
    enc_us, cbor2_us, py_us = encode_times(env, calls[:5000])
    payloads = [p for _, p in ring.read_all() if len(p) > 1 and p[1] == 2]
    with tempfile.TemporaryDirectory(dir=os.environ.get("EDGEGOV_BENCH_DIR")) as tmp:
        append_us, sqlite_us = durable_append(payloads, tmp)
        scan, full_scan, scanned = scan_ms_per_mb(payloads, tmp)
        whatif, whatif_cpu, whatif_decisions, whatif_differing = whatif_speedup(tmp)
    speedup, replayed = replay_speedup(ring, decisions * PERIOD_MS)
    mean_ours = sum(ours) / len(ours)
    mean_theirs = sum(theirs) / len(theirs)
    worst = max(a / b for a, b in zip(ours, theirs, strict=True))
    figures = {
        "records": len(ours),
        "verdict_mix": {str(k): round(v / len(calls), 3) for k, v in sorted(verdicts.items())},
        "bytes_mean": round(mean_ours, 2),
        "bytes_max": max(ours),
        "cbor2_bytes": round(mean_theirs, 2),
        "ratio_bytes_mean": round(mean_ours / mean_theirs, 3),
        "ratio_bytes_worst": round(worst, 3),
        "encode_us": round(enc_us, 3),
        "cbor2_encode_us": round(cbor2_us, 3),
        "ratio_encode": round(enc_us / cbor2_us, 3),
        "encoder": encoder_name(),
        "encode_py_us": round(py_us, 3),
        "ratio_encode_py": round(py_us / cbor2_us, 3),
        "append_durable_us": round(append_us, 1),
        "sqlite_full_us": round(sqlite_us, 1),
        "ratio_append": round(append_us / sqlite_us, 3),
        "scan_ms_per_mb": round(scan, 2),
        "full_scan_ms_per_mb": round(full_scan, 2),
        "scan_records": scanned,
        "replay_speedup": round(speedup, 1),
        "replay_records": replayed,
        "whatif_speedup": round(whatif, 1),
        "whatif_cpu_speedup": round(whatif_cpu, 1),
        "whatif_decisions": whatif_decisions,
        "whatif_differing": whatif_differing,
    }
    _print(figures, echo)
    return figures


def _print(f: dict, echo) -> None:
    echo(f"edgegov bench lineage: {f['records']} decision records, mix {f['verdict_mix']} "
         "(0 allow, 1 clamp, 2 reject)")
    echo(f"  size      mean {f['bytes_mean']:7.2f} B  max {f['bytes_max']} B   cbor2 array "
         f"{f['cbor2_bytes']:.2f} B   mean {f['ratio_bytes_mean']:.2f}x (goal <= 0.65), "
         f"worst {f['ratio_bytes_worst']:.2f}x (goal <= 1.05)")
    echo(f"  encode    {f['encode_us']:7.2f} us + frame   cbor2.dumps {f['cbor2_encode_us']:.2f} us"
         f"   {f['ratio_encode']:.2f}x (goal <= 0.6; {f['encoder']} encoder)")
    echo(f"            {f['encode_py_us']:7.2f} us + frame with the pure-Python encoder   "
         f"{f['ratio_encode_py']:.2f}x")
    echo(f"  durable   {f['append_durable_us']:9.1f} us/record   sqlite WAL FULL "
         f"{f['sqlite_full_us']:.1f} us   {f['ratio_append']:.2f}x (goal <= 0.65)")
    echo(f"  recovery  {f['scan_ms_per_mb']:7.2f} ms/MB at boot over {f['scan_records']} records "
         f"(goal <= 15); full scan checking every frame {f['full_scan_ms_per_mb']:.2f} ms/MB")
    echo(f"  replay    {f['replay_speedup']:9.1f}x real time for a 100 Hz loop "
         f"({f['replay_records']} records; goal >= 300)")
    echo(f"  what-if   {f['whatif_speedup']:9.1f}x real time on the demo's 1 MB lineage, "
         f"image read and checked; {f['whatif_cpu_speedup']:.1f}x by CPU time "
         f"({f['whatif_decisions']} decisions, "
         f"{f['whatif_differing']} differ; goal >= 300)")
