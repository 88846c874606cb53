"""What-if: the recorded inputs of a lineage decided again under another envelope.

``run_whatif(image, compiled)`` feeds every recorded input, at its recorded time, to a
fresh governor on the given envelope (in every boot, or the ``boots`` asked for: even a
boot that ran that very envelope) and compares each decision with the recorded one. The
result leads with what matters to a person deciding whether to ship the envelope:

- verdict transitions (``ALLOW→TRIP ×3``);
- trips added and removed, with device time, wall time when the lineage knows it, the
  channel and the cause in words;
- the first difference per channel (time, record seq, recorded and what-if output in
  engineering units);
- noise: decisions whose verdict and outputs are the same but whose rule, reason or events
  differ, grouped and counted;
- then the records themselves.

A decision *differs* when its verdict, outputs, rule, reason or events differ. Margins are
not compared: they measure the distance to the limits, which any change of limits moves.
``exit_code`` is 0 when no decision differs and 1 otherwise (2, an error, is the caller's:
``run_whatif`` raises ``WhatIfError``, ``ReplayError`` or ``LineageError``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from decimal import Decimal
from pathlib import PurePath

from .. import names
from ..core import cbor
from ..core.blockdev import RamBlockDevice
from ..core.codes import E_TRIP, EV_COMMAND
from ..core.envelope import Envelope
from ..core.record import K_BOOT, K_CHECKPOINT, K_DECISION, K_EVENT, RecordError, decode
from ..core.replay import Replayer, ReplayError, envelopes_in
from ..core.ring import LineageError, RingLog, detect_block_size
from .lineage_store import load_envelope
from .walltime import WallClock, format_wall

__all__ = ["run_whatif", "WhatIf", "WhatIfError", "parse_boots"]

K_TIME = 7  # TIME [7, t, wall_ms] (edgegov.host.walltime)
_ANCHOR_KINDS = (K_BOOT, K_CHECKPOINT, K_TIME)  # records that may carry wall time


class WhatIfError(ValueError):
    """A what-if that cannot run as asked (a boot that is not in the dump, ...)."""


def parse_boots(boots) -> frozenset[int] | None:
    """``"all"`` → None; ``"1,3"``, ``3`` or ``[1, 3]`` → those boot numbers."""
    if boots is None or boots == "all":
        return None
    if isinstance(boots, int) and not isinstance(boots, bool):
        return frozenset((boots,))
    if isinstance(boots, str):
        try:
            items = [int(part) for part in boots.split(",") if part.strip()]
        except ValueError:
            raise WhatIfError(f"--boots takes 'all' or boot numbers like 1,3: {boots!r}") from None
    else:
        items = list(boots)
    if not items or any(type(b) is not int or b < 0 for b in items):
        raise WhatIfError(f"--boots takes 'all' or boot numbers like 1,3: {boots!r}")
    return frozenset(items)


def _envelope(compiled) -> Envelope:
    """A CompiledEnvelope, an Envelope, ``(Envelope, blob, digest)``, a compiled blob
    (bytes) or the path of an envelope TOML or blob → the Envelope."""
    if isinstance(compiled, Envelope):
        return compiled
    if isinstance(compiled, tuple):
        return compiled[0]
    if isinstance(compiled, (bytes, bytearray, memoryview)):
        blob = bytes(compiled)
        return Envelope.from_blob(blob, hashlib.sha256(blob).digest())
    if isinstance(compiled, (str, PurePath)):
        from ..config.compile import envelope_from_file

        return envelope_from_file(compiled)[0]
    return Envelope.from_blob(compiled.blob, compiled.digest)


def _eng(res_text: str, scaled):
    if type(scaled) is not int:
        return scaled
    value = scaled * Decimal(res_text)
    return int(value) if value == value.to_integral_value() else float(value)


def _rule_channel(rule: str | None) -> str | None:
    """The channel a rule id is about (``channels.spindle.max``, ``modes.m.channels.x.max``)."""
    if not rule:
        return None
    parts = rule.split(".")
    for i in range(len(parts) - 1):
        if parts[i] == "channels":
            return parts[i + 1]
    return None


class _Side:
    """One decision (recorded or what-if), with codes and names, outputs by channel."""

    __slots__ = ("verdict", "reason", "rule", "margin", "output", "events")

    def __init__(self, env, verdict, reason, rule, margin, output, events):
        self.verdict = verdict
        self.reason = reason
        self.rule = env.rules[rule] if 0 <= rule < len(env.rules) else None
        self.margin = margin
        self.output = dict(zip(env.ch_names, output, strict=False))
        self.events = tuple((c, a) for c, a in events)

    def trip_reason(self):
        for code, arg in self.events:
            if code == E_TRIP:
                return arg
        return None

    def to_json(self, units) -> dict:
        return {
            "verdict": names.verdict(self.verdict), "verdict_code": self.verdict,
            "reason": names.reason(self.reason), "reason_code": self.reason,
            "rule": self.rule, "margin": self.margin,
            "output": {ch: units.eng(ch, v) for ch, v in self.output.items()},
            "output_scaled": dict(self.output),
            "events": [names.event_doc(c, a) for c, a in self.events],
        }


class _Units:
    """Engineering units of the channels (the what-if envelope's, then the recorded ones')."""

    def __init__(self, env: Envelope):
        self.res = dict(zip(env.ch_names, env.ch_res, strict=True))
        self.unit = dict(zip(env.ch_names, env.ch_units, strict=True))

    def learn(self, env: Envelope | None) -> None:
        if env is None:
            return
        for ch, res, unit in zip(env.ch_names, env.ch_res, env.ch_units, strict=True):
            self.res.setdefault(ch, res)
            self.unit.setdefault(ch, unit)

    def eng(self, ch, scaled):
        res = self.res.get(ch)
        return _eng(res, scaled) if res is not None else scaled

    def text(self, ch, scaled) -> str:
        if scaled is None:
            return "absent"
        unit = self.unit.get(ch, "")
        return f"{self.eng(ch, scaled)} {unit}".rstrip()


class _Diff:
    """One record whose what-if decision differs."""

    __slots__ = ("seq", "boot", "t_ms", "cmd_seq", "kind", "_raw", "_sides")

    def __init__(self, seq, boot, t_ms, cmd_seq, recorded, whatif, kind):
        self.seq = seq
        self.boot = boot
        self.t_ms = t_ms
        self.cmd_seq = cmd_seq
        self.kind = kind  # "verdict", "output" or a noise kind ("reason", "rule+events", ...)
        self._raw = (recorded, whatif)  # _Side arguments, built when first asked for
        self._sides = None

    def _side(self, k: int) -> _Side:
        if self._sides is None:
            self._sides = (_Side(*self._raw[0]), _Side(*self._raw[1]))
            self._raw = None
        return self._sides[k]

    @property
    def recorded(self) -> _Side:
        return self._side(0)

    @property
    def whatif(self) -> _Side:
        return self._side(1)

    @property
    def significant(self) -> bool:
        return self.kind in ("verdict", "output")


class _Collector:
    """The Replayer's what-if sink: classifies every decision as it is re-derived."""

    def __init__(self, env_new: Envelope, replayer_ref):
        self.env_new = env_new
        self.rp = replayer_ref
        self.units = _Units(env_new)
        self.decisions = 0
        self.margin_only = 0
        self.diffs: list[_Diff] = []
        self._env_old = None
        self._rules_new = _RuleIds(env_new)

    def _layout(self, env_old: Envelope) -> None:
        """What the fast comparison needs for the recorded envelope now in force."""
        self._env_old = env_old
        self._rules = _RuleIds(env_old)
        self.units.learn(env_old)
        self._same_channels = list(env_old.ch_names) == list(self.env_new.ch_names)

    def _outputs_equal(self, old, new) -> bool:
        return (dict(zip(self._env_old.ch_names, old, strict=False))
                == dict(zip(self.env_new.ch_names, new, strict=False)))

    def __call__(self, seq, boot, outcome, d) -> None:
        self.decisions += 1
        env_old = self.rp.decoder.env
        if env_old is not self._env_old:
            self._layout(env_old)
        if (outcome.verdict == d.verdict and outcome.reason == d.reason
                and self._rules[outcome.rule] == self._rules_new[d.rule]
                and (outcome.output == d.output if self._same_channels
                     else self._outputs_equal(outcome.output, d.output))
                and d.n_events == len(outcome.events)
                and (not d.n_events or outcome.events == d.events())):
            if outcome.margin != d.margin:
                self.margin_only += 1
            return  # the common case: the same decision, nothing to build
        events = d.events()
        if outcome.verdict != d.verdict:
            kind = "verdict"
        elif not (outcome.output == d.output if self._same_channels
                  else self._outputs_equal(outcome.output, d.output)):
            kind = "output"
        else:
            same = (self._rules[outcome.rule] == self._rules_new[d.rule],
                    outcome.reason == d.reason, outcome.events == events)
            kind = "+".join(k for k, ok in zip(("rule", "reason", "events"), same, strict=True)
                            if not ok)
        if not kind:  # nothing but the margin after all
            self.margin_only += outcome.margin != d.margin
            return
        ev = outcome.event
        cmd_seq = ev.seq if ev.kind == EV_COMMAND and type(ev.seq) is int else None
        self.diffs.append(_Diff(
            seq, boot, outcome.t, cmd_seq,
            (env_old, outcome.verdict, outcome.reason, outcome.rule, outcome.margin,
             outcome.output, outcome.events),
            (self.env_new, d.verdict, d.reason, d.rule, d.margin, list(d.output), events),
            kind))


