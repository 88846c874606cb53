"""The data the page's script plots: columns of the kept records and what to mark on them.

Everything here is plain JSON-able lists, column-wise (one list per field, indexed by the
plotted row), because a page holding 10⁵–10⁶ points must not carry a dict per point.
Strings that repeat (rule ids, reasons, labels) are interned into ``strings``.
"""

from __future__ import annotations

import math
from itertools import compress, count
from operator import attrgetter, itemgetter

from .. import names
from . import pack
from .collect import (
    CHANNEL_EVENT_CATEGORIES,
    EVENT_CATEGORY,
    VERDICT_MARKERS,
    VERDICTS,
    Collected,
)

INCIDENT_LEAD_S = 2.0  # seconds shown as lead-up before each trip
WHAT_IF_MAX = 20_000  # what-if differences plotted (evenly thinned beyond)
WHAT_IF_DETAILS = 1000  # of which the first carry both sides in full (the click shows them)
NAN = float("nan")


class Strings:
    def __init__(self):
        self.table: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, s) -> int:
        if s is None:
            return -1
        s = str(s)
        i = self._index.get(s)
        if i is None:
            i = self._index[s] = len(self.table)
            self.table.append(s)
        return i

    def many(self, values: list) -> list[int]:
        """``[self(v) for v in values]``, in one look-up each."""
        try:
            distinct = dict.fromkeys(values)  # in the order they first come
        except TypeError:  # (not hashable)
            distinct = None
        if distinct is None or not set(map(type, distinct)) <= _TEXT:
            return [self(v) for v in values]
        for v in distinct:
            self(v)
        return list(map({None: -1, **self._index}.__getitem__, values))


_TEXT = {str, type(None)}
# verdict code → the marker category of records so decided (CLAMP, REJECT, ESCALATE)
_VERDICT_MARKER = {i: VERDICT_MARKERS.get(v) for i, v in enumerate(VERDICTS) if i > 0}


def event_label(name: str, arg, modes: list[str]) -> str:
    """A person's words for one event, with its argument decoded."""
    if name == "trip":
        return f"trip ({names.reason(arg)})" if type(arg) is int else "trip"
    if name in ("blocking_causes", "boot"):
        causes = names.causes(arg) if type(arg) is int else []
        label = "blocking causes" if name == "blocking_causes" else "boot"
        return f"{label} ({', '.join(causes) or 'no cause'})"
    if name.endswith("_refused"):
        return f"{name.replace('_', ' ')} ({names.reason(arg)})" if type(arg) is int else name
    if name == "counter_behind":
        return f"operator counter {arg} behind the last accepted one"
    if name in ("link_stale", "link_lost", "link_engaged"):
        return f"{name} after {arg} ms"
    if name.startswith("approval_"):
        return f"{name.replace('_', ' ')} (request {arg})"
    if name in ("mode", "arm", "resume"):
        mode = modes[arg] if type(arg) is int and 0 <= arg < len(modes) else arg
        return f"mode → {mode}" if name == "mode" else f"{name} (mode {mode})"
    if name == "estop_out":
        return "e-stop output " + ("asserted" if arg else "released")
    return f"{name} {arg}" if arg not in (None, 0) else name


def _nan_to_none(x: float):
    return None if math.isnan(x) else x


