"""One pulled lineage image → what the archive keeps: verify, replay, incidents, report.

Plain functions, no I/O besides the store (the collector runs them on a worker thread).
An incident is the report's: a trip while the governor was not already tripped; it ends at
an accepted reset or the next boot, and further trips inside it are its ``retrips``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import names
from ..core.replay import Replayer, ReplayError
from ..core.ring import LineageError
from ..core.verify import verify
from ..host.lineage_read import decode_dump
from ..host.lineage_store import read_dump
from ..host.walltime import WallClock
from .store import Store


@dataclass
class Analysis:
    dump_sha256: str
    dump_bytes: int
    records: int
    verify_ok: bool
    macs_checked: bool
    verify_text: str
    replay_ok: bool
    replay_text: str
    incidents: list[dict] = field(default_factory=list)
    report_sha256: str | None = None
    report_error: str | None = None
    envelope: str | None = None
    firmware: str | None = None
    attested: int | None = None  # 1 the head attestation checked out, 0 it did not
    attest_text: str | None = None


class DumpUnreadable(Exception):
    """The pulled image is no readable lineage at all (kept in the store all the same)."""


def analyse(image: bytes, key: bytes | None, store: Store, device: str,
            current_boot: int | None = None, report: bool = True,
            attestation: dict | None = None) -> Analysis:
    """Store the image, verify it (MACs with ``key``; the sealed pull's ``attestation``
    too, when given), replay it, find its incidents and (``report``) build its HTML report
    into the store. A failed attestation fails the verify result."""
    sha = store.put(image)
    path = store.path(sha)
    try:
        dump = read_dump(path)
    except LineageError as err:
        raise DumpUnreadable(f"dump {sha[:16]} is not a readable lineage: {err}") from None
    rep = verify(dump.records, dump.problems, key, dump.offsets, dump.genesis_seq)
    macs = key is not None and rep.keyed_checkpoints > 0
    out = Analysis(sha, len(image), len(dump.records), rep.ok, macs, _verify_text(rep, macs),
                   *_replay(dump, key))
    rows = list(decode_dump(dump))
    out.incidents = incidents_in(rows, device, current_boot)
    if attestation is not None:
        ok, why = _attest(image, attestation, key)
        out.attested, out.attest_text = int(ok), why
        if not ok:
            out.verify_ok = False
            out.verify_text = f"{out.verify_text}; head attestation FAILED: {why}"
    boots = [r for r in rows if r.get("kind") == "boot"]
    if boots:
        out.envelope, out.firmware = boots[-1].get("envelope"), boots[-1].get("firmware")
    if report:
        out.report_sha256, out.report_error = _report(path, key, store)
    return out


def _attest(image: bytes, attestation: dict, key: bytes | None) -> tuple[bool, str]:
    from ..host import attest

    return attest.check(image, attestation, key)


def _verify_text(rep, macs: bool) -> str:
    if not rep.ok:
        bad = rep.first_bad
        return f"FAILED at seq {bad.seq}, offset {bad.offset}: {bad}"
    what = (f"CRC, hash chain and {rep.keyed_checkpoints} checkpoint MACs checked" if macs
            else "CRC and hash chain only; MACs NOT checked")
    return f"OK: {rep.records} records, {rep.checkpoints} checkpoints; {what}"


def _replay(dump, key) -> tuple[bool, str]:
    try:
        report = Replayer(dump.envelopes(), key=key).run(dump.records)
    except (ReplayError, LineageError) as err:
        return False, f"cannot replay: {err}"
    if report.compared == 0:
        return False, "nothing to replay: no BOOT or CHECKPOINT record survives"
    if report.identical:
        return True, f"identical: {report.compared} records re-derived exactly"
    first = report.divergences[0]
    return False, (f"DIVERGES at {len(report.divergences)} of {report.compared} records "
                   f"(first at seq {first.seq})")


def _report(path, key, store: Store) -> tuple[str | None, str | None]:
    from ..report import ReportError
    from ..report.build import build_report

    try:
        html = build_report(path, key=key)
    except ReportError as err:
        return None, str(err)
    return store.put(html.encode("utf-8"), ".html"), None


def incidents_in(rows: list[dict], device: str, current_boot: int | None = None) -> list[dict]:
    """The incidents of decoded records (``decode_dump`` rows), each with its identity
    ``DEVICE:BOOT:T_MS``, cause, rule, retrips and wall time when the dump knows it."""
    clock = WallClock.from_records(rows)
    first_boot = next((r.get("boot_count") for r in rows if r.get("kind") == "boot"), None)
    boot = current_boot if first_boot is None else first_boot - 1
    lists = 0  # WallClock's per-boot anchor lists so far (one more before a first BOOT)
    found: list[dict] = []
    open_ = None
    for row in rows:
        kind = row.get("kind")
        if kind == "boot":
            lists += 1
            boot = row.get("boot_count")
            open_ = None
            continue
        if kind in ("checkpoint", "time") and lists == 0:
            lists = 1
        boot_index = max(lists - 1, 0)
        evs = row.get("events") or []
        if open_ is not None and any(e.get("event") == "reset" for e in evs):
            open_ = None
        for e in evs:
            if e.get("event") != "trip":
                continue
            if open_ is not None:
                open_["retrips"] += 1
                continue
            t = row.get("t_ms")
            code = e.get("arg")
            open_ = {"id": f"{device}:{boot if boot is not None else -1}:{t}",
                     "device": device, "boot": boot if boot is not None else -1,
                     "trip_t_ms": t, "trip_wall_ms": clock.at(boot_index, t),
                     "cause": names.reason(code) if type(code) is int else "?",
                     "cause_code": code if type(code) is int else None,
                     "rule": row.get("rule"), "retrips": 0}
            found.append(open_)
    return found


__all__ = ["Analysis", "DumpUnreadable", "analyse", "incidents_in"]
