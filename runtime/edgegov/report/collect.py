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

import json
import math
from array import array
from collections import Counter
from dataclasses import dataclass, field

from .decimate import Decimator

U32 = 0xFFFFFFFF
VERDICTS = ("ALLOW", "CLAMP", "REJECT", "ESCALATE", "HOLD", "TRIP")
VERDICT_CODE = {v: i for i, v in enumerate(VERDICTS)}
NAN = float("nan")
MAX_LISTED = 200  # errors, holes, unplaced records listed one by one in the header

# Event name → timeline category.
EVENT_CATEGORY = {
    "trip": "trip", "reset": "reset", "reset_refused": "reset refused",
    "arm": "arm", "arm_refused": "arm", "pause": "arm", "resume": "arm",
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


@dataclass
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
    unplaced: int = 0
    after_hole: int = 0
    t_first: float | None = None
    t_last: float | None = None
    offered: int = 0
    kept: int = 0
    bucket: int = 1


class Clock:
    """Device time → report time (s): boots laid end to end; ``None`` where unplaceable."""

    def __init__(self):
        self.offset_ms = 0
        self.last_ms: int | None = None
        self.prev_seq: int | None = None
        self.after_hole = False

    def place(self, row: dict, holes: list) -> float | None:
        seq = row["seq"]
        if self.prev_seq is not None and seq != (self.prev_seq + 1) & U32:
            self.after_hole = True
            holes.append((self.prev_seq, seq))
        self.prev_seq = seq
        kind = row["kind"]
        if kind in ("boot", "checkpoint"):
            self.after_hole = False
        t = row.get("t_ms")
        if type(t) is not int or self.after_hole or row.get("unplaced"):
            return None
        if kind == "boot" and self.last_ms is not None:
            self.offset_ms = max(self.offset_ms, self.last_ms - t)
        ms = t + self.offset_ms
        self.last_ms = ms if self.last_ms is None else max(self.last_ms, ms)
        return ms / 1000


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


def _num(v):
    if type(v) is int or (type(v) is float and math.isfinite(v)):
        return v
    return None


def record_text(row: dict) -> str:
    """The record as one JSON line (``lineage decode``'s form; strict JSON for browsers)."""
    try:
        return json.dumps(row, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite float somewhere: spell it as decode's text does
        return json.dumps(_finite(row), separators=(",", ":"))


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


class Collector:
    """Consumes decoded rows (``feed``) and keeps what the page plots."""

    def __init__(self, total: int, channels: list[str], rule_map: dict, important_seqs=(),
                 decimator: Decimator | None = None):
        self.channels = channels
        self.rule_map = rule_map
        self.important_seqs = set(important_seqs)
        self.dec = decimator or Decimator(total)
        self.clock = Clock()
        self.out = Collected(bucket=self.dec.size)
        self._streaks: dict = {}  # source -> (key, first Item of its current run)
        self._pending_streak = None
        self._broken = False
        self.xs = array("d")  # report time of every record (NaN: not placed)

    def feed(self, index: int, row: dict) -> None:
        out = self.out
        kind = row["kind"]
        out.counts[(kind, row.get("verdict"))] += 1
        if row.get("verdict") in REASONED:
            out.by_reason[(row["verdict"], row.get("reason") or "?")] += 1
        n_holes = len(out.holes)
        x = self.clock.place(row, out.holes)
        if len(out.holes) > n_holes:
            prev, nxt = out.holes[-1]
            out.holes[-1] = (prev, nxt, self.clock.last_ms / 1000 if self.clock.last_ms
                             is not None else None)
        if kind == "error" and len(out.errors) < MAX_LISTED:
            out.errors.append(row)
        self.xs.append(NAN if x is None else x)
        if x is None:
            self._unplaced(row)
            self._broken = kind != "envelope" or self._broken
            return
        out.t_first = x if out.t_first is None else out.t_first
        out.t_last = x
        item, important = self._item(x, row)
        if self._broken:
            item.after_break, self._broken = True, False
        if kind == "boot":
            out.boots.append(row)
        elif kind == "gap":
            out.gaps.append((x, row))
        values = item.outs + item.props
        self._keep(self.dec.offer(index, item, values, important))

    def finish(self) -> Collected:
        self._keep(self.dec.finish())
        self.out.offered = self.dec.offered
        self.out.kept = self.dec.kept
        return self.out

    def _keep(self, items: list) -> None:
        for item in items:
            item.text = record_text(item.text)  # only plotted records: JSON costs
        self.out.rows.extend(items)

    def _unplaced(self, row: dict) -> None:
        if row["kind"] in ("envelope",):
            return
        if row.get("unplaced") or row["kind"] == "error":
            self.out.unplaced += 1
        else:
            self.out.after_hole += 1

    def _item(self, x: float, row: dict) -> tuple[Item, bool]:
        verdict = row.get("verdict")
        output = row.get("output") or row.get("outputs") or {}
        proposed = row.get("proposed")
        proposed = proposed if isinstance(proposed, dict) else {}
        outs = [_num(output.get(ch)) for ch in self.channels]
        props = [_num(proposed.get(ch)) for ch in self.channels]
        events = [(e.get("event"), e.get("arg")) for e in row.get("events", ())]
        vcode = VERDICT_CODE.get(verdict, -1)
        streak = self._streak_start(row, vcode)
        involved = self._involved(row, proposed, output) if verdict in VERDICT_MARKERS else []
        item = Item(x, row["seq"], row["kind"], vcode, row.get("rule"), row.get("reason"),
                    row.get("margin"), outs, props, row,
                    events, streak, involved)
        if streak:
            source, key = self._pending_streak
            self._streaks[source] = (key, item)
        important = (vcode > 0 or bool(events) or row["kind"] in ("boot", "gap")
                     or row["seq"] in self.important_seqs)
        return item, important

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


__all__ = ["Collector", "Collected", "Item", "Clock", "channels_of", "rule_channels",
           "VERDICTS", "EVENT_CATEGORY", "CHANNEL_EVENT_CATEGORIES", "VERDICT_MARKERS"]