def build(col: Collected, channels: list, limits, what_if, xs, modes: list[str],
          what_if_env=None, inputs=None, narratives=None) -> dict:
    """Assemble the page's data from the decode pass and the replay tracks. Every time in
    it travels as integer milliseconds (delta-encoded in columns): device time laid end to
    end, or wall time (ms since the epoch) when ``col.wall``."""
    s = Strings()
    names_ = [c[0] for c in channels]
    decs = [pack.decimals_of(c[2]) for c in channels]
    notable = _notable(col.rows)
    cols = _Columns(col.rows, len(decs))
    incidents = _incidents(col, notable)
    for inc, story in zip(incidents, narratives or (), strict=False):
        inc["story"] = story
    data = {
        "time": {"wall": col.wall},
        "channels": [{"name": n, "unit": u, "res": r} for n, u, r in channels],
        "verdicts": list(VERDICTS),
        "rows": _rows(col, s, decs, cols),
        "markers": _markers(col, decs, notable, cols),
        "timeline": _timeline(col, s, modes, notable),
        "incidents": [_ms_incident(inc) for inc in incidents],
        "lines": [dict(line, x=pack.ms(line["x"])) for line in _vlines(col, modes, notable)],
        "bounds": _bounds(limits, xs, names_, col.t_last, decs) if limits else None,
        "whatif": _what_if(what_if, xs, names_, col, col.t_last, what_if_env, s, decs)
        if what_if else None,
        "inputs": [_input(k) for k in inputs or ()],
        "operator": _operator(col, s),
        "segments": [dict(g, x0=pack.ms(g["x0"]), x1=pack.ms(g["x1"])) for g in col.segments],
        "decimated": {"records": col.offered, "plotted": col.kept, "bucket": col.bucket},
    }
    data["strings"] = s.table
    return data


def incidents_of(col: Collected) -> list[dict]:
    """The incidents in report seconds (``_incidents``), for the page's tables."""
    return _incidents(col, _notable(col.rows))


def _notable(rows: list) -> list[int]:
    """Indices of the rows the timeline, incidents, lines and event markers look at: those
    with events, boots, gaps and the first of each streak (a few per cent of them)."""
    found = set(compress(count(), map(attrgetter("events"), rows)))
    found.update(compress(count(), map(attrgetter("streak_start"), rows)))
    found.update(compress(count(), map(_BOOT_OR_GAP.get, map(attrgetter("kind"), rows))))
    return sorted(found)


_BOOT_OR_GAP = {"boot": True, "gap": True}


def _ms_incident(inc: dict) -> dict:
    out = {k: v for k, v in inc.items() if k != "story"}
    for k in ("x0", "xt", "x1"):
        out[k] = pack.ms(inc[k])
    return out


class _Columns:
    """The kept rows' verdicts, and their outputs and proposals per channel: lists."""

    def __init__(self, rows: list, n: int):
        self.verdict = list(map(attrgetter("verdict"), rows))
        self.outs = _per_channel(list(map(attrgetter("outs"), rows)), n)
        self.props = _per_channel(list(map(attrgetter("props"), rows)), n)


def _per_channel(per_row: list, n: int) -> list[list]:
    return [list(map(itemgetter(c), per_row)) for c in range(n)]


def _rows(col: Collected, s: Strings, decs: list[int], cols: _Columns) -> dict:
    rows = col.rows
    margins = list(map(attrgetter("margin"), rows))
    if not set(map(type, margins)) <= {int, type(None)}:
        margins = [m if type(m) is int else None for m in margins]
    return {
        "t": pack.times(list(map(attrgetter("x"), rows))),
        "seq": pack.delta(list(map(attrgetter("seq"), rows))),
        "v": cols.verdict,
        "rule": s.many(list(map(attrgetter("rule"), rows))),
        "reason": s.many(list(map(attrgetter("reason"), rows))),
        "margin": margins,
        "out": [pack.decimal(o, d) for o, d in zip(cols.outs, decs, strict=True)],
        "prop": [pack.decimal(p, d) for p, d in zip(cols.props, decs, strict=True)],
        "breaks": list(compress(count(), map(attrgetter("after_break"), rows))),
    }


def _markers(col: Collected, decs: list[int], notable: list[int], cols: _Columns) -> list[dict]:
    """Per channel, category → row indices (delta) and y (the refused proposal, or the
    output)."""
    n = len(decs)
    per: list[dict] = [{} for _ in range(n)]

    def add(c, cat, i, y):
        m = per[c].get(cat)
        if m is None:
            m = per[c][cat] = ([], [])
        m[0].append(i)
        m[1].append(y)

    rows = col.rows
    cats = list(map(_VERDICT_MARKER.get, cols.verdict))
    look = list(cats)  # the rows that mark: those refused, and those with events or a boot
    for i in notable:
        look[i] = True
    for i in compress(count(), look):
        it = rows[i]
        cat = cats[i]
        if cat:
            props = it.props
            for c in it.involved:
                y = props[c]
                add(c, cat, i, y if y is not None else it.outs[c])
        if not it.events and it.kind != "boot":
            continue
        kinds = {EVENT_CATEGORY.get(e, "") for e, _ in it.events}
        if it.kind == "boot":
            kinds.add("boot")
        for cat in CHANNEL_EVENT_CATEGORIES:
            if cat in kinds:
                for c in range(n):
                    if it.outs[c] is not None:
                        add(c, cat, i, it.outs[c])
    return [{cat: {"i": pack.delta(i), "y": pack.decimal(y, decs[c])}
             for cat, (i, y) in per[c].items()} for c in range(n)]


