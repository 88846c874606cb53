"""Replay: feed recorded inputs and times into a fresh governor and compare.

``Replayer`` walks a lineage's records in ring order. It anchors at a BOOT (a fresh
governor, started at the recorded time) or at a CHECKPOINT (the recorded state restored);
from there every DECISION/EVENT record's input is handed to the governor at its recorded
time and the outcome is re-encoded with the same encoder: identical bytes or a divergence.
Records it cannot anchor (before the first surviving anchor, or after a hole in the
sequence, until the next checkpoint) are counted as skipped, never silently trusted.

With another envelope (``what_if``) the same inputs drive a governor on that envelope and
the report lists every decision whose verdict, reason, rule, outputs or events would have
differed (margins are not compared); a
``sink`` (``sink(seq, boot, outcome, decision)``) receives every what-if decision instead,
for a caller that classifies the differences itself (``edgegov.host.whatif``). ``boots``
(a set of boot numbers, or None for all) limits the what-if to those boots: boots are
numbered in ring order from 1 at each BOOT record; records anchored at a checkpoint before
the first surviving BOOT belong to boot 0.

MAC checks: with the device key, operator actions are re-verified; without it, the
recorded verdict of the MAC check is used (the hash chain, ``verify``, covers tampering).
"""

from .codes import CLAMP, EV_FAULT, EV_OPERATOR, EV_SESSION, EV_TELEMETRY, EV_TICK
from .events import TICK, Command, Fault, Operator, Session, Telemetry
from .governor import Governor
from .record import (
    GAP_OVERWRITTEN,
    K_BOOT,
    K_CHECKPOINT,
    K_DECISION,
    K_ENVELOPE,
    K_EVENT,
    K_GAP,
    K_TIME,
    Encoder,
    RecordError,
    decode,
    value_of,
    values_of,
)

_STATE_SKIP = 1  # snapshot fields compared from index 1 on: 0 is last_now, which
# unrecorded ticks move without changing anything else


class ReplayError(Exception):
    """The lineage cannot be replayed at all (no envelope, undecodable record, ...)."""

    def __init__(self, msg, seq=-1):
        Exception.__init__(self, msg)
        self.seq = seq


class ReplayGovernor(Governor):
    """A governor whose MAC checks can follow the recording instead of a key."""

    def __init__(self, env, key=None):
        Governor.__init__(self, env, key if key is not None else b"")
        self.verify_macs = key is not None
        self.recorded_auth = False

    def _authentic(self, op):
        if self.verify_macs:
            return Governor._authentic(self, op)
        self.last_auth = self.recorded_auth
        return self.recorded_auth


class Outcome:
    """What a record says happened (decoded), for reports and what-if comparison."""

    def __init__(self, seq, t, kind, event, verdict, reason, rule, margin, output, events):
        self.seq = seq
        self.t = t
        self.kind = kind
        self.event = event
        self.verdict = verdict
        self.reason = reason
        self.rule = rule
        self.margin = margin
        self.output = output
        self.events = events


class Divergence:
    """One record whose replay did not reproduce it (or, in a what-if, would differ)."""

    def __init__(self, seq, t, recorded, replayed, note="", boot=0):
        self.seq = seq
        self.t = t
        self.recorded = recorded
        self.replayed = replayed
        self.note = note
        self.boot = boot


class Report:
    def __init__(self):
        self.compared = 0
        self.skipped = 0
        self.anchors = []  # (seq, "boot" | "checkpoint")
        self.divergences = []
        self.notes = []

    @property
    def identical(self):
        return not self.divergences and self.compared > 0


