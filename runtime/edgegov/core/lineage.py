"""The lineage writer: every recorded decision of a governor, appended to a ``RingLog``.

Per governor call with ``decision.record`` set, one DECISION (commands) or EVENT (anything
else) record. Around them:

- BOOT and ENVELOPE at start, then a CHECKPOINT holding the governor's full state, and
  again every ``checkpoint_every`` records, so a replay can start from any surviving
  checkpoint after the ring wrapped;
- a hash chain: each CHECKPOINT carries ``head = SHA-256(prev_head || (seq, payload)...)``
  over the records since the previous one, and, with a device key, an HMAC of the head,
  so a pulled dump is tamper-evident;
- GAP records when wrap-around overwrote records or the ring had to drop some;
- on a trip, the records from the last checkpoint before it to ``freeze_after`` records
  after it are frozen, so wrap-around cannot overwrite the incident (``None``: never);
- wall time, as data from the host (never read here, never used to decide): ``set_wall``
  gives a (device ms, wall ms) pair; BOOT and every CHECKPOINT carry the wall time it
  implies, and ``time_step`` writes a TIME record when the host's clock stepped.
"""

import hashlib
import struct

from . import auth
from .codes import E_TRIP, EV_COMMAND
from .record import GAP_DROPPED, GAP_HOST, GAP_OVERWRITTEN, K_CHECKPOINT, Encoder, decode

ZERO_HEAD = bytes(32)
CKPT_DOMAIN = b"edgegov-ckpt\x00"
ATT_DOMAIN = b"edgegov-att\x00"


def checkpoint_mac(key, head):
    return auth.hmac_sha256(key, CKPT_DOMAIN + bytes(head))


def attestation_message(device_id, head_seq, chain_head, counter):
    """The bytes a head attestation's MAC covers (docs/lineage-format.md, Head attestation):
    ``"edgegov-att\\0" || u16le(len(device)) || device (UTF-8) || u32le(head_seq) ||
    chain_head (32 bytes) || u64le(counter)``."""
    dev = device_id.encode("utf-8") if isinstance(device_id, str) else bytes(device_id)
    return (ATT_DOMAIN + struct.pack("<H", len(dev)) + dev + struct.pack("<I", head_seq)
            + bytes(chain_head) + struct.pack("<Q", counter))


def attestation_mac(key, device_id, head_seq, chain_head, counter):
    return auth.hmac_sha256(key, attestation_message(device_id, head_seq, chain_head, counter))


def sealed_head(checkpoint_head, seq, payload):
    """The chain head after a sealing checkpoint: SHA-256(its head || u32le(seq) || payload)."""
    h = hashlib.sha256(bytes(checkpoint_head))
    chain_update(h, seq, payload)
    return h.digest()


def chain_update(h, seq, payload):
    h.update(struct.pack("<I", seq))
    h.update(payload)