def _input(k: dict) -> dict:
    out = {key: v for key, v in k.items() if key not in ("x", "v", "stale")}
    out["t"] = pack.times(k["x"])
    if k["number"]:
        out["v"] = pack.decimal(k["v"], max(pack.decimals_of(v) for v in k["v"]
                                            if v is not None) if any(
                                                v is not None for v in k["v"]) else 0)
    else:
        out["v"] = {"raw": k["v"]}
    out["stale"] = [[pack.ms(a), pack.ms(b)] for a, b in k["stale"]]
    return out


def _operator(col: Collected, s: Strings) -> dict:
    ops = col.operator
    return {"t": pack.times(o["x"] for o in ops), "seq": [o["seq"] for o in ops],
            "action": [s(o["action"]) for o in ops], "authentic": [o["authentic"] for o in ops],
            "verdict": [s(o["verdict"]) for o in ops], "reason": [s(o["reason"]) for o in ops],
            "refused": [o["refused"] for o in ops],
            "text": [s(o["text"]) for o in ops]}


def _timeline(col: Collected, s: Strings, modes: list[str], notable: list[int]) -> dict:
    """Rows of the timeline plot and table: every event, boot and gap, and the first
    record of every run of identically refused records."""
    out = {"i": [], "cat": [], "label": []}
    encode = out

    def add(i, cat, label):
        out["i"].append(i)
        out["cat"].append(s(cat))
        out["label"].append(s(label))

    rows = col.rows
    for i in notable:
        it = rows[i]
        if it.kind == "boot":
            add(i, "boot", "boot")
        elif it.kind == "gap":
            add(i, "gap", "gap: records lost")
        if it.streak_start:
            verdict = VERDICTS[it.verdict]
            more = f" ×{it.streak_len}" if it.streak_len > 1 else ""
            add(i, f"verdict {verdict}", f"{verdict} {it.reason}{more}")
        for name, arg in it.events:
            add(i, EVENT_CATEGORY.get(name, name), event_label(name, arg, modes))
    encode["i"] = pack.delta(out["i"])
    return encode


def _incidents(col: Collected, notable: list[int]) -> list[dict]:
    """The incidents: the one definition every count in the page uses. An incident starts
    at a trip event while the governor is not already tripped and lasts until an accepted
    reset or the next boot; further trip events inside it count as its ``retrips``."""
    found, open_ = [], None
    rows = col.rows
    for i in notable:  # (the others have no events and are no boot)
        it = rows[i]
        evs = [e for e, _ in it.events]
        if open_ is not None and ("reset" in evs or it.kind == "boot"):
            open_["x1"] = it.x
            open_["end"] = "reset" if "reset" in evs else "boot"
            open_ = None
        for name, arg in it.events:
            if name != "trip":
                continue
            if open_ is not None:
                open_["retrips"] += 1
                continue
            cause = names.reason(arg) if type(arg) is int else "?"
            first = col.t_first if col.t_first is not None else it.x
            open_ = {"i": i, "xt": it.x, "x0": max(first, it.x - INCIDENT_LEAD_S),
                     "x1": None, "cause": cause, "rule": it.rule, "margin": it.margin,
                     "retrips": 0, "end": None}
            found.append(open_)
    for inc in found:
        if inc["x1"] is None:
            inc["x1"] = col.t_last
            inc["end"] = "still tripped at the end of the dump"
    return found