class _RuleIds:
    """Rule index → rule id text (None for -1 or an index out of range)."""

    __slots__ = ("rules",)

    def __init__(self, env: Envelope):
        self.rules = list(env.rules)

    def __getitem__(self, i):
        return self.rules[i] if 0 <= i < len(self.rules) else None


def _memo_decode():
    """``record.decode`` that decodes each distinct DECISION/EVENT payload once (a steady
    loop repeats many byte for byte); anchors (BOOT, CHECKPOINT) are decoded every time."""
    memo = {}

    def decode_record(payload):
        if len(payload) < 2 or payload[1] not in (K_DECISION, K_EVENT):
            return decode(payload)
        key = bytes(payload)
        rec = memo.get(key)
        if rec is None:
            rec = decode(key)
            if len(memo) < 1 << 16:
                memo[key] = rec
        return rec

    return decode_record


class WhatIf:
    """The outcome of a what-if: summary first (``summary_lines``), all of it in
    ``to_json`` (engineering units, with the scaled integers alongside)."""

    def __init__(self, collector: _Collector, report, wall: _Wall, envelope: Envelope,
                 boots: frozenset[int] | None, boots_in_dump: list[int]):
        self.envelope = envelope
        self.boots = boots
        self.boots_in_dump = boots_in_dump
        self.decisions = collector.decisions
        self.margin_only = collector.margin_only
        self.units = collector.units
        self.diffs = collector.diffs
        self.notes = list(report.notes)
        self.skipped = report.skipped
        self.anchors = list(report.anchors)
        self._wall = wall

    # -- the verdict
    @property
    def identical(self) -> bool:
        return not self.diffs

    @property
    def exit_code(self) -> int:
        return 0 if self.identical else 1

    @property
    def differing(self) -> int:
        return len(self.diffs)

    # -- the summary's parts
    def transitions(self) -> list[tuple[str, str, int]]:
        counts = Counter((names.verdict(d.recorded.verdict), names.verdict(d.whatif.verdict))
                         for d in self.diffs if d.kind == "verdict")
        return [(a, b, n) for (a, b), n in sorted(counts.items(), key=lambda kv: -kv[1])]

    def trips(self, added: bool) -> list[dict]:
        out = []
        for d in self.diffs:
            have, other = (d.whatif, d.recorded) if added else (d.recorded, d.whatif)
            reason = have.trip_reason()
            if reason is None or other.trip_reason() is not None:
                continue
            out.append({"t_ms": d.t_ms, "wall": self.wall(d), "seq": d.seq, "boot": d.boot,
                        "channel": _rule_channel(have.rule), "rule": have.rule,
                        "reason": names.reason(reason),
                        "cause": _cause(reason, have.rule)})
        return out

    def first_difference(self) -> dict:
        first = {}
        for d in self.diffs:
            for ch in sorted(set(d.recorded.output) | set(d.whatif.output)):
                a, b = d.recorded.output.get(ch), d.whatif.output.get(ch)
                if a != b and ch not in first:
                    first[ch] = {"t_ms": d.t_ms, "wall": self.wall(d), "seq": d.seq,
                                 "boot": d.boot, "unit": self.units.unit.get(ch),
                                 "recorded": self.units.eng(ch, a), "whatif": self.units.eng(ch, b),
                                 "recorded_scaled": a, "whatif_scaled": b}
        return dict(sorted(first.items()))

    def groups(self) -> list[tuple[str, int]]:
        counts = Counter(d.kind for d in self.diffs if not d.significant)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    def wall(self, d) -> str | None:
        ms = self._wall.at(d.boot, d.t_ms)
        return format_wall(ms) if ms is not None else None

    # -- output
    def summary_lines(self) -> list[str]:
        boots = "all boots" if self.boots is None else \
            "boot" + ("s " if len(self.boots) > 1 else " ") + ",".join(map(str, sorted(self.boots)))
        n = len(self.boots_in_dump)
        lines = [f"what-if: {self.differing} of {self.decisions} decisions differ (envelope "
                 f"{self.envelope.digest.hex()[:16]} applied to {boots}; {n} boot"
                 f"{'' if n == 1 else 's'} in the dump)"]
        if self.skipped:
            lines.append(f"  {self.skipped} recorded decisions not compared (before the first "
                         "checkpoint or BOOT, or after a hole until the next checkpoint)")
        if self.identical:
            if self.margin_only:
                lines.append(f"  {self.margin_only} decisions differ only in margin "
                             "(not compared)")
            return lines
        tr = self.transitions()
        lines.append("  verdicts: " + (", ".join(f"{a}→{b} ×{n}" for a, b, n in tr)
                                       if tr else "none change"))
        for label, added in (("added", True), ("removed", False)):
            trips = self.trips(added)
            lines.append(f"  trips {label}: {len(trips)}")
            lines += [f"    {self._when(t)}: {t['cause']}" for t in trips[:10]]
            if len(trips) > 10:
                lines.append(f"    ... {len(trips) - 10} more")
        first = self.first_difference()
        lines.append("  first difference per channel:" + ("" if first else " none"))
        for ch, f in first.items():
            was = self.units.text(ch, f["recorded_scaled"])
            now = self.units.text(ch, f["whatif_scaled"])
            lines.append(f"    {ch}: {self._when(f)}: recorded {was}, what-if {now}")
        groups = self.groups()
        if groups:
            lines.append("  same verdict and outputs, other "
                         + ", ".join(f"{k.replace('+', ' and ')} ×{n}" for k, n in groups))
        if self.margin_only:
            lines.append(f"  {self.margin_only} more differ only in margin (not compared)")
        return lines

    def record_lines(self, show: int = 10) -> list[str]:
        """The differing records with a different verdict or output: the first ``show``,
        then how many were left out."""
        significant = [d for d in self.diffs if d.significant]
        lines = [f"  records with another verdict or output: {len(significant)}"]
        for d in significant[:show]:
            lines.append(f"    {self._when(_at(d, self))}: {_describe(d, self.units)}")
        if len(significant) > show:
            lines.append(f"    ... {len(significant) - show} more (--show N, or --json OUT for "
                         "all)")
        return lines

    def _when(self, item: dict) -> str:
        text = f"t={item['t_ms'] / 1000:.3f} s"
        if item.get("wall"):
            text += f" ({item['wall']})"
        if item.get("seq") is not None:
            text += f", seq {item['seq']}"
        return text

    def to_json(self) -> dict:
        return {
            "identical": self.identical,
            "envelope": self.envelope.digest.hex(),
            "boots": "all" if self.boots is None else sorted(self.boots),
            "boots_in_dump": self.boots_in_dump,
            "decisions": self.decisions,
            "differing": self.differing,
            "margin_only": self.margin_only,
            "skipped": self.skipped,
            "transitions": [{"from": a, "to": b, "count": n} for a, b, n in self.transitions()],
            "trips_added": self.trips(True),
            "trips_removed": self.trips(False),
            "first_difference": self.first_difference(),
            "groups": [{"kind": k, "count": n} for k, n in self.groups()],
            "notes": self.notes,
            "records": [self._record_json(d) for d in self.diffs],
        }

    def _record_json(self, d: _Diff) -> dict:
        return {"seq": d.seq, "boot": d.boot, "t_ms": d.t_ms, "wall": self.wall(d),
                "cmd_seq": d.cmd_seq, "kind": d.kind,
                "recorded": d.recorded.to_json(self.units),
                "whatif": d.whatif.to_json(self.units)}