class Decoder:
    """Reads records in order, keeping the context their compact fields are relative to."""

    def __init__(self, envelopes, decode_record=None):
        self.envelopes = envelopes  # digest bytes -> Envelope
        # record.decode, or a host's drop-in for it (e.g. one that memoises repeated payloads)
        self.decode = decode_record if decode_record is not None else decode
        self.env = None
        self.t = 0
        self.seq_ref = 0
        self.prev_out = None
        self.anchored = False

    def envelope(self, digest, seq):
        env = self.envelopes.get(bytes(digest))
        if env is None:
            raise ReplayError("envelope %s is not in the dump; pass it with --envelope"
                              % bytes(digest).hex()[:16], seq)
        return env

    def read(self, seq, payload):
        """Decode one record; returns (kind, rec, Outcome or None). A record whose fields
        have the wrong types (valid CBOR, a forged or damaged record) is a RecordError."""
        rec = self.decode(payload)
        try:
            return self._read(seq, rec)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:
            if isinstance(e, (RecordError, ReplayError)):
                raise
            raise RecordError("record fields have the wrong types") from None

    def _read(self, seq, rec):
        kind = rec[0]
        _typed(rec, _INT_FIELDS.get(kind, ()))
        if kind == K_BOOT:
            self.env = self.envelope(rec[5], seq)
            _outputs(rec[8], self.env)
            self.t = rec[1]
            self.seq_ref = 0
            self.prev_out = list(rec[8])
            self.anchored = True
            return kind, rec, None
        if kind == K_CHECKPOINT:
            self.env = self.envelope(rec[7], seq)
            self.t = rec[1]
            self.seq_ref = rec[5]
            if not isinstance(rec[6], list) or len(rec[6]) < 9:
                raise RecordError("checkpoint state has the wrong shape")
            _outputs(rec[6][8], self.env)
            self.prev_out = list(rec[6][8])
            self.anchored = True
            return kind, rec, None
        if kind == K_GAP:
            self.t = rec[1]
            if rec[4] != GAP_OVERWRITTEN:
                self.anchored = False  # inputs were lost between here and the last record
            return kind, rec, None
        if kind == K_ENVELOPE or kind == K_TIME or not self.anchored:
            return kind, rec, None
        return kind, rec, self._outcome(seq, kind, rec)

    def _outcome(self, seq, kind, rec):
        env = self.env
        self.t += rec[1]
        if kind == K_DECISION:
            event = self._command(rec)
            at = 4  # the outcome's fields start here: verdict/reason, rule, margin, ...
        else:
            event = self._event(rec[2])
            at = 3
        vr = rec[at]
        verdict, reason = vr // 64, vr % 64
        output = list(self.prev_out)
        values = event.values if kind == K_DECISION and verdict <= CLAMP else None
        if isinstance(values, dict):  # an accepted proposal is the expected output
            names = env.ch_names
            for i in range(env.n):
                v = values.get(names[i])
                if type(v) is int:
                    output[i] = v
        n = len(rec) - at
        if n > 3:
            for pair in rec[at + 3]:
                i, v = pair
                if not 0 <= i < env.n:
                    raise RecordError("output index out of range")
                output[i] = v
        events = [tuple(e) for e in rec[at + 4]] if n > 4 else []
        self.prev_out = output
        return Outcome(seq, self.t, kind, event, verdict, reason, rec[at + 1], rec[at + 2],
                       output, events)

    def _command(self, rec):
        field = rec[2]
        if type(field) is int:
            seq = self.seq_ref + field
            self.seq_ref = seq
        else:
            seq = value_of(field)
        return Command(seq, values_of(rec[3], self.env.ch_names))

    def _event(self, field):
        if field == EV_TICK:
            return TICK
        if not isinstance(field, list) or not field:
            raise RecordError("bad event input")
        kind = field[0]
        if kind == EV_TELEMETRY:
            return Telemetry(values_of(field[1], self.env.in_names))
        if kind == EV_OPERATOR:
            op = Operator(value_of(field[1]), value_of(field[2]), value_of(field[3]), field[4])
            op.recorded_auth = field[5] is True
            return op
        if kind == EV_FAULT:
            return Fault(value_of(field[1]), field[2] is True)
        if kind == EV_SESSION:
            return Session(value_of(field[1]))
        raise RecordError("unknown event input %r" % (kind,))