def _vlines(col: Collected, modes: list[str], notable: list[int]) -> list[dict]:
    """Vertical lines across every plot: boots, mode changes, lost records."""
    lines = []
    rows = col.rows
    for i in notable:  # (the others have no events and are no boot)
        it = rows[i]
        if it.kind == "boot":
            lines.append({"x": it.x, "cat": "boot", "label": "boot"})
        for name, arg in it.events:  # (trips are shown by their bands and markers)
            if name == "mode":
                lines.append({"x": it.x, "cat": name, "label": event_label(name, arg, modes)})
    for x, row in col.gaps:
        lines.append({"x": x, "cat": "gap", "label": f"gap: {row.get('count')} records "
                                                     f"{row.get('cause')}"})
    for prev, nxt, x in col.holes:
        if x is not None:
            lines.append({"x": x, "cat": "hole", "label": f"hole: seq {prev} → {nxt}"})
    return lines


def _bounds(track, xs, channels: list[str], t_last, decs=None) -> list[dict]:
    """Step lines of the limits in force. Where the replay lost its anchor inside a stretch
    that cannot be placed in time, the line ends at the last placed record before it."""
    per = [{"x": [], "lo": [], "hi": []} for _ in channels]
    last = None
    for ch in track.changes:
        x = xs[ch.index] if ch.index < len(xs) else float("nan")
        if math.isnan(x):
            if ch.limits is None and last is not None:
                x = _placed_before(xs, ch.index)
                if x is not None:
                    _bound_point(per, channels, x, last)
                    _bound_point(per, channels, x, None)
                    last = None
            continue
        last = ch.limits
        _bound_point(per, channels, x, ch.limits)
    if t_last is not None and per and per[0]["x"] and per[0]["x"][-1] < t_last:
        _bound_point(per, channels, t_last, last)
    for p in per:
        p["x"] = [pack.ms(x) for x in p["x"]]
    return per


def _placed_before(xs, index: int):
    for i in range(min(index, len(xs)) - 1, -1, -1):
        if not math.isnan(xs[i]):
            return xs[i]
    return None


def _bound_point(per, channels, x, limits) -> None:
    for c, name in enumerate(channels):
        lo, hi = limits.get(name, (None, None)) if limits else (None, None)
        per[c]["x"].append(x)
        per[c]["lo"].append(lo)
        per[c]["hi"].append(hi)


def _what_if(track, xs, channels: list[str], col: Collected, t_last, env, s: Strings,
             decs: list[int]) -> dict:
    kept = dict(zip(map(attrgetter("seq"), col.rows), count()))  # seq → row (the last)
    diffs = track.diffs
    step = max(1, -(-len(diffs) // WHAT_IF_MAX))
    shown = diffs[::step]
    xs_shown, outs = [], [[] for _ in channels]
    out = {
        "envelope": env.digest.hex() if env is not None else "",
        "total": len(diffs), "shown": len(shown),
        "seq": [], "row": [], "summary": [], "detail": [],
        "bounds": _bounds(track, xs, channels, t_last),
    }
    seqs, rows, summaries, details = out["seq"], out["row"], out["summary"], out["detail"]
    n_xs = len(xs)
    for d in shown:
        x = xs[d.index] if d.index < n_xs else NAN
        if math.isnan(x):
            continue
        xs_shown.append(x)
        seq = d.seq
        seqs.append(seq)
        rows.append(kept.get(seq, -1))
        side = (d.what_if or {}).get("output", {})
        recorded = (d.recorded or {}).get("output", {})
        for o, name in zip(outs, channels, strict=True):  # where its own output differs
            mine = side.get(name)
            o.append(mine if mine != recorded.get(name) else None)
        summaries.append(s(d.summary))
        if len(details) < WHAT_IF_DETAILS:
            details.append({"seq": seq, "t_ms": d.t_ms, "recorded": d.recorded,
                            "what_if": d.what_if})
    out["t"] = pack.times(xs_shown)
    out["seq"] = pack.delta(out["seq"])
    out["out"] = [pack.decimal(o, decs[c]) for c, o in enumerate(outs)]
    return out


__all__ = ["build", "event_label", "incidents_of", "INCIDENT_LEAD_S"]
