"""The decode pass of a report: every record once, in ring order, into plot-ready columns.

Records are decoded by ``edgegov.host.lineage_read.decode_dump``, so every count and every
record shown on click is exactly what ``edgegov lineage decode`` prints. On the way:

- time: a record's ``t_ms`` is the device's monotonic clock, which restarts at a reboot;
  the report lays boots end to end (``Clock``) and plots seconds on that axis;
- records after a hole in the sequence (a record lost to corruption) carry times and
  outputs relative to records that are gone: they are not plotted until the next BOOT or
  CHECKPOINT re-anchors, and the hole is reported;
- what is plotted is decided by ``Decimator`` (every important record, a thinned rest).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field

from .. import names
from ..core.codes import ALLOW, EV_TELEMETRY, EV_TICK
from ..core.record import K_BOOT, K_CHECKPOINT, K_DECISION
from ..host.lineage_read import _ENG, _eng, _input_of_values
from .decimate import Decimator
from .narrative import operator_text, refused
from .shadow import LazyRow, row_of

U32 = 0xFFFFFFFF
VERDICTS = ("ALLOW", "CLAMP", "REJECT", "ESCALATE", "HOLD", "TRIP")
VERDICT_CODE = {v: i for i, v in enumerate(VERDICTS)}
NAN = float("nan")
MAX_LISTED = 200  # errors, holes, unplaced records listed one by one in the header

# Event name → timeline category.
EVENT_CATEGORY = {
    "trip": "trip", "reset": "reset", "reset_refused": "reset refused",
    "arm": "arm", "arm_refused": "arm", "pause": "arm", "resume": "arm",
    "pause_refused": "arm", "resume_refused": "arm", "op_refused": "auth refused",
    "blocking_causes": "reset refused", "counter_behind": "auth refused",
    "session": "link",
    "link_engaged": "link", "link_stale": "link", "link_lost": "link",
    "approval_asked": "approval", "approval_granted": "approval",
    "approval_denied": "approval", "approval_expired": "approval",
    "permit_expired": "approval", "mode": "mode", "mode_refused": "mode",
    "estop_out": "e-stop output", "fault": "fault", "fault_cleared": "fault",
    "watchdog": "watchdog", "auth_refused": "auth refused", "input_stale": "input stale",
    "boot": "boot",
}
# Categories also marked on every channel plot (at the channel's output).
CHANNEL_EVENT_CATEGORIES = ("trip", "reset", "link", "mode", "boot")
REASONED = ("CLAMP", "REJECT")  # verdicts broken down by reason in the counts
VERDICT_MARKERS = {"CLAMP": "clamp", "REJECT": "reject", "ESCALATE": "escalate"}


@dataclass(slots=True)
class Item:
    """One plotted record, as the page needs it."""

    x: float
    seq: int
    kind: str
    verdict: int  # -1: not a decision/event record
    rule: str | None
    reason: str | None
    margin: object
    outs: list
    props: list
    text: object  # the decoded dict until plotted, then its ``lineage decode`` line
    events: list
    streak_start: bool
    involved: list  # channel indices a CLAMP/REJECT/ESCALATE concerns
    streak_len: int = 1  # on a streak's first record: records in the streak
    after_break: bool = False  # records before it could not be placed: lines break here


@dataclass
class Collected:
    rows: list = field(default_factory=list)  # Items, in order
    counts: Counter = field(default_factory=Counter)  # (kind, verdict or None)
    by_reason: Counter = field(default_factory=Counter)  # (verdict, reason word): CLAMP/REJECT
    boots: list = field(default_factory=list)
    gaps: list = field(default_factory=list)
    holes: list = field(default_factory=list)  # (after_seq, next_seq, x)
    errors: list = field(default_factory=list)  # decoded 'error' rows
    operator: list = field(default_factory=list)  # every operator action (dicts)
    segments: list = field(default_factory=list)  # per boot: {"boot", "x0", "x1", "wall"}
    wall: bool = False  # report times are wall time (s since the epoch, UTC)
    unplaced: int = 0
    after_hole: int = 0
    t_first: float | None = None
    t_last: float | None = None
    offered: int = 0
    kept: int = 0
    bucket: int = 1


class Clock:
    """Device time → report time (s); ``None`` where unplaceable. Without wall time, boots
    are laid end to end (each boot's clock starts again at 0). With ``wall`` (a
    ``WallClock`` that knows every boot), a record's report time is its wall time (s since
    the epoch, UTC), so boots sit where they happened, each its own segment."""

    def __init__(self, wall=None):
        self.offset_ms = 0
        self.last_ms: int | None = None
        self.prev_seq: int | None = None
        self.after_hole = False
        self.wall = wall
        self.boot_index = -1  # as WallClock counts boots
        self.new_segment = False  # the record just placed starts a boot's segment

    def place(self, row: dict, holes: list) -> float | None:
        seq = row["seq"]
        self._follow(seq, holes)
        kind = row["kind"]
        boot = self.new_segment = kind == "boot"
        if boot:
            self.boot_index += 1
            self.after_hole = False
        elif kind == "checkpoint":
            if self.boot_index < 0:
                self.boot_index = 0
            self.after_hole = False
        t = row.get("t_ms")
        if type(t) is not int or self.after_hole or row.get("unplaced"):
            return None
        return self._at(t, boot)

    def place_at(self, seq: int, t: int, holes: list) -> float | None:
        """``place`` of a decision or event record at device time ``t`` (ms)."""
        self._follow(seq, holes)
        self.new_segment = False
        return None if self.after_hole else self._at(t, False)

    def _follow(self, seq: int, holes: list) -> None:
        prev = self.prev_seq
        if prev is not None and seq != (prev + 1) & U32:
            self.after_hole = True
            holes.append((prev, seq))
        self.prev_seq = seq

    def _at(self, t: int, boot: bool) -> float:
        if self.wall is not None:
            wall = self.wall.at(self.boot_index if self.boot_index > 0 else 0, t)
            if wall is not None:
                self.last_ms = wall
                return wall / 1000
        if boot and self.last_ms is not None:
            self.offset_ms = max(self.offset_ms, self.last_ms - t)
        ms = t + self.offset_ms
        self.last_ms = ms if self.last_ms is None else max(self.last_ms, ms)
        return ms / 1000


def wall_clock_of(records) -> object | None:
    """A ``WallClock`` of the dump's raw records when every boot in it has wall time (only
    BOOT, CHECKPOINT and TIME records are decoded for this); else ``None`` (device time)."""
    import cbor2

    from ..host.walltime import K_TIME, WallClock

    anchors = []
    boots = 0
    for _, payload in records:
        if len(payload) < 2 or payload[1] not in (K_BOOT, K_CHECKPOINT, K_TIME):
            continue
        try:
            arr = cbor2.loads(payload)
        except Exception:  # noqa: BLE001 - a damaged record is not an anchor
            continue
        if isinstance(arr, list) and arr:
            boots += arr[0] == K_BOOT
            anchors.append(arr)
    if not anchors:
        return None
    wall = WallClock.from_records(anchors)
    every = all(wall.at(b, 0) is not None for b in range(max(1, boots)))
    return wall if every else None


def channels_of(envelopes: dict) -> list[tuple[str, str, str]]:
    """(name, unit, resolution) of every channel of every envelope, sorted by name."""
    found = {}
    for env in envelopes.values():
        for i, name in enumerate(env.ch_names):
            found.setdefault(name, (name, env.ch_units[i], env.ch_res[i]))
    return [found[n] for n in sorted(found)]


def rule_channels(envelopes: dict, channels: list[str]) -> dict[str, set[int]]:
    """Rule id → indices (into ``channels``) of the channels it limits."""
    index = {name: i for i, name in enumerate(channels)}
    out: dict[str, set[int]] = {}
    for env in envelopes.values():
        for rule in env.rules:
            parts = rule.split(".")
            hit = {index[parts[k + 1]] for k in range(len(parts) - 1)
                   if parts[k] == "channels" and parts[k + 1] in index}
            out.setdefault(rule, set()).update(hit)
        for k, name in enumerate(env.il_names):
            hit = {index[env.ch_names[ch]] for ch, _, _ in env.il_limits[k]}
            out.setdefault(f"interlocks.{name}", set()).update(hit)
    return out


_isfinite = math.isfinite


def _num(v):
    if type(v) is int or (type(v) is float and math.isfinite(v)):
        return v
    return None


def finite(row: dict) -> dict:
    """The record with non-finite floats spelled as ``lineage decode``'s text does (the
    page's JSON must be strict for browsers)."""
    return _finite(row) if _nonfinite(row) else row


