"""The HTML page: a header a person reads first (rendered here, readable without script),
then the plots and timeline the script draws from the packed data.

One file, no fetches: the data, the plotted records and plotly.js itself (the basic
bundle, ``plotlyjs``) travel as gzip+base64 inside ``<script
type="application/octet-stream">`` tags, which the page's own script unpacks with the
browser's ``DecompressionStream`` (the bundle: 1.2 MB as text, about 0.5 MB packed).
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

from .. import names
from ..host.walltime import format_wall
from . import narrative, pack
from .assets import CSS, JS
from .collect import VERDICTS, Collected, finite
from .model import Strings


@dataclass
class Facts:
    """Everything the header says, gathered by ``build``."""

    dump_path: str
    file_size: int
    block_size: int
    sectors: int
    records: int
    torn_tail: bool
    version: str
    envelopes: list = field(default_factory=list)  # (hex digest, Envelope, origin)
    findings: list = field(default_factory=list)  # reading problems (text)
    verify: object = None  # VerifyReport or None
    verify_error: str = ""
    keyed: bool = False
    replay: object = None  # shadow.Track of the recorded envelope
    what_if: object = None  # shadow.Track with another envelope
    what_if_source: str = ""
    whatif_summary: object = None  # whatif_view.Summary, when there is a what-if
    narratives: list = field(default_factory=list)  # one per incident (narrative.Narrator)
    wall_span: tuple | None = None  # (first, last, steps) wall ms the host recorded, or None


def gzip64(text: str, level: int = 6) -> str:
    """``text`` as base64 of its gzip (what the page's script unpacks)."""
    if level == 9:
        return _gzip64_cached(text)
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=level, mtime=0)).decode()


@functools.lru_cache(maxsize=2)
def _gzip64_cached(text: str) -> str:
    """The plotly bundle is the same for every report: packed once per process."""
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode()


def render(facts: Facts, col: Collected, data: dict, plotly_js: str,
           narratives: list | None = None, records=None) -> str:
    """The page. ``records``: a function giving ``records_payload`` of the plotted rows,
    called once the rest of the page is made (None: made here)."""
    head, tail = _around_records(facts, col, data, plotly_js, narratives)
    packed = records() if records is not None else records_payload([it.text for it in col.rows])
    return "".join((head, packed, tail))


def _around_records(facts: Facts, col: Collected, data: dict, plotly_js: str,
                    narratives: list | None) -> tuple[str, str]:
    """The page before and after its records' element."""
    facts.narratives = narratives or []
    title = f"edgegov incident report: {_device(facts, col)}"
    head = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        "<div id='error'></div>",
        _top(facts, col, data),
        "<div class='layout'><main>",
        _sections(facts, col, data),
        "</main>",
        "<aside><h2 id='record-title'>Record</h2><pre id='record'>Click a marker in a plot "
        "or a row of the timeline to see the record here, as `edgegov lineage decode` "
        "prints it.</pre></aside></div>",
        _payload("report-data", json.dumps(data, separators=(",", ":"), allow_nan=False)),
    ]
    tail = [
        _payload("report-plotly", plotly_js, level=9),
        f"<script>{JS}</script></body></html>",
    ]
    return "".join(head), "".join(tail)


def records_payload(rows: list[dict]) -> str:
    """The page's element carrying ``rows`` (the plotted records' texts), packed."""
    return _payload("report-records", _records_json(rows))


def _records_json(rows: list[dict]) -> str:
    """The plotted records, packed per shape (``pack.records``) as strict JSON. Decoded
    records spell non-finite numbers as text already; a float that is not finite anyway
    is spelled so here too."""
    try:
        return _packed_json(rows)
    except ValueError:
        return _packed_json([finite(r) for r in rows])


def _packed_json(rows: list[dict]) -> str:
    strings = Strings()
    packed = pack.records(rows, strings)
    packed["strings"] = strings.table
    return json.dumps(packed, separators=(",", ":"), allow_nan=False)


def _payload(ident: str, text: str, level: int = 6) -> str:
    return (f"<script type='application/octet-stream' id='{ident}'>{gzip64(text, level)}"
            f"</script>")


def _device(facts: Facts, col: Collected) -> str:
    devices = sorted({str(b.get("device")) for b in col.boots if b.get("device") is not None})
    if not devices:
        devices = sorted({str(env.device_id) for _, env, _ in facts.envelopes})
    return ", ".join(devices) or "unknown device"