def _at(d: _Diff, w: WhatIf) -> dict:
    return {"t_ms": d.t_ms, "wall": w.wall(d), "seq": d.seq}


def _describe(d: _Diff, units: _Units) -> str:
    a, b = d.recorded, d.whatif
    parts = []
    if a.verdict != b.verdict:
        parts.append(f"{names.verdict(a.verdict)} ({names.reason(a.reason)}) → "
                     f"{names.verdict(b.verdict)} ({names.reason(b.reason)}, {b.rule})")
    else:
        parts.append(f"{names.verdict(a.verdict)} in both")
    for ch in sorted(set(a.output) | set(b.output)):
        x, y = a.output.get(ch), b.output.get(ch)
        if x != y:
            parts.append(f"{ch} {units.text(ch, x)} → {units.text(ch, y)}")
    return "; ".join(parts)


def _cause(reason: int, rule: str | None) -> str:
    words = names.reason(reason).replace("_", " ")
    return f"{words} ({rule})" if rule else words


class _Wall:
    """Wall time of (boot number, device ms), from the dump's wall-time anchors
    (``WallClock`` counts a checkpoint before the first BOOT as its boot 0)."""

    def __init__(self, records):
        anchors = []
        booted = early = False
        for _seq, payload in records:
            kind = payload[1] if len(payload) > 1 else -1
            if kind not in _ANCHOR_KINDS:
                continue
            try:
                anchors.append(decode(payload) if kind != K_TIME else cbor.loads(payload))
            except (RecordError, cbor.CBORError):
                continue
            booted = booted or kind == K_BOOT
            early = early or not booted
        self.offset = 0 if early else 1
        self.clock = WallClock.from_records(anchors)

    def at(self, boot: int, t_ms: int) -> int | None:
        i = boot - self.offset
        return None if i < 0 else self.clock.at(i, t_ms)