def _nonfinite(v) -> bool:
    if type(v) is float:
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(_nonfinite(x) for x in v.values())
    if isinstance(v, list):
        return any(_nonfinite(x) for x in v)
    return False


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


class _View:
    """How one envelope's decoded values are shown on the report's channels: per report
    channel, the number ``feed`` would plot from the record's row (in engineering units;
    None where there is none)."""

    def __init__(self, env, channels: list[str]):
        index = env.ch_index
        self.env = env
        self.channels = channels
        # per report channel: (position in the recorded outputs, resolution) or None
        self.outs = [(index[c], env.ch_res[index[c]]) if c in index else None
                     for c in channels]
        # per report channel, of the proposal's values taken in that order: (position,
        # resolution); a name the envelope does not know is shown as it is (resolution None)
        self.props = [(k, env.ch_res[index[c]] if c in index else None)
                      for k, c in enumerate(channels)]
        self.none = [None] * len(channels)
        # the last outputs and telemetry shown, with the types of their values (True == 1)
        self._output = self._output_types = self._outs = None
        self._tel = self._tel_types = self._tel_shown = None

    def outputs(self, output: list) -> list:
        """The recorded outputs (scaled, in the envelope's order) as plotted."""
        types = list(map(type, output))
        if output != self._output or types != self._output_types:  # (they hold still long)
            self._outs = self.shown(output, self.outs)
            self._output, self._output_types = output, types
        return self._outs

    def proposals(self, values: dict | None) -> list:
        """A command's values (name → scaled) as plotted."""
        if not values:
            return self.none
        return self.shown([values.get(name) for name in self.channels], self.props)

    def telemetry(self, values: dict) -> dict | None:
        """Telemetry values as the row shows them; the same object while they hold still
        (the lanes then skip them)."""
        if not values:
            return None
        items = list(values.items())  # (in order: the order is shown)
        types = list(map(type, values.values()))
        if items != self._tel or types != self._tel_types:
            self._tel_shown = _input_of_values(self.env, values)["values"]
            self._tel, self._tel_types = items, types
        return self._tel_shown

    @staticmethod
    def shown(values: list, cols: list) -> list:
        """``_num`` of each value in engineering units (``_eng``, its cache read inline: this
        runs for most records of a dump)."""
        out = []
        cached = _ENG.get
        for col in cols:
            v = values[col[0]] if col is not None and col[0] < len(values) else None
            if type(v) is int and col[1] is not None:
                got = cached((col[1], v))
                v = _eng(col[1], v) if got is None else got
            out.append(v if type(v) is int or (type(v) is float and _isfinite(v)) else None)
        return out