# --------------------------------------------------------------------------- header


def _top(facts: Facts, col: Collected, data: dict) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    size = _size(facts.file_size)
    return (
        "<header class='top'>"
        f"<h1>Incident report: device {escape(_device(facts, col))}</h1>"
        f"<p class='sub'>{escape(facts.dump_path)} · {size}, {facts.block_size}-byte sectors "
        f"× {facts.sectors}{_wall(facts)} · generated {now} by edgegov "
        f"{escape(facts.version)}</p>"
        f"<div class='badges'>{''.join(_badges(facts, col, data))}</div></header>"
    )


def _wall(facts: Facts) -> str:
    if facts.wall_span is None:
        return " · wall time not recorded"
    from ..host.walltime import format_wall

    first, last, _ = facts.wall_span
    return f" · <span id='wall-span'>{format_wall(first)} .. {format_wall(last)}</span> (UTC)"


def _badges(facts: Facts, col: Collected, data: dict):
    v = facts.verify
    if v is None:
        yield "<span class='badge bad' id='badge-verify'>verify: not possible</span>"
    elif v.ok:
        yield "<span class='badge ok' id='badge-verify'>verify: OK</span>"
    else:
        yield "<span class='badge bad' id='badge-verify'>verify: FAILED</span>"
    r = facts.replay
    if r is not None and r.identical:
        yield "<span class='badge ok'>replay: identical</span>"
    elif r is not None and r.divergences:
        yield "<span class='badge bad'>replay: diverges</span>"
    else:
        yield "<span class='badge warn'>replay: nothing re-derived</span>"
    n = len(data["incidents"])
    yield (f"<span class='badge {'bad' if n else 'ok'}' id='badge-trips' data-incidents='{n}'>"
           f"{n} incident(s)</span>")
    if facts.torn_tail:
        yield "<span class='badge warn'>torn tail</span>"
    lost = len(col.gaps) + len(col.holes)
    if lost:
        yield f"<span class='badge warn'>{lost} gap(s)</span>"
    if facts.findings or col.errors or col.unplaced:
        yield "<span class='badge warn'>damaged or incomplete: see Integrity</span>"


def _sections(facts: Facts, col: Collected, data: dict) -> str:
    return "".join([
        "<h2>Dump</h2>", _dump_table(facts, col),
        "<h2>Records</h2>", _counts_table(col),
        "<h2>Integrity</h2>", _integrity(facts, col),
        "<h2>Incidents</h2>", _incidents(facts, data),
        _what_if_section(facts, data),
        "<h2 id='channels'>Channels</h2>", _channels(data),
        _inputs_section(data),
        _operator_section(col, data),
        "<h2>Timeline</h2>",
        "<div id='plot-timeline' class='plot timeline'></div>",
        "<p class='legend-note' id='events-count'></p><div id='events-table'></div>",
    ])


def _dump_table(facts: Facts, col: Collected) -> str:
    rows = [("Device", escape(_device(facts, col)))]
    fw = sorted({str(b.get("firmware")) for b in col.boots})
    rows.append(("Firmware", escape(", ".join(fw)) or "unknown (no BOOT record survives)"))
    for hexd, env, origin in facts.envelopes:
        chans = ", ".join(f"{n} ({u})" for n, u in zip(env.ch_names, env.ch_units, strict=False))
        rows.append((f"Envelope ({origin})",
                     f"<code>{hexd}</code><br>channels {escape(chans)}; modes "
                     f"{escape(', '.join(env.modes))}"))
    rows.append(("Boots", _boots(col)))
    rows.append(("Time span", _span(col)))
    return _facts_table(rows)


