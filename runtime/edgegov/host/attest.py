"""Head attestations: what a sealed pull says the lineage ended with, signed by the device.

A pull (MQTT, serial) and an orderly stop first *seal* the ring: a CHECKPOINT that is its
last record (``Lineage.seal``). The attestation names it and is MACed with the device key:

    {"device": id, "head_seq": S, "chain_head": hex, "counter": n, "mac": hex}

``chain_head`` = SHA-256(head field of checkpoint S || u32le(S) || payload of S): the
running hash chain just after the seal, so it covers the seal's own payload and, through
its ``head``, every record of the chain before it. ``mac`` = HMAC-SHA256(device key,
``edgegov.core.lineage.attestation_message``). ``counter`` is the puller's freshness value
(echoed, so an old attestation cannot answer a new pull). ``check`` tells whether a dump
still holds the attested head, unchanged, with an intact chain up to it: a dump cut or
shortened after the pull fails. Byte-level rules: docs/lineage-format.md, Head attestation.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from pathlib import Path

from edgegov.core.lineage import attestation_mac, sealed_head
from edgegov.core.record import K_BOOT, K_CHECKPOINT, RecordError, decode
from edgegov.core.ring import LineageError, detect_block_size, scan_image
from edgegov.core.verify import verify

SUFFIX = ".att.json"
FIELDS = ("device", "head_seq", "chain_head", "counter", "mac")
_U32, _U64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


class AttestationError(ValueError):
    """An attestation file that cannot be read or has the wrong shape."""


def path_for(dump_path: str | os.PathLike) -> Path:
    """Where ``edgegov lineage pull`` writes the attestation of DUMP: ``DUMP.att.json``."""
    return Path(os.fspath(dump_path) + SUFFIX)


def own_counter() -> int:
    """A counter when nobody asked (orderly stop): microseconds of wall time."""
    return time.time_ns() // 1000


def sign(key: bytes | None, device: str, head_seq: int, chain_head: bytes, counter: int) -> dict:
    """The attestation document (``mac`` None without a key)."""
    mac = attestation_mac(key, device, head_seq, chain_head, counter) if key else None
    return {"device": device, "head_seq": head_seq, "chain_head": bytes(chain_head).hex(),
            "counter": counter, "mac": mac.hex() if mac is not None else None}


def seal(lineage, gov, now_ms: int, device: str, counter: int | None = None) -> dict | None:
    """Seal ``lineage`` (a checkpoint as its last record) and attest it; None when the
    checkpoint could not be appended. The caller makes it durable (sync/flush)."""
    seq, head = lineage.seal(gov, now_ms)
    if seq < 0:
        return None
    counter = own_counter() if counter is None else counter
    return sign(lineage.key, device, seq, head, counter & _U64)


def write(path: str | os.PathLike, attestation: dict) -> None:
    Path(path).write_text(json.dumps(attestation, indent=1) + "\n")


def load(path: str | os.PathLike) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as err:
        raise AttestationError(f"{path}: cannot read: {err.strerror}") from None
    except ValueError:
        raise AttestationError(f"{path}: not JSON") from None
    problem = shape_problem(doc)
    if problem:
        raise AttestationError(f"{path}: {problem}")
    return doc


def shape_problem(doc) -> str | None:
    """Why ``doc`` is not an attestation, or None."""
    if not isinstance(doc, dict) or any(k not in doc for k in FIELDS):
        return "not an attestation (needs " + ", ".join(FIELDS) + ")"
    if not isinstance(doc["device"], str):
        return "device must be text"
    for k, top in (("head_seq", _U32), ("counter", _U64)):
        v = doc[k]
        if type(v) is not int or not 0 <= v <= top:
            return f"{k} must be an unsigned integer"
    if not _hex32(doc["chain_head"]) or not (doc["mac"] is None or _hex32(doc["mac"])):
        return "chain_head and mac must be 64 hex digits"
    return None


def _hex32(v) -> bool:
    try:
        return isinstance(v, str) and len(bytes.fromhex(v)) == 32
    except ValueError:
        return False


def check(image: bytes, attestation: dict, key: bytes | None,
          scanned=None) -> tuple[bool, str]:
    """Does ``image`` hold the attested head, unchanged, with an intact chain up to it?
    With ``key`` the attestation's MAC is checked too (without, it is said so).
    ``scanned``: the image's scan already made (anything with ``records`` and
    ``problems``, e.g. a ``lineage_store.Dump``), so a large dump is not scanned twice."""
    problem = shape_problem(attestation)
    if problem:
        return False, f"attestation: {problem}"
    a = attestation
    seq, head = a["head_seq"], bytes.fromhex(a["chain_head"])
    if key is not None:
        want = attestation_mac(key, a["device"], seq, head, a["counter"])
        if a["mac"] is None or not hmac.compare_digest(want.hex(), a["mac"]):
            return False, "attestation MAC does not match the device key (forged or altered)"
    try:
        rep = scanned or scan_image(image, detect_block_size(image))
    except LineageError as err:
        return False, f"attestation: dump is not a readable lineage: {err}"
    records = rep.records
    index = next((i for i, (s, _) in enumerate(records) if s == seq), None)
    if index is None:
        return False, (f"attested head seq {seq} is not in the dump: cut or shortened after "
                       "the pull")
    ok, why = _head_matches(records, index, head, a["device"])
    if not ok:
        return False, why
    chain = verify(records[: index + 1], [p for p in rep.problems if p.seq == -1 or
                                          _before(p.seq, seq)], key)
    if not chain.ok:
        return False, f"hash chain broken before the attested head: {chain.first_bad}"
    return True, _ok_text(seq, len(records) - index - 1, key)


def _head_matches(records, index, head, device) -> tuple[bool, str]:
    seq, payload = records[index]
    try:
        rec = decode(payload)
    except RecordError as err:
        return False, f"attested head seq {seq} does not decode: {err}"
    if rec[0] != K_CHECKPOINT or sealed_head(rec[3], seq, payload) != head:
        return False, (f"record seq {seq} is not the attested sealing checkpoint (changed or "
                       "replaced after the pull)")
    boot = _last_boot(records, index)
    if boot is not None and boot[6] != device:
        return False, f"attestation is for device {device!r}, the dump for {boot[6]!r}"
    return True, ""


def _last_boot(records, index):
    for _, payload in reversed(records[:index]):
        if len(payload) > 1 and payload[1] == K_BOOT:
            try:
                return decode(payload)
            except RecordError:
                return None
    return None


def _before(a: int, b: int) -> bool:
    return a != b and ((b - a) & _U32) < 0x80000000


def _ok_text(seq: int, after: int, key) -> str:
    text = f"attested head seq {seq} present and unchanged, chain intact up to it"
    text += "; MAC checked" if key is not None else "; MAC NOT checked (no --key)"
    if after:
        text += (f"; {after} later record(s) were written after the seal and are not "
                 "attested")
    return text


__all__ = ["check", "seal", "sign", "load", "write", "path_for", "shape_problem",
           "AttestationError", "own_counter", "SUFFIX"]
