"""The gateway's governing loop, without the network: events in, effects out, at ``now_ms``.

``GovernorService`` owns one governor, its lineage and its effect backends. Everything it
does takes ``now_ms`` from the caller (the asyncio runner reads the clock shim; tests script
time), and everything it says goes through ``post(topic, payload, qos, retain)`` — the MQTT
link queues it, tests collect it.

- ``submit(inbound, now_ms)``: an inbound event is decided at once (proposal → decision
  latency is one governor call), its effects performed (outputs, e-stop level), then it is
  recorded in the lineage and its decision/events published.
- ``decide(inbound, now_ms)`` + ``settle()``: the same in two steps, for an adapter that
  forwards the outputs before the bookkeeping (the Modbus gateway writes the drive, then
  settles). The record is still appended before anything else is decided: every entry
  point (``submit``, ``decide``, ``cycle``, ``stop``, a lineage pull) settles first, so
  the lineage order is the decision order.
- ``cycle(now_ms)``: once per control period: e-stop readback faults, the TICK (link stages,
  expiries, ramps), effects, one group commit of the lineage, and — only if every decision
  since the last cycle allowed it, every effect was performed and every lineage append
  succeeded — the watchdog kick.
- ``stop(now_ms)``: seal (a final checkpoint, attested beside the lineage file), flush,
  retained ``offline``, magic close.
- ``pull(request)``: seal, then the whole image in chunks with the seal's head attestation.

Declared lineage loss window: a record is appended before its decision is published; each
period starts one ``fdatasync`` of the file on a worker thread (the loop never waits for
the disk), so a power cut loses at most the records since the last completed commit -- the
last two periods while the disk keeps up -- and a crash of the process alone loses none. A
commit still running after ``COMMIT_LAG_LIMIT`` periods withholds the watchdog kick.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os

from .. import __version__
from ..core import codes
from ..core.events import TICK, Fault, Session
from ..host import attest
from ..host.estop import F_ESTOP_READBACK, F_LINEAGE, F_OUTPUT, NoEstopOutput
from .messages import Vocabulary
from .topics import Topics
from .wire import Inbound, dumps

log = logging.getLogger("edgegov.service")

LINEAGE_CHUNK_BYTES = 48 * 1024
COMMIT_LAG_LIMIT = 5  # periods a background lineage commit may run before the kick stops
# Reasons that mean "this input was invalid or unauthenticated" (published as ``rejected``).
_INPUT_REFUSALS = frozenset((
    codes.R_NAN, codes.R_INF, codes.R_WRONG_TYPE, codes.R_UNKNOWN_CHANNEL, codes.R_STALE_SEQ,
    codes.R_AUTH_FAILED, codes.R_REPLAYED, codes.R_EMPTY, codes.R_UNKNOWN_INPUT,
    codes.R_OUT_OF_RANGE))


class GovernorService:
    """One governed device: decide, record, perform, publish, feed the watchdog."""

    def __init__(self, gov, topics: Topics, post, lineage=None, estop=None, watchdogs=(),
                 envelope_hash: str = "", boot_count: int = 1, outputs=None) -> None:
        self.gov = gov
        self.topics = topics
        self.post = post
        self.lineage = lineage
        self.estop = estop or NoEstopOutput()
        self.watchdogs = list(watchdogs)
        # Optional extra sink: outputs(scaled, now_ms) with the governed outputs, scaled integers
        # in channel order (the governor's own list: copy it to keep it).
        self.outputs = outputs
        self.vocab = Vocabulary(gov.env)
        self.envelope_hash = envelope_hash
        self.boot_count = boot_count
        self.healthy = True  # since the last cycle
        self.ready = False
        self.kicks = 0
        self.cycles = 0
        self.decisions = 0
        self.lineage_errors = 0
        self._pending_faults: list[Fault] = []
        self._state_key = None
        self._estop_level = True
        self._unsettled = None  # (event, now_ms, note): decided, not yet recorded/published
        self.stopped = False  # after an orderly stop: inputs are dropped (nowhere to record)
        self.wall = None  # host.wallsource.WallRecorder: wall time into the lineage (data only)
        self.attestation_path = None  # where an orderly stop writes its head attestation
        self.state_extra = None  # () -> dict of status fields for the state document

    # ------------------------------------------------------------ lifecycle

    def boot(self, now_ms: int, envelope_blob: bytes | None = None,
             reset_reason: int = 0) -> None:
        """Start the governor (tripped, outputs safe), record BOOT, drive the safe outputs."""
        if self.lineage is not None:
            if self.wall is not None:
                self.wall.boot(now_ms)
            d = self.lineage.boot(self.gov, now_ms, boot_count=self.boot_count,
                                  reset_reason=reset_reason, fw_version=__version__,
                                  envelope_blob=envelope_blob)
        else:
            d = self.gov.start(now_ms)
        self._effects(d, now_ms, force=True)
        self._publish_output(d, now_ms, force=True)
        self._flush()
        self.publish_state(force=True)

    def stop(self, now_ms: int) -> None:
        """Orderly stop: checkpoint, flush, close; retained offline; disarm the watchdogs."""
        self.settle()
        self.stopped = True
        if self.lineage is not None:
            try:
                att = attest.seal(self.lineage, self.gov, max(now_ms, self.gov.last_now),
                                  self.topics.device_id)
                self.lineage.sync()
                self.lineage.device.close()
                if att is not None and self.attestation_path is not None:
                    attest.write(self.attestation_path, att)
            except Exception:  # noqa: BLE001 - stopping anyway; the loss window applies
                log.exception("lineage close failed")
        self.post(self.topics.state, dumps(self._state_doc("offline", reason="stopped")), 1, True)
        for wd in self.watchdogs:
            wd.stop(orderly=True)

    # ------------------------------------------------------------ inputs

    def submit(self, inbound: Inbound, now_ms: int, reply=None) -> dict | None:
        """Decide one inbound event now. Returns the published decision (commands).
        A command naming a planner session other than the governor's is preceded by that
        ``Session`` input (decided, recorded and published on its own)."""
        if self.stopped:  # messages still in flight after an orderly stop: not decided
            log.debug("input after the orderly stop dropped")
            return None
        event = inbound.event
        session = event.session if event.kind == codes.EV_COMMAND else None
        if session is not None and session != self.gov.session:
            self.decide(Inbound(Session(session)), now_ms)
        d = self.decide(inbound, now_ms)
        msg = self.settle()
        if reply is not None:
            reply(msg or self.vocab.ack(d, inbound.event.kind, inbound.note))
        return msg

    def decide(self, inbound: Inbound, now_ms: int):
        """Decide one inbound event and perform its effects (outputs and e-stop reach the
        actuators with the least delay); the record and the publishing wait for
        ``settle()``, which every later entry point calls first. Returns the decision
        (the governor's object: valid until the next event is decided)."""
        self.settle()
        event = inbound.event
        d = self.gov.handle(event, now_ms)
        self._unsettled = (event, now_ms, inbound.note)
        self._effects(d, now_ms)
        return d

    def settle(self) -> dict | None:
        """Record and publish the last decided event, if not yet done. Returns the
        published decision (commands)."""
        if self._unsettled is None:
            return None
        event, now_ms, note = self._unsettled
        self._unsettled = None
        d = self.gov.d
        self._record(event, now_ms, d)
        self._publish_output(d, now_ms)
        msg = self._publish(event, d, note)
        self.publish_state()
        return msg

    def estop_readback(self, payload: bytes, now_ms: int) -> None:
        self.estop.readback(payload, now_ms)

    # ------------------------------------------------------------ the period

    def cycle(self, now_ms: int) -> bool:
        """One control period; returns True when the watchdog was kicked."""
        self.settle()
        change = self.estop.check(now_ms)
        if change is not None:
            self._pending_faults.append(Fault(F_ESTOP_READBACK, change))
        while self._pending_faults:
            self.submit(Inbound(self._pending_faults.pop(0)), now_ms)
        self._wall_cycle(now_ms)
        d = self.gov.handle(TICK, now_ms)
        self._effects(d, now_ms)
        self._record(TICK, now_ms, d)
        self._publish_output(d, now_ms)
        self._publish(TICK, d, None)
        self.publish_state()
        self._flush(soon=True)
        self.cycles += 1
        kicked = self._feed() if d.kick else False  # withheld while an internal fault is latched
        self.healthy = True
        return kicked

    def _feed(self) -> bool:
        if not self.healthy:
            return False
        try:
            for wd in self.watchdogs:
                if not self.ready:
                    wd.ready()
                wd.kick()
        except OSError:
            log.exception("watchdog kick failed")
            return False
        self.ready = True
        self.kicks += 1
        return True

    # ------------------------------------------------------------ effects

    def _record(self, event, now_ms: int, d) -> None:
        if not d.kick:
            self.healthy = False
        if self.lineage is None or not d.record:
            return
        try:
            self.lineage.record(event, now_ms, d, self.gov)
        except Exception:  # noqa: BLE001 - cannot record: fail closed
            self._lineage_failed("append")

    def _wall_cycle(self, now_ms: int) -> None:
        if self.wall is not None and self.lineage is not None:
            try:
                self.wall.cycle(now_ms)
            except Exception:  # noqa: BLE001 - a TIME record not written: as any append
                self._lineage_failed("time record")

    def _flush(self, soon: bool = False) -> None:
        """Commit the lineage: now, or (``soon``: the period's commit) on the device's worker
        thread, withholding the kick while one has been running too long."""
        if self.lineage is None:
            return
        dev = self.lineage.device
        try:
            if soon:
                dev.commit_soon()
            else:
                dev.flush()
        except OSError:
            self._lineage_failed("commit" if soon else "flush")
            return
        if dev.lag > COMMIT_LAG_LIMIT:
            self.healthy = False
            if dev.lag == COMMIT_LAG_LIMIT + 1:
                log.warning("lineage commit running for %d periods: watchdog not fed", dev.lag)

    def _lineage_failed(self, what: str) -> None:
        self.healthy = False
        self.lineage_errors += 1
        log.exception("lineage %s failed", what)
        if self.lineage_errors == 1:
            self._pending_faults.append(Fault(F_LINEAGE, True))

    def _effects(self, d, now_ms: int, force: bool = False) -> None:
        try:
            level = bool(d.estop)
            self.estop.drive(level, now_ms)
            self._estop_level = level
            if (d.changed or force) and self.outputs is not None:
                self.outputs(d.output, now_ms)
        except Exception:  # noqa: BLE001 - an effect not performed is a fault
            self.healthy = False
            log.exception("effect failed")
            self._pending_faults.append(Fault(F_OUTPUT, True))

    def _publish_output(self, d, now_ms: int, force: bool = False) -> None:
        if d.changed or force:
            self.post(self.topics.output, dumps({
                "t_ms": now_ms, "values": self.vocab.outputs(d.output),
                "estop": bool(d.estop)}), 0, True)

    # ------------------------------------------------------------ publishing

    def _publish(self, event, d, note) -> dict | None:
        kind = event.kind
        msg = None
        if kind == codes.EV_COMMAND:
            self.decisions += 1
            msg = self.vocab.decision(d, event.seq, note)
            self.post(self.topics.decision, dumps(msg), 0, False)
        if note or (d.verdict == codes.REJECT and d.reason in _INPUT_REFUSALS):
            self.post(self.topics.event, dumps(self.vocab.refusal(d, kind, note)), 1, False)
        for code, arg in d.events():
            self.post(self.topics.event, dumps(self.vocab.event(d, kind, code, arg)), 1, False)
        return msg

    def _state_doc(self, status: str, **extra) -> dict:
        status_fields = self.state_extra() if self.state_extra is not None else {}
        return self.vocab.state(self.gov, status, {
            "estop": self._estop_level, "envelope": self.envelope_hash,
            "boot": self.boot_count, "device": self.topics.device_id, **status_fields,
            **extra})

    def state_payload(self) -> bytes:
        return dumps(self._state_doc("online"))

    def publish_state(self, force: bool = False) -> None:
        gov = self.gov
        key = (gov.state, gov.mode, gov.link, self._estop_level, gov.causes, gov.op_counter)
        if key != self._state_key or force:
            self._state_key = key
            self.post(self.topics.state, dumps(self._state_doc("online")), 1, True)

    # ------------------------------------------------------------ lineage pull

    def lineage_image(self, now_ms: int | None = None, counter: int | None = None):
        """A consistent copy of the lineage file, sealed first (a checkpoint as its last
        record, flushed), and the head attestation of that seal (None if it failed)."""
        if self.lineage is None:
            return b"", None
        self.settle()
        now = self.gov.last_now if now_ms is None else max(now_ms, self.gov.last_now)
        att = None
        try:
            att = attest.seal(self.lineage, self.gov, now, self.topics.device_id, counter)
        except Exception:  # noqa: BLE001 - cannot record: fail closed, still answer
            self._lineage_failed("seal")
        self._flush()
        dev = self.lineage.device
        size = dev.block_size * dev.block_count
        return os.pread(dev.fd, size, 0), att

    def pull(self, request: bytes, now_ms: int | None = None) -> list[tuple[str, bytes]]:
        """Answer a lineage pull: seal, then the chunks to publish, each carrying the
        image's size and SHA-256 and the head attestation of the seal."""
        rid, counter = _request_id(request)
        if rid is None:
            return []
        image, att = self.lineage_image(now_ms, counter)
        topic = self.topics.lineage_data(rid)
        digest = hashlib.sha256(image).hexdigest()
        count = max(1, -(-len(image) // LINEAGE_CHUNK_BYTES))
        out = []
        for i in range(count):
            chunk = image[i * LINEAGE_CHUNK_BYTES:(i + 1) * LINEAGE_CHUNK_BYTES]
            out.append((topic, dumps({
                "id": rid, "index": i, "count": count, "offset": i * LINEAGE_CHUNK_BYTES,
                "size": len(image), "sha256": digest, "block_size": self._block_size(),
                "attestation": att, "data": base64.b64encode(chunk).decode("ascii")})))
        return out

    def _block_size(self) -> int:
        return self.lineage.device.block_size if self.lineage is not None else 0


def _request_id(request: bytes) -> tuple[str | None, int | None]:
    """(request id, the puller's attestation counter or None) of a pull request."""
    try:
        doc = json.loads(request)
    except ValueError:
        return None, None
    rid = doc.get("id") if isinstance(doc, dict) else None
    if not isinstance(rid, str) or not 0 < len(rid) <= 64:
        return None, None
    if any(c in rid for c in "+#/\x00"):
        return None, None
    counter = doc.get("counter")
    valid = type(counter) is int and 0 <= counter < 1 << 64
    return rid, counter if valid else None


__all__ = ["GovernorService", "LINEAGE_CHUNK_BYTES", "COMMIT_LAG_LIMIT"]