class _ImageDevice(RamBlockDevice):
    """A whole image, read only: the ring's reads straight from it (the ring bounds every
    read by the block size itself; a read past the image still fails)."""

    def __init__(self, block_size, block_count, image):
        RamBlockDevice.__init__(self, block_size, block_count, image)
        self._mv = memoryview(image)

    def read(self, block, offset, buf):
        start = block * self.block_size + offset
        n = len(buf)
        buf[0:n] = self._mv[start : start + n]


def _records(image: bytes, block_size: int | None = None) -> list:
    """The committed records of an image, in ring order (each frame's CRC checked as it is
    read; what is wrong with the image is verify's to say). LineageError: not a ring."""
    if block_size is None:
        block_size = detect_block_size(image)
    if not isinstance(block_size, int) or block_size <= 0 or len(image) % block_size:
        raise LineageError(f"image of {len(image)} bytes is not whole blocks of {block_size!r}")
    if len(image) < 2 * block_size:
        raise LineageError(f"image holds fewer than 2 blocks of {block_size} bytes")
    try:
        ring = RingLog(_ImageDevice(block_size, len(image) // block_size, image))
    except ValueError as err:  # a geometry the block-device port refuses
        raise LineageError(f"not a ring of {block_size}-byte blocks: {err}") from None
    ring.recover(quick=True)
    return ring.read_all()


def run_whatif(image: bytes, compiled, boots="all", key=None, progress=None, *,
               block_size: int | None = None) -> WhatIf:
    """Decide the inputs recorded in ``image`` (a lineage file's bytes or a pulled dump)
    again under ``compiled`` (a CompiledEnvelope, an Envelope, ``(Envelope, blob,
    digest)``, a compiled blob or an envelope file's path), in every boot or in ``boots``
    ("all", "1,3", an int or a set of ints).

    ``key`` re-verifies operator MACs (else the recorded MAC check is used).
    ``progress(done, total)`` is called as records are replayed. ``block_size``: the
    sector size of an image without a readable sector header at its start.
    """
    image = bytes(image)
    records = _records(image, block_size)
    env = _envelope(compiled)
    wanted = parse_boots(boots)
    present = _present_boots(records)
    if wanted is not None:
        missing = sorted(wanted - set(present))
        if missing:
            raise WhatIfError(f"boot {missing[0]} is not in the dump (boots there: "
                              f"{', '.join(map(str, present)) or 'none'})")
    envelopes = envelopes_in(records, load_envelope)
    envelopes.setdefault(env.digest, env)
    replayer = Replayer(envelopes, key=key, what_if=env, boots=wanted,
                        decode_record=_memo_decode())
    collector = _Collector(env, replayer)
    replayer.sink = collector
    total = len(records)
    tick = None if progress is None else (lambda n: progress(n, total))
    try:
        report = replayer.run(records, tick)
    except ReplayError as err:
        if "is not in the dump" not in str(err):
            raise
        what = str(err).split(";")[0]  # "envelope <digest> is not in the dump"
        raise WhatIfError(f"{what}: the what-if needs the envelope the device ran to read "
                          "the records") from None
    if progress is not None:
        progress(total, total)
    if collector.decisions == 0 and not report.anchors:
        raise WhatIfError("nothing to decide: no BOOT or CHECKPOINT record survives"
                          + ("" if wanted is None else " in the boots asked for"))
    return WhatIf(collector, report, _Wall(records), env, wanted, present)


def _present_boots(records) -> list[int]:
    """Boot numbers in the dump: 0 when a checkpoint comes before the first BOOT, then
    1, 2, ... per BOOT record."""
    present = []
    boots = 0
    for _seq, payload in records:
        kind = payload[1] if len(payload) > 1 else -1
        if kind == K_BOOT:
            boots += 1
            present.append(boots)
        elif kind == K_CHECKPOINT and boots == 0 and not present:
            present.append(0)
    return present
