"""What the incident report tells an investigator, checked against the lineage itself
(`lineage decode`, `lineage replay --json`) and against the README's words: the inputs
lane, wall time, the narrative of each incident, the operator actions, the what-if
summary, the page's weight and `edgegov bench report`."""

from __future__ import annotations

import html as htmllib
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edgegov.demo import default_envelope
from edgegov.names import reason
from edgegov.report.sample import OFF_MS, generate
from test_report import (
    decoded,
    edgegov,
    incidents_by_definition,
    make_demo_lineage,
    make_tight_envelope,
    packed,
    page_data,
    report,
)

WALL0 = 1_796_000_000_000  # 2026-11-30T00:53:20Z


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    lineage = make_demo_lineage(d)
    html = report(lineage, d / "incident.html")
    return lineage, html, decoded(lineage)


@pytest.fixture(scope="module")
def walled(tmp_path_factory):
    d = tmp_path_factory.mktemp("wall")
    lineage = d / "wall.lineage"
    generate(lineage, default_envelope(), 5000, boots=2, wall_ms=WALL0)
    return lineage, report(lineage, d / "wall.html"), decoded(lineage)


def telemetry(rows):
    return [r for r in rows if (r.get("input") or {}).get("type") == "telemetry"]


def text_of(fragment: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", "", fragment))


# --------------------------------------------------------------------------- inputs lane


def test_the_inputs_lane_holds_every_change_of_every_input(demo):
    lineage, html, rows = demo
    data = page_data(html)
    lane = {k["name"]: k for k in data["inputs"]}
    assert sorted(lane) == ["door_closed", "estop_button", "hydraulic_pressure"]
    t_last = max(r["t_ms"] for r in rows if "t_ms" in r) / 1000
    for name, k in lane.items():
        changes, last = [], object()
        for r in telemetry(rows):
            v = r["input"]["values"].get(name)
            if name in r["input"]["values"] and v != last:
                changes.append((r["t_ms"] / 1000, int(v) if isinstance(v, bool) else v))
                last = v
        if changes[-1][0] < t_last:  # the step is held to the end of the dump
            changes.append((t_last, changes[-1][1]))
        assert list(zip(k["x"], k["v"], strict=True)) == changes, name


def test_inputs_carry_units_limits_and_interlock_thresholds(demo):
    data = page_data(demo[1])
    lane = {k["name"]: k for k in data["inputs"]}
    p = lane["hydraulic_pressure"]  # from the envelope: 0.0 … 400.0 bar, low_pressure lt 50.0
    assert (p["number"], p["unit"], p["min"], p["max"]) == (True, "bar", 0, 400)
    assert [(t["interlock"], t["op"], t["value"]) for t in p["thresholds"]] == [
        ("low_pressure", "lt", 50)]
    door = lane["door_closed"]
    assert not door["number"] and door["thresholds"][0]["value"] is False
    assert lane["estop_button"]["estop"] is True


def test_stale_inputs_are_shaded_from_their_event_to_their_next_value(tmp_path):
    """A governor that hears no telemetry for longer than stale_after_ms marks the input
    stale (an input_stale event); the lane shades from there to the next value."""
    lineage = tmp_path / "stale.lineage"
    _record_a_silent_plant(lineage)
    rows = decoded(lineage)
    stale = [(r["t_ms"], e["arg"]) for r in rows for e in r.get("events", [])
             if e["event"] == "input_stale"]
    assert stale
    data = page_data(report(lineage, tmp_path / "stale.html"))
    names_ = sorted(k["name"] for k in data["inputs"])
    bands = {k["name"]: k["stale"] for k in data["inputs"]}
    for t_ms, k in stale:
        back = next(r["t_ms"] for r in telemetry(rows)
                    if r["t_ms"] >= t_ms and names_[k] in r["input"]["values"])
        assert [t_ms / 1000, back / 1000] in bands[names_[k]]


def _record_a_silent_plant(path: Path) -> None:
    """The demo's cell with telemetry pausing for 1.5 s at 3 s (longer than every input's
    stale_after_ms)."""
    from edgegov.core.envelope import Envelope
    from edgegov.core.events import TICK
    from edgegov.core.governor import Governor
    from edgegov.demo import DEMO_KEY
    from edgegov.host.lineage_store import open_lineage
    from edgegov.sim import Plant

    compiled = default_envelope()
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    lineage = open_lineage(path, env, DEMO_KEY, block_count=64, durable=False)
    gov = Governor(env, DEMO_KEY)
    lineage.boot(gov, 0, boot_count=1, envelope_blob=compiled.blob)
    plant = Plant()
    for now in range(0, 6000, 10):
        if now % 20 == 0 and not 3000 <= now < 4500:
            d = gov.handle(plant.telemetry(), now)
            lineage.record(plant.telemetry(), now, d, gov)
        d = gov.handle(TICK, now)
        lineage.record(TICK, now, d, gov)
    lineage.checkpoint(gov, 6000)
    lineage.sync()
    lineage.device.close()


# --------------------------------------------------------------------------- wall time


def _wall(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_wall_time_is_on_the_axes_and_in_the_tables(walled):
    lineage, html, rows = walled
    data = page_data(html)
    assert data["time"]["wall"] is True
    boots = [i for i, r in enumerate(rows) if r["kind"] == "boot"]
    assert [rows[i]["wall_ms"] for i in boots][0] == WALL0
    walls = []
    for k, r in enumerate(rows):  # by hand: the boot's wall time + device time
        boot = rows[max(i for i in boots if i <= k)]
        if "t_ms" in r:
            walls.append(boot["wall_ms"] + r["t_ms"])
    placed = [r for r in rows if "t_ms" in r]
    assert data["rows"]["x"] == [w for w, r in zip(walls, placed, strict=True)
                                 if r["kind"] != "envelope"]
    trips = [w for w, r in zip(walls, placed, strict=True)
             if any(e["event"] == "trip" for e in r.get("events", []))]
    table = re.search(r"<table class='grid' id='incidents'>(.*?)</table>", html, re.S).group(1)
    for w in trips[:3]:
        assert f">{_wall(w)}<" in table
    assert "wall time, UTC; 2 boot(s), each its own segment" in html


def test_boots_are_separate_segments_with_the_device_off_between(walled):
    lineage, html, rows = walled
    segs = page_data(html)["segments"]
    assert [s["boot"] for s in segs] == [1, 2]
    first_end = max(r["t_ms"] for r in rows[: [r["kind"] for r in rows].index("boot", 1)]
                    if "t_ms" in r)
    # the second boot's wall time: the first's + the time it ran + the time it was off
    assert segs[1]["wall"] == segs[1]["x0"] > segs[0]["x1"] == WALL0 + first_end
    assert segs[1]["wall"] - WALL0 >= first_end + OFF_MS - 10


def test_without_wall_time_the_device_time_is_used(demo):
    html = demo[1]
    assert packed(html)["time"]["wall"] is False
    assert "the lineage records no wall time" in html


# --------------------------------------------------------------------------- narrative


def stories(html: str) -> list[str]:
    return re.findall(r"<details class='story'.*?</details>", html, re.S)


def test_every_incident_is_told_and_the_counts_agree(demo):
    lineage, html, rows = demo
    expected = incidents_by_definition(rows)
    told = stories(html)
    badge = int(re.search(r"data-incidents='(\d+)'", html).group(1))
    assert len(told) == badge == len(expected) == 3
    for story, cause in zip(told, expected, strict=True):
        assert f"cause {reason(cause)}" in text_of(story)


def test_the_narrative_tells_lead_up_trip_outputs_operator_and_reset(demo):
    lineage, html, rows = demo
    story = text_of(stories(html)[1])  # the link-loss trip
    trip = next(r for r in rows if any(e["event"] == "trip" for e in r.get("events", []))
                and r["rule"] == "link.trip")
    t0 = trip["t_ms"]
    after = [r for r in rows if r.get("t_ms", -1) >= t0 and r["seq"] >= trip["seq"]]
    reset = next(r for r in after if any(e["event"] == "reset" for e in r.get("events", [])))
    estop = next(r for r in after if {"event": "estop_out", "arg": 1} in r.get("events", []))
    stale = next(r for r in rows if any(e["event"] == "link_stale" for e in r.get("events", []))
                 and r["t_ms"] <= t0)
    assert "Lead-up" in story and "link stale (stage 1: HOLD)" in story
    assert f"({(stale['t_ms'] - t0) / 1000:+.3f} s) link stale" in story
    assert "TRIP: the command link was lost (cause link_lost, rule link.trip" in story
    assert f"e-stop output asserted (+{(estop['t_ms'] - t0) / 1000:.3f} s after the trip)" \
        in story
    # SS1 spindle ramps down; the STO press is at its safe value at once
    spindle = next(r for r in after if r.get("output", {}).get("spindle") == 0)
    assert (f"output spindle at its safe value 0 rpm {(spindle['t_ms'] - t0) / 1000:.3f} s "
            f"after the trip: stop category SS1") in story
    assert "output press at its safe value 0.0 mm at once: stop category STO" in story
    ops = [r for r in after if r["seq"] <= reset["seq"]
           and (r.get("input") or {}).get("type") == "operator"]
    refused = [r for r in ops if any(e["event"] == "reset_refused" for e in r["events"])]
    assert story.count("operator reset") == len(ops)  # the accepted reset included
    assert refused
    for r in refused:  # the refusal's reason, then the causes that blocked it (if any)
        why = r["reason"]
        blocking = [e for e in r["events"] if e["event"] == "blocking_causes"]
        if blocking:
            why += ": " + ", ".join(blocking[0]["causes"])
        assert (f"operator reset (counter {r['input']['counter']}, signed with the device "
                f"key): refused ({why})") in story
    assert f"reset accepted {(reset['t_ms'] - t0) / 1000:.3f} s after the trip" in story


# --------------------------------------------------------------------------- operator lane


def test_every_operator_action_is_listed_with_authenticity_and_outcome(demo):
    lineage, html, rows = demo
    ops = [r for r in rows if (r.get("input") or {}).get("type") == "operator"]
    table = re.search(r"<table class='grid' id='operator-actions'>(.*?)</table>", html,
                      re.S).group(1)
    lines = re.findall(r"<tr class='(ok|refused)'>(.*?)</tr>", table, re.S)
    assert len(lines) == len(ops)
    refused = [r for r in ops if r["input"]["authentic"] is False
               or any(e["event"].endswith("_refused") for e in r["events"])]
    assert Counter(c for c, _ in lines)["refused"] == len(refused) > 0
    data = page_data(html)["operator"]
    assert data["seq"] == [r["seq"] for r in ops]
    assert sum(data["refused"]) == len(refused)
    for (_, cells), r in zip(lines, ops, strict=True):
        assert f"<td>{r['input']['action']}</td><td>yes</td>" in cells  # the demo signs all


# --------------------------------------------------------------------------- what-if


def test_what_if_summary_counts_transitions_and_trips_as_lineage_replay(tmp_path, demo):
    lineage = demo[0]
    tight = make_tight_envelope(tmp_path)
    out = tmp_path / "wi.json"
    edgegov("lineage", "replay", lineage, "--envelope", tight, "--json", out, check=1)
    diffs = json.loads(out.read_text())["records"]  # every differing record, both decisions

    def trips(side):
        return any(e["event"] == "trip" for e in side["events"])

    moves = Counter((d["recorded"]["verdict"], d["whatif"]["verdict"]) for d in diffs
                    if d["recorded"]["verdict"] != d["whatif"]["verdict"])
    added = [d for d in diffs if trips(d["whatif"]) and not trips(d["recorded"])]
    removed = [d for d in diffs if trips(d["recorded"]) and not trips(d["whatif"])]
    html = report(lineage, tmp_path / "wi.html", "--envelope", tight)
    got = {tuple(k.split(">")): int(n)
           for k, n in re.findall(r"data-transition='([^']+)'>(\d+)<", html)}
    assert moves and got == dict(moves)
    assert int(re.search(r"data-trips-added='(\d+)'", html).group(1)) == len(added)
    assert int(re.search(r"data-trips-removed='(\d+)'", html).group(1)) == len(removed)
    assert f"{len(diffs)} of " in text_of(re.search(r"<ul id='what-if-lines'>(.*?)</ul>",
                                                    html, re.S).group(1))


# --------------------------------------------------------------------------- weight, bench


def test_the_demo_report_is_light_and_keeps_every_non_allow_record(demo, tmp_path):
    lineage, html, rows = demo
    assert len(html.encode()) <= 1_500_000
    plotted = set(page_data(html)["rows"]["seq"])
    assert {r["seq"] for r in rows if r.get("verdict") not in (None, "ALLOW")} <= plotted
    # plotly travels packed, not as a script the page would fetch
    assert "id='report-plotly'" in html and "<script src" not in html


def test_bench_report_prints_size_build_time_and_goals(tmp_path):
    proc = edgegov("bench", "report", "--size", "1MB", "--no-browser", "--keep", tmp_path,
                   "--json", tmp_path / "f.json", check=0)
    figures = json.loads((tmp_path / "f.json").read_text())[0]
    assert figures["lineage_bytes"] == 1 << 20 and figures["records"] > 30_000
    assert figures["html_bytes"] == (tmp_path / "bench-1MB.html").stat().st_size
    assert sum(figures["parts_bytes"].values()) == figures["html_bytes"]
    assert "goal html_bytes ≤ 1500000" in proc.stdout and "1MB: lineage 1.05 MB" in proc.stdout


def test_bench_report_refuses_an_unknown_size(tmp_path):
    proc = edgegov("bench", "report", "--size", "3MB", "--no-browser", check=2)
    assert "Invalid value for '--size'" in proc.stderr and "Traceback" not in proc.stderr


def test_the_lead_up_lists_the_last_three_commands_before_the_trip(demo):
    """README: the lead-up is the last 5 s, with the last three commands."""
    lineage, html, rows = demo
    for story, trip in zip(stories(html), [r for r in rows if any(
            e["event"] == "trip" for e in r.get("events", []))], strict=True):
        before = [r for r in rows if r["kind"] == "decision" and r["seq"] < trip["seq"]
                  and r["t_ms"] >= trip["t_ms"] - 5000][-3:]
        listed = re.findall(r"command #(\d+)", text_of(story.split("class='trip'")[0]))
        assert [int(c) for c in listed] == [r["cmd_seq"] for r in before]


def test_the_readme_what_if_example(demo, tmp_path):
    """README: the demo's lineage with the spindle limited to 3000 rpm gives
    `ALLOW→ESCALATE ×126`, as `lineage replay --envelope` prints it."""
    html = report(demo[0], tmp_path / "wi.html", "--envelope", make_tight_envelope(tmp_path))
    assert re.search(r"<li>  verdicts: [^<]*ALLOW→ESCALATE ×126[,<]", html)