# Records that say nothing, by event input: (kind, the source their runs are followed by)
_QUIET_EVENTS = {EV_TELEMETRY: ("event", ("event", "telemetry")),
                 EV_TICK: ("event", ("event", "tick"))}


def _quiet_source(o):
    """(kind, source) of a decoded outcome that says nothing (ALLOW, no event, a command,
    telemetry or a tick), else None."""
    if o.verdict != ALLOW or o.events:
        return None
    if o.kind == K_DECISION:
        return "decision", ("decision", None)
    return _QUIET_EVENTS.get(o.event.kind)


class Collector:
    """Consumes decoded rows (``feed``) and keeps what the page plots."""

    def __init__(self, total: int, channels: list[str], rule_map: dict, important_seqs=(),
                 decimator: Decimator | None = None, wall=None, watchers=(), offsets=None):
        self.channels = channels
        self.offsets = offsets  # seq → byte offset, for the rows ``feed_decoded`` builds
        self.rule_map = rule_map
        self.important_seqs = set(important_seqs)
        self.dec = decimator or Decimator(total)
        self.clock = Clock(wall)
        self.out = Collected(bucket=self.dec.size, wall=wall is not None)
        self.watchers = list(watchers)  # each fed (x, row) of every placed record
        self._streaks: dict = {}  # source -> (key, first Item of its current run)
        self._pending_streak = None
        self._broken = False
        self.xs = array("d")  # report time of every record (NaN: not placed)
        self._views: dict = {}  # id(envelope) → _View

    def feed(self, index: int, row: dict) -> None:
        # Every record passes here: the steps of ``_item``, ``_streak_start`` and
        # ``_segment`` are inlined, with the lookups they share done once.
        out = self.out
        get = row.get
        kind = row["kind"]
        verdict = get("verdict")
        out.counts[(kind, verdict)] += 1
        if verdict in REASONED:
            out.by_reason[(verdict, get("reason") or "?")] += 1
        holes = out.holes
        n_holes = len(holes)
        clock = self.clock
        x = clock.place(row, holes)
        if len(holes) > n_holes:
            self._hole_at()
        if kind == "error" and len(out.errors) < MAX_LISTED:
            out.errors.append(row)
        if x is None:
            self.xs.append(NAN)
            self._unplaced(row)
            self._broken = kind != "envelope" or self._broken
            return
        self.xs.append(x)
        if out.t_first is None:
            out.t_first = x
        out.t_last = x
        for w in self.watchers:
            w.feed(x, row)
        # the record as an Item (``_item``)
        output = get("output") or get("outputs") or {}
        proposed = get("proposed")
        proposed = proposed if isinstance(proposed, dict) else {}
        channels = self.channels
        outs = [v if type(v) is int or (type(v) is float and _isfinite(v)) else None
                for v in map(output.get, channels)]  # _num of each, inline
        props = [v if type(v) is int or (type(v) is float and _isfinite(v)) else None
                 for v in map(proposed.get, channels)] if proposed else [None] * len(channels)
        row_events = get("events", ())
        events = [(e.get("event"), e.get("arg")) for e in row_events] if row_events else []
        vcode = VERDICT_CODE.get(verdict, -1)
        inp = get("input")
        inp_type = inp.get("type") if isinstance(inp, dict) else None
        if vcode <= 0:  # (``_streak_start`` of a record that is not refused)
            self._streaks.pop((kind, inp_type), None)
            streak = False
        else:
            streak = self._streak_start(row, vcode)
        involved = self._involved(row, proposed, output) if verdict in VERDICT_MARKERS else []
        seq = row["seq"]
        item = Item(x, seq, kind, vcode, get("rule"), get("reason"), get("margin"), outs,
                    props, row, events, streak, involved)
        if streak:
            source, key = self._pending_streak
            self._streaks[source] = (key, item)
        important = (vcode > 0 or bool(events) or kind == "boot" or kind == "gap"
                     or seq in self.important_seqs)
        if self._broken or (clock.new_segment and out.wall):
            item.after_break, self._broken = True, False
        # the boot's segment (``_segment``)
        segs = out.segments
        if kind == "boot" or not segs:
            self._segment(x, row if kind == "boot" else None)
        else:
            segs[-1]["x1"] = x
        if inp_type == "operator":
            out.operator.append({"x": x, "seq": seq, "action": inp.get("action"),
                                 "authentic": inp.get("authentic"),
                                 "verdict": verdict, "reason": get("reason"),
                                 "refused": refused(row), "text": operator_text(row)})
        if kind == "boot":
            out.boots.append(row)
        elif kind == "gap":
            out.gaps.append((x, row))
        kept = self.dec.offer(index, item, outs + props, important)
        if kept:
            out.rows.extend(kept)

    def feed_decoded(self, index: int, seq: int, payload: bytes, decoder) -> None:
        """``feed(index, row_of(decoder, seq, payload, offsets))`` of the record ``decoder``
        just read, with the same result. An ALLOW decision or telemetry record with no
        event (most of a long dump) is counted, placed and offered for plotting from the
        decoded values; its row is built only if it is plotted (``finish``)."""
        last = decoder.last
        o = last[2] if last is not None else None
        quiet = _quiet_source(o) if o is not None and seq not in self.important_seqs else None
        kind, source = quiet or (None, (None, None))
        values = o.event.values if quiet is not None and source[1] != "tick" else None
        env = decoder.env
        if (quiet is None or values is not None and type(values) is not dict
                or len(o.output) > env.n):
            self.feed(index, row_of(decoder, seq, payload, self.offsets))
            return
        view = self._views.get(id(env))
        if view is None:
            view = self._views[id(env)] = _View(env, self.channels)
        outs = view.outputs(o.output)
        if source[1] == "telemetry":  # (shown on the inputs lane, not as proposals)
            tel, props = view.telemetry(values), view.none
        else:
            tel, props = None, view.proposals(values)
        out = self.out
        out.counts[(kind, "ALLOW")] += 1
        holes = out.holes
        n_holes = len(holes)
        x = self.clock.place_at(seq, o.t, holes)
        if len(holes) > n_holes:
            self._hole_at()
        if x is None:
            self.xs.append(NAN)
            out.after_hole += 1
            self._broken = True
            return
        self.xs.append(x)
        if out.t_first is None:
            out.t_first = x
        out.t_last = x
        lazy = LazyRow.of(decoder, seq, self.offsets)
        for w in self.watchers:
            w.quiet(x, seq, kind, lazy, tel)
        self._streaks.pop(source, None)
        rules = env.rules
        rule = o.rule
        item = Item(x, seq, kind, 0, rules[rule] if 0 <= rule < len(rules) else None,
                    names.reason(o.reason), o.margin, outs, props, lazy, [], False, [])
        if self._broken:
            item.after_break, self._broken = True, False
        segs = out.segments
        if segs:
            segs[-1]["x1"] = x
        else:
            self._segment(x, None)
        kept = self.dec.offer(index, item, outs + props, False)
        if kept:
            out.rows.extend(kept)

    def _hole_at(self) -> None:
        """The hole just found, with the report time it is drawn at."""
        holes = self.out.holes
        last_ms = self.clock.last_ms
        prev, nxt = holes[-1]
        holes[-1] = (prev, nxt, last_ms / 1000 if last_ms is not None else None)

    def finish(self) -> Collected:
        self._keep(self.dec.finish())
        for it in self.out.rows:
            if type(it.text) is LazyRow:
                it.text = it.text.row()
        self.out.offered = self.dec.offered
        self.out.kept = self.dec.kept
        return self.out

    def _keep(self, items: list) -> None:
        self.out.rows.extend(items)

    def _segment(self, x: float, boot: dict | None) -> None:
        """A segment starting at ``x``: a boot's (``boot``, its row), or the first one of
        a dump whose first boot is gone."""
        self.out.segments.append({"boot": boot.get("boot_count") if boot else None, "x0": x,
                                  "x1": x, "wall": boot.get("wall_ms") if boot else None})

    def _unplaced(self, row: dict) -> None:
        if row["kind"] in ("envelope",):
            return
        if row.get("unplaced") or row["kind"] == "error":
            self.out.unplaced += 1
        else:
            self.out.after_hole += 1

    def _streak_start(self, row: dict, vcode: int) -> bool:
        """First of a run of records refused the same way (the timeline shows one). Runs are
        followed per source (commands, telemetry, operator, ticks): they interleave."""
        inp = row.get("input")
        source = (row["kind"], inp.get("type") if isinstance(inp, dict) else None)
        if vcode <= 0:
            self._streaks.pop(source, None)
            return False
        key = (vcode, row.get("reason"), row.get("rule"))
        current = self._streaks.get(source)
        if current is not None and current[0] == key:
            current[1].streak_len += 1
            return False
        self._pending_streak = (source, key)
        return True

    def _involved(self, row: dict, proposed: dict, output: dict) -> list[int]:
        """The channels a refusal concerns: those its rule limits; else those proposed
        with a value that is not a number; else those whose output is not the proposal."""
        hit = self.rule_map.get(row.get("rule") or "")
        if not hit and row["kind"] != "decision":
            return []  # an event refused (a reset, say) concerns no channel in particular
        if not hit:
            hit = {i for i, ch in enumerate(self.channels)
                   if ch in proposed and _num(proposed[ch]) is None}
        if not hit:
            hit = {i for i, ch in enumerate(self.channels)
                   if ch in proposed and proposed[ch] != output.get(ch)}
        return sorted(hit) if hit else list(range(len(self.channels)))


__all__ = ["Collector", "Collected", "Item", "Clock", "channels_of", "rule_channels", "finite",
           "wall_clock_of",
           "VERDICTS", "EVENT_CATEGORY", "CHANNEL_EVENT_CATEGORIES", "VERDICT_MARKERS"]