def _boots(col: Collected) -> str:
    if not col.boots:
        return "no BOOT record survives (the ring wrapped past it, or it is damaged)"
    head = ("<table class='grid'><tr><th class='n'>seq</th><th class='n'>boot count</th>"
            "<th class='n'>reset reason</th><th>firmware</th><th>envelope</th>"
            "<th>wall clock</th></tr>")
    body = []
    for b in col.boots:
        wall = b.get("wall_ms")
        wall_s = (datetime.fromtimestamp(wall / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%fZ")
                  if type(wall) is int else "not set")
        body.append(f"<tr><td class='n'>{b['seq']}</td><td class='n'>{b.get('boot_count')}"
                    f"</td><td class='n'>{escape(names.reset_reason(b.get('reset_reason')))}</td>"
                    f"<td>{escape(str(b.get('firmware')))}</td>"
                    f"<td><code>{escape(str(b.get('envelope', ''))[:16])}…</code></td>"
                    f"<td>{wall_s}</td></tr>")
    return head + "".join(body) + "</table>"


def _span(col: Collected) -> str:
    if col.t_first is None:
        return "no record could be placed in time"
    boots = max(1, len(col.boots))
    if col.wall:
        return (f"{when(pack.ms(col.t_first), True)} – {when(pack.ms(col.t_last), True)} "
                f"(wall time, UTC; {boots} boot(s), each its own segment on the time axes)")
    return (f"{col.t_first:.3f} s – {col.t_last:.3f} s ({col.t_last - col.t_first:.3f} s of "
            f"device time; {boots} boot(s) laid end to end: each boot's clock starts again; "
            f"the lineage records no wall time)")


def _counts_table(col: Collected) -> str:
    c = col.counts
    head = ("<table class='grid' id='verdict-counts'><tr><th>verdict</th>"
            "<th class='n'>decisions</th><th class='n'>events</th><th class='n'>total</th></tr>")
    body = []
    for v in VERDICTS:
        d, e = c.get(("decision", v), 0), c.get(("event", v), 0)
        body.append(f"<tr><td>{v}</td><td class='n' data-count='decision:{v}'>{d}</td>"
                    f"<td class='n' data-count='event:{v}'>{e}</td>"
                    f"<td class='n' data-count='total:{v}'>{d + e}</td></tr>")
    kinds = {}
    for (kind, _), n in c.items():
        kinds[kind] = kinds.get(kind, 0) + n
    total = sum(kinds.values())
    kind_cells = " · ".join(f"{k} <b data-count='kind:{k}'>{n}</b>"
                            for k, n in sorted(kinds.items()))
    shown = (f"{col.kept} of {col.offered} placed records are plotted"
             + (f" (ALLOW records thinned per bucket of {col.bucket}; every other record kept)"
                if col.bucket > 1 else " (all of them)"))
    return (head + "".join(body) + "</table>" + _reason_table(col) +
            f"<p><span data-count='records'>{total}</span> records: {kind_cells}.<br>"
            f"{escape(shown)}.</p>")


def _reason_table(col: Collected) -> str:
    """CLAMP and REJECT records by reason (decisions and events together), most first."""
    if not col.by_reason:
        return ""
    rows = [f"<tr><td>{v}</td><td>{escape(r)}</td>"
            f"<td class='n' data-reason='{v}:{escape(r)}'>{n}</td></tr>"
            for (v, r), n in sorted(col.by_reason.items(), key=lambda kv: (kv[0][0], -kv[1]))]
    return ("<table class='grid' id='reason-counts'><tr><th>verdict</th><th>reason</th>"
            "<th class='n'>records</th></tr>" + "".join(rows) + "</table>")


def _integrity(facts: Facts, col: Collected) -> str:
    rows = [("Verify (CRC, hash chain)", _verify(facts)),
            ("Torn tail", "yes: the newest sector ends in a record that never committed "
                          "(absent, as on the device)" if facts.torn_tail else "none"),
            ("Gaps", _gaps(facts, col)),
            ("Replay", _replay(facts.replay)),
            ("Not placed", _unplaced(col))]
    findings = facts.findings + ([facts.verify_error] if facts.verify_error else [])
    if findings:
        rows.insert(0, ("Reading", _list(findings, "fail")))
    if col.errors:
        rows.append(("Undecodable", _list([f"seq {r['seq']} at offset {r['offset']}: "
                                           f"{r.get('error')}" for r in col.errors], "fail")))
    return _facts_table(rows, "integrity")


def _verify(facts: Facts) -> str:
    v = facts.verify
    if v is None:
        return "<span class='fail'>not possible</span>"
    status = "<span class='okt'>OK</span>" if v.ok else "<span class='fail'>FAILED</span>"
    text = (f"{status}: {v.records} records, {v.checkpoints} checkpoints "
            f"({v.keyed_checkpoints} keyed{', MACs checked' if facts.keyed else ''}); the hash "
            f"chain covers all but {v.uncovered_head} leading and {v.uncovered_tail} trailing "
            f"records (those: CRC only)")
    items = [("FAIL: " if f.fatal else "note: ") + str(f) for f in v.findings]
    return text + (_list(items, "fail") if items else "")


def _gaps(facts: Facts, col: Collected) -> str:
    items = [f"GAP record at {when(pack.ms(x), col.wall)}: {row.get('count')} records "
             f"{row.get('cause')}"
             + (f" from seq {row.get('first_lost')}" if row.get("first_lost", -1) >= 0 else "")
             for x, row in col.gaps]
    items += [f"hole in the sequence: seq {prev} is followed by seq {nxt}"
              + (f" (at {when(pack.ms(x), col.wall)})" if x is not None else "")
              for prev, nxt, x in col.holes]
    return _list(items, "note") if items else "none"


def _replay(track) -> str:
    if track is None:
        return "not run"
    if track.error:
        return f"<span class='fail'>{escape(track.error)}</span>"
    anchors = ", ".join(f"{k} at seq {s}" for s, k in track.anchors[:8])
    if track.identical:
        text = (f"<span class='okt'>identical</span>: {track.compared} records re-derived "
                f"exactly ({track.skipped} before the first anchor; anchored at {anchors})")
    elif track.compared == 0:
        text = "<span class='fail'>nothing re-derived: no BOOT or CHECKPOINT record anchors</span>"
    else:
        seq, note = track.first_divergence
        text = (f"<span class='fail'>DIVERGES</span> at {track.divergences} of "
                f"{track.compared} records (first at seq {seq}: {escape(note)})")
    return text + (_list(track.notes[:20], "note") if track.notes else "")


def _unplaced(col: Collected) -> str:
    if not col.unplaced and not col.after_hole:
        return "none: every record is placed in time"
    parts = []
    if col.unplaced:
        parts.append(f"{col.unplaced} records before the first surviving anchor or after an "
                     f"undecodable record (shown raw by `lineage decode`)")
    if col.after_hole:
        parts.append(f"{col.after_hole} records after a hole, until the next checkpoint: "
                     f"their times and outputs were relative to lost records")
    return "; ".join(parts)


INCIDENT_DEFINITION = ("An incident starts at a trip while the governor is not tripped and "
                       "lasts until an accepted reset or the next boot; every count of "
                       "incidents in this page uses this definition.")
NARRATIVES_MAX = 100  # incidents told in full (the table lists every one)
OPERATOR_ROWS_MAX = 500  # operator actions listed (the lane plots every one)


def when(ms, wall: bool) -> str:
    """A report time (integer ms) as people read it: wall time (UTC) or device seconds."""
    if ms is None:
        return "?"
    return format_wall(ms) if wall else f"{ms / 1000:.3f} s"


def _incidents(facts: Facts, data: dict) -> str:
    incs = data["incidents"]
    if not incs:
        return "<p id='incidents'>No trip in this dump.</p>"
    wall = data["time"]["wall"]
    return (f"<p class='legend-note'>{INCIDENT_DEFINITION}</p>" + _cause_table(incs)
            + _incident_rows(incs, wall) + _narratives(facts.narratives, wall))


def _cause_table(incs: list[dict]) -> str:
    """Incidents per trip cause, most first."""
    per = Counter(inc["cause"] for inc in incs)
    rows = [f"<tr><td>{escape(c)}</td><td class='n' data-cause='{escape(c)}'>{n}</td></tr>"
            for c, n in per.most_common()]
    return ("<table class='grid' id='cause-counts'><tr><th>trip cause</th>"
            "<th class='n'>incidents</th></tr>" + "".join(rows) + "</table>")


def _incident_rows(incs: list[dict], wall: bool) -> str:
    head = ("<div class='scroll'><table class='grid' id='incidents'><tr><th>#</th>"
            "<th class='n'>trip at</th><th>cause</th><th>rule</th>"
            "<th class='n'>tripped until</th><th>ended by</th>"
            "<th class='n'>further trips</th><th></th></tr>")
    body = []
    for n, inc in enumerate(incs, 1):
        body.append(f"<tr><td>{n}</td><td class='n'>{when(inc['xt'], wall)}</td>"
                    f"<td>{escape(inc['cause'])}</td><td>{escape(str(inc['rule'] or '-'))}</td>"
                    f"<td class='n'>{when(inc['x1'], wall)}</td><td>{escape(inc['end'])}</td>"
                    f"<td class='n'>{inc['retrips']}</td><td>{_zoom(inc, n)}</td></tr>")
    return (head + "".join(body) + "</table></div><p class='legend-note'>Shaded in the plots: "
            "orange = the lead-up to a trip, red = tripped until an accepted reset.</p>")


def _zoom(inc: dict, n: int) -> str:
    return (f"<button data-x0='{inc['x0']}' data-x1='{inc['x1'] + 1000}' "
            f"data-incident='{n}'>zoom</button>")


def _narratives(stories: list, wall: bool) -> str:
    if not stories:
        return ""
    out = ["<h3>What happened, incident by incident</h3><p class='legend-note'>Open an "
           "incident to read it; its zoom button shows it beside the plots.</p>"
           "<div id='narratives'>"]
    for n, story in enumerate(stories[:NARRATIVES_MAX], 1):
        out.append(_story(n, story, wall))
    out.append("</div>")
    if len(stories) > NARRATIVES_MAX:
        out.append(f"<p class='legend-note'>the first {NARRATIVES_MAX} of {len(stories)} "
                   f"incidents are told here; the table above lists every one.</p>")
    return "".join(out)


def _story(n: int, story: dict, wall: bool) -> str:
    t0 = story["x"]

    def item(cls: str, entry: dict) -> str:
        rel = entry["x"] - t0
        at = when(pack.ms(entry["x"]), wall)
        return (f"<li class='{cls}' data-seq='{entry.get('seq', '')}'><span class='at'>{at} "
                f"({rel:+.3f} s)</span> {escape(entry['text'])}</li>")

    parts = [f"<li class='part'>Lead-up (last {narrative.LEAD_S:g} s)</li>"]
    parts += [item("lead", e) for e in story["lead"]] or [
        "<li class='lead none'>nothing recorded in the lead-up</li>"]
    parts.append(item("trip", {"x": t0, "seq": story["seq"], "text": story["trip"]}))
    groups = {"output": [], "operator": [], "other": []}
    for e in story["after"]:
        key = "output" if e["kind"] in ("output", "estop") else (
            "operator" if e["kind"] == "operator" else "other")
        groups[key].append(e)
    for key, title in (("output", "What the outputs did"), ("other", "Link and further trips"),
                       ("operator", "Operator actions")):
        if groups[key]:
            parts.append(f"<li class='part'>{title}</li>")
            parts += [item(key, e) for e in groups[key]]
    end = story["end"]
    parts.append("<li class='part'>End</li>")
    parts.append(item("end", end))
    return (f"<details class='story' id='narrative-{n}' data-incident='{n}'>"
            f"<summary>Incident {n}: {escape(story['cause'])} at {when(pack.ms(t0), wall)}"
            f"</summary><ul class='story'>{''.join(parts)}</ul></details>")


def _operator_section(col: Collected, data: dict) -> str:
    ops = col.operator
    wall = data["time"]["wall"]
    if not ops:
        return "<h2>Operator actions</h2><p id='operator-actions'>No operator action.</p>"
    rows = []
    for o in ops[:OPERATOR_ROWS_MAX]:
        refused = o["refused"]
        auth = {True: "yes", False: "NO", None: "?"}.get(o["authentic"], str(o["authentic"]))
        rows.append(f"<tr class='{'refused' if refused else 'ok'}'>"
                    f"<td class='n'>{when(pack.ms(o['x']), wall)}</td><td class='n'>{o['seq']}"
                    f"</td><td>{escape(str(o['action']))}</td><td>{auth}</td>"
                    f"<td>{'refused' if refused else 'accepted'}</td>"
                    f"<td>{escape(o['text'])}</td></tr>")
    return ("<h2>Operator actions</h2><div id='plot-operator' class='plot lane'></div>"
            "<div class='scroll wide'><table class='grid' id='operator-actions'><tr>"
            "<th class='n'>at</th><th class='n'>seq</th><th>action</th><th>authentic</th>"
            "<th>outcome</th><th>what happened</th></tr>" + "".join(rows)
            + "</table></div>" + (f"<p class='legend-note'>the first {OPERATOR_ROWS_MAX} of "
                                  f"{len(ops)} operator actions are listed; the lane above "
                                  f"shows every one.</p>" if len(ops) > OPERATOR_ROWS_MAX
                                  else ""))


def _inputs_section(data: dict) -> str:
    specs = data.get("inputs") or []
    if not specs:
        return "<h2 id='inputs'>Inputs</h2><p>No plant input in the envelope.</p>"
    plots = "".join(
        f"<div id='plot-input-{k}' class='plot input {'number' if s['number'] else 'bool'}' "
        f"data-input='{escape(s['name'])}'></div>" for k, s in enumerate(specs))
    return ("<h2 id='inputs'>Inputs</h2><p class='legend-note'>Every plant input as the "
            "telemetry reported it, on the same time axis: booleans as steps, numbers in "
            "their units with their declared range (dashed) and the interlock thresholds on "
            "them (dotted); grey shading: the governor held the input stale.</p>" + plots)


def _what_if_section(facts: Facts, data: dict) -> str:
    track, w, summ = facts.what_if, data.get("whatif"), facts.whatif_summary
    if track is None or w is None:
        return ""
    wall = data["time"]["wall"]
    head = (f"<h2>What-if</h2><p id='what-if-summary'>With <code>"
            f"{escape(facts.what_if_source)}</code> (envelope <code>{w['envelope'][:16]}…"
            f"</code>), <b>{w['total']}</b> of {track.compared} recorded decisions would "
            f"differ. Purple diamonds in the plots: the output that envelope would have given; "
            f"dotted purple: its limits.</p>")
    if summ is None:
        return head + _list(track.notes[:10], "note")
    lines = "".join(f"<li>{escape(line)}</li>" for line in summ.lines)
    moves = "".join(f"<tr><td>{escape(str(t['from']))}</td><td>{escape(str(t['to']))}</td>"
                    f"<td class='n' data-transition='{escape(str(t['from']))}>"
                    f"{escape(str(t['to']))}'>{t['count']}</td></tr>" for t in summ.transitions)
    table = ("<table class='grid' id='what-if-transitions'><tr><th>recorded verdict</th>"
             "<th>what-if verdict</th><th class='n'>records</th></tr>" + moves + "</table>"
             if moves else "")
    trips = _trip_changes("added", summ.trips_added, wall) + _trip_changes(
        "removed", summ.trips_removed, wall)
    source = ("the what-if replay (as <code>lineage replay --envelope</code>)"
              if summ.source == "run_whatif" else "the report's own what-if replay")
    return (head + f"<ul id='what-if-lines'>{lines}</ul>" + table + trips
            + f"<p class='legend-note'>Summary from {source}.</p>"
            + _list(track.notes[:10], "note"))


def _trip_changes(what: str, trips: list, wall: bool) -> str:
    head = (f"<p><b data-trips-{what}='{len(trips)}'>{len(trips)}</b> trip(s) {what} by the "
            f"what-if envelope</p>")
    if not trips:
        return head
    rows = [f"<tr><td class='n'>{escape(str(t.get('wall') or t.get('t_ms')))}</td>"
            f"<td>{escape(str(t.get('channel') or '-'))}</td>"
            f"<td>{escape(str(t.get('cause')))}</td></tr>" for t in trips[:50]]
    return (head + f"<table class='grid' id='trips-{what}'><tr><th class='n'>"
            f"{'wall time' if wall else 't_ms'}</th><th>channel</th><th>cause</th></tr>"
            + "".join(rows) + "</table>")


def _channels(data: dict) -> str:
    plots = "".join(f"<div id='plot-{c}' class='plot channel' data-channel='{escape(ch['name'])}'>"
                    f"</div>" for c, ch in enumerate(data["channels"]))
    return ("<div class='controls'><button id='zoom-reset'>show all</button><span "
            "class='legend-note'>drag to zoom, scroll to zoom, double-click to reset; the time "
            "axes move together; click a point or marker to see its record</span></div>"
            + (plots or "<p>No channel: no envelope places the records.</p>"))


def _facts_table(rows, ident: str = "") -> str:
    id_attr = f" id='{ident}'" if ident else ""
    return (f"<table class='facts'{id_attr}>"
            + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
            + "</table>")


def _list(items, cls: str) -> str:
    return f"<ul class='findings {cls}'>" + "".join(
        f"<li>{escape(str(i))}</li>" for i in items) + "</ul>"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


__all__ = ["render", "Facts", "gzip64", "when"]