class Lineage:
    """Writes one governor's lineage into ``ring`` (already recovered or formatted)."""

    def __init__(self, ring, env, key=None, checkpoint_every=256, freeze_after=64):
        self.ring = ring
        self.env = env
        self.key = key
        self.enc = Encoder(env)
        self.checkpoint_every = checkpoint_every
        self.freeze_after = freeze_after
        self.head = ZERO_HEAD
        self._h = hashlib.sha256(ZERO_HEAD)
        self._since = 0  # records since the last checkpoint
        self.last_checkpoint_seq = -1
        self._freeze_from = -1
        self._freeze_to = -1
        self.appended = 0
        self.lost = 0
        self._dropped_seen = ring.dropped
        self._envelope = None  # (digest, blob) when the ring holds a copy of the envelope
        self._envelope_seq = -1
        self._envelope_due = False
        self._wall_t = 0  # device ms and wall ms of the host's last wall-clock reading
        self._wall = None

    def set_wall(self, now_ms, wall_ms):
        """The host's wall clock read ``wall_ms`` at device time ``now_ms`` (None: unknown)."""
        self._wall_t = now_ms
        self._wall = wall_ms

    def wall_at(self, now_ms):
        """Wall ms at device time ``now_ms`` from the last reading, or None."""
        if self._wall is None:
            return None
        return self._wall + (now_ms - self._wall_t)

    def time_step(self, now_ms, wall_ms):
        """The host's wall clock stepped: record TIME [7, now_ms, wall_ms] and use it."""
        self.set_wall(now_ms, wall_ms)
        self.enc.time(now_ms, wall_ms)
        return self._append(now_ms)

    def boot(self, gov, now_ms, boot_count=0, reset_reason=0, fw_version="", wall_ms=None,
             envelope_blob=None, digest=b""):
        """Start the governor (``gov.start``) and record BOOT, ENVELOPE and a CHECKPOINT."""
        if wall_ms is not None:
            self.set_wall(now_ms, wall_ms)
        else:
            wall_ms = self.wall_at(now_ms)
        d = gov.start(now_ms)
        self.enc.boot(now_ms, boot_count, reset_reason, fw_version, digest or self.env.digest,
                      gov.op_counter, d.output, wall_ms)
        self._append(now_ms)
        if envelope_blob is not None and len(envelope_blob) + 48 <= self.ring.max_payload:
            # (a small device's ring may not hold it: replay then needs --envelope)
            self._envelope = (digest or self.env.digest, envelope_blob)
            self._append_envelope(now_ms)
        self.checkpoint(gov, now_ms)
        return d

    def use(self, env):
        """Write for ``env`` from now on (a changed envelope: the next record is its BOOT,
        which resets the encoder's context to the new channels)."""
        self.env = env
        self.enc.env = env
        self.enc.prev_out = list(env.ch_safe)

    def _append_envelope(self, now_ms):
        self.enc.envelope(self._envelope[0], self._envelope[1])
        self._envelope_seq = self._append(now_ms)
        self._envelope_due = False

    def resume(self):
        """Continue the hash chain of the records already in the ring (after a reboot),
        exactly as a verifier walks it (``core.verify``): from ``ZERO_HEAD`` when the ring
        still starts at seq 0, then from each checkpoint's ``head`` over that checkpoint
        and the records after it; a hole closes the chain until the next checkpoint.
        Reads one record at a time (a board's ring need not fit in RAM)."""
        h = None
        prev = -1
        for seq, payload in self.ring.records():
            if prev >= 0 and seq != (prev + 1) & 0xFFFFFFFF:
                h = None
            prev = seq
            if h is None and seq == 0:
                h = hashlib.sha256(ZERO_HEAD)
                self.head = ZERO_HEAD
                self._since = 0
            if len(payload) > 1 and payload[1] == K_CHECKPOINT:
                self.head = bytes(decode(payload)[3])
                h = hashlib.sha256(self.head)
                self._since = 0
                self.last_checkpoint_seq = seq
            if h is not None:
                chain_update(h, seq, payload)
                self._since += 1
        if h is not None:
            self._h = h

    def record(self, event, now_ms, d, gov):
        """Append the record for one governor call, if the decision asks for one."""
        if not d.record:
            return -1
        if event.kind == EV_COMMAND:
            self.enc.decision(event, now_ms, d)
        else:
            self.enc.event(event, now_ms, d, gov.last_auth)
        seq = self._append(now_ms)
        if self.freeze_after is not None:
            for k in range(d.n_events):
                if d.ev_code[k] == E_TRIP and seq >= 0:
                    self._freeze_incident(seq)
        if self._freeze_to >= 0 and seq >= 0 and _reached(seq, self._freeze_to):
            self.ring.freeze(self._freeze_from, self._freeze_to)
            self._freeze_to = -1
        if self._since >= self.checkpoint_every:
            self.checkpoint(gov, now_ms)
        return seq

    def checkpoint(self, gov, now_ms, keep=False):
        """Close the current chain segment and store the governor's full state (``keep``:
        return a copy of the checkpoint's payload)."""
        head = self._h.digest()
        mac = checkpoint_mac(self.key, head) if self.key else None
        self.enc.checkpoint(now_ms, self.head, head, mac, gov.snapshot_state(),
                            self.wall_at(now_ms))
        payload = bytes(self.enc.payload()) if keep else None
        self.head = head
        self._h = hashlib.sha256(head)
        self._since = 0
        self.last_checkpoint_seq = self._append(now_ms)
        if self._envelope_due:  # wrap-around took the last copy: a dump must carry one
            self._append_envelope(now_ms)
        return payload

    def seal(self, gov, now_ms):
        """Close the chain with a checkpoint that is the ring's last record (a pull, an
        orderly stop). Returns ``(seq, chain_head)`` of that checkpoint (``sealed_head``),
        or ``(-1, None)`` when it could not be appended. The caller syncs."""
        for _ in range(3):  # an ENVELOPE copy or a GAP may follow a checkpoint: seal again
            payload = self.checkpoint(gov, now_ms, keep=True)
            seq = self.last_checkpoint_seq
            if seq < 0:
                return -1, None
            if (self.ring.next_seq - 1) & 0xFFFFFFFF == seq:
                break
        return seq, sealed_head(self.head, seq, payload)

    def sync(self):
        self.ring.sync()

    def _append(self, now_ms):
        payload = self.enc.payload()
        if len(payload) > self.ring.max_payload:
            # Cannot be stored whole (a pathological input): say so with a GAP instead.
            self.lost += 1
            self._gap(now_ms, -1, 1, GAP_HOST)
            return -1
        seq = self.ring.append(payload)
        if seq < 0:
            self.lost += 1
            return seq
        chain_update(self._h, seq, payload)
        self._since += 1
        self.appended += 1
        self._note_gaps(now_ms)
        return seq

    def _note_gaps(self, now_ms):
        lost = self.ring.pop_overwritten()
        if lost is not None:
            first, last = lost
            if self._envelope is not None and _within(self._envelope_seq, first, last):
                self._envelope_due = True
            self._gap(now_ms, first, ((last - first) & 0xFFFFFFFF) + 1, GAP_OVERWRITTEN)
        if self.ring.dropped != self._dropped_seen:
            count = self.ring.dropped - self._dropped_seen
            self._dropped_seen = self.ring.dropped
            self._gap(now_ms, -1, count, GAP_DROPPED)

    def _gap(self, now_ms, first, count, cause):
        self.enc.gap(now_ms, first, count, cause)
        payload = self.enc.payload()
        seq = self.ring.append(payload)
        if seq >= 0:
            chain_update(self._h, seq, payload)
            self._since += 1

    def _freeze_incident(self, trip_seq):
        start = self.last_checkpoint_seq if self.last_checkpoint_seq >= 0 else trip_seq
        if self._freeze_to >= 0:
            start = self._freeze_from  # overlapping incidents: one window
        self._freeze_from = start
        self._freeze_to = (trip_seq + self.freeze_after) & 0xFFFFFFFF
        self.ring.freeze(start, trip_seq)


def _within(seq, first, last):
    return ((seq - first) & 0xFFFFFFFF) <= ((last - first) & 0xFFFFFFFF)


def _reached(seq, target):
    """``seq`` is at or past ``target`` in 32-bit serial-number arithmetic."""
    return ((seq - target) & 0xFFFFFFFF) < 0x80000000


__all__ = ["Lineage", "checkpoint_mac", "chain_update", "ZERO_HEAD", "attestation_message",
           "attestation_mac", "sealed_head"]