class Replayer:
    """Replays ``records`` (``(seq, payload)`` in ring order) and builds a ``Report``."""

    def __init__(self, envelopes, key=None, what_if=None, boots=None, sink=None,
                 decode_record=None):
        self.decoder = Decoder(envelopes, decode_record)
        self.key = key
        self.what_if = what_if  # an Envelope to decide with instead of the recorded one
        self.boots = boots  # what-if only in these boots (None: every boot)
        self.sink = sink
        self.boot = 0  # the current boot's number (0: before the first BOOT record)
        self.gov = None
        self.enc = None
        self.report = Report()
        self._prev_seq = None

    def run(self, records, progress=None):
        for n, (seq, payload) in enumerate(records):
            self.step(seq, payload)
            if progress is not None and n % 1024 == 0:
                progress(n)
        return self.report

    def step(self, seq, payload):
        if self._prev_seq is not None and seq != (self._prev_seq + 1) & 0xFFFFFFFF:
            self._lose_anchor(seq, "sequence jumps from %d to %d" % (self._prev_seq, seq))
        self._prev_seq = seq
        try:
            kind, rec, outcome = self.decoder.read(seq, payload)
        except RecordError as e:
            self.report.divergences.append(Divergence(seq, self.decoder.t, None, None,
                                                      "undecodable record: %s" % e,
                                                      self.boot))
            self._lose_anchor(seq, "undecodable record")
            return
        if kind == K_BOOT:
            self.boot += 1
            if self._selected():
                self._boot(seq, rec, payload)
            else:
                self.gov = None
        elif kind == K_CHECKPOINT:
            if self._selected():
                self._checkpoint(seq, rec)
        elif kind == K_GAP and not self.decoder.anchored:
            self._lose_anchor(seq, "records dropped")
        elif outcome is not None and self.gov is not None:
            self._compare(seq, payload, outcome)
        elif kind in (K_DECISION, K_EVENT):
            self.report.skipped += 1

    def _selected(self):
        return self.boots is None or self.boot in self.boots

    def _lose_anchor(self, seq, why):
        if self.gov is not None:
            self.report.notes.append("%s at seq %d: replay resumes at the next checkpoint"
                                     % (why, seq))
        self.gov = None
        self.decoder.anchored = False

    def _env(self):
        return self.what_if if self.what_if is not None else self.decoder.env

    def _boot(self, seq, rec, payload):
        self.gov = ReplayGovernor(self._env(), self.key)
        self.gov.op_counter = rec[7]
        d = self.gov.start(rec[1])
        self.report.anchors.append((seq, "boot"))
        if self.what_if is not None:
            return
        self.enc = Encoder(self.decoder.env)
        self.enc.boot(rec[1], rec[2], rec[3], rec[4], rec[5], self.gov.op_counter, d.output,
                      rec[9])
        self.report.compared += 1
        if bytes(self.enc.payload()) != bytes(payload):
            self.report.divergences.append(Divergence(seq, rec[1], rec, None, "boot differs",
                                                                 self.boot))

    def _checkpoint(self, seq, rec):
        state = rec[6]
        if self.gov is not None and self.what_if is None:
            mine = self.gov.snapshot_state()
            self.report.compared += 1
            if mine[_STATE_SKIP:] != state[_STATE_SKIP:]:
                self.report.divergences.append(
                    Divergence(seq, rec[1], state, mine, "governor state differs", self.boot)
                )
        if self.gov is None:
            try:
                gov = ReplayGovernor(self._env(), self.key)
                gov.restore_state(state)
            except ValueError as e:
                self.report.notes.append("cannot start at checkpoint %d: %s" % (seq, e))
                return
            self.gov = gov
            self.report.anchors.append((seq, "checkpoint"))
        if self.what_if is None:
            self.enc = Encoder(self.decoder.env)
            self.enc.t = rec[1]
            self.enc.seq_ref = rec[5]
            self.enc.prev_out = list(state[8])

    def _compare(self, seq, payload, outcome):
        gov = self.gov
        event = outcome.event
        if event.kind == EV_OPERATOR:
            gov.recorded_auth = getattr(event, "recorded_auth", False)
        d = gov.handle(event, outcome.t)
        self.report.compared += 1
        if self.what_if is not None:
            self._what_if(seq, outcome, d)
            return
        if outcome.kind == K_DECISION:
            self.enc.decision(event, outcome.t, d)
        else:
            self.enc.event(event, outcome.t, d, gov.last_auth)
        if bytes(self.enc.payload()) != bytes(payload) or not d.record:
            note = "" if d.record else "replay would not have recorded this call"
            self.report.divergences.append(
                Divergence(seq, outcome.t, outcome, _mine(seq, outcome, d), note, self.boot)
            )

    def _what_if(self, seq, outcome, d):
        if self.sink is not None:
            self.sink(seq, self.boot, outcome, d)
            return
        env_old = self.decoder.env
        env_new = self.what_if
        old_rule = env_old.rules[outcome.rule] if 0 <= outcome.rule < len(env_old.rules) else ""
        new_rule = env_new.rules[d.rule] if 0 <= d.rule < len(env_new.rules) else ""
        old_out = dict(zip(env_old.ch_names, outcome.output))
        new_out = dict(zip(env_new.ch_names, d.output))
        # A decision differs in its verdict, reason, rule, outputs or events; margins are
        # not compared (they measure the distance to limits, which another envelope moves).
        if (outcome.verdict != d.verdict or outcome.reason != d.reason or old_rule != new_rule
                or old_out != new_out or outcome.events != d.events()):
            mine = _mine(seq, outcome, d)
            mine.rule_id = new_rule
            outcome.rule_id = old_rule
            mine.output_by_name = new_out
            outcome.output_by_name = old_out
            self.report.divergences.append(Divergence(seq, outcome.t, outcome, mine, "",
                                                      self.boot))


# The fields that must be integers, per record kind (booleans are not).
_INT_FIELDS = {K_BOOT: (1, 2, 3, 7), K_CHECKPOINT: (1, 5), K_GAP: (1, 2, 3, 4),
               K_DECISION: (1, 4, 5, 6), K_EVENT: (1, 3, 4, 5)}


def _typed(rec, fields):
    for i in fields:
        if type(rec[i]) is not int:
            raise RecordError("record field %d is not an integer" % i)


def _outputs(values, env):
    """A BOOT's or CHECKPOINT's outputs: one integer per channel of its envelope."""
    if not isinstance(values, list) or len(values) != env.n:
        raise RecordError("outputs have the wrong shape")
    for v in values:
        if type(v) is not int:
            raise RecordError("outputs must be integers")


def _mine(seq, outcome, d):
    return Outcome(seq, outcome.t, outcome.kind, outcome.event, d.verdict, d.reason, d.rule,
                   d.margin, list(d.output), d.events())


def envelopes_in(records, load):
    """Digest → Envelope for every ENVELOPE record (``load(blob, digest)`` builds one)."""
    found = {}
    for _, payload in records:
        if len(payload) > 1 and payload[1] == K_ENVELOPE:
            try:
                rec = decode(payload)
            except RecordError:
                continue
            if rec[0] == K_ENVELOPE and bytes(rec[1]) not in found:
                found[bytes(rec[1])] = load(rec[2], bytes(rec[1]))
    return found


__all__ = ["Replayer", "ReplayGovernor", "Report", "Divergence", "Decoder", "ReplayError",
           "envelopes_in"]
